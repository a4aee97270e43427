import pytest
import torch
from torch_geometric.utils import erdos_renyi_graph, get_laplacian, to_dense_adj

from pyg_spectral.operators import GraphOperator, ShiftedOperator, top_positive
from pyg_spectral.operators.graph import DirectedGraphError

from graphs import path_graph


@pytest.fixture(scope='module')
def graph():
    torch.manual_seed(0)
    ei = erdos_renyi_graph(40, 0.15)
    # one isolated node (39) must not produce NaNs
    ei = ei[:, (ei < 39).all(0)]
    w = torch.rand(ei.size(1), dtype=torch.float64)
    w = (w + w[_reverse_index(ei)]) / 2  # symmetric weights
    return ei, w


def _reverse_index(ei):
    key = ei[0] * 1000 + ei[1]
    rev = ei[1] * 1000 + ei[0]
    return torch.argsort(key)[torch.searchsorted(key.sort().values, rev)]


def _dense_reference(ei, w, n, kind):
    A = to_dense_adj(ei, edge_attr=w, max_num_nodes=n)[0]
    d = A.sum(1)
    dis = torch.where(d > 0, d.pow(-0.5), torch.zeros_like(d))
    I = torch.eye(n, dtype=A.dtype)
    if kind == 'adjacency':
        return A
    if kind == 'gcn':
        Ah = A + I
        dh = Ah.sum(1).pow(-0.5)
        return dh[:, None] * Ah * dh[None, :]
    if kind == 'sym_adjacency':
        return dis[:, None] * A * dis[None, :]
    if kind == 'laplacian':
        return torch.diag(d) - A
    if kind == 'sym_laplacian':
        return I - dis[:, None] * A * dis[None, :]
    return torch.where(d > 0, 1 / d, torch.zeros_like(d))[:, None] * A


@pytest.mark.parametrize('kind', ['adjacency', 'gcn', 'sym_adjacency', 'laplacian', 'sym_laplacian',
                                  'rw_adjacency'])
def test_kinds_match_dense_formula_and_bounds(graph, kind):
    ei, w = graph
    op = GraphOperator.from_edge_index(ei, w, 40, kind=kind, dtype=torch.float64)
    M = _dense_reference(ei, w, 40, kind)
    # isolated node: PyG's sym Laplacian keeps L_ii = 1 (I - 0)
    assert torch.allclose(op.to_dense(), M, atol=1e-12)
    assert op.matrix.layout == torch.sparse_csr
    X = torch.randn(40, 3, dtype=torch.float64)
    assert torch.allclose(op.matmat(X), M @ X)
    assert torch.allclose(op.rmatmat(X), M.T @ X)
    lo, hi = op.spectral_bounds()
    vals = torch.linalg.svdvals(M) if kind == 'rw_adjacency' else torch.linalg.eigvalsh(M)
    assert lo - 1e-9 <= float(vals.min()) and float(vals.max()) <= hi + 1e-9
    assert op.is_symmetric == (kind != 'rw_adjacency')


@pytest.mark.parametrize('kind', ['laplacian', 'sym_laplacian', 'adjacency'])
def test_unsorted_duplicated_looped_edges_match_pyg(graph, kind):
    # the sort-free paths against PyG's own utilities, on shuffled edges
    # with duplicates (summed) and self-loops (dropped by Laplacians)
    ei, w = graph
    loops = torch.tensor([[3, 7], [3, 7]])
    ei2 = torch.cat([ei, ei[:, :10], loops], 1)
    w2 = torch.cat([w, w[:10], torch.tensor([0.5, 2.0], dtype=torch.float64)])
    w2[_reverse_index(ei)[:10]] *= 2  # the reverses of the duplicated edges match
    perm = torch.randperm(ei2.size(1), generator=torch.Generator().manual_seed(0))
    op = GraphOperator.from_edge_index(ei2[:, perm], w2[perm], 40, kind=kind, dtype=torch.float64)
    with torch.sparse.check_sparse_tensor_invariants():
        torch.sparse_csr_tensor(op.matrix.crow_indices(), op.matrix.col_indices(),
                                op.matrix.values(), op.shape)  # sorted, unique columns
    if kind == 'adjacency':
        expected = to_dense_adj(ei2, edge_attr=w2, max_num_nodes=40)[0]
    else:
        lei, lw = get_laplacian(ei2, w2, None if kind == 'laplacian' else 'sym', num_nodes=40)
        expected = to_dense_adj(lei, edge_attr=lw, max_num_nodes=40)[0]
    assert torch.allclose(op.to_dense(), expected, atol=1e-12)


def test_asymmetric_weight_is_directed():
    ei = path_graph(5)
    w = torch.ones(ei.size(1))
    w[0] = 2.0
    with pytest.raises(ValueError, match='directed graph'):
        GraphOperator.from_edge_index(ei, w, 5, kind='sym_laplacian')


def test_shift_maps_smallest_to_top_positive():
    op = GraphOperator.from_edge_index(path_graph(10), kind='laplacian', dtype=torch.float64)
    shifted = top_positive(op, largest=False)
    ev = torch.linalg.eigvalsh(op.to_dense())
    mu = torch.linalg.eigvalsh(shifted.matmat(torch.eye(10, dtype=torch.float64)))
    assert (mu >= -1e-12).all()
    assert torch.allclose(shifted.original_eigenvalues(mu.flip(0)), ev)
    assert isinstance(shifted, ShiftedOperator)


def test_to_changes_dtype_and_keeps_kind():
    op = GraphOperator.from_edge_index(path_graph(5), kind='gcn').to(dtype=torch.float64)
    assert op.dtype == torch.float64 and op.kind == 'gcn' and op.shape == (5, 5)
    assert 'gcn' in repr(op)


@pytest.mark.parametrize('args, error, match', [
    (dict(edge_index=torch.tensor([[0, 1], [1, 0]], dtype=torch.int32)), TypeError, 'edge_index'),
    (dict(edge_index=torch.tensor([0, 1, 1, 0])), ValueError, 'edge_index'),
    (dict(edge_index=torch.tensor([[0, 5], [5, 0]]), num_nodes=3), ValueError, 'edge_index'),
    (dict(edge_index=torch.tensor([[0, -1], [-1, 0]]), num_nodes=3), ValueError, 'edge_index'),
    (dict(edge_index=torch.tensor([[0, 1], [1, 0]]), edge_weight=torch.tensor([1.0, float('nan')])),
     ValueError, 'edge_weight'),
    (dict(edge_index=torch.tensor([[0, 1], [1, 0]]), edge_weight=torch.tensor([1.0, float('inf')])),
     ValueError, 'edge_weight'),
    (dict(edge_index=torch.tensor([[0, 1], [1, 0]]), edge_weight=torch.tensor([1.0])), ValueError, 'edge_weight'),
    (dict(edge_index=torch.tensor([[0, 1], [1, 2]]), is_undirected=True), ValueError, 'is_undirected=True'),
    (dict(edge_index=torch.tensor([[0, 1], [1, 2]]), kind='gcn'), ValueError, 'directed'),
    (dict(edge_index=torch.tensor([[0, 1], [1, 0]]), kind='normalized'), ValueError, 'kind'),
])
def test_bad_graph_input_names_the_argument(args, error, match):
    with pytest.raises(error, match=match):
        GraphOperator.from_edge_index(**args)


def test_directed_graph_allowed_for_rw_adjacency():
    ei = torch.tensor([[0, 1, 2], [1, 2, 0]])
    op = GraphOperator.from_edge_index(ei, kind='rw_adjacency')
    assert not op.is_symmetric
    # out-degree 1 everywhere: D^-1 A is the cycle's permutation matrix itself
    assert torch.equal(op.to_dense(), to_dense_adj(ei)[0])


def test_matmul_rejects_wrong_shape():
    op = GraphOperator.from_edge_index(path_graph(5), kind='gcn')
    with pytest.raises(ValueError, match=r'\[5, k\]'):
        op.matmat(torch.randn(4, 2))
    with pytest.raises(TypeError):
        op.matmat([[1.0]])


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16, torch.int64])
def test_half_precision_and_integer_matrices_are_refused(dtype):
    edge_index = torch.tensor([[0, 1], [1, 0]])
    with pytest.raises(TypeError, match='dtype must be torch.float32 or torch.float64'):
        GraphOperator.from_edge_index(edge_index, kind='gcn', dtype=dtype)


@pytest.mark.parametrize('num_nodes', [6.0, True, torch.tensor(6.0)])
def test_num_nodes_must_be_an_integer(num_nodes):
    with pytest.raises(TypeError, match='num_nodes must be an integer'):
        GraphOperator.from_edge_index(torch.tensor([[0, 1], [1, 0]]), num_nodes=num_nodes)
    assert GraphOperator.from_edge_index(torch.tensor([[0, 1], [1, 0]]),
                                         num_nodes=torch.tensor(6)).num_nodes == 6


def _graph_callables():
    from pyg_spectral.nn import LowRankGCNConv
    from pyg_spectral.operators import CDK
    from pyg_spectral.operators.graph import validate_graph
    from pyg_spectral.transforms import AddNeuralSVDPE
    return {
        'GraphOperator.from_edge_index': lambda *a, **kw: GraphOperator.from_edge_index(
            *a, **kw).to_dense(),
        'validate_graph': lambda *a, **kw: torch.zeros(validate_graph(*a, **kw)),
        'CDK.graph': lambda *a, **kw: CDK.graph(*a, **kw).graph_operator.to_dense(),
        'AddNeuralSVDPE.encode': lambda *a, **kw: AddNeuralSVDPE(2, seed=0).encode(*a, **kw)[0],
        'LowRankGCNConv.graph': lambda *a, **kw: LowRankGCNConv(3, 2, k=2).graph(
            *a, **kw)[0].to_dense(),
    }


@pytest.mark.parametrize('name', list(_graph_callables()))
def test_graph_arguments_in_pyg_order(name):
    r"""(edge_index, edge_weight, num_nodes) as in torch_geometric.utils
    (each callable returns something with a row per node); a call in the
    order (edge_index, num_nodes, edge_weight) raises rather than building
    another graph."""
    build = _graph_callables()[name]
    ei, w = path_graph(5), torch.full((8,), 2.0)
    positional = build(ei, w, 7)  # 7 nodes: two isolated
    keyword = build(ei, num_nodes=7, edge_weight=w)
    assert positional.shape[0] == 7 and torch.equal(positional, keyword)
    for swapped in ((ei, 7, w), (ei, 7)):
        with pytest.raises(TypeError, match=r'\(edge_index, edge_weight, num_nodes\)'):
            build(*swapped)


def test_rw_is_the_former_name_of_rw_adjacency():
    r"""'rw' was D^-1 A here and I - D^-1 A in PyG (normalization='rw'): the
    matrix is now 'rw_adjacency', and 'rw' still builds it, with a
    DeprecationWarning that names the new kind."""
    ei = torch.tensor([[0, 1, 1, 2, 3], [1, 0, 2, 1, 1]])
    new = GraphOperator.from_edge_index(ei, kind='rw_adjacency')
    with pytest.warns(DeprecationWarning, match="kind='rw' is deprecated; use "
                                                "kind='rw_adjacency'") as caught:
        old = GraphOperator.from_edge_index(ei, kind='rw')
    assert len(caught) == 1 and caught[0].filename == __file__  # the caller's line
    assert old.kind == new.kind == 'rw_adjacency' and not old.is_symmetric
    assert torch.equal(old.to_dense(), new.to_dense())
    deg = to_dense_adj(ei)[0].sum(1, keepdim=True)
    assert torch.equal(new.to_dense(), to_dense_adj(ei)[0] / deg)
    with pytest.warns(DeprecationWarning, match="'rw_adjacency'"):
        direct = GraphOperator(new.matrix, 'rw', new.spectral_bounds())
    assert direct.kind == 'rw_adjacency' and not direct.is_symmetric
    with pytest.raises(DirectedGraphError, match="kind='rw_adjacency'"):
        GraphOperator.from_edge_index(torch.tensor([[0, 1], [1, 2]]), kind='gcn')
    with pytest.raises(ValueError, match=r"kind must be one of \(.*'rw_adjacency'\)"):
        GraphOperator.from_edge_index(ei, kind='random_walk')
