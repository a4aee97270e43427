"""The protocol every operator T implements, and the terms the solvers need."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class LoRATerms:
    r"""Monte-Carlo (or exact) estimates that NestedLoRA needs for one step.

    Attributes:
        f: :obj:`[B, k]` values of the right functions at the samples.
        g: :obj:`[B', k]` values of the left functions, or :obj:`None` for a
            self-adjoint operator (EVD form, :obj:`g = f`).
        cross: :obj:`[k]` estimates of :math:`\langle g_l, T f_l \rangle`
            whose gradient is the true one (the operator decides how; a
            self-adjoint T is applied without autograd and the gradient
            :math:`-4 T f` is restored by a detached correction).
        weight_f, weight_g: :obj:`[B]` importance weights of the samples
            (:obj:`None` for uniform), so that
            :math:`\langle a, b \rangle \approx \frac1B \sum_i w_i a_i b_i`.
    """
    f: Tensor
    g: Tensor | None
    cross: Tensor
    weight_f: Tensor | None = None
    weight_g: Tensor | None = None


def weighted_mean(values: Tensor, weight: Tensor | None) -> Tensor:
    r"""Mean over dim 0 of :obj:`values` with optional sample weights."""
    if weight is None:
        return values.mean(0)
    return (weight.view(-1, *([1] * (values.dim() - 1))) * values).mean(0)


def symmetric_cross(f: Tensor, Tf: Tensor, weight: Tensor | None = None) -> Tensor:
    r""":math:`\langle f_l, T f_l\rangle` for a self-adjoint T with :obj:`Tf`
    computed without autograd: the value is exact and the gradient with
    respect to :obj:`f` is :math:`2 T f` (what autograd through T gives),
    without differentiating through T."""
    Tf = Tf.detach()
    first = weighted_mean(f * Tf, weight)
    return 2 * first - first.detach()


class LinearOperator:
    r"""A linear operator T that can be applied to a block of vectors.

    Finite operators (matrices) have :attr:`shape`; operators on function
    spaces (Hamiltonians, kernels) have :obj:`shape = None` and provide
    :meth:`lora_terms` from samples instead.
    """
    shape: tuple[int, int] | None = None
    is_symmetric: bool = True

    @property
    def device(self) -> torch.device:
        raise NotImplementedError

    @property
    def dtype(self) -> torch.dtype:
        raise NotImplementedError

    def to(self, device=None, dtype=None) -> 'LinearOperator':
        raise NotImplementedError

    def matmul(self, X: Tensor) -> Tensor:
        r""":math:`T X` for :obj:`X` of shape :obj:`[n, k]`."""
        raise NotImplementedError

    def rmatmul(self, X: Tensor) -> Tensor:
        r""":math:`T^\top X` (the adjoint) for :obj:`X` of shape :obj:`[m, k]`."""
        if self.is_symmetric:
            return self.matmul(X)
        raise NotImplementedError

    def __matmul__(self, X: Tensor) -> Tensor:
        return self.matmul(X)

    def affine_matmul(self, X: Tensor, alpha: float, beta: float) -> Tensor:
        r""":math:`\alpha T X + \beta X`; operators that can fuse it override
        this (a sparse :obj:`addmm` is one pass where the plain form is three)."""
        return torch.add(alpha * self.matmul(X), X, alpha=beta)

    def spectral_bounds(self) -> tuple[float, float]:
        r"""Safe :obj:`(lower, upper)` bounds on the eigenvalues (symmetric)
        or :obj:`(0, upper)` on the singular values."""
        raise NotImplementedError

    def check_block(self, X: Tensor, name: str = 'X') -> None:
        if not isinstance(X, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(X).__name__}")
        if self.shape is not None and (X.dim() != 2 or X.size(0) != self.shape[1]):
            raise ValueError(f"{name} must have shape [{self.shape[1]}, k] to be "
                             f"multiplied by an operator of shape {tuple(self.shape)}, "
                             f"got {tuple(X.shape)}")
        if X.device != self.device:
            raise ValueError(f"{name} is on {X.device} but the operator is on "
                             f"{self.device}; move one with .to()")

    # Finite operators: one full-batch estimate with uniform weights, so
    # that <a, b> = mean_i a_i b_i and the optimum has |f_l|^2 = lambda_l.
    def lora_terms(self, f: Tensor, g: Tensor | None = None) -> LoRATerms:
        if g is None:
            if not self.is_symmetric:
                raise ValueError("A non-symmetric operator needs the SVD form "
                                 "(left and right vectors).")
            with torch.no_grad():
                Tf = self.matmul(f)
            return LoRATerms(f, None, symmetric_cross(f, Tf))
        # <g, T f> = g^T T f / n: gradient T f for g and T^T g for f
        with torch.no_grad():
            Tf, Ttg = self.matmul(f), self.rmatmul(g)
        scale = 1.0 / f.size(0)
        cross = (scale * (g * Tf).sum(0) + scale * (f * Ttg).sum(0)
                 - scale * (g.detach() * Tf).sum(0))
        return LoRATerms(f, g, cross)


class DerivedOperator(LinearOperator):
    r"""An operator defined through another one, :attr:`inner` (a shift, a
    power, a deflation), whose shape, device and dtype it shares."""

    def __init__(self, inner: LinearOperator, is_symmetric: bool | None = None) -> None:
        self.inner = inner
        self.shape = inner.shape
        self.is_symmetric = inner.is_symmetric if is_symmetric is None else is_symmetric

    @property
    def device(self) -> torch.device:
        return self.inner.device

    @property
    def dtype(self) -> torch.dtype:
        return self.inner.dtype


Matrix = Tensor | LinearOperator


def square_size(A: Matrix, name: str = 'A') -> int:
    r"""The size :math:`n` of a square symmetric :obj:`A`: a dense
    :obj:`[n, n]` tensor (checked for symmetry) or a symmetric
    :class:`LinearOperator`; an error that names :obj:`name` otherwise."""
    if isinstance(A, LinearOperator):
        if A.shape is None or A.shape[0] != A.shape[1] or not A.is_symmetric:
            raise ValueError(f"{name} must be a square symmetric operator, got {A!r}")
        return A.shape[0]
    if not isinstance(A, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or a LinearOperator, got {type(A).__name__}")
    if A.dim() != 2 or A.size(0) != A.size(1) or not A.is_floating_point():
        raise ValueError(f"{name} must be a square floating-point matrix [n, n], got "
                         f"{tuple(A.shape)} of dtype {A.dtype}")
    # a dense product costs n^2 k anyway; the check costs n^2 (non-finite
    # entries are left to the product's check, which names them)
    asymmetry = float((A - A.mT).detach().abs().max()) if A.numel() else 0.0
    scale = max(float(A.detach().abs().max()), 1.0)
    if math.isfinite(asymmetry) and asymmetry > 1e3 * torch.finfo(A.dtype).eps * scale:
        raise ValueError(f"{name} must be symmetric (its eigenvectors are the top of a "
                         f"symmetric matrix), but max |A - A^T| = {asymmetry:.3g}; for a "
                         f"non-symmetric M use amortized_svd")
    return A.size(0)


def matmat(A: Matrix, X: Tensor) -> Tensor:
    r""":math:`A X` for a dense tensor or an operator :obj:`A`."""
    return A.matmul(X) if isinstance(A, LinearOperator) else A @ X


def to_dense(A: Matrix) -> Tensor:
    r"""The dense matrix of :obj:`A` (for small ones: an operator without
    :meth:`to_dense` is applied to the identity)."""
    if isinstance(A, Tensor):
        return A
    if hasattr(A, 'to_dense'):
        return A.to_dense()
    return A.matmul(torch.eye(A.shape[0], device=A.device, dtype=A.dtype))
