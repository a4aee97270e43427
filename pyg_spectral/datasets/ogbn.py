"""OGB node-property-prediction datasets via :mod:`ogb`'s own loader."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

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
    # OGB saves and reloads PyG objects with a bare torch.load, which
    # PyTorch >= 2.6 restricts to weights; these files are ones OGB wrote.
    with _trusted_torch_load():
        return PygNodePropPredDataset(name, root=str(base))


class _trusted_torch_load:
    def __enter__(self):
        self._load = torch.load

        def load(*args, **kwargs):
            kwargs.setdefault('weights_only', False)
            return self._load(*args, **kwargs)

        torch.load = load

    def __exit__(self, *exc):
        torch.load = self._load


def ogbn_split(dataset: PygNodePropPredDataset) -> Data:
    r"""The dataset's graph with boolean :obj:`train_mask`, :obj:`val_mask`,
    :obj:`test_mask` from OGB's official split and :obj:`y` flattened to
    :obj:`[num_nodes]`, the layout of a Planetoid graph."""
    with _trusted_torch_load():
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
