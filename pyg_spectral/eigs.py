"""``pyg-spectral eigs``: eigenpairs of a graph read from a file, in one
process or split among the processes of a ``torchrun`` launch, written to
``.npy`` files by row blocks."""
from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

# how long a process that saw a collective fail waits for the others to
# report before naming the ones that did not (dead or hung)
REPORT_WAIT_S = 1.0


def load_graph(path: str | os.PathLike) -> tuple[torch.Tensor, torch.Tensor | None, int | None]:
    r"""The :obj:`(edge_index, edge_weight, num_nodes)` of a graph file: a
    :obj:`.pt` holding an :obj:`edge_index` tensor or a dict with
    :obj:`'edge_index'` and optional :obj:`'edge_weight'` and
    :obj:`'num_nodes'`, or an :obj:`.npz` with those keys."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"graph file '{path}' does not exist")
    if path.suffix == '.npz':
        with np.load(path) as data:
            obj = {key: data[key] for key in data.files}
    elif path.suffix == '.pt':
        from .io import safe_load
        obj = safe_load(path, 'graph file', 'write it again with torch.save', weights_only=True)
    else:
        raise ValueError(f"graph file '{path}' must end in .pt or .npz")
    if not isinstance(obj, dict):
        obj = {'edge_index': obj}
    if 'edge_index' not in obj:
        raise ValueError(f"graph file '{path}' has no 'edge_index' (keys: {sorted(obj)}); save "
                         f"a dict with 'edge_index' [2, m] and optional 'edge_weight', "
                         f"'num_nodes'")
    edge_index = torch.as_tensor(obj['edge_index'])
    if edge_index.dtype != torch.long and not edge_index.is_floating_point():
        edge_index = edge_index.long()
    weight = obj.get('edge_weight')
    weight = None if weight is None else torch.as_tensor(weight)
    num_nodes = obj.get('num_nodes')
    num_nodes = None if num_nodes is None else int(np.asarray(num_nodes))
    return edge_index, weight, num_nodes


class _Reporter:
    r"""Names the processes that stopped answering. Every process records in
    the launch's key-value store (``torchrun``'s, at MASTER_ADDR:MASTER_PORT)
    that it started and, when it ends or sees a collective fail, that it
    stopped; a process whose collective failed waits a little for the
    others' records, and the ranks with none are the dead or hung ones."""

    def __init__(self, rank: int, world: int, timeout: float) -> None:
        self.rank, self.world, self.store = rank, world, None
        self.prefix = f"pyg_spectral/eigs/{os.environ.get('TORCHELASTIC_RUN_ID', 'run')}/" \
                      f"{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}/"
        try:
            self.store = dist.TCPStore(os.environ['MASTER_ADDR'], int(os.environ['MASTER_PORT']),
                                       is_master=False, timeout=timedelta(seconds=timeout))
            self.store.set(f'{self.prefix}started/{rank}', '1')
        except (KeyError, RuntimeError, ValueError):
            self.store = None  # no store to report to: failures are reported without names

    def stopped(self, how: str) -> None:
        if self.store is not None:
            try:
                self.store.set(f'{self.prefix}stopped/{self.rank}', how)
            except RuntimeError:
                pass

    def silent(self) -> list[int]:
        r"""The ranks that recorded no stop within :obj:`REPORT_WAIT_S`."""
        if self.store is None:
            return []
        deadline = time.monotonic() + REPORT_WAIT_S
        while True:
            try:
                missing = [r for r in range(self.world)
                           if not self.store.check([f'{self.prefix}stopped/{r}'])]
            except RuntimeError:
                return []
            if not missing or time.monotonic() > deadline:
                return missing
            time.sleep(0.1)


def _setup(args: argparse.Namespace) -> tuple[int, int, torch.device]:
    world = int(os.environ.get('WORLD_SIZE', '1'))
    rank = int(os.environ.get('RANK', '0'))
    device = torch.device(args.device)
    if device.type == 'cuda':
        if not torch.cuda.is_available():
            raise ValueError("--device cuda: CUDA is not available")
        if world > 1:
            device = torch.device('cuda', int(os.environ.get('LOCAL_RANK', '0')))
            torch.cuda.set_device(device)
    if world > 1:
        backend = args.backend or ('nccl' if device.type == 'cuda' else 'gloo')
        if backend == 'nccl' and device.type != 'cuda':
            raise ValueError("--backend nccl needs --device cuda")
        dist.init_process_group(backend, timeout=timedelta(seconds=args.timeout))
    return rank, world, device


def run_eigs(args: argparse.Namespace) -> int:
    r"""The ``eigs`` command (see ``pyg-spectral eigs --help``)."""
    from .operators import GraphOperator
    from .solvers.distributed import Collectives, DistributedNeuralSVD, broadcast_partition
    from .solvers.halo import RowBlockOperator
    from .solvers.partition import NodePartition, partition_nodes, partition_report

    def say(message: str) -> None:
        if rank == 0:
            print(message, file=sys.stderr, flush=True)

    rank, world, reporter = 0, 1, None
    try:
        if args.k < 1:
            raise ValueError(f"--k must be a positive integer, got {args.k}")
        if args.timeout <= 0:
            raise ValueError(f"--timeout must be positive, got {args.timeout}")
        out_dir = Path(args.out).absolute().parent
        if not out_dir.is_dir() or not os.access(out_dir, os.W_OK):
            raise ValueError(f"--out {args.out!r}: {out_dir} is not a writable directory")
        rank, world, device = _setup(args)
        if world > 1:
            reporter = _Reporter(rank, world, args.timeout)
        dtype = getattr(torch, args.dtype)
        edge_index, edge_weight, num_nodes = load_graph(args.graph)
        operator = GraphOperator.from_edge_index(edge_index, num_nodes, edge_weight,
                                                 kind=args.kind, dtype=dtype).to(device)
        n = operator.shape[0]
        say(f"pyg-spectral eigs: {n} nodes, {operator.matrix._nnz()} entries ({args.kind}), "
            f"k={args.k}, {world} process{'es' if world > 1 else ''}")
        solver = DistributedNeuralSVD(args.k, seed=args.seed, oversample=args.oversample)
        start = time.perf_counter()
        if world > 1:
            comm = Collectives()
            part = None
            if rank == 0:
                part_file = Path(args.partition_file or f'{args.out}.partition.pt')
                if part_file.exists():
                    part = NodePartition.load(part_file)
                    if part.num_nodes != n or part.num_parts != world:
                        say(f"partition file {part_file} splits {part.num_nodes} nodes into "
                            f"{part.num_parts} parts; partitioning again")
                        part = None
                if part is None:
                    part = partition_nodes(edge_index, n, world, args.partition, seed=args.seed)
                    part.save(part_file)
                say(f"partition ({part.method}): {partition_report(part, edge_index, n)}")
            part = broadcast_partition(operator, comm, partition=part)
            del edge_index, edge_weight
            operator = RowBlockOperator.from_operator(operator, part, exchange=args.exchange)
        result = solver.fit(operator, steps=args.steps, largest=args.largest, tol=args.tol,
                            check_every=args.check_every, progress=not args.no_progress,
                            refine=True, checkpoint=args.checkpoint,
                            checkpoint_every=args.checkpoint_every, resume=not args.no_resume)
        result.save(args.out)
        if reporter is not None:
            reporter.stopped('done')
        seconds = time.perf_counter() - start
        values = ' '.join(f'{v:.6g}' for v in result.eigenvalues.tolist())
        say(f"{'converged' if result.converged else 'NOT converged'} after {result.steps} steps "
            f"({seconds:.1f} s; residual {result.residual:.2g}); eigenvalues: {values}")
        say(f"wrote {args.out}.vectors.npy [{n}, {args.k}] and {args.out}.values.npy")
        return 0
    except (ValueError, FileNotFoundError, TypeError) as err:
        if reporter is not None:
            reporter.stopped('error')
        print(f'pyg-spectral eigs: error: rank {rank}: {err}', file=sys.stderr, flush=True)
        return 2
    except RuntimeError as err:  # gloo reports a dead or hung peer as a plain RuntimeError
        if world == 1 or reporter is None:
            raise
        first = (str(err).strip().splitlines() or [''])[0][:300]
        # said at once: the launcher may stop this process while it waits below
        print(f"pyg-spectral eigs: error: rank {rank} failed ({type(err).__name__}: {first}); "
              f"the output files were not completed", file=sys.stderr, flush=True)
        reporter.stopped('error')
        silent = reporter.silent()
        if silent:
            print(f"pyg-spectral eigs: error: rank {rank}: rank{'s' if len(silent) > 1 else ''} "
                  f"{', '.join(map(str, silent))} stopped answering (died, or hung past "
                  f"--timeout {args.timeout:g} s)", file=sys.stderr, flush=True)
        return 1
    finally:
        if world > 1 and dist.is_initialized():
            dist.destroy_process_group()
