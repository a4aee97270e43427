from .nested_lora import NESTINGS, NestedLoRA, nested_lora_loss, second_moment

__all__ = ['NESTINGS', 'NestedLoRA', 'nested_lora_loss', 'second_moment']
