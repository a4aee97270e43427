"""Inductive positional encodings: a GNN trained with NestedLoRA on a family
of graphs maps random node signals to the low end of each graph's Laplacian
spectrum, so that a new graph of the family is encoded without an eigensolve."""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn
from torch_geometric.data import Data
from torch_geometric.nn import ChebConv
from torch_geometric.utils import to_dense_batch
from tqdm.auto import tqdm

from ..losses import NestedLoRA
from ..operators import DerivedOperator, LinearOperator, ShiftedOperator
from .eigensolvers import LaplacianProblem
from .nullspace import DeflatedLaplacian


class PEEncoder(nn.Module):
    r"""A GNN that outputs :obj:`[n, k + oversample]` functions spanning the
    low end of a graph's Laplacian spectrum: a stack of linear
    :class:`~torch_geometric.nn.conv.ChebConv` layers (Chebyshev polynomials of
    the normalised Laplacian, i.e. learned spectral filters) applied to
    :obj:`hidden` channels of Gaussian noise. Filtering noise towards the low
    frequencies is what subspace iteration does; here the filter is learned
    once for a family of graphs (:func:`fit_pe_encoder`) and then applied to
    unseen graphs. :class:`~pyg_spectral.transforms.AddNeuralSVDPE` with
    :obj:`encoder=` turns the output into eigenpairs by one Rayleigh-Ritz step
    per graph (a :obj:`[k', k']` eigenproblem, no eigensolve of the graph).

    Args:
        k: number of non-trivial eigenvectors wanted.
        hidden: number of noise channels and hidden width.
        num_layers: number of Chebyshev layers.
        K: Chebyshev order of each layer (the filter has degree
            :math:`\text{num\_layers} \cdot (K - 1)`).
        oversample: extra output columns (default :obj:`max(2, k // 2)`); the
            Rayleigh-Ritz step keeps the best :obj:`k`.
    """

    def __init__(self, k: int, hidden: int = 32, num_layers: int = 1, K: int = 32,
                 oversample: int | None = None) -> None:
        super().__init__()
        if k <= 0 or hidden <= 0 or num_layers <= 0 or K <= 0:
            raise ValueError("k, hidden, num_layers and K must be positive")
        self.k, self.hidden, self.K = k, hidden, K
        self.out_channels = k + (max(2, k // 2) if oversample is None else oversample)
        widths = [hidden] * num_layers + [self.out_channels]
        self.convs = nn.ModuleList(ChebConv(a, b, K) for a, b in zip(widths[:-1], widths[1:]))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        for conv in self.convs:
            conv.reset_parameters()
            # Glorot per Chebyshev term sums K terms of unit scale; the
            # quartic metric term of NestedLoRA then starts ~1e4 too large
            # and Adam stalls (measured), so start the outputs small
            for p in conv.parameters():
                p.mul_(1.0 / self.K)

    def random_inputs(self, num_nodes: int, generator: torch.Generator | None = None,
                      device: torch.device | None = None) -> Tensor:
        r"""Gaussian node inputs :obj:`[num_nodes, hidden]` (drawn on the CPU,
        so that a seed gives the same inputs on every device)."""
        return torch.randn(num_nodes, self.hidden, generator=generator).to(device)

    def forward(self, x: Tensor, edge_index: Tensor, edge_weight: Tensor | None = None) -> Tensor:
        r""":obj:`x` :obj:`[n, hidden]` node inputs to :obj:`[n, out_channels]`.
        The layers are linear: a polynomial filter keeps the map equivariant
        to the eigenbasis, and non-linearities were not needed."""
        for conv in self.convs:
            x = conv(x, edge_index, edge_weight)
        return x

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(k={self.k}, hidden={self.hidden}, '
                f'num_layers={len(self.convs)}, K={self.K}, out_channels={self.out_channels})')


class LowPassPower(DerivedOperator):
    r""":math:`(I - T / s)^p` for a symmetric operator :obj:`T` with spectrum in
    :math:`[0, s]`: the same eigenvectors, with the low end of the spectrum
    mapped near 1 and the rest towards 0. NestedLoRA on :math:`s I - T`
    sees the smallest eigenvalues of a Laplacian as a cluster just below the
    top (relative gaps of ~1e-3 on a 1000-node mesh) and barely separates
    them; the power spreads them out (the relative gaps grow ~p-fold) at the
    cost of p sparse products per step, taken without autograd."""

    def __init__(self, operator: LinearOperator, power: int) -> None:
        if power < 1:
            raise ValueError(f"power must be a positive integer, got {power}")
        super().__init__(ShiftedOperator(operator, -1.0 / operator.spectral_bounds()[1], 1.0),
                         is_symmetric=True)
        self.power = power

    def matmul(self, X: Tensor) -> Tensor:
        for _ in range(self.power):
            X = self.inner.matmul(X)
        return X

    def spectral_bounds(self) -> tuple[float, float]:
        return 0.0, 1.0


def _features(encoder: PEEncoder, problem: LaplacianProblem, operator: DeflatedLaplacian,
              generator: torch.Generator | None) -> Tensor:
    device = problem.batch.device
    x = encoder.random_inputs(problem.batch.numel(), generator, device)
    weight = problem.edge_weight.to(x.dtype)
    F = encoder(x, problem.edge_index, weight).to(operator.dtype)
    return F - operator.project(F)


def fit_pe_encoder(encoder: PEEncoder, graphs: Sequence[Data], steps: int = 300,
                   lr: float = 3e-3, graphs_per_step: int = 4, normalization: str | None = 'sym',
                   power: int = 16, seed: int = 0, progress: bool = True) -> list[float]:
    r"""Trains :obj:`encoder` with NestedLoRA so that, on every graph of
    :obj:`graphs`, its outputs (with fresh noise inputs at every step) learn
    the :obj:`out_channels` smallest non-trivial Laplacian eigenvectors: the
    loss of a step is the sum over :obj:`graphs_per_step` graphs of the
    NestedLoRA loss on that graph's deflated, shifted Laplacian (one loss per
    graph, so that every graph's own spectrum is learned) with the low end
    spread out by :class:`LowPassPower` (:obj:`power`). Returns the loss
    history."""
    from .add_neuralsvd_pe import AddNeuralSVDPE
    if not graphs:
        raise ValueError("graphs must not be empty")
    device = next(encoder.parameters()).device
    builder = AddNeuralSVDPE(encoder.out_channels, normalization=normalization)
    problems = [builder.problem(d.edge_index.to(device), d.num_nodes, d.get('edge_weight'), None)
                for d in graphs]
    operators = [p.graph_operator(0) for p in problems]
    targets = [LowPassPower(op, power) for op in operators]
    loss_fn = NestedLoRA(encoder.out_channels).to(device)
    optimizer = torch.optim.Adam(encoder.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    history = []
    for _ in tqdm(range(steps), disable=not progress, desc='PEEncoder', leave=False):
        picks = torch.randperm(len(graphs), generator=generator)[:graphs_per_step].tolist()
        loss = 0.0
        for i in picks:
            F = _features(encoder, problems[i], operators[i], generator)
            loss = loss + loss_fn(targets[i].lora_terms(F))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        history.append(loss.item())
        if not math.isfinite(history[-1]):
            raise FloatingPointError(f"NestedLoRA loss became {history[-1]}; lower lr (now {lr})")
    return history


@torch.no_grad()
def encoder_solve(encoder: PEEncoder, problem: LaplacianProblem, vectors: Tensor,
                  values: Tensor, seed: int | None) -> Tensor:
    r"""Writes the encoder's eigenpair estimates (Rayleigh-Ritz on its output
    span, per graph) for the graphs it can encode into :obj:`vectors`
    :obj:`[n, r]` and :obj:`values` :obj:`[G, r]`; returns the :obj:`[G]`
    mask of those graphs (the ones with at least :obj:`2 * out_channels`
    nodes; smaller ones are left to the exact solver)."""
    m = encoder.out_channels
    done = (problem.q > 0) & (problem.sizes() >= 2 * m)
    if not bool(done.any()):
        return done
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    operator = DeflatedLaplacian(problem.laplacian, problem.null, problem.shift)
    F = _features(encoder, problem, operator, generator)
    batch = problem.batch
    dense, mask = to_dense_batch(F, batch)  # [G, nmax, m]
    Q = torch.linalg.qr(dense).Q
    LQ, _ = to_dense_batch(operator.matmul(Q[mask]), batch)
    H = Q.transpose(1, 2) @ LQ
    theta, S = torch.linalg.eigh((H + H.transpose(1, 2)) / 2)
    ritz = (Q @ S)[mask]  # [n, m], ascending Ritz values per graph
    t = min(vectors.size(1), m)
    keep = (torch.arange(t, device=batch.device)[None, :] < problem.q[:, None]) & done[:, None]
    node_keep = keep[batch]
    vectors[:, :t] = torch.where(node_keep, ritz[:, :t], vectors[:, :t])
    values[:, :t] = torch.where(keep, theta[:, :t], values[:, :t])
    return done
