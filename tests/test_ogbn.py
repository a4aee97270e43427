"""The OGB code path on a small dataset written in OGB's raw CSV layout."""
import gzip
import io
import sys
import zipfile

import numpy as np
import pytest
import torch

from pyg_spectral.datasets import load_ogbn, ogbn_evaluator, ogbn_split


def _write_csv(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, 'wt') as f:
        for row in np.atleast_2d(rows):
            f.write(','.join(str(v) for v in np.atleast_1d(row)) + '\n')


def write_tiny_arxiv(root, num_nodes=60, num_classes=3, seed=0):
    r"""Two-class-ish stochastic block graph laid out as ``ogbn-arxiv``'s
    download (``ogbn_arxiv/raw/*.csv.gz``, ``split/time/*.csv.gz``)."""
    rng = np.random.default_rng(seed)
    y = np.arange(num_nodes) % num_classes
    src, dst = np.nonzero(np.triu(rng.random((num_nodes, num_nodes)) <
                                  np.where(y[:, None] == y[None, :], 0.3, 0.02), 1))
    feat = np.eye(num_classes)[y] + 0.5 * rng.standard_normal((num_nodes, num_classes))
    base = root / 'ogbn_arxiv'
    _write_csv(base / 'raw' / 'edge.csv.gz', np.stack([src, dst], 1))
    _write_csv(base / 'raw' / 'node-feat.csv.gz', feat.round(5))
    _write_csv(base / 'raw' / 'node-label.csv.gz', y[:, None])
    _write_csv(base / 'raw' / 'node_year.csv.gz', np.full((num_nodes, 1), 2019))
    _write_csv(base / 'raw' / 'num-node-list.csv.gz', [[num_nodes]])
    _write_csv(base / 'raw' / 'num-edge-list.csv.gz', [[len(src)]])
    perm = rng.permutation(num_nodes)
    for name, idx in (('train', perm[:30]), ('valid', perm[30:45]), ('test', perm[45:])):
        _write_csv(base / 'split' / 'time' / f'{name}.csv.gz', np.sort(idx)[:, None])
    (base / 'RELEASE_v1.txt').write_text('tiny test copy\n')
    return base, src, dst, y


def test_load_ogbn_reads_raw_layout(tmp_path):
    _, src, dst, y = write_tiny_arxiv(tmp_path)
    ds = load_ogbn('ogbn-arxiv', root=tmp_path)
    data = ogbn_split(ds)
    assert data.num_nodes == 60 and data.edge_index.size(1) == len(src)
    assert torch.equal(data.edge_index[0], torch.as_tensor(src))
    assert torch.equal(data.y, torch.as_tensor(y))
    assert int(data.train_mask.sum()) == 30 and int(data.test_mask.sum()) == 15
    assert not (data.train_mask & data.test_mask).any()
    res = ogbn_evaluator('ogbn-arxiv').eval({'y_true': data.y.view(-1, 1),
                                             'y_pred': data.y.view(-1, 1)})
    assert res['acc'] == 1.0


def test_ogbn_source_dir_is_not_written(tmp_path, monkeypatch):
    base, *_ = write_tiny_arxiv(tmp_path / 'ogb')
    monkeypatch.setenv('PYG_SPECTRAL_DATA', str(tmp_path))
    ds = load_ogbn('ogbn-arxiv')
    assert ds[0].num_nodes == 60
    assert not (base / 'processed').exists()


def test_bench_runs_on_ogb_with_official_evaluator(tmp_path, monkeypatch):
    from pyg_spectral.bench.node_classification import run_node_classification
    write_tiny_arxiv(tmp_path / 'ogb')
    monkeypatch.setenv('PYG_SPECTRAL_DATA', str(tmp_path))
    res = run_node_classification('ogbn-arxiv', 'gcn', seeds=2, epochs=60,
                                  progress=False)
    # labels are recoverable from features: far above the 1/3 chance level
    assert res.test_acc_mean > 0.7


def test_rejects_non_ogbn_name():
    with pytest.raises(ValueError, match='ogbn-'):
        load_ogbn('Cora')


def test_loading_leaves_torch_load_and_its_allowlist_alone(tmp_path, monkeypatch):
    write_tiny_arxiv(tmp_path)
    load, calls = torch.load, []

    def spy(*args, **kwargs):
        caller = sys._getframe(1).f_globals['__name__']
        calls.append((caller, torch.load is spy, kwargs.get('weights_only')))
        return load(*args, **kwargs)

    monkeypatch.setattr(torch, 'load', spy)
    allowed = set(torch.serialization.get_safe_globals())
    for _ in range(2):  # processes, then reads its processed file back
        data = ogbn_split(load_ogbn('ogbn-arxiv', root=tmp_path))
    assert data.num_nodes == 60
    assert torch.load is spy and set(torch.serialization.get_safe_globals()) == allowed
    # OGB's bare loads of its processed file, one per construction (PyG's
    # own loads pass weights_only), found the one torch.load, weights only
    ogb = [call for call in calls if call[0].startswith('ogb.')]
    assert len(ogb) == 2 and all(call[1:] == (True, None) for call in ogb)


def _numpy1_pickle(payload: bytes) -> bytes:
    # as a file OGB pickled under NumPy 1, whose array rebuilder lives in
    # numpy.core rather than numpy._core
    source, out = zipfile.ZipFile(io.BytesIO(payload)), io.BytesIO()
    with zipfile.ZipFile(out, 'w') as target:
        for name in source.namelist():
            data = source.read(name)
            if name.endswith('data.pkl'):
                data = data.replace(b'cnumpy._core.multiarray\n', b'cnumpy.core.multiarray\n')
            target.writestr(name, data)
    return out.getvalue()


@pytest.mark.parametrize('numpy1', [False, True])
def test_split_dict_of_numpy_arrays_is_read(tmp_path, numpy1):
    base, *_ = write_tiny_arxiv(tmp_path)
    # OGB's DatasetSaver writes a split as a dict of NumPy index arrays, and
    # get_idx_split prefers that file to the CSVs
    split = {'train': np.arange(10), 'valid': np.arange(10, 20), 'test': np.arange(20, 60)}
    buffer = io.BytesIO()
    torch.save(split, buffer)
    payload = _numpy1_pickle(buffer.getvalue()) if numpy1 else buffer.getvalue()
    (base / 'split' / 'time' / 'split_dict.pt').write_bytes(payload)
    data = ogbn_split(load_ogbn('ogbn-arxiv', root=tmp_path))
    assert data.train_mask.nonzero().view(-1).tolist() == list(range(10))
    assert int(data.test_mask.sum()) == 40
