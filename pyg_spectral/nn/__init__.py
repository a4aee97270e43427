from .eigen_loss import EigenLossModule, eigen_loss, eigen_parameters
from ..solvers.exact import exact_eigh
from .eigenbasis import Eigenbasis, ExactEigenbasis
from .amortized import AmortizedEigenbasis, amortized_eigh, amortized_svd
from .lowrank_gcn_conv import LowRankGCNConv
from .eigenfunction_mlp import EigenfunctionMLP

__all__ = [
    'Eigenbasis', 'AmortizedEigenbasis', 'ExactEigenbasis', 'amortized_eigh', 'amortized_svd',
    'exact_eigh', 'LowRankGCNConv',
    'EigenLossModule', 'eigen_loss', 'eigen_parameters', 'EigenfunctionMLP']
