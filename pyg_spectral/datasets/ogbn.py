"""OGB node-property-prediction datasets via :mod:`ogb`'s own loader."""
from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from ogb.nodeproppred import Evaluator, PygNodePropPredDataset
from torch_geometric.data import Data

from .paths import DATA_ENV, cache_dir, resolve_root


def _dir_name(name: str) -> str:
    return name.replace('-', '_')


def load_ogbn(name: str, root: str | os.PathLike | None = None) -> PygNodePropPredDataset:
    r"""Loads an :obj:`ogbn-*` dataset as :class:`ogb.nodeproppred.PygNodePropPredDataset`.

    Root resolution is that of :func:`load_planetoid`: an explicit
    :obj:`root`, else :obj:`$PYG_SPECTRAL_DATA/ogb` as a read-only source
    whose dataset folder is copied to the per-user cache before OGB
    processes it, else the cache (OGB downloads there).
    """
    if not name.startswith('ogbn-'):
        raise ValueError(f"name={name!r} is not an OGB node-property dataset "
                         f"(expected 'ogbn-...', e.g. 'ogbn-arxiv').")
    base, is_source = resolve_root(root, 'ogb')
    if is_source:
        source = base / _dir_name(name)
        if not source.is_dir():
            raise FileNotFoundError(
                f"OGB dataset folder '{source}' not found; set {DATA_ENV} to a "
                f"directory holding ogb/{_dir_name(name)}/ or pass root=.")
        target = cache_dir() / 'ogb'
        if not (target / _dir_name(name)).is_dir():
            shutil.copytree(source, target / _dir_name(name),
                            ignore=shutil.ignore_patterns('processed'))
        base = target
    Path(base).mkdir(parents=True, exist_ok=True)
    with _ogb_files_loadable():
        return PygNodePropPredDataset(name, root=str(base))


def _ogb_file_globals() -> list:
    # What OGB's files hold besides tensors. A collated Data's storage
    # classes: PyG allowlists Data itself at import, not these. A
    # split_dict.pt's NumPy index arrays, under the array rebuilder's NumPy 1
    # and NumPy 2 module names, since OGB's files were pickled by either.
    from torch_geometric.data.data import DataEdgeAttr, DataTensorAttr
    from torch_geometric.data.storage import GlobalStorage
    reconstruct = np.arange(1).__reduce__()[0]
    return [DataEdgeAttr, DataTensorAttr, GlobalStorage, np.ndarray, np.dtype,
            *(type(np.dtype(t)) for t in (np.int64, np.int32)),
            (reconstruct, 'numpy.core.multiarray._reconstruct'),
            (reconstruct, 'numpy._core.multiarray._reconstruct')]


@contextmanager
def _ogb_files_loadable():
    r"""Lets OGB's own bare :func:`torch.load` calls (weights only since
    PyTorch 2.6) read the files OGB writes and downloads, keeping the
    weights-only check: PyTorch's :func:`torch.serialization.safe_globals`
    with just those classes."""
    allowed = torch.serialization.get_safe_globals()
    # the context removes what it was given on exit, so only what is not
    # allowed already, or it would revoke PyG's own entries
    with torch.serialization.safe_globals(
            [g for g in _ogb_file_globals() if g not in allowed]):
        yield


def ogbn_split(dataset: PygNodePropPredDataset) -> Data:
    r"""The dataset's graph with boolean :obj:`train_mask`, :obj:`val_mask`,
    :obj:`test_mask` from OGB's official split and :obj:`y` flattened to
    :obj:`[num_nodes]`, the layout of a Planetoid graph."""
    with _ogb_files_loadable():
        split = dataset.get_idx_split()
    data = dataset[0]
    data.y = data.y.view(-1)
    for key, idx in (('train', split['train']), ('val', split['valid']),
                     ('test', split['test'])):
        mask = torch.zeros(data.num_nodes, dtype=torch.bool)
        mask[idx] = True
        data[f'{key}_mask'] = mask
    return data


def ogbn_evaluator(name: str) -> Evaluator:
    r"""OGB's official :class:`~ogb.nodeproppred.Evaluator` for :obj:`name`."""
    return Evaluator(name)
