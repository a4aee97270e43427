from .base import DerivedOperator, LinearOperator
from .graph import KINDS, GraphOperator, validate_graph
from .nullspace import COMPONENT_EIGENVALUE, DeflatedLaplacian, NullSpace
from .spectral import ShiftedOperator, top_positive
from .sampling import (GaussianSampling, RadialSampling, SampledEstimates, SampledOperator,
                       symmetric_cross, weighted_mean)
from .hamiltonian import CoulombPotential, HarmonicPotential, Hamiltonian, function_laplacian
from .cdk import CDK, hermite_functions

__all__ = [
    'LinearOperator', 'DerivedOperator', 'symmetric_cross', 'weighted_mean', 'KINDS',
    'GraphOperator', 'validate_graph', 'COMPONENT_EIGENVALUE', 'DeflatedLaplacian', 'NullSpace', 'ShiftedOperator', 'top_positive',
    'GaussianSampling', 'RadialSampling', 'SampledEstimates', 'SampledOperator',
    'CoulombPotential', 'HarmonicPotential', 'Hamiltonian', 'function_laplacian',
    'CDK', 'hermite_functions',
]
