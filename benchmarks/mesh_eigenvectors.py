"""Learned low eigenvectors of a mesh-like graph next to the exact ones, for
the picture in benchmarks/RESULTS.md (``python benchmarks/plots.py --only
mesh`` draws it from the file this script writes).

    OMP_NUM_THREADS=1 python benchmarks/mesh_eigenvectors.py \\
        --out benchmarks/results/mesh_eigenvectors.npz

The graph is ``common.geometric_graph``'s ('geo' in neuralsvd_speed.py): the
symmetrised 6-nearest-neighbour graph of uniform random points in the unit
square. NeuralSVD fits the k smallest eigenpairs of its normalised Laplacian
on a free table (``NeuralSVD.fit``, as neuralsvd_speed.py's cold row); the
reference is ``common.reference_smallest`` (dense float64 ``eigh`` up to 5000
nodes). Each learned vector is compared with the exact one of the same index
after alignment: a sign flip, or, inside a cluster of exact eigenvalues
closer than ``--cluster-gap`` (relative), the orthogonal Procrustes rotation
of the cluster's learned vectors onto the exact ones, since any basis of a
(near-)repeated eigenvalue is as right as another. The subspace sine of all
k vectors (the benchmarks' WRONG rule) needs no alignment.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.spatial import cKDTree
from torch_geometric.utils import to_undirected

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (errors, geometric_graph, machine_header, null_space_basis,  # noqa: E402
                    reference_smallest, sym_laplacian, verdict)

from pyg_spectral import GraphOperator, NeuralSVD  # noqa: E402
from pyg_spectral.io import atomic_write_file  # noqa: E402


def mesh(n: int, neighbours: int, seed: int) -> tuple[np.ndarray, torch.Tensor]:
    r"""The points and edges of ``geometric_graph(n, neighbours, seed)``,
    which returns only the edges: its points are redrawn from the same
    generator and the kNN graph rebuilt from them must be the same."""
    points = np.random.default_rng(seed).random((n, 2))
    edge_index = geometric_graph(n, neighbours, seed)
    _, nbr = cKDTree(points).query(points, neighbours + 1)
    rebuilt = torch.as_tensor(np.stack([np.repeat(np.arange(n), neighbours), nbr[:, 1:].reshape(-1)]))
    if not torch.equal(to_undirected(rebuilt, num_nodes=n), edge_index):
        raise RuntimeError('common.geometric_graph no longer draws its points as this script does')
    return points, edge_index


def clusters(values: np.ndarray, gap: float) -> list[list[int]]:
    r"""Consecutive indices whose eigenvalues differ by less than
    :obj:`gap` relative to the larger one."""
    out = [[0]]
    for i in range(1, len(values)):
        if values[i] - values[i - 1] < gap * max(abs(values[i]), 1e-12):
            out[-1].append(i)
        else:
            out.append([i])
    return out


def align(learned: np.ndarray, exact: np.ndarray, groups: list[list[int]]) -> np.ndarray:
    r"""Per group, the orthogonal R minimising ``|learned[:, g] R - exact[:, g]|``
    (a sign for a single vector)."""
    out = learned.copy()
    for g in groups:
        U, _, Vt = np.linalg.svd(learned[:, g].T @ exact[:, g])
        out[:, g] = learned[:, g] @ (U @ Vt)
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--nodes', type=int, default=3000, help='points in the unit square (default: 3000)')
    p.add_argument('--neighbours', type=int, default=6, help='k of the kNN graph (default: 6)')
    p.add_argument('--seed', type=int, default=0, help='seed of the points (default: 0)')
    p.add_argument('--k', type=int, default=16, help='eigenpairs fitted (default: 16)')
    p.add_argument('--steps', type=int, default=20000, help='most NeuralSVD steps (default: 20000)')
    p.add_argument('--tol', type=float, default=1e-5, help='NeuralSVD tol (default: 1e-5)')
    p.add_argument('--cluster-gap', type=float, default=0.02,
                   help='relative gap below which exact eigenvalues are aligned as one cluster '
                        '(default: 0.02)')
    p.add_argument('--out', default='benchmarks/results/mesh_eigenvectors.npz',
                   help='the raw file (default: benchmarks/results/mesh_eigenvectors.npz)')
    args = p.parse_args(argv)
    header = machine_header()
    print(header, flush=True)
    n, k = args.nodes, args.k
    points, edge_index = mesh(n, args.neighbours, args.seed)
    L = sym_laplacian(edge_index, n)
    t = time.perf_counter()
    ref = reference_smallest(L, k, null_space_basis(edge_index, n))
    ref_seconds = time.perf_counter() - t

    t = time.perf_counter()
    op = GraphOperator.from_edge_index(edge_index, None, n, kind='sym_laplacian')
    res = NeuralSVD(k).fit(op, largest=False, steps=args.steps, tol=args.tol, refine=True,
                           progress=False)
    seconds = time.perf_counter() - t

    learned = res.eigenvectors.double().numpy()
    eig_err, sine = errors(res.eigenvalues.numpy(), learned, ref, k)
    exact = ref.vectors[:, :k]
    groups = clusters(ref.values[:k], args.cluster_gap)
    aligned = align(learned, exact, groups)
    # per vector: the sine of the angle to the exact vector of its index, as
    # the norm of the part of the unit learned vector off the exact one (1 - cos^2
    # loses everything below ~1e-4 to rounding)
    unit = aligned / np.linalg.norm(aligned, axis=0)
    per_vector = np.linalg.norm(unit - exact * np.sum(unit * exact, 0), axis=0)
    meta = {'header': header, 'nodes': n, 'neighbours': args.neighbours, 'seed': args.seed, 'k': k,
            'edges': int(edge_index.size(1)), 'components': int(null_space_basis(edge_index, n).shape[1]),
            'reference': ref.how, 'reference_seconds': ref_seconds, 'seconds': seconds,
            'steps': res.steps, 'converged': bool(res.converged), 'tol': args.tol,
            'sine': sine, 'eig_err': eig_err, 'verdict': verdict(eig_err, sine),
            'cluster_gap': args.cluster_gap, 'clusters': groups}
    print(json.dumps({key: v for key, v in meta.items() if key != 'header'}), flush=True)
    print('per-vector sine after alignment:', ' '.join(f'{s:.1e}' for s in per_vector), flush=True)
    # a temporary name, then renamed: a stopped run leaves no half file
    atomic_write_file(args.out, lambda fh: np.savez_compressed(
        fh, points=points.astype(np.float32), exact=exact.astype(np.float32),
        learned=aligned.astype(np.float32), exact_values=ref.values[:k],
        learned_values=res.eigenvalues.double().numpy(), per_vector_sine=per_vector,
        meta=json.dumps(meta)))
    return meta


if __name__ == '__main__':
    main()
