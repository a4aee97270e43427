"""A GCN layer that propagates with a rank-k spectral approximation."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch_geometric.nn.dense.linear import Linear
from torch_geometric.nn.inits import zeros

from ..operators import GraphOperator, NullSpace
from ..operators.graph import check_argument_order
from .amortized import AmortizedEigenbasis
from .eigenbasis import Eigenbasis, ExactEigenbasis

BASES = ('amortized', 'exact')


@dataclass
class _Graph:
    r"""The GCN matrix of one graph and its component space, with what
    identifies the graph it was built from."""
    edge_index: Tensor
    edge_weight: Tensor | None
    versions: tuple[int, int | None]
    num_nodes: int
    dtype: torch.dtype
    operator: GraphOperator
    null: NullSpace | None

    @staticmethod
    def _versions(edge_index: Tensor, edge_weight: Tensor | None) -> tuple[int, int | None]:
        return edge_index._version, None if edge_weight is None else edge_weight._version

    def is_built_from(self, edge_index: Tensor, edge_weight: Tensor | None, num_nodes: int,
                      dtype: torch.dtype) -> bool:
        r"""The same tensors, not modified in place since (no content check)."""
        return (self.edge_index is edge_index and self.edge_weight is edge_weight
                and self.versions == self._versions(edge_index, edge_weight)
                and self.num_nodes == num_nodes and self.dtype == dtype)

    def has_content_of(self, edge_index: Tensor, edge_weight: Tensor | None, num_nodes: int,
                       dtype: torch.dtype) -> bool:
        r"""Other tensors holding the same graph (a linear-time comparison,
        cheaper than building the matrix, which sorts)."""
        if self.num_nodes != num_nodes or self.dtype != dtype:
            return False
        if self.edge_index.shape != edge_index.shape or not torch.equal(self.edge_index, edge_index):
            return False
        if (self.edge_weight is None) != (edge_weight is None):
            return False
        return edge_weight is None or torch.equal(self.edge_weight, edge_weight)


class LowRankGCNConv(nn.Module):
    r"""The graph convolution on a rank-k spectral approximation of the GCN
    matrix :math:`\hat A = \hat D^{-1/2}(A + I)\hat D^{-1/2}` (the matrix
    :class:`~torch_geometric.nn.conv.GCNConv` propagates with), after
    `"Amortized Eigendecomposition for Neural Networks"
    <https://neurips.cc/virtual/2024/poster/95360>`_ (Li, Shi, Zhao, Lin,
    NeurIPS 2024):

    .. math::
        X' = \Big(g(1)\, P_C + U \,\mathrm{diag}\big(g(\lambda)\big)\, U^\top\Big)
        X \Theta + X \Theta_{\mathrm{root}} + b.

    The top eigenvalue 1 of :math:`\hat A` repeats once per connected
    component, with the eigenvectors :math:`\hat D^{1/2} 1_C` known in closed
    form; :math:`P_C` is the projection onto them (built once per graph in
    :math:`O(n + m)`, :meth:`~pyg_spectral.operators.NullSpace.of_operator`).
    :math:`U` (:obj:`[n, k]`) and :math:`\lambda` are the :obj:`k` eigenpairs
    that follow, so that :obj:`k` counts learned directions, however many
    components the graph has (Cora: 78, CiteSeer: 438). With
    :obj:`components=False` the layer uses the plain top-k of :math:`\hat A`
    as in the paper (on a graph of more than :obj:`k` components these are
    only component indicators). :math:`g` is the identity unless
    :obj:`response_degree` asks for a learned polynomial response.

    The eigenpairs come from an eigenbasis: an
    :class:`~pyg_spectral.nn.AmortizedEigenbasis`, learned along with the
    model (:obj:`basis='amortized'`, add :func:`pyg_spectral.nn.eigen_loss`
    to the training loss), or an :class:`~pyg_spectral.nn.ExactEigenbasis`,
    solved once per graph (:obj:`basis='exact'`; a solver that is right on
    repeated eigenvalues). Layers on the same graph share one basis by passing
    the same basis object; each step then computes it once, and builds the
    graph's matrix once.

    Args:
        in_channels (int): size of each input sample.
        out_channels (int): size of each output sample.
        k (int, optional): number of eigenpairs learned next to the component
            space (default: :obj:`16`); at most :math:`n - c` for a graph of
            :math:`c` components.
        basis (str or Eigenbasis, optional): :obj:`'amortized'`,
            :obj:`'exact'` or a (shared) :class:`AmortizedEigenbasis` or
            :class:`ExactEigenbasis` (default: :obj:`'amortized'`).
        components (bool, optional): propagate the component space in closed
            form and learn the :obj:`k` eigenpairs after it (default:
            :obj:`True`); :obj:`False` is the paper's plain top-k.
        root_weight (bool, optional): add the transformed root node features
            :math:`X \Theta_{\mathrm{root}}`, as
            :class:`~torch_geometric.nn.conv.GraphConv` does (default:
            :obj:`False`).
        response_degree (int, optional): learn the spectral response
            :math:`g(\lambda) = \sum_{j \le d} \theta_j \lambda^j` of degree
            :math:`d`, initialised to :math:`g(\lambda) = \lambda`.
            (default: :obj:`None`: :math:`g(\lambda) = \lambda`, fixed)
        cached (bool, optional): also reuse the matrix of the last graph when
            a call passes *other* tensors holding the same graph (checked by a
            linear-time comparison); as in :class:`GCNConv`, for one fixed
            graph. Either way the same :obj:`edge_index`/:obj:`edge_weight`
            tensors, unmodified, reuse it, and a changed graph is rebuilt,
            never ignored (default: :obj:`False`).
        bias (bool, optional): learn an additive bias (default: :obj:`True`).
        num_nodes (int, optional): number of nodes, which sizes the amortized
            basis. (default: :obj:`None`: taken from the first call; create
            the optimizer after it)
        **basis_kwargs (optional): passed to the basis the layer creates:
            :class:`AmortizedEigenbasis` (e.g. :obj:`loss`,
            :obj:`loss_weight`; its :obj:`canonical_signs` is :obj:`False`
            unless passed, as the layer's output does not depend on them) or
            :class:`ExactEigenbasis` (:obj:`method`).

    Shapes:
        - **input:** node features :math:`(|\mathcal{V}|, F_{in})`, edge
          indices :math:`(2, |\mathcal{E}|)`, edge weights
          :math:`(|\mathcal{E}|)` *(optional)*
        - **output:** node features :math:`(|\mathcal{V}|, F_{out})`
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        k: int = 16,
        basis: str | Eigenbasis = 'amortized',
        components: bool = True,
        root_weight: bool = False,
        response_degree: int | None = None,
        cached: bool = False,
        bias: bool = True,
        num_nodes: int | None = None,
        **basis_kwargs,
    ) -> None:
        super().__init__()
        if response_degree is not None and (not isinstance(response_degree, int)
                                            or isinstance(response_degree, bool)
                                            or response_degree < 0):
            raise ValueError(f"response_degree must be None or a non-negative integer, "
                             f"got {response_degree!r}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.components, self.cached = bool(components), bool(cached)
        self.response_degree = response_degree
        if isinstance(basis, Eigenbasis):
            if basis.k != k:
                raise ValueError(f"the shared basis has k={basis.k} but k={k} was passed")
            self._owns_basis = False
        elif basis == 'exact':
            basis = ExactEigenbasis(num_nodes, k, **basis_kwargs)
            self._owns_basis = True
        elif basis == 'amortized':
            # the propagation U diag(g) U^T does not depend on the signs of U
            basis = AmortizedEigenbasis(num_nodes, k, **{'canonical_signs': False,
                                                         **basis_kwargs})
            self._owns_basis = True
        else:
            raise ValueError(f"basis must be one of {BASES} or an Eigenbasis (e.g. a shared "
                             f"AmortizedEigenbasis), got {basis!r}")
        if not basis.largest:
            raise ValueError("the basis must learn the largest eigenpairs (largest=True)")
        self.basis = basis
        self.k = k
        self.lin = Linear(in_channels, out_channels, bias=False, weight_initializer='glorot')
        self.lin_root = Linear(in_channels, out_channels, bias=False,
                               weight_initializer='glorot') if root_weight else None
        self.response = nn.Parameter(torch.empty(response_degree + 1)) \
            if response_degree is not None else None
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        r"""Resets the weights; a basis (and the graph cached on it) is reset
        only by the layer that created it (a shared basis by its own
        :meth:`reset_parameters`)."""
        self.lin.reset_parameters()
        if self.lin_root is not None:
            self.lin_root.reset_parameters()
        if self.response is not None:
            with torch.no_grad():
                self.response.zero_()
                if self.response.numel() > 1:
                    self.response[1] = 1.0
        zeros(self.bias)
        if self._owns_basis:
            self.basis.reset_parameters()

    def graph(self, edge_index: Tensor, edge_weight: Tensor | None = None,
              num_nodes: int | None = None,
              dtype: torch.dtype = torch.float32) -> tuple[GraphOperator, NullSpace | None]:
        r"""The GCN matrix this layer approximates and its component space
        (:obj:`None` with :obj:`components=False`), built once per graph and
        kept on the basis for the layers that share it.

        Args:
            edge_index (torch.Tensor): :obj:`[2, m]` edges of an undirected graph.
            edge_weight (torch.Tensor, optional): :obj:`[m]` non-negative
                weights. (default: :obj:`None`: all 1)
            num_nodes (int, optional): the number of nodes. (default:
                :obj:`None`: one more than the largest index in :obj:`edge_index`)
            dtype (torch.dtype, optional): of the matrix. (default: :obj:`torch.float32`)
        """
        check_argument_order(edge_weight, num_nodes)
        if num_nodes is None:
            num_nodes = int(edge_index.max()) + 1 if edge_index.numel() else 0
        cache = self.basis.cached_graph
        if cache is not None and (cache.is_built_from(edge_index, edge_weight, num_nodes, dtype)
                                  or self.cached and cache.has_content_of(
                                      edge_index, edge_weight, num_nodes, dtype)):
            if self.components and cache.null is None:
                cache.null = NullSpace.of_operator(cache.operator)
            return cache.operator, cache.null if self.components else None
        op = GraphOperator.from_edge_index(edge_index, edge_weight, num_nodes, kind='gcn',
                                           dtype=dtype)
        null = NullSpace.of_operator(op) if self.components else None
        self.basis.cached_graph = _Graph(edge_index, edge_weight,
                                         _Graph._versions(edge_index, edge_weight), num_nodes,
                                         dtype, op, null)
        return op, null

    def spectral_response(self, lam: Tensor) -> Tensor:
        r""":math:`g(\lambda)` for eigenvalues :obj:`lam` :obj:`[k]`."""
        if self.response is None:
            return lam
        powers = lam.unsqueeze(-1) ** torch.arange(self.response.numel(), device=lam.device)
        return powers @ self.response.to(lam.dtype)

    def forward(self, x: Tensor, edge_index: Tensor, edge_weight: Tensor | None = None) -> Tensor:
        op, null = self.graph(edge_index, edge_weight, x.size(0), x.dtype)
        U, lam = self.basis(op, null)
        h = self.lin(x)
        out = U @ (self.spectral_response(lam).unsqueeze(-1) * (U.transpose(0, 1) @ h))
        if null is not None:  # eigenvalue 1 on the component space
            projected = null.project(h)
            out = out + (projected if self.response is None
                         else self.spectral_response(lam.new_ones(1)) * projected)
        if self.lin_root is not None:
            out = out + self.lin_root(x)
        if self.bias is not None:
            out = out + self.bias
        return out

    def __repr__(self) -> str:
        kind = 'exact' if isinstance(self.basis, ExactEigenbasis) else 'amortized'
        extra = '' if self.components else ', components=False'
        extra += ', root_weight=True' if self.lin_root is not None else ''
        extra += f', response_degree={self.response_degree}' if self.response is not None else ''
        return (f'{self.__class__.__name__}({self.in_channels}, {self.out_channels}, '
                f'k={self.k}, basis={kind!r}{extra})')
