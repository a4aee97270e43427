r"""The protocol of a finite linear operator, shaped like SciPy's
:class:`scipy.sparse.linalg.LinearOperator` (the same names for the same
things), on torch blocks of vectors; and what a routine that takes a dense
matrix or an operator needs. Operators known only through samples have their
own protocol (:class:`~pyg_spectral.operators.SampledOperator`)."""
from __future__ import annotations

import math

import torch
from torch import Tensor


class LinearOperator:
    r"""A linear operator :math:`T: \mathbb{R}^n \to \mathbb{R}^m` applied to
    blocks of vectors on one device: :attr:`shape` :obj:`(m, n)`,
    :attr:`dtype`, :attr:`device`, :meth:`to`, the product :meth:`matmat`
    (:math:`TX`) and the adjoint product :meth:`rmatmat` (:math:`T^\top X`),
    as SciPy names them, and safe :meth:`spectral_bounds`. An operator
    derived from another one (shifted, deflated) maps its eigenvalues back
    with :meth:`original_eigenvalues`."""
    shape: tuple[int, int]
    is_symmetric: bool = True

    @property
    def device(self) -> torch.device:
        raise NotImplementedError

    @property
    def dtype(self) -> torch.dtype:
        raise NotImplementedError

    def to(self, device=None, dtype=None) -> 'LinearOperator':
        raise NotImplementedError

    def matmat(self, X: Tensor) -> Tensor:
        r""":math:`T X` for :obj:`X` of shape :obj:`[n, k]`."""
        if type(self).matmul is not LinearOperator.matmul:  # written against the old name
            return self.matmul(X)
        raise NotImplementedError

    def rmatmat(self, X: Tensor) -> Tensor:
        r""":math:`T^\top X` (the adjoint) for :obj:`X` of shape :obj:`[m, k]`."""
        if self.is_symmetric:
            return self.matmat(X)
        raise NotImplementedError

    def matmul(self, X: Tensor) -> Tensor:
        r"""The former name of :meth:`matmat`, kept while subclasses written
        against it remain (:class:`~pyg_spectral.solvers.halo.RowBlockOperator`)."""
        return self.matmat(X)

    def __matmul__(self, X: Tensor) -> Tensor:
        return self.matmat(X)

    def affine_matmul(self, X: Tensor, alpha: float, beta: float) -> Tensor:
        r""":math:`\alpha T X + \beta X`; operators that can fuse it override
        this (a sparse :obj:`addmm` is one pass where the plain form is three)."""
        return torch.add(alpha * self.matmat(X), X, alpha=beta)

    def spectral_bounds(self) -> tuple[float, float]:
        r"""Safe :obj:`(lower, upper)` bounds on the eigenvalues (symmetric)
        or :obj:`(0, upper)` on the singular values."""
        raise NotImplementedError

    def original_eigenvalues(self, mu: Tensor) -> Tensor:
        r"""The eigenvalues of the operator this one was derived from (by a
        shift, say) for eigenvalues :obj:`mu` of this one; the identity for
        an operator derived from none."""
        return mu

    def check_block(self, X: Tensor, name: str = 'X') -> None:
        if not isinstance(X, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(X).__name__}")
        if X.dim() != 2 or X.size(0) != self.shape[1]:
            raise ValueError(f"{name} must have shape [{self.shape[1]}, k] to be "
                             f"multiplied by an operator of shape {tuple(self.shape)}, "
                             f"got {tuple(X.shape)}")
        if X.device != self.device:
            raise ValueError(f"{name} is on {X.device} but the operator is on "
                             f"{self.device}; move one with .to()")


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
    return A.matmat(X) if isinstance(A, LinearOperator) else A @ X


def to_dense(A: Matrix) -> Tensor:
    r"""The dense matrix of :obj:`A` (for small ones: an operator without
    :meth:`to_dense` is applied to the identity)."""
    if isinstance(A, Tensor):
        return A
    if hasattr(A, 'to_dense'):
        return A.to_dense()
    return A.matmat(torch.eye(A.shape[0], device=A.device, dtype=A.dtype))
