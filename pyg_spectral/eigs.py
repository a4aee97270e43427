"""``pyg-spectral eigs``: eigenpairs of a graph read from a file, in one
process or split among the processes of a ``torchrun`` launch (each
building its own rows of the graph matrix from the file, a chunk of edges
at a time), written to ``.npy`` files by row blocks; and ``pyg-spectral
partition``, the node split such a launch reuses."""
from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

# how long a process that saw a collective fail waits for the others to
# report before naming the ones that did not (dead or hung)
REPORT_WAIT_S = 1.0


def load_graph(path: str | os.PathLike) -> tuple[torch.Tensor, torch.Tensor | None, int | None]:
    r"""The :obj:`(edge_index, edge_weight, num_nodes)` of a graph file, read
    whole: a :obj:`.pt` holding an :obj:`edge_index` tensor or a dict with
    :obj:`'edge_index'` and optional :obj:`'edge_weight'` and
    :obj:`'num_nodes'`, an :obj:`.npz` with those keys, or an :obj:`.npy`
    holding :obj:`edge_index` (:class:`~pyg_spectral.graph_file.GraphFile`)."""
    from .graph_file import GraphFile
    return GraphFile(path).load()


def run_partition(args: argparse.Namespace) -> int:
    r"""The ``partition`` command: splits a graph's nodes once, in its own
    process, so that a later ``eigs`` launch reuses the split instead of
    paying for the partitioner (which holds the whole graph) inside the
    fit."""
    from .solvers.partition import partition_nodes, partition_report
    try:
        if args.parts < 1:
            raise ValueError(f"--parts must be a positive integer, got {args.parts}")
        out_dir = Path(args.out).absolute().parent
        if not out_dir.is_dir() or not os.access(out_dir, os.W_OK):
            raise ValueError(f"--out {args.out!r}: {out_dir} is not a writable directory")
        edge_index, _, num_nodes = load_graph(args.graph)
        start = time.perf_counter()
        part = partition_nodes(edge_index, num_nodes, args.parts, args.method, seed=args.seed)
        seconds = time.perf_counter() - start
        part.save(args.out)
        report = partition_report(part, edge_index, part.num_nodes)
        print(f"{args.out}: {part.num_nodes} nodes into {args.parts} parts ({part.method}, "
              f"{seconds:.1f} s); {report}")
        return 0
    except (ValueError, FileNotFoundError, TypeError, ImportError) as err:
        print(f'pyg-spectral partition: error: {err}', file=sys.stderr, flush=True)
        return 2


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


def _partition(args: argparse.Namespace, graph, comm, say):
    r"""Rank 0's partition for a launch of :obj:`comm.world_size` processes:
    the saved one (``--partition-file``, default ``PREFIX.partition.pt``)
    when it splits this graph into that many parts, else a new one, made
    here from the whole graph and saved; the new one costs this process the
    memory of the whole graph, which ``pyg-spectral partition`` run
    beforehand avoids."""
    from .solvers.partition import NodePartition, partition_nodes
    world = comm.world_size
    given = args.partition_file is not None
    part_file = Path(args.partition_file or f'{args.out}.partition.pt')
    if part_file.exists():
        part = NodePartition.load(part_file)
        fits = part.num_parts == world and (graph.num_nodes is None
                                            or part.num_nodes == graph.num_nodes)
        if fits:
            say(f"partition: reusing {part_file}")
            return part
        if given:
            raise ValueError(f"--partition-file {part_file} splits {part.num_nodes} nodes into "
                             f"{part.num_parts} parts, but the graph has "
                             f"{graph.num_nodes} nodes and there are {world} processes; run "
                             f"pyg-spectral partition {args.graph} --parts {world} --out FILE")
        say(f"partition file {part_file} splits {part.num_nodes} nodes into "
            f"{part.num_parts} parts; partitioning again")
    elif given:
        raise ValueError(f"--partition-file {part_file} does not exist; write it with "
                         f"pyg-spectral partition {args.graph} --parts {world} --out "
                         f"{part_file}")
    say("partition: none saved; rank 0 loads the whole graph to make one (run pyg-spectral "
        "partition beforehand to keep that out of the fit)")
    edge_index, _, num_nodes = graph.load()
    part = partition_nodes(edge_index, num_nodes, world, args.partition, seed=args.seed)
    del edge_index
    part.save(part_file)
    return part


def run_eigs(args: argparse.Namespace) -> int:
    r"""The ``eigs`` command (see ``pyg-spectral eigs --help``)."""
    from .graph_file import GraphFile
    from .operators import GraphOperator
    from .solvers.distributed import Collectives, DistributedNeuralSVD, share_partition
    from .solvers.local_rows import local_graph_rows
    from .solvers.partition import PartitionReport

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
        solver = DistributedNeuralSVD(args.k, seed=args.seed, oversample=args.oversample)
        if world == 1:
            edge_index, edge_weight, num_nodes = load_graph(args.graph)
            operator = GraphOperator.from_edge_index(edge_index, edge_weight=edge_weight,
                                                     num_nodes=num_nodes,
                                                     kind=args.kind, dtype=dtype).to(device)
            del edge_index, edge_weight
            n = operator.shape[0]
            say(f"pyg-spectral eigs: {n} nodes, {operator.matrix._nnz()} entries ({args.kind}), "
                f"k={args.k}, 1 process")
            start = time.perf_counter()
        else:
            graph = GraphFile(args.graph)
            comm = Collectives()
            part, n = None, 0
            if rank == 0:
                try:
                    part = _partition(args, graph, comm, say)
                    n = part.num_nodes
                except BaseException:
                    comm.broadcast(torch.tensor([-1]))  # the others stop too, not time out
                    raise
            n = int(comm.broadcast(torch.tensor([n]))[0])
            if n < 0:
                raise ValueError("rank 0 found no usable partition (its error says why)")
            part = share_partition(part, n, comm)
            start = time.perf_counter()
            operator = local_graph_rows(graph.chunks(), part, args.kind, dtype,
                                        exchange=args.exchange, device=device,
                                        num_edges=graph.num_edges)
            counts = [None] * world
            dist.all_gather_object(counts, (operator.num_local, operator.exchange.num_received,
                                            *operator.entry_counts()))
            report = PartitionReport([c[0] for c in counts], sum(c[3] for c in counts) // 2,
                                     [c[1] for c in counts], sum(c[2] for c in counts) // 2)
            say(f"pyg-spectral eigs: {n} nodes, k={args.k}, {world} processes, each building "
                f"its rows from {args.graph}{'' if graph.streamed else ' (loaded whole)'} in "
                f"{time.perf_counter() - start:.1f} s; partition ({part.method}): {report}")
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
