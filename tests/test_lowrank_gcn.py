import pytest
import torch
from graphs import grid_graph, path_graph

from pyg_spectral.nn import AmortizedEigenbasis, LowRankGCNConv, eigen_loss
from pyg_spectral.operators import GraphOperator


def weighted_grid():
    edge_index = grid_graph(4, 5)
    g = torch.Generator().manual_seed(0)
    w = torch.rand(edge_index.size(1), generator=g, dtype=torch.float64) + 0.5
    w = (w + w[_reverse(edge_index)]) / 2  # symmetric weights: distinct eigenvalues
    return edge_index, w


def _reverse(edge_index):
    n = int(edge_index.max()) + 1
    key = edge_index[0] * n + edge_index[1]
    rev = edge_index[1] * n + edge_index[0]
    return torch.argsort(key)[torch.searchsorted(key.sort().values, rev)]


def test_exact_conv_equals_spectral_formula_by_hand():
    edge_index, w = weighted_grid()
    x = torch.randn(20, 3, dtype=torch.float64)
    conv = LowRankGCNConv(3, 2, k=5, basis='exact').double()
    torch.nn.init.normal_(conv.bias)
    out = conv(x, edge_index, w)

    A = GraphOperator.from_edge_index(edge_index, 20, w, kind='gcn', dtype=torch.float64).to_dense()
    vals, vecs = torch.linalg.eigh(A)
    U, lam = vecs[:, -5:], vals[-5:]
    expected = U @ torch.diag(lam) @ U.T @ x @ conv.lin.weight.T + conv.bias
    assert torch.allclose(out, expected, atol=1e-10)
    # full rank recovers GCN's propagation
    full = LowRankGCNConv(3, 2, k=20, basis='exact', bias=False).double()
    assert torch.allclose(full(x, edge_index, w), A @ x @ full.lin.weight.T, atol=1e-10)


def test_amortized_conv_at_exact_eigenvectors_gives_the_same_output():
    edge_index, w = weighted_grid()
    x = torch.randn(20, 3, dtype=torch.float64)
    exact = LowRankGCNConv(3, 2, k=5, basis='exact').double()
    amortized = LowRankGCNConv(3, 2, k=5, basis='amortized', num_nodes=20).double()
    amortized.lin.load_state_dict(exact.lin.state_dict())
    op = exact.operator(edge_index, 20, w, torch.float64)
    amortized.basis.warm_start(exact.basis(op)[0])
    assert torch.allclose(amortized(x, edge_index, w), exact(x, edge_index, w), atol=1e-10)


def test_shared_basis_is_computed_once_and_trained_by_eigen_loss():
    edge_index = path_graph(12)
    basis = AmortizedEigenbasis(12, 3)
    conv1, conv2 = LowRankGCNConv(4, 8, 3, basis), LowRankGCNConv(8, 2, 3, basis)
    model = torch.nn.ModuleList([conv1, conv2])
    x = torch.randn(12, 4)
    h = conv1(x, edge_index).relu()
    first = basis(basis.cached_operator)
    out = conv2(h, edge_index)
    assert basis(basis.cached_operator)[0] is first[0]  # one QR and one A U per step
    assert conv1.basis.cached_operator is conv2.basis.cached_operator
    loss = out.square().mean() + eigen_loss(model)
    loss.backward()
    assert basis.weight.grad is not None and basis.weight.grad.abs().sum() > 0
    assert sum(p is basis.weight for p in model.parameters()) == 1
    with pytest.raises(ValueError, match='k=4'):
        LowRankGCNConv(4, 8, 4, basis)


def test_graph_size_changes():
    conv = LowRankGCNConv(2, 2, k=2, basis='exact')
    conv(torch.randn(10, 2), path_graph(10))
    with pytest.raises(ValueError, match='10 nodes but got x with 8'):
        conv(torch.randn(8, 2), path_graph(8))
    conv.reset_parameters()  # forgets the graph
    assert conv(torch.randn(8, 2), path_graph(8)).shape == (8, 2)

    uncached = LowRankGCNConv(2, 2, k=2, basis='exact', cached=False)
    for n in (10, 7):
        assert uncached(torch.randn(n, 2), path_graph(n)).shape == (n, 2)
    amortized = LowRankGCNConv(2, 2, k=2, cached=False, num_nodes=10)
    amortized(torch.randn(10, 2), path_graph(10))
    with pytest.raises(ValueError, match='tied to one graph size'):
        amortized(torch.randn(7, 2), path_graph(7))


def test_reset_repr_and_bad_basis():
    conv = LowRankGCNConv(16, 7, k=4)
    assert repr(conv) == "LowRankGCNConv(16, 7, k=4, basis='amortized')"
    assert 'exact' in repr(LowRankGCNConv(16, 7, basis='exact'))
    with pytest.raises(ValueError, match='basis must be'):
        LowRankGCNConv(2, 2, basis='eigh')
    with pytest.raises(ValueError, match='exceeds num_nodes'):
        LowRankGCNConv(2, 2, k=5, num_nodes=4)
    conv = LowRankGCNConv(3, 2, k=2, num_nodes=10)
    conv(torch.randn(10, 3), path_graph(10))
    before = conv.basis.weight.detach().clone()
    conv.reset_parameters()
    assert conv.basis.cached_operator is None
    assert not torch.equal(before, conv.basis.weight)


def test_bench_models_run(cora):
    from pyg_spectral.bench.node_classification import run_node_classification
    for name in ('lowrank-gcn', 'lowrank-gcn-exact'):
        result = run_node_classification('Cora', name, seeds=1, epochs=2, progress=False)
        assert 0.0 <= result.test_acc_mean <= 1.0
