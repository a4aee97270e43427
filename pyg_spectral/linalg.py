"""Small dense linear-algebra conventions shared by solvers and layers."""
import torch
from torch import Tensor


def canonical_signs(U: Tensor, rtol: float = 1e-3) -> Tensor:
    r"""Flips each column of :obj:`U` (:obj:`[n, k]`) so that its first entry
    whose magnitude is within :obj:`rtol` of the column's largest is
    positive: the deterministic sign convention of every basis the library
    returns (NeuralSVD, amortized or exact). Taking the first of near-ties makes it agree across
    solvers when a graph symmetry gives two entries the same magnitude."""
    return U * canonical_sign_vector(U, rtol)


def canonical_sign_vector(U: Tensor, rtol: float = 1e-3) -> Tensor:
    r"""The :obj:`[k]` signs (:math:`\pm 1`) by which :func:`canonical_signs`
    multiplies the columns of :obj:`U`; no gradient."""
    # along rows of a contiguous transpose (a copy unless U is column-major,
    # as LAPACK returns it): reductions over dim 0 of a tall [n, k] tensor,
    # or over a strided transpose, are several times slower on CPU
    U = U.detach()
    mag = U.T.contiguous().abs()
    idx = (mag >= (1 - rtol) * mag.amax(1, keepdim=True)).to(torch.uint8).argmax(1)
    sign = U.gather(0, idx[None])[0].sign()
    return sign + (sign == 0)  # a zero column keeps its sign


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
