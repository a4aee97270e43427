r"""The zero eigenspace of a graph Laplacian in closed form, and an operator
that moves it out of the way of an eigensolver.

With :math:`c` connected components the Laplacian's zero eigenvalue repeats
:math:`c` times (isolated nodes do not count for the normalised Laplacian,
whose entry there is 1). Iterative eigensolvers struggle with such a cluster
and silently return only part of it; here it is never solved for: it is
spanned by one known vector per component, :math:`D^{1/2} 1_C` (normalised
Laplacian) or :math:`1_C` (combinatorial), and the solvers work on the
Laplacian with that span shifted above the rest of the spectrum.

The same space is the eigenvalue-1 eigenspace, the top of the spectrum, of
the normalised adjacencies :math:`D^{-1/2} A D^{-1/2} = I - L_{sym}` and
:math:`\hat D^{-1/2}(A + I)\hat D^{-1/2}` (GCN, the normalised Laplacian of
the graph with self-loops), which is why a rank-k spectral layer on a graph
of many components (Cora: 78) sees nothing but component indicators unless it
takes this space apart (:meth:`NullSpace.of_operator`).
"""
from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from scipy.sparse.csgraph import connected_components
from torch import Tensor
from torch_geometric.utils import cumsum, scatter

from .base import DerivedOperator, LinearOperator
from .graph import GraphOperator

class _Projection(torch.autograd.Function):
    r""":math:`B (B^\top X)`; :math:`P = B B^\top` is symmetric, so the
    backward pass is the same product."""

    @staticmethod
    def forward(ctx, X: Tensor, B: Tensor, BT: Tensor) -> Tensor:
        ctx.save_for_backward(B, BT)
        return B @ (BT @ X)

    @staticmethod
    def backward(ctx, grad: Tensor):
        B, BT = ctx.saved_tensors
        return B @ (BT @ grad), None, None


# Up to this many stored entries the components are found by a search in
# Python: SciPy's connected_components costs ~75 us of conversions and checks
# at any size (measured on graphs of 10-40 nodes), a fixed cost that a
# transform applied graph by graph pays on every graph.
PYTHON_SEARCH_ENTRIES = 512

# Up to this many components the projection's products are dense: for a
# PubMed-sized [n, 16] block (coefficients and a rank-c update), c = 1..4
# took 0.05-0.06 ms dense against 0.08 sparse, c = 8 0.09 against 0.08.
DENSE_COMPONENTS = 4


def graph_components(operator: GraphOperator) -> tuple[int, np.ndarray]:
    r"""The connected components of the graph of a symmetric graph matrix
    (an entry stored as 0, an edge of weight 0, joins nothing): their number
    and the :obj:`[n]` label of every node, numbered in the order of their
    first node, as :func:`scipy.sparse.csgraph.connected_components` numbers
    them."""
    M = operator.matrix
    if M._nnz() > PYTHON_SEARCH_ENTRIES:
        adj = operator.to_scipy()
        adj.eliminate_zeros()
        return connected_components(adj, directed=False)
    M = M.detach().cpu()
    c, labels = search_components(M.crow_indices().tolist(), M.col_indices().tolist(),
                                  M.values().tolist())
    return c, np.array(labels, dtype=np.int64)


def search_components(crow: list[int], col: list[int], value: list[float]) -> tuple[int, list[int]]:
    r"""The connected components of a small symmetric matrix given as the
    Python lists of its CSR arrays (an entry stored as 0 joins nothing), by
    a depth-first search: their number and every node's label, numbered in
    the order of their first node."""
    n = len(crow) - 1
    labels, c = [-1] * n, 0
    for start in range(n):
        if labels[start] < 0:
            labels[start], stack = c, [start]
            while stack:
                v = stack.pop()
                for e in range(crow[v], crow[v + 1]):
                    u = col[e]
                    if labels[u] < 0 and value[e] != 0:
                        labels[u] = c
                        stack.append(u)
            c += 1
    return c, labels


# the eigenvalue of the component space of each kind of graph matrix
COMPONENT_EIGENVALUE = {'gcn': 1.0, 'sym_adjacency': 1.0, 'sym_laplacian': 0.0, 'laplacian': 0.0}


@dataclass
class NullSpace:
    r"""The zero eigenspace of the Laplacian of one graph or of a batch
    (equivalently, the eigenvalue-1 eigenspace of a normalised adjacency).

    Attributes:
        labels: :obj:`[n]` connected component of every node.
        graph_of_component: :obj:`[c]` graph (batch entry) of every component.
        rank: :obj:`[c]` position of each zero-eigenvalue component inside its
            graph, largest first (ties: lowest node index); :obj:`-1` for a
            component without a zero eigenvalue (an isolated node under the
            normalised Laplacian).
        basis: :obj:`[n]` value at every node of its component's unit
            zero-eigenvector :math:`\sqrt{m_i / \mathrm{vol}(C)}` (:math:`m_i`
            the degree, or 1 for the combinatorial Laplacian).
        sqrt_mass: :obj:`[n]` :math:`\sqrt{m_i}`.
        volume: :obj:`[c]` :math:`\mathrm{vol}(C) = \sum_{i \in C} m_i`.
        count: :obj:`[G]` number of zero eigenvalues of every graph.
    """
    labels: Tensor
    graph_of_component: Tensor
    rank: Tensor
    basis: Tensor
    sqrt_mass: Tensor
    volume: Tensor
    count: Tensor

    @property
    def num_components(self) -> int:
        return self.volume.numel()

    @functools.cached_property
    def dim(self) -> int:
        r"""The dimension of the space (components with a non-zero volume);
        computed once, as the layers check it every step (a device sync)."""
        return int(self.count.sum())

    @classmethod
    def of_operator(cls, operator: GraphOperator, batch: Tensor | None = None,
                    num_graphs: int = 1) -> 'NullSpace':
        r"""The component space of a symmetric graph matrix, read off its CSR
        structure and the degrees that normalised it, in :math:`O(n + m)`:
        the eigenvalue-1 eigenspace (the top of the spectrum) of
        :obj:`'gcn'` and :obj:`'sym_adjacency'`, the zero eigenspace (the
        bottom) of :obj:`'sym_laplacian'` and :obj:`'laplacian'`
        (:obj:`COMPONENT_EIGENVALUE`).

        Args:
            operator: the graph matrix of one graph or of a batch of graphs
                (block-diagonal).
            batch: :obj:`[n]` graph of every node, sorted (default: one graph).
            num_graphs: the number of graphs in :obj:`batch`.
        """
        if not isinstance(operator, GraphOperator):
            raise TypeError(f"operator must be a GraphOperator, got {type(operator).__name__}")
        if operator.kind not in COMPONENT_EIGENVALUE:
            raise ValueError(f"the components give no eigenvectors of kind={operator.kind!r} "
                             f"in closed form; use one of {tuple(COMPONENT_EIGENVALUE)}")
        M = operator.matrix.detach()
        n = operator.num_nodes
        mass = torch.ones(n, device=M.device, dtype=M.dtype) if operator.kind == 'laplacian' \
            else operator.degree.to(M.dtype)
        if batch is None:
            batch = torch.zeros(n, dtype=torch.long, device=M.device)
        return cls._of_components(*graph_components(operator), mass, batch, num_graphs)

    @classmethod
    def _of_components(cls, c: int, labels: np.ndarray, mass: Tensor, batch: Tensor,
                       num_graphs: int) -> 'NullSpace':
        device, dtype = mass.device, mass.dtype
        num_nodes = mass.numel()
        if c == 1 and num_graphs == 1 and device.type == 'cpu' and dtype == torch.float64 \
                and num_nodes <= PYTHON_SEARCH_ENTRIES and not mass.requires_grad:
            # one small connected graph: fewer calls, each cheap on a few dozen
            # entries (bincount adds in node order, as scatter_add_ does; the
            # square roots stay torch's, whose bits differ from NumPy's)
            volume = np.bincount(np.zeros(num_nodes, dtype=np.int64), weights=mass.numpy(),
                                 minlength=1)
            is_null = int(volume[0] > 0)
            volume = torch.from_numpy(volume)
            sqrt_mass = mass.sqrt()
            basis = sqrt_mass / volume.clamp_min(torch.finfo(dtype).tiny).sqrt()
            labels = torch.from_numpy(labels.astype(np.int64, copy=False))
            return cls(labels, labels[:1], torch.tensor([is_null - 1]), basis, sqrt_mass, volume,
                       torch.tensor([is_null]))
        labels = torch.from_numpy(labels).to(device=device, dtype=torch.long)
        volume = scatter(mass, labels, 0, dim_size=c, reduce='sum')
        sqrt_mass = mass.sqrt()
        basis = sqrt_mass / volume.clamp_min(torch.finfo(dtype).tiny).sqrt()[labels]
        if c == 1 and num_graphs == 1:  # one connected graph: nothing to order
            is_null = volume > 0
            rank = torch.where(is_null, 0, -1)
            return cls(labels, labels[:1], rank, basis, sqrt_mass, volume, is_null.long())
        size = scatter(torch.ones_like(mass), labels, 0, dim_size=c, reduce='sum')
        first = scatter(torch.arange(num_nodes, device=device), labels, 0, dim_size=c, reduce='min')
        graph_of_component = batch[first]

        # order: by graph, zero-eigenvalue components first, larger first, then by first node
        order = np.lexsort((first.cpu().numpy(), -size.cpu().numpy(),
                            (volume <= 0).cpu().numpy(), graph_of_component.cpu().numpy()))
        order = torch.from_numpy(order).to(device)
        is_null = volume > 0
        count = scatter(is_null.long(), graph_of_component, 0, dim_size=num_graphs, reduce='sum')
        start = cumsum(scatter(torch.ones_like(first), graph_of_component, 0,
                               dim_size=num_graphs, reduce='sum'))[:-1]
        rank = torch.empty_like(first)
        rank[order] = torch.arange(c, device=device) - start[graph_of_component[order]]
        rank = torch.where(is_null, rank, torch.full_like(rank, -1))
        return cls(labels, graph_of_component, rank, basis, sqrt_mass, volume, count)

    def project(self, X: Tensor) -> Tensor:
        r""":math:`P_0 X = B (B^\top X)` for :obj:`X` :obj:`[n, k]`, the
        orthogonal projection onto the space, with :math:`B` :obj:`[n, c]` the
        matrix of the unit component vectors (:meth:`basis_matrices`): two
        products, several times faster than a scatter and a gather.
        Differentiable with respect to :obj:`X`; the space itself is a
        constant (no gradient reaches the degrees it was built from, as none
        reaches a solver's eigenvectors)."""
        B, BT = self.basis_matrices(X.dtype)
        return _Projection.apply(X, B, BT)

    def basis_matrices(self, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        r""":obj:`(B [n, c], B^T [c, n])`, the unit component vectors (a
        component without volume gives a zero column), built once per dtype:
        sparse CSR (:math:`n` entries), or dense for at most
        :obj:`DENSE_COMPONENTS` components, where dense products are the
        faster."""
        cached = self.__dict__.get('_matrices')
        if cached is not None and cached[0].dtype == dtype:
            return cached
        n, c, device = self.labels.numel(), self.num_components, self.labels.device
        values = self.basis.detach().to(dtype)
        if c <= DENSE_COMPONENTS:
            B = torch.zeros(n, c, dtype=dtype, device=device)
            B[torch.arange(n, device=device), self.labels] = values
            self.__dict__['_matrices'] = (B, B.T.contiguous())
            return self.__dict__['_matrices']
        with warnings.catch_warnings():
            warnings.filterwarnings('ignore', message='Sparse (CSR tensor support|invariant checks)')
            B = torch.sparse_csr_tensor(torch.arange(n + 1, device=device), self.labels, values,
                                        size=(n, c))
            order = torch.argsort(self.labels, stable=True)
            crow = cumsum(torch.bincount(self.labels, minlength=c))
            BT = torch.sparse_csr_tensor(crow, order, values[order], size=(c, n))
        self.__dict__['_matrices'] = (B, BT)
        return B, BT

    def vectors(self, dtype: torch.dtype = torch.float32) -> Tensor:
        r"""The orthonormal basis :obj:`[n, dim]` of the space, one column per
        component with a zero eigenvalue (dense: for the small number of
        columns an eigensolver's output holds)."""
        B = self.basis_matrices(dtype)[0].to_dense()
        return B[:, self.rank >= 0]

    def project_out(self, X: Tensor) -> Tensor:
        r""":math:`(I - P_0) X` for :obj:`X` :obj:`[n, k]`."""
        if X.requires_grad and torch.is_grad_enabled():
            return X - self.project(X)
        B, BT = self.basis_matrices(X.dtype)
        return torch.addmm(X, B, BT @ X, alpha=-1)  # one pass fewer over X

    def to(self, device=None, dtype=None) -> 'NullSpace':
        def move(t: Tensor) -> Tensor:
            return t.to(device=device, dtype=dtype if t.is_floating_point() else None)
        return NullSpace(*(move(getattr(self, f)) for f in NullSpace.__dataclass_fields__))

    def contrasts(self, k: int, batch: Tensor) -> Tensor:
        r"""An orthonormal basis :obj:`[n, k]` of each graph's zero eigenspace
        minus its trivial vector :math:`\propto \sqrt{m}` (the stationary
        direction of the whole graph): column :math:`j` contrasts the
        :math:`(j+1)`-th largest component with the :math:`j` larger ones
        (positive on the larger ones), a Helmert basis. Columns past a
        graph's :math:`c - 1` contrasts are zero."""
        rank = self.rank[self.labels]  # [n]
        j = torch.arange(1, k + 1, device=rank.device)  # contrast j: rank j vs ranks < j
        # volumes of each graph's components by rank, so that S_j = vol(ranks < j)
        num_graphs = int(self.count.numel())
        by_rank = self.volume.new_zeros(num_graphs, k + 1)
        keep = (self.rank >= 0) & (self.rank <= k)
        by_rank[self.graph_of_component[keep], self.rank[keep]] = self.volume[keep]
        before = torch.cumsum(by_rank, 1)[:, :-1]  # [G, k]: S_j
        own = by_rank[:, 1:]  # [G, k]: vol of rank j
        valid = own > 0
        tiny = torch.finfo(own.dtype).tiny
        norm = (before * (before + own) / own.clamp_min(tiny)).clamp_min(tiny).sqrt()
        g = batch
        inside = (rank[:, None] >= 0) & (rank[:, None] < j[None, :])
        here = rank[:, None] == j[None, :]
        value = torch.where(inside, torch.ones_like(norm[g]),
                            torch.where(here, -before[g] / own[g].clamp_min(tiny),
                                        torch.zeros_like(norm[g])))
        return torch.where(valid[g], value * self.sqrt_mass[:, None] / norm[g],
                           torch.zeros_like(value))


def check_complement(null: NullSpace | None, n: int, k: int) -> None:
    r"""Raises unless :obj:`null` (or :obj:`None`) is a :class:`NullSpace` of
    an :obj:`n`-node graph leaving room for :obj:`k` directions next to it."""
    if null is None:
        return
    if not isinstance(null, NullSpace):
        raise TypeError(f"null must be a NullSpace, got {type(null).__name__}")
    if null.basis.size(0) != n:
        raise ValueError(f"null has {null.basis.size(0)} nodes but the matrix has {n} rows")
    if k > n - null.dim:
        raise ValueError(f"k={k} exceeds the {n - null.dim} directions left next to the "
                         f"{null.dim}-dimensional component space of a {n}-node graph; "
                         f"lower k")


class DeflatedLaplacian(DerivedOperator):
    r""":math:`L + s\,P_0`, with :math:`P_0` the projector onto the Laplacian's
    zero eigenspace (see :class:`NullSpace`): the same eigenvectors, with the
    repeated zero eigenvalue moved to :math:`s` (above the spectrum), so that
    the smallest eigenvalues left are the non-trivial ones, and they are
    the Laplacian's own (:meth:`original_eigenvalues` is the identity).
    Applying :math:`P_0` costs two sparse products: no dense :math:`n \times n`.

    Args:
        laplacian: the graph Laplacian (any finite symmetric operator whose
            zero eigenvectors are those of :obj:`null`).
        null: its zero eigenspace.
        shift: :math:`s`, above the Laplacian's spectral bound.
    """

    def __init__(self, laplacian: LinearOperator, null: NullSpace, shift: float) -> None:
        super().__init__(laplacian, is_symmetric=True)
        self.null, self.shift = null, float(shift)

    @property
    def laplacian(self) -> LinearOperator:
        return self.inner

    def project(self, X: Tensor) -> Tensor:
        r""":math:`P_0 X` for :obj:`X` :obj:`[n, k]`."""
        return self.null.project(X)

    def matmat(self, X: Tensor) -> Tensor:
        return self.laplacian.matmat(X) + self.shift * self.null.project(X)

    def spectral_bounds(self) -> tuple[float, float]:
        return 0.0, max(self.laplacian.spectral_bounds()[1], self.shift)

    def to(self, device=None, dtype=None) -> 'DeflatedLaplacian':
        return DeflatedLaplacian(self.laplacian.to(device, dtype), self.null.to(device, dtype),
                                 self.shift)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.laplacian!r}, '
                f'components={self.null.num_components}, shift={self.shift:g})')
