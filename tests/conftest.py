import os
from pathlib import Path

import pytest
import torch

# The test problems are small: one intra-op thread avoids oversubscribing
# the cores (2 here), which made some fits 30x slower when other jobs ran.
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / 'shared' / 'data'


@pytest.fixture(autouse=True, scope='session')
def _data_environment(tmp_path_factory):
    r"""Tests read the real Planetoid files from ``../shared/data`` (or
    ``$PYG_SPECTRAL_DATA``) and process them in a private cache."""
    os.environ.setdefault('PYG_SPECTRAL_DATA', str(DEFAULT_DATA))
    os.environ['PYG_SPECTRAL_CACHE'] = str(tmp_path_factory.mktemp('cache'))
    yield


@pytest.fixture(scope='session')
def planetoid_source() -> Path:
    root = Path(os.environ['PYG_SPECTRAL_DATA']) / 'planetoid'
    if not (root / 'Cora' / 'raw' / 'ind.cora.graph').is_file():
        pytest.fail(f"Planetoid raw files not found under '{root}' "
                    f"(expected <Name>/raw/ind.<name>.*); set PYG_SPECTRAL_DATA "
                    f"to the directory holding planetoid/.")
    return root


@pytest.fixture(scope='session')
def cora(planetoid_source):
    from pyg_spectral.datasets import load_planetoid
    return load_planetoid('Cora')[0]


@pytest.fixture(scope='session')
def citeseer(planetoid_source):
    from pyg_spectral.datasets import load_planetoid
    return load_planetoid('CiteSeer')[0]


@pytest.fixture(scope='session')
def pubmed(planetoid_source):
    from pyg_spectral.datasets import load_planetoid
    return load_planetoid('PubMed')[0]


# The longest files first (torchrun launches, the hydrogen fit, bench runs):
# under pytest-xdist (--dist loadfile) a worker takes a whole file, so the
# other workers fill in around the long ones instead of waiting at the end.
LONG_FILES = ('test_distributed.py', 'test_hamiltonian.py', 'test_cli.py',
              'test_distributed_sampled.py', 'test_plots.py')


def pytest_collection_modifyitems(items):
    def rank(item):
        name = item.path.name
        return LONG_FILES.index(name) if name in LONG_FILES else len(LONG_FILES)
    items.sort(key=rank)  # stable: each file's own order is kept
