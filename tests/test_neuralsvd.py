"""NeuralSVD against closed-form spectra and torch.linalg.eigh."""
import pytest
import torch
from torch_geometric.utils import stochastic_blockmodel_graph

from pyg_spectral import GraphOperator, NeuralSVD
from pyg_spectral.metrics import max_principal_sine, relative_error

from graphs import (cycle_graph, cycle_laplacian_spectrum, grid_graph, grid_laplacian_spectrum,
                    path_graph, path_laplacian_spectrum, path_sym_laplacian_spectrum)

# (name, edge_index, n, kind, closed-form spectrum, k non-trivial, chosen at a gap)
CASES = [
    ('path', path_graph(40), 40, 'laplacian', path_laplacian_spectrum(40), 6),
    ('path', path_graph(40), 40, 'sym_laplacian', path_sym_laplacian_spectrum(40), 6),
    ('cycle', cycle_graph(36), 36, 'laplacian', cycle_laplacian_spectrum(36), 6),
    ('cycle', cycle_graph(36), 36, 'sym_laplacian', cycle_laplacian_spectrum(36) / 2, 6),
    ('grid', grid_graph(7, 9), 63, 'laplacian', grid_laplacian_spectrum(7, 9), 5),
    ('torus', grid_graph(6, 8, periodic=True), 48, 'sym_laplacian',
     grid_laplacian_spectrum(6, 8, periodic=True) / 4, 4),
]


@pytest.mark.parametrize('nesting', ['joint', 'sequential'])
@pytest.mark.parametrize('name, ei, n, kind, spectrum, k', CASES,
                         ids=[f'{c[0]}-{c[3]}' for c in CASES])
def test_smallest_nontrivial_match_closed_form(name, ei, n, kind, spectrum, k, nesting):
    assert spectrum[k] < spectrum[k + 1] - 1e-6, 'k must end at a spectral gap'
    op = GraphOperator.from_edge_index(ei, num_nodes=n, kind=kind)
    res = NeuralSVD(k + 1, nesting=nesting).fit(op, largest=False, steps=1000, tol=1e-5,
                                                progress=False)
    assert res.converged  # at 125-325 steps
    values, vectors = res.eigenvalues[1:], res.eigenvectors[:, 1:]
    assert relative_error(values, spectrum[1:k + 1]).max() < 1e-3
    # ordered as asked, without post-sorting
    assert (values[1:] >= values[:-1] * (1 - 1e-4)).all()
    exact = torch.linalg.eigh(op.to(dtype=torch.float64).to_dense())[1]
    assert max_principal_sine(vectors, exact[:, 1:k + 1]) < 1e-2
    assert torch.allclose(res.eigenvectors.T @ res.eigenvectors, torch.eye(k + 1), atol=1e-5)


def test_sbm_top16_gcn_vs_eigh():
    torch.manual_seed(0)
    sizes = [125] * 16
    probs = torch.full((16, 16), 0.002).fill_diagonal_(0.12)
    ei = stochastic_blockmodel_graph(sizes, probs)
    op = GraphOperator.from_edge_index(ei, num_nodes=2000, kind='gcn')
    ev, V = torch.linalg.eigh(op.to(dtype=torch.float64).to_dense())
    ev, V = ev.flip(0), V.flip(1)
    assert ev[15] - ev[16] > 0.05  # the block structure gives a gap
    # (float32: the Ritz residual's floor here is about 1e-6, so tol=1e-7 is never met)
    res = NeuralSVD(16).fit(op, steps=1000, tol=1e-5, progress=False)
    assert res.converged
    assert (res.eigenvalues.double() - ev[:16]).abs().max() < 1e-3
    assert max_principal_sine(res.eigenvectors, V[:, :16]) < 1e-2
    assert (res.eigenvalues[1:] <= res.eigenvalues[:-1]).all()


def test_out_of_steps_warns_unless_stopped_by_callback():
    import warnings
    n = 40
    op = GraphOperator.from_edge_index(cycle_graph(n), kind='laplacian')
    with pytest.warns(RuntimeWarning, match='did not reach tol=1e-07 within steps=10'):
        res = NeuralSVD(4, seed=0).fit(op, largest=False, steps=10, tol=1e-7, progress=False)
    assert not res.converged and res.steps == 10
    # without tol the result is certified at the end: 10 steps are not enough
    with pytest.warns(RuntimeWarning, match='did not reach the default accuracy within steps=10'):
        res = NeuralSVD(4, seed=0).fit(op, largest=False, steps=10, progress=False)
    assert not res.converged
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        NeuralSVD(4, seed=0).fit(op, largest=False, steps=100, tol=1e-7, check_every=5,
                                 callback=lambda *_: True, progress=False)


def test_rw_svd_form_recovers_singular_values():
    torch.manual_seed(1)
    ei = stochastic_blockmodel_graph([30, 30, 40], torch.tensor(
        [[0.3, 0.02, 0.02], [0.02, 0.3, 0.02], [0.02, 0.02, 0.3]]))
    op = GraphOperator.from_edge_index(ei, num_nodes=100, kind='rw_adjacency')
    sv = torch.linalg.svdvals(op.to(dtype=torch.float64).to_dense())
    res = NeuralSVD(4).fit(op, steps=3000, tol=1e-6, progress=False, refine=True)
    assert res.converged  # at 600 steps
    assert relative_error(res.eigenvalues, sv[:4]).max() < 1e-3
    assert res.left_vectors.shape == res.right_vectors.shape == (100, 4)
    # T v_l = s_l u_l
    M = op.to_dense()
    assert torch.allclose(M @ res.right_vectors, res.left_vectors * res.eigenvalues, atol=2e-3)


def test_joint_nesting_orders_a_shared_mlp():
    torch.manual_seed(0)
    # blocks of unequal size and density: top eigenvalues 1, .88, .79, .70, .57
    sizes = [20, 35, 50, 70]
    probs = torch.tensor([[0.5, 0.03, 0.01, 0.0], [0.03, 0.3, 0.03, 0.01],
                          [0.01, 0.03, 0.2, 0.03], [0.0, 0.01, 0.03, 0.12]])
    ei = stochastic_blockmodel_graph(sizes, probs)
    op = GraphOperator.from_edge_index(ei, num_nodes=175, kind='gcn')
    ev = torch.linalg.eigvalsh(op.to(dtype=torch.float64).to_dense()).flip(0)
    assert (ev[:4] - ev[1:5]).min() > 0.05
    x = torch.randn(175, 16)
    mlp = torch.nn.Sequential(torch.nn.Linear(16, 128), torch.nn.Tanh(), torch.nn.Linear(128, 4))
    res = NeuralSVD(4, nesting='joint').fit(op, model=mlp, inputs=x, steps=1500, lr=3e-3,
                                            progress=False)
    # no Ritz step and no sorting: the order comes from the nesting alone
    assert (res.eigenvalues[1:] < res.eigenvalues[:-1]).all()
    assert relative_error(res.eigenvalues, ev[:4]).max() < 1e-3


def test_tiny_spectral_gap_stays_finite_and_converges_in_subspace():
    # a 200-node path: relative gaps of order 1e-4 at the low end of 2I - L
    op = GraphOperator.from_edge_index(path_graph(200), kind='sym_laplacian')
    res = NeuralSVD(4).fit(op, largest=False, steps=3000, progress=False)
    assert all(torch.isfinite(torch.tensor(res.loss_history)))
    exact = path_sym_laplacian_spectrum(200)[:4]
    assert (res.eigenvalues.double() - exact).abs().max() < 1e-3


def test_warm_start_after_perturbation_needs_fewer_steps():
    torch.manual_seed(0)
    ei = stochastic_blockmodel_graph([100] * 4, torch.full((4, 4), 0.01).fill_diagonal_(0.2))
    op = GraphOperator.from_edge_index(ei, num_nodes=400, kind='gcn')
    cold = NeuralSVD(4).fit(op, steps=2000, tol=1e-5, progress=False)
    w = 1 + 0.05 * torch.rand(ei.size(1))
    w = (w + w[_reverse(ei)]) / 2
    op2 = GraphOperator.from_edge_index(ei, num_nodes=400, edge_weight=w, kind='gcn')
    warm = NeuralSVD(4).fit(op2, steps=2000, tol=1e-5, init=cold.eigenvectors, progress=False)
    cold2 = NeuralSVD(4).fit(op2, steps=2000, tol=1e-5, progress=False)
    assert cold.converged and warm.converged and cold2.converged  # else the steps say nothing
    ev = torch.linalg.eigvalsh(op2.to(dtype=torch.float64).to_dense()).flip(0)[:4]
    assert (warm.eigenvalues.double() - ev).abs().max() < 1e-4
    assert warm.steps < cold2.steps


def _reverse(ei):
    key, rev = ei[0] * 10**6 + ei[1], ei[1] * 10**6 + ei[0]
    order = torch.argsort(key)
    return order[torch.searchsorted(key[order], rev)]


def test_float64_is_supported():
    op = GraphOperator.from_edge_index(path_graph(30), kind='laplacian', dtype=torch.float64)
    res = NeuralSVD(3).fit(op, largest=False, steps=1500, tol=1e-12, progress=False)
    assert res.converged  # 1e-12: beyond float32's reach
    assert res.eigenvectors.dtype == torch.float64
    assert relative_error(res.eigenvalues[1:], path_laplacian_spectrum(30)[1:3]).max() < 1e-8


@pytest.mark.parametrize('k', [0, -1])
def test_k_must_be_positive(k):
    with pytest.raises(ValueError, match='k'):
        NeuralSVD(k)


def test_k_must_be_below_n():
    op = GraphOperator.from_edge_index(path_graph(5), kind='gcn')
    with pytest.raises(ValueError, match='k=5'):
        NeuralSVD(5).fit(op, progress=False)


def test_model_width_must_be_k():
    op = GraphOperator.from_edge_index(path_graph(10), kind='gcn')
    with pytest.raises(ValueError, match=r'\[10, 3\]'):
        NeuralSVD(3).fit(op, model=torch.nn.Linear(4, 2), inputs=torch.randn(10, 4), steps=2,
                         progress=False)


def test_model_and_operator_on_different_devices():
    op = GraphOperator.from_edge_index(path_graph(10), kind='gcn')
    model = torch.nn.Linear(4, 3).to('meta')
    with pytest.raises(ValueError, match='operator is on cpu'):
        NeuralSVD(3).fit(op, model=model, inputs=torch.randn(10, 4), progress=False)


def test_non_finite_loss_names_the_step():
    op = GraphOperator.from_edge_index(path_graph(10), kind='gcn')
    with pytest.raises(FloatingPointError, match='at step'):
        NeuralSVD(3).fit(op, steps=50, lr=1e3, progress=False)


def test_callback_can_stop_and_sees_eigenvalues():
    op = GraphOperator.from_edge_index(path_graph(10), kind='gcn')
    seen = []
    res = NeuralSVD(2).fit(op, steps=500, check_every=10, progress=False,
                           callback=lambda step, loss, ev: seen.append(ev.shape) or step >= 49)
    assert res.steps == 50 and seen[0] == (2,)
