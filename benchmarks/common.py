"""What the benchmark scripts share, so that they measure alike: the graph
families, the CPU peers, a trusted reference eigenspace, one definition of
a WRONG result, a time-limited run in a child process (wall time, peak
memory) and one machine header."""
from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import platform
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.csgraph import connected_components
from scipy.sparse.linalg import LinearOperator as ScipyOperator, eigsh, splu
from torch_geometric.data import Data
from torch_geometric.utils import coalesce, get_laplacian, to_scipy_sparse_matrix, to_undirected

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


def sym_laplacian(edge_index: torch.Tensor, n: int, edge_weight=None) -> sp.csr_matrix:
    r"""PyG's symmetric normalized Laplacian, in float64 from the weights on
    (a float32 normalisation splits Cora's 78 zero eigenvalues by ~1e-8,
    which hides the degenerate cluster)."""
    w = torch.ones(edge_index.size(1), dtype=torch.float64) if edge_weight is None \
        else edge_weight.double()
    ei, w = get_laplacian(edge_index, w, 'sym', num_nodes=n)
    return to_scipy_sparse_matrix(ei, w, n).tocsr()


def radius_graph(points: np.ndarray, degree: float) -> Data:
    r"""The random geometric graph of :obj:`points` in the unit square: an
    edge between points closer than the radius of mean degree :obj:`degree`."""
    from scipy.spatial import cKDTree
    n = len(points)
    pairs = cKDTree(points).query_pairs(np.sqrt(degree / (np.pi * n)), output_type='ndarray')
    return Data(edge_index=to_undirected(torch.from_numpy(pairs.T).long(), num_nodes=n), num_nodes=n)


def random_geometric(n: int, degree: float, seed: int) -> Data:
    r""":func:`radius_graph` of :obj:`n` uniform points (a mesh-like graph,
    several components at small degrees)."""
    return radius_graph(np.random.default_rng(seed).random((n, 2)), degree)


def largest_component_mask(data: Data) -> np.ndarray:
    A = to_scipy_sparse_matrix(data.edge_index, None, data.num_nodes)
    _, labels = connected_components(A, directed=False)
    return labels == np.bincount(labels).argmax()


def largest_component(data: Data) -> Data:
    keep = largest_component_mask(data)
    index = -np.ones(data.num_nodes, dtype=np.int64)
    index[keep] = np.arange(keep.sum())
    ei = data.edge_index.numpy()
    mask = keep[ei[0]] & keep[ei[1]]
    return Data(edge_index=torch.from_numpy(index[ei[:, mask]]), num_nodes=int(keep.sum()))


def molecule_like(count: int, seed: int, sizes: tuple[int, int] = (10, 61)) -> list[Data]:
    r"""Random trees of 10-60 nodes (:obj:`sizes`, end excluded) with valence
    <= 4, plus one ring closure per ~8 nodes between nodes 4-7 bonds apart:
    sparse, connected, rings."""
    rng = np.random.default_rng(seed)
    graphs = []
    for _ in range(count):
        n = int(rng.integers(*sizes))
        parent, deg, depth, edges = [-1], [0], [0], []
        for v in range(1, n):
            while True:
                u = int(rng.integers(0, v))
                if deg[u] < 4:
                    break
            edges.append((u, v))
            deg[u] += 1
            deg.append(1)
            parent.append(u)
            depth.append(depth[u] + 1)
        for _ in range(n // 8):
            a, b = rng.integers(0, n, 2)
            if a != b and deg[a] < 4 and deg[b] < 4 and abs(depth[a] - depth[b]) <= 3:
                edges.append((int(a), int(b)))
                deg[a] += 1
                deg[b] += 1
        ei = torch.tensor(edges, dtype=torch.long).t()
        graphs.append(Data(edge_index=to_undirected(ei, num_nodes=n), num_nodes=n))
    return graphs


# ------------------------------------------------------------------ peers
# The CPU peers every script compares with, on a symmetric matrix L (SciPy
# sparse, float64): the `count` smallest eigenpairs, ascending. A script
# chooses the settings it reports (a start, a precision), not another
# implementation.
SHIFT_INVERT_SIGMA = -1e-3


def eigsh_smallest(L, count: int, v0=None, shift_invert: bool = False):
    r"""SciPy's ARPACK :func:`eigsh`: plain Lanczos (:obj:`which='SA'`) or
    shift-invert about :obj:`SHIFT_INVERT_SIGMA`; default tolerance."""
    if shift_invert:
        w, V = eigsh(L, k=count, sigma=SHIFT_INVERT_SIGMA, which='LM', v0=v0)
    else:
        w, V = eigsh(L, k=count, which='SA', v0=v0)
    order = np.argsort(w)
    return w[order], V[:, order]


def lobpcg_smallest(L, X: torch.Tensor, niter: int, tol: float):
    r""":func:`torch.lobpcg` from the start :obj:`X` (:obj:`[n, count]`), in
    its dtype."""
    L = L.tocoo()
    Lt = torch.sparse_coo_tensor(np.vstack([L.row, L.col]), L.data, L.shape, dtype=X.dtype)
    w, V = torch.lobpcg(Lt, X=X, largest=False, niter=niter, tol=tol)
    order = torch.argsort(w)
    return w[order].numpy(), V[:, order].numpy()


def pyg_pe(edge_index: torch.Tensor, n: int, k: int, seed: int | None) -> np.ndarray:
    r"""PyG's :class:`AddLaplacianEigenvectorPE` (ARPACK in float32, a
    random start from torch's generator: seeded with :obj:`seed`, else as
    the caller left it): :obj:`[n, k]` eigenvectors after the trivial one."""
    from torch_geometric.transforms import AddLaplacianEigenvectorPE
    if seed is not None:
        torch.manual_seed(seed)
    data = Data(edge_index=edge_index, num_nodes=n)
    return AddLaplacianEigenvectorPE(k, attr_name='pe', is_undirected=True)(data).pe.numpy()


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
    or :func:`deflated_lanczos` (:obj:`'lanczos'`), in rounds until no copy
    of a repeated eigenvalue is missing."""
    n = L.shape[0]
    if n <= dense_limit:
        w, V = np.linalg.eigh(L.toarray())
        how = 'dense eigh (float64)'
    else:
        if null is None:
            raise ValueError("a graph above dense_limit needs its zero eigenspace (null)")
        count = max(k + 8 - null.shape[1], 0)
        solve, solver = REFERENCE_SOLVERS[sparse]
        w, V = np.zeros(null.shape[1]), null
        # Lanczos from one start vector sees one direction per eigenspace in
        # exact arithmetic: further copies of a repeated eigenvalue appear
        # only through rounding, if at all (of three paths' three copies of
        # their smallest nonzero eigenvalue, one was missed). Each further
        # round solves with every vector found so far projected out, and the
        # search ends when one finds nothing up to the k-th value.
        rounds = 0
        while count and V.shape[1] + count < n:
            new_w, new_V = solve(L, V, count)
            rounds += 1
            if rounds > 1:
                keep = new_w <= w[k - 1] + cluster_tol * max(1.0, abs(w[k - 1]))
                if not keep.any():
                    break
                new_w, new_V = new_w[keep], new_V[:, keep]
            w, V = np.concatenate([w, new_w]), np.concatenate([V, new_V], 1)
            order = np.argsort(w, kind='stable')
            w, V = w[order], V[:, order]
        how = (f'zero eigenspace from the components, then {solver} with it '
               f'projected out, tol=0 (float64), {rounds} rounds (each with the '
               f'vectors found before projected out: missed copies of repeated eigenvalues)')
    K = k
    while K < len(w) and w[K] - w[k - 1] <= cluster_tol * max(1.0, abs(w[k - 1])):
        K += 1
    return Reference(w[:K], V[:, :K], how)


# ------------------------------------------------------------------ WRONG
# One definition for every script. A result is WRONG, and its time is shown
# but not read as a speed, when its
# * eigenvalue error, max_i |lambda_i - lambda_i^ref| / max(|lambda_i^ref|, EIG_FLOOR)
#   over the wanted eigenvalues, exceeds EIG_TOL (relative, absolute 1e-6 at
#   a zero eigenvalue: about float32's resolution on a normalized
#   Laplacian's [0, 2]), or its
# * subspace error, the largest principal sine between its vectors' span and
#   the reference eigenspace closed over the eigenvalue cluster at k (so that
#   any basis of a repeated eigenvalue counts as right; signs and rotations
#   do not matter), exceeds SINE_TOL: the sine up to which the library
#   certifies its own fits (pyg_spectral.solvers.neuralsvd.CERTIFIED_SINE)
#   and its float32 ARPACK rounds (solvers.laplacian.arpack.CERTIFIED_SINE),
#   and which the tests assert.
EIG_TOL, EIG_FLOOR, SINE_TOL = 1e-3, 1e-3, 1e-2


def eigenvalue_error(values, ref_values) -> float:
    values, ref_values = np.asarray(values, np.float64), np.asarray(ref_values, np.float64)
    return float(np.max(np.abs(values - ref_values) / np.maximum(np.abs(ref_values), EIG_FLOOR)))


def verdict(eig_err: float, sine: float) -> str:
    return 'ok' if eig_err <= EIG_TOL and sine <= SINE_TOL else 'WRONG'


def errors(values, vectors, ref: Reference, k: int) -> tuple[float, float]:
    r"""(:func:`eigenvalue_error` of the k smallest values, max principal
    sine of the method's vectors against the cluster-closed reference
    space)."""
    values = np.sort(np.asarray(values, dtype=np.float64))[:k]
    sine = max_principal_sine(torch.as_tensor(np.asarray(vectors)), torch.as_tensor(ref.vectors))
    return eigenvalue_error(values, ref.values[:k]), sine


# ----------------------------------------------------------------- header
def _cpu_model() -> str:
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit() -> str:
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=root,
                              capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(['git', 'status', '--porcelain', '--untracked-files=no'], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return 'unknown'
    return (head + (' with uncommitted changes' if dirty else '')) if head else 'unknown'


def machine_header(device: str = 'cpu') -> str:
    r"""The one line every script prints first: when, what command, which
    code, on what machine and how loaded. It starts with '# date' (the date
    is what benchmarks/plots.py reads from it; it is not a heading)."""
    gpu = (f'GPU {torch.cuda.get_device_name(device)}' if str(device).startswith('cuda')
           and torch.cuda.is_available() else 'GPU: not measured')
    load = ' '.join(f'{x:.2f}' for x in os.getloadavg())
    return (f"# date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
            f"`{' '.join(['python', *sys.argv])}`; commit {_git_commit()}; "
            f"{_cpu_model()}, {os.cpu_count()} cores; torch {torch.__version__}, "
            f"{torch.get_num_threads()} torch thread(s), "
            f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}; load average {load}; {gpu}")
