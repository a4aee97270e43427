r"""The eigenbases the low-rank layers share: what every one does (a
computation per operator per step, the graph the layers built), and the
exact one, solved once per graph (:class:`AmortizedEigenbasis` learns one
instead)."""
from __future__ import annotations

import torch
from torch import Tensor

from ..operators import NullSpace
from ..operators.base import Matrix, matmat, square_size
from ..operators.nullspace import check_complement
from ..solvers.exact import EXACT_METHODS, exact_eigh
from ..solvers.laplacian import DENSE_NODES, check_method
from .eigen_loss import EigenLossModule


def check_finite_product(AU: Tensor, name: str) -> None:
    r"""Raises if :math:`A U` has NaN or inf entries (those of :math:`A`
    always reach it; one sum instead of an elementwise test)."""
    if not bool(torch.isfinite(AU.detach().sum())):
        raise ValueError(f"{name} contains NaN or inf (its product with the basis is not finite)")


class Eigenbasis(EigenLossModule):
    r"""Base of the top-:obj:`k` (or bottom-:obj:`k`) eigenbases of a
    symmetric matrix of size :obj:`num_nodes` that layers share.

    Calling it on an operator returns :obj:`(U [n, k], eigenvalues [k])`;
    the layers that share it on the same operator in one step share one
    computation, and keep the graph they built on :attr:`cached_graph`.
    Subclasses say how the pairs are found (:meth:`_pairs`).

    Args:
        num_nodes: size :math:`n` of the matrix (:obj:`None`: that of the
            first operator).
        k: number of eigenpairs.
        largest: top-k (:obj:`True`) or bottom-k.
    """

    def __init__(self, num_nodes: int | None, k: int, largest: bool = True) -> None:
        super().__init__()
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        if num_nodes is not None and k > num_nodes:
            raise ValueError(f"k={k} exceeds num_nodes={num_nodes}")
        self.num_nodes, self.k, self.largest = num_nodes, k, largest
        # the graph this basis diagonalises, set and read by the layers that share it
        self.cached_graph: object | None = None
        self._memo: tuple | None = None

    def reset_parameters(self) -> None:
        self._memo, self.cached_graph = None, None

    def forward(self, operator: Matrix, null: NullSpace | None = None) -> tuple[Tensor, Tensor]:
        r"""Returns :obj:`(U [n, k], eigenvalues [k])` of :obj:`operator` (a
        symmetric :class:`~pyg_spectral.operators.LinearOperator` or a dense
        symmetric tensor). With :obj:`null`, a known eigenspace at the wanted
        end (:meth:`~pyg_spectral.operators.NullSpace.of_operator`), the
        :obj:`k` eigenpairs next to it. Layers sharing this basis on the
        same operator in one step share one computation."""
        n = square_size(operator, 'operator')
        self._check_size(n)
        if self.k > n:
            raise ValueError(f"k={self.k} exceeds the operator size {n}")
        check_complement(null, n, self.k)
        key = (self._version(operator), torch.is_grad_enabled())
        if (self._memo is not None and self._memo[0] is operator and self._memo[1] is null
                and self._memo[2] == key):
            return self._memo[3]
        out = self._pairs(operator, null, n)
        self._memo = (operator, null, key, out)
        return out

    def _check_size(self, n: int) -> None:
        pass

    def _version(self, operator: Matrix) -> int | None:
        r"""What, besides the operator, the pairs depend on (memo key)."""
        return None

    def _pairs(self, operator: Matrix, null: NullSpace | None,
               n: int) -> tuple[Tensor, Tensor]:  # pragma: no cover - interface
        raise NotImplementedError


class ExactEigenbasis(Eigenbasis):
    r"""The exact top-:obj:`k` (or bottom-:obj:`k`) eigenbasis, solved by
    :func:`~pyg_spectral.solvers.exact.exact_eigh` once per operator (no
    parameter, no eigen-loss): the reference of the amortized one.

    Args:
        num_nodes: size :math:`n` of the matrix (a check is not needed: the
            basis is solved again for an operator of another size).
        k: number of eigenpairs.
        largest: top-k (:obj:`True`) or bottom-k.
        method: :obj:`'eigh'`, :obj:`'lobpcg'` (warm-started from the
            previous basis) or :obj:`'arpack'` (SciPy's ARPACK, CPU);
            :obj:`None` picks :obj:`'eigh'` up to 2048 rows, above it
            :obj:`'arpack'` on CPU and :obj:`'lobpcg'` elsewhere; next to a
            component space (a :obj:`null` passed to :meth:`forward`)
            :obj:`'eigh'` up to
            :obj:`~pyg_spectral.solvers.laplacian.DENSE_NODES` rows, above
            it :obj:`'arpack'`.
    """

    def __init__(self, num_nodes: int | None, k: int, largest: bool = True,
                 method: str | None = None) -> None:
        super().__init__(num_nodes, k, largest)
        check_method(method, EXACT_METHODS, optional=True)
        self.method = method
        self._previous: Tensor | None = None
        self._solved_for: Matrix | None = None

    def reset_parameters(self) -> None:
        super().reset_parameters()
        self._previous = self._solved_for = None

    @torch.no_grad()
    def warm_start(self, basis: Tensor) -> 'ExactEigenbasis':
        r"""Starts the next iterative solve (:obj:`'lobpcg'`, :obj:`'arpack'`)
        from :obj:`basis` :obj:`[n, k]`."""
        self._previous, self._solved_for, self._memo = basis.detach().clone(), None, None
        return self

    def _pairs(self, operator: Matrix, null: NullSpace | None,
               n: int) -> tuple[Tensor, Tensor]:
        U = self._basis(operator, n, null)
        AU = matmat(operator, U)
        check_finite_product(AU, 'operator')
        return U, (U * AU).sum(0)

    def _basis(self, operator: Matrix, n: int, null: NullSpace | None) -> Tensor:
        # solved once per operator; the previous basis warm-starts lobpcg/arpack
        if self._solved_for is operator:
            return self._previous
        if null is not None:
            method = self.method or ('eigh' if n <= DENSE_NODES else 'arpack')
            self._previous = exact_eigh(operator, self.k, self.largest, method, null=null)[1]
        else:
            method = self.method or ('eigh' if n <= 2048 else
                                     'arpack' if operator.device.type == 'cpu' else 'lobpcg')
            init = self._previous if self._previous is not None \
                and self._previous.size(0) == n else None
            self._previous = exact_eigh(operator, self.k, self.largest, method, init)[1]
        self._solved_for = operator
        return self._previous

    def eigen_loss(self, operator: Matrix | None = None) -> Tensor:
        r"""Zero: an exact basis trains nothing."""
        return torch.zeros((), device=None if self._previous is None else self._previous.device)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(num_nodes={self.num_nodes}, k={self.k}, '
                f'largest={self.largest}, method={self.method or "auto"!r})')
