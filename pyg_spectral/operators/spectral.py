"""Affine spectral maps alpha*T + beta*I, so that the wanted end of a spectrum
becomes the top positive eigenvalues that NestedLoRA learns."""
from __future__ import annotations

from torch import Tensor

from .base import DerivedOperator, LinearOperator


class ShiftedOperator(DerivedOperator):
    r""":math:`\alpha T + \beta I` for a square operator :math:`T`; its
    eigenvectors are T's and :meth:`original_eigenvalues` maps back."""

    def __init__(self, operator: LinearOperator, alpha: float, beta: float) -> None:
        if operator.shape is None or operator.shape[0] != operator.shape[1]:
            raise ValueError("A shift needs a square finite operator.")
        if alpha == 0:
            raise ValueError("alpha must be non-zero")
        super().__init__(operator)
        self.alpha, self.beta = float(alpha), float(beta)

    def to(self, device=None, dtype=None) -> 'ShiftedOperator':
        return ShiftedOperator(self.inner.to(device, dtype), self.alpha, self.beta)

    def matmat(self, X: Tensor) -> Tensor:
        return self.inner.affine_matmul(X, self.alpha, self.beta)

    def rmatmat(self, X: Tensor) -> Tensor:
        return self.alpha * self.inner.rmatmat(X) + self.beta * X

    def spectral_bounds(self) -> tuple[float, float]:
        lo, hi = self.inner.spectral_bounds()
        a, b = sorted((self.alpha * lo + self.beta, self.alpha * hi + self.beta))
        return a, b

    def original_eigenvalues(self, mu: Tensor) -> Tensor:
        return (mu - self.beta) / self.alpha

    def __repr__(self) -> str:
        return f'{self.alpha:g} * {self.inner!r} + {self.beta:g} * I'


def top_positive(operator: LinearOperator, largest: bool = True) -> ShiftedOperator:
    r"""Maps :obj:`operator` so that its :obj:`largest` (or smallest) eigenvalues
    become the top eigenvalues of a positive semi-definite operator, with the
    safe bound of :meth:`LinearOperator.spectral_bounds`: :math:`T - \ell I`
    for the largest, :math:`u I - T` for the smallest."""
    lo, hi = operator.spectral_bounds()
    return ShiftedOperator(operator, 1.0, -lo) if largest else ShiftedOperator(operator, -1.0, hi)
