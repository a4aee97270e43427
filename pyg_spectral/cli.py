"""``pyg-spectral`` command line (also ``python -m pyg_spectral``)."""
from __future__ import annotations

import argparse
import json
import os
import sys

from .datasets import PLANETOID_NAMES


def _dataset_name(name: str) -> str:
    if name.startswith('ogbn-'):
        return name
    for valid in PLANETOID_NAMES:
        if name.lower() == valid.lower():
            return valid
    raise argparse.ArgumentTypeError(
        f"unknown dataset {name!r}; valid: {', '.join(PLANETOID_NAMES)} "
        f"or an OGB node dataset 'ogbn-...'")


def build_parser() -> argparse.ArgumentParser:
    from .bench.node_classification import BASIS_LR, BASIS_SCHEDULES
    from .bench.registry import available_models

    parser = argparse.ArgumentParser(prog='pyg-spectral', description=__doc__)
    sub = parser.add_subparsers(dest='command', required=True)
    bench = sub.add_parser('bench', help='run a benchmark')
    bench_sub = bench.add_subparsers(dest='benchmark', required=True)
    p = bench_sub.add_parser(
        'planetoid', help='semi-supervised node classification, public split',
        description='Trains each model from scratch for each seed on the public split and '
                    'prints one row per (dataset, model, k): seeds, epochs, test accuracy at '
                    'the epoch of best validation accuracy (mean ± std over seeds), ms per '
                    'training epoch, total seconds and the peak memory of that model alone. '
                    'The defaults (10 seeds, 200 epochs) are the settings of the numbers in '
                    'benchmarks/RESULTS.md.')
    p.add_argument('--dataset', type=_dataset_name, nargs='+', default=['Cora'],
                   help=f"datasets to run, {'|'.join(PLANETOID_NAMES)} or an OGB node dataset "
                        f"ogbn-* (default: Cora)")
    models = available_models()
    p.add_argument('--model', nargs='+', default=['gcn'], choices=list(models),
                   help='models to run (default: gcn); ' + '; '.join(
                       f'{m}: {s.description}' for m, s in models.items()))
    p.add_argument('--k', type=int, nargs='+', default=None,
                   help='ranks to sweep for the low-rank models (default: their own, 16); '
                        'models without a rank run once')
    p.add_argument('--seeds', type=int, default=10,
                   help='runs per model, seeds 0..N-1 (default: %(default)s)')
    p.add_argument('--epochs', type=int, default=200,
                   help='training epochs per seed (default: %(default)s)')
    p.add_argument('--lr', type=float, default=0.01,
                   help='Adam learning rate of the model (default: %(default)s)')
    p.add_argument('--weight-decay', type=float, default=5e-4,
                   help='Adam weight decay, every parameter (default: %(default)s)')
    p.add_argument('--basis-lr', type=float, default=BASIS_LR,
                   help='learning rate of an amortized eigenbasis (default: %(default)s)')
    p.add_argument('--basis-schedule', choices=BASIS_SCHEDULES, default='cosine',
                   help='learning rate of an amortized eigenbasis: decayed to 0 over the '
                        'epochs, or constant like the rest of the model (default: %(default)s)')
    p.add_argument('--largest-component', action='store_true',
                   help='train and test on the largest connected component only '
                        '(default: the whole graph)')
    p.add_argument('--device', default='cpu',
                   help='cpu | cuda | cuda:N (default: %(default)s)')
    p.add_argument('--threads', type=int, default=1,
                   help='intra-op CPU threads (torch.set_num_threads) for the whole run; 0 '
                        "leaves torch's own choice (OMP_NUM_THREADS or one per core). One is "
                        'the default because on a shared or busy CPU more threads spin on busy '
                        'cores: the Cora run took 19 min with two threads on a loaded 2-core '
                        'machine, about 2 min with one (default: %(default)s)')
    p.add_argument('--out', help='also write the results as JSON to this path, after every run '
                                 '(default: none, the table only)')
    p.add_argument('--no-progress', action='store_true',
                   help='no progress bar (default: a bar per run, on stderr)')
    add_eigs_parser(sub)
    add_partition_parser(sub)
    return parser


GRAPH_HELP = ("an .npz with 'edge_index' [2, m] and optional 'edge_weight' [m], 'num_nodes' "
              "(uncompressed members are read a chunk of edges at a time), an .npy holding "
              "edge_index, or a .pt holding an edge_index tensor or a dict with those keys "
              "(loaded whole)")


def add_eigs_parser(sub) -> None:
    from .operators.graph import SYMMETRIC_KINDS
    from .solvers.partition import PARTITION_METHODS
    e = sub.add_parser(
        'eigs', help='eigenpairs of a big graph, one process or several (torchrun)',
        description="Fits k eigenpairs of a graph matrix with NeuralSVD and writes "
                    "PREFIX.vectors.npy ([n, k], rows in the original node order, columns "
                    "ordered by eigenvalue, smallest first unless --largest) and "
                    "PREFIX.values.npy ([k]). The plain end of the spectrum is fitted: for a "
                    "Laplacian the trivial eigenvectors (one per connected component, "
                    "eigenvalue 0) are included. Under `torchrun --nproc-per-node N -m "
                    "pyg_spectral eigs ...` the nodes are split among the N processes, and no "
                    "process ever holds the whole table; the files are written under "
                    "temporary names and renamed once complete.")
    e.add_argument('graph', help=GRAPH_HELP)
    e.add_argument('--k', type=int, required=True, help='number of eigenpairs')
    e.add_argument('--out', required=True, help='output prefix: PREFIX.vectors.npy, '
                                                'PREFIX.values.npy, PREFIX.partition.pt')
    e.add_argument('--kind', default='sym_laplacian', choices=sorted(SYMMETRIC_KINDS),
                   help='graph matrix (default: %(default)s)')
    e.add_argument('--largest', action='store_true',
                   help='the largest eigenvalues (default: the smallest)')
    e.add_argument('--steps', type=int, default=3000, help='maximum steps (default: %(default)s)')
    e.add_argument('--tol', type=float, default=1e-5,
                   help='stop when every Ritz residual is below tol times the spectral bound '
                        '(default: %(default)s)')
    e.add_argument('--check-every', type=int, default=25)
    e.add_argument('--seed', type=int, default=0)
    e.add_argument('--oversample', type=int, default=None,
                   help='extra columns fitted beside the k (default: max(4, k // 2))')
    e.add_argument('--dtype', choices=['float32', 'float64'], default='float32')
    e.add_argument('--device', default='cpu', help="cpu | cuda (under torchrun: each process "
                                                   "takes cuda:LOCAL_RANK)")
    e.add_argument('--backend', choices=['gloo', 'nccl'], default=None,
                   help='torch.distributed backend (default: nccl on cuda, else gloo)')
    e.add_argument('--partition', choices=[m for m in PARTITION_METHODS if m != 'contiguous'],
                   default='auto', help='METIS (pip install pyg-spectral[distributed]) or '
                                        'reverse Cuthill-McKee blocks; auto: METIS when '
                                        'installed')
    e.add_argument('--partition-file', default=None,
                   help='the partition to use, written by pyg-spectral partition (default: '
                        'PREFIX.partition.pt, reused if it fits, else made by rank 0 from the '
                        'whole graph and written)')
    e.add_argument('--exchange', choices=['auto', 'all_to_all', 'p2p'], default='auto',
                   help='halo exchange: one all_to_all_single, or pairwise isend/irecv for '
                        'backends without it')
    e.add_argument('--checkpoint', default=None,
                   help='checkpoint directory; a run finds its last checkpoint there and '
                        'resumes (every process from the same step)')
    e.add_argument('--checkpoint-every', type=int, default=None,
                   help='steps between checkpoints (default: 10 x --check-every)')
    e.add_argument('--no-resume', action='store_true',
                   help='start afresh even if --checkpoint holds a checkpoint')
    e.add_argument('--timeout', type=float, default=300.0,
                   help='seconds a collective may wait for the other processes before the run '
                        'fails (a dead process is named; default: %(default)s)')
    e.add_argument('--no-progress', action='store_true')


def add_partition_parser(sub) -> None:
    from .solvers.partition import PARTITION_METHODS
    p = sub.add_parser(
        'partition', help="split a graph's nodes for a later eigs launch",
        description="Splits the nodes of a graph into --parts blocks (METIS, or reverse "
                    "Cuthill-McKee blocks) and saves the split, with its edge cut and halo "
                    "per part printed. Run it once before `torchrun --nproc-per-node N -m "
                    "pyg_spectral eigs GRAPH --partition-file FILE ...`: the partitioner holds "
                    "the whole graph, and here it does so in its own process, not in the "
                    "fit's.")
    p.add_argument('graph', help=GRAPH_HELP)
    p.add_argument('--parts', type=int, required=True,
                   help='number of blocks: the number of processes of the eigs launch')
    p.add_argument('--out', required=True, help='the partition file to write (.pt)')
    p.add_argument('--method', choices=[m for m in PARTITION_METHODS if m != 'contiguous'],
                   default='auto', help='METIS (pip install pyg-spectral[distributed]) or '
                                        'reverse Cuthill-McKee blocks; auto: METIS when '
                                        'installed (default: %(default)s)')
    p.add_argument('--seed', type=int, default=0, help="METIS's seed (default: %(default)s)")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == 'eigs':
        from .eigs import run_eigs
        return run_eigs(args)
    if args.command == 'partition':
        from .eigs import run_partition
        return run_partition(args)
    return bench(args)


def bench(args: argparse.Namespace) -> int:
    from .bench.node_classification import (as_dict, format_table, resolve_device,
                                            run_node_classification)
    from .bench.registry import get_model
    from .io import atomic_write_text
    try:
        resolve_device(args.device)
        if args.threads < 0:
            raise ValueError(f"--threads must be >= 0, got {args.threads}")
        if args.k is not None and any(k < 1 for k in args.k):
            raise ValueError(f"--k must be positive integers, got {args.k}")
        if args.out:  # before the run, not after it: a bad path must not lose the results
            out_dir = os.path.dirname(os.path.abspath(args.out))
            if not os.path.isdir(out_dir) or not os.access(out_dir, os.W_OK):
                raise ValueError(f"--out {args.out!r}: {out_dir} is not a writable directory")
        if args.threads:  # the application's choice; the library never sets it
            import torch
            torch.set_num_threads(args.threads)
        runs = [(d, m, k) for d in args.dataset for m in args.model
                for k in (args.k or [None] if 'k' in get_model(m).options else [None])]
        results = []
        for d, m, k in runs:
            results.append(run_node_classification(
                d, m, seeds=args.seeds, epochs=args.epochs, lr=args.lr,
                weight_decay=args.weight_decay, device=args.device,
                progress=not args.no_progress, basis_schedule=args.basis_schedule,
                largest_component=args.largest_component, k=k, basis_lr=args.basis_lr))
            if args.out:  # after every run: a stopped sweep keeps what it finished
                atomic_write_text(json.dumps([as_dict(r) for r in results], indent=2), args.out)
    except (ValueError, FileNotFoundError) as err:
        print(f'pyg-spectral: error: {err}', file=sys.stderr)
        return 2
    print(format_table(results))
    return 0
