r"""Dense :func:`torch.linalg.eigh` on padded blocks: the solver of small
graphs, thousands of them at once."""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ...operators.graph import SMALL_GRAPH_EDGES, small_laplacian_entries
from ...operators.nullspace import search_components
from .problem import LAPLACIAN_KINDS, Eigenpairs, LaplacianProblem, deflation_shift

# blocks are padded to a multiple of this size, so that graphs of similar
# size share one batched eigh
GRANULARITY = 4


def buckets(sizes: Tensor, graphs: Tensor, granularity: int = GRANULARITY,
            max_entries: int = 1 << 24) -> list[tuple[Tensor, int]]:
    r"""Groups graphs of similar size into padded blocks of at most
    :obj:`max_entries` matrix entries: :obj:`(graph ids, padded size)`."""
    padded = ((sizes[graphs] + granularity - 1) // granularity) * granularity
    out = []
    for size in torch.unique(padded).tolist():
        ids = graphs[padded == size]
        per_chunk = max(1, max_entries // (size * size))
        out.extend((chunk, size) for chunk in ids.split(per_chunk))
    return out


def solve_dense(problem: LaplacianProblem, graphs: Tensor) -> Eigenpairs:
    r"""The :obj:`q[g]` smallest eigenpairs of the deflated Laplacians of
    :obj:`graphs` (:obj:`[G']`, increasing) by dense :func:`torch.linalg.eigh`
    on padded blocks; :obj:`t` columns, the largest :obj:`q` of these graphs.

    Every block is built with one scatter of the Laplacian's entries and the
    deflation :math:`s\,u u^T` restricted to each component (isolated nodes
    have :math:`u = 0`), so the cost is the batched :obj:`eigh` and a few
    passes over the blocks, with no per-graph work. A graph gets the same
    bits in any batch as alone: its block is built elementwise and padded to
    a size that depends on its own size only.

    It runs with the caller's intra-op thread setting, which a library must
    not change. On small blocks LAPACK gains nothing from threads, and on a
    busy CPU they spin on busy cores (400 blocks of 32 x 32: 390 ms with two
    threads, 50 ms with one, at load average 6 on two cores): an application
    that encodes many small graphs chooses one thread itself, with
    :func:`torch.set_num_threads` or ``threadpoolctl.threadpool_limits(1)``
    around its preprocessing."""
    M, null, ptr, batch = problem.laplacian.matrix, problem.null, problem.ptr, problem.batch
    device, weight = batch.device, M.values()
    sizes, q = problem.sizes, problem.q
    t = int(q[graphs].max()) if graphs.numel() else 0
    n, G = batch.numel(), problem.num_graphs
    if t == 0:
        rows = n if graphs.numel() == G else int(sizes[graphs].sum())
        return Eigenpairs(graphs, weight.new_zeros(rows, 0), weight.new_zeros(graphs.numel(), 0))
    pad_value = _pad_value(problem.shift)
    if G == 1:
        return _solve_one(problem, graphs, t, pad_value)
    crow, col = M.crow_indices(), M.col_indices()
    row = torch.repeat_interleave(torch.arange(n, device=device), crow[1:] - crow[:-1])
    local = torch.arange(n, device=device) - ptr[batch]
    chosen = torch.zeros(G, dtype=torch.bool, device=device)
    chosen[graphs] = True
    node_rows = torch.cumsum(chosen[batch], 0) - 1  # row of each chosen node in the output
    graph_rows = torch.cumsum(chosen, 0) - 1
    vectors = weight.new_zeros(int(node_rows[-1]) + 1, t)
    values = weight.new_zeros(graphs.numel(), t)
    for ids, size in buckets(sizes, graphs):
        B = ids.numel()
        if B == G:  # all graphs in one block
            node_block, nodes, r, c, w = batch, None, row, col, weight
            nb, lo, basis, labels = batch, local, null.basis, null.labels
        else:
            block_of = torch.full((G,), -1, dtype=torch.long, device=device)
            block_of[ids] = torch.arange(B, device=device)
            node_block = block_of[batch]
            nodes = (node_block >= 0).nonzero().view(-1)
            edges = (node_block[row] >= 0).nonzero().view(-1)
            r, c, w = row[edges], col[edges], weight[edges]
            nb, lo, basis, labels = node_block[nodes], local[nodes], null.basis[nodes], \
                null.labels[nodes]
        dense = weight.new_zeros(B, size, size)
        # the CSR matrix has no duplicate entries: plain assignment
        dense.view(-1)[(node_block[r] * size + local[r]) * size + local[c]] = w
        u = weight.new_zeros(B, size)
        u[nb, lo] = basis
        # elementwise, not a batched matmul: baddbmm's rounding depends on
        # the batch size, and a graph must get the same bits (hence the same
        # basis inside a repeated eigenvalue) in any batch as alone
        outer = u[:, :, None] * u[:, None, :]
        if int(null.count[ids].max()) > 1:  # P_0 is block-diagonal over the components
            label = torch.full((B, size), -1, dtype=torch.long, device=device)
            label[nb, lo] = labels
            outer *= label[:, :, None] == label[:, None, :]
        dense.add_(outer, alpha=problem.shift)
        pad = torch.arange(size, device=device)[None, :] >= sizes[ids][:, None]
        dense.diagonal(dim1=1, dim2=2).add_(pad * pad_value)
        evals, evecs = torch.linalg.eigh(dense)
        width = min(t, size)
        keep = torch.arange(width, device=device)[None, :] < q[ids][:, None]
        block_values = torch.where(keep, evals[:, :width], torch.zeros_like(evals[:, :width]))
        picked = evecs[nb, lo, :width] * keep[nb]
        if nodes is None:
            values[:, :width], vectors[:, :width] = block_values, picked
        else:
            values[graph_rows[ids], :width] = block_values
            vectors[node_rows[nodes], :width] = picked
    return Eigenpairs(graphs, vectors, values)


def _solve_one(problem: LaplacianProblem, graphs: Tensor, t: int,
               pad_value: float) -> Eigenpairs:
    r""":func:`solve_dense` on a problem of one graph: the same block, entry
    for entry, as in a batch, without the bookkeeping of blocks. On the CPU
    the block is laid out in NumPy, whose calls cost a fraction of torch's on
    a graph of a few dozen nodes (the fixed cost a transform applied graph by
    graph pays on every graph); the one operation that rounds, adding the
    deflation, stays torch's (it fuses the multiply-add, NumPy does not)."""
    n, null, M = problem.batch.numel(), problem.null, problem.laplacian.matrix
    size = -(-n // GRANULARITY) * GRANULARITY
    if M.device.type == 'cpu' and not M.requires_grad:
        crow = M.crow_indices().numpy()
        dense = _block_numpy(n, np.repeat(np.arange(n), np.diff(crow)), M.col_indices().numpy(),
                             M.values().numpy(), null.basis.numpy(),
                             null.labels.numpy() if null.num_components > 1 else None,
                             problem.shift, pad_value)
    else:
        crow, col, weight = M.crow_indices(), M.col_indices(), M.values()
        row = torch.repeat_interleave(torch.arange(n, device=M.device), crow[1:] - crow[:-1])
        dense = weight.new_zeros(1, size, size)
        dense.view(-1)[row * size + col] = weight
        u = weight.new_zeros(1, size)
        u[0, :n] = null.basis
        outer = u[:, :, None] * u[:, None, :]
        if null.num_components > 1:
            label = torch.full((1, size), -1, dtype=torch.long, device=u.device)
            label[0, :n] = null.labels
            outer *= label[:, :, None] == label[:, None, :]
        dense.add_(outer, alpha=problem.shift)
        if size > n:
            dense[0].diagonal()[n:] += pad_value
    evals, evecs = torch.linalg.eigh(dense)
    # t = q < n: every column kept
    return Eigenpairs(graphs, evecs[0, :n, :t].contiguous(), evals[:, :t])


def _pad_value(shift: float) -> float:
    # the padding rows' eigenvalue: past the deflated zeros (at shift)
    return 2 * shift


def _block_numpy(n: int, rows: np.ndarray, cols: np.ndarray, values: np.ndarray,
                 basis: np.ndarray, labels: np.ndarray | None, shift: float,
                 pad_value: float) -> Tensor:
    r"""One graph's :obj:`[1, size, size]` deflated block in NumPy, whose
    calls cost a fraction of torch's on a graph of a few dozen nodes: the
    entries (no duplicates), the padding, then :math:`+ s\,u u^\top`
    (masked to each component's block when :obj:`labels` are given) by
    torch's fused multiply-add, whose bits NumPy does not reproduce."""
    size = -(-n // GRANULARITY) * GRANULARITY
    dense = np.zeros((1, size, size), dtype=values.dtype)
    dense.reshape(-1)[rows * size + cols] = values
    u = np.zeros((1, size), dtype=values.dtype)
    u[0, :n] = basis
    outer = u[:, :, None] * u[:, None, :]
    if labels is not None:
        label = np.full((1, size), -1)
        label[0, :n] = labels
        outer *= label[:, :, None] == label[:, None, :]
    # the padding first: 0 + shift * 0 is 0 either way
    dense[0, np.arange(n, size), np.arange(n, size)] = pad_value
    return torch.from_numpy(dense).add_(torch.from_numpy(outer), alpha=shift)


def solve_small_graph(edge_index: Tensor, edge_weight: Tensor | None, num_nodes: int, *, k: int,
                      kind: str = 'sym_laplacian') -> tuple[np.ndarray, np.ndarray] | None:
    r"""The :obj:`q = min(k, n - 1)` smallest non-zero eigenpairs of the
    Laplacian of one small connected graph on the CPU, :obj:`(vectors [n,
    q], values [q])` in float64 NumPy, from the edges straight to the dense
    block, whose entries are those :class:`LaplacianProblem` and
    :func:`solve_dense` build for the graph, alone or in a batch: the same
    bits, without the CSR tensor, :class:`~pyg_spectral.operators.NullSpace`
    and problem objects that a graph of a few dozen nodes spends most of its
    time building (the fixed cost a transform applied graph by graph, as a
    :obj:`pre_transform`, pays on every graph). The null space is the
    closed form :math:`\sqrt{m / \mathrm{vol}}` of the one component; the
    square roots and the deflation's fused multiply-add stay torch's, whose
    bits differ from NumPy's.

    :obj:`None` (leave the graph to :class:`LaplacianProblem`) for what
    only that route handles: edges not sorted and unique, self-loops,
    weights that are not exactly symmetric or carry a gradient, more than
    :obj:`SMALL_GRAPH_EDGES` edges, a graph without edges or of several
    components. :obj:`edge_index` and :obj:`num_nodes` must have passed
    :func:`~pyg_spectral.operators.graph.validate_graph`."""
    if kind not in LAPLACIAN_KINDS:
        raise ValueError(f"kind must be one of {LAPLACIAN_KINDS}, got {kind!r}")
    m, n = edge_index.size(1), num_nodes
    if m == 0 or m > SMALL_GRAPH_EDGES or edge_index.device.type != 'cpu':
        return None
    if edge_weight is not None:
        edge_weight = edge_weight.to(torch.float64)
    entries = small_laplacian_entries(edge_index, edge_weight, n, kind)
    if entries is None:
        return None
    row, col, off_diagonal, diagonal, deg, bounds = entries
    crow = [0]
    crow.extend(np.cumsum(np.bincount(row, minlength=n)).tolist())
    if search_components(crow, col.tolist(), off_diagonal.tolist())[0] != 1:
        return None
    # NullSpace.of_operator: the volume added in node order, as scatter_add_
    # does, then the unit vector sqrt(m_i / vol)
    mass = deg if kind == 'sym_laplacian' else np.ones(n)
    volume = np.bincount(np.zeros(n, dtype=np.int64), weights=mass, minlength=1)
    if not volume[0] > 0:
        return None
    roots = torch.from_numpy(np.append(mass, volume)).sqrt().numpy()
    shift = deflation_shift(bounds[1])
    nodes = np.arange(n)
    dense = _block_numpy(n, np.concatenate([row, nodes]), np.concatenate([col, nodes]),
                         np.concatenate([off_diagonal, diagonal]), roots[:n] / roots[n], None,
                         shift, _pad_value(shift))
    evals, evecs = torch.linalg.eigh(dense)
    q = min(k, n - 1)
    return evecs.numpy()[0, :n, :q], evals.numpy()[0, :q]
