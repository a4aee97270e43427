"""Small dense linear-algebra conventions shared by solvers and layers."""
import torch
from torch import Tensor


def canonical_signs(U: Tensor, rtol: float = 1e-3) -> Tensor:
    r"""Flips each column of :obj:`U` (:obj:`[n, k]`) so that its first entry
    whose magnitude is within :obj:`rtol` of the column's largest is
    positive: the deterministic sign convention of every basis the library
    returns (NeuralSVD, amortized or exact). Taking the first of near-ties makes it agree across
    solvers when a graph symmetry gives two entries the same magnitude."""
    # along rows of the transpose: reductions over dim 0 of a tall [n, k]
    # tensor take a slow strided path on CPU
    mag = U.detach().T.abs()
    idx = (mag >= (1 - rtol) * mag.amax(1, keepdim=True)).to(torch.uint8).argmax(1)
    sign = U.detach().gather(0, idx[None]).sign()
    return U * torch.where(sign == 0, torch.ones_like(sign), sign)
