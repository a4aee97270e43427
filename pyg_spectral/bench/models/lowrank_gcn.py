from ...nn import AmortizedEigenbasis, Eigenbasis, ExactEigenbasis, LowRankGCNConv
from ..registry import register_model
from .gcn import GCN

DEFAULT_K = 16


def _lowrank_gcn(num_features: int, num_classes: int, basis: Eigenbasis,
                 components: bool = True) -> GCN:
    r"""The two-layer GCN with :class:`LowRankGCNConv` layers sharing one
    rank-k eigenbasis of the GCN-normalized adjacency, each with a root weight
    (a rank-k propagation drops most of what a node's own features say, and
    the root weight keeps them, as in :class:`~torch_geometric.nn.conv.GraphConv`).
    The graph is fixed (transductive), so the layers cache its matrix."""
    return GCN(num_features, 16, num_classes,
               make_conv=lambda i, o: LowRankGCNConv(i, o, basis.k, basis, components=components,
                                                     root_weight=True, cached=True))


@register_model('lowrank-gcn', 'two-layer GCN on the component space and k amortized '
                'eigenvectors after it (Li et al. 2024), learned with a Brockett eigen-loss',
                options=('k',))
def build_lowrank_gcn(num_features, num_classes, data, k=DEFAULT_K):
    return _lowrank_gcn(num_features, num_classes, AmortizedEigenbasis(data.num_nodes, k))


# the exact basis is a function of the graph alone: the seeds of one run share
# it, solved once (a new basis per seed would solve PubMed's ten times)
_exact_bases: dict[tuple, ExactEigenbasis] = {}


@register_model('lowrank-gcn-exact', 'the same on the exact eigenvectors (solved once per graph)',
                options=('k',))
def build_lowrank_gcn_exact(num_features, num_classes, data, k=DEFAULT_K):
    key = (id(data.edge_index), data.num_nodes, k)
    if key not in _exact_bases:
        _exact_bases.clear()  # one graph at a time
        _exact_bases[key] = ExactEigenbasis(data.num_nodes, k)
    return _lowrank_gcn(num_features, num_classes, _exact_bases[key])


@register_model('lowrank-gcn-topk', "the paper's plain top-k amortized basis (no component "
                "space: on a graph of more than k components it holds only their indicators)",
                options=('k',))
def build_lowrank_gcn_topk(num_features, num_classes, data, k=DEFAULT_K):
    return _lowrank_gcn(num_features, num_classes, AmortizedEigenbasis(data.num_nodes, k),
                        components=False)
