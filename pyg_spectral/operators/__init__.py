from .base import LinearOperator, LoRATerms, symmetric_cross, weighted_mean
from .graph import KINDS, GraphOperator, validate_graph
from .spectral import ShiftedOperator, top_positive

__all__ = [
    'LinearOperator', 'LoRATerms', 'symmetric_cross', 'weighted_mean', 'KINDS',
    'GraphOperator', 'validate_graph', 'ShiftedOperator', 'top_positive'
]
