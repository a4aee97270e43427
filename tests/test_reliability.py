"""Nothing silently wrong, no work lost: crash-safe caches and checkpoints,
cache keys that see every input, solver options and fits that cannot meet
their contract say so, and bad arguments are named."""
import io
import warnings

import pytest
import torch
from torch_geometric.data import Data, InMemoryDataset
from torch_geometric.utils import get_laplacian

from pyg_spectral.io import atomic_save, digest, safe_load
from pyg_spectral.metrics import max_principal_sine
from pyg_spectral.nn import EigenfunctionMLP
from pyg_spectral.operators import CDK, Hamiltonian
from pyg_spectral.solvers import SampledNeuralSVD
from pyg_spectral.solvers.checkpoint import load_checkpoint
from pyg_spectral.transforms import AddNeuralSVDPE, PEEncoder, precompute_pe

from graphs import cycle_graph, path_graph


# ----------------------------------------------------------------- helpers
def dense_sym_laplacian(edge_index, n):
    ei, w = get_laplacian(edge_index, torch.ones(edge_index.size(1), dtype=torch.float64),
                          'sym', num_nodes=n)
    return torch.sparse_coo_tensor(ei, w, (n, n)).to_dense()


def make_dataset(graphs):
    dataset = InMemoryDataset()
    dataset.data, dataset.slices = InMemoryDataset.collate(graphs)
    return dataset


def cycles():
    return make_dataset([Data(x=torch.ones(n, 2), edge_index=cycle_graph(n))
                         for n in range(5, 17, 2)])


def cache_file(tmp_path):
    files = [p for p in tmp_path.iterdir() if p.suffix == '.pt']
    assert len(files) == 1, files
    return files[0]


def assert_exact_encodings(dataset, k):
    r"""Every graph's encoding spans the eigenvectors 1..k of its own dense
    Laplacian (graphs here have a gap after eigenvalue k)."""
    for i in range(len(dataset)):
        data = dataset[i]
        n = data.num_nodes
        values, vectors = torch.linalg.eigh(dense_sym_laplacian(data.edge_index, n))
        pe = data.laplacian_eigenvector_pe.double()
        assert pe.shape == (n, k)
        assert max_principal_sine(pe, vectors[:, 1:k + 1]) < 1e-5
        assert torch.allclose(data.laplacian_eigenvector_pe_eigenvalues[0].double(),
                              values[1:k + 1], atol=1e-5)


class Interrupted(BaseException):
    """Stands for the process being killed: not an Exception."""


def interrupting_save(after_bytes):
    r"""A torch.save that writes the first :obj:`after_bytes` bytes of the
    real file, then dies."""
    real = torch.save

    def save(obj, f, *args, **kwargs):
        buffer = io.BytesIO()
        real(obj, buffer, *args, **kwargs)
        data = buffer.getvalue()[:after_bytes]
        if hasattr(f, 'write'):
            f.write(data)
            f.flush()
        else:
            with open(f, 'wb') as out:
                out.write(data)
        raise Interrupted
    return save


# ------------------------------------------------------- io: atomic files
def test_atomic_save_killed_mid_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / 'state.pt'
    atomic_save({'step': 1}, path)
    monkeypatch.setattr(torch, 'save', interrupting_save(10))
    with pytest.raises(Interrupted):
        atomic_save({'step': 2}, path)
    monkeypatch.undo()
    assert safe_load(path) == {'step': 1}
    assert [p.name for p in tmp_path.iterdir()] == ['state.pt']  # no temporary left


@pytest.mark.parametrize('content', [b'', b'garbage' * 20, 'half'])
def test_safe_load_names_a_corrupt_file_and_the_remedy(tmp_path, content):
    path = tmp_path / 'x.pt'
    if content == 'half':
        atomic_save({'a': torch.arange(100)}, path)
        content = path.read_bytes()[:200]
    path.write_bytes(content)
    with pytest.raises(ValueError, match=rf"cache '{path}' .*corrupt or truncated.*delete it"):
        safe_load(path, 'cache', 'delete it', weights_only=True)


def test_digest_sees_content_not_identity():
    a, b = PEEncoder(4), PEEncoder(4)
    a.reset_parameters(torch.Generator().manual_seed(0))
    b.reset_parameters(torch.Generator().manual_seed(0))
    assert digest(a) == digest(b)  # two objects, the same content
    with torch.no_grad():
        b.lins[0].weight[0, 0] += 1e-6
    assert digest(a) != digest(b)
    b = PEEncoder(4, cutoff=0.2)
    b.load_state_dict(a.state_dict())
    assert digest(a) != digest(b)  # a setting outside the state dict
    x = torch.arange(6)
    assert digest(x) != digest(x.view(2, 3)) != digest(x.float())


# --------------------------------------------- precompute_pe: cache files
def test_precompute_killed_mid_write_leaves_no_cache_and_the_next_run_works(tmp_path,
                                                                           monkeypatch):
    transform = AddNeuralSVDPE(2, method='exact', random_sign=False)
    monkeypatch.setattr(torch, 'save', interrupting_save(0))  # the 0-byte file of the issue
    with pytest.raises(Interrupted):
        precompute_pe(cycles(), transform, cache_dir=tmp_path, progress=False)
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []
    dataset = precompute_pe(cycles(), transform, cache_dir=tmp_path, progress=False)
    assert_exact_encodings(dataset, 2)
    cache_file(tmp_path)


def test_precompute_corrupt_cache_is_recomputed_with_a_warning_naming_it(tmp_path):
    transform = AddNeuralSVDPE(2, method='exact', random_sign=False)
    precompute_pe(cycles(), transform, cache_dir=tmp_path, progress=False)
    path = cache_file(tmp_path)
    path.write_bytes(path.read_bytes()[:100])  # truncated
    with pytest.warns(RuntimeWarning, match=rf"'{path}'.*corrupt or truncated.*recomputed"):
        dataset = precompute_pe(cycles(), transform, cache_dir=tmp_path, progress=False)
    assert_exact_encodings(dataset, 2)
    pe, values = safe_load(path, weights_only=True)  # replaced by a whole file
    assert pe.shape == (sum(range(5, 17, 2)), 2) and values.shape == (6, 2)


def test_precompute_cache_of_the_wrong_shape_is_not_attached(tmp_path):
    transform = AddNeuralSVDPE(2, method='exact', random_sign=False)
    precompute_pe(cycles(), transform, cache_dir=tmp_path, progress=False)
    path = cache_file(tmp_path)
    torch.save((torch.zeros(7, 2), torch.zeros(6, 2)), path)  # a stale file under the key
    with pytest.warns(RuntimeWarning, match=rf"'{path}' holds encodings \(7, 2\)"):
        dataset = precompute_pe(cycles(), transform, cache_dir=tmp_path, progress=False)
    assert_exact_encodings(dataset, 2)


def test_precompute_reader_racing_a_writer_never_sees_a_partial_cache(tmp_path, monkeypatch):
    r"""While the first run is writing its cache, a second run reads the
    cache directory: it must find a whole file or none."""
    transform = AddNeuralSVDPE(2, method='exact', random_sign=False)
    real = torch.save
    seen = []

    def slow_save(obj, f, *args, **kwargs):
        buffer = io.BytesIO()
        real(obj, buffer, *args, **kwargs)
        data = buffer.getvalue()
        f.write(data[:len(data) // 2]) if hasattr(f, 'write') else open(f, 'wb').write(
            data[:len(data) // 2])
        if not seen:  # the racing reader, between the two halves
            seen.append(None)
            seen[0] = precompute_pe(cycles(), transform, cache_dir=tmp_path, progress=False)
        if hasattr(f, 'write'):
            f.write(data[len(data) // 2:])
        else:
            with open(f, 'ab') as out:
                out.write(data[len(data) // 2:])
    monkeypatch.setattr(torch, 'save', slow_save)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        first = precompute_pe(cycles(), transform, cache_dir=tmp_path, progress=False)
    monkeypatch.undo()
    assert_exact_encodings(first, 2)
    assert_exact_encodings(seen[0], 2)
    assert_exact_encodings(precompute_pe(cycles(), transform, cache_dir=tmp_path,
                                         progress=False), 2)


def test_precompute_unwritable_cache_dir_warns_and_keeps_the_result(tmp_path):
    blocker = tmp_path / 'file'
    blocker.write_text('not a directory')
    cache_dir = blocker / 'cache'
    transform = AddNeuralSVDPE(2, method='exact', random_sign=False)
    with pytest.warns(RuntimeWarning, match=rf"could not write the encoding cache '{cache_dir}"):
        dataset = precompute_pe(cycles(), transform, cache_dir=cache_dir, progress=False)
    assert_exact_encodings(dataset, 2)


# ------------------------------------------------ precompute_pe: cache key
def test_precompute_cache_key_sees_how_nodes_are_split_between_graphs(tmp_path):
    r"""Two datasets with the same edges (local indices), the same edge
    split and the same total node count, but isolated nodes in different
    graphs: the second must not get the first's encodings."""
    edges = path_graph(4)

    def dataset(sizes):
        return make_dataset([Data(edge_index=edges, num_nodes=n) for n in sizes])
    transform = AddNeuralSVDPE(2, method='exact', random_sign=False, attr_name='pe')
    a = precompute_pe(dataset([4, 6]), transform, cache_dir=tmp_path, progress=False)
    b = precompute_pe(dataset([6, 4]), transform, cache_dir=tmp_path, progress=False)
    for ds, sizes in ((a, [4, 6]), (b, [6, 4])):
        for i, n in enumerate(sizes):
            exact = AddNeuralSVDPE(2, method='exact', random_sign=False, attr_name='pe')(
                Data(edge_index=edges, num_nodes=n))
            assert torch.allclose(ds[i].pe_eigenvalues, exact.pe_eigenvalues, atol=1e-6)
            assert max_principal_sine(ds[i].pe, exact.pe) < 1e-5
    assert len(list(tmp_path.iterdir())) == 2


def test_precompute_cache_key_sees_the_encoders_parameters(tmp_path):
    graphs = [Data(edge_index=cycle_graph(n), num_nodes=n) for n in (20, 24, 28)]
    encoder = PEEncoder(2)
    transform = AddNeuralSVDPE(2, encoder=encoder, seed=0, random_sign=False, attr_name='pe')
    first = precompute_pe(make_dataset(graphs), transform, cache_dir=tmp_path, progress=False)
    with torch.no_grad():  # another encoder of the same shape: a poor, random filter
        for lin in encoder.lins:
            lin.weight.copy_(torch.randn(lin.weight.shape, generator=torch.Generator().manual_seed(1)))
    second = precompute_pe(make_dataset(graphs), transform, cache_dir=tmp_path, progress=False)
    expected = precompute_pe(make_dataset(graphs), transform, progress=False)  # no cache
    assert torch.equal(second._data.pe, expected._data.pe)
    assert max_principal_sine(first[0].pe, second[0].pe) > 1e-2
    assert len(list(tmp_path.iterdir())) == 2


# ------------------------------------------ SampledNeuralSVD checkpoints
def oscillator_fit(probes=2, **kw):
    torch.manual_seed(0)
    op = Hamiltonian.harmonic_oscillator(2, hutchinson_probes=probes)
    model = EigenfunctionMLP(2, 3, hidden_channels=8, num_layers=1, fourier_features=4)
    solver = SampledNeuralSVD(3, lr=1e-2, batch_size=16, **kw)
    return op, model, solver


def fit(op, model, solver, path, stop_at=None):
    callback = None if stop_at is None else (lambda step, *_: step + 1 == stop_at)
    return solver.fit(op, model, steps=4, check_every=1, checkpoint=path, checkpoint_every=2,
                      callback=callback, progress=False, eval_samples=32, eval_batch_size=32)


@pytest.mark.parametrize('setting,first,second', [
    ('warmup_steps', {}, {'warmup_steps': 2}),
    ('min_lr_ratio', {}, {'min_lr_ratio': 0.1}),
    ('grad_clip', {}, {'grad_clip': 1.0}),
    ('split_batch', {}, {'split_batch': False}),
])
def test_checkpoint_of_a_fit_with_other_settings_is_refused(tmp_path, setting, first, second):
    path = tmp_path / 'fit.pt'
    fit(*oscillator_fit(**first), path)
    op, model, solver = oscillator_fit(**second)
    with pytest.raises(ValueError, match=rf"checkpoint '{path}' was written by a different fit "
                                         rf"\({setting}=.* there, .* here\).*resume=False"):
        fit(op, model, solver, path)


def test_checkpoint_of_another_operator_is_refused(tmp_path):
    path = tmp_path / 'fit.pt'
    fit(*oscillator_fit(probes=2), path)
    op, model, solver = oscillator_fit(probes=None)  # exact Laplacian instead of Hutchinson
    with pytest.raises(ValueError, match=r"different fit \(operator="):
        fit(op, model, solver, path)

    # same class and size, other edges
    def edge_fit(edge_index):
        torch.manual_seed(0)
        f, g = torch.nn.Embedding(6, 2), torch.nn.Embedding(6, 2)
        return CDK.graph(edge_index, num_nodes=6), (f, g), SampledNeuralSVD(2, batch_size=16)
    path = tmp_path / 'edges.pt'
    fit(*edge_fit(cycle_graph(6)), path, stop_at=2)
    with pytest.raises(ValueError, match=r"different fit \(operator="):
        fit(*edge_fit(path_graph(6)), path)
    fit(*edge_fit(cycle_graph(6)), path)  # the same problem resumes


def test_same_settings_still_resume(tmp_path):
    path = tmp_path / 'fit.pt'
    fit(*oscillator_fit(warmup_steps=2, grad_clip=1.0), path, stop_at=2)
    assert load_checkpoint(path)['step'] == 2
    assert fit(*oscillator_fit(warmup_steps=2, grad_clip=1.0), path).steps == 4
    assert load_checkpoint(path)['step'] == 4


@pytest.mark.parametrize('damage', ['empty', 'truncated'])
def test_corrupt_checkpoint_is_named_with_the_remedy(tmp_path, damage):
    path = tmp_path / 'fit.pt'
    fit(*oscillator_fit(), path)
    path.write_bytes(b'' if damage == 'empty' else path.read_bytes()[:300])
    with pytest.raises(ValueError, match=rf"checkpoint '{path}'.*corrupt or truncated"
                                         rf".*resume=False"):
        fit(*oscillator_fit(), path)


def test_checkpoint_of_another_architecture_is_named(tmp_path):
    path = tmp_path / 'fit.pt'
    fit(*oscillator_fit(), path)
    op, _, solver = oscillator_fit()
    model = EigenfunctionMLP(2, 3, hidden_channels=12, num_layers=1, fourier_features=4)
    with pytest.raises(ValueError, match=rf"checkpoint '{path}' does not fit this model"):
        fit(op, model, solver, path)


# ------------------------------------------- NeuralSVD: converged and tol
def log_weighted_graph(n=60, seed=0):
    r"""An Erdos-Renyi graph with weights spread over 1e-6..1e6: the low
    end of its Laplacian is tiny next to the spectral bound."""
    from torch_geometric.utils import erdos_renyi_graph, to_undirected
    torch.manual_seed(seed)
    ei = erdos_renyi_graph(n, 0.1)
    ei = ei[:, ei[0] < ei[1]]
    w = 10 ** (torch.rand(ei.size(1)) * 12 - 6)
    return to_undirected(ei, w) + (n,)


@pytest.mark.parametrize('case', ['weighted', 'path2000'])
def test_fit_without_tol_warns_when_the_result_is_wrong(case):
    from pyg_spectral import GraphOperator, NeuralSVD
    if case == 'weighted':
        ei, w, n = log_weighted_graph()
        op = GraphOperator.from_edge_index(ei, w, n, kind='laplacian')
    else:
        n = 2000
        op = GraphOperator.from_edge_index(path_graph(n), num_nodes=n, kind='laplacian')
    with pytest.warns(RuntimeWarning, match='did not reach the default accuracy within '
                                            'steps=2000: a subspace sine bound'):
        res = NeuralSVD(4).fit(op, largest=False, progress=False)
    assert not res.converged and res.sine_bound > 1e-2
    # the warning is deserved: the pairs are far from the true bottom four
    values, vectors = torch.linalg.eigh(op.to(dtype=torch.float64).to_dense())
    assert (res.eigenvalues.double() - values[:4]).abs().max() > 0.5 * values[:4].abs().max()
    assert max_principal_sine(res.eigenvectors, vectors[:, :4]) > 0.1


@pytest.mark.parametrize('kind,largest', [('sym_laplacian', False), ('gcn', True),
                                          ('laplacian', True)])
def test_fit_without_tol_reports_converged_when_accurate(kind, largest):
    from pyg_spectral import GraphOperator, NeuralSVD
    from torch_geometric.utils import stochastic_blockmodel_graph
    torch.manual_seed(0)
    ei = stochastic_blockmodel_graph([40, 50, 60], torch.full((3, 3), 0.02).fill_diagonal_(0.3))
    op = GraphOperator.from_edge_index(ei, num_nodes=150, kind=kind)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        res = NeuralSVD(3).fit(op, largest=largest, steps=1500, progress=False)
    assert res.converged and res.sine_bound <= 1e-2 and res.residual < 1e-4
    values, vectors = torch.linalg.eigh(op.to(dtype=torch.float64).to_dense())
    if largest:
        values, vectors = values.flip(0), vectors.flip(1)
    assert max_principal_sine(res.eigenvectors, vectors[:, :3]) <= max(res.sine_bound, 1e-4)
    assert (res.eigenvalues.double() - values[:3]).abs().max() < 1e-4 * values.abs().max()


def test_fit_certifies_a_repeated_eigenvalue_split_by_k_as_a_whole():
    r"""On a cycle k=2 cuts the pair of the second eigenvalue: no gap after
    the k-th, yet the pairs are right and the fit says so."""
    from pyg_spectral import GraphOperator, NeuralSVD
    n = 30
    op = GraphOperator.from_edge_index(cycle_graph(n), num_nodes=n, kind='laplacian')
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        res = NeuralSVD(2).fit(op, largest=False, steps=1500, progress=False)
    assert res.converged
    expected = 2 - 2 * torch.cos(2 * torch.pi * torch.tensor([0.0, 1.0], dtype=torch.float64) / n)
    assert (res.eigenvalues.double() - expected).abs().max() < 1e-5
    L = op.to(dtype=torch.float64).to_dense()
    V = res.eigenvectors.double()
    assert (L @ V - V * res.eigenvalues.double()).norm(dim=0).max() < 1e-4


def test_fit_with_a_model_and_no_tol_warns_by_the_residual():
    from pyg_spectral import GraphOperator, NeuralSVD
    op = GraphOperator.from_edge_index(cycle_graph(30), num_nodes=30, kind='gcn')
    x = torch.randn(30, 4, generator=torch.Generator().manual_seed(0))
    mlp = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))
    with pytest.warns(RuntimeWarning, match='a Ritz residual of .* of the spectral bound'):
        res = NeuralSVD(3).fit(op, model=mlp, inputs=x, steps=5, progress=False)
    assert not res.converged and res.residual > 1e-4


# ------------------------------------------- NeuralSVD: named arguments
@pytest.mark.parametrize('kwargs,error,match', [
    ({'steps': 0}, ValueError, 'steps must be an integer >= 1'),
    ({'steps': -3}, ValueError, 'steps must be an integer >= 1'),
    ({'steps': 2.5}, TypeError, 'steps must be an integer >= 1, got float'),
    ({'steps': True}, TypeError, 'steps must be an integer >= 1, got bool'),
    ({'check_every': 0}, ValueError, 'check_every must be an integer >= 1'),
    ({'check_every': 1.0}, TypeError, 'check_every must be an integer >= 1'),
    ({'tol': -1.0}, ValueError, 'tol must be None or a finite number >= 0'),
    ({'tol': float('nan')}, ValueError, 'tol must be None'),
    ({'lr': 0.0}, ValueError, 'lr must be None or a finite positive number'),
])
def test_fit_names_a_bad_count_or_number(kwargs, error, match):
    from pyg_spectral import GraphOperator, NeuralSVD
    op = GraphOperator.from_edge_index(cycle_graph(10), num_nodes=10, kind='laplacian')
    with pytest.raises(error, match=match):
        NeuralSVD(2).fit(op, progress=False, **kwargs)


@pytest.mark.parametrize('k', [True, False, 2.5, '2', None])
def test_k_must_be_an_integer_not_a_bool(k):
    from pyg_spectral import NeuralSVD
    with pytest.raises(ValueError, match='k must be a positive integer'):
        NeuralSVD(k)


def test_fit_of_a_dense_tensor_says_how_to_wrap_it():
    from pyg_spectral import GraphOperator, NeuralSVD
    M = torch.randn(8, 8, generator=torch.Generator().manual_seed(0))
    M = M + M.T
    with pytest.raises(TypeError, match=r'operator is a torch.Tensor.*GraphOperator'):
        NeuralSVD(2).fit(M, progress=False)
    # the wrapping the message suggests works and is right
    b = float(M.abs().sum(1).max())
    res = NeuralSVD(2).fit(GraphOperator(M.to_sparse_csr(), 'adjacency', (-b, b)),
                           steps=2000, tol=1e-6, progress=False)
    assert res.converged
    assert torch.allclose(res.eigenvalues.double(),
                          torch.linalg.eigvalsh(M.double()).flip(0)[:2], atol=1e-4)
    with pytest.raises(TypeError, match='operator must be a LinearOperator'):
        NeuralSVD(2).fit('not an operator', progress=False)


def test_fit_names_a_dtype_mismatch():
    from pyg_spectral import GraphOperator, NeuralSVD
    op = GraphOperator.from_edge_index(cycle_graph(10), num_nodes=10, kind='gcn', dtype=torch.float64)
    mlp = torch.nn.Linear(4, 2)  # float32
    with pytest.raises(TypeError, match='model parameters are torch.float32 but the operator '
                                        'is torch.float64'):
        NeuralSVD(2).fit(op, model=mlp, inputs=torch.randn(10, 4, dtype=torch.float64),
                         progress=False)
    with pytest.raises(TypeError, match='inputs are torch.float32 but the operator is '
                                        'torch.float64'):
        NeuralSVD(2).fit(op, model=mlp.double(), inputs=torch.randn(10, 4), progress=False)

    class Float32Out(torch.nn.Module):  # float64 parameters, float32 output
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(4, 2).double()

        def forward(self, x):
            return self.lin(x).float()
    with pytest.raises(TypeError, match='the model outputs torch.float32'):
        NeuralSVD(2).fit(op, model=Float32Out(), inputs=torch.randn(10, 4, dtype=torch.float64),
                         progress=False)


def test_nan_never_reaches_eigh_unnamed():
    from pyg_spectral import GraphOperator, NeuralSVD
    op = GraphOperator.from_edge_index(cycle_graph(10), num_nodes=10, kind='laplacian')
    init = torch.randn(10, 2)
    init[3, 1] = float('nan')
    with pytest.raises(ValueError, match='init has NaN or inf values'):
        NeuralSVD(2).fit(op, init=init, progress=False)

    class NaNOperator(GraphOperator):
        def matmat(self, X):
            return super().matmat(X) * float('nan')

        def affine_matmul(self, X, alpha, beta):
            return super().affine_matmul(X, alpha, beta) * float('nan')
    bad = NaNOperator(op.matrix, op.kind, op.spectral_bounds())
    with pytest.raises(FloatingPointError, match='NaN or inf'):
        NeuralSVD(2).fit(bad, progress=False)
    x = torch.randn(10, 3)
    x[0, 0] = float('nan')
    with pytest.raises(FloatingPointError, match='(?i)nan at step'):
        NeuralSVD(2).fit(op, model=torch.nn.Linear(3, 2), inputs=x, steps=5, progress=False)


# ------------------------------------------------- ARPACK policy options
@pytest.mark.parametrize('kwargs,match', [
    ({'max_rounds': 0}, 'max_rounds must be an integer >= 1'),
    ({'max_rounds': -2}, 'max_rounds must be an integer >= 1'),
    ({'max_rounds': 2.0}, 'max_rounds must be an integer >= 1'),
    ({'max_rounds': True}, 'max_rounds must be an integer >= 1'),
    ({'oversample': -1}, 'oversample must be None or an integer >= 0'),
    ({'oversample': 0.5}, 'oversample must be None or an integer >= 0'),
])
@pytest.mark.parametrize('method', ['arpack', 'auto'])
def test_arpack_options_that_cannot_give_an_answer_are_refused(kwargs, match, method):
    n = 300  # 'auto' solves it with ARPACK on a CPU
    data = Data(edge_index=cycle_graph(n), num_nodes=n)
    with pytest.raises(ValueError, match=match):
        AddNeuralSVDPE(3, method=method, seed=0, arpack_options=kwargs)(data)


@pytest.mark.parametrize('kwargs,match', [
    ({'steps': True}, 'steps must be an integer >= 1, got bool'),
    ({'steps': 0}, 'steps must be an integer >= 1'),
    ({'check_every': 2.5}, 'check_every must be an integer >= 1, got float'),
    ({'checkpoint_every': False}, 'checkpoint_every must be an integer >= 1'),
])
def test_sampled_fit_names_a_bad_count(kwargs, match):
    op, model, solver = oscillator_fit()
    with pytest.raises((TypeError, ValueError), match=match):
        solver.fit(op, model, progress=False, **{'steps': 4, **kwargs})
    with pytest.raises(ValueError, match='k must be a positive integer'):
        SampledNeuralSVD(True)
    with pytest.raises(ValueError, match='batch_size must be an integer >= 2'):
        SampledNeuralSVD(2, batch_size=64.0)


@pytest.mark.parametrize('kind', ['rw_adjacency', 'adjacency', 'laplacian', 'sym_adjacency'])
def test_fit_of_a_zero_operator_is_exact_not_divergent(kind):
    r"""A graph without edges: T = 0 (safe bounds (0, 0)). The SVD form used
    to diverge on its quartic term alone and tell the user to lower lr
    (found by tests/test_properties.py)."""
    from pyg_spectral import GraphOperator, NeuralSVD
    for n, k in ((2, 1), (5, 2)):
        op = GraphOperator.from_edge_index(torch.zeros(2, 0, dtype=torch.long), num_nodes=n, kind=kind)
        assert torch.equal(op.to_dense(), torch.zeros(n, n))
        with warnings.catch_warnings():
            warnings.simplefilter('error')
            res = NeuralSVD(k).fit(op, progress=False)
            with_tol = NeuralSVD(k).fit(op, tol=1e-6, progress=False)
        assert res.converged and torch.equal(res.eigenvalues, torch.zeros(k))
        assert with_tol.converged and torch.equal(with_tol.eigenvalues, torch.zeros(k))
        V = res.right_vectors if kind == 'rw_adjacency' else res.eigenvectors
        assert torch.allclose(V.T @ V, torch.eye(k), atol=1e-6)


def test_duplicate_weighted_edges_in_any_order_are_undirected():
    r"""Found by tests/test_properties.py: (0, 1) twice and (1, 0) once with
    weights 1, 1, 1e-4 each way is a symmetric matrix, but 1 + 1 + 1e-4 and
    1e-4 + 1 + 1 round differently, and the graph is refused as directed."""
    from pyg_spectral import GraphOperator
    ei = torch.tensor([[0, 0, 1, 1, 1, 0], [1, 1, 0, 0, 0, 1]])
    w = torch.tensor([1, 1, 1e-4, 1, 1, 1e-4], dtype=torch.float64)
    op = GraphOperator.from_edge_index(ei, w, 2, kind='laplacian', dtype=torch.float64)
    expected = torch.tensor([[1.0, -1.0], [-1.0, 1.0]], dtype=torch.float64) * (2 + 1e-4)
    assert torch.allclose(op.to_dense(), expected)


def test_checkpoint_from_before_the_settings_check_resumes_with_a_warning(tmp_path):
    r"""A checkpoint that records only the settings checked before (k,
    nesting, optimizer, lr, batch size, EMA, seed, steps) is resumed, not
    thrown away, and the unverified settings are named."""
    path = tmp_path / 'fit.pt'
    fit(*oscillator_fit(), path, stop_at=2)
    state = load_checkpoint(path)
    old = ('k', 'nesting', 'optimizer', 'lr', 'batch_size', 'ema_decay', 'seed', 'steps')
    state['config'] = {key: state['config'][key] for key in old}
    atomic_save(state, path)
    with pytest.warns(RuntimeWarning, match=rf"checkpoint '{path}' does not record "
                                            r"warmup_steps, .*operator"):
        assert fit(*oscillator_fit(), path).steps == 4
    assert load_checkpoint(path)['step'] == 4
    state['config']['lr'] = 0.5  # a recorded setting still has to match
    atomic_save(state, path)
    with pytest.raises(ValueError, match=r"different fit \(lr=0.5 there, 0.01 here\)"):
        fit(*oscillator_fit(), path)


def test_checkpoint_of_another_precision_is_refused(tmp_path):
    path = tmp_path / 'fit.pt'
    fit(*oscillator_fit(), path, stop_at=2)
    op, model, solver = oscillator_fit()
    with pytest.raises(ValueError, match=r"different fit \(dtype='torch.float32' there, "
                                         r"'torch.float64' here\)"):
        fit(op.to(dtype=torch.float64), model.double(), solver, path)


def test_precompute_permission_denied_warns_and_keeps_the_result(tmp_path, monkeypatch):
    r"""A read-only cache directory (simulated: the test may run as root,
    which ignores permissions)."""
    import tempfile

    def denied(*args, dir=None, **kwargs):
        raise PermissionError(13, 'Permission denied', str(dir))
    monkeypatch.setattr(tempfile, 'mkstemp', denied)
    transform = AddNeuralSVDPE(2, method='exact', random_sign=False)
    with pytest.warns(RuntimeWarning, match=rf"could not write the encoding cache '{tmp_path}"
                                            r".*Permission denied.*make the directory "
                                            r"writable or pass another cache_dir"):
        dataset = precompute_pe(cycles(), transform, cache_dir=tmp_path, progress=False)
    assert_exact_encodings(dataset, 2)
    assert list(tmp_path.iterdir()) == []


def test_sampled_fit_names_a_dtype_mismatch():
    op, model, solver = oscillator_fit()
    with pytest.raises(TypeError, match='model parameters are torch.float64 but the operator '
                                        'draws torch.float32 samples'):
        solver.fit(op, model.double(), steps=2, progress=False)


def test_sampled_nan_on_evaluation_samples_is_named():
    class NaNWhenEvaluated(torch.nn.Module):  # training batches: 16 samples, evaluation: 32
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, x):
            out = self.model(x)
            return out * float('nan') if x.size(0) == 32 else out
    op, model, solver = oscillator_fit()
    with pytest.raises(FloatingPointError, match='NaN or inf values on the evaluation samples'):
        solver.fit(op, NaNWhenEvaluated(model), steps=2, progress=False, eval_samples=32,
                   eval_batch_size=32)


def test_precompute_without_x_and_attr_name_none_fails_before_the_work(monkeypatch):
    dataset = make_dataset([Data(edge_index=cycle_graph(n), num_nodes=n) for n in (5, 7)])
    monkeypatch.setattr(AddNeuralSVDPE, 'encode', lambda *a, **kw: pytest.fail('solved first'))
    with pytest.raises(ValueError, match='attr_name=None concatenates the encoding to x, but '
                                         'the dataset has no x'):
        precompute_pe(dataset, AddNeuralSVDPE(2, attr_name=None), progress=False)


def test_certificate_does_not_extend_across_a_real_gap():
    r"""Vectors that mix the second and third eigenvectors (sine 0.44 with
    the top-2 eigenspace) inside an invariant 4-dimensional span: extending
    them across the real gap between their Ritz values would certify the
    span and with it the wrong vectors."""
    from pyg_spectral import GraphOperator, NeuralSVD, NeuralSVDResult
    from pyg_spectral.operators import top_positive
    d = torch.tensor([10.0, 9, 8, 7, 1, 1], dtype=torch.float64)
    op = GraphOperator(torch.diag(d).to_sparse_csr(), 'adjacency', (0.0, 10.0))
    E = torch.eye(6, dtype=torch.float64)
    c, s = 0.9, (1 - 0.81) ** 0.5
    V = torch.stack([E[0], c * E[1] + s * E[2]], 1)
    f = torch.cat([V, torch.stack([-s * E[1] + c * E[2], E[3]], 1)], 1)
    values = torch.diagonal(V.T @ (d[:, None] * V))
    result = NeuralSVDResult(values, V, None)
    residual, bound, _ = NeuralSVD._accuracy(op, top_positive(op), result, f, False, 10.0)
    true = max_principal_sine(V, E[:, :2])  # 0.44 by construction
    assert bound >= true  # a bound on the true error, hence not certified


def test_precompute_dataset_of_one_graph(tmp_path):
    r"""PyG stores a one-graph dataset without slices (found by
    tests/test_properties.py: precompute_pe failed on it with a TypeError)."""
    transform = AddNeuralSVDPE(2, method='exact', random_sign=False)
    for _ in range(2):  # computed, then from the cache
        dataset = make_dataset([Data(x=torch.ones(9, 1), edge_index=cycle_graph(9))])
        assert dataset.slices is None and len(dataset) == 1
        assert_exact_encodings(precompute_pe(dataset, transform, cache_dir=tmp_path,
                                             progress=False), 2)
    cache_file(tmp_path)


def test_operator_with_an_infinite_spectral_bound_is_refused():
    r"""It trained with a step size of n / inf = 0 and returned its start."""
    from pyg_spectral import NeuralSVD
    from pyg_spectral.operators import LinearOperator

    class Unbounded(LinearOperator):
        def __init__(self, A):
            self.A, self.shape, self.is_symmetric = A, tuple(A.shape), True

        @property
        def device(self):
            return self.A.device

        @property
        def dtype(self):
            return self.A.dtype

        def matmat(self, X):
            return self.A @ X

        def spectral_bounds(self):
            return 0.0, float('inf')
    A = torch.randn(6, 6)
    with pytest.raises(ValueError, match=r'spectral_bounds\(\) returned \(0.0, inf\)'):
        NeuralSVD(2, seed=0).fit(Unbounded(A + A.T), steps=10, progress=False)


def test_svd_form_of_a_two_node_random_walk_matrix_converges():
    from pyg_spectral import GraphOperator, NeuralSVD
    op = GraphOperator.from_edge_index(torch.tensor([[0, 0], [0, 0]]), num_nodes=2,
                                       kind='rw_adjacency')  # diag(1, 0)
    # random starts of two rows differ widely in norm between the two tables;
    # before the pairs were rebalanced, seeds 0 and 4 diverged
    for seed in range(8):
        result = NeuralSVD(1, seed=seed).fit(op, steps=300, progress=False)
        assert abs(float(result.eigenvalues[0]) - 1) < 1e-3


def test_reported_residual_is_relative_to_the_operators_own_bound():
    # an indefinite operator (bounds -b..b) is shifted to a target with bounds
    # 0..2b; the residual was divided by 2b and read half its true size
    from pyg_spectral import GraphOperator, NeuralSVD
    edge_index, weight = torch.tensor([[0, 1, 2], [0, 2, 1]]), torch.tensor([1e3, 1.0, 1.0])
    op = GraphOperator.from_edge_index(edge_index, weight, 6, kind='adjacency')
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', RuntimeWarning)  # not converged in 200 steps
        result = NeuralSVD(5).fit(op, largest=True, steps=200, progress=False)
    M = op.matrix.to_dense().double()
    V, values = result.eigenvectors.double(), result.eigenvalues.double()
    bound = max(abs(b) for b in op.spectral_bounds())
    true = float((M @ V - V * values).norm(dim=0).max()) / bound
    assert true == pytest.approx(result.residual, rel=1e-3)


@pytest.mark.parametrize('weight', [1e-6, 1.0, 1e3])
def test_svd_form_is_invariant_to_the_operator_scale(weight):
    # the random start scales with the spectral bound: with unit-scale tables,
    # weights of 1e-3 diverged at step 4 under the step sized from the bound
    from pyg_spectral import GraphOperator, NeuralSVD
    g = torch.Generator().manual_seed(0)
    n = 60
    upper = torch.triu(torch.rand(n, n, generator=g) < 0.1, 1)
    ei = torch.cat([upper.nonzero().T, upper.nonzero().T.flip(0)], 1)
    op = GraphOperator.from_edge_index(ei, torch.full((ei.size(1),), weight), n, kind='adjacency')
    result = NeuralSVD(3, seed=0).fit(op, svd=True, steps=1500, progress=False)
    exact = torch.linalg.svdvals(op.matrix.to_dense().double())[:3]
    assert result.converged
    assert ((result.eigenvalues.double() - exact).abs() / exact).max() < 1e-4
