"""A process's rows of a graph matrix built from the edge list read chunk by
chunk, without the whole matrix: each process keeps the edges that leave its
own nodes, checks symmetry by exchanging only the entries that cross the
partition, and takes the degrees its normalisation needs for other
processes' nodes through the same halo exchange that the fit uses. The
result is the :class:`~pyg_spectral.solvers.halo.RowBlockOperator` that
:meth:`RowBlockOperator.from_operator` cuts out of the whole
:class:`~pyg_spectral.operators.GraphOperator`, built in memory
proportional to the process's rows."""
from __future__ import annotations

from typing import Iterable

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor

from ..operators.graph import SYMMETRIC_KINDS, DirectedGraphError
from .halo import (HaloExchange, RowBlockOperator, collective_device, compact_indices,
                   exchange_rows, group_rank_size, sparse_csr)
from .partition import NodePartition

# the slack within which an edge's weight and its mirror's count as equal,
# in units of the float's epsilon: GraphOperator's, so both builds accept
# the same graphs (duplicates summed in another order differ by rounding)
MIRROR_SLACK_EPS = 64


def _all_reduce(value: float, op, group) -> float:
    _, world = group_rank_size(group)
    if world == 1:
        return value
    x = torch.tensor([value], dtype=torch.float64, device=collective_device(group))
    dist.all_reduce(x, op=op, group=group)
    return float(x[0])


def _numpy(x) -> np.ndarray:
    if isinstance(x, Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


class _Growing:
    r"""An array filled a piece at a time in one allocation, grown by half
    when full: a list of pieces and their concatenation would hold the
    edges twice. An allocation this size is a fresh memory map, so the
    capacity not yet written is not resident."""

    def __init__(self, dtype, capacity: int) -> None:
        self.data, self.size = np.empty(max(capacity, 1), dtype=dtype), 0

    def append(self, values: np.ndarray) -> None:
        end = self.size + values.size
        if end > self.data.size:
            grown = np.empty(max(end, self.data.size * 3 // 2), dtype=self.data.dtype)
            grown[:self.size] = self.data[:self.size]
            self.data = grown
        self.data[self.size:end] = values
        self.size = end

    def array(self) -> np.ndarray:
        return self.data[:self.size]


def _index_dtype(bound: int) -> np.dtype:
    return np.dtype(np.int32) if bound < 2**31 else np.dtype(np.int64)


def _stream_rows(chunks: Iterable, position: np.ndarray, lo: int, hi: int, n: int,
                 dtype: torch.dtype, kind: str, capacity: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    r"""The edges of :obj:`chunks` whose source is one of this process's
    nodes (positions :obj:`lo:hi` of the partition order): their local row,
    the position of their target and their weight (:obj:`None` for an
    unweighted graph). Every process reads every chunk, so the checks of
    the whole edge list give the same answer everywhere without a
    collective."""
    np_dtype = torch.empty(0, dtype=dtype).numpy().dtype
    rows = _Growing(_index_dtype(hi - lo), capacity)
    cols = _Growing(position.dtype, capacity)
    weights, weighted = None, None
    for number, chunk in enumerate(chunks):
        if not isinstance(chunk, (tuple, list)) or len(chunk) != 2:
            raise TypeError("chunks must yield (edge_index [2, c], edge_weight [c] or None) pairs")
        edge_index, edge_weight = chunk
        edges = _numpy(edge_index)
        if edges.ndim != 2 or edges.shape[0] != 2 or edges.dtype.kind not in 'iu':
            raise ValueError(f"edge_index chunk {number} must be integers of shape [2, c], got "
                             f"{edges.dtype} {list(edges.shape)}")
        if weighted is None:
            weighted = edge_weight is not None
            weights = _Growing(np_dtype, capacity) if weighted else None
        elif weighted != (edge_weight is not None):
            raise ValueError("edge_weight must come with every chunk or with none")
        if edges.shape[1] == 0:
            continue
        low, high = int(edges.min()), int(edges.max())
        if low < 0 or high >= n:
            raise ValueError(f"edge_index has node indices outside [0, {n}) (min {low}, max "
                             f"{high}); the partition has num_nodes={n}: partition this graph "
                             f"again")
        source = position[edges[0]]
        mine = (source >= lo) & (source < hi)
        source = source[mine]
        source -= lo
        rows.append(source)
        del source
        cols.append(position[edges[1][mine]])
        if weighted:
            w = _numpy(edge_weight)
            if w.shape != (edges.shape[1],) or w.dtype.kind != 'f':
                raise ValueError(f"edge_weight chunk {number} must be floats of shape "
                                 f"[{edges.shape[1]}], got {w.dtype} {list(w.shape)}")
            if not np.isfinite(w).all():
                raise ValueError("edge_weight contains NaN or inf")
            if kind != 'adjacency' and (w < 0).any():
                raise ValueError(f"edge_weight has negative entries, which kind={kind!r} does "
                                 f"not allow (degrees must be non-negative)")
            weights.append(w[mine].astype(np_dtype))
    return rows.array(), cols.array(), weights.array() if weighted else None


def _coalesce(key: np.ndarray, weight: np.ndarray | None,
              np_dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    r"""Sorted unique :obj:`key` and the summed weights of its duplicates
    (their count for an unweighted graph)."""
    if weight is None:
        key.sort()
    else:
        order = np.argsort(key, kind='stable')  # duplicates summed in file order
        key, weight = key[order], weight[order]
        del order
    if not key.size:
        return key, np.zeros(0, np_dtype) if weight is None else weight
    first = np.empty(key.size, dtype=bool)
    first[0] = True
    np.not_equal(key[1:], key[:-1], out=first[1:])
    start = np.flatnonzero(first)
    del first
    if weight is None:
        counts = np.diff(start, append=key.size).astype(np_dtype)
        return key[start], counts
    return key[start], np.add.reduceat(weight, start)


def _merge_diagonal(key: np.ndarray, values: Tensor, diagonal: Tensor, n_local: int,
                    width: int) -> tuple[np.ndarray, Tensor]:
    r"""Sorted keys :obj:`key` (no diagonal among them) with one diagonal
    entry per local row merged in, in sorted order without a sort."""
    nodes = np.arange(n_local, dtype=np.int64)
    diag_key = nodes * width + nodes
    at = np.searchsorted(key, diag_key) + nodes
    off = np.arange(key.size, dtype=np.int64) + np.searchsorted(diag_key, key)
    merged = np.empty(key.size + n_local, dtype=np.int64)
    merged[at], merged[off] = diag_key, key
    out = values.new_empty(key.size + n_local)
    out[torch.from_numpy(at)], out[torch.from_numpy(off)] = diagonal, values
    return merged, out


def local_graph_rows(chunks: Iterable[tuple[Tensor, Tensor | None]], partition: NodePartition,
                     kind: str = 'sym_laplacian', dtype: torch.dtype = torch.float32,
                     group: dist.ProcessGroup | None = None, exchange: str = 'auto',
                     device: torch.device | str | None = None,
                     num_edges: int | None = None) -> RowBlockOperator:
    r"""This process's :class:`~pyg_spectral.solvers.halo.RowBlockOperator`
    of the :obj:`kind` matrix of the graph whose edges :obj:`chunks`
    yields, built without the whole graph. Collective: every process of
    :obj:`group` calls it with the same edges and partition.

    The rows, values, halo and spectral bounds are those of
    :meth:`RowBlockOperator.from_operator` on the whole
    :meth:`GraphOperator.from_edge_index
    <pyg_spectral.operators.GraphOperator.from_edge_index>` of the same
    edges, weights, :obj:`num_nodes`, :obj:`kind` and :obj:`dtype` (duplicates
    summed, a directed graph refused, self-loops as there); the values
    agree to rounding (exactly for unweighted graphs), since weights may be
    summed in another order.

    Args:
        chunks: the edge list in pieces: pairs of :obj:`edge_index`
            :obj:`[2, c]` (integers) and :obj:`edge_weight` :obj:`[c]` or
            :obj:`None` (e.g. :meth:`pyg_spectral.graph_file.GraphFile.chunks`).
            Read once; every process reads all of them and keeps the
            edges that leave its nodes.
        partition: the split of the :obj:`n` nodes into one block per
            process (:math:`n` is :obj:`partition.num_nodes`).
        kind: a symmetric kind of :class:`~pyg_spectral.operators.GraphOperator`.
        dtype: :obj:`torch.float32` or :obj:`torch.float64`.
        group: the process group (default: the default group).
        exchange: the halo exchange (:class:`~pyg_spectral.solvers.halo.HaloExchange`).
        device: where the block lives (default: the CPU).
        num_edges: the number of edges :obj:`chunks` yields, if known
            (:attr:`GraphFile.num_edges <pyg_spectral.graph_file.GraphFile>`):
            the kept edges then go into one allocation that never grows.

    Memory: this process's entries (its rows' edges) about four times over
    at the peak (sorting, the mirror check, the values) and two :obj:`[n]`
    integer arrays of the partition; the halo and the degrees of other
    processes' nodes arrive by exchange, never as :obj:`[n]` vectors.
    """
    if kind not in SYMMETRIC_KINDS:
        raise ValueError(f"kind must be one of the symmetric kinds {sorted(SYMMETRIC_KINDS)} "
                         f"(the distributed fit takes symmetric matrices), got {kind!r}")
    if dtype not in (torch.float32, torch.float64):
        raise TypeError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
    if not isinstance(partition, NodePartition):
        raise TypeError(f"partition must be a NodePartition, got {type(partition).__name__}")
    rank, world = group_rank_size(group)
    if partition.num_parts != world:
        raise ValueError(f"partition has {partition.num_parts} parts but there are {world} "
                         f"processes; partition again with num_parts={world}")
    n = partition.num_nodes
    lo, hi = int(partition.offsets[rank]), int(partition.offsets[rank + 1])
    n_local = hi - lo
    np_dtype = torch.empty(0, dtype=dtype).numpy().dtype
    position = partition.position().numpy().astype(_index_dtype(n))
    # an upper bound when the edge count is known: untouched capacity of a
    # fresh allocation is never resident
    capacity = num_edges if num_edges is not None else 1 << 20
    row, col, weight = _stream_rows(chunks, position, lo, hi, n, dtype, kind, capacity)
    del position

    # local columns, in place: own rows first (partition order), then the
    # halo sorted by position, as RowBlockOperator.from_operator numbers them
    outside = (col < lo) | (col >= hi)
    halo = np.unique(col[outside])
    width = n_local + halo.size
    col -= lo
    col[outside] = n_local + np.searchsorted(halo, col[outside] + lo)
    del outside
    key = row.astype(np.int64)
    del row
    key *= width
    key += col
    del col
    key, weight = _coalesce(key, weight, np_dtype)

    asymmetric, weight = _mirror_check(key, weight, halo, partition, rank, width, n_local,
                                       np_dtype, group, exchange)
    if _all_reduce(float(asymmetric), dist.ReduceOp.MAX, group) > 0:
        raise DirectedGraphError(f"edge_index describes a directed graph, but kind={kind!r} "
                                 f"needs a symmetric matrix; symmetrise it with "
                                 f"torch_geometric.utils.to_undirected")
    plan = HaloExchange.build(torch.from_numpy(halo), partition.offsets, group, exchange)

    def extended(values: Tensor) -> Tensor:
        r"""Per-node values of the own rows, then of the halo nodes."""
        return torch.cat([values, plan(values.view(-1, 1)).view(-1).to(values)])

    def row_sums(values: Tensor, rows: Tensor) -> Tensor:
        return values.new_zeros(n_local).scatter_add_(0, rows, values)

    w = torch.from_numpy(weight)
    del weight
    rows = torch.from_numpy(key // width)
    cols = torch.from_numpy(key % width)
    loop = cols == rows
    diagonal = None
    if kind in ('gcn', 'laplacian', 'sym_laplacian'):
        if kind == 'gcn':
            # add_remaining_self_loops: a node's loop keeps its weight, the
            # others get 1, and the loop is summed last into the degree
            loop_weight = w.new_ones(n_local)
            loop_weight[rows[loop]] = w[loop]
        else:  # as GraphOperator: the degrees leave the loops out
            deg = row_sums(w.masked_fill(loop, 0), rows)
        if bool(loop.any()):
            keep = ~loop
            key, w, rows, cols = key[keep.numpy()], w[keep], rows[keep], cols[keep]
            del keep
        if kind == 'gcn':
            deg = row_sums(w, rows) + loop_weight
    elif kind == 'sym_adjacency':
        deg = row_sums(w, rows)
    del loop
    if kind == 'adjacency':
        radius = float(row_sums(w.abs(), rows).max()) if n_local else 0.0
        radius = _all_reduce(radius, dist.ReduceOp.MAX, group)
        values, bounds = w, (-radius, radius)
    elif kind == 'laplacian':
        values, diagonal = -w, deg
        top = float(deg.max()) if n_local else 0.0
        bounds = (0.0, 2.0 * _all_reduce(top, dist.ReduceOp.MAX, group))
    else:
        dinv = deg.pow(-0.5).masked_fill_(deg == 0, 0)
        scaled = dinv[rows]
        if kind == 'sym_laplacian':
            scaled.neg_()
        scaled *= w
        scaled *= extended(dinv)[cols]
        values = scaled
        if kind == 'sym_laplacian':
            diagonal, bounds = torch.ones_like(deg), (0.0, 2.0)
        else:
            bounds = (-1.0, 1.0)
            if kind == 'gcn':
                diagonal = dinv * loop_weight * dinv
    plan.bytes_sent, plan.seconds = 0, 0.0  # the degrees were set-up traffic, not a step's
    del w, rows, cols
    device = torch.device('cpu') if device is None else device
    if diagonal is not None:
        key, values = _merge_diagonal(key, values, diagonal, n_local, width)
    rows, cols = np.divmod(key, width)
    del key
    own = cols < n_local
    own_t = torch.from_numpy(own)

    def part(mask: np.ndarray, mask_t: Tensor, shift: int, columns: int) -> Tensor:
        crow = np.concatenate([[0], np.cumsum(np.bincount(rows[mask], minlength=n_local))])
        return sparse_csr(compact_indices(torch.from_numpy(crow)),
                          compact_indices(torch.from_numpy(cols[mask] - shift)),
                          values[mask_t].to(dtype), (n_local, columns)).to(device)

    parts = (part(own, own_t, 0, n_local), part(~own, ~own_t, n_local, halo.size))
    return RowBlockOperator(parts, partition.nodes(rank), plan, (n, n), bounds, kind, lo)


# entries of the own block checked per slice: the transposed keys and their
# places in the sorted keys are temporaries of the slice's size
MIRROR_SLICE = 1 << 20


def _mirror_check(key: np.ndarray, weight: np.ndarray, halo: np.ndarray,
                  partition: NodePartition, rank: int, width: int, n_local: int,
                  np_dtype: np.dtype, group, exchange: str) -> tuple[bool, np.ndarray]:
    r"""Whether this process's rows (sorted unique :obj:`key` = local row x
    :obj:`width` + local column) are not the mirror of its columns, and
    the weights made exactly symmetric. The mirror of an entry of the own
    block is looked up in :obj:`key` itself, a slice at a time; those of the
    entries that cross the partition come from the processes that own their
    columns (an exchange of the cut entries only). Where the pattern
    matches and a weight differs from its mirror's by rounding, both become
    their mean, as :meth:`GraphOperator.from_edge_index` does."""
    _, world = group_rank_size(group)
    differs = []  # (entries, their mirrors' weights) where the two are not equal
    for start in range(0, key.size, MIRROR_SLICE):
        row, col = np.divmod(key[start:start + MIRROR_SLICE], width)
        inside = np.flatnonzero(col < n_local)
        transposed = col[inside] * width + row[inside]
        del row, col
        # sorted needles: numpy's binary search starts from the last answer,
        # 20x faster than in row order on 24M keys
        order = np.argsort(transposed)
        place = np.empty_like(order)
        place[order] = np.searchsorted(key, transposed[order])
        del order
        place[place == key.size] = 0
        if not np.array_equal(key[place], transposed):
            return True, weight
        del transposed
        unequal = weight[place] != weight[start + inside]
        if unequal.any():
            differs.append((start + inside[unequal], weight[place[unequal]]))
    cross = np.flatnonzero(key % width >= n_local)
    row, col = np.divmod(key[cross], width)
    target = halo[col - n_local]                      # position of the column's node
    owner = np.searchsorted(partition.offsets.numpy(), target, side='right') - 1
    order = np.argsort(owner, kind='stable')
    cross, row, target, owner = cross[order], row[order], target[order], owner[order]
    lo = int(partition.offsets[rank])
    sent = torch.from_numpy(np.stack([target - partition.offsets.numpy()[owner], row + lo],
                                     1).astype(np.int64))
    counts = np.bincount(owner, minlength=world).tolist()
    got, _ = exchange_rows(sent, counts, group, exchange)
    got_w, _ = exchange_rows(torch.from_numpy(weight[cross]).view(-1, 1), counts, group, exchange)
    got, got_w = got.numpy(), got_w.view(-1).numpy().astype(np_dtype)
    if got.shape[0] != cross.size:
        return True, weight
    if got.size:
        slot = np.searchsorted(halo, got[:, 1])
        slot[slot == halo.size] = 0
        if not np.array_equal(halo[slot], got[:, 1]):
            return True, weight
        transposed = got[:, 0] * width + n_local + slot
        place = np.searchsorted(key, transposed)
        place[place == key.size] = 0
        if not np.array_equal(key[place], transposed):
            return True, weight
        unequal = got_w != weight[place]
        if unequal.any():
            differs.append((place[unequal], got_w[unequal]))
    if not differs:
        return False, weight
    averaged = weight.copy()
    for entries, mirror in differs:
        mine = weight[entries]
        slack = MIRROR_SLACK_EPS * np.finfo(np_dtype).eps * np.maximum(np.abs(mine),
                                                                      np.abs(mirror))
        if not (np.abs(mine - mirror) <= slack).all():
            return True, weight
        averaged[entries] = (torch.from_numpy(mine) + torch.from_numpy(mirror)).div_(2).numpy()
    return False, averaged
