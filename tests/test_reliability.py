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
        return CDK.graph(edge_index, 6), (f, g), SampledNeuralSVD(2, batch_size=16)
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
