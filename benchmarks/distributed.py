"""The distributed NeuralSVD at world size 1 and 2 on stochastic block model
graphs: time per step, share of it in communication, halo bytes per step,
peak memory per process, and the edge cut of METIS against the
dependency-free reverse Cuthill-McKee blocks.

Three commands::

    # a planted-partition graph: N nodes, B equal blocks, mean degree D
    python benchmarks/distributed.py make --nodes 100000 --blocks 16 --degree 10 --out /tmp/sbm.pt
    # edge cut and halo of METIS vs RCM blocks for 2, 4, 8 parts
    python benchmarks/distributed.py partition /tmp/sbm.pt --parts 2 4 8
    # a fixed number of steps, one process and two (rank 0 prints a JSON line)
    OMP_NUM_THREADS=1 python benchmarks/distributed.py fit /tmp/sbm.pt --k 16 --steps 50
    OMP_NUM_THREADS=1 torchrun --standalone --nproc-per-node 2 benchmarks/distributed.py fit /tmp/sbm.pt --k 16 --steps 50

Peak memory is each process's maximum resident set (``ru_maxrss``), which
includes building the whole graph matrix on every process before its row
block is cut out of it.
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


def make_sbm(nodes: int, blocks: int, degree: float, p_in_share: float = 0.9,
             seed: int = 0) -> torch.Tensor:
    r"""An undirected SBM edge list :obj:`[2, m]` with about :obj:`degree`
    edges per node, :obj:`p_in_share` of them inside the node's block;
    nodes are shuffled so that the blocks are not contiguous ids. Sampled
    edge by edge (linear time), not pair by pair."""
    rng = np.random.default_rng(seed)
    size = nodes // blocks
    m = int(nodes * degree / 2)
    m_in = int(m * p_in_share)
    src = rng.integers(0, nodes, m)
    block = np.minimum(src // size, blocks - 1)
    dst = np.empty(m, dtype=np.int64)
    lo = block[:m_in] * size
    hi = np.where(block[:m_in] == blocks - 1, nodes, lo + size)
    dst[:m_in] = lo + (rng.random(m_in) * (hi - lo)).astype(np.int64)
    dst[m_in:] = rng.integers(0, nodes, m - m_in)
    keep = src != dst
    relabel = rng.permutation(nodes)
    src, dst = relabel[src[keep]], relabel[dst[keep]]
    edge_index = np.stack([np.concatenate([src, dst]), np.concatenate([dst, src])])
    return torch.from_numpy(edge_index)


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def cmd_make(args) -> None:
    edge_index = make_sbm(args.nodes, args.blocks, args.degree, seed=args.seed)
    torch.save({'edge_index': edge_index, 'num_nodes': args.nodes}, args.out)
    print(f"{args.out}: {args.nodes} nodes, {edge_index.size(1) // 2} undirected edges")


def cmd_partition(args) -> None:
    from pyg_spectral.eigs import load_graph
    from pyg_spectral.solvers.partition import partition_nodes, partition_report
    edge_index, _, n = load_graph(args.graph)
    for parts in args.parts:
        for method in ('metis', 'rcm'):
            start = time.perf_counter()
            part = partition_nodes(edge_index, n, parts, method)
            seconds = time.perf_counter() - start
            report = partition_report(part, edge_index, n)
            print(json.dumps({'parts': parts, 'method': method, 'seconds': round(seconds, 2),
                              'edge_cut': report.edge_cut, 'num_edges': report.num_edges,
                              'cut_share': round(report.edge_cut / report.num_edges, 4),
                              'halo': report.halo, 'sizes': report.sizes}))


def cmd_fit(args) -> None:
    import torch.distributed as dist
    from pyg_spectral import GraphOperator
    from pyg_spectral.eigs import load_graph
    from pyg_spectral.solvers.distributed import (Collectives, DistributedNeuralSVD,
                                                  broadcast_partition)
    from pyg_spectral.solvers.halo import RowBlockOperator
    from pyg_spectral.solvers.partition import partition_report

    torch.set_num_threads(1)
    world = int(os.environ.get('WORLD_SIZE', '1'))
    if world > 1:
        dist.init_process_group('gloo')
    rank = dist.get_rank() if world > 1 else 0
    edge_index, weight, n = load_graph(args.graph)
    op = GraphOperator.from_edge_index(edge_index, weight, n, kind=args.kind)
    setup = time.perf_counter()
    report = None
    if world > 1:
        comm = Collectives()
        part = broadcast_partition(op, comm, method=args.partition)
        if rank == 0:
            report = partition_report(part, edge_index, n)
        del edge_index, weight
        op = RowBlockOperator.from_operator(op, part)
    setup = time.perf_counter() - setup
    solver = DistributedNeuralSVD(args.k)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', RuntimeWarning)  # a fixed budget: not converged
        start = time.perf_counter()
        res = solver.fit(op, steps=args.steps, largest=False, progress=False,
                         check_every=args.check_every)
        seconds = time.perf_counter() - start
    width = solver.k + max(4, solver.k // 2)
    row = {'world_size': world, 'rank': rank, 'nodes': n, 'k': args.k, 'width': width,
           'steps': res.steps, 'step_ms': round(1e3 * seconds / res.steps, 3),
           'comm_share': round(res.stats['comm_seconds'] / seconds, 3) if world > 1 else 0.0,
           'halo_bytes_per_step': res.stats['exchange_bytes'] / res.steps,
           'reduce_bytes_per_step': res.stats['reduce_bytes'] / res.steps,
           'table_bytes': n * width * 4, 'local_rows': res.vectors.size(0),
           'peak_mib': round(peak_mib(), 1), 'setup_s': round(setup, 2)}
    if world > 1:
        row['halo_rows'] = op.exchange.num_received
        rows = [None] * world
        dist.all_gather_object(rows, row)
        if rank == 0:
            print(json.dumps({'partition': args.partition, 'edge_cut': report.edge_cut,
                              'num_edges': report.num_edges, 'ranks': rows}))
        dist.destroy_process_group()
    else:
        print(json.dumps({'ranks': [row]}))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest='command', required=True)
    p = sub.add_parser('make')
    p.add_argument('--nodes', type=int, required=True)
    p.add_argument('--blocks', type=int, default=16)
    p.add_argument('--degree', type=float, default=10.0)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--out', required=True)
    p = sub.add_parser('partition')
    p.add_argument('graph')
    p.add_argument('--parts', type=int, nargs='+', default=[2, 4, 8])
    p = sub.add_parser('fit')
    p.add_argument('graph')
    p.add_argument('--k', type=int, default=16)
    p.add_argument('--steps', type=int, default=50)
    p.add_argument('--check-every', type=int, default=25)
    p.add_argument('--kind', default='sym_laplacian')
    p.add_argument('--partition', default='auto', choices=['auto', 'metis', 'rcm'])
    args = parser.parse_args(argv)
    {'make': cmd_make, 'partition': cmd_partition, 'fit': cmd_fit}[args.command](args)


if __name__ == '__main__':
    sys.exit(main())
