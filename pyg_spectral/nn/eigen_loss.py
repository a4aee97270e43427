"""The one line a training loop adds: the sum of all auxiliary eigen-losses."""
from __future__ import annotations

import torch
from torch import Tensor, nn


class EigenLossModule(nn.Module):
    r"""Base of modules that carry an auxiliary eigen-loss (e.g. an amortized
    eigenbasis). :meth:`eigen_loss` without arguments refers to the operator
    seen in the module's last forward pass."""

    def eigen_loss(self) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError


def eigen_loss(model: nn.Module) -> Tensor:
    r"""Sums :meth:`EigenLossModule.eigen_loss` over every such module inside
    :obj:`model` (a module shared by several layers counts once). Returns a
    zero scalar when there is none, so it can always be added to the task
    loss."""
    losses = [m.eigen_loss() for m in model.modules() if isinstance(m, EigenLossModule)]
    if not losses:
        param = next(model.parameters(), None)
        return torch.zeros((), device=param.device if param is not None else None)
    return torch.stack(losses).sum()
