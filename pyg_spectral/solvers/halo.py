"""One process's block of rows of a graph matrix, and the halo exchange that
feeds it: the rows of the other processes' blocks that its sparse product
reads, sent and received by index lists computed once from the partition."""
from __future__ import annotations

import time
import warnings

import numpy as np
import scipy.sparse as sp
import torch
import torch.distributed as dist
from torch import Tensor
from torch_geometric.utils import cumsum

from ..operators.base import LinearOperator
from .partition import NodePartition

EXCHANGES = ('auto', 'all_to_all', 'p2p')


def group_rank_size(group: dist.ProcessGroup | None) -> tuple[int, int]:
    r"""This process's rank and the world size of :obj:`group` (the default
    group when :obj:`None`); :obj:`(0, 1)` without an initialised process
    group."""
    if not (dist.is_available() and dist.is_initialized()):
        if group is not None:
            raise RuntimeError("a process group was given but torch.distributed is not "
                               "initialised; call torch.distributed.init_process_group first")
        return 0, 1
    return dist.get_rank(group), dist.get_world_size(group)


def collective_device(group: dist.ProcessGroup | None) -> torch.device:
    r"""Where tensors must be for collectives on :obj:`group`: the current
    CUDA device for NCCL (which takes no CPU tensors), else the CPU."""
    if dist.is_available() and dist.is_initialized() and dist.get_backend(group) == 'nccl':
        return torch.device('cuda', torch.cuda.current_device())
    return torch.device('cpu')


def exchange_rows(rows: Tensor, counts: list[int], group: dist.ProcessGroup | None = None,
                  method: str = 'auto') -> tuple[Tensor, list[int]]:
    r"""Collective: sends :obj:`rows[...]` (:obj:`[sum(counts), *]`, grouped
    by destination in rank order, :obj:`counts[p]` of them to process
    :obj:`p`) and returns the rows received (grouped by source in rank
    order, on the device of :obj:`rows`) and how many came from each
    process. For one-off exchanges whose sizes are not agreed in advance
    (a plan's index lists, a graph's cut entries); every process of
    :obj:`group` calls it."""
    rank, world = group_rank_size(group)
    if len(counts) != world or sum(counts) != rows.size(0):
        raise ValueError(f"counts must give the rows sent to each of the {world} processes "
                         f"and add up to rows.size(0)={rows.size(0)}, got {counts}")
    if world == 1:
        return rows, list(counts)
    device = collective_device(group)
    gathered = [torch.zeros(world, dtype=torch.long, device=device) for _ in range(world)]
    dist.all_gather(gathered, torch.tensor(counts, dtype=torch.long, device=device), group=group)
    received = torch.stack(gathered).cpu()[:, rank].tolist()  # what each process sends here
    plan = HaloExchange(rows.new_zeros(0, dtype=torch.long), [0] * world, [0] * world, group,
                        method)
    out = plan._route(rows.to(device), list(counts), received)
    return out.to(rows.device), received


class HaloExchange:
    r"""Sends each process the rows of the local block that it reads and
    receives the rows this one reads, in one collective per call.

    :obj:`method='all_to_all'` is one :func:`torch.distributed.all_to_all_single`
    (NCCL; gloo on CPU in the torch versions that implement it, 2.13
    does); :obj:`'p2p'` is the fallback for backends without it: a
    non-blocking send and receive per pair of processes that share a halo
    (:func:`torch.distributed.batch_isend_irecv`), so processes with no
    shared boundary exchange nothing. :obj:`'auto'` is :obj:`'all_to_all'`.

    Args:
        send_index: :obj:`[num_sent]` local rows to send, grouped by
            destination rank in rank order.
        send_counts, recv_counts: rows sent to / received from each rank.
        group: the process group (default: the default group).
        method: :obj:`'auto'`, :obj:`'all_to_all'` or :obj:`'p2p'`.
    """

    def __init__(self, send_index: Tensor, send_counts: list[int], recv_counts: list[int],
                 group: dist.ProcessGroup | None = None, method: str = 'auto') -> None:
        if method not in EXCHANGES:
            raise ValueError(f"exchange must be one of {EXCHANGES}, got {method!r}")
        self.send_index, self.send_counts, self.recv_counts = send_index, send_counts, recv_counts
        self.group, self.method = group, 'all_to_all' if method == 'auto' else method
        self.rank, self.world_size = group_rank_size(group)
        # running totals, for the benchmarks (on a GPU the seconds are
        # launch times unless the caller synchronises)
        self.bytes_sent, self.seconds = 0, 0.0

    @classmethod
    def build(cls, halo: Tensor, offsets: Tensor, group: dist.ProcessGroup | None = None,
              method: str = 'auto') -> 'HaloExchange':
        r"""The exchange in which this process receives the rows at the
        sorted global positions :obj:`halo` (:obj:`[num_halo]`, positions in
        the partition order, none of them its own), where process :obj:`p`
        owns positions :obj:`offsets[p]:offsets[p + 1]`. Collective: every
        process of :obj:`group` calls it."""
        rank, world = group_rank_size(group)
        halo = halo.cpu()
        owner = torch.searchsorted(offsets.cpu(), halo, right=True) - 1
        recv_counts = torch.bincount(owner, minlength=world)
        if world == 1:
            return cls(halo.new_zeros(0), [0], [0], group, method)
        # route each requested position to its owner: the requests are the send lists
        requests, send_counts = exchange_rows(halo.view(-1, 1), recv_counts.tolist(), group,
                                              method)
        send_index = requests.view(-1) - int(offsets[rank])
        return cls(send_index, send_counts, recv_counts.tolist(), group, method)

    @property
    def num_received(self) -> int:
        return sum(self.recv_counts)

    def _route(self, buffer: Tensor, send_counts: list[int], recv_counts: list[int]) -> Tensor:
        out = buffer.new_empty((sum(recv_counts),) + tuple(buffer.shape[1:]))
        if self.method == 'all_to_all':
            dist.all_to_all_single(out, buffer.contiguous(), recv_counts, send_counts,
                                   group=self.group)
            return out
        ops, start_send, start_recv = [], 0, 0
        for peer in range(self.world_size):
            peer_global = peer if self.group is None else dist.get_global_rank(self.group, peer)
            if send_counts[peer]:
                chunk = buffer[start_send:start_send + send_counts[peer]].contiguous()
                ops.append(dist.P2POp(dist.isend, chunk, peer_global, self.group))
            if recv_counts[peer]:
                ops.append(dist.P2POp(dist.irecv, out[start_recv:start_recv + recv_counts[peer]],
                                      peer_global, self.group))
            start_send += send_counts[peer]
            start_recv += recv_counts[peer]
        if ops:
            for request in dist.batch_isend_irecv(ops):
                request.wait()
        return out

    def __call__(self, X: Tensor) -> Tensor:
        r"""The halo rows :obj:`[num_halo, w]` for the local rows :obj:`X`
        :obj:`[n_local, w]`."""
        if self.world_size == 1:
            return X.new_zeros((0, X.size(1)))
        send = X.index_select(0, self.send_index.to(X.device))
        self.bytes_sent += send.numel() * send.element_size()
        start = time.perf_counter()
        out = self._route(send, self.send_counts, self.recv_counts)
        self.seconds += time.perf_counter() - start
        return out


def sparse_csr(crow: Tensor, col: Tensor, values: Tensor, size: tuple[int, int]) -> Tensor:
    r"""A torch sparse CSR tensor of :obj:`size` from its three arrays."""
    with warnings.catch_warnings():
        # torch flags CSR as beta on every construction; nothing to act on
        warnings.filterwarnings('ignore', message='Sparse (CSR tensor support|invariant checks)')
        return torch.sparse_csr_tensor(crow, col, values, size=size)


def compact_indices(indices: Tensor) -> Tensor:
    r""":obj:`indices` as int32 where they fit: half the memory of a block's
    column indices, and torch's CPU sparse product takes them."""
    if indices.numel() and int(indices.max()) >= 2**31:
        return indices.long()
    return indices.int()


def split_columns(matrix: Tensor, num_local: int) -> tuple[Tensor, Tensor]:
    r"""A CSR block :obj:`[n_local, n_local + num_halo]` whose rows list their
    own columns (:obj:`< num_local`) before their halo columns (sorted
    columns do) as two CSR matrices: :obj:`[n_local, n_local]` and
    :obj:`[n_local, num_halo]`."""
    crow, col, values = matrix.crow_indices(), matrix.col_indices(), matrix.values()
    rows, width = matrix.size(0), matrix.size(1)
    own = col < num_local
    row = torch.repeat_interleave(torch.arange(rows, device=col.device), crow[1:] - crow[:-1])
    counts = torch.bincount(row[own], minlength=rows)
    del row
    own_crow = cumsum(counts)
    halo_crow = crow - own_crow
    own_col, halo_col = col[own], col[~own] - num_local
    return (sparse_csr(compact_indices(own_crow), compact_indices(own_col), values[own],
                       (rows, num_local)),
            sparse_csr(compact_indices(halo_crow), compact_indices(halo_col), values[~own],
                       (rows, width - num_local)))


class RowBlockOperator:
    r"""The rows of a square symmetric sparse operator :obj:`T` (a
    :class:`~pyg_spectral.operators.GraphOperator`) that one process owns
    under a :class:`~pyg_spectral.solvers.partition.NodePartition`:
    :meth:`affine_matmul` gives the local rows of :math:`\alpha T X + \beta X`
    from the local rows of :obj:`X`, after one halo exchange.

    The block is kept as two CSR matrices, its own columns and its halo
    columns, so that a product needs no copy of :obj:`X` extended by the
    halo rows: :math:`T X = T_{own} X + T_{halo} H`.

    Args:
        matrix: sparse CSR :obj:`[n_local, n_local + num_halo]`: columns
            first the local rows (in partition order), then the halo rows;
            or the pair :obj:`(own [n_local, n_local], halo [n_local, num_halo])`.
        nodes: :obj:`[n_local]` original ids of the local rows.
        exchange: the :class:`HaloExchange` that brings the halo rows.
        shape: the global :obj:`(n, n)`.
        bounds: safe :obj:`(lower, upper)` eigenvalue bounds of :obj:`T`.
        kind: the graph matrix's kind.
        offset: the first local row's place in the partition order.
    """
    is_symmetric = True

    def __init__(self, matrix: Tensor | tuple[Tensor, Tensor], nodes: Tensor,
                 exchange: HaloExchange, shape: tuple[int, int], bounds: tuple[float, float],
                 kind: str = 'custom', offset: int = 0) -> None:
        if isinstance(matrix, Tensor):
            own, halo = split_columns(matrix, matrix.size(0))
        else:
            own, halo = matrix
        if own.size(0) != halo.size(0) or own.size(0) != own.size(1) \
                or halo.size(1) != exchange.num_received:
            raise ValueError(f"the block's parts must be [n_local, n_local] and [n_local, "
                             f"{exchange.num_received}] (the exchange's halo), got "
                             f"{tuple(own.shape)} and {tuple(halo.shape)}")
        self.own, self.halo, self.nodes, self.exchange = own, halo, nodes, exchange
        self.shape, self._bounds, self.kind, self.offset = shape, bounds, kind, offset

    @classmethod
    def from_operator(cls, operator: LinearOperator, partition: NodePartition,
                      group: dist.ProcessGroup | None = None,
                      exchange: str = 'auto') -> 'RowBlockOperator':
        r"""This process's block of :obj:`operator` (which has a sparse CSR
        :obj:`matrix`, e.g. a :class:`~pyg_spectral.operators.GraphOperator`)
        under :obj:`partition`, whose number of parts must be the world
        size. Collective (the exchange plan is agreed on once)."""
        matrix = getattr(operator, 'matrix', None)
        if not isinstance(matrix, Tensor) or matrix.layout != torch.sparse_csr:
            raise TypeError(f"operator must hold a sparse CSR matrix (a GraphOperator), got "
                            f"{type(operator).__name__}")
        if not operator.is_symmetric:
            raise ValueError(f"the distributed fit takes symmetric operators; kind="
                             f"{getattr(operator, 'kind', None)!r} is not (use a symmetric kind, "
                             f"e.g. 'sym_laplacian')")
        rank, world = group_rank_size(group)
        n = operator.shape[0]
        if partition.num_parts != world or partition.num_nodes != n:
            raise ValueError(f"partition has {partition.num_parts} parts of {partition.num_nodes} "
                             f"nodes, but there are {world} processes and the operator has {n} "
                             f"rows; partition again with num_parts={world}")
        device, dtype = operator.device, operator.dtype
        A = sp.csr_matrix((matrix.values().cpu().numpy(), matrix.col_indices().cpu().numpy(),
                           matrix.crow_indices().cpu().numpy()), shape=(n, n))
        nodes = partition.nodes(rank)
        block = A[nodes.numpy()]
        lo, hi = int(partition.offsets[rank]), int(partition.offsets[rank + 1])
        position = partition.position().numpy()[block.indices]
        owned = (position >= lo) & (position < hi)
        halo = np.unique(position[~owned])
        columns = np.where(owned, position - lo, (hi - lo) + np.searchsorted(halo, position))
        local = sp.csr_matrix((block.data, columns, block.indptr),
                              shape=(hi - lo, hi - lo + halo.size))
        local.sort_indices()
        csr = sparse_csr(torch.from_numpy(local.indptr.astype(np.int64)),
                   torch.from_numpy(local.indices.astype(np.int64)),
                   torch.from_numpy(local.data), local.shape).to(device=device, dtype=dtype)
        plan = HaloExchange.build(torch.from_numpy(halo.astype(np.int64)), partition.offsets,
                                  group, exchange)
        return cls(csr, nodes, plan, (n, n), operator.spectral_bounds(),
                   getattr(operator, 'kind', 'custom'), lo)

    @property
    def matrix(self) -> Tensor:
        r"""The block as one CSR matrix :obj:`[n_local, n_local + num_halo]`,
        assembled on each call (for inspection; products use the parts)."""
        own, halo = self.own, self.halo
        rows = torch.arange(own.size(0), device=own.device)
        row = torch.cat([rows.repeat_interleave(own.crow_indices().diff().long()),
                         rows.repeat_interleave(halo.crow_indices().diff().long())])
        # a stable sort by row keeps each row's own columns before its halo ones
        order = torch.sort(row, stable=True).indices
        col = torch.cat([own.col_indices().long(), halo.col_indices().long() + own.size(1)])
        values = torch.cat([own.values(), halo.values()])[order]
        crow = cumsum(torch.bincount(row, minlength=own.size(0)))
        return sparse_csr(compact_indices(crow), compact_indices(col[order]), values,
                          (own.size(0), own.size(1) + halo.size(1)))

    @property
    def num_local(self) -> int:
        return self.own.size(0)

    @property
    def nnz(self) -> int:
        return self.own._nnz() + self.halo._nnz()

    @property
    def device(self) -> torch.device:
        return self.own.device

    @property
    def dtype(self) -> torch.dtype:
        return self.own.dtype

    def spectral_bounds(self) -> tuple[float, float]:
        return self._bounds

    def parts(self) -> tuple[Tensor, ...]:
        r"""The index and value tensors of the block (a checkpoint's digest
        of which rows it holds)."""
        return (self.own.crow_indices(), self.own.col_indices(), self.own.values(),
                self.halo.crow_indices(), self.halo.col_indices(), self.halo.values())

    def entry_counts(self) -> tuple[int, int]:
        r"""The off-diagonal entries of the local rows and how many of them
        lie in halo columns: summed over the processes and halved, the
        graph's edges and its edge cut (as
        :func:`~pyg_spectral.solvers.partition.partition_report` counts
        them), read off the blocks without the whole graph."""
        crow, col = self.own.crow_indices().cpu().long(), self.own.col_indices().cpu()
        row = torch.repeat_interleave(torch.arange(self.num_local), crow[1:] - crow[:-1])
        cut = self.halo._nnz()
        return int((col != row).sum()) + cut, cut

    def affine_matmul(self, X: Tensor, alpha: float = 1.0, beta: float = 0.0) -> Tensor:
        r"""Local rows of :math:`\alpha T X + \beta X` for the local rows
        :obj:`X` :obj:`[n_local, w]`; collective (the halo exchange)."""
        if X.dim() != 2 or X.size(0) != self.num_local:
            raise ValueError(f"X must have shape [{self.num_local}, w] (this process's rows), "
                             f"got {tuple(X.shape)}")
        out = torch.addmm(X, self.own, X, beta=beta, alpha=alpha)
        received = self.exchange(X)
        if received.numel():
            out.addmm_(self.halo, received, alpha=alpha)
        return out

    def matmul(self, X: Tensor) -> Tensor:
        return self.affine_matmul(X)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(kind={self.kind!r}, rows={self.num_local} of '
                f'{self.shape[0]}, halo={self.exchange.num_received}, nnz={self.nnz})')
