"""Sparse graph matrices (adjacency, GCN, Laplacians, random walk) as operators."""
from __future__ import annotations

import numbers
import warnings

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor
from torch_geometric.utils import (add_remaining_self_loops, coalesce, cumsum, index_sort, scatter,
                                   to_torch_csr_tensor)

from .base import LinearOperator

KINDS = ('adjacency', 'gcn', 'sym_adjacency', 'laplacian', 'sym_laplacian', 'rw_adjacency')
SYMMETRIC_KINDS = frozenset(KINDS) - {'rw_adjacency'}
# former names, still accepted with a DeprecationWarning: 'rw' was D^-1 A,
# while PyG's normalization='rw' is the Laplacian I - D^-1 A
RENAMED_KINDS = {'rw': 'rw_adjacency'}


def canonical_kind(kind: str, stacklevel: int = 2) -> str:
    r"""The name in :obj:`KINDS` of :obj:`kind`: itself, or the current name
    of a renamed kind, with a :class:`DeprecationWarning` that gives it
    (:obj:`stacklevel` as in :func:`warnings.warn`, counted from the caller)."""
    if kind in RENAMED_KINDS:
        new = RENAMED_KINDS[kind]
        warnings.warn(f"kind={kind!r} is deprecated; use kind={new!r}, the same matrix "
                      f"D^-1 A under a name that PyG's normalization='rw' (the Laplacian "
                      f"I - D^-1 A) does not share", DeprecationWarning, stacklevel=stacklevel + 1)
        return new
    return kind


class DirectedGraphError(ValueError):
    r"""A symmetric kind of graph matrix was asked of a directed graph."""


def _describe(value: object) -> str:
    if isinstance(value, Tensor):
        return f'a {value.dtype} tensor of shape {tuple(value.shape)}'
    return f'{value!r} ({type(value).__name__})'


def check_argument_order(edge_weight: object, num_nodes: object) -> None:
    r"""Raises :class:`TypeError` where :obj:`edge_weight` and :obj:`num_nodes`
    look swapped: an integer given as :obj:`edge_weight`, or a vector as
    :obj:`num_nodes`. The graph arguments of the package follow
    :mod:`torch_geometric.utils`, :obj:`(edge_index, edge_weight,
    num_nodes)`; a call written for the order :obj:`(edge_index, num_nodes,
    edge_weight)` then fails here rather than building another graph."""
    integer_weight = (isinstance(edge_weight, numbers.Integral) and not isinstance(edge_weight, bool)) \
        or (isinstance(edge_weight, Tensor) and edge_weight.dim() == 0
            and not edge_weight.is_floating_point())
    vector_nodes = isinstance(num_nodes, Tensor) and num_nodes.dim() > 0 and num_nodes.numel() != 1
    if integer_weight or vector_nodes:
        raise TypeError(f"got edge_weight={_describe(edge_weight)} and "
                        f"num_nodes={_describe(num_nodes)}: the graph arguments are "
                        f"(edge_index, edge_weight, num_nodes), in torch_geometric.utils' order; "
                        f"pass them in that order or by keyword (num_nodes=...)")


def validate_graph(edge_index: Tensor, edge_weight: Tensor | None = None,
                   num_nodes: int | None = None) -> int:
    r"""Checks a graph given as PyG gives it and returns its number of nodes,
    raising an error that names the offending argument.

    Args:
        edge_index (torch.Tensor): :obj:`[2, m]` edges, :obj:`torch.long`.
        edge_weight (torch.Tensor, optional): :obj:`[m]` finite floating-point
            weights on the device of :obj:`edge_index`. (default: :obj:`None`)
        num_nodes (int, optional): the number of nodes, larger than every
            index in :obj:`edge_index`. (default: :obj:`None`: one more than
            the largest index)
    """
    check_argument_order(edge_weight, num_nodes)
    if not isinstance(edge_index, Tensor):
        raise TypeError(f"edge_index must be a torch.Tensor, got {type(edge_index).__name__}")
    if edge_index.dtype != torch.long:
        raise TypeError(f"edge_index must have dtype torch.long, got {edge_index.dtype}")
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise ValueError(f"edge_index must have shape [2, num_edges], got {tuple(edge_index.shape)}")
    if num_nodes is None:
        num_nodes = int(edge_index.max()) + 1 if edge_index.numel() else 0
    elif isinstance(num_nodes, Tensor) and num_nodes.numel() == 1 and not num_nodes.is_floating_point():
        num_nodes = int(num_nodes)
    elif isinstance(num_nodes, numbers.Integral) and not isinstance(num_nodes, bool):
        num_nodes = int(num_nodes)  # numpy integers too
    else:
        raise TypeError(f"num_nodes must be an integer, got {num_nodes!r} "
                        f"({type(num_nodes).__name__})")
    if num_nodes <= 0:
        raise ValueError(f"num_nodes must be positive, got {num_nodes}")
    if edge_index.numel():
        low, high = (int(v) for v in torch.aminmax(edge_index))
        if low < 0 or high >= num_nodes:
            raise ValueError(f"edge_index has node indices outside [0, {num_nodes}) "
                             f"(min {low}, max {high}); check num_nodes")
    if edge_weight is not None:
        if not isinstance(edge_weight, Tensor) or not edge_weight.is_floating_point():
            raise TypeError("edge_weight must be a floating-point torch.Tensor")
        if edge_weight.shape != (edge_index.size(1),):
            raise ValueError(f"edge_weight must have shape [{edge_index.size(1)}] "
                             f"(one weight per edge), got {tuple(edge_weight.shape)}")
        if not torch.isfinite(edge_weight).all():
            raise ValueError("edge_weight contains NaN or inf")
        if edge_weight.device != edge_index.device:
            raise ValueError(f"edge_weight is on {edge_weight.device} but edge_index "
                             f"is on {edge_index.device}")
    return num_nodes


def _coalesced(edge_index: Tensor, edge_weight: Tensor, num_nodes: int) -> tuple[Tensor, Tensor]:
    r"""Row-major sorted edges without duplicates (summed). PyG's data is
    usually sorted already; checking that is linear, sorting is not."""
    key = edge_index[0] * num_nodes + edge_index[1]
    if bool((key[1:] > key[:-1]).all()):  # sorted and unique: coalesce would return it as is
        return edge_index, edge_weight
    is_sorted = bool((key[1:] >= key[:-1]).all())
    return coalesce(edge_index, edge_weight, num_nodes, is_sorted=is_sorted)


def _symmetrized(edge_index: Tensor, edge_weight: Tensor,
                 num_nodes: int) -> Tensor | None:
    r"""The weights of coalesced (row-major sorted, unique) edges made exactly
    symmetric, or :obj:`None` if the graph is directed: sorted column-major,
    the transposed list must be the same list, and each weight equal to its
    mirror's up to the rounding of summing duplicate edges in another order
    (1 + 1 + 1e-4 against 1e-4 + 1 + 1). One sort, where
    :func:`torch_geometric.utils.is_undirected` sorts twice."""
    row, col = edge_index
    perm = index_sort(col * num_nodes + row, max_value=num_nodes * num_nodes)[1]
    if not (torch.equal(row[perm], col) and torch.equal(col[perm], row)):
        return None
    mirror = edge_weight[perm]
    if torch.equal(mirror, edge_weight):
        return edge_weight
    slack = 64 * torch.finfo(edge_weight.dtype).eps * torch.maximum(edge_weight.abs(), mirror.abs())
    if not bool(((edge_weight - mirror).abs() <= slack).all()):
        return None
    return (edge_weight + mirror) / 2  # commutative: exactly symmetric


def _laplacian_csr(edge_index: Tensor, off_diagonal: Tensor, diagonal: Tensor,
                   num_nodes: int) -> Tensor:
    r"""CSR matrix of coalesced off-diagonal entries (row-major sorted, no
    self-loops) plus a full diagonal :obj:`[n]`, merged in sorted order
    without a sort: each diagonal entry goes after the entries of its row
    with a smaller column."""
    row, col = edge_index
    n, m, device = num_nodes, row.numel(), row.device
    nodes = torch.arange(n, device=device)
    before = torch.searchsorted(row * n + col, nodes * (n + 1))  # entries before (i, i)
    at = before + nodes
    # an off-diagonal entry moves right by the diagonal entries before it:
    # those of the rows above, and its own row's if it lies right of it
    off = torch.arange(m, device=device) + row + (col > row)
    columns = torch.empty(m + n, dtype=col.dtype, device=device)
    values = torch.empty(m + n, dtype=off_diagonal.dtype, device=device)
    columns[at], values[at] = nodes, diagonal
    columns[off], values[off] = col, off_diagonal
    counts = torch.bincount(row, minlength=n) + 1
    crow = cumsum(counts)
    return torch.sparse_csr_tensor(crow, columns, values, size=(n, n))


# Up to this many edges a Laplacian on the CPU is built in NumPy: on a few
# dozen entries each of torch's ~40 calls costs several times NumPy's, a fixed
# cost that a transform applied graph by graph (a pre_transform) pays on every
# graph (`benchmarks/pe_speed.py --sections pergraph`).
SMALL_GRAPH_EDGES = 4096


def small_laplacian_entries(edge_index: Tensor, edge_weight: Tensor | None, num_nodes: int,
                            kind: str) -> tuple[np.ndarray, ...] | None:
    r"""The entries of the float64 :obj:`'laplacian'` or :obj:`'sym_laplacian'`
    matrix of a small graph on the CPU, in NumPy, with the same operations
    in the same order as the torch route of
    :meth:`GraphOperator.from_edge_index`, hence the same bits:
    :obj:`(row, col, off_diagonal, diagonal, deg, bounds)`, the off-diagonal
    entries in the (row-major sorted) order of :obj:`edge_index`, the
    :obj:`[n]` diagonal and weighted degrees. :obj:`None` where that route
    has work to do that this one leaves to it: unsorted or duplicate edges,
    self-loops, weights that are not exactly symmetric or carry a gradient,
    negative weights and directed graphs (its errors)."""
    if edge_weight is not None and edge_weight.requires_grad:
        return None
    n = num_nodes
    row, col = edge_index.numpy()
    key = row * n + col
    if not (key[1:] > key[:-1]).all() or (row == col).any():
        return None
    perm = np.argsort(col * n + row)  # distinct keys: the one order index_sort gives
    if not (np.array_equal(row[perm], col) and np.array_equal(col[perm], row)):
        return None
    if edge_weight is None:
        weight = np.ones(row.size)
    else:
        weight = edge_weight.numpy()
        if not np.array_equal(weight[perm], weight) or (weight < 0).any():
            return None
    # both add in edge order, as scatter_add_ does
    deg = np.bincount(row, weights=weight, minlength=n)
    if kind == 'laplacian':
        return row, col, -weight, deg, deg, (0.0, 2.0 * float(deg.max()))
    # torch's pow: its bits, not NumPy's (torch's sqrt differs from NumPy's)
    dinv = torch.from_numpy(deg).pow(-0.5).masked_fill_(torch.from_numpy(deg == 0), 0).numpy()
    return row, col, -dinv[row] * weight * dinv[col], np.ones(n), deg, (0.0, 2.0)


def _small_laplacian(edge_index: Tensor, edge_weight: Tensor | None, num_nodes: int,
                     kind: str) -> tuple[Tensor, tuple[float, float], Tensor | None] | None:
    r"""The float64 :obj:`'laplacian'` or :obj:`'sym_laplacian'` CSR matrix
    of a small graph on the CPU, its bounds and degrees: the entries of
    :func:`small_laplacian_entries` merged as :func:`_laplacian_csr` merges
    them; :obj:`None` where that function leaves the graph to torch."""
    entries = small_laplacian_entries(edge_index, edge_weight, num_nodes, kind)
    if entries is None:
        return None
    row, col, off_diagonal, diagonal, deg, bounds = entries
    n = num_nodes
    degree = None if kind == 'laplacian' else torch.from_numpy(deg)
    key = row * n + col
    nodes = np.arange(n)
    at = np.searchsorted(key, nodes * (n + 1)) + nodes
    off = np.arange(row.size) + row + (col > row)
    columns = np.empty(row.size + n, dtype=np.int64)
    values = np.empty(row.size + n)
    columns[at], values[at] = nodes, diagonal
    columns[off], values[off] = col, off_diagonal
    crow = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(row, minlength=n) + 1, out=crow[1:])
    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', message='Sparse (CSR tensor support|invariant checks)')
        matrix = torch.sparse_csr_tensor(torch.from_numpy(crow), torch.from_numpy(columns),
                                         torch.from_numpy(values), size=(n, n))
    return matrix, bounds, degree


def scipy_csr(matrix: Tensor) -> sp.csr_matrix:
    r"""A torch sparse CSR matrix :obj:`[n, m]` (any device) as a float64
    SciPy CSR matrix on the CPU, with its own copies of the arrays."""
    if matrix.device.type != 'cpu':
        matrix = matrix.cpu()
    return sp.csr_matrix((matrix.values().detach().numpy().astype(np.float64),
                          matrix.col_indices().numpy().copy(),
                          matrix.crow_indices().numpy().copy()), shape=tuple(matrix.shape))


class GraphOperator(LinearOperator):
    r"""A graph matrix stored as a sparse CSR tensor of shape :obj:`[n, n]`.

    Build it with :meth:`from_edge_index`. :meth:`matmat` is one sparse-dense
    product; the matrix is never densified.

    Args:
        matrix (torch.Tensor): sparse CSR tensor :obj:`[n, n]`.
        kind (str): one of :obj:`KINDS` (see :meth:`from_edge_index`;
            :obj:`'rw'` is taken for :obj:`'rw_adjacency'`, with a
            :class:`DeprecationWarning`).
        bounds (tuple[float, float]): safe :obj:`(lower, upper)` eigenvalue
            bounds (singular-value bounds for :obj:`'rw_adjacency'`).
        degree (torch.Tensor, optional): :obj:`[n]` the degrees that
            normalised the matrix (:math:`\hat d` for :obj:`'gcn'`, :math:`d`
            for :obj:`'sym_adjacency'` and :obj:`'sym_laplacian'`); the
            closed-form eigenvectors of :class:`~pyg_spectral.operators.NullSpace`
            are built from them. (default: :obj:`None`, for the other kinds)
    """

    def __init__(self, matrix: Tensor, kind: str, bounds: tuple[float, float],
                 degree: Tensor | None = None) -> None:
        if matrix.layout != torch.sparse_csr:
            raise TypeError(f"matrix must be a sparse CSR tensor, got layout {matrix.layout}")
        self.matrix = matrix
        self.kind = canonical_kind(kind)
        self.shape = tuple(matrix.shape)
        self.is_symmetric = self.kind in SYMMETRIC_KINDS
        self.degree = degree
        self._bounds = bounds
        self._transpose: Tensor | None = None

    @classmethod
    def from_edge_index(
        cls,
        edge_index: Tensor,
        edge_weight: Tensor | None = None,
        num_nodes: int | None = None,
        kind: str = 'gcn',
        is_undirected: bool | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> 'GraphOperator':
        r"""Builds the :obj:`kind` matrix of a graph given as PyG gives it.

        Duplicate edges are summed. All kinds but :obj:`'rw_adjacency'` need
        an undirected graph, and whether it is one is always checked.

        Args:
            edge_index (torch.Tensor): :obj:`[2, m]` edges.
            edge_weight (torch.Tensor, optional): :obj:`[m]` edge weights,
                non-negative except for :obj:`'adjacency'`.
                (default: :obj:`None`: all 1)
            num_nodes (int, optional): the number of nodes. (default:
                :obj:`None`: one more than the largest index in
                :obj:`edge_index`)
            kind (str, optional): :obj:`'adjacency'` (:math:`A`),
                :obj:`'gcn'` (:math:`\hat D^{-1/2}(A+I)\hat D^{-1/2}`, the
                matrix of :class:`~torch_geometric.nn.conv.GCNConv`),
                :obj:`'sym_adjacency'` (:math:`D^{-1/2} A D^{-1/2}`),
                :obj:`'laplacian'` (:math:`D - A`), :obj:`'sym_laplacian'`
                (:math:`I - D^{-1/2} A D^{-1/2}`) or :obj:`'rw_adjacency'`
                (:math:`D^{-1} A`, not symmetric; not the random-walk
                Laplacian :math:`I - D^{-1} A` that
                :func:`torch_geometric.utils.get_laplacian` names
                :obj:`'rw'`). :obj:`'rw'` is accepted for :obj:`'rw_adjacency'`,
                its former name, with a :class:`DeprecationWarning`.
                (default: :obj:`'gcn'`)
            is_undirected (bool, optional): accepted for PyG's habit; the
                graph is checked either way, and :obj:`True` for a directed
                graph raises :class:`DirectedGraphError`. (default: :obj:`None`)
            dtype (torch.dtype, optional): :obj:`torch.float32` or
                :obj:`torch.float64`. (default: :obj:`torch.float32`)
        """
        kind = canonical_kind(kind)
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        if dtype not in (torch.float32, torch.float64):
            # half precision: degrees overflow (float16 past 65504) or round
            # away the normalisation; integers cannot hold it at all
            raise TypeError(f"dtype must be torch.float32 or torch.float64, got {dtype}; "
                            f"build the matrix in float32 and cast what it produces")
        num_nodes = validate_graph(edge_index, edge_weight, num_nodes)
        if kind in ('laplacian', 'sym_laplacian') and dtype == torch.float64 \
                and edge_index.device.type == 'cpu' and edge_index.size(1) <= SMALL_GRAPH_EDGES:
            small = _small_laplacian(edge_index, None if edge_weight is None
                                     else edge_weight.to(dtype), num_nodes, kind)
            if small is not None:
                return cls(small[0], kind, small[1], small[2])
        if edge_weight is None:
            edge_weight = torch.ones(edge_index.size(1), device=edge_index.device, dtype=dtype)
        else:
            edge_weight = edge_weight.to(dtype)
        edge_index, edge_weight = _coalesced(edge_index, edge_weight, num_nodes)
        # 'rw_adjacency' takes directed graphs: no symmetry check (a sort) for it
        symmetric = _symmetrized(edge_index, edge_weight, num_nodes) \
            if kind in SYMMETRIC_KINDS else edge_weight
        if symmetric is None:
            claim = ' although is_undirected=True was passed' if is_undirected else ''
            raise DirectedGraphError(f"edge_index describes a directed graph{claim}, but "
                                     f"kind={kind!r} needs a symmetric matrix; symmetrise "
                                     f"it with torch_geometric.utils.to_undirected or use "
                                     f"kind='rw_adjacency'")
        edge_weight = symmetric

        row, col = edge_index
        # scatter(..., reduce='sum') without its broadcasting, which 1-D needs not
        deg = edge_weight.new_zeros(num_nodes).scatter_add_(0, row, edge_weight)
        if (edge_weight < 0).any() and kind != 'adjacency':
            raise ValueError(f"edge_weight has negative entries, which kind={kind!r} "
                             f"does not allow (degrees must be non-negative)")
        degree = None
        if kind == 'adjacency':
            absdeg = scatter(edge_weight.abs(), row, 0, dim_size=num_nodes, reduce='sum')
            radius = float(absdeg.max()) if num_nodes else 0.0
            bounds = (-radius, radius)
        elif kind == 'gcn':
            edge_index, edge_weight = add_remaining_self_loops(edge_index, edge_weight, 1.0, num_nodes)
            row, col = edge_index
            d = scatter(edge_weight, col, 0, dim_size=num_nodes, reduce='sum')
            dinv = d.pow(-0.5).masked_fill_(d == 0, 0)
            edge_weight = dinv[row] * edge_weight * dinv[col]
            bounds, degree = (-1.0, 1.0), d
        elif kind == 'sym_adjacency':
            dinv = deg.pow(-0.5).masked_fill_(deg == 0, 0)
            edge_weight = dinv[row] * edge_weight * dinv[col]
            bounds, degree = (-1.0, 1.0), deg
        elif kind in ('laplacian', 'sym_laplacian'):
            # as torch_geometric.utils.get_laplacian: self-loops dropped, an
            # isolated node gets L_ii = 1 under 'sym', 0 otherwise
            loop = row == col
            if loop.any():
                # summed without the loops, not subtracted after: 6 + 1e-3 - 6 in
                # float32 keeps 1e-3 to only four digits
                deg = scatter(edge_weight.masked_fill(loop, 0), row, 0, dim_size=num_nodes,
                              reduce='sum')
                edge_index, edge_weight = edge_index[:, ~loop], edge_weight[~loop]
                row, col = edge_index
            if kind == 'laplacian':
                diagonal, off_diagonal = deg, -edge_weight
                # Gershgorin: every row of D - A has absolute sum 2 d_i
                bounds = (0.0, 2.0 * float(deg.max()))
            else:
                dinv = deg.pow(-0.5).masked_fill_(deg == 0, 0)
                diagonal, off_diagonal = torch.ones_like(deg), -dinv[row] * edge_weight * dinv[col]
                bounds, degree = (0.0, 2.0), deg
            with warnings.catch_warnings():
                warnings.filterwarnings('ignore', message='Sparse (CSR tensor support|invariant checks)')
                matrix = _laplacian_csr(edge_index, off_diagonal, diagonal, num_nodes)
            return cls(matrix, kind, bounds, degree)
        else:  # rw_adjacency
            dinv = deg.reciprocal().masked_fill_(deg == 0, 0)
            edge_weight = dinv[row] * edge_weight
            # singular values of D^-1 A are at most sqrt(|.|_1 |.|_inf) = sqrt(max column sum)
            colsum = scatter(edge_weight, col, 0, dim_size=num_nodes, reduce='sum')
            bounds = (0.0, float(colsum.max()) ** 0.5)
        with warnings.catch_warnings():
            # torch flags CSR as beta on every construction; nothing to act on
            warnings.filterwarnings('ignore', message='Sparse (CSR tensor support|invariant checks)')
            # gcn added self-loops out of order; the other kinds are coalesced
            matrix = to_torch_csr_tensor(edge_index, edge_weight, size=(num_nodes, num_nodes),
                                         is_coalesced=kind != 'gcn')
        return cls(matrix, kind, bounds, degree)

    @property
    def num_nodes(self) -> int:
        return self.shape[0]

    @property
    def device(self) -> torch.device:
        return self.matrix.device

    @property
    def dtype(self) -> torch.dtype:
        return self.matrix.dtype

    def to(self, device=None, dtype=None) -> 'GraphOperator':
        degree = None if self.degree is None else self.degree.to(device=device, dtype=dtype)
        return GraphOperator(self.matrix.to(device=device, dtype=dtype), self.kind, self._bounds,
                             degree)

    def matmat(self, X: Tensor) -> Tensor:
        self.check_block(X)
        return self.matrix @ X

    def affine_matmul(self, X: Tensor, alpha: float, beta: float) -> Tensor:
        self.check_block(X)
        return torch.addmm(X, self.matrix, X, beta=beta, alpha=alpha)

    def rmatmat(self, X: Tensor) -> Tensor:
        if self.is_symmetric:
            return self.matmat(X)
        self.check_block(X)
        if self._transpose is None:
            self._transpose = self.matrix.to_sparse_coo().t().coalesce().to_sparse_csr()
        return self._transpose @ X

    def spectral_bounds(self) -> tuple[float, float]:
        return self._bounds

    def to_dense(self) -> Tensor:
        r"""The dense matrix, for tests and small graphs only."""
        return self.matrix.to_dense()

    def to_scipy(self) -> sp.csr_matrix:
        r"""The matrix as a SciPy CSR matrix :obj:`[n, n]` on the CPU, in
        float64, sharing no memory with :attr:`matrix` (SciPy edits some
        arrays in place, e.g. :meth:`~scipy.sparse.csr_matrix.eliminate_zeros`)."""
        return scipy_csr(self.matrix)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(kind={self.kind!r}, num_nodes={self.num_nodes}, '
                f'nnz={self.matrix._nnz()}, device={self.device}, dtype={self.dtype})')
