from .eigen_loss import EigenLossModule, eigen_loss, eigen_parameters
from .amortized import AmortizedEigenbasis, amortized_eigh, amortized_svd, exact_eigh
from .lowrank_gcn_conv import LowRankGCNConv
from .eigenfunction_mlp import EigenfunctionMLP

__all__ = [
    'AmortizedEigenbasis', 'amortized_eigh', 'amortized_svd', 'exact_eigh', 'LowRankGCNConv',
    'EigenLossModule', 'eigen_loss', 'eigen_parameters', 'EigenfunctionMLP']
