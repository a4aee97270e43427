r"""Eigen-losses of amortized eigendecomposition (Li, Shi, Zhao, Lin, 2024).

Each loss is a function of the Rayleigh quotients
:math:`r_i = u_i^\top A u_i` of an orthonormal basis :math:`U = [u_1, \dots,
u_k]` (for instance :math:`U = \mathrm{QR}(W)`). Minimising it over :math:`U`
makes the columns eigenvectors of :math:`A`:

- :obj:`'brockett'`: Brockett's cost :math:`-\mathrm{tr}(U^\top A U N)`, with
  :math:`N = \mathrm{diag}(n_1 > \dots > n_k > 0)`. Its minima are the top-k
  eigenvectors *in order* (:math:`u_1` the largest).
- :obj:`'convex'`: the convex trace loss :math:`-\sum_i f(u_i^\top A u_i)`
  with :math:`f` strictly convex and increasing (:math:`\exp` by default).
  Its minima are the top-k eigenvectors, in no particular order.
- :obj:`'trace'`: :math:`-\mathrm{tr}(U^\top A U)`. Invariant to rotations of
  :math:`U`, it only finds the top-k eigen*space*; the paper's example of a
  loss that is not enough on its own.

For the bottom of the spectrum (:obj:`largest=False`) the losses are applied
to :math:`-A`.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

EIGEN_LOSSES = ('brockett', 'convex', 'trace')


def brockett_weights(k: int, device=None, dtype=None) -> Tensor:
    r"""The default :math:`N` of Brockett's cost: :math:`n_i = (k - i + 1) / k`,
    i.e. :obj:`[1, (k-1)/k, ..., 1/k]` (strictly decreasing and positive)."""
    return torch.arange(k, 0, -1, device=device, dtype=dtype) / k


def check_brockett_weights(weights: Tensor, k: int) -> Tensor:
    r"""Validates a user-given :math:`N` (shape :obj:`[k]`, positive, strictly
    decreasing) and returns it."""
    if not isinstance(weights, Tensor) or weights.shape != (k,):
        raise ValueError(f"weights must be a tensor of shape [{k}] (one per eigenvector)")
    if not (weights > 0).all() or not (weights.diff() < 0).all():
        raise ValueError("weights must be positive and strictly decreasing "
                         "(n_1 > ... > n_k > 0), otherwise the eigenvectors come out unordered")
    return weights


def eigen_loss_from_rayleigh(
    rayleigh: Tensor,
    loss: str = 'brockett',
    largest: bool = True,
    weights: Tensor | None = None,
    convex_fn: Callable[[Tensor], Tensor] = torch.exp,
) -> Tensor:
    r"""The eigen-loss :obj:`loss` of the Rayleigh quotients :obj:`rayleigh`
    (shape :obj:`[k]`, :math:`r_i = u_i^\top A u_i` for an orthonormal
    :math:`U`). Returns a scalar."""
    if loss not in EIGEN_LOSSES:
        raise ValueError(f"loss must be one of {EIGEN_LOSSES}, got {loss!r}")
    r = rayleigh if largest else -rayleigh
    if loss == 'brockett':
        if weights is None:
            weights = brockett_weights(r.numel(), r.device, r.dtype)
        return -(weights.to(r.dtype) * r).sum()
    if loss == 'convex':
        return -convex_fn(r).sum()
    return -r.sum()
