"""Small dense linear-algebra conventions shared by solvers and layers."""
import numpy as np
import torch
from torch import Tensor
from torch_geometric.utils import scatter


# Entries within this relative distance of a column's largest magnitude are
# ties for the sign convention. A graph symmetry gives two entries the same
# magnitude, which iterative solvers return only to their accuracy: at 1e-6
# NeuralSVD and the dense solver disagreed on the signs of such columns of
# paths and grids, at 1e-3 they agree.
SIGN_RTOL = 1e-3


def canonical_signs(U: Tensor, rtol: float = SIGN_RTOL, batch: Tensor | None = None,
                    num_graphs: int | None = None) -> Tensor:
    r"""Flips each column of :obj:`U` (:obj:`[n, k]`), or each column of
    each graph's rows, so that its first entry whose magnitude is within
    :obj:`rtol` of the largest is positive: the deterministic sign
    convention of every basis the library returns (PE transform, NeuralSVD,
    amortized or exact). Taking the first of near-ties makes it agree across
    solvers when a graph symmetry gives two entries the same magnitude.

    Args:
        U: :obj:`[n, k]` columns.
        rtol: relative tolerance of a tie.
        batch: :obj:`[n]` graph of every row (sorted), to fix the signs per
            graph; :obj:`None`: one set of rows.
        num_graphs: the number of graphs in :obj:`batch`.
    """
    sign = canonical_sign_vector(U, rtol, batch, num_graphs)
    return U * (sign if batch is None else sign[batch])


def canonical_sign_vector(U: Tensor, rtol: float = SIGN_RTOL, batch: Tensor | None = None,
                          num_graphs: int | None = None) -> Tensor:
    r"""The signs (:math:`\pm 1`) by which :func:`canonical_signs` multiplies
    the columns of :obj:`U`: :obj:`[k]`, or :obj:`[G, k]` with :obj:`batch`;
    no gradient. A zero column keeps its sign."""
    U = U.detach()
    if batch is not None and num_graphs != 1:
        n = U.size(0)
        mag = U.abs()
        top = scatter(mag, batch, 0, dim_size=num_graphs, reduce='max')
        index = torch.arange(n, device=U.device)[:, None].expand_as(U)
        first = torch.where(mag >= (1 - rtol) * top[batch], index, torch.full_like(index, n))
        first = scatter(first, batch, 0, dim_size=num_graphs, reduce='min').clamp_max(n - 1)
        sign = U.gather(0, first).sign()
        return sign + (sign == 0)
    if U.device.type == 'cpu' and U.dtype in (torch.float32, torch.float64) and U.numel():
        sign = _sign_vector_numpy(U, rtol)
    else:
        sign = _sign_vector_torch(U, rtol)
    return sign if batch is None else sign[None]


def _sign_vector_numpy(U: Tensor, rtol: float) -> Tensor:
    # NumPy's calls cost less than torch's on a small block (a transform
    # applied graph by graph pays them on every graph). On a tall block a
    # maximum over dim 0 is several times slower than an elementwise one, in
    # torch and NumPy alike: the column maxima come from halving the rows
    # with elementwise maxima (the middle row of an odd count is in both
    # halves), 0.1 ms instead of 0.85 for [19717, 16] in float32
    V = U.numpy()
    mag = top = np.abs(V)
    while top.shape[0] > 64:
        half = (top.shape[0] + 1) // 2
        top = np.maximum(top[:half], top[top.shape[0] - half:])
    first = np.argmax(mag >= (1 - rtol) * top.max(0), axis=0)
    sign = torch.from_numpy(V[first, np.arange(V.shape[1])]).sign()
    return sign + (sign == 0)


def _sign_vector_torch(U: Tensor, rtol: float) -> Tensor:
    # along rows of a contiguous transpose (a copy unless U is column-major,
    # as LAPACK returns it): reductions over dim 0 of a tall [n, k] tensor,
    # or over a strided transpose, are several times slower
    mag = U.T.contiguous().abs()
    first = (mag >= (1 - rtol) * mag.amax(1, keepdim=True)).to(torch.uint8).argmax(1)
    sign = U.gather(0, first[None])[0].sign()
    return sign + (sign == 0)


def rayleigh_ritz(H: Tensor, gram: Tensor | None = None, descending: bool = False,
                  rcond: float = 1e-10) -> tuple[Tensor, Tensor]:
    r"""Rayleigh-Ritz for a symmetric operator :math:`T` on the span of a
    basis :math:`B` (:obj:`[..., n, m]`), from its projection :obj:`H` =
    :math:`B^\top T B` (:obj:`[..., m, m]`; symmetrised here, so rounding
    does not matter): the Ritz values :obj:`[..., m']` and the coefficients
    :math:`C` (:obj:`[..., m, m']`) of the Ritz vectors :math:`B C`,
    ascending (or :obj:`descending`).

    For an orthonormal :math:`B` (:obj:`gram=None`) this is one
    :func:`torch.linalg.eigh` and :math:`m' = m`. Otherwise :obj:`gram` =
    :math:`B^\top B` (e.g. Monte-Carlo moments) whitens the basis first; its
    directions with an eigenvalue below :obj:`rcond` times the largest
    (a basis that has collapsed) are dropped, so :math:`m' \le m` (no
    batch dimensions then). Raises :class:`FloatingPointError` on NaN or inf
    in :obj:`H`, which LAPACK would report as ill-conditioning."""
    if not torch.isfinite(H).all():
        raise FloatingPointError(
            "Rayleigh-Ritz got NaN or inf values in the operator projected on the vectors; "
            "check the operator (a custom LinearOperator's matmat) and the vectors (init=, "
            "the model) for non-finite values")
    W = None
    if gram is not None:
        W = whitening(gram, rcond)
        H = W.mT @ H @ W
    values, C = torch.linalg.eigh((H + H.mT) / 2)
    if descending:
        values, C = values.flip(-1), C.flip(-1)
    return values, (C if W is None else W @ C)


def whitening(gram: Tensor, rcond: float = 1e-10) -> Tensor:
    r""":math:`W` (:obj:`[m, m']`) with :math:`W^\top G W = I` for a Gram
    matrix :math:`G = B^\top B` (:obj:`[m, m]`), so that :math:`B W` is an
    orthonormal basis of the span of :math:`B`; directions with an
    eigenvalue of :math:`G` below :obj:`rcond` times the largest are
    dropped (:math:`m' \le m`)."""
    e, V = torch.linalg.eigh(gram)
    keep = e > rcond * e.abs().max()
    return V[:, keep] * e[keep].rsqrt()


def signed_qr(W: Tensor, signs: bool = True,
              complement: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
    r"""Reduced :math:`W = U R` with :func:`canonical_signs` applied to
    :math:`U` (:obj:`[n, k]`, row-major) and to the rows of :math:`R`
    (:obj:`[k, k]`, upper triangular); no gradient.

    Cholesky-QR twice (each pass: a Gram matrix, a [k, k] Cholesky factor
    and one product), which is orthonormal to working precision while
    :math:`\mathrm{cond}(W)^2 \epsilon < 1`, and cheaper on a CPU than
    LAPACK's Householder QR, whose column-major :math:`Q` also has to
    be copied to row-major for the products that follow. Householder QR is
    the fallback when a Gram matrix is not numerically positive definite.

    Args:
        W: :obj:`[n, k]`.
        signs: apply the canonical signs; :obj:`False` leaves those of
            Cholesky-QR (a positive diagonal of :math:`R`) and spares a few
            passes over :math:`U`, for a consumer that does not depend on
            them (e.g. :math:`U \Lambda U^\top`).
        complement: :obj:`(B, B^T)`, an orthonormal :obj:`[n, c]` basis
            (dense or sparse CSR) and its transpose: the factors are those
            of :math:`(I - B B^\top) W`, which is not formed: its Gram matrix
            is :math:`W^\top W - C^\top C` with :math:`C = B^\top W`, and the
            first pass's product takes the rank-:math:`c` correction
            :math:`-B\,C R^{-1}` in place.
    """
    W = W.detach()
    C = None if complement is None else complement[1] @ W
    U, R = W, None
    for first in (True, False):
        gram = U.T @ U
        if first and C is not None:
            gram = gram - C.T @ C
        L, info = torch.linalg.cholesky_ex(gram)
        if bool(info):
            Q, R = torch.linalg.qr(W if C is None else torch.addmm(W, complement[0], C, alpha=-1))
            U = Q.contiguous()
            break
        step = L.T
        eye = torch.eye(step.size(0), device=W.device, dtype=W.dtype)
        step_inv = torch.linalg.solve_triangular(step, eye, upper=True)
        U = U @ step_inv
        if first and C is not None:
            U.addmm_(complement[0], C @ step_inv, alpha=-1)
        R = step if R is None else step @ R
    if not signs:
        return U, R
    # U is a product of this call's (or Householder's Q): scaled in place
    sign = canonical_sign_vector(U)
    return U.mul_(sign), R * sign[:, None]
