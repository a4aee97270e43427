"""Checkpoints of long fits: written atomically, so an interrupted write never
replaces the last good one."""
from __future__ import annotations

import os

from ..io import atomic_save, safe_load


def save_checkpoint(path: str | os.PathLike, state: dict) -> None:
    r"""Writes :obj:`state` (tensors, state dicts, numbers, lists) to
    :obj:`path` through a temporary file and an atomic rename."""
    atomic_save(state, path)


def load_checkpoint(path: str | os.PathLike, map_location=None) -> dict:
    r"""Reads a checkpoint written by :func:`save_checkpoint` (tensors and
    plain containers only: :obj:`weights_only` loading). A corrupt or
    truncated file raises a :class:`ValueError` naming it."""
    return safe_load(path, 'checkpoint', "delete it (or pass resume=False) to start the fit "
                     "afresh, or point checkpoint= at an intact copy",
                     map_location=map_location, weights_only=True)
