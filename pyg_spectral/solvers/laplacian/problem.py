r"""The eigenproblem of the PE transform, built once per graph or batch: the
Laplacian (one CSR matrix, block-diagonal over the graphs), its zero
eigenspace from the connected components, read off that CSR, how many
eigenpairs each graph needs, and each graph's own slice of it for the
solvers that work graph by graph.

The zero eigenvalue repeats once per component, and iterative solvers
silently return part of such a cluster, so it is built, never solved for:
every solver works on :class:`~pyg_spectral.operators.DeflatedLaplacian`,
:math:`L + s P_0`, where the repeated zero has been moved to :math:`s`,
above the spectrum, and returns the smallest :obj:`q[g]` eigenpairs of it.
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.csgraph import reverse_cuthill_mckee
from torch import Tensor
from torch_geometric.utils import cumsum

from ...operators import GraphOperator
from ...operators.graph import check_argument_order
from ...operators.nullspace import DeflatedLaplacian, NullSpace

LAPLACIAN_KINDS = ('sym_laplacian', 'laplacian')


def deflation_shift(upper: float) -> float:
    r"""The weight :math:`s` of the deflation :math:`L + s P_0`: past the
    spectrum's upper bound :obj:`upper` (1 for a graph without edges), so
    that the null space's eigenvalue :math:`s` sorts after every wanted one."""
    return 1.05 * upper or 1.0


class Eigenpairs(NamedTuple):
    r"""What a batched solver returns for some graphs of a :class:`LaplacianProblem`.

    Attributes:
        graphs: :obj:`[G']` the graphs solved, increasing.
        vectors: :obj:`[n', t]` their eigenvectors, one row per node of
            those graphs, in node order; columns past a graph's :obj:`q[g]`
            are zero.
        values: :obj:`[G', t]` the eigenvalues, ascending (0 past :obj:`q[g]`).
    """
    graphs: Tensor
    vectors: Tensor
    values: Tensor


def graph_seed(seed: int | None, g: int) -> int | None:
    r"""The seed of the iterative solvers' start on graph :obj:`g`."""
    return None if seed is None else seed * 1_000_003 + g


def envelope_ratio(matrix: sp.csr_matrix) -> float:
    r"""The envelope (profile) of a symmetric sparse matrix after reverse
    Cuthill-McKee ordering, per stored entry: the fill that a factorization
    confined to the envelope could create, relative to the matrix; linear in
    the entries. It grows like :math:`\sqrt n` on planar meshes
    (RCM bandwidth) and like :math:`n` on graphs that expand well."""
    n = matrix.shape[0]
    if matrix.nnz == 0:
        return 0.0
    position = np.empty(n, dtype=np.int64)
    position[reverse_cuthill_mckee(matrix, symmetric_mode=True)] = np.arange(n)
    counts = np.diff(matrix.indptr)
    leftmost = position.copy()
    rows = counts > 0
    leftmost[rows] = np.minimum(leftmost[rows], np.minimum.reduceat(
        position[matrix.indices], matrix.indptr[:-1][rows]))
    return float((position - leftmost).sum() / matrix.nnz)


class GraphProblem:
    r"""One graph of a :class:`LaplacianProblem`, for the solvers that work
    graph by graph (ARPACK, NeuralSVD). Its operator and SciPy matrix are
    built on first use and kept, so that the policy that picks a solver and
    the solver itself share them.

    Attributes:
        index: the graph's index :math:`g` in the batch.
        q: the number of eigenpairs wanted.
        operator: the graph's deflated Laplacian (on the problem's device).
    """

    def __init__(self, index: int, q: int, operator: DeflatedLaplacian) -> None:
        self.index, self.q, self.operator = index, q, operator

    @property
    def num_nodes(self) -> int:
        return self.operator.shape[0]

    @functools.cached_property
    def scipy_laplacian(self) -> sp.csr_matrix:
        r"""The Laplacian (not deflated) as a float64 SciPy CSR matrix on the CPU."""
        return self.operator.laplacian.to_scipy()

    @functools.cached_property
    def envelope_ratio(self) -> float:
        r""":func:`envelope_ratio` of the Laplacian."""
        return envelope_ratio(self.scipy_laplacian)

    def seed(self, seed: int | None) -> int | None:
        return graph_seed(seed, self.index)


class LaplacianProblem:
    r"""The Laplacian of a graph or of a batch of graphs with what the
    solvers need; build it with :meth:`build`.

    Attributes:
        laplacian: the whole (block-diagonal) Laplacian, float64.
        null: its zero eigenspace.
        batch: :obj:`[n]` graph of every node (sorted).
        ptr: :obj:`[G + 1]` node offsets of the graphs.
        q: :obj:`[G]` number of non-zero eigenpairs wanted per graph.
        shift: :math:`s`, where the zero eigenvalues are moved (above the
            spectrum).
    """

    def __init__(self, laplacian: GraphOperator, null: NullSpace, batch: Tensor, ptr: Tensor,
                 q: Tensor, shift: float) -> None:
        self.laplacian, self.null, self.batch, self.ptr = laplacian, null, batch, ptr
        self.q, self.shift = q, float(shift)
        self._graphs: dict[int, GraphProblem] = {}

    @classmethod
    def build(cls, edge_index: Tensor, edge_weight: Tensor | None = None,
              num_nodes: int | None = None, batch: Tensor | None = None, *, k: int,
              kind: str = 'sym_laplacian', device: torch.device | None = None) -> 'LaplacianProblem':
        r"""The problem of the :obj:`k` smallest non-trivial eigenpairs of
        the Laplacian of a graph or of a batch.

        Args:
            edge_index: :obj:`[2, m]` edges of an undirected graph (a
                directed one raises
                :class:`~pyg_spectral.operators.graph.DirectedGraphError`).
            edge_weight: :obj:`[m]` non-negative weights (default 1).
            num_nodes: the number of nodes (default: from :obj:`edge_index`).
            batch: :obj:`[n]` graph of every node, sorted, as PyG's
                (default: one graph).
            k: the number of eigenpairs after the trivial one, per graph.
            kind: :obj:`'sym_laplacian'` (:math:`I - D^{-1/2} A D^{-1/2}`)
                or :obj:`'laplacian'` (:math:`D - A`).
            device: where to build it (default: that of :obj:`edge_index`).
        """
        if kind not in LAPLACIAN_KINDS:
            raise ValueError(f"kind must be one of {LAPLACIAN_KINDS}, got {kind!r}")
        check_argument_order(edge_weight, num_nodes)
        device = edge_index.device if device is None else device
        edge_index = edge_index.to(device)
        if edge_weight is not None:
            edge_weight = edge_weight.to(device)
        laplacian = GraphOperator.from_edge_index(edge_index, edge_weight, num_nodes, kind=kind,
                                                  dtype=torch.float64)
        shift = deflation_shift(laplacian.spectral_bounds()[1])
        n = laplacian.num_nodes
        if batch is None:
            batch = torch.zeros(n, dtype=torch.long, device=device)
            null = NullSpace.of_operator(laplacian, batch, 1)
            # n - 1 non-trivial pairs at most, also for a graph without edges
            count = int(null.count)
            q = min(k - min(max(count - 1, 0), k), n - max(count, 1))
            return cls(laplacian, null, batch, torch.tensor([0, n], device=device),
                       torch.tensor([q], device=device), shift)
        batch = batch.to(device)
        if batch.shape != (n,) or (batch.numel() > 1 and bool((batch[1:] < batch[:-1]).any())):
            raise ValueError(f"batch must be a sorted vector of {n} graph indices")
        G = int(batch[-1]) + 1 if n else 0
        sizes = torch.bincount(batch, minlength=G)
        null = NullSpace.of_operator(laplacian, batch, G)
        zeros = (null.count - 1).clamp(0, k)
        q = torch.minimum(k - zeros, sizes - null.count.clamp_min(1))
        return cls(laplacian, null, batch, cumsum(sizes), q, shift)

    @property
    def num_graphs(self) -> int:
        return self.ptr.numel() - 1

    @functools.cached_property
    def sizes(self) -> Tensor:
        r""":obj:`[G]` the number of nodes of every graph."""
        return self.ptr[1:] - self.ptr[:-1]

    @functools.cached_property
    def operator(self) -> DeflatedLaplacian:
        r"""The deflated Laplacian of the whole batch."""
        return DeflatedLaplacian(self.laplacian, self.null, self.shift)

    def graph(self, g: int) -> GraphProblem:
        r"""Graph :obj:`g` alone (its rows of the CSR matrix and of the null
        space; built once)."""
        if g not in self._graphs:
            self._graphs[g] = GraphProblem(g, int(self.q[g]), self._graph_operator(g))
        return self._graphs[g]

    def _graph_operator(self, g: int) -> DeflatedLaplacian:
        if self.num_graphs == 1:
            return self.operator
        a, b = int(self.ptr[g]), int(self.ptr[g + 1])
        M = self.laplacian.matrix
        crow = M.crow_indices()[a:b + 1]
        lo, hi = int(crow[0]), int(crow[-1])
        sub = torch.sparse_csr_tensor(crow - lo, M.col_indices()[lo:hi] - a, M.values()[lo:hi],
                                      size=(b - a, b - a))
        degree = None if self.laplacian.degree is None else self.laplacian.degree[a:b]
        op = GraphOperator(sub, self.laplacian.kind, self.laplacian.spectral_bounds(), degree)
        n = self.null
        comps, labels = torch.unique(n.labels[a:b], return_inverse=True)
        null = NullSpace(labels, torch.zeros_like(comps), n.rank[comps], n.basis[a:b],
                         n.sqrt_mass[a:b], n.volume[comps], n.count[g:g + 1])
        return DeflatedLaplacian(op, null, self.shift)
