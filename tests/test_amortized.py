import math

import pytest
import torch
from graphs import grid_graph, path_graph
from scipy.sparse.csgraph import connected_components
from torch_geometric.utils import degree, to_scipy_sparse_matrix

from pyg_spectral.losses.eigen_losses import brockett_weights, eigen_loss_from_rayleigh
from pyg_spectral.metrics import max_principal_sine
from pyg_spectral.nn import (AmortizedEigenbasis, ExactEigenbasis, amortized_eigh, amortized_svd,
                             eigen_loss, eigen_parameters, exact_eigh)
from pyg_spectral.nn.amortized import canonical_signs
from pyg_spectral.operators import GraphOperator


def random_symmetric(n, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    Q = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=dtype)).Q
    vals = torch.linspace(-1, 2, n, dtype=dtype)
    return Q @ torch.diag(vals) @ Q.T, vals, Q


def train(W, loss_fn, steps, lr=0.02, final_lr=1e-4, weight_decay=0.0):
    r"""Adam on the eigen-loss alone; the learning rate decays geometrically
    to :obj:`final_lr` over the last third so that the basis settles."""
    opt = torch.optim.Adam([W], lr=lr, weight_decay=weight_decay)
    start = 2 * steps // 3
    rate = (final_lr / lr) ** (1 / (steps - start))
    decay = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: rate ** max(0, t - start))
    for _ in range(steps):
        opt.zero_grad()
        loss_fn(W).backward()
        opt.step()
        decay.step()
    return W


def fit(A, k, steps, largest=True, loss='brockett', seed=0):
    torch.manual_seed(seed)
    W = torch.nn.Parameter(0.1 * torch.randn(A.shape[0], k, dtype=A.dtype))
    train(W, lambda W: amortized_eigh(A, W, k, largest=largest, loss=loss).loss, steps)
    return amortized_eigh(A, W, k, largest=largest, loss=loss)


@pytest.mark.parametrize('loss', ['brockett', 'convex'])
def test_eigen_loss_is_minimal_at_eigenvectors(loss):
    A, vals, Q = random_symmetric(6)
    k = 3
    top = Q[:, [5, 4, 3]]  # eigenvalues 2, 1.4, 0.8, in order

    def value(U):
        return float(eigen_loss_from_rayleigh((U * (A @ U)).sum(0), loss))

    best = value(top)
    g = torch.Generator().manual_seed(1)
    for _ in range(50):  # any other orthonormal basis is worse
        U = torch.linalg.qr(torch.randn(6, k, generator=g, dtype=A.dtype)).Q
        assert value(U) > best
    if loss == 'brockett':  # and the order matters
        assert value(top[:, [1, 0, 2]]) > best
    # the trace loss cannot tell a rotation of the eigenspace apart
    R = torch.linalg.qr(torch.randn(k, k, generator=g, dtype=A.dtype)).Q
    tr = lambda U: float(eigen_loss_from_rayleigh((U * (A @ U)).sum(0), 'trace'))
    assert tr(top @ R) == pytest.approx(tr(top), abs=1e-12)


def test_brockett_weights_and_bad_loss():
    assert brockett_weights(4).tolist() == [1.0, 0.75, 0.5, 0.25]
    with pytest.raises(ValueError, match='loss'):
        eigen_loss_from_rayleigh(torch.ones(3), 'nope')
    with pytest.raises(ValueError, match='strictly decreasing'):
        AmortizedEigenbasis(10, 3, weights=torch.tensor([1.0, 1.0, 0.5]))


@pytest.mark.parametrize('largest', [True, False])
def test_amortized_eigh_matches_eigh_on_a_small_graph(largest):
    # GCN matrix of a 5x6 grid: distinct top eigenvalues
    op = GraphOperator.from_edge_index(grid_graph(5, 6), kind='gcn', dtype=torch.float64)
    k = 4
    res = fit(op, k, steps=1500, largest=largest)
    vals, vecs = torch.linalg.eigh(op.to_dense())
    ref_vals = vals.flip(0)[:k] if largest else vals[:k]
    ref_vecs = vecs.flip(1)[:, :k] if largest else vecs[:, :k]
    assert torch.allclose(res.eigenvalues, ref_vals, atol=1e-4)
    for i in range(k):  # each vector, in order, not just the span
        assert max_principal_sine(res.eigenvectors[:, i:i + 1], ref_vecs[:, i:i + 1]) < 1e-2


def test_cora_basis_spans_top_eigenspace(cora):
    r"""Cora's GCN matrix has eigenvalue 1 (its maximum) once per connected
    component, with eigenvectors D^1/2 1_C: the top-16 eigenspace is any 16
    dimensions of that 78-dimensional space, so the basis is compared with
    the whole of it (rotation-invariant)."""
    n = cora.num_nodes
    op = GraphOperator.from_edge_index(cora.edge_index, num_nodes=n, kind='gcn')
    ncomp, label = connected_components(to_scipy_sparse_matrix(cora.edge_index, num_nodes=n))
    label = torch.from_numpy(label)
    V = torch.zeros(n, ncomp)
    V[torch.arange(n), label] = (degree(cora.edge_index[0], n) + 1).sqrt()
    V = V / V.norm(dim=0)
    assert torch.allclose(op.matmat(V), V, atol=1e-5)  # V is the eigenvalue-1 eigenspace

    torch.manual_seed(0)
    basis = AmortizedEigenbasis(n, 16)
    # the bench's optimizer settings (Adam, lr 0.01, weight decay 5e-4), decayed at the end
    train(basis.weight, lambda W: basis.eigen_loss(op), 450, lr=0.01, weight_decay=5e-4)
    U, lam = basis(op)
    assert max_principal_sine(U, V) < 0.05
    assert (lam - 1).abs().max() < 1e-2
    assert (lam.diff() <= 1e-3).all()  # non-increasing up to the degeneracy
    assert torch.allclose(U.T @ U, torch.eye(16), atol=1e-5)


def test_eigenvalue_gradient_flows_to_a_model_built_matrix():
    torch.manual_seed(0)
    X = torch.nn.Parameter(torch.randn(12, 5, dtype=torch.float64))
    A = X @ X.T
    res = fit(A.detach(), 2, steps=1500)
    W = torch.nn.Parameter(res.eigenvectors.clone())
    lam = amortized_eigh(X @ X.T, W, 2).eigenvalues
    g_amortized, = torch.autograd.grad(lam.sum(), X)
    g_exact, = torch.autograd.grad(torch.linalg.eigvalsh(X @ X.T)[-2:].sum(), X)
    assert torch.allclose(g_amortized, g_exact, atol=1e-6)
    # and the eigen-loss reaches W but not the matrix
    out = amortized_eigh(X @ X.T, W, 2)
    gW, gX = torch.autograd.grad(out.loss, [W, X], allow_unused=True)
    assert gX is None and gW is not None


@pytest.mark.parametrize('loss', ['brockett', 'convex', 'trace'])
@pytest.mark.parametrize('largest', [True, False])
def test_eigen_loss_gradient_equals_autograd_through_qr(loss, largest):
    # the analytic QR backward against autograd of the plain formula
    A, _, _ = random_symmetric(30, seed=1)
    W = torch.randn(30, 5, dtype=torch.float64, requires_grad=True)
    ours, = torch.autograd.grad(amortized_eigh(A, W, 5, largest, loss).loss, W)
    U = canonical_signs(torch.linalg.qr(W).Q)
    plain = eigen_loss_from_rayleigh((U * (A @ U)).sum(0), loss, largest)
    expected, = torch.autograd.grad(plain, W)
    assert torch.allclose(ours, expected, atol=1e-12)
    M = torch.randn(40, 30, dtype=torch.float64)
    ours, = torch.autograd.grad(amortized_svd(M, W, 5, loss).loss, W)
    U = canonical_signs(torch.linalg.qr(W).Q)
    plain = eigen_loss_from_rayleigh((U * (M.T @ (M @ U))).sum(0), loss)
    expected, = torch.autograd.grad(plain, W)
    assert torch.allclose(ours, expected, atol=1e-12)


@pytest.mark.parametrize('condition', [1e1, 1e3, 1e6])
def test_basis_orthonormal_for_ill_conditioned_state(condition):
    # Cholesky-QR squares the condition number; beyond float32's reach the
    # Householder fallback must take over
    g = torch.Generator().manual_seed(0)
    Q = torch.linalg.qr(torch.randn(500, 8, generator=g)).Q
    V = torch.linalg.qr(torch.randn(8, 8, generator=g)).Q
    W = Q @ torch.diag(torch.logspace(0, -math.log10(condition), 8)) @ V.T
    A, _, _ = random_symmetric(500, dtype=torch.float32)
    _, U, _ = amortized_eigh(A, W, 8)
    assert torch.allclose(U.T @ U, torch.eye(8), atol=1e-5)
    # and it spans W's columns as well as Householder QR does in float32
    assert max_principal_sine(U, torch.linalg.qr(W).Q) < 1e-3


def test_amortized_svd_and_nuclear_norm_gradient():
    torch.manual_seed(0)
    M = torch.randn(20, 8, dtype=torch.float64)
    W = torch.nn.Parameter(0.1 * torch.randn(8, 8, dtype=torch.float64))
    train(W, lambda W: amortized_svd(M, W, 8).loss, steps=1500)
    Mp = M.clone().requires_grad_()
    U, S, V, _ = amortized_svd(Mp, W, 8)
    assert torch.allclose(S, torch.linalg.svdvals(M), atol=1e-5)
    assert torch.allclose(U.T @ U, torch.eye(8, dtype=M.dtype), atol=1e-6)
    g, = torch.autograd.grad(S.sum(), Mp)  # nuclear norm: gradient U V^T
    Ue, _, Vh = torch.linalg.svd(M, full_matrices=False)
    assert torch.allclose(g, Ue @ Vh, atol=1e-4)


def test_exact_solvers_agree_with_signs():
    op = GraphOperator.from_edge_index(grid_graph(6, 7), kind='gcn', dtype=torch.float64)
    k = 4
    vals, vecs = exact_eigh(op, k, method='eigh')
    assert (vals.diff() < 0).all()
    for method in ('lobpcg', 'arpack'):
        v2, U2 = exact_eigh(op, k, method=method)
        assert torch.allclose(v2, vals, atol=1e-6)
        # the sign convention makes the vectors themselves agree
        assert torch.allclose(U2, vecs, atol=1e-4)
    top = vecs.abs().argmax(0)
    assert (vecs[top, torch.arange(k)] > 0).all()
    low, _ = exact_eigh(op, k, largest=False, method='arpack')
    assert torch.allclose(low, torch.linalg.eigvalsh(op.to_dense())[:k], atol=1e-6)


def test_module_warm_start_exact_mode_and_shared_loss():
    op = GraphOperator.from_edge_index(path_graph(30), kind='gcn', dtype=torch.float64)
    exact = ExactEigenbasis(30, 3, method='eigh')
    U_ex, lam_ex = exact(op)
    assert exact(op)[0] is U_ex  # cached per operator
    basis = AmortizedEigenbasis(30, 3).double().warm_start(U_ex)
    U, lam = basis(op)
    assert torch.allclose(U, U_ex, atol=1e-10) and torch.allclose(lam, lam_ex, atol=1e-10)

    model = torch.nn.ModuleList([basis, torch.nn.Sequential(basis), exact])
    total = eigen_loss(model)  # the shared basis counts once, the exact one adds zero
    assert float(total) == pytest.approx(float(basis.eigen_loss()))
    assert float(total) == pytest.approx(-float((brockett_weights(3) * lam_ex).sum()))
    assert 'k=3' in repr(basis) and repr(exact).startswith('ExactEigenbasis(')
    # the shared basis's W once; the exact one has no parameter
    params = eigen_parameters(torch.nn.ModuleList([model, torch.nn.Linear(2, 2)]))
    assert len(params) == 1 and params[0] is basis.weight


def test_bench_optimizer_decays_only_the_basis_group():
    from pyg_spectral.bench.models.lowrank_gcn import _lowrank_gcn
    from pyg_spectral.bench.node_classification import make_optimizer
    net = _lowrank_gcn(5, 3, AmortizedEigenbasis(30, 4))
    opt, schedule = make_optimizer(net, 0.01, 5e-4, 'cosine', steps=10, basis_lr=0.01)
    rest, basis = opt.param_groups
    assert basis['params'] == [net.conv1.basis.weight]
    assert len(rest['params']) == len(list(net.parameters())) - 1
    for _ in range(5):
        opt.step()
        schedule.step()
    assert rest['lr'] == pytest.approx(0.01) and basis['lr'] == pytest.approx(0.005)
    for _ in range(5):
        opt.step()
        schedule.step()
    assert basis['lr'] == pytest.approx(0.0, abs=1e-12)
    opt, _ = make_optimizer(net, 0.01, 5e-4, 'constant', steps=10)
    assert [g['lr'] for g in opt.param_groups] == [0.01, 0.05]  # the basis's own rate


def test_lazy_size():
    op = GraphOperator.from_edge_index(path_graph(10))
    basis = AmortizedEigenbasis(None, 2)
    U, lam = basis(op)
    assert basis.num_nodes == 10 and basis.weight.shape == (10, 2)
    # the basis of the weight's span, and its Rayleigh quotients
    assert torch.allclose(U.T @ U, torch.eye(2), atol=1e-6)
    assert max_principal_sine(U, basis.weight.detach()) < 1e-5
    assert torch.allclose(lam, (U * op.matmat(U)).sum(0), atol=1e-6)


def test_canonical_signs():
    U = torch.tensor([[0.1, -0.9, 0.5], [-0.8, 0.2, -0.5]])
    # largest entry positive; of two equal magnitudes, the first
    assert torch.equal(canonical_signs(U), torch.tensor([[-0.1, 0.9, 0.5], [0.8, -0.2, -0.5]]))


def test_bad_input():
    op = GraphOperator.from_edge_index(path_graph(10))
    with pytest.raises(ValueError, match='exceeds num_nodes'):
        AmortizedEigenbasis(10, 11)
    with pytest.raises(ValueError, match='k must be'):
        AmortizedEigenbasis(10, 0)
    with pytest.raises(ValueError, match='tied to one graph size'):
        AmortizedEigenbasis(12, 2)(op)
    with pytest.raises(ValueError, match='exceeds the operator size'):
        AmortizedEigenbasis(None, 11)(op)
    with pytest.raises(RuntimeError, match='forward'):
        AmortizedEigenbasis(10, 2).eigen_loss()
    with pytest.raises(ValueError, match='symmetric'):
        AmortizedEigenbasis(10, 2)(GraphOperator.from_edge_index(path_graph(10),
                                                                  kind='rw_adjacency'))
    with pytest.raises(TypeError, match='LinearOperator'):
        AmortizedEigenbasis(10, 2)([[1.0]])

    basis = AmortizedEigenbasis(10, 2)
    with torch.no_grad():
        basis.weight[3, 1] = math.nan
    with pytest.raises(ValueError, match='W.*NaN'):
        basis(op)

    A = op.to_dense()
    A[2, 3] = A[3, 2] = math.inf
    with pytest.raises(ValueError, match='NaN or inf'):
        AmortizedEigenbasis(10, 2)(A)
    with pytest.raises(ValueError, match='square'):
        amortized_eigh(torch.ones(3, 4), torch.ones(3, 1))
    with pytest.raises(ValueError, match='rows'):
        amortized_eigh(A, torch.ones(9, 2))


def test_non_symmetric_dense_matrix_is_refused():
    A = torch.randn(6, 6, dtype=torch.float64)
    with pytest.raises(ValueError, match='must be symmetric.*amortized_svd'):
        AmortizedEigenbasis(6, 2)(A)
    with pytest.raises(ValueError, match='must be symmetric'):
        amortized_eigh(A, torch.randn(6, 2, dtype=torch.float64))
    S = A + A.T
    U, lam = AmortizedEigenbasis(6, 2).double()(S)
    assert torch.allclose(U.T @ U, torch.eye(2, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(lam, (U * (S @ U)).sum(0), atol=1e-12)
    # rounding-level asymmetry (A A^T computed in float32) is accepted
    B = torch.randn(50, 50)
    assert amortized_eigh(B @ B.T, torch.randn(50, 3)).eigenvectors.shape == (50, 3)


def components_operator():
    r"""The GCN matrix of a 6 x 5 grid, a 12-node path, a triangle and an
    isolated node: eigenvalue 1 four times (the component space)."""
    edge_index = torch.cat([grid_graph(6, 5), path_graph(12) + 30,
                            torch.tensor([[42, 43, 44], [43, 44, 42]])], 1)
    edge_index = torch.cat([edge_index, edge_index.flip(0)], 1)
    return GraphOperator.from_edge_index(edge_index, num_nodes=46, kind='gcn',
                                         dtype=torch.float64)


@pytest.mark.parametrize('signs', [True, False])
def test_qr_of_the_complement_is_the_qr_of_the_projection(signs):
    r"""signed_qr(W, complement=(B, B^T)) never forms (I - B B^T) W, yet
    gives its factors: those of the explicit projection, with the same
    signs; without canonical signs, those of Cholesky-QR (positive diagonal
    of R)."""
    from pyg_spectral.linalg import signed_qr
    from pyg_spectral.operators import NullSpace
    null = NullSpace.of_operator(components_operator())
    assert null.dim == 4
    W = torch.randn(46, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    projected = null.project_out(W)
    V = null.vectors(torch.float64)
    assert torch.allclose(projected, W - V @ (V.T @ W), atol=1e-14)
    dense = null.basis_matrices(torch.float64)  # 4 components: dense products
    assert dense[0].layout == torch.strided
    for pair in (dense, tuple(B.to_sparse_csr() for B in dense)):
        U, R = signed_qr(W, signs, pair)
        assert torch.allclose(U.T @ U, torch.eye(6, dtype=torch.float64), atol=1e-13)
        assert torch.allclose(U @ R, projected, atol=1e-13)
        assert float(null.project(U).abs().max()) < 1e-13
        U_ref, R_ref = signed_qr(projected, signs)
        assert torch.allclose(U, U_ref, atol=1e-12) and torch.allclose(R, R_ref, atol=1e-12)
        if not signs:
            assert bool((R.diagonal() > 0).all())


def test_eigenpairs_next_to_components_without_signs_differ_only_in_signs():
    r"""amortized_eigh next to a component space: eigenvalues, loss and the
    gradient of the state equal autograd through Householder QR of the
    explicit projection; signs=False changes only the columns' signs."""
    from pyg_spectral.operators import NullSpace
    op = components_operator()
    null = NullSpace.of_operator(op)
    A = op.to_dense()
    W = torch.randn(46, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1),
                    requires_grad=True)
    signed = amortized_eigh(op, W, 5, null=null)
    unsigned = amortized_eigh(op, W, 5, null=null, signs=False)
    flips = (signed.eigenvectors * unsigned.eigenvectors).sum(0)
    assert torch.allclose(flips.abs(), torch.ones(5, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(signed.eigenvectors, unsigned.eigenvectors * flips, atol=1e-12)
    assert torch.allclose(signed.eigenvalues, unsigned.eigenvalues, atol=1e-13)
    V = null.vectors(torch.float64)
    Q = torch.linalg.qr(W - V @ (V.T @ W)).Q
    plain = eigen_loss_from_rayleigh((Q * (A @ Q)).sum(0), 'brockett', True)
    expected, = torch.autograd.grad(plain, W)
    for res in (signed, unsigned):
        assert torch.allclose(res.loss, plain, atol=1e-12)
        ours, = torch.autograd.grad(res.loss, W)
        assert torch.allclose(ours, expected, atol=1e-11)
