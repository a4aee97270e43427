from .eigen_losses import EIGEN_LOSSES, brockett_weights, eigen_loss_from_rayleigh
from .nested_lora import (NESTINGS, LoRATerms, NestedLoRA, lora_terms, nested_lora_loss,
                          second_moment, subspace_lora_loss)

__all__ = [
    'EIGEN_LOSSES', 'brockett_weights', 'eigen_loss_from_rayleigh',
    'NESTINGS', 'LoRATerms', 'NestedLoRA', 'lora_terms', 'nested_lora_loss', 'second_moment',
    'subspace_lora_loss']
