"""The one line a training loop adds (the sum of all auxiliary eigen-losses),
and the parameters those losses train, for an optimizer group of their own."""
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


def eigen_parameters(model: nn.Module) -> list[nn.Parameter]:
    r"""The parameters of every :class:`EigenLossModule` inside :obj:`model`
    (e.g. the :math:`W` of an amortized eigenbasis), each once, for an
    optimizer parameter group of their own.

    An adaptive optimizer such as Adam moves every entry of :math:`W` by about
    its learning rate at each step, whatever the gradient's size, so at a
    constant learning rate the basis keeps jittering around the eigenvectors
    instead of settling (as on PubMed's tightly clustered top eigenvalues);
    decaying that group's learning
    rate lets it converge while the rest of the model keeps its schedule
    (here over a run of ``steps`` optimizer steps):

    .. code-block:: python

        basis = eigen_parameters(model)
        ids = {id(p) for p in basis}
        rest = [p for p in model.parameters() if id(p) not in ids]
        opt = torch.optim.Adam([{'params': rest}, {'params': basis}], lr=0.01)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, [lambda t: 1.0, lambda t: 0.5 * (1 + math.cos(math.pi * t / steps))])
    """
    seen: dict[int, nn.Parameter] = {}
    for module in model.modules():
        if isinstance(module, EigenLossModule):
            for param in module.parameters():
                seen.setdefault(id(param), param)
    return list(seen.values())
