"""AddNeuralSVDPE against closed-form spectra, torch.linalg.eigh and PyG."""
import inspect
import math
import re
from unittest import mock

import numpy as np
import pytest
import scipy.sparse as sp
import threadpoolctl
import torch
from torch_geometric.data import Batch, Data, InMemoryDataset
from torch_geometric.transforms import AddLaplacianEigenvectorPE
from torch_geometric.utils import (erdos_renyi_graph, get_laplacian, stochastic_blockmodel_graph,
                                   to_undirected)

from pyg_spectral.metrics import max_principal_sine, relative_error
from pyg_spectral.transforms import AddNeuralSVDPE, PEEncoder, fit_pe_encoder, precompute_pe
from pyg_spectral.transforms.encoder import CUTOFFS, chebyshev_filter

from graphs import cycle_graph, cycle_laplacian_spectrum, grid_graph, path_graph

METHODS = ['exact', 'neuralsvd', 'arpack']


def dense_laplacian(edge_index, n, normalization='sym'):
    ones = torch.ones(edge_index.size(1), dtype=torch.float64)
    ei, w = get_laplacian(edge_index, ones, normalization, num_nodes=n)
    return torch.sparse_coo_tensor(ei, w, (n, n)).to_dense()


def reference(edge_index, n, k, normalization='sym'):
    r"""eigh of the dense Laplacian: eigenvalues 1..k and the eigenvectors
    of the non-zero ones."""
    L = dense_laplacian(edge_index, n, normalization)
    values, vectors = torch.linalg.eigh(L)
    return L, values, vectors


def run(edge_index, n, k, method, **kw):
    data = AddNeuralSVDPE(k, method=method, seed=0, **kw)(Data(edge_index=edge_index, num_nodes=n))
    return data.laplacian_eigenvector_pe.double(), data.laplacian_eigenvector_pe_eigenvalues.double()


def check_pairs(L, pe, lam, tol=1e-5):
    r"""Orthonormal columns that are eigenvectors with the reported values."""
    k = pe.size(1)
    assert (pe.T @ pe - torch.eye(k, dtype=pe.dtype)).abs().max() < tol
    assert (L @ pe - pe * lam).norm(dim=0).max() < 10 * tol


def arpack_attempts(monkeypatch) -> list:
    r"""Records each attempt of the ARPACK policy as :obj:`(dtype,
    shift_invert, outcome)`, the outcome the name of its fallback or
    :obj:`'pairs'`: which path ran, read off the policy rather than guessed
    from the bits of its output."""
    from pyg_spectral.solvers.laplacian import arpack
    real, seen = arpack._attempt, []
    signature = inspect.signature(real)

    def spy(*args, **kwargs):
        bound = signature.bind(*args, **kwargs).arguments
        out = real(*args, **kwargs)
        seen.append((bound['dtype'], bound['shift_invert'],
                     out.name if isinstance(out, arpack._Fallback) else 'pairs'))
        return out
    monkeypatch.setattr(arpack, '_attempt', spy)
    return seen


def solver_spies(monkeypatch) -> tuple[mock.Mock, mock.Mock]:
    r"""Counters of the transform's calls of NeuralSVD and of ARPACK."""
    from pyg_spectral.transforms import add_neuralsvd_pe as pe_module
    spies = []
    for name in ('solve_neuralsvd', 'solve_arpack'):
        spies.append(mock.Mock(wraps=getattr(pe_module, name)))
        monkeypatch.setattr(pe_module, name, spies[-1])
    return tuple(spies)


@pytest.mark.parametrize('method', METHODS)
def test_cycle_closed_form(method):
    n, k = 64, 4  # lambda_4 < lambda_5: the subspace is well defined
    pe, lam = run(cycle_graph(n), n, k, method)
    expected = cycle_laplacian_spectrum(n)[1:k + 1] / 2  # 2-regular: L_sym = L / 2
    assert relative_error(lam[0], expected).max() < 1e-3
    x = torch.arange(n, dtype=torch.float64)
    exact = torch.stack([f(2 * math.pi * j * x / n) for j in (1, 2) for f in (torch.cos, torch.sin)], 1)
    assert max_principal_sine(pe, exact) < 1e-3
    check_pairs(dense_laplacian(cycle_graph(n), n), pe, lam)


@pytest.mark.parametrize('method', METHODS)
def test_grid_closed_form_combinatorial(method):
    a, b, k = 8, 9, 5
    n = a * b
    pe, lam = run(grid_graph(a, b), n, k, method, normalization=None)
    # eigenpairs of the grid: products of path cosines
    pairs = sorted(((2 - 2 * math.cos(math.pi * i / a)) + (2 - 2 * math.cos(math.pi * j / b)), i, j)
                   for i in range(a) for j in range(b))
    assert pairs[k][0] < pairs[k + 1][0] - 1e-3
    expected = torch.tensor([p[0] for p in pairs[1:k + 1]], dtype=torch.float64)
    assert relative_error(lam[0], expected).max() < 1e-3
    xa, xb = torch.arange(a, dtype=torch.float64), torch.arange(b, dtype=torch.float64)
    vecs = [torch.outer(torch.cos(math.pi * i * (xa + 0.5) / a),
                        torch.cos(math.pi * j * (xb + 0.5) / b)).reshape(-1) for _, i, j in pairs[1:k + 1]]
    assert max_principal_sine(pe, torch.stack(vecs, 1)) < 1e-3


@pytest.mark.parametrize('method', METHODS)
def test_random_graph_vs_eigh(method):
    torch.manual_seed(3)
    n, k = 80, 6
    edge_index = to_undirected(torch.cat([erdos_renyi_graph(n, 0.06), path_graph(n)], 1))
    L, values, vectors = reference(edge_index, n, k)
    pe, lam = run(edge_index, n, k, method)
    assert relative_error(lam[0], values[1:k + 1]).max() < 1e-3
    assert max_principal_sine(pe, vectors[:, 1:k + 1]) < 1e-3
    check_pairs(L, pe, lam)


def disconnected_graph():
    r"""Components of 40, 24 and 2 nodes, and two isolated nodes."""
    torch.manual_seed(1)
    parts = [to_undirected(torch.cat([erdos_renyi_graph(40, 0.1), path_graph(40)], 1)),
             path_graph(24) + 40, path_graph(2) + 64]
    return torch.cat(parts, 1), 68


@pytest.mark.parametrize('method', METHODS)
@pytest.mark.parametrize('normalization', ['sym', None])
def test_disconnected_graph(method, normalization):
    edge_index, n = disconnected_graph()
    # sym: the isolated nodes have Laplacian entry 1, so 3 zero eigenvalues; D - A: 5
    zeros = 3 if normalization == 'sym' else 5
    k = 8
    L, values, vectors = reference(edge_index, n, k, normalization)
    assert (values.abs() < 1e-9).sum() == zeros
    pe, lam = run(edge_index, n, k, method, normalization=normalization, random_sign=False)
    # the true k smallest after the trivial one
    assert relative_error(lam[0], values[1:k + 1], floor=1e-2).max() < 1e-3
    check_pairs(L, pe, lam)
    # zero part: inside the null space, orthogonal to the trivial vector
    trivial = (dense_laplacian(edge_index, n, None).diagonal() if normalization == 'sym'
               else torch.ones(n, dtype=torch.float64)).sqrt()
    # (relative to the trivial vector's norm: pe is float32)
    assert (trivial @ pe).abs().max() < 1e-6 * trivial.norm()
    assert max_principal_sine(pe[:, :zeros - 1], vectors[:, :zeros]) < 1e-6
    # non-zero part: the subspace of eigh's next eigenvectors
    rest = k - (zeros - 1)
    assert values[zeros + rest - 1] < values[zeros + rest] - 1e-6
    assert max_principal_sine(pe[:, zeros - 1:], vectors[:, zeros:zeros + rest]) < 1e-3
    # Helmert convention: the first column contrasts the 2nd largest component
    # (24 nodes) with the largest (40 nodes): constant sign on each
    first = pe[:, 0] * torch.sign(pe[0, 0])
    assert (first[:40] > 0).all() and (first[40:64] < 0).all() and (first[64:] == 0).all()


@pytest.mark.parametrize('method', ['auto', 'exact', 'neuralsvd', 'arpack'])
def test_batch_of_mixed_sizes(method):
    k = 4
    graphs = [Data(edge_index=cycle_graph(70), num_nodes=70),  # big enough for sparse solvers
              Data(edge_index=path_graph(3), num_nodes=3),  # fewer than k + 1 nodes
              Data(edge_index=grid_graph(4, 6), num_nodes=24),
              Data(edge_index=torch.empty(2, 0, dtype=torch.long), num_nodes=1)]
    batch = Batch.from_data_list(graphs)
    out = AddNeuralSVDPE(k, method=method, seed=0)(batch)
    assert out.laplacian_eigenvector_pe.shape == (batch.num_nodes, k)
    assert out.laplacian_eigenvector_pe_eigenvalues.shape == (len(graphs), k)
    for g, data in enumerate(out.to_data_list()):
        n = data.num_nodes
        pe, lam = data.laplacian_eigenvector_pe.double(), data.laplacian_eigenvector_pe_eigenvalues.double()
        L, values, vectors = reference(data.edge_index, n, k)
        found = min(k, n - 1)
        assert (pe[:, found:] == 0).all() and (lam[0, found:] == 0).all()  # zero padding
        if found == 0:
            continue
        assert relative_error(lam[0, :found], values[1:found + 1], floor=1e-2).max() < 1e-3
        check_pairs(L, pe[:, :found], lam[:, :found])
        if found < n - 1 and values[found] < values[found + 1] - 1e-6:
            assert max_principal_sine(pe[:, :found], vectors[:, 1:found + 1]) < 1e-3
        # per graph, the same as the transform on the graph alone up to signs
        alone = AddNeuralSVDPE(k, method=method, seed=0)(graphs[g].clone())
        assert torch.allclose(alone.laplacian_eigenvector_pe.abs(), pe.abs().float(), atol=1e-4)


@pytest.mark.parametrize('normalization', ['sym', None])
def test_exact_batch_of_disconnected_graphs(normalization):
    r"""Padded blocks mixing connected and disconnected graphs of one size
    (the deflation restricted to each component), against eigh per graph;
    under 'sym' each graph gets the same bits in the batch as alone (under
    D - A the deflation shift follows the batch's largest degree, so a basis
    inside a repeated eigenvalue may differ)."""
    k = 5
    two_paths = torch.cat([path_graph(10), path_graph(6) + 10], 1)  # 16 nodes, 2 components
    three = torch.cat([cycle_graph(9), path_graph(5) + 9], 1)  # + 2 isolated nodes: 16 nodes
    graphs = [Data(edge_index=two_paths, num_nodes=16), Data(edge_index=cycle_graph(16), num_nodes=16),
              Data(edge_index=three, num_nodes=16), Data(edge_index=grid_graph(4, 4), num_nodes=16)]
    transform = AddNeuralSVDPE(k, method='exact', normalization=normalization, random_sign=False)
    out = transform(Batch.from_data_list(graphs))
    for g, data in enumerate(out.to_data_list()):
        n = data.num_nodes
        pe, lam = data.laplacian_eigenvector_pe.double(), data.laplacian_eigenvector_pe_eigenvalues.double()
        L, values, _ = reference(data.edge_index, n, k, normalization)
        assert relative_error(lam[0], values[1:k + 1], floor=1e-2).max() < 1e-3
        check_pairs(L, pe, lam)
        if normalization == 'sym':
            alone = transform(graphs[g].clone()).laplacian_eigenvector_pe
            assert torch.equal(alone, data.laplacian_eigenvector_pe)


@pytest.mark.parametrize('dtype', [None, torch.float64])
def test_arpack_recovers_many_missed_copies(dtype):
    r"""A 64-cycle has only double eigenvalues: in float64 a single plain
    Lanczos round sees one copy of each (checked), the probe and a recovery
    round must find the other five."""
    n, k = 64, 10  # lambda_10 = lambda_9 < lambda_11
    x = torch.arange(n, dtype=torch.float64)
    exact = torch.stack([f(2 * math.pi * j * x / n) for j in range(1, k // 2 + 1)
                         for f in (torch.cos, torch.sin)], 1)
    if dtype == torch.float64:
        once, _ = run(cycle_graph(n), n, k, 'arpack', arpack_options=dict(
            dtype=dtype, max_rounds=1, shift_invert=False))
        assert max_principal_sine(once, exact) > 0.5
    pe, lam = run(cycle_graph(n), n, k, 'arpack',
                  arpack_options=dict(dtype=dtype, shift_invert=False))
    expected = cycle_laplacian_spectrum(n)[1:k + 1] / 2
    assert relative_error(lam[0], expected).max() < 1e-3
    assert max_principal_sine(pe, exact) < 1e-3
    check_pairs(dense_laplacian(cycle_graph(n), n), pe, lam)


def sparse_random_graph():
    r"""300 nodes (a path plus random edges); for k = 8 the gap
    lambda_9 - lambda_8 is ~0.013."""
    torch.manual_seed(2)
    n = 300
    return to_undirected(torch.cat([erdos_renyi_graph(n, 0.01), path_graph(n)], 1)), n


@pytest.mark.parametrize('dtype', [None, torch.float32, torch.float64])
def test_arpack_precisions_vs_eigh(dtype):
    edge_index, n = sparse_random_graph()
    k = 8
    L, values, vectors = reference(edge_index, n, k)
    assert values[k] < values[k + 1] - 1e-3
    pe, lam = run(edge_index, n, k, 'arpack', arpack_options=dict(dtype=dtype))
    assert relative_error(lam[0], values[1:k + 1]).max() < 1e-5
    assert max_principal_sine(pe, vectors[:, 1:k + 1]) < 1e-3
    check_pairs(L, pe, lam)


def test_arpack_uncertified_float32_falls_back_to_float64(monkeypatch):
    from pyg_spectral.solvers.laplacian import arpack
    edge_index, n = sparse_random_graph()
    k = 8
    double, _ = run(edge_index, n, k, 'arpack', arpack_options=dict(dtype=torch.float64))
    seen = arpack_attempts(monkeypatch)
    run(edge_index, n, k, 'arpack')
    assert seen == [(None, None, 'pairs')]  # the float32 round, certified and kept
    seen.clear()
    monkeypatch.setattr(arpack, 'CERTIFIED_SINE', 0.0)
    fallback, _ = run(edge_index, n, k, 'arpack')
    assert seen == [(None, None, 'UNCERTIFIED'), (torch.float64, None, 'pairs')]
    assert torch.equal(fallback, double)


def mesh_with_components():
    r"""A 12 x 14 grid, a 9 x 9 grid and an isolated node: a mesh-like graph
    with a clustered low end and a zero eigenvalue repeated twice."""
    big, small = grid_graph(12, 14), grid_graph(9, 9) + 168
    return torch.cat([big, small], 1), 12 * 14 + 81 + 1


@pytest.mark.parametrize('normalization', ['sym', None])
def test_arpack_shift_invert_vs_eigh(normalization):
    edge_index, n = mesh_with_components()
    k = 10  # one zero contrast, then 9 non-zero pairs
    L, values, vectors = reference(edge_index, n, k, normalization)
    pe, lam = run(edge_index, n, k, 'arpack', arpack_options=dict(shift_invert=True),
                  normalization=normalization)
    # the isolated node has eigenvalue 1 under 'sym', 0 under D - A
    zeros = 2 if normalization == 'sym' else 3
    assert (values.abs() < 1e-10).sum() == zeros
    assert (lam[0, :zeros - 1] == 0).all()
    # (the transform returns float32)
    assert relative_error(lam[0, zeros - 1:], values[zeros:k + 1]).max() < 1e-6
    # the non-zero part spans the exact eigenvectors (lambda_10 < lambda_11 here)
    assert values[k] < values[k + 1] - 1e-6
    assert max_principal_sine(pe[:, zeros - 1:], vectors[:, zeros:k + 1]) < 1e-5
    check_pairs(L, pe, lam)


def test_arpack_shift_invert_recovers_missed_copies():
    n, k = 64, 10  # all eigenvalues of a cycle are double
    x = torch.arange(n, dtype=torch.float64)
    exact = torch.stack([f(2 * math.pi * j * x / n) for j in range(1, k // 2 + 1)
                         for f in (torch.cos, torch.sin)], 1)
    pe, lam = run(cycle_graph(n), n, k, 'arpack', arpack_options=dict(shift_invert=True))
    assert relative_error(lam[0], cycle_laplacian_spectrum(n)[1:k + 1] / 2).max() < 1e-6
    assert max_principal_sine(pe, exact) < 1e-5


def test_arpack_switches_to_shift_invert_when_lanczos_stalls(monkeypatch):
    r"""With no Lanczos restart to spare, the default falls back to
    shift-invert and gives its result; with :obj:`shift_invert=False` the
    non-convergence is raised."""
    from scipy.sparse.linalg import ArpackNoConvergence
    from pyg_spectral.solvers.laplacian import arpack
    edge_index, n = sparse_random_graph()
    k = 10
    forced, _ = run(edge_index, n, k, 'arpack', arpack_options=dict(shift_invert=True))
    seen = arpack_attempts(monkeypatch)
    run(edge_index, n, k, 'arpack')
    assert seen == [(None, None, 'pairs')]  # plain Lanczos, enough restarts
    seen.clear()
    monkeypatch.setattr(arpack, 'LANCZOS_RESTARTS', 1)
    assert torch.equal(run(edge_index, n, k, 'arpack')[0], forced)
    assert seen == [(None, None, 'STALLED'), (None, True, 'pairs')]
    with pytest.raises(ArpackNoConvergence):
        run(edge_index, n, k, 'arpack', arpack_options=dict(shift_invert=False, maxiter=1))


def test_neuralsvd_out_of_steps_warns_and_auto_falls_back_to_arpack(monkeypatch):
    r"""A NeuralSVD fit that runs out of steps is never returned silently:
    an explicit :obj:`'neuralsvd'` warns (and keeps the unconverged pairs);
    :obj:`'auto'`, which picks NeuralSVD on accelerators only, warns and
    solves the graph with ARPACK; the accelerator is simulated on the CPU."""
    edge_index, n = mesh_with_components()
    k = 10
    L, values, vectors = reference(edge_index, n, k)
    with pytest.warns(RuntimeWarning, match='did not converge on graph 0 .*after 50 steps'):
        unconverged, _ = run(edge_index, n, k, 'neuralsvd', neuralsvd_options=dict(steps=50))
    assert max_principal_sine(unconverged[:, 1:], vectors[:, 2:k + 1]) > 1e-2  # really wrong

    edge_index, n = sparse_random_graph()  # not mesh-like: 'auto' tries NeuralSVD
    L, values, vectors = reference(edge_index, n, k)
    monkeypatch.setattr(AddNeuralSVDPE, '_accelerated', staticmethod(lambda problem: True))
    monkeypatch.setattr(AddNeuralSVDPE, 'EXACT_THRESHOLD', 0)  # n = 300: else 'exact'
    neuralsvd, arpack = solver_spies(monkeypatch)
    with pytest.warns(RuntimeWarning, match='solving it with ARPACK'):
        pe, lam = run(edge_index, n, k, 'auto', neuralsvd_options=dict(steps=50))
    assert neuralsvd.call_count == 1 and arpack.call_count == 1
    assert max_principal_sine(pe, vectors[:, 1:k + 1]) < 1e-3
    check_pairs(L, pe, lam)


def test_auto_on_accelerator_sends_meshes_to_arpack(monkeypatch):
    r"""On an accelerator (simulated) :obj:`'auto'` solves a mesh-like graph
    with ARPACK at once (no NeuralSVD attempt, no warning) and a random
    graph with NeuralSVD."""
    import warnings
    monkeypatch.setattr(AddNeuralSVDPE, '_accelerated', staticmethod(lambda problem: True))
    monkeypatch.setattr(AddNeuralSVDPE, 'EXACT_THRESHOLD', 0)
    neuralsvd, arpack = solver_spies(monkeypatch)
    edge_index, n = mesh_with_components()
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        run(edge_index, n, 10, 'auto', neuralsvd_options=dict(steps=50))
    assert neuralsvd.call_count == 0 and arpack.call_count == 1
    edge_index, n = sparse_random_graph()
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # NeuralSVD's own answer, no fallback
        pe, lam = run(edge_index, n, 8, 'auto')
    assert neuralsvd.call_count == 1 and arpack.call_count == 1
    L, values, vectors = reference(edge_index, n, 8)
    assert max_principal_sine(pe, vectors[:, 1:9]) < 1e-3
    check_pairs(L, pe, lam)


def test_neuralsvd_without_tol_does_not_warn():
    import warnings
    edge_index, n = mesh_with_components()
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        run(edge_index, n, 4, 'neuralsvd', neuralsvd_options=dict(steps=20, tol=None))


def test_envelope_ratio_grows_like_sqrt_n_on_meshes_and_like_n_on_expanders():
    from pyg_spectral.solvers.laplacian import MESH_ENVELOPE, envelope_ratio

    def ratio(edge_index, n):
        return envelope_ratio(sp.csr_matrix(dense_laplacian(edge_index, n).numpy()))
    n = 50  # a path in RCM order is tridiagonal: one entry left of the diagonal per row
    assert ratio(path_graph(n), n) == pytest.approx((n - 1) / (3 * n - 2))
    torch.manual_seed(0)
    for side in (20, 40):
        n = side * side
        expander = to_undirected(erdos_renyi_graph(n, 10 / n))
        assert ratio(grid_graph(side, side), n) < MESH_ENVELOPE * n ** 0.5 < ratio(expander, n)


def test_arpack_default_mode_by_envelope(monkeypatch):
    r"""Mesh-like graphs (a grid pair, a cycle) go to shift-invert from the
    start, a random graph to plain Lanczos."""
    seen = arpack_attempts(monkeypatch)
    for edge_index, n in (mesh_with_components(), (cycle_graph(64), 64), sparse_random_graph()):
        run(edge_index, n, 10, 'arpack')
    assert seen == [(None, True, 'pairs'), (None, True, 'pairs'), (None, None, 'pairs')]


def test_seed_sign_convention_and_attr_name():
    edge_index, n = disconnected_graph()
    data = Data(x=torch.ones(n, 2), edge_index=edge_index)
    for method in METHODS:
        a = AddNeuralSVDPE(6, method=method, seed=7)(data.clone()).laplacian_eigenvector_pe
        b = AddNeuralSVDPE(6, method=method, seed=7)(data.clone()).laplacian_eigenvector_pe
        assert torch.equal(a, b)
    fixed = AddNeuralSVDPE(6, random_sign=False)(data.clone()).laplacian_eigenvector_pe
    ties = fixed.abs() >= fixed.abs().max(0).values * (1 - 1e-3)
    top = (ties * torch.arange(n, 0, -1)[:, None]).argmax(0)  # first tie
    assert (fixed[top, torch.arange(6)] > 0).all()
    flipped = [AddNeuralSVDPE(6, seed=s)(data.clone()).laplacian_eigenvector_pe for s in range(4)]
    assert all(torch.allclose(f.abs(), fixed.abs()) for f in flipped)
    assert len({tuple(torch.sign(f[top, torch.arange(6)]).tolist()) for f in flipped}) > 1
    out = AddNeuralSVDPE(6, attr_name=None, random_sign=False)(data.clone())
    assert out.x.shape == (n, 8) and torch.equal(out.x[:, 2:], fixed)
    assert out.laplacian_eigenvector_pe_eigenvalues.shape == (1, 6)


def test_signs_agree_across_solvers_on_a_symmetric_graph():
    r"""A path's eigenvectors have entries of equal magnitude at mirrored
    nodes, which the iterative solvers return only to their accuracy: the
    sign convention takes such near-ties (within 1e-3) as ties, so every
    solver gives the same signs (at 1e-6, NeuralSVD's differed from the
    dense solver's in 2 of 8 columns)."""
    data = Data(edge_index=path_graph(100), num_nodes=100)
    exact = AddNeuralSVDPE(8, method='exact', random_sign=False)(data.clone())
    for method in ('arpack', 'neuralsvd'):
        out = AddNeuralSVDPE(8, method=method, random_sign=False)(data.clone())
        assert (out.laplacian_eigenvector_pe - exact.laplacian_eigenvector_pe).abs().max() < 1e-3


def test_bad_input():
    with pytest.raises(ValueError, match='k'):
        AddNeuralSVDPE(0)
    with pytest.raises(ValueError, match='method'):
        AddNeuralSVDPE(4, method='lanczos')
    with pytest.raises(ValueError, match='normalization'):
        AddNeuralSVDPE(4, normalization='rw')
    with pytest.raises(ValueError, match='directed'):
        AddNeuralSVDPE(2)(Data(edge_index=torch.tensor([[0, 1], [1, 2]]), num_nodes=3))
    with pytest.raises(TypeError, match='unexpected keyword argument.*stepz'):
        AddNeuralSVDPE(2, method='neuralsvd', stepz=3)
    with pytest.raises(ValueError, match='dtype must be None, torch.float32 or torch.float64'):
        AddNeuralSVDPE(2, method='arpack', arpack_options=dict(dtype=torch.float16))


@pytest.mark.parametrize('key,value', [('which', 'LA'), ('sigma', 0.5), ('v0', None), ('k', 3),
                                       ('largest', True), ('return_eigenvectors', False)])
def test_solver_arguments_that_change_the_result_are_refused(key, value):
    r"""A solver argument that would return other pairs than the k smallest
    non-trivial ones (or none) is refused with the reason, as a keyword
    argument and in either options dict: :obj:`which='LA'` once reached
    eigsh and returned the largest eigenpairs."""
    if key != 'k':  # (k is the transform's first argument)
        with pytest.raises(TypeError, match=f'does not take {key}='):
            AddNeuralSVDPE(4, method='arpack', **{key: value})
    for argument, method in (('arpack_options', 'arpack'), ('neuralsvd_options', 'neuralsvd')):
        with pytest.raises(ValueError, match=re.escape(f"{argument}[{key!r}] cannot be set")):
            AddNeuralSVDPE(4, method=method, **{argument: {key: value}})
    with pytest.raises(TypeError, match="which='LA'.*k smallest non-trivial eigenpairs"):
        AddNeuralSVDPE(4, method='arpack', which='LA')


def test_solver_keywords_say_how_to_write_the_call():
    with pytest.raises(TypeError, match=re.escape("pass arpack_options={'tol': 1e-06}")):
        AddNeuralSVDPE(4, method='arpack', tol=1e-6)
    # tol means different things to the two solvers that 'auto' may run
    with pytest.raises(TypeError, match=re.escape("pass arpack_options={'tol': 1e-06, "
                                                  "'max_rounds': 1}, neuralsvd_options="
                                                  "{'tol': 1e-06, 'steps': 9} (tol: an option "
                                                  "of both solvers")):
        AddNeuralSVDPE(4, tol=1e-6, steps=9, max_rounds=1)
    with pytest.raises(TypeError, match="steps=, a setting of neuralsvd_options, which "
                                        "method='arpack' does not use"):
        AddNeuralSVDPE(4, method='arpack', steps=9)
    with pytest.raises(TypeError, match="method='exact' runs no iterative solver"):
        AddNeuralSVDPE(4, method='exact', tol=1e-6)


def test_solver_options_are_checked_at_construction():
    with pytest.raises(ValueError, match="arpack_options has no option 'steps'; its options "
                                         "are: tol, ncv, maxiter, max_rounds"):
        AddNeuralSVDPE(4, method='arpack', arpack_options={'steps': 9})
    with pytest.raises(ValueError, match="neuralsvd_options: steps must be an integer >= 1, "
                                         "got 0"):
        AddNeuralSVDPE(4, method='neuralsvd', neuralsvd_options={'steps': 0})
    with pytest.raises(ValueError, match='arpack_options: shift_invert must be None, True or '
                                         'False, got 1'):
        AddNeuralSVDPE(4, method='arpack', arpack_options={'shift_invert': 1})
    with pytest.raises(ValueError, match="neuralsvd_options are given, but method='arpack' "
                                         "never runs that solver"):
        AddNeuralSVDPE(4, method='arpack', neuralsvd_options={'steps': 9})
    with pytest.raises(ValueError, match="arpack_options are given, but method='exact'"):
        AddNeuralSVDPE(4, method='exact', arpack_options={'tol': 0})
    with pytest.raises(TypeError, match='arpack_options must be a dict of options or None, '
                                        'got list'):
        AddNeuralSVDPE(4, arpack_options=[('tol', 0)])
    both = AddNeuralSVDPE(4, arpack_options={'tol': 0}, neuralsvd_options={'tol': None})
    assert both.arpack_options == {'tol': 0} and both.neuralsvd_options == {'tol': None}


def test_each_solver_gets_its_own_options(monkeypatch):
    r"""Under :obj:`'auto'` (on a simulated accelerator) NeuralSVD gets
    :obj:`neuralsvd_options`, runs out of steps, and ARPACK solves the graph
    again with :obj:`arpack_options`: its tolerance, and one round without
    the probe for missed copies."""
    from pyg_spectral.solvers import NeuralSVD
    from pyg_spectral.solvers.laplacian import arpack
    fits, solves = [], []
    fit, eigsh = NeuralSVD.fit, arpack.eigsh

    def spy_fit(self, operator, **kwargs):
        fits.append(kwargs)
        return fit(self, operator, **kwargs)

    def spy_eigsh(A, **kwargs):
        solves.append(kwargs)
        return eigsh(A, **kwargs)
    monkeypatch.setattr(NeuralSVD, 'fit', spy_fit)
    monkeypatch.setattr(arpack, 'eigsh', spy_eigsh)
    monkeypatch.setattr(AddNeuralSVDPE, '_accelerated', staticmethod(lambda problem: True))
    monkeypatch.setattr(AddNeuralSVDPE, 'EXACT_THRESHOLD', 0)
    edge_index, n = sparse_random_graph()
    with pytest.warns(RuntimeWarning, match='solving it with ARPACK'):
        run(edge_index, n, 8, 'auto', neuralsvd_options=dict(steps=50, tol=1e-4),
            arpack_options=dict(tol=1e-9, max_rounds=1))
    assert len(fits) == 1 and fits[0]['steps'] == 50 and fits[0]['tol'] == 1e-4
    assert fits[0]['largest'] is False
    assert [(call['tol'], call['which']) for call in solves] == [(1e-9, 'SA')]  # no probe
    solves.clear()
    run(edge_index, n, 8, 'arpack', arpack_options=dict(tol=1e-9))
    assert len(solves) > 1 and solves[1]['k'] == 1  # the probe


@pytest.fixture
def one_thread():
    r"""Planetoid-size references run single-threaded: on a loaded 2-core
    machine the BLAS/LAPACK threads of torch and SciPy spin on busy cores and
    make them 3-10x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpoolctl.threadpool_limits(1):
        yield
    torch.set_num_threads(before)


@pytest.mark.parametrize('name,k,components,isolated', [('cora', 90, 78, 0), ('citeseer', 400, 438, 48)])
def test_planetoid_repeated_zero_vs_dense(name, k, components, isolated, request, one_thread):
    data = request.getfixturevalue(name)
    n = data.num_nodes
    L = dense_laplacian(data.edge_index, n)
    values = torch.linalg.eigvalsh(L)
    zeros = components - isolated  # 78 (Cora), 390 (CiteSeer)
    assert (values < 1e-8).sum() == zeros
    for kk in (16, k):  # PyG's k = 16 (all zero), then past the zero eigenspace
        out = AddNeuralSVDPE(kk, seed=0, attr_name='pe')(data.clone())
        pe, lam = out.pe.double(), out.pe_eigenvalues[0].double()
        assert relative_error(lam, values[1:kk + 1], floor=1e-2).max() < 1e-3
        assert (pe.T @ pe - torch.eye(kk, dtype=torch.float64)).abs().max() < 1e-5
        assert (L @ pe - pe * lam).norm(dim=0).max() < 1e-5
    assert kk > zeros - 1 and lam[zeros - 1] > 1e-4  # the solver found the non-zero ones too


def test_pubmed_matches_pyg(pubmed, one_thread):
    k = 16
    ours = AddNeuralSVDPE(k, seed=0, attr_name='pe')(pubmed.clone()).pe
    torch.manual_seed(0)
    pyg = AddLaplacianEigenvectorPE(k, attr_name='pe', is_undirected=True)(pubmed.clone()).pe
    assert max_principal_sine(ours, pyg) < 1e-4


def small_dataset():
    graphs = [Data(x=torch.ones(n, 2), edge_index=cycle_graph(n)) for n in range(5, 30, 2)]
    dataset = InMemoryDataset()
    dataset.data, dataset.slices = InMemoryDataset.collate(graphs)
    return dataset


def test_precompute_dataset_with_cache(tmp_path, monkeypatch):
    dataset = small_dataset()
    transform = AddNeuralSVDPE(3, seed=0)
    precompute_pe(dataset, transform, cache_dir=tmp_path, batch_size=5, progress=False)
    for i in range(len(dataset)):
        data = dataset[i]
        alone = transform(Data(edge_index=data.edge_index, num_nodes=data.num_nodes))
        assert torch.allclose(data.laplacian_eigenvector_pe.abs(),
                              alone.laplacian_eigenvector_pe.abs(), atol=1e-5)
        assert data.laplacian_eigenvector_pe_eigenvalues.shape == (1, 3)
    assert len(list(tmp_path.iterdir())) == 1
    again = small_dataset()
    monkeypatch.setattr(AddNeuralSVDPE, 'encode', lambda *a, **kw: pytest.fail('recomputed'))
    precompute_pe(again, transform, cache_dir=tmp_path, progress=False)
    assert torch.equal(again[5].laplacian_eigenvector_pe, dataset[5].laplacian_eigenvector_pe)


def block_family(count: int, blocks: int, seed: int) -> list[Data]:
    r"""Block models of 150-250 nodes: the low end of the spectrum is the
    blocks - 1 community eigenvalues, then a gap to the bulk."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(count):
        sizes = torch.randint(30, 50, (blocks,), generator=gen)
        probs = torch.full((blocks, blocks), 0.005).fill_diagonal_(0.3)
        torch.manual_seed(int(torch.randint(1 << 30, (1,), generator=gen)))
        out.append(Data(edge_index=stochastic_blockmodel_graph(sizes, probs),
                        num_nodes=int(sizes.sum())))
    return out


def test_chebyshev_filter_is_small_on_the_stop_band_and_grows_below():
    K, cutoff = 12, 0.3
    c = chebyshev_filter(K, cutoff).numpy()
    x = np.linspace(-1, 1, 401)
    y = (x - cutoff) / (1 - cutoff)  # lambda / s = (x + 1) / 2 in [cutoff, 1] <-> y in [-1, 1]
    expected = np.cos((K - 1) * np.arccos(np.clip(y, -1, 1)))
    below = y < -1
    expected[below] = (-1) ** (K - 1) * np.cosh((K - 1) * np.arccosh(-y[below]))
    values = np.polynomial.chebyshev.chebval(x, c)
    scale = np.abs(np.polynomial.chebyshev.Chebyshev.basis(K - 1)(
        np.polynomial.chebyshev.Chebyshev([-cutoff / (1 - cutoff), 1 / (1 - cutoff)])).coef).max()
    assert np.allclose(values * scale, expected, rtol=1e-9, atol=1e-6)
    assert np.abs(values[~below]).max() * scale <= 1 + 1e-9
    with pytest.raises(ValueError, match='cutoff'):
        chebyshev_filter(K, 1.0)
    with pytest.raises(ValueError, match='cutoff'):
        PEEncoder(4, cutoff=0.0)


def test_pe_encoder_is_the_chebyshev_series_of_its_weights():
    torch.manual_seed(0)
    encoder = PEEncoder(3, hidden=4, num_layers=2, K=5, oversample=1).double()
    edge_index = grid_graph(4, 5)
    x = torch.randn(20, 4, dtype=torch.float64)
    L_hat = dense_laplacian(edge_index, 20) - torch.eye(20, dtype=torch.float64)  # 2L/2 - I
    expected = x
    for lin in encoder.lins:
        terms = [expected, L_hat @ expected]
        while len(terms) < 5:
            terms.append(2 * L_hat @ terms[-1] - terms[-2])
        W = lin.weight.view(lin.out_features, 5, -1)  # [out, K, in]
        expected = sum(t @ W[:, j].T for j, t in enumerate(terms))
    assert torch.allclose(encoder(x, edge_index), expected, atol=1e-10)
    assert 'cutoff=0.1' in repr(encoder)


def test_inductive_encoder_finds_the_family_gap_and_encodes_unseen_graphs():
    k = 4  # 5 blocks: the 4 community eigenvectors are the ones wanted
    encoder = PEEncoder(k, K=16, oversample=2)
    train = block_family(6, k + 1, seed=0)
    scores = fit_pe_encoder(encoder, train, progress=False)
    assert len(scores) == len(CUTOFFS) and encoder.cutoff == CUTOFFS[int(np.argmin(scores))]
    # the chosen stop band starts above the k community eigenvalues of every
    # training graph, and not far into the bulk after them
    for d in train:
        values = torch.linalg.eigvalsh(dense_laplacian(d.edge_index, d.num_nodes))
        assert values[k] < 2 * encoder.cutoff < 1.5 * values[k + 1]
    for test in block_family(3, k + 1, seed=1):
        exact = AddNeuralSVDPE(k, method='exact')(test.clone())
        out = AddNeuralSVDPE(k, encoder=encoder, seed=0)(test.clone())
        pe = out.laplacian_eigenvector_pe
        assert (pe.T @ pe - torch.eye(k)).abs().max() < 1e-4
        assert max_principal_sine(pe, exact.laplacian_eigenvector_pe) < 1e-2
        assert relative_error(out.laplacian_eigenvector_pe_eigenvalues,
                              exact.laplacian_eigenvector_pe_eigenvalues).max() < 1e-3
    with pytest.raises(ValueError, match='at least 2 \\* out_channels'):
        fit_pe_encoder(encoder, [Data(edge_index=path_graph(5), num_nodes=5)], progress=False)




def test_seeded_signs_are_the_same_alone_in_a_batch_and_precomputed(tmp_path):
    from torch_geometric.data import InMemoryDataset
    from pyg_spectral.transforms import precompute_pe
    graphs = [Data(edge_index=cycle_graph(9), num_nodes=9),
              Data(edge_index=grid_graph(3, 4), num_nodes=12),
              Data(edge_index=path_graph(7), num_nodes=7)]
    transform = AddNeuralSVDPE(4, method='exact', seed=5)
    alone = [transform(g.clone()).laplacian_eigenvector_pe for g in graphs]
    for order in ([0, 1, 2], [2, 0, 1]):
        batch = transform(Batch.from_data_list([graphs[i] for i in order]))
        for data, i in zip(batch.to_data_list(), order):
            assert torch.equal(data.laplacian_eigenvector_pe, alone[i])

    class Graphs(InMemoryDataset):
        def __init__(self):
            super().__init__(str(tmp_path / 'data'))
            self.data, self.slices = self.collate([g.clone() for g in graphs])
    precomputed = precompute_pe(Graphs(), transform, cache_dir=tmp_path / 'cache', progress=False)
    for i in range(3):
        assert torch.equal(precomputed[i].laplacian_eigenvector_pe, alone[i])
    # the signs still differ between seeds and between columns
    other = AddNeuralSVDPE(4, method='exact', seed=6)(graphs[1].clone()).laplacian_eigenvector_pe
    assert not torch.equal(other, alone[1]) and torch.allclose(other.abs(), alone[1].abs())


def test_attr_name_none_on_a_batch_without_x_splits_back():
    graphs = [Data(edge_index=cycle_graph(6), num_nodes=6), Data(edge_index=path_graph(5), num_nodes=5)]
    transform = AddNeuralSVDPE(3, attr_name=None, method='exact', seed=0)
    parts = transform(Batch.from_data_list(graphs)).to_data_list()
    assert [tuple(p.x.shape) for p in parts] == [(6, 3), (5, 3)]
    # each graph's x is its own encoding, the same bits as the graph's alone
    for part, graph in zip(parts, graphs):
        assert torch.equal(part.x, transform(graph.clone()).x)


def test_directed_graph_gets_advice_that_works():
    directed = Data(edge_index=torch.tensor([[0, 1, 2], [1, 2, 0]]), num_nodes=3)
    with pytest.raises(ValueError, match='ToUndirected') as info:
        AddNeuralSVDPE(1)(directed.clone())
    assert 'rw_adjacency' not in str(info.value)
    import torch_geometric.transforms as T
    undirected = T.ToUndirected()(directed.clone())
    fixed = AddNeuralSVDPE(1, method='exact')(undirected.clone())
    # the triangle: L_sym = I - (J - I) / 2, eigenvalues 0, 3/2, 3/2
    pe, lam = fixed.laplacian_eigenvector_pe.double(), torch.tensor([1.5], dtype=torch.float64)
    assert torch.allclose(fixed.laplacian_eigenvector_pe_eigenvalues.double(), lam, atol=1e-6)
    check_pairs(dense_laplacian(undirected.edge_index, 3), pe, lam)
    assert abs(float(pe.sum())) < 1e-6  # orthogonal to the trivial (constant) vector


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the no-CUDA message')
def test_device_is_checked_at_construction():
    with pytest.raises(ValueError, match="device='cuda' was asked for, but CUDA is not available"):
        AddNeuralSVDPE(4, device='cuda')
    with pytest.raises(ValueError, match="device='gpu0' is not a torch device"):
        AddNeuralSVDPE(4, device='gpu0')
