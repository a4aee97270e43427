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
    mag = U.detach().T.contiguous().abs()
    idx = (mag >= (1 - rtol) * mag.amax(1, keepdim=True)).to(torch.uint8).argmax(1)
    sign = U.detach().gather(0, idx[None])[0].sign()
    return torch.where(sign == 0, torch.ones_like(sign), sign)
