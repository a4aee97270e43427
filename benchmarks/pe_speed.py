"""Laplacian eigenvector PE: every peer in one table, with correctness checks.

    OMP_NUM_THREADS=1 PYG_SPECTRAL_DATA=../shared/data python benchmarks/pe_speed.py

For each graph (Cora, CiteSeer, PubMed, a synthetic 1e5-node random geometric
graph, and 10,000 molecule-like graphs of 10-60
nodes) every peer computes k = 16 (small graphs: k = 8) non-trivial
eigenvectors of the normalised Laplacian in a forked child process (wall
time, peak RSS above the child's start, a time limit). Each result is then
checked against a reference:

* eigenvalue error: max relative error of the Rayleigh quotients
  diag(V^T L V) against the reference eigenvalues 1..k (absolute below 1e-3);
* subspace error: largest principal sine between span(V) and the reference
  eigenspace of all eigenvalues <= lambda_k (with the trivial vector), i.e.
  invariant to signs, rotations and the choice of basis inside a repeated
  eigenvalue.

A result is WRONG by the one definition in `common.py` (eigenvalue error
above 1e-3 or subspace error above 1e-2, as above): its time is shown but
must not be read as a speed. The CPU peers are `common.py`'s. References
(`common.reference_smallest`): the zero eigenspace from the connected
components, then dense float64 eigh up to 5000 nodes, else shift-invert
Lanczos at tolerance 0 with the zero eigenspace projected out.

`--sections floor` times the batched dense eigh alone on the padded blocks of
the molecule-like set, the floor of any eigh-based path on this CPU.

`--sections pergraph` measures the per-graph fixed cost: the transform
applied graph by graph, as a `pre_transform` applies it, on 200 molecule-like
graphs of 10-40 nodes (k = 8), ours (default method, seeded) against PyG's,
each result checked:

    OMP_NUM_THREADS=1 python benchmarks/pe_speed.py --sections pergraph
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch
from scipy.sparse.csgraph import connected_components
from torch_geometric.data import Batch, Data
from torch_geometric.transforms import AddLaplacianEigenvectorPE
from torch_geometric.utils import erdos_renyi_graph, to_scipy_sparse_matrix, to_undirected

from pyg_spectral.metrics import max_principal_sine
from pyg_spectral.transforms import AddNeuralSVDPE

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (EIG_TOL, SINE_TOL, block_graph, eigenvalue_error,  # noqa: E402
                    eigsh_smallest, geometric_graph, largest_component, lobpcg_smallest,
                    machine_header, molecule_like, null_space_basis, pyg_pe, random_geometric,
                    reference_smallest, run_limited, sym_laplacian, verdict)

# names gpu_suite.py reads from this script (with EIG_TOL)
SUB_TOL, laplacian = SINE_TOL, sym_laplacian


# ------------------------------------------------------------------ peers
# common.py's peers on each graph of a set: vectors [n, k] (float64 numpy)
# after the trivial one
def peer_pyg(graphs, k, seed):
    torch.manual_seed(seed)  # once for the set, as a pre_transform over a dataset runs
    return [pyg_pe(g.edge_index, g.num_nodes, k, seed=None) for g in graphs]


def _eigsh(L, k, seed, shift_invert):
    v0 = np.random.default_rng(seed).standard_normal(L.shape[0])
    return eigsh_smallest(L, k + 1, v0, shift_invert)[1][:, 1:]


def peer_eigsh(graphs, k, seed):
    return [_eigsh(laplacian(g.edge_index, g.num_nodes), k, seed, False) for g in graphs]


def peer_eigsh_shift_invert(graphs, k, seed):
    return [_eigsh(laplacian(g.edge_index, g.num_nodes), k, seed, True) for g in graphs]


def peer_lobpcg(graphs, k, seed):
    out = []
    for g in graphs:
        X = torch.randn(g.num_nodes, k + 1, generator=torch.Generator().manual_seed(seed),
                        dtype=torch.float64)
        out.append(lobpcg_smallest(laplacian(g.edge_index, g.num_nodes), X, niter=2000,
                                   tol=1e-8)[1][:, 1:])
    return out


def padded_laplacians(graphs, size: int) -> torch.Tensor:
    r"""The dense Laplacians of :obj:`graphs` in one :obj:`[B, size, size]`
    block; padding rows get 3 on the diagonal so that they sort last."""
    dense = torch.zeros(len(graphs), size, size, dtype=torch.float64)
    for i, g in enumerate(graphs):
        dense[i, :g.num_nodes, :g.num_nodes] = torch.from_numpy(
            laplacian(g.edge_index, g.num_nodes).toarray())
        dense[i].diagonal()[g.num_nodes:] = 3.0
    return dense


def peer_dense_eigh(graphs, k, seed):
    r"""Batched dense eigh of padded Laplacians, dropping the first eigenvector."""
    dense = padded_laplacians(graphs, max(g.num_nodes for g in graphs))
    vecs = torch.linalg.eigh(dense).eigenvectors
    return [vecs[i, :g.num_nodes, 1:k + 1].numpy() for i, g in enumerate(graphs)]


def ours(method, **kw):
    def run(graphs, k, seed):
        t = AddNeuralSVDPE(k, method=method, seed=seed, attr_name='pe', **kw)
        if len(graphs) == 1:
            return [t(graphs[0].clone()).pe.double().numpy()]
        out = t(Batch.from_data_list(graphs))
        pe, ptr = out.pe.double().numpy(), out.ptr.tolist()
        return [pe[a:b] for a, b in zip(ptr[:-1], ptr[1:])]
    return run


PEERS = {
    'PyG AddLaplacianEigenvectorPE': peer_pyg,
    'SciPy eigsh (SA)': peer_eigsh,
    'SciPy eigsh shift-invert': peer_eigsh_shift_invert,
    'torch.lobpcg': peer_lobpcg,
    'torch.linalg.eigh (batched dense)': peer_dense_eigh,
    'ours exact': ours('exact'),
    'ours arpack': ours('arpack'),
    'ours arpack, float32, 1 round (PyG precision)': ours(
        'arpack', arpack_options=dict(dtype=torch.float32, tol=0, max_rounds=1)),
    'ours arpack, shift-invert': ours('arpack', arpack_options=dict(shift_invert=True)),
    'ours neuralsvd': ours('neuralsvd', neuralsvd_options=dict(steps=3000)),
    'ours auto': ours('auto'),
}


# -------------------------------------------------------------- references
def reference(graph: Data, k: int):
    r"""(eigenvalues 1..k, basis of the eigenspace of eigenvalues <= lambda_k):
    :func:`common.reference_smallest` for the k + 1 smallest, the trivial
    pair included."""
    n = graph.num_nodes
    null = null_space_basis(graph.edge_index, n)
    if null.shape[1] >= k + 1:  # inside the zero eigenspace: nothing to solve
        return np.zeros(k), null
    ref = reference_smallest(laplacian(graph.edge_index, n), k + 1, null)
    return ref.values[1:k + 1], ref.vectors


def check(graph, vecs, ref):
    ref_vals, ref_space = ref
    L = laplacian(graph.edge_index, graph.num_nodes)
    k = ref_vals.size
    if vecs.shape != (graph.num_nodes, k):
        return float('inf'), float('inf'), f'shape {vecs.shape}'
    rq = np.einsum('ij,ij->j', vecs, L @ vecs) / np.einsum('ij,ij->j', vecs, vecs)
    sub = max_principal_sine(torch.from_numpy(vecs), torch.from_numpy(ref_space))
    return eigenvalue_error(rq, ref_vals), float(sub), ''


# --------------------------------------------------------------- running
def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument('--small', type=int, default=10_000)
    parser.add_argument('--synthetic', type=int, default=100_000)
    parser.add_argument('--limit', type=float, default=300.0)
    parser.add_argument('--check-graphs', type=int, default=500)
    parser.add_argument('--only', nargs='*', default=None)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--sections', nargs='*', default=['table', 'crossover', 'inductive'],
                        help="any of table, crossover, inductive, floor, modes, pergraph")
    parser.add_argument('--inductive-sizes', type=int, nargs=2, default=(1500, 2500))
    parser.add_argument('--inductive-family', choices=INDUCTIVE_FAMILIES, default='rgg')
    args = parser.parse_args()
    print(machine_header(), flush=True)
    if 'crossover' in args.sections:
        crossover(args.seed)
    if 'inductive' in args.sections:
        inductive(args.seed, args.inductive_family, sizes=tuple(args.inductive_sizes))
    if 'floor' in args.sections:
        eigh_floor(args.small, args.seed)
    if 'pergraph' in args.sections:
        per_graph(args.seed)
    if 'modes' in args.sections:
        arpack_modes(args.seed, args.limit)
    if 'table' not in args.sections:
        return

    from pyg_spectral.datasets import load_planetoid
    cases = []
    for name in ('Cora', 'CiteSeer', 'PubMed'):
        cases.append((name, [load_planetoid(name)[0]], 16))
    rgg = random_geometric(args.synthetic, 10.0, args.seed)
    cases.append((f'RGG {args.synthetic} nodes', [rgg], 16))
    cases.append((f'{args.small} molecule-like graphs', molecule_like(args.small, args.seed), 8))
    if args.only:
        cases = [c for c in cases if any(o in c[0] for o in args.only)]

    for name, graphs, k in cases:
        sizes = [g.num_nodes for g in graphs]
        A = to_scipy_sparse_matrix(graphs[0].edge_index, None, graphs[0].num_nodes)
        comps = connected_components(A, directed=False)[0]
        t = time.perf_counter()
        check_ids = np.linspace(0, len(graphs) - 1, min(len(graphs), args.check_graphs)).astype(int)
        refs = {i: reference(graphs[i], k) for i in check_ids}
        print(f"\n## {name}: {len(graphs)} graph(s), {sum(sizes)} nodes"
              + (f", {comps} components" if len(graphs) == 1 else '')
              + f", k = {k} (reference in {time.perf_counter() - t:.1f} s)\n")
        print('| peer | wall s | peak MB | eig err | subspace err | verdict | ratio to fastest correct |')
        print('|---|---|---|---|---|---|---|')
        rows = []
        for peer, fn in PEERS.items():
            if peer in ('torch.linalg.eigh (batched dense)', 'ours exact') and max(sizes) > 5000:
                rows.append((peer, None, None, None, None, 'n/a (dense n x n too large)'))
                continue
            if peer in ('SciPy eigsh (SA)', 'SciPy eigsh shift-invert', 'torch.lobpcg') \
                    and len(graphs) > 1:
                rows.append((peer, None, None, None, None,
                             'n/a (per-graph loop; PyG row is the per-graph CPU path)'))
                continue
            status, wall, mem, out = run_limited(fn, (graphs, k, args.seed), args.limit)
            if status != 'ok':
                rows.append((peer, wall if status == 'timeout' else None, None, None, None,
                             f'FAILED ({out})'))
                continue
            errs = [check(graphs[i], out[i], refs[i]) for i in check_ids]
            eig = max(e[0] for e in errs)
            sub = max(e[1] for e in errs)
            notes = {e[2] for e in errs if e[2]}
            mark = verdict(eig, sub)
            rows.append((peer, wall, mem, eig, sub, mark + (f' ({", ".join(sorted(notes))})'
                                                            if mark != 'ok' and notes else '')))
        fastest = min((r[1] for r in rows if r[5] == 'ok'), default=None)
        for peer, wall, mem, eig, sub, mark in rows:
            def f(x, spec):
                return '-' if x is None else format(x, spec)
            ratio = f'{wall / fastest:.2f}x' if (fastest and wall is not None and mark == 'ok') else '-'
            print(f'| {peer} | {f(wall, ".2f")} | {f(mem, ".0f")} | {f(eig, ".1e")} | '
                  f'{f(sub, ".1e")} | {mark} | {ratio} |')
        sys.stdout.flush()


def eigh_floor(count: int, seed: int, k: int = 8) -> None:
    r"""On the molecule-like set: PyG's transform, ours (exact) and the
    batched dense :func:`torch.linalg.eigh` alone on padded Laplacian blocks
    of the sizes and counts ours builds (one thread, blocks built before the
    clock starts). PyG's time over the eigh alone bounds the speed-up of any
    path that runs that eigh on this CPU."""
    from pyg_spectral.solvers.laplacian import buckets
    graphs = molecule_like(count, seed)
    sizes = torch.tensor([g.num_nodes for g in graphs])
    blocks = [padded_laplacians([graphs[i] for i in ids.tolist()], size)
              for ids, size in buckets(sizes, torch.arange(len(graphs)))]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    t = time.perf_counter()
    for dense in blocks:
        torch.linalg.eigh(dense)
    alone = time.perf_counter() - t
    torch.set_num_threads(threads)
    walls = {}
    for name in ('PyG AddLaplacianEigenvectorPE', 'ours exact'):
        status, walls[name], _, _ = run_limited(PEERS[name], (graphs, k, seed), 600)
        assert status == 'ok', status
    pyg = walls['PyG AddLaplacianEigenvectorPE']
    print(f'\n## eigh floor: {count} molecule-like graphs, {int(sizes.sum())} nodes, '
          f'{len(blocks)} padded blocks, k = {k}\n')
    print('| what | wall s | PyG / this |')
    print('|---|---|---|')
    for name, wall in (('PyG AddLaplacianEigenvectorPE', pyg), ('ours exact (whole transform)',
                       walls['ours exact']), ('torch.linalg.eigh alone on our blocks', alone)):
        print(f'| {name} | {wall:.2f} | {pyg / wall:.2f}x |')
    sys.stdout.flush()


def per_graph(seed: int, count: int = 200, k: int = 8, sizes: tuple[int, int] = (10, 41),
              repeats: int = 7) -> None:
    r"""The per-graph fixed cost: PyG's transform and ours applied to one
    graph at a time, as a ``pre_transform`` is, on :obj:`count`
    molecule-like graphs of :obj:`sizes` nodes. The two run alternately
    graph by graph, :obj:`repeats` times, and each graph's time is the
    fastest of its repeats, so that the load of a shared machine weighs on
    both alike; the ratio is of the means. Every result of both is checked
    against the reference (a WRONG one is reported, its time not read as a
    speed)."""
    graphs = molecule_like(count, seed, sizes)
    torch.manual_seed(seed)
    transforms = {'PyG AddLaplacianEigenvectorPE': AddLaplacianEigenvectorPE(
                      k, attr_name='pe', is_undirected=True),
                  'ours (default)': AddNeuralSVDPE(k, attr_name='pe', seed=seed)}
    best = {name: np.full(len(graphs), np.inf) for name in transforms}
    outputs = {name: [None] * len(graphs) for name in transforms}
    for _ in range(repeats):
        for i, g in enumerate(graphs):
            for name, transform in transforms.items():
                data = g.clone()
                start = time.perf_counter()
                out = transform(data)
                best[name][i] = min(best[name][i], time.perf_counter() - start)
                outputs[name][i] = out.pe
    refs = [reference(g, k) for g in graphs]
    print(f'\n## per graph: {count} molecule-like graphs of {sizes[0]}-{sizes[1] - 1} nodes, '
          f'k = {k}, one transform call per graph (fastest of {repeats} per graph)\n')
    print('| transform | ms per graph | eig err | subspace err | verdict | ratio to PyG |')
    print('|---|---|---|---|---|---|')
    pyg = best['PyG AddLaplacianEigenvectorPE'].mean()
    for name in transforms:
        errs = [check(g, pe.double().numpy(), ref) for g, pe, ref in
                zip(graphs, outputs[name], refs)]
        eig, sub = max(e[0] for e in errs), max(e[1] for e in errs)
        mean = best[name].mean()
        print(f'| {name} | {mean * 1e3:.3f} | {eig:.1e} | {sub:.1e} | {verdict(eig, sub)} | '
              f'{mean / pyg:.2f}x |')
    sys.stdout.flush()


def arpack_modes(seed: int, limit: float) -> None:
    r"""Plain Lanczos vs shift-invert vs the default policy of our ARPACK
    path, next to the RCM envelope ratio over sqrt(n) that the policy reads
    (:func:`~pyg_spectral.solvers.laplacian.envelope_ratio`), on graphs
    that expand poorly (meshes) and well (random and block models, PubMed)."""
    from pyg_spectral.datasets import load_planetoid
    from pyg_spectral.solvers.laplacian import envelope_ratio

    def lcc(name):
        data = load_planetoid(name)[0]
        return largest_component(Data(edge_index=data.edge_index, num_nodes=data.num_nodes))
    graphs = [(f'RGG {n}', lambda n=n: random_geometric(n, 10.0, seed)) for n in (2000, 20000, 100_000)]
    graphs += [(f'kNN mesh {n}', lambda n=n: Data(edge_index=geometric_graph(n, seed=seed), num_nodes=n))
               for n in (20000, 100_000)]
    torch.manual_seed(seed)
    graphs += [(f'Erdos-Renyi {n}, largest component', lambda n=n: largest_component(
        Data(edge_index=to_undirected(erdos_renyi_graph(n, 10 / n)), num_nodes=n))) for n in (1000, 3000)]
    graphs += [('Cora, largest component', lambda: lcc('Cora')),
               ('CiteSeer, largest component', lambda: lcc('CiteSeer')),
               ('PubMed', lambda: lcc('PubMed'))]
    graphs += [(f'block model {n}', lambda n=n: Data(edge_index=block_graph(n, seed=seed), num_nodes=n))
               for n in (20000, 100_000)]
    print(f'\n## ARPACK modes: plain Lanczos, shift-invert, default (k = 16, limit {limit:.0f} s)\n')
    print('| graph | nodes | envelope / nnz | / sqrt(n) | plain s | shift-invert s | default s |')
    print('|---|---|---|---|---|---|---|')
    for name, make in graphs:
        g = make()
        ratio = envelope_ratio(laplacian(g.edge_index, g.num_nodes))
        cells = []
        for mode in (False, True, None):
            def solve(g=g, mode=mode):
                return AddNeuralSVDPE(16, method='arpack', seed=seed, attr_name='pe',
                                      arpack_options=dict(shift_invert=mode))(g.clone()).pe
            status, wall, _, out = run_limited(solve, (), limit)
            cells.append(f'{wall:.2f}' if status == 'ok' else f'FAILED ({out})')
        print(f'| {name} | {g.num_nodes} | {ratio:.1f} | {ratio / g.num_nodes ** 0.5:.2f} | '
              + ' | '.join(cells) + ' |')
        sys.stdout.flush()


def crossover(seed: int) -> None:
    r"""Ours exact vs ours arpack vs ours neuralsvd on connected random
    geometric graphs of growing size: where 'auto' should switch."""
    print('\n## crossover: connected random geometric graphs (largest component), k = 16\n')
    print('| nodes | exact s | arpack s | neuralsvd s | arpack vs exact subspace err |')
    print('|---|---|---|---|---|')
    for n in (128, 256, 512, 1024, 2048):
        g = largest_component(random_geometric(n, 12.0, seed))
        row, outs = [], {}
        for method in ('exact', 'arpack', 'neuralsvd'):
            t = time.perf_counter()
            outs[method] = AddNeuralSVDPE(16, method=method, seed=seed, attr_name='pe')(g.clone()).pe
            row.append(time.perf_counter() - t)
        err = max_principal_sine(outs['arpack'], outs['exact'])
        print(f'| {g.num_nodes} | {row[0]:.3f} | {row[1]:.3f} | {row[2]:.3f} | {err:.1e} |')
        sys.stdout.flush()


INDUCTIVE_FAMILIES = ('rgg', 'sbm')


def inductive_family(name: str, k: int, sizes: tuple[int, int], count: int,
                     rng: np.random.Generator) -> list[Data]:
    r"""'rgg': largest components of random geometric graphs (meshes: the
    low end is a cluster without a gap); 'sbm': block models with k + 1
    communities (`common.block_graph`: the k community eigenvalues, then a
    gap to the bulk)."""
    out = []
    for _ in range(count):
        n, seed = int(rng.integers(*sizes)), int(rng.integers(1 << 30))
        out.append(largest_component(random_geometric(n, 12.0, seed)) if name == 'rgg' else
                   Data(edge_index=block_graph(n, blocks=k + 1, seed=seed), num_nodes=n))
    return out


def inductive(seed: int, family: str = 'rgg', k: int = 8, sizes=(1500, 2500),
              train_graphs: int = 24, test_graphs: int = 8) -> None:
    r"""PEEncoder fitted to a family of graphs, applied to unseen ones: per
    graph (each alone; the time of building the Laplacian and its null space,
    paid by every method, shown apart) and as one batch of all test graphs."""
    from pyg_spectral.transforms import PEEncoder, fit_pe_encoder
    rng = np.random.default_rng(seed)
    train = inductive_family(family, k, sizes, train_graphs, rng)
    test = inductive_family(family, k, sizes, test_graphs, rng)
    encoder = PEEncoder(k)
    t = time.perf_counter()
    fit_pe_encoder(encoder, train, seed=seed, progress=False)
    fit_time = time.perf_counter() - t
    methods = (('encoder', dict(encoder=encoder)), ('auto (arpack)', dict(method='auto')),
               ('exact', dict(method='exact')))
    times = {name: [] for name, _ in methods}
    setup = []
    sines_half, sines_all, eig_errs = [], [], []
    for g in test:
        outs = {}
        for name, kw in methods:
            transform = AddNeuralSVDPE(k, seed=seed, attr_name='pe', **kw)
            t = time.perf_counter()
            outs[name] = transform(g.clone())
            times[name].append(time.perf_counter() - t)
        setup_only = AddNeuralSVDPE(k)
        t = time.perf_counter()
        setup_only.problem(g.edge_index, None, g.num_nodes, None)
        setup.append(time.perf_counter() - t)
        ref, got = outs['exact'], outs['encoder']
        sines_half.append(max_principal_sine(got.pe[:, :k // 2], ref.pe))
        sines_all.append(max_principal_sine(got.pe, ref.pe))
        eig_errs.append(float(((got.pe_eigenvalues - ref.pe_eigenvalues).abs()
                               / ref.pe_eigenvalues).max()))
    batch = Batch.from_data_list(test)
    batch_times = {}
    for name, kw in methods[:2]:
        transform = AddNeuralSVDPE(k, seed=seed, attr_name='pe', **kw)
        t = time.perf_counter()
        transform(batch.clone())
        batch_times[name] = (time.perf_counter() - t) / len(test)

    print(f'\n## inductive ({family}): PEEncoder (k = {k}, K = {encoder.K}) fitted to '
          f'{train_graphs} graphs of {sizes[0]}-{sizes[1]} nodes ({fit_time:.1f} s, '
          f'cutoff {encoder.cutoff:.3g}), applied to {test_graphs} unseen ones\n')
    print(f'Building the Laplacian and its null space, paid by every method: '
          f'{np.mean(setup):.4f} s per graph; "solve" = total - that.\n')
    print('| method | s per graph | solve s per graph | total / encoder | solve / encoder | '
          's per graph in one batch | batch / encoder | max sine, first k/2 | max sine, all k | '
          'max eigenvalue rel. err |')
    print('|---|---|---|---|---|---|---|---|---|---|')
    enc, enc_solve = np.mean(times['encoder']), np.mean(times['encoder']) - np.mean(setup)
    for name, ts in times.items():
        total = np.mean(ts)
        solve = total - np.mean(setup)
        in_batch = (f'{batch_times[name]:.4f} | {batch_times[name] / batch_times["encoder"]:.1f}x'
                    if name in batch_times else '- | -')
        tail = (f'{np.mean(sines_half):.2g} (worst {max(sines_half):.2g}) | '
                f'{np.mean(sines_all):.2g} (worst {max(sines_all):.2g}) | {max(eig_errs):.2g}'
                if name == 'encoder' else '0 (reference) | 0 | 0' if name == 'exact' else '- | - | -')
        print(f'| {name} | {total:.4f} | {solve:.4f} | {total / enc:.1f}x | {solve / enc_solve:.1f}x | '
              f'{in_batch} | {tail} |')
    sys.stdout.flush()


if __name__ == '__main__':
    main()
