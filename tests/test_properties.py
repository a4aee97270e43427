"""Property-based tests: small generated graphs (no edges, one node,
isolated nodes, self-loops, duplicate edges, many components, weights over
twelve orders of magnitude, permuted node order). Every entry point either
returns a result that meets its contract against dense torch.linalg.eigh,
says it did not (converged=False with a RuntimeWarning), or raises a
ValueError/TypeError naming the argument; never a plausible wrong array.

Derandomized with a fixed example budget, so a run is reproducible and short."""
import warnings
from unittest import mock

import pytest
import scipy.sparse as sp
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from scipy.sparse.csgraph import connected_components
from torch_geometric.data import Data
from torch_geometric.utils import get_laplacian

from pyg_spectral import GraphOperator, NeuralSVD
from pyg_spectral.metrics import max_principal_sine
from pyg_spectral.transforms import AddNeuralSVDPE
from pyg_spectral.transforms import add_neuralsvd_pe as pe_module

PROFILE = settings(derandomize=True, database=None, deadline=None, max_examples=60,
                   suppress_health_check=[HealthCheck.too_slow])


@st.composite
def graphs(draw, min_nodes=1, max_nodes=12, max_components=None, min_edges=0,
           backbone=False):
    r"""An undirected edge list (both directions, duplicates and self-loops
    kept), optional symmetric weights 10^[-6, 6], relabelled by a random
    permutation. With :obj:`max_components`, edges only join nodes of one
    residue class modulo a drawn count c, so there are at least c
    components; with :obj:`backbone`, a path through each class makes it
    exactly c."""
    n = draw(st.integers(min_nodes, max_nodes))
    pairs = draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)),
                          min_size=min_edges, max_size=max(3 * n, min_edges)))
    if max_components is not None:
        c = draw(st.integers(1, max_components))
        pairs = [(a, b) for a, b in pairs if a % c == b % c]
        if backbone:
            pairs += [(i, i + c) for i in range(n - c)]
    # each drawn pair one way round, mirrored in the same order: the weights
    # of duplicates then sum in the same order both ways (test_reliability's
    # xfail shows the library rejecting the graph otherwise)
    pairs = [(min(a, b), max(a, b)) for a, b in pairs]
    weights = None
    if draw(st.booleans()):
        weights = torch.tensor(draw(st.lists(st.floats(-6, 6), min_size=len(pairs),
                                             max_size=len(pairs))), dtype=torch.float64)
        weights = 10 ** weights
    perm = torch.tensor(draw(st.permutations(range(n))), dtype=torch.long)
    ei = torch.tensor(pairs, dtype=torch.long).view(-1, 2).T
    ei = perm[torch.cat([ei, ei.flip(0)], 1)]
    if weights is not None:
        weights = torch.cat([weights, weights])
    return ei, weights, n


def dense(ei, w, n, kind, float32=True):
    r"""The graph matrix built independently of the library (PyG's
    get_laplacian and a dense scatter), in float64, from the weights as the
    library's float32 operators store them."""
    if w is None:
        w = torch.ones(ei.size(1), dtype=torch.float64)
    elif float32:
        w = w.float().double()
    if kind in ('laplacian', 'sym_laplacian'):
        ei, w = get_laplacian(ei, w, None if kind == 'laplacian' else 'sym', num_nodes=n)
        return torch.zeros(n, n, dtype=torch.float64).index_put_((ei[0], ei[1]), w, accumulate=True)
    A = torch.zeros(n, n, dtype=torch.float64).index_put_((ei[0], ei[1]), w, accumulate=True)
    if kind == 'gcn':
        # GCN's remaining self-loops: a unit loop only where the graph has
        # none (duplicates, loops included, are summed like every edge)
        looped = torch.zeros(n, dtype=torch.bool)
        looped[ei[0][ei[0] == ei[1]]] = True
        A = A + torch.diag((~looped).double())
    if kind == 'adjacency':
        return A
    d = A.sum(1)
    if kind == 'rw_adjacency':
        return A / torch.where(d > 0, d, 1.0)[:, None]
    s = torch.where(d > 0, d.rsqrt(), 0.0)
    return s[:, None] * A * s[None, :]


def describe(graph):
    r"""Statistics of the generated inputs (pytest --hypothesis-show-statistics)."""
    ei, w, n = graph
    adj = sp.coo_matrix((torch.ones(ei.size(1)).numpy(), ei.numpy()), shape=(n, n))
    event(f'components: {"one" if connected_components(adj)[0] == 1 else "several"}')
    event(f'edges: {"none" if ei.numel() == 0 else "some"}')
    event(f'self-loops: {bool((ei[0] == ei[1]).any())}')
    event(f'weighted: {w is not None}')


def fit_recording(*args, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        result = NeuralSVD(*args[:1], **kwargs.pop('init_kwargs', {})).fit(*args[1:], **kwargs)
    said = [w for w in caught if issubclass(w.category, RuntimeWarning)
            and 'did not reach' in str(w.message)]
    return result, said


@settings(PROFILE, max_examples=40)
@given(graph=graphs(), kind=st.sampled_from(['laplacian', 'sym_laplacian', 'gcn', 'adjacency',
                                             'rw_adjacency']),
       k_fraction=st.floats(0, 1), largest=st.booleans())
def test_neuralsvd_fit_meets_its_contract_or_says_so(graph, kind, k_fraction, largest):
    ei, w, n = graph
    k = max(1, round(k_fraction * n))  # 1..n; k = n must be refused
    describe(graph)
    op = GraphOperator.from_edge_index(ei, None if w is None else w.float(), n, kind=kind)
    if k >= n:
        event('k >= n: refused')
        with pytest.raises(ValueError, match=rf'k={k} must be smaller than the number of rows'):
            NeuralSVD(k).fit(op, largest=largest, steps=10, progress=False)
        return
    res, said = fit_recording(k, op, largest=largest, steps=600, progress=False)
    event(f'converged={res.converged}')
    assert bool(said) == (not res.converged)  # the flag and the warning mean one thing
    M = dense(ei, w, n, kind)
    scale = max(abs(b) for b in op.spectral_bounds()) or 1.0
    if kind == 'rw_adjacency':
        assert res.left_vectors.shape == res.right_vectors.shape == (n, k)
        assert torch.isfinite(res.eigenvalues).all()
        if res.converged:
            s = torch.linalg.svdvals(M)[:k]
            assert (res.eigenvalues.double() - s).abs().max() <= 1e-3 * scale
        return
    values, vectors = torch.linalg.eigh(M)
    if largest:
        values, vectors = values.flip(0), vectors.flip(1)
    assert res.eigenvectors.shape == (n, k) and torch.isfinite(res.eigenvectors).all()
    V = res.eigenvectors.double()
    assert (V.T @ V - torch.eye(k, dtype=torch.float64)).abs().max() < 1e-4
    # the reported residual is the true one (float32 products aside)
    true_residual = float((M @ V - V * res.eigenvalues.double()).norm(dim=0).max()) / scale
    assert true_residual <= res.residual * 1.01 + 1e-5
    if not res.converged:
        return
    assert (res.eigenvalues.double() - values[:k]).abs().max() <= 1e-3 * scale
    gap = float((values[k - 1] - values[k]).abs()) if k < n else float('inf')
    if gap > 1e-3 * scale:  # a well-defined subspace: compare it
        assert max_principal_sine(V, vectors[:, :k]) <= max(2 * res.sine_bound, 1e-3) \
            if res.sine_bound < float('inf') else 2e-3 * scale / gap


def check_encoding(data, ei, w, n, k):
    r"""The transform's contract against dense eigh of PyG's 'sym'
    Laplacian: the eigenvalues after the smallest, orthonormal columns that
    are eigenvectors, zero padding past n - 1, and, where the spectrum has a
    gap, the span of the wanted eigenvectors."""
    pe, lam = data.laplacian_eigenvector_pe.double(), data.laplacian_eigenvector_pe_eigenvalues
    assert pe.shape == (n, k) and lam.shape == (1, k)
    lam = lam[0].double()
    L = dense(ei, w, n, 'sym_laplacian', float32=False)  # the transform works in float64
    values, vectors = torch.linalg.eigh(L)
    m = min(k, n - 1)
    assert torch.allclose(lam[:m], values[1:m + 1], atol=1e-5)
    assert (pe[:, m:] == 0).all() and (lam[m:] == 0).all()
    if m == 0:  # one node: nothing but padding
        return
    P = pe[:, :m]
    assert (P.T @ P - torch.eye(m, dtype=torch.float64)).abs().max() < 1e-5
    assert (L @ P - P * lam[:m]).norm(dim=0).max() < 1e-4
    if m + 1 < n and values[m + 1] - values[m] > 1e-3:
        assert max_principal_sine(P, vectors[:, :m + 1]) < 1e-3


@PROFILE
@given(graph=graphs(), k=st.integers(-1, 10), random_sign=st.booleans())
def test_exact_transform_meets_its_contract(graph, k, random_sign):
    ei, w, n = graph
    describe(graph)
    data = Data(edge_index=ei, num_nodes=n, edge_weight=w)
    if k < 1:
        with pytest.raises(ValueError, match='k must be a positive integer'):
            AddNeuralSVDPE(k, method='exact')
        return
    out = AddNeuralSVDPE(k, method='exact', random_sign=random_sign, seed=0)(data)
    check_encoding(out, ei, w, n, k)


@settings(PROFILE, max_examples=40)
@given(graph=graphs(min_nodes=64, max_nodes=96, max_components=4, backbone=True),
       k=st.integers(1, 10))
def test_arpack_transform_meets_its_contract(graph, k):
    r"""Graphs of at least 64 nodes, the size from which the transform
    calls ARPACK instead of the dense solver."""
    ei, w, n = graph
    describe(graph)
    data = Data(edge_index=ei, num_nodes=n, edge_weight=w)
    with mock.patch.object(pe_module, 'solve_arpack', wraps=pe_module.solve_arpack) as arpack:
        out = AddNeuralSVDPE(k, method='arpack', seed=0)(data)
    event(f'ARPACK ran: {arpack.called}')
    check_encoding(out, ei, w, n, k)


@PROFILE
@given(k=st.one_of(st.booleans(), st.floats(-2, 5), st.none(), st.text(max_size=2)),
       steps=st.one_of(st.integers(-2, 0), st.booleans(), st.floats(0, 5)))
def test_bad_counts_raise_naming_the_argument(k, steps):
    op = GraphOperator.from_edge_index(torch.tensor([[0, 1], [1, 0]]), num_nodes=3, kind='laplacian')
    with pytest.raises(ValueError, match='k must be a positive integer'):
        NeuralSVD(k)
    with pytest.raises((ValueError, TypeError), match='steps must be an integer >= 1'):
        NeuralSVD(1).fit(op, steps=steps, progress=False)


@pytest.fixture(scope='module')
def shared_cache(tmp_path_factory):
    return tmp_path_factory.mktemp('pe_cache')


@st.composite
def datasets(draw):
    r"""A few small graphs, optionally weighted; often the same edges with
    the nodes split differently between graphs, which a cache must tell apart."""
    sizes = draw(st.lists(st.integers(1, 6), min_size=1, max_size=4))
    pairs = draw(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5)), max_size=6))
    weighted = draw(st.booleans())
    graphs = []
    for n in sizes:
        local = [(min(a, b), max(a, b)) for a, b in pairs if a < n and b < n]
        ei = torch.tensor(local, dtype=torch.long).view(-1, 2).T
        ei = torch.cat([ei, ei.flip(0)], 1)
        data = Data(edge_index=ei, num_nodes=n)
        if weighted:
            data.edge_weight = torch.linspace(0.5, 2, ei.size(1) // 2, dtype=torch.float64).repeat(2)
        graphs.append(data)
    return graphs


@settings(PROFILE, max_examples=30)
@given(graphs=datasets(), k=st.integers(1, 3))
def test_precompute_cache_never_returns_another_datasets_encodings(shared_cache, graphs, k):
    from torch_geometric.data import InMemoryDataset
    from pyg_spectral.transforms import precompute_pe

    def dataset():
        out = InMemoryDataset()
        out.data, out.slices = InMemoryDataset.collate([g.clone() for g in graphs])
        return out
    transform = AddNeuralSVDPE(k, method='exact', seed=0, attr_name='pe')
    cached = precompute_pe(dataset(), transform, cache_dir=shared_cache, progress=False)
    fresh = precompute_pe(dataset(), transform, progress=False)
    assert torch.equal(cached._data.pe, fresh._data.pe)
    assert torch.equal(cached._data.pe_eigenvalues, fresh._data.pe_eigenvalues)
