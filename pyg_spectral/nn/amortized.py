r"""Amortized eigendecomposition (Li, Shi, Zhao, Lin, 2024).

Instead of solving :math:`A = V \Lambda V^\top` at every training step, a free
parameter :math:`W` (:obj:`[n, k]`) is kept, :math:`U = \mathrm{QR}(W)` is
taken as the basis, :math:`\Lambda \approx \mathrm{diag}(U^\top A U)` as the
eigenvalues, and an eigen-loss (:mod:`pyg_spectral.losses.eigen_losses`) whose
minima are the top-k eigenvectors is added to the task loss. The model's own
optimizer then moves :math:`W` towards the eigenvectors *along with* training,
at the cost of one product :math:`A U` and one QR of an :math:`n \times k`
matrix per step.

Gradients: :math:`W` receives gradient from the eigen-loss only (the basis is
returned detached), so that it converges to the eigenvectors rather than to
whatever the task prefers. The eigenvalues :math:`u_i^\top A u_i` keep their
gradient with respect to :math:`A` when :math:`A` is built by the model; at
convergence this is the exact derivative :math:`u_i u_i^\top` of an
eigenvalue (Hellmann–Feynman).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.nn.parameter import UninitializedParameter

from ..linalg import canonical_signs, signed_qr
from ..losses.eigen_losses import (EIGEN_LOSSES, check_brockett_weights,
                                   eigen_loss_from_rayleigh)
from ..operators import NullSpace
from ..operators.base import Matrix, matmat, square_size
from ..operators.nullspace import check_complement
from .eigenbasis import Eigenbasis, check_finite_product


class AmortizedEigh(NamedTuple):
    eigenvalues: Tensor   # [k], gradient with respect to A only
    eigenvectors: Tensor  # [n, k], orthonormal, detached
    loss: Tensor          # scalar eigen-loss, gradient with respect to the state only


class AmortizedSVD(NamedTuple):
    U: Tensor     # [m, k] left singular vectors, detached
    S: Tensor     # [k] singular values, gradient with respect to M only
    V: Tensor     # [d, k] right singular vectors, detached
    loss: Tensor  # scalar eigen-loss (of M^T M), gradient with respect to the state only


def orthonormal_basis(W: Tensor) -> Tensor:
    r""":math:`U = \mathrm{QR}(W)` (reduced, differentiable) for :obj:`W` of
    shape :obj:`[n, k]`, with :func:`canonical_signs`."""
    return canonical_signs(torch.linalg.qr(W).Q)


class _RayleighOfQR(torch.autograd.Function):
    r"""The Rayleigh quotients :math:`r_i = u_i^\top A u_i` of
    :math:`U = \mathrm{QR}(W)`, passed in precomputed with :math:`U`,
    :math:`R`, a detached :math:`A U` and :math:`H = U^\top A U` (whose
    diagonal they are), with the analytic gradient with respect to
    :math:`W`: for :math:`G = \partial L / \partial U = A U D`,
    :math:`D = 2\,\mathrm{diag}(\partial L / \partial r)` (A symmetric),
    :math:`\partial L / \partial W = (G - U B) R^{-\top}` with
    :math:`B = \mathrm{triu}(M) + \mathrm{tril}(M^\top, -1)`, :math:`M =
    U^\top G = H D` (the derivative of the QR factorisation when :math:`R`
    gets no gradient). Computed as :math:`A U (D R^{-\top}) - U (B
    R^{-\top})`: two :math:`n \times k \times k` products, where autograd
    through :func:`torch.linalg.qr` costs about two QRs: the difference is
    most of the method's overhead over its floor."""

    @staticmethod
    def forward(ctx, W: Tensor, U: Tensor, R: Tensor, AU: Tensor, H: Tensor) -> Tensor:
        ctx.save_for_backward(U, R, AU, H)
        return H.diagonal().clone()

    @staticmethod
    def backward(ctx, grad_r: Tensor):
        U, R, AU, H = ctx.saved_tensors
        D = 2 * grad_r
        M = H * D
        B = M.triu() + M.T.tril(-1)
        # R^-1 once ([k, k]): solving against the tall [n, k] right-hand
        # side directly is several times slower on a CPU
        eye = torch.eye(R.size(0), device=R.device, dtype=R.dtype)
        R_inv_T = torch.linalg.solve_triangular(R, eye, upper=True).T
        grad = AU @ (D[:, None] * R_inv_T)
        return grad.addmm_(U, B @ R_inv_T, alpha=-1), None, None, None, None


def _check_state(state: Tensor, rows: int, k: int | None, name: str = 'state') -> None:
    if not isinstance(state, Tensor) or state.dim() != 2:
        raise TypeError(f"{name} must be a 2-D tensor W of shape [{rows}, k]")
    if state.size(0) != rows:
        raise ValueError(f"{name} has {state.size(0)} rows but the matrix has {rows}; a basis "
                         f"is tied to one matrix size")
    if k is not None and state.size(1) != k:
        raise ValueError(f"{name} has {state.size(1)} columns but k={k}")
    if state.size(1) > rows:
        raise ValueError(f"k={state.size(1)} exceeds the matrix size {rows}")
    if not _all_finite(state):
        raise ValueError(f"{name} (the amortized basis W) contains NaN or inf; lower the "
                         f"learning rate or the eigen-loss weight, or re-initialise it")


def _all_finite(x: Tensor) -> bool:
    # one sum instead of an elementwise test: NaN and +-inf all propagate
    return bool(torch.isfinite(x.detach().sum()))


def amortized_eigh(
    A: Matrix,
    state: Tensor,
    k: int | None = None,
    largest: bool = True,
    loss: str = 'brockett',
    weights: Tensor | None = None,
    null: NullSpace | None = None,
    signs: bool = True,
) -> AmortizedEigh:
    r"""One amortized step of the eigendecomposition of a symmetric matrix.

    Args:
        A: dense symmetric :obj:`[n, n]` tensor (possibly built by the model,
            gradients then flow to it through the eigenvalues) or a symmetric
            :class:`~pyg_spectral.operators.LinearOperator`.
        state: the free parameter :math:`W` of shape :obj:`[n, k]`, to be
            updated by the caller's optimizer.
        k: expected number of columns of :obj:`state` (checked).
        largest: top-k (:obj:`True`) or bottom-k eigenpairs.
        loss: eigen-loss, one of :obj:`'brockett'`, :obj:`'convex'`, :obj:`'trace'`.
        weights: Brockett's :math:`N`, :obj:`[k]` strictly decreasing.
        null: a known eigenspace of :obj:`A` at the wanted end (e.g. the
            component space of a graph matrix,
            :meth:`~pyg_spectral.operators.NullSpace.of_operator`): the basis
            is learned in its orthogonal complement, :math:`U =
            \mathrm{QR}((I - P_0) W)`, so it holds the :obj:`k` eigenvectors
            that follow that space.
        signs: the canonical signs of :func:`~pyg_spectral.linalg.canonical_signs`
            on the eigenvectors; :obj:`False` spares their passes over
            :math:`U` where nothing depends on them (a propagation
            :math:`U \Lambda U^\top`, the eigenvalues, the loss and its
            gradient do not).

    Returns:
        :obj:`(eigenvalues [k], eigenvectors [n, k], loss)`; add :obj:`loss`
        (times a weight) to the task loss.
    """
    n = square_size(A)
    _check_state(state, n, k)
    check_complement(null, n, state.size(1))
    # U, A U and so the gradient (G - U B) R^-T with respect to the projected
    # W already lie in the complement (A commutes with the projection onto its
    # own eigenspace): it is the gradient with respect to the state itself,
    # and only the QR pays for the projection (folded into its first pass)
    U, R = signed_qr(state, signs, None if null is None else null.basis_matrices(state.dtype))
    AU = matmat(A, U)
    check_finite_product(AU, 'A')
    # U^T A U: its diagonal is the eigenvalues (one product instead of an
    # elementwise one and a sum), and it gives the backward pass U^T G
    H = U.T @ AU
    eigenvalues = H.diagonal()
    rayleigh = _RayleighOfQR.apply(state, U, R, AU.detach(), H.detach())
    return AmortizedEigh(eigenvalues, U, eigen_loss_from_rayleigh(rayleigh, loss, largest, weights))


def amortized_svd(
    M: Tensor,
    state: Tensor,
    k: int | None = None,
    loss: str = 'brockett',
    weights: Tensor | None = None,
) -> AmortizedSVD:
    r"""One amortized step of the top-k SVD of :obj:`M` (:obj:`[m, d]`): the
    right singular vectors are the top eigenvectors of :math:`M^\top M`, learned
    in :obj:`state` (:obj:`[d, k]`), and :math:`\sigma_i = \|M v_i\|`, whose
    gradient with respect to :obj:`M` is :math:`u_i v_i^\top` (so e.g. a
    nuclear-norm penalty :obj:`S.sum()` back-propagates correctly)."""
    if not isinstance(M, Tensor) or M.dim() != 2 or not M.is_floating_point():
        raise TypeError("M must be a 2-D floating-point tensor [m, d]")
    _check_state(state, M.size(1), k)
    V, R = signed_qr(state)
    MV = M @ V
    check_finite_product(MV, 'M')
    S = MV.norm(dim=0)
    U = MV.detach() / S.detach().clamp_min(torch.finfo(S.dtype).tiny)
    MtMV = M.detach().T @ MV.detach()
    rayleigh = _RayleighOfQR.apply(state, V, R, MtMV, V.T @ MtMV)
    return AmortizedSVD(U, S, V, eigen_loss_from_rayleigh(rayleigh, loss, True, weights))


class AmortizedEigenbasis(Eigenbasis):
    r"""A learned top-k (or bottom-k) eigenbasis of a symmetric matrix of
    size :obj:`num_nodes`, from the `"Amortized Eigendecomposition for Neural
    Networks" <https://neurips.cc/virtual/2024/poster/95360>`_ paper (Li,
    Shi, Zhao, Lin, NeurIPS 2024): trained by the model's optimizer through an
    eigen-loss (see the module docstring);
    :class:`~pyg_spectral.nn.eigenbasis.ExactEigenbasis` is its exact
    counterpart.

    .. code-block:: python

        basis = AmortizedEigenbasis(num_nodes, k=16)
        U, lam = basis(operator)                      # [n, k], [k]
        loss = task_loss + pyg_spectral.nn.eigen_loss(model)

    Args:
        num_nodes (int or None): size :math:`n` of the matrix; :obj:`None`
            creates :math:`W` lazily at the first forward (create the
            optimizer after it).
        k (int): number of eigenpairs.
        largest (bool, optional): top-k (:obj:`True`) or bottom-k.
            (default: :obj:`True`)
        loss (str, optional): :obj:`'brockett'` (ordered), :obj:`'convex'`
            or :obj:`'trace'` (eigenspace only), see
            :mod:`pyg_spectral.losses.eigen_losses`. (default: :obj:`'brockett'`)
        loss_weight (float, optional): :math:`\eta`, the weight of the
            eigen-loss in the total. :math:`W` gets no other gradient, so
            under Adam it only matters relative to weight decay.
            (default: :obj:`1.0`)
        weights (torch.Tensor, optional): Brockett's :math:`N` (:obj:`[k]`,
            strictly decreasing). (default: :obj:`None`:
            :func:`~pyg_spectral.losses.eigen_losses.brockett_weights`)
        init_scale (float, optional): standard deviation of the random
            initial :math:`W`. An adaptive optimizer (Adam) moves each entry
            by about its learning rate per step, so this sets the relative
            step size of the basis. (default: :obj:`0.1`)
        canonical_signs (bool, optional): give the eigenvectors the canonical
            signs of :func:`~pyg_spectral.linalg.canonical_signs`;
            :obj:`False` spares their passes over :math:`U` for a consumer
            that does not depend on them, as
            :class:`~pyg_spectral.nn.LowRankGCNConv`'s propagation
            :math:`U \Lambda U^\top` does not. (default: :obj:`True`)
    """

    def __init__(
        self,
        num_nodes: int | None,
        k: int,
        largest: bool = True,
        loss: str = 'brockett',
        loss_weight: float = 1.0,
        weights: Tensor | None = None,
        init_scale: float = 0.1,
        canonical_signs: bool = True,
    ) -> None:
        super().__init__(num_nodes, k, largest)
        if loss not in EIGEN_LOSSES:
            raise ValueError(f"loss must be one of {EIGEN_LOSSES}, got {loss!r}")
        self.loss = loss
        self.loss_weight, self.init_scale = float(loss_weight), float(init_scale)
        self.canonical_signs = bool(canonical_signs)
        self.register_buffer('brockett_n', None if weights is None
                             else check_brockett_weights(weights, k).clone(), persistent=False)
        if num_nodes is None:
            self.weight = UninitializedParameter()
        else:
            self.weight = nn.Parameter(torch.empty(num_nodes, k))
        self._last: AmortizedEigh | None = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        self._last = None
        if not isinstance(self.weight, UninitializedParameter):
            self._init_weight()

    @torch.no_grad()
    def _init_weight(self) -> None:
        self.weight.normal_(0.0, self.init_scale)

    @torch.no_grad()
    def warm_start(self, basis: Tensor) -> 'AmortizedEigenbasis':
        r"""Sets :math:`W` to :obj:`basis` (:obj:`[n, k]`), e.g. the basis of
        a previous run or of a similar graph, or exact eigenvectors."""
        if isinstance(self.weight, UninitializedParameter):
            self.weight.materialize(tuple(basis.shape), device=basis.device, dtype=basis.dtype)
            self.num_nodes = basis.size(0)
        _check_state(basis, self.weight.size(0), self.k, 'basis')
        # keep the parameter's scale so that the optimizer's relative step is unchanged
        self.weight.copy_(orthonormal_basis(basis.to(self.weight)) * self.init_scale
                          * math.sqrt(self.weight.size(0)))
        self._memo = None
        return self

    def _check_size(self, n: int) -> None:
        if self.num_nodes is not None and n != self.num_nodes:
            raise ValueError(f"this AmortizedEigenbasis was built for num_nodes="
                             f"{self.num_nodes}, but the operator has {n} rows; a "
                             f"learned basis is tied to one graph size")

    def _version(self, operator: Matrix) -> int:
        return self._materialize(operator)._version

    def _pairs(self, operator: Matrix, null: NullSpace | None,
               n: int) -> tuple[Tensor, Tensor]:
        self._last = amortized_eigh(operator, self.weight, self.k, self.largest,
                                    self.loss, self.brockett_n, null, self.canonical_signs)
        return self._last.eigenvectors, self._last.eigenvalues

    def _materialize(self, operator: Matrix) -> Tensor:
        if isinstance(self.weight, UninitializedParameter):
            self.weight.materialize((operator.shape[0], self.k), device=operator.device,
                                    dtype=operator.dtype)
            self.num_nodes = operator.shape[0]
            self._init_weight()
        return self.weight

    def eigen_loss(self, operator: Matrix | None = None) -> Tensor:
        r""":math:`\eta` times the eigen-loss at :obj:`operator`, or at the
        operator of the last forward pass when :obj:`None`."""
        if operator is not None:
            self.forward(operator)
        if self._last is None:
            raise RuntimeError("AmortizedEigenbasis.eigen_loss() needs a forward pass "
                               "first (or an operator argument)")
        return self.loss_weight * self._last.loss

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(num_nodes={self.num_nodes}, k={self.k}, '
                f'largest={self.largest}, loss={self.loss!r}'
                + ('' if self.canonical_signs else ', canonical_signs=False') + ')')
