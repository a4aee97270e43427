from .base import DerivedOperator, LinearOperator, LoRATerms, symmetric_cross, weighted_mean
from .graph import KINDS, GraphOperator, validate_graph
from .nullspace import COMPONENT_EIGENVALUE, DeflatedLaplacian, NullSpace
from .spectral import ShiftedOperator, top_positive
from .sampling import GaussianSampling, RadialSampling, SampledOperator
from .hamiltonian import CoulombPotential, HarmonicPotential, Hamiltonian, laplacian
from .cdk import CDK, hermite_functions

__all__ = [
    'LinearOperator', 'DerivedOperator', 'LoRATerms', 'symmetric_cross', 'weighted_mean', 'KINDS',
    'GraphOperator', 'validate_graph', 'COMPONENT_EIGENVALUE', 'DeflatedLaplacian', 'NullSpace', 'ShiftedOperator', 'top_positive',
    'GaussianSampling', 'RadialSampling', 'SampledOperator',
    'CoulombPotential', 'HarmonicPotential', 'Hamiltonian', 'laplacian',
    'CDK', 'hermite_functions',
]
