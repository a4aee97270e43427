"""Checking a device argument once, where it is given, rather than at the
first tensor moved to it."""
from __future__ import annotations

import torch


def resolve_device(device: torch.device | str, name: str = 'device') -> torch.device:
    r"""Returns :obj:`torch.device(device)`, raising :class:`ValueError` that
    names the argument for a string torch does not parse or for a CUDA device
    on a machine without CUDA."""
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"{name}={device!r} is not a torch device (e.g. 'cpu', 'cuda', "
                         f"'cuda:1')") from err
    if resolved.type == 'cuda':
        if not torch.cuda.is_available():
            raise ValueError(f"{name}={device!r} was asked for, but CUDA is not available on "
                             f"this machine (torch {torch.__version__}); use 'cpu'")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(f"{name}={device!r}: this machine has "
                             f"{torch.cuda.device_count()} CUDA device(s)")
    return resolved
