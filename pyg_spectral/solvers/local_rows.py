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

import warnings
from typing import Iterable

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor

from ..operators.graph import SYMMETRIC_KINDS, DirectedGraphError
from .halo import (HaloExchange, RowBlockOperator, collective_device, exchange_rows,
                   group_rank_size)
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


def _stream_rows(chunks: Iterable, position: np.ndarray, lo: int, hi: int, n: int,
                 dtype: torch.dtype, kind: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    r"""The edges of :obj:`chunks` whose source is one of this process's
    nodes (positions :obj:`lo:hi` of the partition order): their local row,
    the position of their target and their weight (:obj:`None` for an
    unweighted graph). Every process reads every chunk, so the checks of
    the whole edge list give the same answer everywhere without a
    collective."""
    rows, cols, weights, weighted = [], [], [], None
    np_dtype = torch.empty(0, dtype=dtype).numpy().dtype
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
        rows.append((source[mine] - lo).astype(np.int32 if hi - lo < 2**31 else np.int64))
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
    empty = np.zeros(0, dtype=np.int64)
    row = np.concatenate(rows).astype(np.int64) if rows else empty
    col = np.concatenate(cols) if cols else empty
    weight = (np.concatenate(weights) if weights else np.zeros(0, np_dtype)) if weighted else None
    return row, col, weight


def _coalesce(key: np.ndarray, weight: np.ndarray | None,
              np_dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    r"""Sorted unique :obj:`key` and the summed weights of its duplicates
    (their count for an unweighted graph)."""
    if weight is None:
        key.sort()
        start = np.flatnonzero(np.concatenate([[True], key[1:] != key[:-1]])) if key.size \
            else np.zeros(0, dtype=np.int64)
        counts = np.diff(np.append(start, key.size))
        return key[start], counts.astype(np_dtype)
    order = np.argsort(key, kind='stable')  # duplicates summed in file order
    key, weight = key[order], weight[order]
    del order
    if not key.size:
        return key, weight
    start = np.flatnonzero(np.concatenate([[True], key[1:] != key[:-1]]))
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
                     device: torch.device | str | None = None) -> RowBlockOperator:
    r"""This process's :class:`~pyg_spectral.solvers.halo.RowBlockOperator`
    of the :obj:`kind` matrix of the graph whose edges :obj:`chunks`
    yields, built without the whole graph. Collective: every process of
    :obj:`group` calls it with the same edges and partition.

    The rows, values, halo and spectral bounds are those of
    :meth:`RowBlockOperator.from_operator` on
    :meth:`GraphOperator.from_edge_index(edge_index, num_nodes, edge_weight, kind, dtype=dtype)
    <pyg_spectral.operators.GraphOperator.from_edge_index>` (duplicates
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

    Memory: the process's edges a few times over (sorting, the mirror
    check) and three :obj:`[n]` integer arrays of the partition; the halo
    and the degrees of other processes' nodes arrive by exchange, never as
    :obj:`[n]` vectors.
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
    position = partition.position().numpy()
    row, col, weight = _stream_rows(chunks, position, lo, hi, n, dtype, kind)
    del position

    # local columns: own rows first (partition order), then the halo sorted
    # by position, as RowBlockOperator.from_operator numbers them
    own = (col >= lo) & (col < hi)
    halo = np.unique(col[~own])
    width = n_local + halo.size
    local_col = np.where(own, col - lo, n_local + np.searchsorted(halo, col))
    del own, col
    key = row * width + local_col
    del row, local_col
    key, weight = _coalesce(key, weight, np_dtype)

    row, local_col = np.divmod(key, width)
    asymmetric = _mirror_weights(key, weight, row, local_col, halo, partition, rank, width,
                                 n_local, np_dtype, group, exchange)
    if _all_reduce(float(asymmetric), dist.ReduceOp.MAX, group) > 0:
        raise DirectedGraphError(f"edge_index describes a directed graph, but kind={kind!r} "
                                 f"needs a symmetric matrix; symmetrise it with "
                                 f"torch_geometric.utils.to_undirected")
    w = torch.from_numpy(weight)
    row_t = torch.from_numpy(row)
    loop = torch.from_numpy(local_col == row)
    plan = HaloExchange.build(torch.from_numpy(halo), partition.offsets, group, exchange)

    def extended(values: Tensor) -> Tensor:
        r"""Per-node values of the own rows, then of the halo nodes."""
        return torch.cat([values, plan(values.view(-1, 1)).view(-1).to(values)])

    def row_sums(values: Tensor, rows: Tensor) -> Tensor:
        return values.new_zeros(n_local).scatter_add_(0, rows, values)

    diagonal = None
    if kind == 'adjacency':
        radius = float(row_sums(w.abs(), row_t).max()) if n_local else 0.0
        radius = _all_reduce(radius, dist.ReduceOp.MAX, group)
        values, bounds = w, (-radius, radius)
    elif kind in ('gcn', 'sym_adjacency'):
        if kind == 'gcn':
            # add_remaining_self_loops: a node's loop keeps its weight, the
            # others get 1, and the loop is summed last into the degree
            loop_weight = w.new_ones(n_local)
            loop_weight[row_t[loop]] = w[loop]
            keep = ~loop
            key, w, row_t = key[keep.numpy()], w[keep], row_t[keep]
            deg = row_sums(w, row_t) + loop_weight
        else:
            deg = row_sums(w, row_t)
        dinv = deg.pow(-0.5).masked_fill_(deg == 0, 0)
        dinv_ext = extended(dinv)
        cols = torch.from_numpy(key % width)
        values, bounds = dinv[row_t] * w * dinv_ext[cols], (-1.0, 1.0)
        if kind == 'gcn':
            diagonal = dinv * loop_weight * dinv
    else:  # laplacian, sym_laplacian: loops dropped, one diagonal entry per node
        deg = row_sums(w.masked_fill(loop, 0), row_t)
        keep = ~loop
        key, w, row_t = key[keep.numpy()], w[keep], row_t[keep]
        if kind == 'laplacian':
            values, diagonal = -w, deg
            top = float(deg.max()) if n_local else 0.0
            bounds = (0.0, 2.0 * _all_reduce(top, dist.ReduceOp.MAX, group))
        else:
            dinv = deg.pow(-0.5).masked_fill_(deg == 0, 0)
            cols = torch.from_numpy(key % width)
            values, diagonal = -dinv[row_t] * w * extended(dinv)[cols], torch.ones_like(deg)
            bounds = (0.0, 2.0)
    plan.bytes_sent, plan.seconds = 0, 0.0  # the degrees were set-up traffic, not a step's
    del row_t, loop, w
    if diagonal is not None:
        key, values = _merge_diagonal(key, values, diagonal, n_local, width)
    counts = np.bincount(key // width, minlength=n_local)
    crow = torch.from_numpy(np.concatenate([[0], np.cumsum(counts)]).astype(np.int64))
    with warnings.catch_warnings():
        # torch flags CSR as beta on every construction; nothing to act on
        warnings.filterwarnings('ignore', message='Sparse (CSR tensor support|invariant checks)')
        csr = torch.sparse_csr_tensor(crow, torch.from_numpy(key % width), values.to(dtype),
                                      size=(n_local, width), dtype=dtype,
                                      device=torch.device('cpu') if device is None else device)
    return RowBlockOperator(csr, partition.nodes(rank), plan, (n, n), bounds, kind, lo)


def _mirror_weights(key: np.ndarray, weight: np.ndarray, row: np.ndarray, local_col: np.ndarray,
                    halo: np.ndarray, partition: NodePartition, rank: int, width: int,
                    n_local: int, np_dtype: np.dtype, group, exchange: str) -> bool:
    r"""Whether this process's rows are not the mirror of its columns: the
    transposed entries of its own block come from its own rows, those of the
    entries that cross the partition from the processes that own their
    columns (an exchange of the cut entries only). Where the pattern
    matches and a weight differs from its mirror's by rounding, both are
    replaced by their mean in place, as
    :meth:`GraphOperator.from_edge_index` does."""
    _, world = group_rank_size(group)
    inside = local_col < n_local
    t_key = [local_col[inside] * width + row[inside]]
    t_weight = [weight[inside]]
    del inside
    cross = np.flatnonzero(local_col >= n_local)
    target = halo[local_col[cross] - n_local]        # position of the column's node
    owner = np.searchsorted(partition.offsets.numpy(), target, side='right') - 1
    order = np.argsort(owner, kind='stable')
    cross, target, owner = cross[order], target[order], owner[order]
    lo = int(partition.offsets[rank])
    sent = torch.from_numpy(np.stack([target - partition.offsets.numpy()[owner],
                                      row[cross] + lo], 1).astype(np.int64))
    counts = np.bincount(owner, minlength=world).tolist()
    got, _ = exchange_rows(sent, counts, group, exchange)
    got_w, _ = exchange_rows(torch.from_numpy(weight[cross]).view(-1, 1), counts, group, exchange)
    got = got.numpy()
    asymmetric = False
    if got.size:
        slot = np.searchsorted(halo, got[:, 1])
        found = slot < halo.size
        found[found] = halo[slot[found]] == got[found, 1]
        asymmetric = not found.all()
        t_key.append(got[found, 0] * width + n_local + slot[found])
        t_weight.append(got_w.view(-1).numpy()[found].astype(np_dtype))
    t_key, t_weight = np.concatenate(t_key), np.concatenate(t_weight)
    if asymmetric or t_key.size != key.size:
        return True
    order = np.argsort(t_key)
    if not np.array_equal(t_key[order], key):
        return True
    mirror = t_weight[order]
    del order, t_key, t_weight
    if np.array_equal(mirror, weight):
        return False
    slack = MIRROR_SLACK_EPS * np.finfo(np_dtype).eps * np.maximum(np.abs(weight), np.abs(mirror))
    if not (np.abs(weight - mirror) <= slack).all():
        return True
    weight[:] = (torch.from_numpy(weight) + torch.from_numpy(mirror)).div_(2).numpy()
    return False
