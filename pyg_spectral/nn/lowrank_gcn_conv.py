"""A GCN layer that propagates with a rank-k spectral approximation."""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch_geometric.nn.dense.linear import Linear
from torch_geometric.nn.inits import zeros

from ..operators import GraphOperator
from .amortized import AmortizedEigenbasis

BASES = ('amortized', 'exact')


class LowRankGCNConv(nn.Module):
    r"""The graph convolution

    .. math::
        X' = U \,\mathrm{diag}(\lambda)\, U^\top X \Theta + b,

    where :math:`U \mathrm{diag}(\lambda) U^\top` is the rank-k spectral
    approximation (top-k eigenpairs) of the GCN-normalized adjacency
    :math:`\hat D^{-1/2}(A + I)\hat D^{-1/2}` that :class:`~torch_geometric.nn.conv.GCNConv`
    propagates with. Used like :class:`GCNConv`:
    :obj:`conv(x, edge_index, edge_weight=None)`.

    The eigenpairs come from an :class:`~pyg_spectral.nn.AmortizedEigenbasis`:
    learned along with the model (:obj:`basis='amortized'`, add
    :func:`pyg_spectral.nn.eigen_loss` to the training loss) or solved
    exactly once per graph (:obj:`basis='exact'`). Layers on the same graph
    share one basis by passing the same :class:`AmortizedEigenbasis` object;
    each step then computes it once.

    Args:
        in_channels: size of each input sample.
        out_channels: size of each output sample.
        k: rank of the approximation.
        basis: :obj:`'amortized'`, :obj:`'exact'` or a (shared)
            :class:`AmortizedEigenbasis`.
        cached: cache the normalized adjacency of the first graph seen (on
            the basis, so that layers sharing it share the cache), as
            :class:`GCNConv` caches its normalization; only for transductive
            learning on one graph. A later graph of another size is an error.
        bias: learn an additive bias.
        num_nodes: number of nodes, which sizes the amortized basis; if
            :obj:`None` it is taken from the first call (create the optimizer
            after it).
        **basis_kwargs: passed to :class:`AmortizedEigenbasis` (e.g.
            :obj:`loss`, :obj:`loss_weight`, :obj:`method`).

    Shapes:
        - **input:** node features :obj:`[n, F_in]`, edge indices
          :obj:`[2, E]`, edge weights :obj:`[E]` (optional)
        - **output:** node features :obj:`[n, F_out]`
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        k: int = 16,
        basis: str | AmortizedEigenbasis = 'amortized',
        cached: bool = True,
        bias: bool = True,
        num_nodes: int | None = None,
        **basis_kwargs,
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.cached = in_channels, out_channels, cached
        if isinstance(basis, AmortizedEigenbasis):
            if basis.k != k:
                raise ValueError(f"the shared basis has k={basis.k} but k={k} was passed")
            self._owns_basis = False
        elif basis in BASES:
            basis = AmortizedEigenbasis(num_nodes, k, exact=basis == 'exact', **basis_kwargs)
            self._owns_basis = True
        else:
            raise ValueError(f"basis must be one of {BASES} or an AmortizedEigenbasis, got {basis!r}")
        self.basis = basis
        self.k = k
        self.lin = Linear(in_channels, out_channels, bias=False, weight_initializer='glorot')
        self.bias = nn.Parameter(Tensor(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        r"""Resets the weights and the cached graph; a basis is reset only by
        the layer that created it (a shared basis by its own
        :meth:`reset_parameters`)."""
        self.lin.reset_parameters()
        zeros(self.bias)
        if self._owns_basis:
            self.basis.reset_parameters()
        else:
            self.basis.cached_operator = None

    def operator(self, edge_index: Tensor, num_nodes: int, edge_weight: Tensor | None = None,
                 dtype: torch.dtype = torch.float32) -> GraphOperator:
        r"""The GCN-normalized adjacency this layer approximates (cached when
        :obj:`cached=True`)."""
        op = self.basis.cached_operator if self.cached else None
        if op is None:
            op = GraphOperator.from_edge_index(edge_index, num_nodes, edge_weight, kind='gcn',
                                               dtype=dtype)
            if self.cached:
                self.basis.cached_operator = op
        elif op.shape[0] != num_nodes:
            raise ValueError(f"{self.__class__.__name__} cached the basis of a graph with "
                             f"{op.shape[0]} nodes but got x with {num_nodes} nodes; use "
                             f"cached=False (and basis='exact') for several graphs, or "
                             f"call reset_parameters() to move to a new graph")
        return op

    def forward(self, x: Tensor, edge_index: Tensor, edge_weight: Tensor | None = None) -> Tensor:
        U, lam = self.basis(self.operator(edge_index, x.size(0), edge_weight, x.dtype))
        x = self.lin(x)
        out = U @ (lam.unsqueeze(-1) * (U.transpose(0, 1) @ x))
        if self.bias is not None:
            out = out + self.bias
        return out

    def __repr__(self) -> str:
        kind = 'amortized' if not self.basis.exact else 'exact'
        return (f'{self.__class__.__name__}({self.in_channels}, {self.out_channels}, '
                f'k={self.k}, basis={kind!r})')
