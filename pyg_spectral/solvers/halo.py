"""One process's block of rows of a graph matrix, and the halo exchange that
feeds it: the rows of the other processes' blocks that its sparse product
reads, sent and received by index lists computed once from the partition."""
from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp
import torch
import torch.distributed as dist
from torch import Tensor

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


class RowBlockOperator:
    r"""The rows of a square symmetric sparse operator :obj:`T` (a
    :class:`~pyg_spectral.operators.GraphOperator`) that one process owns
    under a :class:`~pyg_spectral.solvers.partition.NodePartition`:
    :meth:`affine_matmul` gives the local rows of :math:`\alpha T X + \beta X`
    from the local rows of :obj:`X`, after one halo exchange.

    Attributes:
        matrix: sparse CSR :obj:`[n_local, n_local + num_halo]`: columns
            first the local rows (in partition order), then the halo rows.
        nodes: :obj:`[n_local]` original ids of the local rows.
        shape: the global :obj:`(n, n)`.
    """
    is_symmetric = True

    def __init__(self, matrix: Tensor, nodes: Tensor, exchange: HaloExchange,
                 shape: tuple[int, int], bounds: tuple[float, float], kind: str = 'custom',
                 offset: int = 0) -> None:
        self.matrix, self.nodes, self.exchange = matrix, nodes, exchange
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
        csr = torch.sparse_csr_tensor(torch.from_numpy(local.indptr.astype(np.int64)),
                                      torch.from_numpy(local.indices.astype(np.int64)),
                                      torch.from_numpy(local.data), size=local.shape,
                                      dtype=dtype, device=device)
        plan = HaloExchange.build(torch.from_numpy(halo.astype(np.int64)), partition.offsets,
                                  group, exchange)
        return cls(csr, nodes, plan, (n, n), operator.spectral_bounds(),
                   getattr(operator, 'kind', 'custom'), lo)

    @property
    def num_local(self) -> int:
        return self.matrix.size(0)

    @property
    def device(self) -> torch.device:
        return self.matrix.device

    @property
    def dtype(self) -> torch.dtype:
        return self.matrix.dtype

    def spectral_bounds(self) -> tuple[float, float]:
        return self._bounds

    def entry_counts(self) -> tuple[int, int]:
        r"""The off-diagonal entries of the local rows and how many of them
        lie in halo columns: summed over the processes and halved, the
        graph's edges and its edge cut (as
        :func:`~pyg_spectral.solvers.partition.partition_report` counts
        them), read off the blocks without the whole graph."""
        crow, col = self.matrix.crow_indices().cpu(), self.matrix.col_indices().cpu()
        row = torch.repeat_interleave(torch.arange(self.num_local), crow[1:] - crow[:-1])
        off_diagonal = int((col != row).sum())
        return off_diagonal, int((col >= self.num_local).sum())

    def affine_matmul(self, X: Tensor, alpha: float = 1.0, beta: float = 0.0) -> Tensor:
        r"""Local rows of :math:`\alpha T X + \beta X` for the local rows
        :obj:`X` :obj:`[n_local, w]`; collective (the halo exchange)."""
        if X.dim() != 2 or X.size(0) != self.num_local:
            raise ValueError(f"X must have shape [{self.num_local}, w] (this process's rows), "
                             f"got {tuple(X.shape)}")
        extended = torch.cat([X, self.exchange(X)])
        return torch.addmm(X, self.matrix, extended, beta=beta, alpha=alpha)

    def matmul(self, X: Tensor) -> Tensor:
        return self.affine_matmul(X)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(kind={self.kind!r}, rows={self.num_local} of '
                f'{self.shape[0]}, halo={self.exchange.num_received}, nnz={self.matrix._nnz()})')
