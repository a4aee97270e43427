"""Graphs with closed-form spectra, for ground-truth tests."""
import math

import torch
from torch_geometric.utils import to_undirected


def path_graph(n: int) -> torch.Tensor:
    return to_undirected(torch.stack([torch.arange(n - 1), torch.arange(1, n)]))


def cycle_graph(n: int) -> torch.Tensor:
    i = torch.arange(n)
    return to_undirected(torch.stack([i, (i + 1) % n]))


def grid_graph(a: int, b: int, periodic: bool = False) -> torch.Tensor:
    idx = torch.arange(a * b).view(a, b)
    right = idx.roll(-1, 1) if periodic else idx[:, 1:]
    down = idx.roll(-1, 0) if periodic else idx[1:, :]
    left = idx if periodic else idx[:, :-1]
    up = idx if periodic else idx[:-1, :]
    edges = torch.cat([torch.stack([left.reshape(-1), right.reshape(-1)]),
                       torch.stack([up.reshape(-1), down.reshape(-1)])], 1)
    return to_undirected(edges)


def path_laplacian_spectrum(n: int) -> torch.Tensor:
    return torch.tensor([2 - 2 * math.cos(math.pi * j / n) for j in range(n)], dtype=torch.float64)


def path_sym_laplacian_spectrum(n: int) -> torch.Tensor:
    return torch.tensor([1 - math.cos(math.pi * j / (n - 1)) for j in range(n)], dtype=torch.float64)


def cycle_laplacian_spectrum(n: int) -> torch.Tensor:
    return torch.tensor(sorted(2 - 2 * math.cos(2 * math.pi * j / n) for j in range(n)),
                        dtype=torch.float64)


def grid_laplacian_spectrum(a: int, b: int, periodic: bool = False) -> torch.Tensor:
    one = cycle_laplacian_spectrum if periodic else path_laplacian_spectrum
    return (one(a)[:, None] + one(b)[None, :]).reshape(-1).sort().values
