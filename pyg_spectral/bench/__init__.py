from .registry import ModelSpec, available_models, get_model, register_model

__all__ = ['ModelSpec', 'available_models', 'get_model', 'register_model']
