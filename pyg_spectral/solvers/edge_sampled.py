r"""Sampled NeuralSVD fits of a model on several processes
(:mod:`torch.distributed`, launched with ``torchrun``), the model wrapped in
:class:`~torch.nn.parallel.DistributedDataParallel`.

The fit is :meth:`SampledNeuralSVD.fit` itself on every process; only the
operator it sees differs: each process draws its own batches, the training
model's forward goes through DDP, and the moment matrices of the final
evaluation are averaged over the processes. For a graph this is the
edge-sampled fit of an encoder over node features
(:class:`~pyg_spectral.operators.graph_sampling.EdgeSampledGraph`): a step
reads a batch of nodes and entries, never the whole graph.

Why averaging gradients is enough: every process's loss is an unbiased
estimate of the NestedLoRA loss (its cross term is linear in the samples,
and the two Gram matrices of the metric term come from two independent
halves of its own batch), so its gradient is an unbiased estimate of the
loss's gradient (a finite expectation and a derivative commute), and the
mean of :math:`P` of them, which DDP's all-reduce computes, is one too.
All-reducing the :math:`k \times k` moments before the quadratic term would
lower the variance further (each Gram matrix from :math:`P` times the
nodes) but needs an autograd-aware all-reduce inside every forward; DDP's
one all-reduce of the gradient overlaps with the backward pass.
"""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from ..operators.sampling import SampledEstimates, SampledOperator, Samples
from .halo import collective_device, group_rank_size
from .checkpoint import load_checkpoint
from .sampled import SampledNeuralSVD, SampledSVDResult


def process_seed(seed: int, rank: int) -> int:
    r"""A 64-bit seed for process :obj:`rank`'s stream of a generator seeded
    with :obj:`seed`, mixed by :class:`numpy.random.SeedSequence` so that
    the streams of different ranks (and of seeds one apart) are unrelated."""
    words = np.random.SeedSequence([int(seed), int(rank)]).generate_state(2, np.uint32)
    return int(words[0]) | (int(words[1]) << 32)


class ProcessSampling(SampledOperator):
    r"""What one process of a data-parallel fit sees of :obj:`inner`.

    - :meth:`sample`: draws from the generator it is given, which
      :class:`DistributedSampledNeuralSVD` seeds per process
      (:func:`process_seed`), so that the processes draw different batches.
    - :meth:`estimates`: the model's forward through its
      :class:`~torch.nn.parallel.DistributedDataParallel` wrapper (one per
      model of :obj:`models`), so that the backward pass averages the
      gradients over the processes.
    - :meth:`moments`: the :obj:`[k, k]` moments averaged over the
      processes (one all-reduce), so that every process computes the same
      Rayleigh-Ritz values from :obj:`world` times the samples.

    Args:
        inner (SampledOperator): the operator.
        models (list): the models trained (one, or the SVD form's two).
        group (ProcessGroup, optional): the process group. (default:
            :obj:`None`: the default group)
    """

    def __init__(self, inner: SampledOperator, models: list[nn.Module],
                 group: dist.ProcessGroup | None = None) -> None:
        self.inner = inner
        self.num_models, self.is_symmetric = inner.num_models, inner.is_symmetric
        self._device, self._dtype = inner.device, inner.dtype
        self._group = group
        self._rank, self._world = group_rank_size(group)
        # private: io.digest (a checkpoint's record of the operator) skips
        # them, and the wrapped models' state changes during a fit
        self._wrapped = {id(m): DistributedDataParallel(m, process_group=group)
                         for m in models}

    def _forward(self, model):
        if isinstance(model, (tuple, list)):
            return tuple(self._wrapped.get(id(m), m) for m in model)
        return self._wrapped.get(id(model), model)

    def original_eigenvalues(self, mu: Tensor) -> Tensor:
        return self.inner.original_eigenvalues(mu)

    def sample(self, num_samples: int, generator: torch.Generator | None = None) -> Samples:
        return self.inner.sample(num_samples, generator)

    def estimates(self, model, samples: Samples, k: int,
                  generator: torch.Generator | None = None) -> SampledEstimates:
        return self.inner.estimates(self._forward(model), samples, k, generator)

    def moments(self, model, samples: Samples, k: int,
                generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
        moments = self.inner.moments(model, samples, k, generator)
        where = collective_device(self._group)
        stacked = torch.stack([m.to(torch.float64) for m in moments]).to(where)
        dist.all_reduce(stacked, group=self._group)
        stacked = (stacked / self._world).to(moments[0].device)
        return tuple(s.to(m.dtype) for s, m in zip(stacked, moments))

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}({self.inner!r}, world={self._world})'


def process_checkpoint(path: str | os.PathLike, rank: int, world: int) -> Path:
    r"""The checkpoint file of process :obj:`rank` of :obj:`world`:
    :obj:`fit.pt` becomes :obj:`fit.rank1-of-2.pt`. Each holds the model
    and optimizer (the same on every process) and that process's sampling
    generator."""
    path = Path(path)
    return path.with_name(f'{path.stem}.rank{rank}-of-{world}{path.suffix}')


class DistributedSampledNeuralSVD(SampledNeuralSVD):
    r""":class:`~pyg_spectral.solvers.SampledNeuralSVD` on every process of
    a :mod:`torch.distributed` group, the model wrapped in
    :class:`~torch.nn.parallel.DistributedDataParallel` (see the module
    docstring for why the averaged gradient is unbiased). Same arguments
    and result as :class:`SampledNeuralSVD`; :obj:`batch_size` is per
    process, so a step sees :obj:`world` times as many samples.

    .. code-block:: python

        # torchrun --nproc-per-node 2 fit.py
        dist.init_process_group('gloo')
        op = GraphOperator.from_edge_index(edge_index, kind='sym_laplacian')
        sampled = EdgeSampledGraph(op, x, largest=False)
        res = DistributedSampledNeuralSVD(k=8, batch_size=1024).fit(sampled, model)

    Without an initialised process group it is :class:`SampledNeuralSVD`;
    with one process, rank 0's batches, the (unchanged) gradients and hence
    the fit are those of :class:`SampledNeuralSVD` with the same seed. Every
    process starts from rank 0's parameters (DDP broadcasts them) and takes
    the same steps, so the models stay equal. The loss history and the
    quotients shown at a check are each process's own estimates; the
    :obj:`callback`'s stop is agreed (any process stopping stops all), and
    the final Rayleigh-Ritz values come from moments averaged over the
    processes (each draws :obj:`eval_samples`), so they are the same on
    every process. Process :math:`r > 0` draws from generators seeded by
    :func:`process_seed` of :obj:`seed` and :math:`r`. With a
    :obj:`checkpoint`, each process writes its own file
    (:func:`process_checkpoint`) at the same steps, and a fit resumes only
    when every process finds its file at the same step.
    """

    def fit(self, operator: SampledOperator, model: nn.Module | tuple[nn.Module, nn.Module],
            steps: int = 10000, check_every: int = 100,
            callback: Callable[[int, float, Tensor], bool | None] | None = None,
            checkpoint: str | os.PathLike | None = None, checkpoint_every: int = 1000,
            resume: bool = True, eval_samples: int = 2 ** 16, eval_batch_size: int = 4096,
            progress: bool = True, group: dist.ProcessGroup | None = None) -> SampledSVDResult:
        r"""Fits :obj:`model` on every process of :obj:`group` (collective:
        all call it with the same arguments) and returns a
        :class:`~pyg_spectral.solvers.sampled.SampledSVDResult`, the same on
        every process.

        Args:
            group: the process group (default: the default group; without
                an initialised group, one process). The other arguments are
                those of :meth:`SampledNeuralSVD.fit`.
        """
        rank, world = group_rank_size(group)
        options = dict(steps=steps, check_every=check_every, checkpoint=checkpoint,
                       checkpoint_every=checkpoint_every, resume=resume,
                       eval_samples=eval_samples, eval_batch_size=eval_batch_size)
        if not (dist.is_available() and dist.is_initialized()):
            return super().fit(operator, model, callback=callback, progress=progress, **options)
        if not isinstance(operator, SampledOperator):
            raise TypeError(f"operator must be a SampledOperator (e.g. EdgeSampledGraph), got "
                            f"{type(operator).__name__}")
        if checkpoint is not None and world > 1:
            options['checkpoint'] = process_checkpoint(checkpoint, rank, world)
            if resume:
                self._check_resumable(options['checkpoint'], rank, world, group)
        models = self._models(operator, model)
        seen = ProcessSampling(operator, list(models), group)
        agreed = None if callback is None else self._agreed(callback, group)
        # this process's stream: rank 0 draws what a single process would
        solver = copy.copy(self)
        solver.seed = self.seed if rank == 0 else process_seed(self.seed, rank)
        return SampledNeuralSVD.fit(solver, seen, model, callback=agreed,
                                    progress=progress and rank == 0, **options)

    @staticmethod
    def _check_resumable(path: Path, rank: int, world: int,
                         group: dist.ProcessGroup | None) -> None:
        r"""Raises on every process unless all of them or none find their
        checkpoint, and at one step: files of different steps would mix two
        states (one all-reduce of each process's step, -1 for none)."""
        step = int(load_checkpoint(path, map_location='cpu')['step']) if path.is_file() else -1
        steps = torch.zeros(world, dtype=torch.long, device=collective_device(group))
        steps[rank] = step + 1
        dist.all_reduce(steps, group=group)
        found = [s - 1 for s in steps.tolist()]
        if len(set(found)) > 1:
            listed = ', '.join(f"rank {r}: {f'step {s}' if s >= 0 else 'none'}"
                               for r, s in enumerate(found))
            raise ValueError(f"the processes' checkpoints disagree ({listed}; files like "
                             f"'{path}'): delete them (or pass resume=False) to start afresh")

    @staticmethod
    def _agreed(callback: Callable[[int, float, Tensor], bool | None],
                group: dist.ProcessGroup | None) -> Callable[[int, float, Tensor], bool]:
        r"""The callback with its stop decided together: one all-reduce of a
        flag per check, so that no process leaves the loop alone."""
        def agreed(step: int, loss: float, quotients: Tensor) -> bool:
            stop = torch.tensor([1.0 if callback(step, loss, quotients) else 0.0],
                                device=collective_device(group))
            dist.all_reduce(stop, op=dist.ReduceOp.MAX, group=group)
            return bool(stop.item())
        return agreed
