"""Where datasets live: resolution of data roots and the writable cache."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

DATA_ENV = 'PYG_SPECTRAL_DATA'
CACHE_ENV = 'PYG_SPECTRAL_CACHE'


def cache_dir() -> Path:
    r"""The per-user writable cache: :obj:`$PYG_SPECTRAL_CACHE`, else
    :obj:`$XDG_CACHE_HOME/pyg_spectral`, else :obj:`~/.cache/pyg_spectral`."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get('XDG_CACHE_HOME') or Path.home() / '.cache'
    return Path(base).expanduser() / 'pyg_spectral'


def resolve_root(root: str | os.PathLike | None, family: str) -> tuple[Path, bool]:
    r"""Returns :obj:`(root, is_source)` for a dataset family
    (:obj:`'planetoid'`, :obj:`'ogb'`).

    An explicit :obj:`root` is used as PyG would use it. Otherwise the
    directory :obj:`$PYG_SPECTRAL_DATA/<family>` is a *source*: a possibly
    shared or read-only tree we only read from (:obj:`is_source=True`).
    Without either, the per-user cache is used and PyG downloads into it.
    """
    if root is not None:
        return Path(root).expanduser(), False
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV]).expanduser() / family, True
    return cache_dir() / family, False


def stage_raw(source: Path, target: Path, raw_files: list[str]) -> None:
    r"""Copies :obj:`raw_files` from :obj:`source` to :obj:`target` unless
    they are already there, so that processing never writes next to the
    source."""
    missing = [f for f in raw_files if not (source / f).is_file()]
    if missing:
        raise FileNotFoundError(
            f"Raw files {missing} not found in '{source}'. Put the raw files "
            f"there, point the environment variable {DATA_ENV} at the data "
            f"directory that holds them, or pass root= explicitly.")
    target.mkdir(parents=True, exist_ok=True)
    for f in raw_files:
        dst = target / f
        if not dst.is_file() or dst.stat().st_size != (source / f).stat().st_size:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source / f, dst)
