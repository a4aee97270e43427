"""Accuracy measures for learned eigenpairs that do not depend on signs or on
rotations inside degenerate eigenspaces."""
from __future__ import annotations

import torch
from torch import Tensor


def principal_sines(A: Tensor, B: Tensor) -> Tensor:
    r"""Sines of the principal angles between :math:`\mathrm{span}(A)` and
    :math:`\mathrm{span}(B)`, for :obj:`A` of shape :obj:`[n, p]` and :obj:`B`
    of shape :obj:`[n, q]` with :math:`p \le q`, sorted in decreasing order.

    Each sine measures how far a direction of :obj:`span(A)` lies outside
    :obj:`span(B)`, so a learned basis is compared with a reference eigenspace
    (possibly larger, e.g. the whole degenerate cluster) without caring for
    signs or rotations. Computed in float64.
    """
    if A.dim() != 2 or B.dim() != 2 or A.size(0) != B.size(0):
        raise ValueError(f"A and B must be [n, p] and [n, q] with the same n, got "
                         f"{tuple(A.shape)} and {tuple(B.shape)}")
    if A.size(1) > B.size(1):
        raise ValueError(f"A must not have more columns than B, got {A.size(1)} > {B.size(1)}")
    Qa = torch.linalg.qr(A.double())[0]
    Qb = torch.linalg.qr(B.double().to(A.device))[0]
    residual = Qa - Qb @ (Qb.transpose(0, 1) @ Qa)
    return torch.linalg.svdvals(residual)


def max_principal_sine(A: Tensor, B: Tensor) -> float:
    r"""The largest principal-angle sine between :obj:`span(A)` and
    :obj:`span(B)` (see :func:`principal_sines`): 0 when
    :obj:`span(A)` lies inside :obj:`span(B)`, 1 when some direction is
    orthogonal to it."""
    return float(principal_sines(A, B).max())


def relative_error(estimate: Tensor, reference: Tensor, floor: float = 0.0) -> Tensor:
    r""":math:`|\hat\lambda - \lambda| / \max(|\lambda|, \mathrm{floor})`, elementwise."""
    estimate, reference = estimate.double().cpu(), reference.double().cpu()
    return (estimate - reference).abs() / reference.abs().clamp_min(floor)
