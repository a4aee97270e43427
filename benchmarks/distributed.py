"""The distributed NeuralSVD at world size 1 and 2 on synthetic graphs: time
per step, share of it in communication, halo bytes per step against the
table, peak memory per process, and the edge cut of METIS against the
dependency-free reverse Cuthill-McKee blocks.

Two graph models, both generated in linear time and written chunk by chunk
(no process ever holds the edge list) to an uncompressed ``.npz`` that
``pyg-spectral eigs`` streams:

* ``sbm``: a planted partition, ``--blocks`` equal blocks, mean degree
  ``--degree``, ``--mixing`` of the edges to uniformly random nodes.
* ``products``: an ogbn-products-shaped degree-corrected SBM: power-law
  expected degrees (Pareto tail ``--alpha``, mean ``--degree``), equal
  communities of ``--community`` nodes on a ring, ``--mixing`` of the edges
  leaving their community, to a community at most ``--reach`` steps along
  the ring, except ``--long-range`` of those, which go to a uniformly
  random community. Defaults: ogbn-products' 2,449,029 nodes and about
  61.86M undirected edges at ``--nodes 2449029``.

Commands::

    python benchmarks/distributed.py make --model products --nodes 1000000 --out /tmp/prod1m.npz
    python benchmarks/distributed.py make --model sbm --nodes 1000000 --out /tmp/sbm1m.npz
    # METIS and RCM partitions for 2 parts: edge cut, halo, time; saved for the fits
    python benchmarks/distributed.py partition /tmp/prod1m.npz --parts 2 --save /tmp/prod1m
    # a fixed number of steps, one process and two (a JSON line each)
    OMP_NUM_THREADS=1 python benchmarks/distributed.py fit /tmp/prod1m.npz --k 16 --steps 20
    OMP_NUM_THREADS=1 torchrun --standalone --nproc-per-node 2 benchmarks/distributed.py fit \\
        /tmp/prod1m.npz --k 16 --steps 20 --partition-file /tmp/prod1m.metis2.pt
    # time to a sine of 1e-2: a reference (common.reference_smallest, k + 1
    # pairs, residuals and the gap recorded), then fits that stop at the
    # check after reaching it
    python benchmarks/distributed.py reference /tmp/sbm1e5.npz --k 16 --out /tmp/sbm1e5.ref.npy
    OMP_NUM_THREADS=1 python benchmarks/distributed.py fit /tmp/sbm1e5.npz --k 16 --steps 5000 \\
        --reference /tmp/sbm1e5.ref.npy --target-sine 1e-2

One process loads the whole graph and builds the whole matrix (this is
``NeuralSVD.fit``); each of several processes builds only its own rows from
the file (``local_graph_rows``), with the partition made beforehand.
Peak memory is each process's maximum resident set (``ru_maxrss``), read
after the build and after the fit. Step times are wall clock (``step_ms``)
and the process's CPU time (``step_cpu_ms``), which a busy shared machine
inflates less.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
import warnings

import numpy as np
import torch

CHUNK = 1 << 20  # undirected edges generated per chunk


def sbm_chunks(nodes: int, blocks: int, degree: float, mixing: float = 0.1, seed: int = 0):
    r"""Chunks :obj:`[2, 2c]` of an undirected SBM (both directions of each
    edge) with :math:`nd/2` edges, :obj:`1 - mixing` of them inside the
    block of their first end, the others to a uniformly random node;
    node ids shuffled so that the blocks are not contiguous. Linear time:
    edges are drawn edge by edge, not pair by pair, and a drawn self-loop
    moves to the next node of its block (so the edge count is exact)."""
    rng = np.random.default_rng(seed)
    relabel = rng.permutation(nodes)
    size = nodes // blocks
    m = int(nodes * degree / 2)
    for start in range(0, m, CHUNK):
        c = min(CHUNK, m - start)
        src = rng.integers(0, nodes, c)
        block = np.minimum(src // size, blocks - 1)
        lo = block * size
        hi = np.where(block == blocks - 1, nodes, lo + size)
        inside = rng.random(c) >= mixing
        dst = np.where(inside, lo + (rng.random(c) * (hi - lo)).astype(np.int64),
                       rng.integers(0, nodes, c))
        loop = dst == src
        dst[loop] = np.where(inside[loop], lo[loop] + (dst[loop] - lo[loop] + 1)
                             % (hi[loop] - lo[loop]), (dst[loop] + 1) % nodes)
        src, dst = relabel[src], relabel[dst]
        yield np.stack([np.concatenate([src, dst]), np.concatenate([dst, src])])


def products_chunks(nodes: int, degree: float = 50.5, community: int = 10000,
                    mixing: float = 0.1, reach: int = 4, long_range: float = 0.01,
                    alpha: float = 1.5, seed: int = 0):
    r"""Chunks :obj:`[2, 2c]` of a degree-corrected SBM shaped like
    ogbn-products (module docstring). Every community holds the same
    :obj:`community` expected degrees, a Pareto sample (tail exponent
    :obj:`alpha`) scaled to mean :obj:`degree` and capped at half a
    community (more would be mostly repeated edges), so an end drawn in
    proportion to its expected degree is a uniform community and one draw
    from that single table: O(1) per edge after an O(community) set-up
    (a binary search in that table of fixed size), whatever the number of
    nodes. Node ids are shuffled."""
    rng = np.random.default_rng(seed)
    count = max(1, nodes // community)
    size = nodes // count                  # the last community takes the rest
    theta = (1 - rng.random(size)) ** (-1 / alpha)
    for _ in range(8):  # cap the expected degrees, keeping their mean
        theta = np.minimum(degree * theta / theta.mean(), size / 2)
    cumulative = np.cumsum(theta / theta.sum())
    cumulative[-1] = 1.0
    relabel = rng.permutation(nodes)
    m = int(round(nodes * degree / 2))

    def member(block: np.ndarray, c: int) -> np.ndarray:
        local = np.searchsorted(cumulative, rng.random(c), side='right')
        return np.minimum(block * size + local, nodes - 1)

    for start in range(0, m, CHUNK):
        c = min(CHUNK, m - start)
        a_block = rng.integers(0, count, c)
        b_block = a_block.copy()
        leaves = rng.random(c) < mixing
        far = leaves & (rng.random(c) < long_range)
        near = leaves & ~far
        step = rng.integers(1, reach + 1, c) * np.where(rng.random(c) < 0.5, -1, 1)
        b_block[near] = (a_block[near] + step[near]) % count
        b_block[far] = rng.integers(0, count, int(far.sum()))
        src, dst = member(a_block, c), member(b_block, c)
        loop = src == dst
        dst[loop] = np.where(dst[loop] + 1 < nodes, dst[loop] + 1, dst[loop] - 1)
        src, dst = relabel[src], relabel[dst]
        yield np.stack([np.concatenate([src, dst]), np.concatenate([dst, src])])


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def cmd_make(args) -> None:
    from pyg_spectral.graph_file import GraphWriter
    start = time.perf_counter()
    if args.model == 'sbm':
        chunks = sbm_chunks(args.nodes, args.blocks, args.degree, args.mixing, args.seed)
        m = int(args.nodes * args.degree / 2)
    else:
        chunks = products_chunks(args.nodes, args.degree, args.community, args.mixing,
                                 args.reach, args.long_range, args.alpha, args.seed)
        m = int(round(args.nodes * args.degree / 2))
    with GraphWriter(args.out, args.nodes, 2 * m) as out:
        for chunk in chunks:
            out.write(chunk)
    print(json.dumps({'graph': args.out, 'model': args.model, 'nodes': args.nodes,
                      'undirected_edges': m, 'seconds': round(time.perf_counter() - start, 1),
                      'peak_mib': round(peak_mib(), 1)}))


def cmd_partition(args) -> None:
    from pyg_spectral.graph_file import GraphFile
    from pyg_spectral.solvers.partition import partition_nodes, partition_report
    edge_index, _, n = GraphFile(args.graph).load()
    for parts in args.parts:
        for method in args.methods:
            start = time.perf_counter()
            part = partition_nodes(edge_index, n, parts, method)
            seconds = time.perf_counter() - start
            if args.save:
                part.save(f'{args.save}.{method}{parts}.pt')
            report = partition_report(part, edge_index, n)
            print(json.dumps({'parts': parts, 'method': method, 'seconds': round(seconds, 2),
                              'edge_cut': report.edge_cut, 'num_edges': report.num_edges,
                              'cut_share': round(report.edge_cut / report.num_edges, 4),
                              'halo': report.halo, 'sizes': report.sizes,
                              'halo_share': round(sum(report.halo) / n, 4),
                              'peak_mib': round(peak_mib(), 1)}), flush=True)


def cmd_reference(args) -> None:
    r"""The :obj:`k` smallest eigenpairs of the symmetric normalized
    Laplacian in float64 by :func:`common.reference_smallest` (the zero
    eigenspace in closed form from the components, then Lanczos with it
    projected out: right on repeated eigenvalues, where plain ARPACK may
    miss copies), with the largest residual and the gap to pair
    :obj:`k + 1`, whose ratio bounds the reference's own subspace sine
    (Davis-Kahan)."""
    from common import null_space_basis, reference_smallest  # this script's directory
    from pyg_spectral import GraphOperator
    from pyg_spectral.graph_file import GraphFile
    from pyg_spectral.io import atomic_write_file
    if args.kind != 'sym_laplacian':
        raise SystemExit(f"reference --kind {args.kind}: only sym_laplacian, the matrix of "
                         f"common.reference_smallest")
    edge_index, weight, n = GraphFile(args.graph).load()
    matrix = GraphOperator.from_edge_index(edge_index, edge_weight=weight, num_nodes=n,
                                           kind=args.kind, dtype=torch.float64).to_scipy()
    null = null_space_basis(edge_index, n, weight)
    del edge_index, weight
    start = time.perf_counter()
    ref = reference_smallest(matrix, args.k + 1, null, sparse=args.solver)
    seconds = time.perf_counter() - start
    values, vectors = ref.values, ref.vectors
    residual = float(np.linalg.norm(matrix @ vectors[:, :args.k] - vectors[:, :args.k]
                                    * values[:args.k], axis=0).max())
    gap = float(values[args.k] - values[args.k - 1])
    if gap <= 0:
        print(f"reference: k = {args.k} splits an eigenvalue cluster; a sine against its "
              f"first k vectors is not defined: pick k at a gap", file=sys.stderr)
    atomic_write_file(args.out, lambda fh: np.save(fh, vectors[:, :args.k]))
    print(json.dumps({'graph': args.graph, 'k': args.k, 'how': ref.how,
                      'seconds': round(seconds, 1), 'values': values.tolist(),
                      'residual': residual, 'gap': gap,
                      'sine_bound': residual / gap if gap > 0 else float('inf')}))


class SineClock:
    r"""Wall time until the span of a table's first :obj:`k` columns is
    within :obj:`target` (largest principal sine) of the reference's rows
    :obj:`[n_local, k]` (orthonormal over all processes): read after every
    Ritz restart, when the columns are the Ritz vectors in order; the time
    spent reading it is not counted."""

    def __init__(self, reference: torch.Tensor, target: float, reduce) -> None:
        self.reference, self.target, self.reduce = reference, target, reduce
        self.start, self.overhead = time.perf_counter(), 0.0
        self.reached_s = self.reached_check = None
        self.sines: list[float] = []

    def observe(self, table: torch.Tensor) -> None:
        from pyg_spectral.linalg import whitening
        tick = time.perf_counter()
        F = table[:, :self.reference.size(1)].double()
        gram = self.reduce(F.T @ F)
        cross = self.reduce(self.reference.T @ F)
        # the cosines of the principal angles: the singular values of the
        # cross products with the table's columns whitened; columns that
        # have collapsed onto the others leave a direction unmatched (sine 1)
        W = whitening(gram)
        cosines = torch.linalg.svdvals(cross @ W)
        sine = 1.0 if W.size(1) < F.size(1) else \
            float((1 - cosines.min().clamp(max=1) ** 2).sqrt())
        self.sines.append(sine)
        if self.reached_s is None and sine <= self.target:
            self.reached_s = tick - self.start - self.overhead
            self.reached_check = len(self.sines) - 1
        self.overhead += time.perf_counter() - tick

    def stop(self, *args) -> bool:
        return self.reached_s is not None


def cmd_fit(args) -> None:
    import torch.distributed as dist
    from pyg_spectral import GraphOperator
    from pyg_spectral.graph_file import GraphFile
    from pyg_spectral.solvers.distributed import DistributedNeuralSVD
    from pyg_spectral.solvers.local_rows import local_graph_rows
    from pyg_spectral.solvers.partition import NodePartition

    torch.set_num_threads(1)
    world = int(os.environ.get('WORLD_SIZE', '1'))
    if world > 1:
        dist.init_process_group('gloo')
    rank = dist.get_rank() if world > 1 else 0
    start = time.perf_counter()
    graph = GraphFile(args.graph)
    if world == 1:
        edge_index, weight, n = graph.load()
        op = GraphOperator.from_edge_index(edge_index, edge_weight=weight, num_nodes=n,
                                           kind=args.kind)
        del edge_index, weight
        n = op.shape[0]
    else:
        if args.partition_file is None:
            raise SystemExit("fit under torchrun needs --partition-file (from the partition "
                             "command): partitioning inside the fit is what it measures without")
        part = NodePartition.load(args.partition_file)
        n = part.num_nodes
        op = local_graph_rows(graph.chunks(), part, args.kind, num_edges=graph.num_edges)
    build_s = time.perf_counter() - start
    build_peak = peak_mib()
    solver = DistributedNeuralSVD(args.k)
    clock = None
    if args.reference:
        if args.kind != 'sym_laplacian':
            raise SystemExit(f"fit --reference: the reference command's matrix is "
                             f"sym_laplacian, not --kind {args.kind}")
        nodes = torch.arange(n) if world == 1 else op.nodes
        rows = torch.from_numpy(np.load(args.reference, mmap_mode='r')[nodes.numpy()])
        reduce = (lambda x: x) if world == 1 else \
            (lambda x: (dist.all_reduce(x), x)[1])
        clock = SineClock(rows, args.target_sine, reduce)
        # the restart is where the columns are the ordered Ritz vectors:
        # read the sine there (an instance attribute shadows the static method)
        if world == 1:
            restart = solver.single._ritz_restart
            solver.single._ritz_restart = lambda target, table, *rest: (
                restart(target, table, *rest), clock.observe(table.weight.data))[0]
        else:
            restart = solver._ritz_restart
            solver._ritz_restart = lambda target, table, *rest: (
                restart(target, table, *rest), clock.observe(table.data))[0]
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', RuntimeWarning)  # a fixed budget: not converged
        fit_start, cpu_start = time.perf_counter(), time.process_time()
        if clock is not None:
            clock.start = fit_start
        res = solver.fit(op, steps=args.steps, largest=False, progress=False,
                         check_every=args.check_every,
                         callback=None if clock is None else clock.stop)
        seconds = time.perf_counter() - fit_start
        cpu_seconds = time.process_time() - cpu_start
    width = solver.k + max(4, solver.k // 2)
    row = {'world_size': world, 'rank': rank, 'nodes': n, 'k': args.k, 'width': width,
           'steps': res.steps, 'step_ms': round(1e3 * seconds / res.steps, 1),
           'step_cpu_ms': round(1e3 * cpu_seconds / res.steps, 1),
           'comm_share': round(res.stats['comm_seconds'] / seconds, 3) if world > 1 else 0.0,
           'halo_bytes_per_step': res.stats['exchange_bytes'] / res.steps,
           'reduce_bytes_per_step': res.stats['reduce_bytes'] / res.steps,
           'table_bytes': n * width * 4, 'local_rows': res.vectors.size(0),
           'build_s': round(build_s, 1), 'build_peak_mib': round(build_peak, 1),
           'peak_mib': round(peak_mib(), 1)}
    if clock is not None:
        row.update({'target_sine': args.target_sine,
                    'seconds_to_target': None if clock.reached_s is None
                    else round(clock.reached_s, 2),
                    'steps_to_target': None if clock.reached_check is None
                    else clock.reached_check * args.check_every,
                    'last_sine': clock.sines[-1], 'sine_overhead_s': round(clock.overhead, 2)})
    if world > 1:
        entries, cut = op.entry_counts()
        row.update({'halo_rows': op.exchange.num_received, 'nnz': op.nnz,
                    'cut_entries': cut,
                    'exchange_share': round(res.stats['exchange_seconds'] / seconds, 3)})
        rows = [None] * world
        dist.all_gather_object(rows, row)
        if rank == 0:
            sent = sum(r['halo_bytes_per_step'] for r in rows)
            print(json.dumps({'graph': args.graph, 'partition': part.method,
                              'sent_share_of_table': round(sent / row['table_bytes'], 4),
                              'ranks': rows}))
        dist.destroy_process_group()
    else:
        row['nnz'] = op.matrix._nnz()
        print(json.dumps({'graph': args.graph, 'ranks': [row]}))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest='command', required=True)
    p = sub.add_parser('make', help='write a synthetic graph (.npz, streamed)')
    p.add_argument('--model', choices=['sbm', 'products'], default='products')
    p.add_argument('--nodes', type=int, required=True)
    p.add_argument('--degree', type=float, default=None,
                   help='mean degree (default: 10 for sbm, 50.5 for products: 2 x 61.86M / '
                        '2.449M)')
    p.add_argument('--mixing', type=float, default=0.1,
                   help='share of edges leaving their block/community (default: %(default)s)')
    p.add_argument('--blocks', type=int, default=16, help='sbm: blocks (default: %(default)s)')
    p.add_argument('--community', type=int, default=10000,
                   help='products: nodes per community (default: %(default)s)')
    p.add_argument('--reach', type=int, default=4,
                   help='products: ring steps a leaving edge may go (default: %(default)s)')
    p.add_argument('--long-range', type=float, default=0.01,
                   help='products: share of the leaving edges that go to a uniformly random '
                        'community instead (default: %(default)s)')
    p.add_argument('--alpha', type=float, default=1.5,
                   help='products: Pareto tail exponent of the expected degrees '
                        '(default: %(default)s)')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--out', required=True)
    p = sub.add_parser('partition', help='METIS vs RCM: edge cut, halo, time')
    p.add_argument('graph')
    p.add_argument('--parts', type=int, nargs='+', default=[2])
    p.add_argument('--methods', nargs='+', default=['metis', 'rcm'], choices=['metis', 'rcm'])
    p.add_argument('--save', default=None, help='write PREFIX.METHODPARTS.pt for the fits')
    p = sub.add_parser('fit', help='a fixed number of steps; one JSON line')
    p.add_argument('graph')
    p.add_argument('--k', type=int, default=16)
    p.add_argument('--steps', type=int, default=20)
    p.add_argument('--check-every', type=int, default=25)
    p.add_argument('--kind', default='sym_laplacian')
    p.add_argument('--partition-file', default=None)
    p.add_argument('--reference', default=None,
                   help='.npy [n, k] reference vectors (the reference command): time to '
                        '--target-sine, then stop')
    p.add_argument('--target-sine', type=float, default=1e-2)
    p = sub.add_parser('reference', help='trusted eigenvectors for fit --reference')
    p.add_argument('graph')
    p.add_argument('--k', type=int, default=16)
    p.add_argument('--kind', default='sym_laplacian', choices=['sym_laplacian'])
    p.add_argument('--solver', default='lanczos', choices=['lanczos', 'shift-invert'],
                   help="common.reference_smallest's sparse solver: plain Lanczos for graphs "
                        "that expand well (SBM, products-shaped), shift-invert for meshes")
    p.add_argument('--out', required=True)
    args = parser.parse_args(argv)
    if args.command == 'make' and args.degree is None:
        args.degree = 10.0 if args.model == 'sbm' else 50.5
    {'make': cmd_make, 'partition': cmd_partition, 'fit': cmd_fit,
     'reference': cmd_reference}[args.command](args)


if __name__ == '__main__':
    sys.exit(main())
