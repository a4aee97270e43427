""".npy files written by row blocks from several processes: an array too
large for one process is filled in place through a memory map by every
process, under a temporary name that is renamed only once all of them are
done, so a crashed run never leaves a file that looks finished."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor

from ..io import sync_directory
from .halo import group_rank_size


def partial_name(path: str | os.PathLike) -> Path:
    r"""Where :obj:`path` is written until it is complete (hidden, and not a
    :obj:`.npy` name)."""
    path = Path(path)
    return path.with_name(f'.{path.name}.partial')


def _durable_replace(tmp: Path, path: Path) -> None:
    with open(tmp, 'rb+') as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    sync_directory(path)


def write_npy_rows(path: str | os.PathLike, rows: Tensor, block: Tensor, num_rows: int,
                   group: dist.ProcessGroup | None = None) -> None:
    r"""Collective: every process of :obj:`group` writes :obj:`block`
    (:obj:`[len(rows), w]`) into rows :obj:`rows` of the :obj:`[num_rows, w]`
    array :obj:`path` (an :obj:`.npy` file on a file system all of them
    see). Rank 0 creates the file under :func:`partial_name`, each process
    fills its rows through a memory map, and rank 0 renames it once all
    have flushed theirs; no process ever holds more than its own rows."""
    rank, world = group_rank_size(group)
    path = Path(path)
    tmp = partial_name(path)
    block = block.detach().cpu().numpy()
    if rank == 0:
        path.parent.mkdir(parents=True, exist_ok=True)
        array = np.lib.format.open_memmap(tmp, mode='w+', dtype=block.dtype,
                                          shape=(num_rows,) + block.shape[1:])
        del array
    if world > 1:
        dist.barrier(group=group)
    array = np.load(tmp, mmap_mode='r+')
    if array.shape[1:] != block.shape[1:] or array.dtype != block.dtype:
        raise ValueError(f"rank {rank}: its block is {block.dtype} {block.shape[1:]} but the "
                         f"file {tmp} is {array.dtype} {array.shape[1:]}")
    order = torch.argsort(rows.cpu()).numpy()
    array[rows.cpu().numpy()[order]] = block[order]
    array.flush()
    del array
    if world > 1:
        dist.barrier(group=group)
    if rank == 0:
        _durable_replace(tmp, path)
    if world > 1:
        dist.barrier(group=group)


def write_npy(path: str | os.PathLike, array: Tensor) -> None:
    r"""Writes a small array to :obj:`path` through :func:`partial_name` and a
    rename: complete or absent."""
    path = Path(path)
    tmp = partial_name(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(tmp, 'wb') as f:
        np.save(f, array.detach().cpu().numpy())
    _durable_replace(tmp, path)
