"""Inductive positional encodings: a Chebyshev GNN, its filter fitted with the
LoRA loss to a family of graphs, maps random node signals to the low end of
each graph's Laplacian spectrum, so that a new graph of the family is encoded
without an eigensolve (one Rayleigh-Ritz step on the filtered span)."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch_geometric.data import Data
from torch_geometric.utils import to_dense_batch
from tqdm.auto import tqdm

from ..linalg import rayleigh_ritz
from ..losses import subspace_lora_loss
from ..operators import DerivedOperator, GraphOperator, LinearOperator, ShiftedOperator
from ..operators.nullspace import DeflatedLaplacian
from ..solvers.laplacian import Eigenpairs, LaplacianProblem


def chebyshev_filter(K: int, cutoff: float) -> Tensor:
    r"""Coefficients :obj:`[K]`, in the basis :math:`T_j(x)` of
    :math:`x \in [-1, 1]` (the spectrum :math:`[0, s]` scaled), of the
    filter of Chebyshev-filtered subspace iteration: :math:`T_{K-1}` of the
    stop band :math:`[\text{cutoff} \cdot s, s]` mapped onto
    :math:`[-1, 1]`, divided by its largest coefficient. It stays small on
    the stop band and grows like :math:`\cosh((K - 1)\,\text{acosh}(|y|))`
    below it, the fastest growth of any polynomial of its degree so bounded."""
    if not 0 < cutoff < 1:
        raise ValueError(f"cutoff must lie in (0, 1), got {cutoff}")
    chebyshev = np.polynomial.chebyshev.Chebyshev
    band = chebyshev([-cutoff / (1 - cutoff), 1 / (1 - cutoff)])  # [c, 1] -> [-1, 1]
    coefficients = torch.from_numpy(chebyshev.basis(K - 1)(band).coef)
    return coefficients / coefficients.abs().max()


class PEEncoder(nn.Module):
    r"""A GNN that outputs :obj:`[n, k + oversample]` functions spanning the
    low end of a graph's Laplacian spectrum: a stack of linear Chebyshev
    layers (:math:`\sum_j T_j(\hat L) X W_j` with :math:`\hat L` the
    Laplacian scaled to :math:`[-1, 1]`, the filter of
    :class:`~torch_geometric.nn.conv.ChebConv`) applied to :obj:`hidden`
    channels of Gaussian noise. Filtering noise towards the low frequencies
    is what subspace iteration does; here the filter is fitted once to a
    family of graphs (:func:`fit_pe_encoder`) and then applied to unseen
    graphs. :class:`~pyg_spectral.transforms.AddNeuralSVDPE` with
    :obj:`encoder=` turns the output into eigenpairs by one Rayleigh-Ritz
    step per graph (a :obj:`[k', k']` eigenproblem, no eigensolve of the
    graph).

    Every layer starts as the Chebyshev filter :func:`chebyshev_filter` of
    stop band :math:`[\text{cutoff} \cdot s, s]` times a random mixing of
    the channels (:meth:`reset_parameters`). From random coefficients the
    filters were dominated by high frequencies and training left the span
    far from the eigenvectors; the filter family and one number to fit, where the family's spectrum has
    its gap, is the prior that makes the encoder work.

    The products with :math:`\hat L` are sparse CSR products with the
    Laplacian the transform has already built, not message passing (PyG's
    :obj:`ChebConv` rebuilds the normalisation at every call and gathers and
    scatters every edge, several times slower per product here).

    Args:
        k: number of non-trivial eigenvectors wanted.
        hidden: number of noise channels and hidden width (default
            :obj:`out_channels`: more channels do not widen the span).
        num_layers: number of Chebyshev layers.
        K: Chebyshev order of each layer (the filter has degree
            :math:`\text{num\_layers} \cdot (K - 1)`).
        oversample: extra output columns (default :obj:`max(2, k // 2)`); the
            Rayleigh-Ritz step keeps the best :obj:`k`.
        cutoff: start of the stop band of the initial filter, relative to
            the spectral bound :math:`s` (2 for the normalised Laplacian);
            :func:`fit_pe_encoder` chooses it for the family.
    """

    def __init__(self, k: int, hidden: int | None = None, num_layers: int = 1, K: int = 32,
                 oversample: int | None = None, cutoff: float = 0.1) -> None:
        super().__init__()
        self.out_channels = k + (max(2, k // 2) if oversample is None else oversample)
        hidden = self.out_channels if hidden is None else hidden
        if k <= 0 or hidden <= 0 or num_layers <= 0 or K <= 0:
            raise ValueError("k, hidden, num_layers and K must be positive")
        self.k, self.hidden, self.K, self.cutoff = k, hidden, K, cutoff
        widths = [hidden] * num_layers + [self.out_channels]
        # one weight [out, K * in] per layer: the K terms' W_j side by side
        self.lins = nn.ModuleList(nn.Linear(K * a, b, bias=False)
                                  for a, b in zip(widths[:-1], widths[1:]))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        r"""Sets every layer to :func:`chebyshev_filter` of :attr:`cutoff`
        times a Gaussian mixing of the channels (drawn from
        :obj:`generator`, on the CPU)."""
        coefficients = chebyshev_filter(self.K, self.cutoff)
        for lin in self.lins:
            fan_in = lin.in_features // self.K
            mixing = torch.randn(lin.out_features, fan_in, dtype=torch.float64,
                                 generator=generator) / math.sqrt(fan_in)
            lin.weight.copy_((coefficients[:, None, None] * mixing).permute(1, 0, 2)
                             .reshape(lin.out_features, -1))

    def random_inputs(self, num_nodes: int, generator: torch.Generator | None = None,
                      device: torch.device | None = None) -> Tensor:
        r"""Gaussian node inputs :obj:`[num_nodes, hidden]` (drawn on the CPU,
        so that a seed gives the same inputs on every device)."""
        return torch.randn(num_nodes, self.hidden, generator=generator).to(device)

    def forward(self, x: Tensor, edge_index: Tensor, edge_weight: Tensor | None = None) -> Tensor:
        r""":obj:`x` :obj:`[n, hidden]` node inputs to :obj:`[n, out_channels]`,
        on the symmetric normalised Laplacian of :obj:`edge_index`."""
        laplacian = GraphOperator.from_edge_index(edge_index, edge_weight, x.size(0),
                                                  kind='sym_laplacian', dtype=x.dtype)
        return self.filter(x, laplacian)

    def filter(self, x: Tensor, laplacian: LinearOperator) -> Tensor:
        r""":obj:`x` :obj:`[n, hidden]` to :obj:`[n, out_channels]` on a
        symmetric operator with spectrum in :math:`[0, s]` (its
        :meth:`spectral_bounds`), e.g. a (batched) Laplacian. The layers are
        linear: a polynomial filter keeps the map equivariant to the
        eigenbasis, and non-linearities were not needed."""
        scale = 2.0 / laplacian.spectral_bounds()[1]

        def scaled(X: Tensor) -> Tensor:
            return scale * laplacian.matmat(X) - X
        for lin in self.lins:
            # the terms T_j x are summed as they come: on a batch of graphs
            # all K of them side by side outgrow the caches
            W = lin.weight.view(lin.out_features, self.K, -1)  # [out, K, in]
            previous, term = None, x
            out = term @ W[:, 0].T
            for j in range(1, self.K):
                previous, term = term, (scaled(term) if j == 1 else 2 * scaled(term) - previous)
                out = out + term @ W[:, j].T
            x = out
        return x

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(k={self.k}, hidden={self.hidden}, '
                f'num_layers={len(self.lins)}, K={self.K}, cutoff={self.cutoff:.3g}, '
                f'out_channels={self.out_channels})')


class LowPassPower(DerivedOperator):
    r""":math:`(I - T / s)^p` for a symmetric operator :obj:`T` with spectrum in
    :math:`[0, s]`: the same eigenvectors, with the low end of the spectrum
    mapped near 1 and the rest towards 0. On :math:`s I - T` a LoRA loss
    sees the smallest eigenvalues of a Laplacian as a cluster just below the
    top (relative gaps of ~1e-3 on a 1000-node mesh), barely above the bulk,
    and hardly tells a span that holds them from one that does not; the
    power spreads them out (the relative gaps grow ~p-fold) at the cost of p
    sparse products per evaluation, taken without autograd."""

    def __init__(self, operator: LinearOperator, power: int) -> None:
        if power < 1:
            raise ValueError(f"power must be a positive integer, got {power}")
        super().__init__(ShiftedOperator(operator, -1.0 / operator.spectral_bounds()[1], 1.0),
                         is_symmetric=True)
        self.power = power

    def matmat(self, X: Tensor) -> Tensor:
        for _ in range(self.power):
            X = self.inner.matmat(X)
        return X

    def spectral_bounds(self) -> tuple[float, float]:
        return 0.0, 1.0


def _features(encoder: PEEncoder, laplacian: LinearOperator, operator: DeflatedLaplacian,
              generator: torch.Generator | None) -> Tensor:
    r"""The encoder's output on noise, filtered by :obj:`laplacian` (in the
    encoder's precision), with :obj:`operator`'s zero eigenspace projected out."""
    x = encoder.random_inputs(laplacian.shape[0], generator, laplacian.device)
    F = encoder.filter(x, laplacian).to(operator.dtype)
    return F - operator.project(F)


# candidate stop-band starts for fit_pe_encoder, relative to the spectral
# bound: ~1.4x apart, from a mesh's low end to the middle of the spectrum
CUTOFFS = tuple(np.geomspace(1e-3, 0.5, 19).tolist())


@torch.no_grad()
def fit_pe_encoder(encoder: PEEncoder, graphs: Sequence[Data], normalization: str | None = 'sym',
                   power: int = 16, cutoffs: Sequence[float] = CUTOFFS, seed: int = 0,
                   progress: bool = True) -> list[float]:
    r"""Fits :obj:`encoder` to the family :obj:`graphs`: sets its
    :attr:`~PEEncoder.cutoff` to the one of :obj:`cutoffs` whose filter
    (:meth:`~PEEncoder.reset_parameters`) puts the most of the
    :obj:`out_channels` smallest non-trivial Laplacian eigenvectors of every
    graph into the span of its outputs. The objective on a graph is the LoRA
    loss minimised over the outputs' recombinations
    (:func:`~pyg_spectral.losses.subspace_lora_loss`) on the deflated
    Laplacian with its low end mapped to the top by :class:`LowPassPower`
    (:obj:`power`), summed over the graphs, with the same noise for every
    candidate. The columns cannot be eigenvectors themselves (they filter
    fresh noise), so the loss scores their span; the order that nesting
    would give comes from the Rayleigh-Ritz step at inference. Where the
    family's spectrum has a gap after :obj:`out_channels` eigenvalues, the
    fit finds it.

    Gradient steps on the weights after the fit make the held-out spans
    worse: the filter's suppression of the stop band rests on a
    cancellation between its coefficients that per-weight steps break. So
    the fit is this one-parameter search. Returns the objective of every
    candidate."""
    if not graphs:
        raise ValueError("graphs must not be empty")
    if not cutoffs:
        raise ValueError("cutoffs must not be empty")
    small = [d.num_nodes for d in graphs if d.num_nodes < 2 * encoder.out_channels]
    if small:
        raise ValueError(f"graphs must have at least 2 * out_channels = "
                         f"{2 * encoder.out_channels} nodes, got one of {small[0]}")
    device = next(encoder.parameters()).device
    if normalization not in ('sym', None):
        raise ValueError(f"normalization must be 'sym' or None, got {normalization!r}")
    kind = 'sym_laplacian' if normalization == 'sym' else 'laplacian'
    problems = [LaplacianProblem.build(d.edge_index, d.get('edge_weight'), d.num_nodes,
                                       k=encoder.out_channels, kind=kind, device=device)
                for d in graphs]
    operators = [p.operator for p in problems]
    targets = [LowPassPower(op, power) for op in operators]
    # cast once, not once per candidate: the noise inputs' precision
    laplacians = [p.laplacian.to(dtype=torch.get_default_dtype()) for p in problems]
    scores = []
    for cutoff in tqdm(cutoffs, disable=not progress, desc='PEEncoder cutoff', leave=False):
        encoder.cutoff = cutoff
        encoder.reset_parameters(torch.Generator().manual_seed(seed))
        generator = torch.Generator().manual_seed(seed)
        scores.append(sum(subspace_lora_loss(_features(encoder, laplacian, operator, generator),
                                             target, rank=encoder.k).item()
                          for laplacian, operator, target in zip(laplacians, operators, targets)))
    encoder.cutoff = cutoffs[int(np.argmin(scores))]
    encoder.reset_parameters(torch.Generator().manual_seed(seed))
    return scores


@torch.no_grad()
def encoder_solve(encoder: PEEncoder, problem: LaplacianProblem, seed: int | None) -> Eigenpairs:
    r"""The encoder's eigenpair estimates (Rayleigh-Ritz on its output span,
    per graph) for the graphs of :obj:`problem` it can encode: those with
    pairs to find and at least :obj:`2 * out_channels` nodes (smaller ones
    are left to the exact solver; :obj:`graphs` may be empty)."""
    m = encoder.out_channels
    done = (problem.q > 0) & (problem.sizes >= 2 * m)
    graphs = done.nonzero().view(-1)
    if not graphs.numel():
        basis = problem.null.basis
        return Eigenpairs(graphs, basis.new_zeros(0, 0), basis.new_zeros(0, 0))
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    operator = problem.operator
    F = _features(encoder, problem.laplacian.to(dtype=torch.get_default_dtype()), operator,
                  generator)
    batch = problem.batch
    dense, mask = to_dense_batch(F, batch)  # [G, nmax, m]
    Q = torch.linalg.qr(dense).Q
    LQ, _ = to_dense_batch(operator.matmat(Q[mask]), batch)
    theta, S = rayleigh_ritz(Q.mT @ LQ)
    ritz = (Q @ S)[mask]  # [n, m], ascending Ritz values per graph
    t = min(int(problem.q.max()), m)
    keep = torch.arange(t, device=batch.device)[None, :] < problem.q[:, None]  # [G, t]
    node_done = done[batch]
    vectors = (ritz[:, :t] * keep[batch])[node_done]
    values = (theta[:, :t] * keep)[done]
    return Eigenpairs(graphs, vectors, values)
