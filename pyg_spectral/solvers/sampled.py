"""NeuralSVD for operators known through samples (Hamiltonians, dependence
kernels): stochastic NestedLoRA steps with the training aids the NeuralSVD
paper relied on, checkpointed so that long fits can resume exactly."""
from __future__ import annotations

import math
import numbers
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm.auto import tqdm

from ..io import digest
from ..linalg import rayleigh_ritz, whitening
from ..losses import LoRATerms, NestedLoRA
from ..operators.sampling import SampledOperator
from .checkpoint import load_checkpoint, save_checkpoint
from .loop import (check_models, descend, finish, flush_losses, positive_int,
                   rayleigh_quotients, show, ticks)
from .neuralsvd import NeuralSVDResult

OPTIMIZERS = {'adam': torch.optim.Adam, 'rmsprop': torch.optim.RMSprop}


@dataclass
class SampledSVDResult(NeuralSVDResult):
    r""":class:`~pyg_spectral.solvers.NeuralSVDResult` of a sampled fit
    (:obj:`eigenvectors` is :obj:`None`: the functions are the model).

    Attributes:
        eigenvalues: :obj:`[k]` Rayleigh-Ritz values of the learned span,
            mapped back by the operator (e.g. energies, increasing for a
            Hamiltonian; singular values, decreasing, for a kernel).
        rayleigh_quotients: :obj:`[k]` the value of each learned function
            on its own, in nesting order (what the NeuralSVD paper reports).
        orthogonality: the largest :math:`|\cos|` between two learned
            functions (0 for an exactly orthogonal set; for the SVD form the
            larger of the right and left sets).
    """
    rayleigh_quotients: Tensor | None = None
    orthogonality: float = float('nan')


def ritz_values(gram_f: Tensor, gram_g: Tensor, cross: Tensor, svd: bool) -> Tensor:
    r"""Rayleigh-Ritz values of the operator on the learned span from the
    :obj:`[k, k]` moments :math:`\langle f, f\rangle`, :math:`\langle g, g\rangle`,
    :math:`\langle g, T f\rangle`: eigenvalues (decreasing) of :math:`K` in
    an orthonormal basis of :math:`\mathrm{span}(f)` for the EVD form,
    singular values of :math:`C` in orthonormal bases of the two spans for
    the SVD form. Computed in float64; when the learned functions are
    linearly dependent (collapsed components) the span has fewer than
    :obj:`k` dimensions and the missing values are NaN."""
    k = cross.size(0)
    if not all(torch.isfinite(m).all() for m in (gram_f, gram_g, cross)):
        raise FloatingPointError("the model gave NaN or inf values on the evaluation "
                                 "samples; check the model and the operator's potential "
                                 "where it is singular")
    if not svd:
        values = rayleigh_ritz(cross.double(), gram_f.double(), descending=True)[0]
    else:
        C = whitening(gram_g.double()).transpose(0, 1) @ cross.double() @ whitening(gram_f.double())
        values = torch.linalg.svdvals(C)
    return torch.cat([values, values.new_full((k - values.numel(),), float('nan'))])


def max_cosine(gram: Tensor) -> float:
    r"""The largest :math:`|\langle f_l, f_{l'}\rangle| / (|f_l| |f_{l'}|)`, :math:`l \ne l'`."""
    d = gram.diagonal().clamp_min(torch.finfo(gram.dtype).tiny).rsqrt()
    cos = (gram * d[:, None] * d[None, :]).abs()
    cos.fill_diagonal_(0)
    return float(cos.max()) if cos.numel() > 1 else 0.0


def warmup_cosine_schedule(optimizer: torch.optim.Optimizer, steps: int, warmup_steps: int,
                           min_lr_ratio: float) -> torch.optim.lr_scheduler.LRScheduler:
    r"""Linear warm-up over :obj:`warmup_steps` steps to the optimizer's
    rate (the rate of step :math:`i` is :math:`(i + 1) / w` of it), then
    cosine decay to :obj:`min_lr_ratio` of it at step :obj:`steps`."""
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=max(1, steps - warmup_steps),
        eta_min=min_lr_ratio * optimizer.param_groups[0]['lr'])
    if warmup_steps == 0:
        return cosine
    # a single warm-up step runs at the full rate, as its (i + 1) / w says
    warmup = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1 / warmup_steps,
                                               total_iters=max(1, warmup_steps - 1))
    return torch.optim.lr_scheduler.SequentialLR(optimizer, [warmup, cosine],
                                                 milestones=[warmup_steps])


class SampledNeuralSVD:
    r"""Learns the top-:obj:`k` eigenfunctions (or singular functions) of a
    :class:`~pyg_spectral.operators.sampling.SampledOperator` (e.g.
    :class:`~pyg_spectral.operators.Hamiltonian`,
    :class:`~pyg_spectral.operators.CDK`) with stochastic NestedLoRA steps
    (the metric term from two halves of each batch, so the loss is unbiased).

    .. code-block:: python

        op = Hamiltonian.harmonic_oscillator(ndim=1)
        model = EigenfunctionMLP(1, 4, hidden_channels=64)
        res = SampledNeuralSVD(k=4).fit(op, model, steps=2000)
        res.eigenvalues  # ~ [1, 3, 5, 7]

    The defaults follow what the NeuralSVD paper found necessary for such
    problems: Adam (or RMSprop), a cosine learning-rate decay, and an
    exponential moving average (EMA) of the weights, which is the model
    evaluated and returned (the raw iterate keeps the Monte-Carlo noise of
    its last steps). The paper's hydrogen run used lr 1e-4, EMA 0.995,
    batch 128-512 and 1e5-5e5 steps; the default lr here (1e-3) suits the
    short fits of tests and examples.

    Args:
        k: number of components.
        nesting: :obj:`'sequential'` (default; the paper's more accurate
            choice, best with separate networks per component) or
            :obj:`'joint'`.
        level_weights: joint-nesting weights.
        optimizer: :obj:`'adam'` or :obj:`'rmsprop'`.
        lr: peak learning rate.
        warmup_steps: linear warm-up steps before the cosine decay.
        min_lr_ratio: final learning rate as a fraction of :obj:`lr`.
        ema_decay: decay of the weight EMA (:obj:`None`: no EMA).
        batch_size: samples per step.
        grad_clip: clip the gradient norm (:obj:`None`: off).
        seed: seed of the fit's own generator, from which it draws its
            samples and Hutchinson probes (and, with :obj:`seed + 1`, the
            evaluation samples). The fit leaves torch's global generator
            alone: a model with random layers of its own (dropout) draws
            from it as usual, and resumes bit for bit only where the
            caller restores that generator's state.
        split_batch: estimate the two factors of the metric term from the two
            halves of each batch (unbiased); :obj:`False` uses the whole batch
            for both (lower variance, a bias of order 1/batch_size).
    """

    def __init__(self, k: int, nesting: str = 'sequential', level_weights: Tensor | None = None,
                 optimizer: str = 'adam', lr: float = 1e-3, warmup_steps: int = 0,
                 min_lr_ratio: float = 0.0, ema_decay: float | None = 0.995,
                 batch_size: int = 512, grad_clip: float | None = None, seed: int = 0,
                 split_batch: bool = True) -> None:
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k <= 0:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)}, got {optimizer!r}")
        if not lr > 0:
            raise ValueError(f"lr must be positive, got {lr!r}")
        if ema_decay is not None and not 0 < ema_decay < 1:
            raise ValueError(f"ema_decay must be in (0, 1) or None, got {ema_decay!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) \
                or batch_size < 2:
            raise ValueError(f"batch_size must be an integer >= 2, got {batch_size!r}")
        self.k, self.nesting, self.optimizer, self.lr = k, nesting, optimizer, float(lr)
        self.warmup_steps, self.min_lr_ratio = warmup_steps, float(min_lr_ratio)
        self.ema_decay, self.batch_size, self.grad_clip, self.seed = \
            ema_decay, batch_size, grad_clip, seed
        self.loss = NestedLoRA(k, nesting, level_weights, split_batch=split_batch)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(k={self.k}, nesting={self.nesting!r}, '
                f'optimizer={self.optimizer!r}, lr={self.lr:g}, ema_decay={self.ema_decay}, '
                f'batch_size={self.batch_size})')

    # ------------------------------------------------------------------ fit
    def fit(
        self,
        operator: SampledOperator,
        model: nn.Module | tuple[nn.Module, nn.Module],
        steps: int = 10000,
        check_every: int = 100,
        callback: Callable[[int, float, Tensor], bool | None] | None = None,
        checkpoint: str | os.PathLike | None = None,
        checkpoint_every: int = 1000,
        resume: bool = True,
        eval_samples: int = 2 ** 16,
        eval_batch_size: int = 4096,
        progress: bool = True,
    ) -> SampledSVDResult:
        r"""Fits :obj:`model` and returns a :class:`SampledSVDResult`.

        Args:
            operator: the sampled operator.
            model: a network mapping a batch of samples to :obj:`[B, k]`; a
                pair :obj:`(right_model, left_model)` for the SVD form.
            steps: total number of optimisation steps (the length of the
                cosine schedule, also when resuming).
            check_every: steps between progress updates and callbacks.
            callback: :obj:`callback(step, loss, rayleigh_quotients)` at
                every check (quotients of the training batch, mapped back by
                the operator); returning :obj:`True` stops the fit.
            checkpoint: file of the checkpoint (model, EMA, optimizer,
                schedule, step, loss history, the sampling generator's
                state), written every :obj:`checkpoint_every` steps and at
                the end.
            resume: continue from :obj:`checkpoint` when it exists; the
                result is the one of an uninterrupted fit (bit for bit,
                unless the model draws random numbers of its own).
            eval_samples: samples of the final Rayleigh-Ritz evaluation.
            eval_batch_size: samples per evaluation chunk (memory bound).
        """
        if not isinstance(operator, SampledOperator):
            raise TypeError(f"operator must be a SampledOperator (e.g. Hamiltonian, CDK), got "
                            f"{type(operator).__name__}; finite operators use NeuralSVD.fit")
        for name, value in (('steps', steps), ('check_every', check_every),
                            ('checkpoint_every', checkpoint_every), ('eval_samples', eval_samples),
                            ('eval_batch_size', eval_batch_size)):
            positive_int(value, name)
        models = self._models(operator, model)
        params = [p for m in models for p in m.parameters()]
        opt = OPTIMIZERS[self.optimizer](params, lr=self.lr)
        schedule = warmup_cosine_schedule(opt, steps, self.warmup_steps, self.min_lr_ratio)
        ema = None if self.ema_decay is None else AveragedModel(
            models, multi_avg_fn=get_ema_multi_avg_fn(self.ema_decay), use_buffers=True)
        generator = torch.Generator().manual_seed(self.seed)
        loss_fn = self.loss.to(operator.device)
        losses: list[float] = []
        start = 0
        if checkpoint is not None and resume and Path(checkpoint).is_file():
            start = self._restore(checkpoint, steps, operator, models, ema, opt, schedule,
                                  generator, losses)

        last_saved = start if start > 0 else None
        config = self._config(steps, operator) if checkpoint is not None else None

        def save(step: int) -> None:
            nonlocal last_saved
            if checkpoint is not None:
                last_saved = step
                save_checkpoint(checkpoint, {
                    'config': config, 'step': step, 'loss_history': list(losses),
                    'models': models.state_dict(), 'ema': None if ema is None else ema.state_dict(),
                    'optimizer': opt.state_dict(), 'schedule': schedule.state_dict(),
                    'generator': generator.get_state()})

        pending: list[Tensor] = []  # on-device losses, drained at checks and saves

        def drain() -> None:
            where = '' if last_saved is None else \
                f"; the last good checkpoint (step {last_saved}) is kept at '{checkpoint}'"
            flush_losses(pending, losses, opt, where, ", set grad_clip, or check the samples "
                                                      "and the model for non-finite values")

        step, stopped = start, False
        bar = tqdm(total=max(0, steps - start), disable=not progress, desc='SampledNeuralSVD',
                   leave=False)
        for step in ticks(bar, start):
            samples = operator.sample(self.batch_size, generator)
            terms = LoRATerms(*operator.estimates(self._call_arg(models), samples, self.k,
                                                  generator))
            loss = loss_fn(terms)
            descend(opt, params, self.grad_clip, loss)
            schedule.step()
            if ema is not None:
                ema.update_parameters(models)
            pending.append(loss.detach())
            if (step + 1) % checkpoint_every == 0:
                drain()  # never save parameters that a non-finite loss touched
                save(step + 1)
            if (step + 1) % check_every == 0:
                drain()
                quotients = operator.original_eigenvalues(rayleigh_quotients(
                    terms.f, terms.g, terms.cross, terms.weight_f, terms.weight_g))
                show(bar, losses[-1], quotients)
                if callback is not None and callback(step, losses[-1], quotients):
                    stopped = True
                    break
        done = step + 1 if (stopped or steps > start) else start
        finish(bar, done - start)
        drain()
        if checkpoint is not None and done % checkpoint_every != 0:
            save(done)
        fitted = models if ema is None else ema.module
        result = self.evaluate(operator, self._call_arg(fitted), eval_samples, eval_batch_size)
        result.loss_history, result.steps = losses, done
        return result

    # ------------------------------------------------------------ evaluate
    @torch.no_grad()
    def evaluate(self, operator: SampledOperator, model: nn.Module | tuple[nn.Module, nn.Module],
                 num_samples: int = 2 ** 16, batch_size: int = 4096) -> SampledSVDResult:
        r"""Rayleigh-Ritz evaluation of :obj:`model` on :obj:`num_samples`
        fresh samples (a generator seeded from :obj:`seed + 1`, independent of
        training)."""
        generator = torch.Generator().manual_seed(self.seed + 1)
        chunks = max(1, math.ceil(num_samples / batch_size))
        totals = None
        for _ in range(chunks):
            samples = operator.sample(batch_size, generator)
            moments = [m.double() for m in operator.moments(model, samples, self.k, generator)]
            totals = moments if totals is None else [t + m for t, m in zip(totals, moments)]
        gram_f, gram_g, cross = (t / chunks for t in totals)
        svd = operator.num_models == 2
        ritz = operator.original_eigenvalues(ritz_values(gram_f, gram_g, cross, svd))
        quotients = operator.original_eigenvalues(
            cross.diagonal() / (gram_f.diagonal() * gram_g.diagonal()).sqrt())
        ortho = max(max_cosine(gram_f), max_cosine(gram_g))
        return SampledSVDResult(ritz, None, model, rayleigh_quotients=quotients,
                                orthogonality=ortho)

    # ------------------------------------------------------------ helpers
    def _models(self, operator: SampledOperator, model) -> nn.ModuleList:
        pair = isinstance(model, (tuple, list))
        if operator.num_models == 2 and not (pair and len(model) == 2):
            raise ValueError("this operator has the SVD form: pass model=(right_model, left_model)")
        if operator.num_models == 1 and pair:
            raise ValueError("this operator is self-adjoint: pass a single model")
        models = nn.ModuleList(model if pair else [model])
        check_models(models, operator.device, operator.dtype,
                     f"the operator draws {operator.dtype} samples")
        return models

    @staticmethod
    def _call_arg(models: nn.ModuleList):
        return models[0] if len(models) == 1 else (models[0], models[1])

    def _config(self, steps: int, operator: SampledOperator) -> dict:
        r"""Every setting that shapes the trajectory of a fit: a checkpoint
        resumes only a fit whose settings are all equal (the operator by
        :func:`~pyg_spectral.io.digest` of its content)."""
        return {'k': self.k, 'nesting': self.nesting, 'optimizer': self.optimizer, 'lr': self.lr,
                'batch_size': self.batch_size, 'ema_decay': self.ema_decay, 'seed': self.seed,
                'steps': steps, 'warmup_steps': self.warmup_steps,
                'min_lr_ratio': self.min_lr_ratio, 'grad_clip': self.grad_clip,
                'split_batch': self.loss.split_batch,
                'level_weights': self.loss.operator_weights.tolist(),  # their tail sums
                'operator': f'{type(operator).__name__} {digest(operator)}',
                'dtype': str(operator.dtype)}

    def _restore(self, path, steps, operator, models, ema, opt, schedule, generator,
                 losses) -> int:
        state = load_checkpoint(path, map_location='cpu')
        keys = ('config', 'step', 'loss_history', 'models', 'ema', 'optimizer', 'schedule',
                'generator')
        if not isinstance(state, dict) or any(key not in state for key in keys):
            raise ValueError(f"checkpoint '{path}' is not a SampledNeuralSVD checkpoint; "
                             f"pass resume=False or another path")
        config = self._config(steps, operator)
        saved = state['config'] if isinstance(state['config'], dict) else {}
        differ = [key for key in config if key in saved and saved[key] != config[key]]
        if differ:
            what = ', '.join(f"{key}={saved[key]!r} there, {config[key]!r} here"
                             for key in differ)
            raise ValueError(f"checkpoint '{path}' was written by a different fit ({what}); "
                             f"resuming would mix two problems: pass resume=False to start "
                             f"afresh or another checkpoint path")
        unchecked = [key for key in config if key not in saved]
        if unchecked:  # an older checkpoint: resume (no work lost), but say what is unverified
            warnings.warn(f"checkpoint '{path}' does not record {', '.join(unchecked)}; "
                          f"resuming on the assumption that they are unchanged", RuntimeWarning)
        try:
            models.load_state_dict(state['models'])
            if ema is not None:
                ema.load_state_dict(state['ema'])
            opt.load_state_dict(state['optimizer'])
        except (RuntimeError, ValueError, KeyError) as error:
            raise ValueError(f"checkpoint '{path}' does not fit this model (another "
                             f"architecture?): {str(error).splitlines()[0]}; pass "
                             f"resume=False or another path") from error
        step = int(state['step'])
        if 'lr_lambdas' in state['schedule']:
            # written when the schedule was a LambdaLR of the same rates:
            # its position, while the rate itself came back with the optimizer
            schedule.load_state_dict(self._schedule_at(step, steps))
        else:
            schedule.load_state_dict(state['schedule'])
        generator.set_state(state['generator'])
        losses.extend(state['loss_history'])
        return step

    def _schedule_at(self, step: int, steps: int) -> dict:
        r"""The state of this fit's schedule after :obj:`step` steps."""
        optimizer = torch.optim.SGD([torch.zeros(0, requires_grad=True)], lr=self.lr)
        schedule = warmup_cosine_schedule(optimizer, steps, self.warmup_steps, self.min_lr_ratio)
        for _ in range(step):
            optimizer.step()
            schedule.step()
        return schedule.state_dict()
