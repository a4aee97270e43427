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

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.parameter import UninitializedParameter

from ..losses.eigen_losses import (EIGEN_LOSSES, check_brockett_weights,
                                   eigen_loss_from_rayleigh)
from ..linalg import canonical_signs, signed_qr
from ..operators import COMPONENT_EIGENVALUE, GraphOperator, LinearOperator, NullSpace
from ..solvers.laplacian import DENSE_NODES, nontrivial_eigenpairs
from .eigen_loss import EigenLossModule

Matrix = Tensor | LinearOperator
EXACT_METHODS = ('eigh', 'lobpcg', 'eigsh')


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
    :math:`R` and a detached :math:`A U`, with the analytic gradient with respect to
    :math:`W`: for :math:`G = \partial L / \partial U = 2\,AU\,
    \mathrm{diag}(\partial L / \partial r)` (A symmetric),
    :math:`\partial L / \partial W = (G - U B) R^{-\top}` with
    :math:`B = \mathrm{triu}(U^\top G) + \mathrm{tril}(G^\top U, -1)` (the
    derivative of the QR factorisation when :math:`R` gets no gradient).
    Three :math:`n \times k \times k` products, where autograd through
    :func:`torch.linalg.qr` costs about two QRs: the difference is most of
    the method's overhead over its floor."""

    @staticmethod
    def forward(ctx, W: Tensor, U: Tensor, R: Tensor, AU: Tensor, rayleigh: Tensor) -> Tensor:
        ctx.save_for_backward(U, R, AU)
        return rayleigh.clone()

    @staticmethod
    def backward(ctx, grad_r: Tensor):
        U, R, AU = ctx.saved_tensors
        G = 2 * AU * grad_r
        M = U.T @ G
        B = M.triu() + M.T.tril(-1)
        # R^-1 once ([k, k]) then a product: solving against the tall
        # [n, k] right-hand side directly is several times slower on CPU
        eye = torch.eye(R.size(0), device=R.device, dtype=R.dtype)
        R_inv = torch.linalg.solve_triangular(R, eye, upper=True)
        return torch.addmm(G, U, B, alpha=-1) @ R_inv.T, None, None, None, None


def _square_size(A: Matrix, name: str = 'A') -> int:
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


def _apply(A: Matrix, X: Tensor) -> Tensor:
    return A.matmul(X) if isinstance(A, LinearOperator) else A @ X


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


def _check_complement(null: NullSpace | None, n: int, k: int) -> None:
    if null is None:
        return
    if not isinstance(null, NullSpace):
        raise TypeError(f"null must be a NullSpace, got {type(null).__name__}")
    if null.basis.size(0) != n:
        raise ValueError(f"null has {null.basis.size(0)} nodes but the matrix has {n} rows")
    if k > n - null.dim:
        raise ValueError(f"k={k} exceeds the {n - null.dim} directions left next to the "
                         f"{null.dim}-dimensional component space of a {n}-node graph; "
                         f"lower k")


def _all_finite(x: Tensor) -> bool:
    # one sum instead of an elementwise test: NaN and +-inf all propagate
    return bool(torch.isfinite(x.detach().sum()))


def _check_finite_product(AU: Tensor, name: str) -> None:
    # A U is computed anyway; non-finite entries of A always reach it
    if not _all_finite(AU):
        raise ValueError(f"{name} contains NaN or inf (its product with the basis is not finite)")


def amortized_eigh(
    A: Matrix,
    state: Tensor,
    k: int | None = None,
    largest: bool = True,
    loss: str = 'brockett',
    weights: Tensor | None = None,
    null: NullSpace | None = None,
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

    Returns:
        :obj:`(eigenvalues [k], eigenvectors [n, k], loss)`; add :obj:`loss`
        (times a weight) to the task loss.
    """
    n = _square_size(A)
    _check_state(state, n, k)
    _check_complement(null, n, state.size(1))
    # U, A U and so the gradient (G - U B) R^-T with respect to the projected
    # W already lie in the complement (A commutes with the projection onto its
    # own eigenspace): it is the gradient with respect to the state itself,
    # and only the forward pass pays for the projection
    W = state if null is None else null.project_out(state.detach())
    U, R = signed_qr(W)
    AU = _apply(A, U)
    _check_finite_product(AU, 'A')
    eigenvalues = (U * AU).sum(0)
    rayleigh = _RayleighOfQR.apply(state, U, R, AU.detach(), eigenvalues.detach())
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
    _check_finite_product(MV, 'M')
    S = MV.norm(dim=0)
    U = MV.detach() / S.detach().clamp_min(torch.finfo(S.dtype).tiny)
    MtMV = M.detach().T @ MV.detach()
    rayleigh = _RayleighOfQR.apply(state, V, R, MtMV, (V * MtMV).sum(0))
    return AmortizedSVD(U, S, V, eigen_loss_from_rayleigh(rayleigh, loss, True, weights))


def _scipy_matrix(A: Matrix):
    import scipy.sparse as sp
    from ..operators import GraphOperator
    if isinstance(A, GraphOperator):
        m = A.matrix.detach().cpu()
        return sp.csr_matrix((m.values().double().numpy(), m.col_indices().numpy(),
                              m.crow_indices().numpy()), shape=A.shape)
    return _dense(A).detach().cpu().double().numpy()


def _dense(A: Matrix) -> Tensor:
    if isinstance(A, Tensor):
        return A
    if hasattr(A, 'to_dense'):
        return A.to_dense()
    return A.matmul(torch.eye(A.shape[0], device=A.device, dtype=A.dtype))


def exact_eigh(
    A: Matrix,
    k: int,
    largest: bool = True,
    method: str = 'eigh',
    init: Tensor | None = None,
    null: NullSpace | None = None,
) -> tuple[Tensor, Tensor]:
    r"""Exact top-k (or bottom-k) eigenpairs, for comparison with the
    amortized ones: :obj:`'eigh'` (dense :func:`torch.linalg.eigh`),
    :obj:`'lobpcg'` (:func:`torch.lobpcg` on the sparse matrix, warm-started
    from :obj:`init` :obj:`[n, k]` when given) or :obj:`'eigsh'` (SciPy's
    Lanczos, in float64 on the CPU, relative tolerance 1e-8). Returns
    :obj:`(eigenvalues [k], eigenvectors [n, k])`, ordered from the wanted
    end, with :func:`canonical_signs`. No gradient.

    With :obj:`null` (the component space of a :class:`GraphOperator`
    :obj:`A`, at the wanted end) the :obj:`k` pairs next to it are returned,
    by :func:`~pyg_spectral.solvers.laplacian.nontrivial_eigenpairs`
    (:obj:`'eigh'` or :obj:`'eigsh'`, right on repeated eigenvalues)."""
    n = _square_size(A)
    if method not in EXACT_METHODS:
        raise ValueError(f"method must be one of {EXACT_METHODS}, got {method!r}")
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, {n}], got {k}")
    if null is not None:
        _check_complement(null, n, k)
        if not isinstance(A, GraphOperator):
            raise TypeError("null needs A to be a GraphOperator (its components are read "
                            f"off the graph), got {type(A).__name__}")
        if method == 'lobpcg':
            raise ValueError("method='lobpcg' cannot deflate the component space; use "
                             "'eigh' or 'eigsh'")
        if largest != (COMPONENT_EIGENVALUE.get(A.kind) == 1.0):
            raise ValueError(f"the component space of kind={A.kind!r} is not at the "
                             f"{'top' if largest else 'bottom'} of its spectrum; pass "
                             f"largest={not largest} or null=None")
        vecs, vals = nontrivial_eigenpairs(A, null, k, method)
        return vals, canonical_signs(vecs)
    with torch.no_grad():
        if method == 'lobpcg' and n < 3 * k:
            method = 'eigh'  # torch.lobpcg needs n >= 3k
        if method == 'eigh':
            vals, vecs = torch.linalg.eigh(_dense(A))
            idx = torch.arange(n - 1, n - k - 1, -1) if largest else torch.arange(k)
            vals, vecs = vals[idx.to(vals.device)], vecs[:, idx.to(vals.device)]
        elif method == 'lobpcg':
            mat = A.matrix.to_sparse_coo() if hasattr(A, 'matrix') else _dense(A)
            vals, vecs = torch.lobpcg(mat, k=k, X=init, largest=largest)
        else:
            import scipy.sparse.linalg as sla
            v0 = None if init is None else init[:, 0].detach().cpu().double().numpy()
            mat, which = _scipy_matrix(A), 'LA' if largest else 'SA'
            # tol: ARPACK's default (machine precision) stalls on degenerate
            # clusters; a wider Krylov space is the fallback when it still does
            try:
                w, V = sla.eigsh(mat, k=k, which=which, v0=v0, tol=1e-8)
            except sla.ArpackNoConvergence:
                w, V = sla.eigsh(mat, k=k, which=which, v0=v0, tol=1e-8,
                                 ncv=min(n - 1, max(4 * k, 64)))
            order = np.argsort(-w if largest else w)
            dev, dtype = (A.device, A.dtype)
            vals = torch.as_tensor(w[order], device=dev, dtype=dtype)
            vecs = torch.as_tensor(np.ascontiguousarray(V[:, order]), device=dev, dtype=dtype)
    return vals, canonical_signs(vecs)


class AmortizedEigenbasis(EigenLossModule):
    r"""A learned top-k (or bottom-k) eigenbasis of a symmetric matrix of
    size :obj:`num_nodes`, trained by the model's optimizer through an
    eigen-loss (see the module docstring).

    .. code-block:: python

        basis = AmortizedEigenbasis(num_nodes, k=16)
        U, lam = basis(operator)                      # [n, k], [k]
        loss = task_loss + pyg_spectral.nn.eigen_loss(model)

    Args:
        num_nodes: size :math:`n` of the matrix; :obj:`None` creates :math:`W`
            lazily at the first forward (create the optimizer after it).
        k: number of eigenpairs.
        largest: top-k (:obj:`True`) or bottom-k.
        loss: :obj:`'brockett'` (ordered, default), :obj:`'convex'` or
            :obj:`'trace'` (eigenspace only), see
            :mod:`pyg_spectral.losses.eigen_losses`.
        loss_weight: :math:`\eta`, the weight of the eigen-loss in the total.
            :math:`W` gets no other gradient, so under Adam it only matters
            relative to weight decay.
        weights: Brockett's :math:`N` (:obj:`[k]`), default
            :func:`~pyg_spectral.losses.eigen_losses.brockett_weights`.
        init_scale: standard deviation of the random initial :math:`W`. An
            adaptive optimizer (Adam) moves each entry by about its learning
            rate per step, so this sets the relative step size of the basis.
        exact: solve exactly instead (:func:`exact_eigh`, no parameter, no
            eigen-loss), for comparison; the result is cached per operator.
        method: exact solver, :obj:`'eigh'`, :obj:`'lobpcg'` (warm-started
            from the previous basis) or :obj:`'eigsh'` (CPU); :obj:`None` picks
            :obj:`'eigh'` up to 2048 rows, above it :obj:`'eigsh'` on CPU and
            :obj:`'lobpcg'` elsewhere; next to a component space (a
            :obj:`null` passed to :meth:`forward`) :obj:`'eigh'` up to
            :obj:`DENSE_NODES` rows, above it :obj:`'eigsh'`.
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
        exact: bool = False,
        method: str | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        if num_nodes is not None and k > num_nodes:
            raise ValueError(f"k={k} exceeds num_nodes={num_nodes}")
        if loss not in EIGEN_LOSSES:
            raise ValueError(f"loss must be one of {EIGEN_LOSSES}, got {loss!r}")
        if method is not None and method not in EXACT_METHODS:
            raise ValueError(f"method must be one of {EXACT_METHODS} or None, got {method!r}")
        self.num_nodes, self.k, self.largest, self.loss = num_nodes, k, largest, loss
        self.loss_weight, self.init_scale = float(loss_weight), float(init_scale)
        self.exact, self.method = exact, method
        self.register_buffer('brockett_n', None if weights is None
                             else check_brockett_weights(weights, k).clone(), persistent=False)
        if exact:
            self.register_parameter('weight', None)
        elif num_nodes is None:
            self.weight = UninitializedParameter()
        else:
            self.weight = nn.Parameter(torch.empty(num_nodes, k))
        # the graph this basis diagonalises, set and read by the layers that share it
        self.cached_graph: object | None = None
        self._memo: tuple | None = None
        self._last: AmortizedEigh | None = None
        self._previous: Tensor | None = None
        self._exact_for: Matrix | None = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self._memo = self._last = self._previous = self._exact_for = None
        self.cached_graph = None
        if self.weight is not None and not isinstance(self.weight, UninitializedParameter):
            self._init_weight()

    @torch.no_grad()
    def _init_weight(self) -> None:
        self.weight.normal_(0.0, self.init_scale)

    @torch.no_grad()
    def warm_start(self, basis: Tensor) -> 'AmortizedEigenbasis':
        r"""Sets :math:`W` to :obj:`basis` (:obj:`[n, k]`), e.g. the basis of
        a previous run or of a similar graph, or exact eigenvectors."""
        if self.exact:
            self._previous, self._exact_for = basis.detach().clone(), None
            return self
        if isinstance(self.weight, UninitializedParameter):
            self.weight.materialize(tuple(basis.shape), device=basis.device, dtype=basis.dtype)
            self.num_nodes = basis.size(0)
        _check_state(basis, self.weight.size(0), self.k, 'basis')
        # keep the parameter's scale so that the optimizer's relative step is unchanged
        self.weight.copy_(orthonormal_basis(basis.to(self.weight)) * self.init_scale
                          * math.sqrt(self.weight.size(0)))
        self._memo = None
        return self

    def forward(self, operator: Matrix, null: NullSpace | None = None) -> tuple[Tensor, Tensor]:
        r"""Returns :obj:`(U [n, k], eigenvalues [k])` of :obj:`operator` (a
        symmetric :class:`~pyg_spectral.operators.LinearOperator` or a dense
        symmetric tensor). With :obj:`null`, a known eigenspace at the wanted
        end (:meth:`~pyg_spectral.operators.NullSpace.of_operator`), the
        :obj:`k` eigenpairs next to it, learned in its orthogonal complement.
        Layers sharing this basis on the same operator in one step share one
        computation."""
        n = _square_size(operator, 'operator')
        if self.num_nodes is not None and n != self.num_nodes and not self.exact:
            raise ValueError(f"this AmortizedEigenbasis was built for num_nodes="
                             f"{self.num_nodes}, but the operator has {n} rows; a "
                             f"learned basis is tied to one graph size")
        if self.k > n:
            raise ValueError(f"k={self.k} exceeds the operator size {n}")
        _check_complement(null, n, self.k)
        version = None if self.exact else self._materialize(operator)._version
        key = (version, torch.is_grad_enabled())
        if (self._memo is not None and self._memo[0] is operator and self._memo[1] is null
                and self._memo[2] == key):
            return self._memo[3]
        if self.exact:
            U = self._exact_basis(operator, n, null)
            AU = _apply(operator, U)
            _check_finite_product(AU, 'operator')
            out = (U, (U * AU).sum(0))
        else:
            self._last = amortized_eigh(operator, self.weight, self.k, self.largest,
                                        self.loss, self.brockett_n, null)
            out = (self._last.eigenvectors, self._last.eigenvalues)
        self._memo = (operator, null, key, out)
        return out

    def _materialize(self, operator: Matrix) -> Tensor:
        if isinstance(self.weight, UninitializedParameter):
            self.weight.materialize((operator.shape[0], self.k), device=operator.device,
                                    dtype=operator.dtype)
            self.num_nodes = operator.shape[0]
            self._init_weight()
        return self.weight

    def _exact_basis(self, operator: Matrix, n: int, null: NullSpace | None) -> Tensor:
        # solved once per operator; the previous basis warm-starts lobpcg/eigsh
        if self._exact_for is operator:
            return self._previous
        if null is not None:
            method = self.method or ('eigh' if n <= DENSE_NODES else 'eigsh')
            self._previous = exact_eigh(operator, self.k, self.largest, method, null=null)[1]
            self._exact_for = operator
            return self._previous
        method = self.method or ('eigh' if n <= 2048 else
                                 'eigsh' if operator.device.type == 'cpu' else 'lobpcg')
        init = self._previous if self._previous is not None and self._previous.size(0) == n else None
        self._previous = exact_eigh(operator, self.k, self.largest, method, init)[1]
        self._exact_for = operator
        return self._previous

    def eigen_loss(self, operator: Matrix | None = None) -> Tensor:
        r""":math:`\eta` times the eigen-loss at :obj:`operator`, or at the
        operator of the last forward pass when :obj:`None`. Zero in exact
        mode."""
        if self.exact:
            return torch.zeros((), device=None if self._previous is None else self._previous.device)
        if operator is not None:
            self.forward(operator)
        if self._last is None:
            raise RuntimeError("AmortizedEigenbasis.eigen_loss() needs a forward pass "
                               "first (or an operator argument)")
        return self.loss_weight * self._last.loss

    def __repr__(self) -> str:
        mode = f"exact={self.method or 'auto'}" if self.exact else f'loss={self.loss!r}'
        return (f'{self.__class__.__name__}(num_nodes={self.num_nodes}, k={self.k}, '
                f'largest={self.largest}, {mode})')
