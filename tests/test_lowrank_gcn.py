import pytest
import torch
from graphs import grid_graph, path_graph

from pyg_spectral.metrics import max_principal_sine
from pyg_spectral.nn import AmortizedEigenbasis, LowRankGCNConv, amortized_eigh, eigen_loss
from pyg_spectral.operators import COMPONENT_EIGENVALUE, GraphOperator, NullSpace


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
    edge_index, w = weighted_grid()  # connected: the component space is sqrt(d) alone
    x = torch.randn(20, 3, dtype=torch.float64)
    conv = LowRankGCNConv(3, 2, k=5, basis='exact', components=False).double()
    torch.nn.init.normal_(conv.bias)
    out = conv(x, edge_index, w)

    A = GraphOperator.from_edge_index(edge_index, w, 20, kind='gcn', dtype=torch.float64).to_dense()
    vals, vecs = torch.linalg.eigh(A)
    U, lam = vecs[:, -5:], vals[-5:]
    expected = U @ torch.diag(lam) @ U.T @ x @ conv.lin.weight.T + conv.bias
    assert torch.allclose(out, expected, atol=1e-10)
    # full rank recovers GCN's propagation
    full = LowRankGCNConv(3, 2, k=20, basis='exact', bias=False, components=False).double()
    assert torch.allclose(full(x, edge_index, w), A @ x @ full.lin.weight.T, atol=1e-10)
    # with the component space: n - 1 learned directions are all of them
    full = LowRankGCNConv(3, 2, k=19, basis='exact', bias=False).double()
    assert torch.allclose(full(x, edge_index, w), A @ x @ full.lin.weight.T, atol=1e-10)


def components_and_random_part(seed: int = 0):
    r"""Isolated nodes, small cliques and paths, and a 60-node random graph:
    eigenvalue 1 of the GCN matrix repeats 9 times."""
    g = torch.Generator().manual_seed(seed)
    blocks, offset = [], 0
    for size in (1, 1, 2, 3, 3, 4, 5, 5):
        i, j = torch.triu_indices(size, size, 1)
        blocks.append(torch.stack([i, j]) + offset)
        offset += size
    mask = torch.rand(60, 60, generator=g) < 0.08
    i, j = torch.triu_indices(60, 60, 1)
    keep = mask[i, j]
    blocks.append(torch.stack([i[keep], j[keep]]) + offset)
    ring = torch.arange(60) + offset  # connected random part
    blocks.append(torch.stack([ring[:-1], ring[1:]]))
    edge_index = torch.cat(blocks, 1)
    n = offset + 60
    weight = torch.rand(edge_index.size(1), generator=g, dtype=torch.float64) + 0.1
    edge_index = torch.cat([edge_index, edge_index.flip(0)], 1)
    return edge_index, torch.cat([weight, weight]), n


def dense_reference(edge_index, weight, n, k):
    A = GraphOperator.from_edge_index(edge_index, weight, n, kind='gcn',
                                      dtype=torch.float64).to_dense()
    vals, vecs = torch.linalg.eigh(A)
    c = int((vals > 1 - 1e-9).sum())
    return A, vecs[:, n - c:], vecs[:, n - c - k:n - c].flip(1), vals[n - c - k:n - c].flip(0)


@pytest.mark.parametrize('kind', ['gcn', 'sym_adjacency', 'sym_laplacian', 'laplacian'])
def test_component_space_is_the_repeated_eigenspace(kind):
    edge_index, w, n = components_and_random_part()
    op = GraphOperator.from_edge_index(edge_index, w, n, kind=kind, dtype=torch.float64)
    null = NullSpace.of_operator(op)
    vals, vecs = torch.linalg.eigh(op.to_dense())
    target = COMPONENT_EIGENVALUE[kind]
    at = (vals - target).abs() < 1e-9
    # isolated nodes: eigenvalue 1 of GCN (a self-loop), not of the others
    assert null.dim == int(at.sum()) == (9 if kind in ('gcn', 'laplacian') else 7)
    basis = null.project(torch.eye(n, dtype=torch.float64))
    assert max_principal_sine(torch.linalg.eigh(basis)[1][:, -null.dim:], vecs[:, at]) < 1e-10
    X = torch.randn(n, 3, dtype=torch.float64)
    assert torch.allclose(null.project(null.project(X)), null.project(X), atol=1e-12)
    assert torch.allclose(op.matmat(null.project(X)), target * null.project(X), atol=1e-12)


@pytest.mark.parametrize('method', ['eigh', 'arpack'])
def test_exact_basis_is_component_space_plus_top_k_of_the_rest(method):
    edge_index, w, n = components_and_random_part()
    k = 8
    _, components, top, lam = dense_reference(edge_index, w, n, k)
    conv = LowRankGCNConv(3, 2, k=k, basis='exact', method=method).double()
    op, null = conv.graph(edge_index, w, n, torch.float64)
    assert null.dim == components.size(1) == 9
    U, values = conv.basis(op, null)
    assert max_principal_sine(U, top) < 1e-4
    assert torch.allclose(values, lam, atol=1e-8)
    assert (U.T @ components).abs().max() < 1e-8


def test_amortized_basis_converges_into_the_same_subspace():
    edge_index, w, n = components_and_random_part()
    k = 4
    _, components, top, lam = dense_reference(edge_index, w, n, k)
    torch.manual_seed(0)
    conv = LowRankGCNConv(3, 2, k=k, num_nodes=n).double()
    op, null = conv.graph(edge_index, w, n, torch.float64)
    opt = torch.optim.Adam([conv.basis.weight], lr=1e-2)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, 3000)
    for _ in range(3000):
        opt.zero_grad()
        conv.basis(op, null)
        conv.basis.eigen_loss().backward()
        opt.step()
        schedule.step()
    U, values = conv.basis(op, null)
    assert (U.T @ components).abs().max() < 1e-10  # in the complement at every step
    assert max_principal_sine(U, top) < 0.05
    assert torch.allclose(values, lam, atol=1e-3)


def test_gradient_through_the_projection_matches_autograd():
    from pyg_spectral.losses import eigen_loss_from_rayleigh
    edge_index, w, n = components_and_random_part()
    op = GraphOperator.from_edge_index(edge_index, w, n, kind='gcn', dtype=torch.float64)
    null = NullSpace.of_operator(op)
    state = torch.randn(n, 5, dtype=torch.float64, requires_grad=True)
    amortized_eigh(op, state, null=null).loss.backward()
    reference = state.detach().clone().requires_grad_()
    Q, R = torch.linalg.qr(null.project_out(reference))
    U = Q * torch.sign(torch.diagonal(R))  # any column signs: the loss is sign-free
    eigen_loss_from_rayleigh((U * op.matmat(U)).sum(0), 'brockett', True, None).backward()
    assert torch.allclose(state.grad, reference.grad, atol=1e-10)


def test_layer_output_equals_the_formula_by_hand():
    edge_index, w, n = components_and_random_part()
    k = 6
    A, components, top, lam = dense_reference(edge_index, w, n, k)
    x = torch.randn(n, 3, dtype=torch.float64)
    conv = LowRankGCNConv(3, 2, k=k, basis='exact', root_weight=True,
                          response_degree=2).double()
    with torch.no_grad():
        conv.response.copy_(torch.tensor([0.1, 0.5, -0.3]))
        conv.bias.normal_()
    out = conv(x, edge_index, w)
    g = lambda t: 0.1 + 0.5 * t - 0.3 * t ** 2  # noqa: E731
    propagate = g(1.0) * components @ components.T + top @ torch.diag(g(lam)) @ top.T
    expected = propagate @ x @ conv.lin.weight.T + x @ conv.lin_root.weight.T + conv.bias
    assert torch.allclose(out, expected, atol=1e-8)
    # the paper's plain top-k: here k directions inside the 9-fold eigenvalue 1
    plain = LowRankGCNConv(3, 2, k=k, basis='exact', components=False, bias=False).double()
    U, _ = plain.basis(*plain.graph(edge_index, w, n, torch.float64)[:1])
    assert (U.T @ top).abs().max() < 1e-6


def test_amortized_layer_skips_the_signs_its_output_does_not_depend_on():
    r"""The layer's own amortized basis has no canonical signs (unless
    asked); with them, the same weights give the same output."""
    edge_index, w, n = components_and_random_part()
    x = torch.randn(n, 3, dtype=torch.float64)
    conv = LowRankGCNConv(3, 2, k=6, num_nodes=n, root_weight=True).double()
    assert conv.basis.canonical_signs is False and 'canonical_signs=False' in repr(conv.basis)
    signed = LowRankGCNConv(3, 2, k=6, num_nodes=n, root_weight=True,
                            canonical_signs=True).double()
    assert signed.basis.canonical_signs and 'canonical_signs' not in repr(signed.basis)
    signed.load_state_dict(conv.state_dict())
    assert torch.allclose(conv(x, edge_index, w), signed(x, edge_index, w), atol=1e-12)
    U, _ = conv.basis(*conv.graph(edge_index, w, n, torch.float64)[:2])
    V, _ = signed.basis(*signed.graph(edge_index, w, n, torch.float64)[:2])
    flips = (U * V).sum(0)
    assert torch.allclose(V, U * flips, atol=1e-12) and (flips < 0).any()


def test_shared_basis_is_computed_once_and_trained_by_eigen_loss():
    edge_index = path_graph(12)
    basis = AmortizedEigenbasis(12, 3)
    conv1, conv2 = LowRankGCNConv(4, 8, 3, basis), LowRankGCNConv(8, 2, 3, basis)
    model = torch.nn.ModuleList([conv1, conv2])
    x = torch.randn(12, 4)
    h = conv1(x, edge_index).relu()
    graph = basis.cached_graph
    first = basis(graph.operator, graph.null)
    out = conv2(h, edge_index)
    assert basis.cached_graph is graph  # one matrix per graph
    assert basis(graph.operator, graph.null)[0] is first[0]  # one QR and one A U per step
    loss = out.square().mean() + eigen_loss(model)
    # W learns from the eigen-loss of the shared basis, counted once, and from nothing else
    expected, = torch.autograd.grad(basis.eigen_loss(), basis.weight, retain_graph=True)
    loss.backward()
    assert expected.abs().max() > 0 and torch.allclose(basis.weight.grad, expected, atol=1e-7)
    assert sum(p is basis.weight for p in model.parameters()) == 1
    with pytest.raises(ValueError, match='k=4'):
        LowRankGCNConv(4, 8, 4, basis)


@pytest.mark.parametrize('cached', [False, True])
@pytest.mark.parametrize('basis', ['exact', 'amortized'])
def test_a_changed_graph_is_never_ignored(cached, basis):
    edge_index, w, n = components_and_random_part()
    torch.manual_seed(0)
    conv = LowRankGCNConv(3, 2, k=4, basis=basis, cached=cached, num_nodes=n).double()
    x = torch.randn(n, 3, dtype=torch.float64)

    def fresh(*graph):
        other = LowRankGCNConv(3, 2, k=4, basis=basis, num_nodes=n).double()
        other.load_state_dict(conv.state_dict())
        return other(x, *graph)
    conv(x, edge_index, w)
    built = conv.basis.cached_graph
    assert torch.equal(conv(x, edge_index.clone(), w.clone()), fresh(edge_index, w))
    assert (conv.basis.cached_graph is built) == cached  # same content: reused only if cached
    scale = torch.linspace(0.5, 2.0, w.numel() // 2, dtype=torch.float64)
    new_w = w * torch.cat([scale, scale])  # symmetric: each edge and its reverse
    assert torch.allclose(conv(x, edge_index, new_w), fresh(edge_index, new_w), atol=1e-8)
    w.mul_(3.0).add_(0.5)  # in place: the same tensor object, another graph
    assert torch.allclose(conv(x, edge_index, w), fresh(edge_index, w), atol=1e-8)
    other_edges = edge_index[:, torch.randperm(edge_index.size(1))[:-40]]
    other_edges = torch.cat([other_edges, other_edges.flip(0)], 1).unique(dim=1)
    assert torch.allclose(conv(x, other_edges), fresh(other_edges), atol=1e-8)


def test_k_beyond_the_complement_is_a_clear_error():
    edge_index, w, n = components_and_random_part()  # 84 nodes, 9 components
    with pytest.raises(ValueError, match='k=76 exceeds the 75 directions'):
        LowRankGCNConv(3, 2, k=76, basis='exact')(torch.randn(n, 3), edge_index)
    with pytest.raises(ValueError, match='k=76 exceeds the 75 directions'):
        LowRankGCNConv(3, 2, k=76, num_nodes=n)(torch.randn(n, 3), edge_index)
    assert LowRankGCNConv(3, 2, k=76, components=False, num_nodes=n)(
        torch.randn(n, 3), edge_index).shape == (n, 2)


def test_graph_size_changes():
    conv = LowRankGCNConv(2, 2, k=2, basis='exact').double()
    for n in (10, 7):  # the exact basis is solved again for the new graph
        x = torch.randn(n, 2, dtype=torch.float64)
        _, components, top, lam = dense_reference(path_graph(n), None, n, 2)
        propagate = components @ components.T + top @ torch.diag(lam) @ top.T
        expected = propagate @ x @ conv.lin.weight.T + conv.bias
        assert torch.allclose(conv(x, path_graph(n)), expected, atol=1e-8)
    amortized = LowRankGCNConv(2, 2, k=2, num_nodes=10)
    amortized(torch.randn(10, 2), path_graph(10))
    with pytest.raises(ValueError, match='tied to one graph size'):
        amortized(torch.randn(7, 2), path_graph(7))


def test_reset_repr_and_bad_arguments():
    conv = LowRankGCNConv(16, 7, k=4)
    assert repr(conv) == "LowRankGCNConv(16, 7, k=4, basis='amortized')"
    assert repr(LowRankGCNConv(16, 7, basis='exact', components=False, root_weight=True,
                               response_degree=3)) == (
        "LowRankGCNConv(16, 7, k=16, basis='exact', components=False, root_weight=True, "
        "response_degree=3)")
    with pytest.raises(ValueError, match='basis must be'):
        LowRankGCNConv(2, 2, basis='eigh')
    with pytest.raises(ValueError, match='exceeds num_nodes'):
        LowRankGCNConv(2, 2, k=5, num_nodes=4)
    with pytest.raises(ValueError, match='response_degree'):
        LowRankGCNConv(2, 2, response_degree=-1)
    conv = LowRankGCNConv(3, 2, k=2, num_nodes=10, response_degree=1)
    conv(torch.randn(10, 3), path_graph(10))
    with torch.no_grad():
        conv.response.fill_(7.0)
    from unittest import mock
    with mock.patch.object(AmortizedEigenbasis, 'reset_parameters', autospec=True,
                           side_effect=AmortizedEigenbasis.reset_parameters) as reset:
        conv.reset_parameters()
    reset.assert_called_once_with(conv.basis)  # the basis is drawn again
    assert conv.basis.cached_graph is None
    assert conv.response.tolist() == [0.0, 1.0]


def test_bench_models_share_one_basis_and_learn(cora):
    from pyg_spectral.bench.node_classification import run_node_classification
    from pyg_spectral.bench.registry import get_model
    from pyg_spectral.nn import eigen_parameters
    for name in ('lowrank-gcn', 'lowrank-gcn-exact', 'lowrank-gcn-topk'):
        net = get_model(name).build(cora.num_features, 7, cora, k=8)
        basis = net.conv1.basis
        assert net.conv2.basis is basis and basis.k == 8
        assert eigen_parameters(net) == ([] if name.endswith('exact') else [basis.weight])
        assert net.conv1.components == net.conv2.components == (not name.endswith('topk'))
        # (at 20 epochs: 0.42, 0.59, 0.43)
        result = run_node_classification('Cora', name, seeds=1, epochs=20, progress=False, k=8)
        assert result.k == 8 and result.test_acc_mean > 1 / 7 + 0.1  # above chance


def test_accuracy_figure_is_drawn_from_the_sweep_json(tmp_path, monkeypatch):
    pytest.importorskip('matplotlib')
    import importlib.util
    import json
    from pathlib import Path
    spec = importlib.util.spec_from_file_location(
        'plots', Path(__file__).resolve().parents[1] / 'benchmarks' / 'plots.py')
    plots = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plots)
    row = lambda model, k, acc: dict(model=model, k=k, seeds=[0, 1], test_acc_mean=acc,  # noqa: E731
                                     test_acc_std=0.01)
    (tmp_path / 'lowrank_sweep_Cora.json').write_text(json.dumps(
        [row('gcn', None, 0.81), row('lowrank-gcn-exact', 16, 0.75),
         row('lowrank-gcn-exact', 64, 0.79), row('lowrank-gcn', 16, 0.74)]))
    drawn = []
    real_save = plots._save
    monkeypatch.setattr(plots, '_save', lambda fig, p: (drawn.append(fig), real_save(fig, p))[1])
    path = plots.lowrank_accuracy(tmp_path)
    assert path == tmp_path / 'lowrank_accuracy_vs_k.png' and path.is_file()
    # the figure shows the sweep's numbers: GCN's line, the exact and amortized points
    (ax,) = drawn[0].axes
    lines = sorted((tuple(line.get_xdata()), tuple(round(float(y), 6) for y in line.get_ydata()))
                   for line in ax.lines if line.get_marker() != '_')  # not the error bars' caps
    assert lines == [((0, 1), (81.0, 81.0)), ((16,), (74.0,)), ((16, 64), (75.0, 79.0))]
    assert plots.lowrank_accuracy(tmp_path / 'missing') is None
    assert sorted(p.name for p in tmp_path.iterdir()) == [  # no temporary file left
        'lowrank_accuracy_vs_k.png', 'lowrank_sweep_Cora.json']
