from ...nn import AmortizedEigenbasis, LowRankGCNConv
from ..registry import register_model
from .gcn import GCN


def _lowrank_gcn(num_features: int, num_classes: int, basis: AmortizedEigenbasis) -> GCN:
    r"""The two-layer GCN with :class:`LowRankGCNConv` layers sharing one
    rank-k eigenbasis of the GCN-normalized adjacency."""
    return GCN(num_features, 16, num_classes,
               make_conv=lambda i, o: LowRankGCNConv(i, o, basis.k, basis))


@register_model('lowrank-gcn', 'two-layer GCN on a rank-16 amortized eigenbasis '
                '(Li et al. 2024), learned with a Brockett eigen-loss')
def build_lowrank_gcn(num_features, num_classes, data):
    return _lowrank_gcn(num_features, num_classes, AmortizedEigenbasis(data.num_nodes, 16))


@register_model('lowrank-gcn-exact', 'two-layer GCN on the exact rank-16 eigenbasis '
                '(solved once per graph)')
def build_lowrank_gcn_exact(num_features, num_classes, data):
    return _lowrank_gcn(num_features, num_classes,
                        AmortizedEigenbasis(data.num_nodes, 16, exact=True))
