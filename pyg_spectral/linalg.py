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
# Up to this many entries a CPU block's signs are found in NumPy
SMALL_NUMPY = 1 << 14


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
    if U.device.type == 'cpu' and U.dtype == torch.float64 and 0 < U.numel() <= SMALL_NUMPY:
        # the same comparisons in NumPy, whose calls cost less on a small
        # block (a transform applied graph by graph pays them on every graph)
        V = U.numpy()
        mag = np.abs(V)
        idx = np.argmax(mag >= (1 - rtol) * mag.max(0), axis=0)
        sign = np.sign(V[idx, np.arange(V.shape[1])])
        sign = torch.from_numpy(sign + (sign == 0))
        return sign if batch is None else sign[None]
    # along rows of a contiguous transpose (a copy unless U is column-major,
    # as LAPACK returns it): reductions over dim 0 of a tall [n, k] tensor,
    # or over a strided transpose, are several times slower on CPU
    mag = U.T.contiguous().abs()
    idx = (mag >= (1 - rtol) * mag.amax(1, keepdim=True)).to(torch.uint8).argmax(1)
    sign = U.gather(0, idx[None])[0].sign()
    sign = sign + (sign == 0)
    return sign if batch is None else sign[None]


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


def signed_qr(W: Tensor) -> tuple[Tensor, Tensor]:
    r"""Reduced :math:`W = U R` with :func:`canonical_signs` applied to
    :math:`U` (:obj:`[n, k]`, row-major) and to the rows of :math:`R`
    (:obj:`[k, k]`, upper triangular); no gradient.

    Cholesky-QR twice (each pass: a Gram matrix, a [k, k] Cholesky factor
    and one product), which is orthonormal to working precision while
    :math:`\mathrm{cond}(W)^2 \epsilon < 1`, and cheaper on a CPU than
    LAPACK's Householder QR, whose column-major :math:`Q` also has to
    be copied to row-major for the products that follow. Householder QR is
    the fallback when a Gram matrix is not numerically positive definite."""
    W = W.detach()
    U, R = W, None
    for _ in range(2):
        L, info = torch.linalg.cholesky_ex(U.T @ U)
        if bool(info):
            Q, R = torch.linalg.qr(W)
            U = Q.contiguous()
            break
        step = L.T
        eye = torch.eye(step.size(0), device=W.device, dtype=W.dtype)
        U = U @ torch.linalg.solve_triangular(step, eye, upper=True)
        R = step if R is None else step @ R
    sign = canonical_sign_vector(U)
    return U * sign, R * sign[:, None]
