r"""Exact eigenpairs of a symmetric matrix or operator, for the exact bases
of the low-rank layers and for comparison with learned ones: dense
:func:`torch.linalg.eigh`, :func:`torch.lobpcg`, SciPy's Lanczos, and next to
a graph's component space the PE transform's deflated solvers."""
from __future__ import annotations

import numpy as np
import scipy.sparse.linalg as sla
import torch
from torch import Tensor

from ..linalg import canonical_signs
from ..operators import COMPONENT_EIGENVALUE, GraphOperator, NullSpace
from ..operators.base import Matrix, square_size, to_dense
from ..operators.nullspace import check_complement
from .laplacian import check_method, nontrivial_eigenpairs

EXACT_METHODS = ('eigh', 'lobpcg', 'arpack')


@torch.no_grad()
def exact_eigh(
    A: Matrix,
    k: int,
    largest: bool = True,
    method: str = 'eigh',
    init: Tensor | None = None,
    null: NullSpace | None = None,
) -> tuple[Tensor, Tensor]:
    r"""Exact top-k (or bottom-k) eigenpairs of a symmetric :obj:`A` (a
    dense tensor or a :class:`~pyg_spectral.operators.LinearOperator`).

    Args:
        A: the matrix :obj:`[n, n]`.
        k: number of eigenpairs.
        largest: the top (:obj:`True`) or bottom :obj:`k`.
        method: :obj:`'eigh'` (dense :func:`torch.linalg.eigh`),
            :obj:`'lobpcg'` (:func:`torch.lobpcg` on the sparse matrix,
            warm-started from :obj:`init` :obj:`[n, k]` when given) or
            :obj:`'arpack'` (SciPy's :func:`~scipy.sparse.linalg.eigsh`,
            in float64 on the CPU, relative tolerance 1e-8; at the component
            end of a :class:`GraphOperator`, the component space in closed
            form and the pairs after it by :obj:`null`'s solvers, since plain
            Lanczos can return converged pairs that skip a clustered one).
        init: warm start of :obj:`'lobpcg'`, or of :obj:`'arpack'` (its
            first column).
        null: the component space of a :class:`GraphOperator` :obj:`A`, at
            the wanted end: the :obj:`k` pairs next to it are returned, by
            :func:`~pyg_spectral.solvers.laplacian.nontrivial_eigenpairs`
            (:obj:`'eigh'` or :obj:`'arpack'`, right on repeated eigenvalues).

    Returns:
        :obj:`(eigenvalues [k], eigenvectors [n, k])`, ordered from the
        wanted end, with :func:`~pyg_spectral.linalg.canonical_signs`. No
        gradient.
    """
    n = square_size(A)
    check_method(method, EXACT_METHODS)
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, {n}], got {k}")
    if null is not None:
        check_complement(null, n, k)
        if not isinstance(A, GraphOperator):
            raise TypeError("null needs A to be a GraphOperator (its components are read "
                            f"off the graph), got {type(A).__name__}")
        if method == 'lobpcg':
            raise ValueError("method='lobpcg' cannot deflate the component space; use "
                             "'eigh' or 'arpack'")
        if largest != (COMPONENT_EIGENVALUE.get(A.kind) == 1.0):
            raise ValueError(f"the component space of kind={A.kind!r} is not at the "
                             f"{'top' if largest else 'bottom'} of its spectrum; pass "
                             f"largest={not largest} or null=None")
        vecs, vals = nontrivial_eigenpairs(A, null, k, method)
        return vals, canonical_signs(vecs)
    if method == 'arpack' and isinstance(A, GraphOperator) and \
            largest == (COMPONENT_EIGENVALUE.get(A.kind) == 1.0):
        return _with_components(A, k)
    if method == 'lobpcg' and n < 3 * k:
        method = 'eigh'  # torch.lobpcg needs n >= 3k
    if method == 'eigh':
        vals, vecs = torch.linalg.eigh(to_dense(A))
        idx = torch.arange(n - 1, n - k - 1, -1) if largest else torch.arange(k)
        vals, vecs = vals[idx.to(vals.device)], vecs[:, idx.to(vals.device)]
    elif method == 'lobpcg':
        mat = A.matrix.to_sparse_coo() if hasattr(A, 'matrix') else to_dense(A)
        vals, vecs = torch.lobpcg(mat, k=k, X=init, largest=largest)
    else:
        v0 = None if init is None else init[:, 0].detach().cpu().double().numpy()
        mat = A.to_scipy() if isinstance(A, GraphOperator) else \
            to_dense(A).detach().cpu().double().numpy()
        which = 'LA' if largest else 'SA'
        # tol: ARPACK's default (machine precision) stalls on degenerate
        # clusters; a wider Krylov space is the fallback when it still does
        try:
            w, V = sla.eigsh(mat, k=k, which=which, v0=v0, tol=1e-8)
        except sla.ArpackNoConvergence:
            w, V = sla.eigsh(mat, k=k, which=which, v0=v0, tol=1e-8,
                             ncv=min(n - 1, max(4 * k, 64)))
        order = np.argsort(-w if largest else w)
        vals = torch.as_tensor(w[order], device=A.device, dtype=A.dtype)
        vecs = torch.as_tensor(np.ascontiguousarray(V[:, order]), device=A.device,
                               dtype=A.dtype)
    return vals, canonical_signs(vecs)


def _with_components(A: GraphOperator, k: int) -> tuple[Tensor, Tensor]:
    r"""The :obj:`k` pairs at the component end of a graph matrix: the
    component space in closed form, then the pairs after it from
    :func:`nontrivial_eigenpairs`. Plain Lanczos there converges Ritz pairs,
    not the right ones: on an 80-node path's Laplacian (k = 4 smallest)
    SciPy's eigsh returned four converged pairs without the zero eigenvalue
    in 6 of 20 calls."""
    null = NullSpace.of_operator(A)
    B = null.vectors(A.dtype)[:, :k]
    value = torch.full((B.size(1),), COMPONENT_EIGENVALUE[A.kind], device=A.device,
                       dtype=A.dtype)
    if B.size(1) < k:
        vecs, vals = nontrivial_eigenpairs(A, null, k - B.size(1), 'arpack')
        B, value = torch.cat([B, vecs], 1), torch.cat([value, vals])
    return value, canonical_signs(B)
