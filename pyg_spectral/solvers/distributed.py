"""NeuralSVD on a graph whose nodes are split among processes
(:mod:`torch.distributed`, launched with ``torchrun``).

Each process owns a block of nodes: their rows of the graph matrix, of the
free table and of its momentum. A step is one halo exchange (the rows of the
other blocks that the local rows of the sparse product read), one local
sparse product, one all-reduce of the :obj:`k + k^2` moment sums of the
NestedLoRA loss and the closed-form gradient of the local rows
(:meth:`~pyg_spectral.losses.NestedLoRA.table_gradient`). The Rayleigh-Ritz
restarts, the stopping test and the final certificate are the ones of
:class:`~pyg_spectral.solvers.NeuralSVD`, written with Gram matrices
(Cholesky QR instead of Householder QR) so that every :obj:`[w, w]` matrix
is an all-reduced sum and every process takes the same decision from the
same numbers. With one process the fit *is* :meth:`NeuralSVD.fit`.
"""
from __future__ import annotations

import json
import math
import numbers
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..io import atomic_write_text, digest
from ..linalg import rayleigh_ritz
from ..losses import NestedLoRA
from ..operators.spectral import top_positive
from .checkpoint import load_checkpoint, save_checkpoint
from .halo import RowBlockOperator, collective_device, group_rank_size
from .neuralsvd import CERTIFIED_RESIDUAL, CERTIFIED_SINE, ROUNDING_GAP, NeuralSVD, drain_losses, \
    positive_int
from .partition import PARTITION_METHODS, NodePartition, partition_nodes

from .row_output import write_npy, write_npy_rows

METHOD_NAMES = PARTITION_METHODS + ('given',)

# rows of the random start drawn per generator: the start of a node depends
# on the seed and its id only, not on the partition or the world size
INIT_CHUNK = 1 << 16


def random_rows(nodes: Tensor, width: int, seed: int, dtype: torch.dtype = torch.float32,
                device=None) -> Tensor:
    r"""Rows :obj:`nodes` (:obj:`[m]` original ids) of a standard normal
    :obj:`[n, width]` table defined chunk by chunk of :obj:`INIT_CHUNK`
    node ids, each chunk from its own generator seeded by :obj:`seed` and
    the chunk: every process draws the rows it owns and the table is the
    same for any partition."""
    nodes = nodes.cpu()
    out = torch.empty(nodes.numel(), width, dtype=dtype)
    chunk = nodes // INIT_CHUNK
    order = torch.argsort(chunk)
    ids, counts = torch.unique_consecutive(chunk[order], return_counts=True)
    start = 0
    for c, count in zip(ids.tolist(), counts.tolist()):
        idx = order[start:start + count]
        generator = torch.Generator().manual_seed((seed * 0x9E3779B97F4A7C15 + c) % (1 << 63))
        block = torch.randn(INIT_CHUNK, width, generator=generator, dtype=dtype)
        out[idx] = block[nodes[idx] - c * INIT_CHUNK]
        start += count
    return out.to(device)


class Collectives:
    r"""The reductions of a fit over :obj:`group` (identities with one
    process), timed and counted for the benchmarks. On a CPU (gloo) the
    collectives block, so the times are the communication's; on a GPU
    (NCCL) they are launch times unless the caller synchronises."""

    def __init__(self, group: dist.ProcessGroup | None = None) -> None:
        self.group = group
        self.rank, self.world_size = group_rank_size(group)
        self.device = collective_device(group)
        self.seconds, self.bytes, self.calls = 0.0, 0, 0

    def _reduce(self, x: Tensor, op) -> Tensor:
        if self.world_size == 1:
            return x
        y = x.to(self.device).contiguous().clone()
        start = time.perf_counter()
        dist.all_reduce(y, op=op, group=self.group)
        self.seconds += time.perf_counter() - start
        self.bytes += y.numel() * y.element_size()
        self.calls += 1
        return y.to(x.device)

    def sum(self, x: Tensor) -> Tensor:
        return self._reduce(x, dist.ReduceOp.SUM)

    def max(self, x: Tensor) -> Tensor:
        return self._reduce(x, dist.ReduceOp.MAX)

    def min(self, x: Tensor) -> Tensor:
        return self._reduce(x, dist.ReduceOp.MIN)

    def broadcast(self, x: Tensor, src: int = 0) -> Tensor:
        if self.world_size == 1:
            return x
        y = x.to(self.device).contiguous().clone()
        dist.broadcast(y, src if self.group is None else dist.get_global_rank(self.group, src),
                       group=self.group)
        return y.to(x.device)

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier(group=self.group)


def _ritz(H: Tensor, descending: bool = False) -> tuple[Tensor, Tensor]:
    r""":func:`~pyg_spectral.linalg.rayleigh_ritz` of an all-reduced
    :obj:`[w, w]` projection, with the advice that fits this solver when
    it is not finite."""
    try:
        return rayleigh_ritz(H, descending=descending)
    except FloatingPointError as error:
        raise FloatingPointError(
            "the operator applied to the fitted vectors gave NaN or inf values; lower the "
            "step (step_scale=) or check the graph's weights") from error


# rows per float64 slice of a float32 table's Gram matrix: a whole float64
# copy of the table would be the largest allocation of a step
GRAM_ROWS = 1 << 16


def right_multiply_(X: Tensor, M: Tensor) -> Tensor:
    r""":math:`X \leftarrow X M` in place (:obj:`M` square), a slice of rows
    at a time: each row's result depends on that row alone, and a whole
    new :obj:`X` would be one more table at the peak."""
    for start in range(0, X.size(0), GRAM_ROWS):
        rows = X[start:start + GRAM_ROWS]
        rows.copy_(rows @ M)
    return X


def _gram64(U: Tensor) -> Tensor:
    r""":math:`U^\top U` (:obj:`[w, w]`) accumulated in float64, a slice of
    rows at a time."""
    if U.dtype == torch.float64:
        return U.transpose(0, 1) @ U
    gram = U.new_zeros(U.size(1), U.size(1), dtype=torch.float64)
    for start in range(0, U.size(0), GRAM_ROWS):
        rows = U[start:start + GRAM_ROWS].double()
        gram.addmm_(rows.transpose(0, 1), rows)
    return gram


def cholesky_qr(X: Tensor, comm: Collectives) -> tuple[Tensor, Tensor]:
    r"""Reduced :math:`X = QR` of row-distributed :obj:`X` (:obj:`[n_local, w]`
    here): Cholesky QR twice on all-reduced Gram matrices (accumulated in
    float64), :obj:`R` upper triangular with a positive diagonal, so the
    columns are orthonormalised in order and keep their signs (the
    convention of the single-process fit). Raises where the table has
    lost rank."""
    U, R = X, None
    for _ in range(2):
        gram = comm.sum(_gram64(U))
        L, info = torch.linalg.cholesky_ex(gram)
        if bool(info):
            raise FloatingPointError(
                "the table lost rank (its columns became linearly dependent); lower the "
                "step (step_scale=) or the number of columns (k=, oversample=)")
        step = L.transpose(0, 1).to(X.dtype)
        eye = torch.eye(step.size(0), dtype=X.dtype, device=X.device)
        inverse = torch.linalg.solve_triangular(step, eye, upper=True)
        if R is None:
            U = U @ inverse  # X itself is left alone
        else:
            right_multiply_(U, inverse)
        R = step if R is None else step @ R
    return U, R


def canonical_signs_distributed(U: Tensor, nodes: Tensor, comm: Collectives,
                                rtol: float = 1e-3) -> Tensor:
    r"""The :obj:`[k]` signs of :func:`~pyg_spectral.linalg.canonical_signs`
    for rows of :obj:`U` spread over the processes (:obj:`nodes`: the
    original ids of the local rows): the first entry, in original node
    order, within :obj:`rtol` of the column's largest magnitude is made
    positive, as the single-process result is."""
    # column by column: [n_local, k] temporaries (the magnitudes, their
    # candidates, their node ids) would be the peak of the fit's last step
    U = U.detach()
    k = U.size(1)
    sentinel = torch.iinfo(torch.long).max
    nodes = nodes.to(U.device)
    columns = list(U.transpose(0, 1))
    if U.size(0):
        top = comm.max(torch.stack([column.abs().max() for column in columns]))
    else:
        top = comm.max(U.new_zeros(k))
    first = []
    for column, largest in zip(columns, top):
        ids = nodes[column.abs() >= (1 - rtol) * largest]
        first.append(ids.min() if ids.numel() else nodes.new_tensor(sentinel))
    first = comm.min(torch.stack(first))
    sign = comm.sum(torch.stack([column[nodes == node].sign().sum()
                                 for column, node in zip(columns, first)]))
    return torch.where(sign == 0, torch.ones_like(sign), sign)


@dataclass
class DistributedResult:
    r"""What :meth:`DistributedNeuralSVD.fit` returns on each process.

    Attributes:
        eigenvalues: :obj:`[k]`, the same on every process, ordered from the
            end of the spectrum that was asked for.
        vectors: :obj:`[n_local, k]` this process's rows of the orthonormal
            eigenvectors.
        nodes: :obj:`[n_local]` their original node ids.
        num_nodes: :math:`n`.
        steps, converged, residual, sine_bound, loss_history,
        eigenvalue_history: as in :class:`~pyg_spectral.solvers.NeuralSVDResult`.
        stats: communication per fit: :obj:`'exchange_bytes'` (halo rows
            sent by this process), :obj:`'reduce_bytes'`,
            :obj:`'comm_seconds'` (in reductions and halo exchanges, waits for
            slower processes included), :obj:`'exchange_seconds'` (the halo
            exchanges' part), :obj:`'fit_seconds'`, :obj:`'steps_run'`.
    """
    eigenvalues: Tensor
    vectors: Tensor
    nodes: Tensor
    num_nodes: int
    steps: int = 0
    converged: bool = False
    residual: float = float('nan')
    sine_bound: float = float('inf')
    loss_history: list[float] = field(default_factory=list)
    eigenvalue_history: Tensor | None = None
    stats: dict = field(default_factory=dict)

    def gather(self, group: dist.ProcessGroup | None = None) -> Tensor:
        r"""All the eigenvectors :obj:`[n, k]` in original node order, on
        every process (for graphs that fit in one process; big ones go to a
        file with :meth:`save`)."""
        _, world = group_rank_size(group)
        out = self.vectors.new_zeros(self.num_nodes, self.vectors.size(1))
        out[self.nodes.to(out.device)] = self.vectors
        if world > 1:
            dist.all_reduce(out, group=group)  # disjoint rows: the sum is the union
        return out

    def save(self, prefix: str | os.PathLike, group: dist.ProcessGroup | None = None) -> None:
        r"""Collective: writes :obj:`PREFIX.vectors.npy` (:obj:`[n, k]`, rows in
        original node order, filled by row blocks) and
        :obj:`PREFIX.values.npy` (:obj:`[k]`), each under a temporary name
        renamed once complete; the values are written last."""
        rank, _ = group_rank_size(group)
        write_npy_rows(f'{prefix}.vectors.npy', self.nodes, self.vectors, self.num_nodes, group)
        if rank == 0:
            write_npy(f'{prefix}.values.npy', self.eigenvalues)
        comm = Collectives(group)
        comm.barrier()


class DistributedNeuralSVD:
    r""":class:`~pyg_spectral.solvers.NeuralSVD` (a free table on a symmetric
    graph matrix) with the nodes split among the processes of a
    :mod:`torch.distributed` group.

    .. code-block:: python

        # torchrun --nproc-per-node 2 script.py
        dist.init_process_group('gloo')
        op = GraphOperator.from_edge_index(edge_index, kind='sym_laplacian')
        res = DistributedNeuralSVD(k=8).fit(op, largest=False, tol=1e-6)
        res.eigenvalues  # [8], the same on every process
        res.vectors      # [n_local, 8], rows res.nodes of the eigenvectors

    The hyper-parameters and their defaults are :class:`NeuralSVD`'s (a
    free table: Nesterov SGD with the step from the spectral bound,
    oversampled columns, Rayleigh-Ritz restarts). Deterministic given the
    seed and the world size; the random start depends on the seed and node
    ids only. With one process :meth:`fit` calls :meth:`NeuralSVD.fit`.
    """

    def __init__(self, k: int, nesting: str = 'joint', seed: int = 0,
                 step_scale: float | None = None, momentum: float | None = None,
                 oversample: int | None = None, ritz_restart: bool = True) -> None:
        self.single = NeuralSVD(k, nesting=nesting, seed=seed, step_scale=step_scale,
                                momentum=momentum, oversample=oversample,
                                ritz_restart=ritz_restart)
        self.k, self.nesting, self.seed = self.single.k, nesting, seed
        self.step_scale, self.momentum, self.oversample = step_scale, momentum, oversample
        self.ritz_restart = ritz_restart

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(k={self.k}, nesting={self.nesting!r})'

    def fit(self, operator, partition: NodePartition | None = None,
            group: dist.ProcessGroup | None = None, steps: int = 2000, largest: bool = True,
            tol: float | None = None, check_every: int = 25, progress: bool = True,
            refine: bool = False, exchange: str = 'auto',
            checkpoint: str | os.PathLike | None = None, checkpoint_every: int | None = None,
            resume: bool = True, callback=None) -> DistributedResult:
        r"""Fits on every process of :obj:`group` (collective: all call it with
        the same arguments) and returns this process's
        :class:`DistributedResult`.

        Args:
            operator: a symmetric :class:`~pyg_spectral.operators.GraphOperator`
                (every process passes the whole one; only its row block is
                kept) or this process's
                :class:`~pyg_spectral.solvers.halo.RowBlockOperator`.
            partition: the split of the nodes (default: :func:`partition_nodes`
                with :obj:`method='auto'`, computed on rank 0 and broadcast).
            group: the process group (default: the default group; without an
                initialised group, one process).
            steps, largest, tol, check_every, progress, refine: as in
                :meth:`NeuralSVD.fit` (progress is shown on rank 0 only).
            exchange: the halo exchange (:class:`~pyg_spectral.solvers.halo.HaloExchange`).
            checkpoint: a directory for checkpoints (one file per process and
                a manifest naming the step all of them reached); with
                :obj:`resume`, a fit finds the manifest there and every
                process restarts from that step.
            checkpoint_every: steps between checkpoints, a multiple of
                :obj:`check_every` (default: :obj:`10 * check_every`).
            callback: called as :obj:`callback(step, loss, eigenvalues)` at
                every check on every process (the arguments are the same on
                all of them); it must return the same on all of them.
        """
        rank, world = group_rank_size(group)
        steps, check_every = positive_int(steps, 'steps'), positive_int(check_every, 'check_every')
        if tol is not None and (isinstance(tol, bool) or not isinstance(tol, numbers.Real)
                                or not 0 <= tol < math.inf):
            raise ValueError(f"tol must be None or a finite number >= 0, got {tol!r}")
        if world == 1 and not isinstance(operator, RowBlockOperator):
            if checkpoint is not None:
                raise ValueError("checkpoint= is for fits split among processes; with one "
                                 "process use NeuralSVD.fit(init=previous_result) to continue "
                                 "a fit, or launch with torchrun --nproc-per-node 2")
            res = self.single.fit(operator, steps=steps, largest=largest, tol=tol,
                                  check_every=check_every, progress=progress, refine=refine,
                                  callback=callback)
            n = res.eigenvectors.size(0)
            return DistributedResult(res.eigenvalues, res.eigenvectors, torch.arange(n), n,
                                     res.steps, res.converged, res.residual, res.sine_bound,
                                     res.loss_history, res.eigenvalue_history,
                                     {'exchange_bytes': 0, 'reduce_bytes': 0, 'comm_seconds': 0.0})
        if checkpoint_every is None:
            checkpoint_every = 10 * check_every
        checkpoint_every = positive_int(checkpoint_every, 'checkpoint_every')
        if checkpoint_every % check_every:
            raise ValueError(f"checkpoint_every={checkpoint_every} must be a multiple of "
                             f"check_every={check_every} (checkpoints are taken at checks)")
        comm = Collectives(group)
        if isinstance(operator, RowBlockOperator):
            block = operator
        else:
            if partition is None:
                partition = broadcast_partition(operator, comm)
            block = RowBlockOperator.from_operator(operator, partition, group, exchange)
        return self._fit(block, comm, steps, largest, tol, check_every, progress, refine,
                         checkpoint, checkpoint_every, resume, callback)

    # ------------------------------------------------------------ the loop
    def _fit(self, block: RowBlockOperator, comm: Collectives, steps, largest, tol, check_every,
             progress, refine, checkpoint, checkpoint_every, resume, callback) -> DistributedResult:
        n, k = block.shape[0], self.k
        if k >= n:
            raise ValueError(f"k={k} must be smaller than the number of rows n={n}")
        bounds = block.spectral_bounds()
        if not all(math.isfinite(b) for b in bounds):
            raise ValueError(f"the operator's spectral bounds are {bounds}; finite safe bounds "
                             f"are needed to shift it and size the steps")
        extra = self.oversample if self.oversample is not None else max(4, k // 2)
        width = k + max(0, min(extra, n - 1 - k))
        target = top_positive(block, largest)
        # the step from the shifted target's bound, tolerances and residuals
        # relative to the operator's own, as in NeuralSVD.fit
        hi = max(abs(b) for b in target.spectral_bounds()) or 1.0
        scale = max(abs(b) for b in bounds) or 1.0
        zero = max(abs(b) for b in bounds) == 0
        restarts = self.ritz_restart
        step_scale = self.step_scale or (0.15 if restarts else 0.125)
        momentum = self.momentum if self.momentum is not None else (0.97 if restarts else 0.9)
        table = nn.Parameter(random_rows(block.nodes, width, self.seed, block.dtype, block.device)
                             / math.sqrt(k))
        opt = torch.optim.SGD([table], lr=step_scale * n / hi, momentum=momentum,
                              nesterov=True)
        loss_fn = NestedLoRA(width, self.nesting).to(block.device)
        config = digest({'k': k, 'width': width, 'seed': self.seed, 'nesting': self.nesting,
                         'step_scale': step_scale, 'momentum': momentum, 'largest': largest,
                         'n': n, 'dtype': str(block.dtype), 'bounds': bounds,
                         'check_every': check_every, 'restarts': restarts,
                         'world_size': comm.world_size})
        losses: list[float] = []
        history: list[Tensor] = []
        start, previous = 0, None
        store = None
        if checkpoint is not None:
            local = digest(block.nodes, *block.parts())
            store = _CheckpointStore(checkpoint, comm, config, local)
        state = store.load() if store is not None and resume else None
        if state is not None:
            table.data.copy_(state['table'].to(table))
            if state['momentum'] is not None:
                opt.state[table] = {'momentum_buffer': state['momentum'].to(table)}
            losses, start = list(state['losses']), int(state['step'])
            history = list(state['history'])
            previous = state['previous']
        elif restarts and not zero:
            self._ritz_restart(target, table, opt, k, comm, n)
        moments: dict[str, Tensor] = {}

        def reduce(x: Tensor) -> Tensor:
            moments['last'] = comm.sum(x)
            return moments['last']

        pending: list[Tensor] = []
        converged = stopped = False
        step = start - 1
        fit_start = time.perf_counter()
        bar = tqdm(range(start, 0 if zero else steps), disable=not progress or comm.rank != 0,
                   desc='NeuralSVD', leave=False)
        for step in bar:
            F = table.data
            with torch.no_grad():
                loss, table.grad, cross = loss_fn.table_gradient(F, target.matmul(F), reduce, n)
                gram_diagonal = moments['last'][width:].view(width, width).diagonal().clone()
            opt.step()
            table.grad = None  # not kept between steps: one table less at the restarts
            pending.append(loss.detach())
            if (step + 1) % check_every == 0 or step == steps - 1:
                bad = drain_losses(pending, losses)
                if bad is not None:
                    raise FloatingPointError(
                        f"NestedLoRA loss became {bad} at step {len(losses)}; lower the step "
                        f"(step_scale=, now {step_scale:g})")
                est = (cross / gram_diagonal.clamp_min(torch.finfo(F.dtype).tiny))[:k]
                history.append(est.cpu())
                shown = target.original_eigenvalues(est)
                bar.set_postfix(loss=f'{losses[-1]:.4g}',
                                eig=' '.join(f'{v:.4g}' for v in shown[:4].tolist()))
                if callback is not None and callback(step, losses[-1], shown.detach()):
                    stopped = True
                    break
                if restarts:
                    residual = self._ritz_restart(target, table, opt, k, comm, n)
                    if tol is not None and residual <= tol * scale:
                        converged = True
                        break
                elif tol is not None and previous is not None and \
                        float((est - previous).abs().max()) <= tol * scale:
                    converged = True
                    break
                previous = est
                if store is not None and (step + 1) % checkpoint_every == 0:
                    store.save(step + 1, table, opt, losses, history, previous)
        bar.close()
        fit_seconds = time.perf_counter() - fit_start
        with torch.no_grad():
            F = table.data
            if not torch.isfinite(comm.sum(F.abs().sum().view(1))).all():
                raise FloatingPointError(f"the table has NaN or inf values at step {step + 1}; "
                                         f"lower the step (step_scale=)")
            opt.state.clear()  # the momentum is done with: not alive during the finish
            result, limit = self._finish(target, block, F, refine, k, comm, scale)
        if tol is None or zero:
            certified = result.sine_bound <= CERTIFIED_SINE if math.isfinite(result.sine_bound) \
                else result.residual <= limit
            converged = bool(certified)
            if not converged and not stopped:
                warnings.warn(f"NeuralSVD (distributed) did not reach the default accuracy "
                              f"within steps={steps}: sine bound {result.sine_bound:.2g}, "
                              f"residual {result.residual:.2g}; raise steps= or set tol=",
                              RuntimeWarning)
        elif not converged and not stopped:
            warnings.warn(f"NeuralSVD (distributed) did not reach tol={tol:g} within "
                          f"steps={steps}; the result is not converged (raise steps=)",
                          RuntimeWarning)
        result.steps, result.converged = step + 1, converged
        result.loss_history = losses
        result.eigenvalue_history = torch.stack(history) if history else None
        result.stats = {'exchange_bytes': block.exchange.bytes_sent, 'reduce_bytes': comm.bytes,
                        'comm_seconds': comm.seconds + block.exchange.seconds,
                        'exchange_seconds': block.exchange.seconds, 'fit_seconds': fit_seconds,
                        'steps_run': max(0, step + 1 - start)}
        return result

    @staticmethod
    @torch.no_grad()
    def _ritz_restart(target, table: nn.Parameter, opt, k: int, comm: Collectives,
                      n: int) -> float:
        r""":meth:`NeuralSVD._ritz_restart` on row-distributed tables: the
        table is rotated onto the Ritz vectors of its span scaled to the
        optimum norms (:math:`F \leftarrow F M`, the momentum carried by the
        same :math:`M`), and the largest Ritz residual of the first
        :obj:`k` is returned; every :obj:`[w, w]` matrix is all-reduced."""
        F = table.data
        Q, R = cholesky_qr(F, comm)
        TQ = target.matmul(Q)
        mu, S = _ritz(comm.sum(Q.transpose(0, 1) @ TQ), descending=True)
        # the residuals a slice of rows at a time, the table and momentum
        # rotated in place: no [n_local, *] temporary beside Q and TQ
        squares = F.new_zeros(k)
        for start in range(0, F.size(0), GRAM_ROWS):
            rows = slice(start, start + GRAM_ROWS)
            gap = TQ[rows] @ S[:, :k]
            gap.sub_((Q[rows] @ S[:, :k]).mul_(mu[:k]))
            squares += gap.square_().sum(0)
        del Q, TQ
        residual = float(comm.sum(squares).sqrt().max())
        M = torch.linalg.solve_triangular(R, S * (n * mu.clamp_min(0)).sqrt(), upper=True)
        right_multiply_(F, M)
        buf = opt.state.get(table, {}).get('momentum_buffer')
        if buf is not None:
            right_multiply_(buf, M)
        return residual

    def _finish(self, target, block: RowBlockOperator, F: Tensor, refine: bool, k: int,
                comm: Collectives, scale: float) -> tuple[DistributedResult, float]:
        r""":meth:`NeuralSVD._finish` and :meth:`NeuralSVD._accuracy` on
        row-distributed tables: Rayleigh quotients on the original operator,
        signs by the library's convention, the largest Ritz residual and the
        Davis-Kahan sine bound from the oversampled columns; and the residual
        that certifies the pairs where the bound is :obj:`inf`."""
        # each [n_local, *] temporary is dropped as soon as it is used: the
        # end of a fit is where a process's memory peaks otherwise
        Q, _ = cholesky_qr(F, comm)
        AQ = block.matmul(Q)
        H = comm.sum(Q.transpose(0, 1) @ AQ)
        if refine:  # largest first where the target is T shifted, not negated
            values, S = _ritz(H, descending=target.alpha > 0)
            V, AV = Q @ S[:, :k], AQ @ S[:, :k]
        else:
            values = torch.diagonal(H)
            V, AV = Q[:, :k], AQ[:, :k]
        del AQ
        values = values[:k].clone()
        sign = canonical_signs_distributed(V, block.nodes, comm)
        V = V * sign
        AV = AV * sign
        res = torch.addcmul(AV, V, values, value=-1)
        del AV
        residual = float(comm.sum(res.square_().sum(0)).sqrt().max()) / scale
        del res
        width = F.size(1)
        rounding = ROUNDING_GAP * torch.finfo(V.dtype).eps
        limit = CERTIFIED_RESIDUAL if width == k else rounding
        bound = math.inf
        if width > k:
            # the rest of the span, orthogonal to V, by Ritz value
            C = Q @ torch.linalg.svd(comm.sum(Q.transpose(0, 1) @ V))[0][:, k:]
            del Q
            TC = target.matmul(C)
            nu, S = _ritz(comm.sum(C.transpose(0, 1) @ TC), descending=True)
            C, TC = C @ S, TC @ S
            TV = target.matmul(V)
            # [V C]^T [TV TC] once, its leading blocks for each trial width,
            # instead of copies of the widened blocks
            Vt, Ct = V.transpose(0, 1), C.transpose(0, 1)
            G = comm.sum(torch.cat([torch.cat([Vt @ TV, Vt @ TC], 1),
                                    torch.cat([Ct @ TV, Ct @ TC], 1)]))
            for extra in range(width - k):
                M = G[:k + extra, :k + extra]
                M = (M + M.transpose(0, 1)) / 2
                gap = float(_ritz(M)[0][0] - nu[extra])
                if gap > rounding * scale:
                    # ||[TV TC_e] - [V C_e] M||_F by column groups
                    Ce = C[:, :extra]
                    total = V.new_zeros(1)
                    for cols, image in ((slice(0, k), TV), (slice(k, k + extra), TC[:, :extra])):
                        if image.size(1) == 0:
                            continue
                        off = V @ M[:k, cols]
                        if extra:
                            off.addmm_(Ce, M[k:, cols])
                        total += off.sub_(image).square_().sum()
                        del off
                    bound = float(comm.sum(total).sqrt()) / gap
                    break
        return DistributedResult(values, V, block.nodes, block.shape[0], residual=residual,
                                 sine_bound=bound), limit


def broadcast_partition(operator, comm: Collectives, method: str = 'auto', seed: int = 0,
                        partition: NodePartition | None = None) -> NodePartition:
    r"""Rank 0's :obj:`partition` (default: the partition of :obj:`operator`'s
    graph, its sparsity pattern, into :obj:`comm.world_size` parts by
    :func:`partition_nodes`), broadcast, so that every process uses the
    same one whatever the partitioner's own determinism. Collective."""
    n = operator.shape[0]
    if comm.rank == 0 and partition is None:
        matrix = operator.matrix
        crow = matrix.crow_indices().cpu()
        row = torch.repeat_interleave(torch.arange(n), crow[1:] - crow[:-1])
        edge_index = torch.stack([row, matrix.col_indices().cpu()])
        partition = partition_nodes(edge_index, n, comm.world_size, method, seed=seed)
    return share_partition(partition, n, comm)


def share_partition(partition: NodePartition | None, num_nodes: int,
                    comm: Collectives) -> NodePartition:
    r"""Rank 0's :obj:`partition` of :obj:`num_nodes` nodes into
    :obj:`comm.world_size` parts, on every process (the others pass
    :obj:`None`). Collective."""
    n = num_nodes
    if comm.rank == 0:
        part = partition
        if part.num_nodes != n or part.num_parts != comm.world_size:
            raise ValueError(f"the partition splits {part.num_nodes} nodes into "
                             f"{part.num_parts} parts; the graph has {n} nodes and there are "
                             f"{comm.world_size} processes (partition again)")
        perm, offsets = part.perm, part.offsets
        code = torch.tensor([METHOD_NAMES.index(part.method)])
    else:
        perm = torch.empty(n, dtype=torch.long)
        offsets = torch.empty(comm.world_size + 1, dtype=torch.long)
        code = torch.zeros(1, dtype=torch.long)
    perm, offsets = comm.broadcast(perm), comm.broadcast(offsets)
    return NodePartition(perm, offsets, METHOD_NAMES[int(comm.broadcast(code)[0])])


class _CheckpointStore:
    r"""A directory of per-process checkpoints and a manifest naming the last
    step that every process saved: a process saves its rows under the step,
    all of them confirm (a reduction), rank 0 then replaces the manifest,
    and only after that are older files removed, so a crash at any point
    leaves one complete set that the manifest names."""

    def __init__(self, directory: str | os.PathLike, comm: Collectives, config: str,
                 local: str) -> None:
        self.dir, self.comm, self.config, self.local = Path(directory), comm, config, local
        self.manifest = self.dir / 'manifest.json'

    def _shard(self, step: int) -> Path:
        return self.dir / f'rank{self.comm.rank}of{self.comm.world_size}-step{step}.pt'

    def save(self, step: int, table: Tensor, opt, losses, history, previous) -> None:
        buf = opt.state.get(table, {}).get('momentum_buffer')
        save_checkpoint(self._shard(step), {
            'step': step, 'config': self.config, 'local': self.local,
            'table': table.detach().cpu(),
            'momentum': None if buf is None else buf.cpu(), 'losses': list(losses),
            'history': [h.cpu() for h in history],
            'previous': None if previous is None else previous.cpu()})
        self.comm.barrier()  # every shard of this step is on disk
        if self.comm.rank == 0:
            atomic_write_text(json.dumps({'step': step, 'config': self.config,
                                          'world_size': self.comm.world_size}), self.manifest)
        self.comm.barrier()
        for old in self.dir.glob(f'rank{self.comm.rank}of{self.comm.world_size}-step*.pt'):
            if old.name != self._shard(step).name:
                old.unlink(missing_ok=True)

    def load(self) -> dict | None:
        r"""The state of the manifest's step, or :obj:`None` without a
        manifest; the step is rank 0's reading, broadcast."""
        step = -1
        if self.comm.rank == 0 and self.manifest.exists():
            meta = json.loads(self.manifest.read_text())
            if meta.get('config') != self.config:
                raise ValueError(f"the checkpoint in '{self.dir}' was written by a fit with other "
                                 f"settings (graph, k, seed, world size, ...); delete it or "
                                 f"pass resume=False")
            step = int(meta['step'])
        step = int(self.comm.broadcast(torch.tensor([step]))[0])
        if step < 0:
            return None
        state = load_checkpoint(self._shard(step))
        if state.get('config') != self.config or int(state['step']) != step:
            raise ValueError(f"checkpoint file {self._shard(step)} does not match the manifest "
                             f"in '{self.dir}'; delete the directory to start afresh")
        if state.get('local') != self.local:
            raise ValueError(f"rank {self.comm.rank}: checkpoint file {self._shard(step)} holds "
                             f"other rows or another graph matrix (the graph or the partition "
                             f"changed); delete '{self.dir}' or pass resume=False")
        return state
