"""Measurement helpers shared by the benchmark scripts: synthetic graphs, a
time-limited run in a child process (wall time, peak memory), a trusted
reference eigenspace and sign/rotation-invariant errors."""
from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import time
import traceback
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.csgraph import connected_components
from scipy.sparse.linalg import LinearOperator as ScipyOperator, eigsh, splu
from torch_geometric.utils import coalesce, to_scipy_sparse_matrix, to_undirected

from pyg_spectral.metrics import max_principal_sine


def _vm_kib(field: str) -> int:
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    return 0


def _child(fn, args, conn) -> None:
    try:
        start = _vm_kib('VmRSS:')
        t = time.perf_counter()
        out = fn(*args)
        wall = time.perf_counter() - t
        result = ('ok', wall, (_vm_kib('VmHWM:') - start) / 1024, out)
    except Exception as e:  # a peer's own error is a result of the benchmark
        result = ('error', 0.0, 0.0, f'{type(e).__name__}: {str(e)[:80]}')
        traceback.print_exc()
    # plain pickle: multiprocessing's own would pass tensors as file
    # descriptors of shared memory, which die with this process
    conn.send_bytes(pickle.dumps(result))


def run_limited(fn, args: tuple, limit: float) -> tuple[str, float, float, object]:
    r"""Runs :obj:`fn(*args)` in a forked child for at most :obj:`limit`
    seconds: :obj:`(status, wall seconds, peak MiB above the child's start,
    result or message)`, status :obj:`'ok'`, :obj:`'error'` or
    :obj:`'timeout'` (the child is killed)."""
    parent, child = mp.Pipe(duplex=False)
    proc = mp.get_context('fork').Process(target=_child, args=(fn, args, child))
    proc.start()
    if parent.poll(limit):
        result = pickle.loads(parent.recv_bytes())
        proc.join()
        return result
    proc.kill()
    proc.join()
    return ('timeout', limit, 0.0, f'> {limit:.0f} s')


@dataclass
class Reference:
    values: np.ndarray   # [K] ascending, K >= k, closed over the cluster at k
    vectors: np.ndarray  # [n, K]
    how: str


def null_space_basis(edge_index, n: int, edge_weight=None) -> np.ndarray:
    r"""Orthonormal basis :obj:`[n, c]` of the zero eigenspace of the
    symmetric normalized Laplacian: :math:`D^{1/2} 1_C / \sqrt{vol(C)}` for
    every connected component :math:`C` with edges (an isolated node has
    eigenvalue 1 there)."""
    A = to_scipy_sparse_matrix(edge_index, edge_weight, n).tocsr()
    deg = np.asarray(A.sum(1)).ravel()
    c, labels = connected_components(A, directed=False)
    vol = np.bincount(labels, weights=deg, minlength=c)
    keep = vol[labels] > 0
    cols = np.unique(labels[keep], return_inverse=True)[1]
    B = np.zeros((n, cols.max() + 1))
    B[np.flatnonzero(keep), cols] = np.sqrt(deg[keep] / vol[labels[keep]])
    return B


def geometric_graph(n: int, neighbours: int = 6, seed: int = 0) -> torch.Tensor:
    r"""kNN graph of n uniform points in the unit square (symmetrised): a
    mesh-like graph with a sparse LU, so shift-invert gives a reference."""
    from scipy.spatial import cKDTree
    pts = np.random.default_rng(seed).random((n, 2))
    _, nbr = cKDTree(pts).query(pts, neighbours + 1)
    src = np.repeat(np.arange(n), neighbours)
    ei = torch.as_tensor(np.stack([src, nbr[:, 1:].reshape(-1)]), dtype=torch.long)
    return to_undirected(ei, num_nodes=n)


def block_graph(n: int, blocks: int = 32, degree: int = 10, inside: float = 0.9,
                seed: int = 0) -> torch.Tensor:
    r"""A stochastic block model of n nodes: :obj:`blocks` communities of
    random sizes, :obj:`n * degree / 2` edges of which a fraction
    :obj:`inside` join two nodes of one community. It expands well inside
    the communities (an LU fills in, unlike the mesh's), and the low end is
    the cluster of the blocks - 1 community eigenvalues, well apart from the
    bulk, which plain Lanczos resolves."""
    rng = np.random.default_rng(seed)
    sizes = rng.multinomial(n, rng.dirichlet(np.full(blocks, 5.0)))
    block = np.repeat(np.arange(blocks), sizes)
    first = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    m = n * degree // 2
    src = rng.integers(0, n, m)
    within = first[block[src]] + (rng.random(m) * sizes[block[src]]).astype(np.int64)
    dst = np.where(rng.random(m) < inside, within, rng.integers(0, n, m))
    ei = torch.as_tensor(np.stack([src, dst])[:, src != dst])
    return coalesce(to_undirected(ei, num_nodes=n), num_nodes=n)


def deflated_shift_invert(L, null: np.ndarray, count: int, sigma: float = -1e-6):
    r"""The :obj:`count` smallest eigenpairs of :obj:`L` orthogonal to the
    orthonormal columns of :obj:`null` (eigenvectors of L): shift-invert
    Lanczos on :math:`(I - P)(L - \sigma I)^{-1}(I - P)`, tolerance 0.
    Plain shift-invert finds only some copies of a repeated zero (it missed
    one of four on a random geometric graph), hence the projection."""
    n = L.shape[0]
    lu = splu(sp.csc_matrix(L - sigma * sp.identity(n)))

    def apply(x):
        x = x - null @ (null.T @ x)
        y = lu.solve(x)
        return y - null @ (null.T @ y)
    op = ScipyOperator((n, n), matvec=apply, matmat=apply, dtype=np.float64)
    nu, vecs = eigsh(op, k=count, which='LA', tol=0, v0=np.ones(n) - null @ (null.T @ np.ones(n)))
    order = np.argsort(-nu)
    return sigma + 1 / nu[order], vecs[:, order]


def deflated_lanczos(L, null: np.ndarray, count: int, shift: float = 2.5):
    r"""The :obj:`count` smallest eigenpairs of :obj:`L` outside the span of
    :obj:`null` (orthonormal columns) by plain Lanczos on :math:`L + sP`,
    tolerance 0: for graphs that expand well, whose LU fills in (shift-invert
    would not finish) and whose low end Lanczos resolves."""
    n = L.shape[0]
    op = ScipyOperator((n, n), matvec=lambda x: L @ x + shift * (null @ (null.T @ x)),
                        dtype=np.float64)
    vals, vecs = eigsh(op, k=count, which='SA', tol=0, v0=np.ones(n) - null @ (null.T @ np.ones(n)))
    order = np.argsort(vals)
    return vals[order], vecs[:, order]


REFERENCE_SOLVERS = {'shift-invert': (deflated_shift_invert, 'shift-invert Lanczos'),
                     'lanczos': (deflated_lanczos, 'plain Lanczos')}


def reference_smallest(L: sp.csr_matrix, k: int, null: np.ndarray | None = None,
                       dense_limit: int = 5000, cluster_tol: float = 1e-6,
                       sparse: str = 'shift-invert') -> Reference:
    r"""The k smallest eigenpairs of a symmetric normalized Laplacian in
    float64, extended to the whole eigenvalue cluster at position k so that
    any valid choice inside a degenerate eigenspace counts as right. Dense
    :obj:`eigh` up to :obj:`dense_limit` nodes, else the zero eigenspace
    :obj:`null` (:func:`null_space_basis`, required there) and the next
    eigenpairs by :func:`deflated_shift_invert` (:obj:`sparse='shift-invert'`)
    or :func:`deflated_lanczos` (:obj:`'lanczos'`)."""
    n = L.shape[0]
    if n <= dense_limit:
        w, V = np.linalg.eigh(L.toarray())
        how = 'dense eigh (float64)'
    else:
        if null is None:
            raise ValueError("a graph above dense_limit needs its zero eigenspace (null)")
        count = max(k + 8 - null.shape[1], 0)
        solve, solver = REFERENCE_SOLVERS[sparse]
        w, V = solve(L, null, count) if count else (np.zeros(0), np.zeros((n, 0)))
        w, V = np.concatenate([np.zeros(null.shape[1]), w]), np.concatenate([null, V], 1)
        how = (f'zero eigenspace from the components, then {solver} with it '
               'projected out, tol=0 (float64)')
    K = k
    while K < len(w) and w[K] - w[k - 1] <= cluster_tol * max(1.0, abs(w[k - 1])):
        K += 1
    return Reference(w[:K], V[:, :K], how)


def errors(values, vectors, ref: Reference, k: int) -> tuple[float, float]:
    r"""(max |lambda - lambda_ref| over the k smallest, max principal sine of
    the method's vectors against the cluster-closed reference space)."""
    values = np.sort(np.asarray(values, dtype=np.float64))[:k]
    eig_err = float(np.abs(values - ref.values[:k]).max())
    sine = max_principal_sine(torch.as_tensor(np.asarray(vectors)), torch.as_tensor(ref.vectors))
    return eig_err, sine


def threads() -> str:
    return f'torch threads={torch.get_num_threads()}, load avg={os.getloadavg()[0]:.1f}'
