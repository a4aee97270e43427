r"""What the training loops of :class:`~pyg_spectral.solvers.NeuralSVD` and
:class:`~pyg_spectral.solvers.SampledNeuralSVD` share: argument checks, one
optimizer step, the losses kept on the device until a check, the Rayleigh
quotients shown at a check."""
from __future__ import annotations

import math
import numbers
from typing import Iterable, Iterator

import torch
from torch import Tensor, nn


def positive_int(value: object, name: str) -> int:
    r""":obj:`value` if it is an integer >= 1 (not a bool), else an error naming :obj:`name`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer >= 1, got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def check_models(models: Iterable[nn.Module], device: torch.device, dtype: torch.dtype,
                 expected: str | None = None) -> None:
    r"""Raises unless every model is an :class:`~torch.nn.Module` whose
    parameters are on :obj:`device` and, where floating-point, of
    :obj:`dtype`; :obj:`expected` says whose dtype they must match
    (default: "the operator is <dtype>")."""
    expected = f"the operator is {dtype}" if expected is None else expected
    for m in models:
        if not isinstance(m, nn.Module):
            raise TypeError(f"model must be an nn.Module (or a pair for the SVD form), "
                            f"got {type(m).__name__}")
        for p in m.parameters():
            if p.device != device:
                raise ValueError(f"model parameters are on {p.device} but the operator "
                                 f"is on {device}; move one with .to()")
            if p.is_floating_point() and p.dtype != dtype:
                raise TypeError(f"model parameters are {p.dtype} but {expected}; convert one "
                                f"(model.to({dtype}) or operator.to(dtype={p.dtype}))")


def descend(opt: torch.optim.Optimizer, params: list[Tensor], grad_clip: float | None,
            loss: Tensor | None = None) -> None:
    r"""One optimizer step: back-propagates :obj:`loss` (or, when it is
    :obj:`None`, uses the gradients already set in closed form), clips the
    gradient norm to :obj:`grad_clip` when given, and steps."""
    if loss is not None:
        opt.zero_grad(set_to_none=True)
        loss.backward()
    if grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
    opt.step()


def drain_losses(pending: list[Tensor], losses: list[float]) -> float | None:
    r"""Moves the on-device losses of :obj:`pending` to :obj:`losses` with one
    host sync for the lot (a sync per step stalls a GPU). Stops at the first
    non-finite value and returns it (the step is :obj:`len(losses)`), else
    :obj:`None`."""
    if not pending:
        return None
    values = torch.stack(pending).tolist()
    pending.clear()
    for value in values:
        if not math.isfinite(value):
            return value
        losses.append(value)
    return None


def flush_losses(pending: list[Tensor], losses: list[float], opt: torch.optim.Optimizer,
                 where: str = '', advice: str = ' or set grad_clip') -> None:
    r""":func:`drain_losses`, raising :class:`FloatingPointError` at a
    non-finite loss: its step, then :obj:`where` (e.g. what was kept), the
    learning rate and :obj:`advice`."""
    bad = drain_losses(pending, losses)
    if bad is not None:
        raise FloatingPointError(
            f"NestedLoRA loss became {bad} at step {len(losses)}{where}; lower lr "
            f"(now {opt.param_groups[0]['lr']:.3g}){advice}")


@torch.no_grad()
def rayleigh_quotients(f: Tensor, g: Tensor | None, cross: Tensor,
                       weight_f: Tensor | None = None,
                       weight_g: Tensor | None = None) -> Tensor:
    r"""The :obj:`[k]` quotients :math:`\langle g_l, T f_l\rangle /
    (|f_l| |g_l|)` (:obj:`g = f` when :obj:`None`) from the estimates of a
    step, each function on its own: what the progress bar shows."""
    tiny = torch.finfo(f.dtype).tiny
    nf = _weighted_mean(f.pow(2), weight_f)
    if g is None:
        return cross / nf.clamp_min(tiny)
    ng = _weighted_mean(g.pow(2), weight_g)
    return cross / (nf * ng).sqrt().clamp_min(tiny)


def _weighted_mean(values: Tensor, weight: Tensor | None) -> Tensor:
    return values.mean(0) if weight is None else (weight[:, None] * values).mean(0)


def ticks(bar, start: int = 0) -> Iterator[int]:
    r"""The steps :obj:`start, start + 1, ...`, :obj:`bar.total` of them,
    each counted on the bar once done. Iterating the bar itself would close
    it at a :obj:`break` (the abandoned iterator's cleanup), before
    :func:`finish` could draw its last frame."""
    for step in range(start, start + bar.total):
        yield step
        bar.update()


def finish(bar, ran: int) -> None:
    r"""Closes a fit's progress bar at 100 %: at :obj:`ran`, the steps this
    call ran, which is also the total when the fit stopped early (converged,
    or stopped by a callback). A bar left where its last throttled refresh
    happened to be reads, in a log, as a fit that died halfway."""
    if not bar.disable:
        bar.n = bar.total = ran
        bar.refresh()
    bar.close()


def show(bar, loss: float, values: Tensor) -> None:
    r"""The loss and the first four eigenvalue estimates on the progress bar."""
    bar.set_postfix(loss=f'{loss:.4g}', eig=' '.join(f'{v:.4g}' for v in values[:4].tolist()))
