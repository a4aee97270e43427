import os

import pytest

from pyg_spectral.datasets import load_planetoid

# Sizes as PyG loads the public Planetoid files (shared/data/planetoid/README.md).
EXPECTED = {
    'Cora': (2708, 10556, 1433, 7, (140, 500, 1000)),
    'CiteSeer': (3327, 9104, 3703, 6, (120, 500, 1000)),
    'PubMed': (19717, 88648, 500, 3, (60, 500, 1000)),
}


def _snapshot(root):
    return sorted((p, os.stat(os.path.join(p, f)).st_mtime_ns)
                  for p, _, files in os.walk(root) for f in files)


@pytest.mark.parametrize('name', list(EXPECTED))
def test_planetoid_matches_known_sizes(name, planetoid_source):
    before = _snapshot(planetoid_source)
    ds = load_planetoid(name.lower())
    data = ds[0]
    n, e, f, c, masks = EXPECTED[name]
    assert (data.num_nodes, data.edge_index.size(1), data.num_features, ds.num_classes) == (n, e, f, c)
    assert tuple(int(m.sum()) for m in (data.train_mask, data.val_mask, data.test_mask)) == masks
    # the shared source directory is only read
    assert _snapshot(planetoid_source) == before
    assert not (planetoid_source / name / 'processed').exists()


def test_explicit_root_is_used_as_pyg_does(planetoid_source, tmp_path):
    import shutil
    shutil.copytree(planetoid_source / 'Cora' / 'raw', tmp_path / 'Cora' / 'raw')
    ds = load_planetoid('Cora', root=tmp_path)
    assert ds[0].num_nodes == 2708
    assert (tmp_path / 'Cora' / 'processed').is_dir()


def test_unknown_name_lists_valid_ones():
    with pytest.raises(ValueError, match='Cora, CiteSeer, PubMed'):
        load_planetoid('Corra')


def test_missing_data_dir_names_path_and_variable(tmp_path, monkeypatch):
    monkeypatch.setenv('PYG_SPECTRAL_DATA', str(tmp_path / 'nowhere'))
    with pytest.raises(FileNotFoundError) as err:
        load_planetoid('Cora')
    msg = str(err.value)
    assert str(tmp_path / 'nowhere' / 'planetoid' / 'Cora' / 'raw') in msg
    assert 'PYG_SPECTRAL_DATA' in msg
