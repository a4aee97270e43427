r"""The random signs of the PE transform, drawn from a seed and each graph's
own content, so that a graph gets the same signs wherever it is encoded."""
from __future__ import annotations

import functools

import numpy as np
import torch
from torch import Tensor
from torch_geometric.utils import scatter

_MASK = (1 << 64) - 1
# int64 arrays of NumPy and torch wrap alike, and >> keeps the sign in both,
# so the functions below give the same bits on either (and on Python ints in
# [0, 2^64), where the wrapping is done by _wrap)
Int64 = Tensor | np.ndarray | int


def _shift_right(x: Int64, s: int) -> Int64:
    # logical shift of the 64 bits (>> keeps the sign of an int64)
    return (x >> s) & ((1 << (64 - s)) - 1)


def _wrap(x: Int64) -> Int64:
    return x & _MASK if isinstance(x, int) else x


def _mix(x: Int64) -> Int64:
    r"""SplitMix64's finaliser with wrapping 64-bit arithmetic: a bijection
    whose output bits each depend on all input bits."""
    x = x ^ _shift_right(x, 30)
    x = _wrap(x * -4658895280553007687)  # 0xbf58476d1ce4e5b9
    x = x ^ _shift_right(x, 27)
    x = _wrap(x * -7723592293110705685)  # 0x94d049bb133111eb
    return x ^ _shift_right(x, 31)


def _signed(x: int) -> int:
    # the int64 with the bits of x in [0, 2^64)
    return x - (1 << 64) if x >> 63 else x


def seeded_signs(edge_index: Tensor, batch: Tensor, ptr: Tensor, seed: int, k: int) -> Tensor:
    r"""Random signs :obj:`[G, k]` (:math:`\pm 1`) drawn from :obj:`seed` and
    each graph's own content (node count and edges in local numbering), not
    from its place in a batch: a graph gets the same signs encoded alone, in
    any :class:`~torch_geometric.data.Batch` and through
    :func:`~pyg_spectral.transforms.precompute_pe`.

    Args:
        edge_index: :obj:`[2, m]` edges of the graph or batch.
        batch: :obj:`[n]` graph of every node.
        ptr: :obj:`[G + 1]` node offsets of the graphs.
        seed: the transform's seed.
        k: number of columns.
    """
    num_graphs = ptr.numel() - 1
    device = ptr.device
    columns = _column_keys(seed, k)
    if num_graphs == 1:  # in Python ints and NumPy, without the [G] tensors of a batch
        edges = edge_index.numpy() if edge_index.device.type == 'cpu' else edge_index
        return torch.from_numpy(graph_signs(edges, int(ptr[1] - ptr[0]), seed, k))[None].to(device)
    key = _mix(ptr[1:] - ptr[:-1])
    if edge_index.numel():
        row, col = edge_index.to(device)
        g = batch[row]
        local = (row - ptr[g]) * 1_000_003 + (col - ptr[g])
        key = key + scatter(_mix(local), g, 0, dim_size=num_graphs, reduce='sum')
    columns = torch.tensor([_signed(column) for column in columns], device=device)
    bits = _mix(_mix(key)[:, None] ^ columns[None, :])
    return 1 - 2 * _shift_right(bits, 63)


def graph_signs(edge_index: np.ndarray | Tensor, num_nodes: int, seed: int, k: int) -> np.ndarray:
    r""":func:`seeded_signs` of one graph, :obj:`[k]` int64 (:math:`\pm 1`),
    from its :obj:`[2, m]` edges (NumPy on a CPU: for a small graph its calls
    cost less than torch's)."""
    key = _mix(num_nodes)
    if edge_index.shape[1]:
        row, col = edge_index
        # a sum of int64 wraps: its bits do not depend on the order
        key = (key + int(_mix(row * 1_000_003 + col).sum())) & _MASK
    # the columns at once, in NumPy's wrapping int64 (the same bits)
    bits = _shift_right(_mix(_signed(_mix(key)) ^ _signed_columns(seed, k)), 63)
    return 1 - 2 * bits


@functools.lru_cache(maxsize=64)
def _signed_columns(seed: int, k: int) -> np.ndarray:
    return np.array([_signed(column) for column in _column_keys(seed, k)], dtype=np.int64)


@functools.lru_cache(maxsize=64)
def _column_keys(seed: int, k: int) -> tuple[int, ...]:
    return tuple(_mix((seed * 1_000_033 + j) & _MASK) for j in range(1, k + 1))
