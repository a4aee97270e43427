"""Planetoid citation graphs (Cora, CiteSeer, PubMed) via PyG's own loader."""
from __future__ import annotations

import os
from typing import Callable

from torch_geometric.datasets import Planetoid

from .paths import DATA_ENV, cache_dir, resolve_root, stage_raw

PLANETOID_NAMES = ('Cora', 'CiteSeer', 'PubMed')


PLANETOID_SPLITS = ('public', 'full', 'geom-gcn', 'random')


def canonical_planetoid_name(name: str) -> str:
    if not isinstance(name, str):
        raise TypeError(f"name must be a string, one of {', '.join(PLANETOID_NAMES)}; "
                        f"got {type(name).__name__}")
    for valid in PLANETOID_NAMES:
        if name.lower() == valid.lower():
            return valid
    raise ValueError(f"Unknown Planetoid dataset name={name!r}; valid names "
                     f"are {', '.join(PLANETOID_NAMES)}.")


def load_planetoid(
    name: str,
    root: str | os.PathLike | None = None,
    split: str = 'public',
    transform: Callable | None = None,
) -> Planetoid:
    r"""Loads a Planetoid dataset as PyG's :class:`~torch_geometric.datasets.Planetoid`.

    Args:
        name: :obj:`'Cora'`, :obj:`'CiteSeer'` or :obj:`'PubMed'` (any case).
        root: directory holding :obj:`<Name>/raw`; PyG processes (and, with
            internet, downloads) there. If :obj:`None`, the raw files are read
            from :obj:`$PYG_SPECTRAL_DATA/planetoid/<Name>/raw` and copied to
            the per-user cache before processing, so that a shared or
            read-only data directory is never written to; without that
            variable PyG downloads into the cache.
        split: PyG's split name (:obj:`'public'`, :obj:`'full'`,
            :obj:`'geom-gcn'`, :obj:`'random'`).
        transform: applied on access, e.g.
            :class:`~torch_geometric.transforms.NormalizeFeatures`.
    """
    name = canonical_planetoid_name(name)
    if split not in PLANETOID_SPLITS:
        raise ValueError(f"split must be one of {PLANETOID_SPLITS}, got {split!r}")
    base, is_source = resolve_root(root, 'planetoid')
    if is_source:
        raw_files = [f'ind.{name.lower()}.{ext}' for ext in
                     ('x', 'tx', 'allx', 'y', 'ty', 'ally', 'graph', 'test.index')]
        target = cache_dir() / 'planetoid'
        stage_raw(base / name / 'raw', target / name / 'raw', raw_files)
        base = target
    try:
        return Planetoid(str(base), name, split=split, transform=transform)
    except OSError as err:  # no raw files and the download failed
        raise FileNotFoundError(
            f"Could not load {name} from '{base / name}': {err}. Without "
            f"internet, set {DATA_ENV} to a directory holding "
            f"planetoid/{name}/raw/ind.{name.lower()}.* (the Planetoid raw "
            f"files) or pass root=.") from err
