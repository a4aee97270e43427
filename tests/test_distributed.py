r"""The distributed NeuralSVD (pyg_spectral.solvers.distributed) against
ground truth: dense eigh and closed-form spectra on small graphs, and the
single-process fit. Several processes are launched the way users launch
them, with ``python -m torch.distributed.run`` (torchrun) on gloo, running
this file as the worker script (see ``worker`` at the bottom)."""
from __future__ import annotations

import functools
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch_geometric.utils import stochastic_blockmodel_graph

from graphs import cycle_graph, grid_graph, grid_laplacian_spectrum, path_graph
from pyg_spectral import GraphOperator, NeuralSVD
from pyg_spectral.metrics import max_principal_sine, relative_error
from pyg_spectral.graph_file import GraphFile, GraphWriter
from pyg_spectral.operators.graph import DirectedGraphError
from pyg_spectral.solvers.distributed import DistributedNeuralSVD, random_rows
from pyg_spectral.solvers.halo import RowBlockOperator
from pyg_spectral.solvers.local_rows import local_graph_rows
from pyg_spectral.solvers.partition import NodePartition, partition_nodes, partition_report

HERE = Path(__file__).resolve()
REPO = HERE.parents[1]
TOL = 1e-9          # Ritz residual / spectral bound at which both fits stop
STEPS = 6000


def sbm_graph() -> torch.Tensor:
    generator_state = torch.get_rng_state()
    torch.manual_seed(0)
    p = torch.full((4, 4), 0.02).fill_diagonal_(0.3)
    edge_index = stochastic_blockmodel_graph([40, 50, 45, 55], p)
    torch.set_rng_state(generator_state)
    return edge_index


def components_graph() -> torch.Tensor:
    r"""A 30-node path, a 25-node cycle and a 5 x 6 grid: Laplacian
    eigenvalue 0 three times, then 0.01095 (the path's), then 0.0437."""
    return torch.cat([path_graph(30), cycle_graph(25) + 30, grid_graph(5, 6) + 55], 1)


# name: (edge_index, num_nodes, kind, k)
GRAPHS = {
    'grid': (grid_graph(12, 9), 108, 'laplacian', 6),
    'components': (components_graph(), 85, 'laplacian', 4),
    'sbm': (sbm_graph(), 190, 'sym_laplacian', 4),
}


def operator(name: str) -> GraphOperator:
    edge_index, n, kind, _ = GRAPHS[name]
    return GraphOperator.from_edge_index(edge_index, num_nodes=n, kind=kind, dtype=torch.float64)


def uneven_partition(name: str, world: int) -> tuple[NodePartition, str]:
    r"""The split and the halo exchange each launch uses: uneven blocks,
    including a random assignment (the largest halos) and METIS."""
    edge_index, n, _, _ = GRAPHS[name]
    if world == 2:
        if name == 'grid':   # 45 / 63 nodes, randomly assigned
            parts = torch.zeros(n, dtype=torch.long)
            parts[torch.randperm(n, generator=torch.Generator().manual_seed(1))[:63]] = 1
            return NodePartition.from_assignment(parts, 2), 'p2p'
        if name == 'components':
            return partition_nodes(edge_index, n, 2, 'rcm', sizes=[20, 65]), 'all_to_all'
        return partition_nodes(edge_index, n, 2, 'metis'), 'all_to_all'
    if name == 'grid':
        return partition_nodes(edge_index, n, 3, 'contiguous', sizes=[20, 50, 38]), 'all_to_all'
    if name == 'components':
        return partition_nodes(edge_index, n, 3, 'rcm', sizes=[40, 15, 30]), 'p2p'
    return partition_nodes(edge_index, n, 3, 'metis'), 'all_to_all'


@functools.lru_cache(maxsize=None)  # read only: each world size's test compares with it
def single_process_fit(name: str):
    _, _, _, k = GRAPHS[name]
    return NeuralSVD(k).fit(operator(name), largest=False, tol=TOL, steps=STEPS, refine=True,
                            progress=False)


def exact(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.linalg.eigh(operator(name).to_dense())


KINDS = ('adjacency', 'gcn', 'sym_adjacency', 'laplacian', 'sym_laplacian')


def messy_graph() -> tuple[torch.Tensor, torch.Tensor, int]:
    r"""A 7 x 5 grid plus two isolated nodes, duplicated edges (both
    directions), self-loops (one of them twice), edges in shuffled order,
    and symmetric weights that are not all equal: what a whole-matrix build
    coalesces, symmetrises and normalises."""
    n = 37
    grid = grid_graph(7, 5)
    extra = grid[:, :5]
    edge_index = torch.cat([grid, extra, extra.flip(0), torch.tensor([[3, 3, 4], [3, 3, 4]])], 1)
    edge_index = edge_index[:, torch.randperm(edge_index.size(1),
                                              generator=torch.Generator().manual_seed(0))]
    pair = torch.minimum(edge_index[0], edge_index[1]) * n + torch.maximum(*edge_index)
    weight = (pair % 7 + 1).double() / 3 + 1e-3
    return edge_index, weight, n


def edge_chunks(edge_index: torch.Tensor, edge_weight: torch.Tensor | None, size: int = 13):
    return [(edge_index[:, s:s + size], None if edge_weight is None else edge_weight[s:s + size])
            for s in range(0, edge_index.size(1), size)]


def compare_blocks(whole: RowBlockOperator, local: RowBlockOperator) -> dict:
    r"""How a rank-local block differs from the block cut out of the whole
    matrix: structure, exchange plan and bounds must be equal; the values'
    largest difference is returned."""
    a, b = whole.matrix, local.matrix
    return {'structure': torch.equal(a.crow_indices(), b.crow_indices())
            and torch.equal(a.col_indices(), b.col_indices()) and a.shape == b.shape,
            'plan': torch.equal(whole.nodes, local.nodes)
            and torch.equal(whole.exchange.send_index, local.exchange.send_index)
            and whole.exchange.recv_counts == local.exchange.recv_counts,
            'bounds': whole.spectral_bounds() == local.spectral_bounds(),
            'exact': torch.equal(a.values(), b.values()),
            'diff': float((a.values() - b.values()).abs().max()) if a.values().numel() else 0.0}


def local_build_checks(partition: NodePartition, group=None) -> dict:
    r"""Every kind, unweighted, weighted and with mirror weights that differ
    by rounding, float32 and float64: this process's block built from edge
    chunks against the one cut from the whole matrix (one process, or a
    launch: then each rank checks its own)."""
    edge_index, weight, n = messy_graph()
    out = {}
    for kind in KINDS:
        for dtype in (torch.float32, torch.float64):
            # mirrors that differ by rounding: both builds average them
            near = torch.where(edge_index[0] < edge_index[1],
                               weight.to(dtype) * (1 + 4 * torch.finfo(dtype).eps),
                               weight.to(dtype))
            for w, name in ((None, 'unweighted'), (weight, 'weighted'), (near, 'near')):
                matrix = GraphOperator.from_edge_index(edge_index, edge_weight=w, num_nodes=n,
                                                       kind=kind, dtype=dtype)
                whole = RowBlockOperator.from_operator(matrix, partition, group)
                local = local_graph_rows(edge_chunks(edge_index, w), partition, kind, dtype,
                                         group)
                out[kind, name, str(dtype)] = compare_blocks(whole, local)
    return out


def assert_local_builds_match(checks: dict) -> None:
    assert len(checks) == len(KINDS) * 6
    for (kind, weights, dtype), got in checks.items():
        assert got['structure'] and got['plan'] and got['bounds'], (kind, weights, dtype, got)
        if weights == 'unweighted':  # counts and their square roots: the same bits
            assert got['exact'], (kind, dtype, got)
        else:  # weights summed in another order: rounding
            assert got['diff'] < (1e-5 if dtype == 'torch.float32' else 1e-13), (kind, dtype, got)


def launch(world: int, *args: str, timeout: float = 300, target: tuple = (str(HERE),),
           check: bool = True) -> subprocess.CompletedProcess:
    r"""``torchrun --standalone --nproc-per-node WORLD TARGET ARGS`` (TARGET:
    this file by default, or ``-m pyg_spectral``)."""
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=str(REPO))
    # its own session, so that a timeout kills the workers with torchrun
    # (killing torchrun alone leaves them running)
    with subprocess.Popen(
            [sys.executable, '-m', 'torch.distributed.run', '--standalone',
             f'--nproc-per-node={world}', '--monitor-interval=0.1', *target, *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO,
            start_new_session=True) as popen:
        try:
            stdout, stderr = popen.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(popen.pid, signal.SIGKILL)
            popen.communicate()
            raise
    proc = subprocess.CompletedProcess(popen.args, popen.returncode, stdout, stderr)
    if check:
        assert proc.returncode == 0, f"launch failed:\n{proc.stdout}\n{proc.stderr[-6000:]}"
    return proc


@pytest.fixture(scope='module', params=[2, 3], ids=['world2', 'world3'])
def launched(request, tmp_path_factory) -> tuple[int, Path, dict]:
    r"""One launch per world size fits the three graphs (in memory, and
    written with ``save``) and runs a checkpointed fit twice; rank 0 saves
    what the tests check."""
    world = request.param
    out = tmp_path_factory.mktemp(f'world{world}')
    edge_index, n = GRAPHS['sbm'][0], GRAPHS['sbm'][1]
    with GraphWriter(out / 'sbm.npz', n, edge_index.size(1)) as writer:
        for start in range(0, edge_index.size(1), 101):
            writer.write(edge_index[:, start:start + 101])
    launch(world, 'worker', str(out))
    return world, out, torch.load(out / 'results.pt', weights_only=True)


# ------------------------------------------------------------- in-process
def test_partitions_hold_every_node_and_report_true_cuts_and_halos(tmp_path):
    edge_index, n, _, _ = GRAPHS['sbm']
    A = torch.zeros(n, n, dtype=torch.bool)
    A[edge_index[0], edge_index[1]] = True
    A |= A.T.clone()
    A.fill_diagonal_(False)
    for method, sizes in (('metis', None), ('rcm', None), ('rcm', [30, 100, 60]),
                          ('contiguous', [100, 50, 40])):
        part = partition_nodes(edge_index, n, 3, method, sizes=sizes)
        assert torch.equal(part.perm.sort().values, torch.arange(n))
        if sizes is not None:
            assert part.sizes == sizes
        owner = part.assignment()
        report = partition_report(part, edge_index, n)
        cross = A & (owner[:, None] != owner[None, :])
        assert report.edge_cut == int(cross.sum()) // 2
        for p in range(3):
            mine = owner == p
            assert report.halo[p] == int((cross[mine].any(0) & ~mine).sum())
        part.save(tmp_path / f'{method}.pt')
        again = NodePartition.load(tmp_path / f'{method}.pt')
        assert torch.equal(again.perm, part.perm) and torch.equal(again.offsets, part.offsets)
    # a random 3-way split cuts about 2/3 of the edges; METIS follows the blocks
    metis = partition_report(partition_nodes(edge_index, n, 3, 'metis'), edge_index, n)
    assert metis.edge_cut < 0.5 * metis.num_edges and metis.num_edges == int(A.sum()) // 2
    with pytest.raises(ValueError, match='sizes must be 3 positive numbers'):
        partition_nodes(edge_index, n, 3, 'rcm', sizes=[100, 90])
    with pytest.raises(ValueError, match='sizes= sets the blocks'):
        partition_nodes(edge_index, n, 3, 'metis', sizes=[100, 50, 40])


def test_random_start_does_not_depend_on_the_partition():
    nodes = torch.randperm(200_000, generator=torch.Generator().manual_seed(0))[:5000]
    full = random_rows(torch.arange(200_000), 3, seed=7)
    assert torch.equal(random_rows(nodes, 3, seed=7), full[nodes])
    assert not torch.equal(random_rows(nodes, 3, seed=8), full[nodes])


def test_row_block_loop_in_one_process_matches_neuralsvd_and_closed_form():
    r"""The partitioned loop itself (a RowBlockOperator, no process group)
    against NeuralSVD.fit and the grid's closed-form spectrum."""
    op = operator('grid')
    block = RowBlockOperator.from_operator(op, partition_nodes(GRAPHS['grid'][0], 108, 1, 'rcm'))
    res = DistributedNeuralSVD(6).fit(block, largest=False, tol=TOL, steps=STEPS, refine=True,
                                      progress=False)
    ref = single_process_fit('grid')
    truth = grid_laplacian_spectrum(12, 9)[:6]
    assert res.converged and ref.converged
    assert float(relative_error(res.eigenvalues, truth, floor=1e-2).max()) < 1e-6
    assert float(relative_error(res.eigenvalues, ref.eigenvalues, floor=1e-2).max()) < 1e-4
    V = res.gather()
    assert max_principal_sine(V, ref.eigenvectors) < 1e-3
    assert max_principal_sine(V, exact('grid')[1][:, :6]) < 1e-3
    # the library's sign convention: same vectors, not only the same span
    assert float((V - ref.eigenvectors).abs().max()) < 1e-3


def test_one_process_is_neuralsvd_itself():
    op = operator('sbm')
    a = DistributedNeuralSVD(4).fit(op, largest=False, tol=TOL, steps=STEPS, progress=False,
                                    refine=True)
    b = NeuralSVD(4).fit(op, largest=False, tol=TOL, steps=STEPS, progress=False, refine=True)
    assert torch.equal(a.eigenvalues, b.eigenvalues) and torch.equal(a.vectors, b.eigenvectors)
    with pytest.raises(ValueError, match='checkpoint= is for fits split among processes'):
        DistributedNeuralSVD(4).fit(op, checkpoint='x', progress=False)


def test_graph_files_stream_the_edges_they_hold(tmp_path):
    r"""Each format, read a chunk at a time and whole, gives back the edge
    list; uncompressed .npz members and .npy are read from disk piece by
    piece, in C order and in the Fortran order GraphWriter writes."""
    edge_index, weight, n = messy_graph()
    e, w = edge_index.numpy(), weight.numpy()
    np.savez(tmp_path / 'c.npz', edge_index=e, edge_weight=w, num_nodes=n)
    np.savez(tmp_path / 'f.npz', edge_index=np.asfortranarray(e.astype(np.int32)))
    np.savez_compressed(tmp_path / 'z.npz', edge_index=e, edge_weight=w)
    np.save(tmp_path / 'e.npy', e)
    torch.save({'edge_index': edge_index, 'edge_weight': weight, 'num_nodes': n},
               tmp_path / 'd.pt')
    with GraphWriter(tmp_path / 'w.npz', n, e.shape[1], weighted=True,
                     weight_dtype=np.float64) as writer:
        for chunk, chunk_weight in edge_chunks(edge_index, weight, 10):
            writer.write(chunk, chunk_weight)
    expected = {'c.npz': (True, n, True), 'f.npz': (True, None, False),
                'z.npz': (False, None, True), 'e.npy': (True, None, False),
                'd.pt': (False, n, True), 'w.npz': (True, n, True)}
    for name, (streamed, num_nodes, weighted) in expected.items():
        graph = GraphFile(tmp_path / name)
        assert (graph.streamed, graph.num_nodes, graph.weighted) == (streamed, num_nodes,
                                                                     weighted), name
        chunks = list(graph.chunks(11))
        assert all(c.size(1) <= 11 and c.dtype == torch.long for c, _ in chunks)
        assert torch.equal(torch.cat([c for c, _ in chunks], 1), edge_index), name
        whole, whole_weight, _ = graph.load()
        assert torch.equal(whole, edge_index), name
        if weighted:
            assert torch.equal(torch.cat([c for _, c in chunks]), weight), name
            assert torch.equal(whole_weight, weight), name
    loaded = np.load(tmp_path / 'w.npz')  # a plain .npz to numpy too
    assert np.array_equal(loaded['edge_index'], e) and int(loaded['num_nodes']) == n
    # a cut-short file is named; a writer given too few edges leaves no file
    raw = (tmp_path / 'e.npy').read_bytes()
    (tmp_path / 'cut.npy').write_bytes(raw[:-8])
    with pytest.raises(ValueError, match="cut.npy' is truncated"):
        list(GraphFile(tmp_path / 'cut.npy').chunks())
    with pytest.raises(ValueError, match='edges were written, not num_edges'):
        with GraphWriter(tmp_path / 'short.npz', n, e.shape[1]) as writer:
            writer.write(e[:, :10])
    assert [p.name for p in tmp_path.iterdir() if 'short' in p.name] == []
    np.savez(tmp_path / 'float.npz', edge_index=e.astype(np.float64))
    with pytest.raises(TypeError, match='save it as integers'):
        GraphFile(tmp_path / 'float.npz').load()


def test_rank_local_build_equals_the_whole_matrix_block_in_one_process():
    r"""One process (no group): every kind, with loops, duplicates,
    isolated nodes and weights, built from edge chunks, is the whole
    matrix's block; a directed graph is refused as GraphOperator refuses
    it."""
    edge_index, weight, n = messy_graph()
    assert_local_builds_match(local_build_checks(partition_nodes(edge_index, n, 1, 'rcm')))
    part = partition_nodes(edge_index, n, 1, 'rcm')
    directed = torch.cat([edge_index, torch.tensor([[0], [20]])], 1)
    with pytest.raises(DirectedGraphError, match='directed graph'):
        local_graph_rows(edge_chunks(directed, None), part, 'sym_laplacian')
    lopsided = weight.clone()
    lopsided[(edge_index[0] == 0) & (edge_index[1] == 1)] += 0.5
    with pytest.raises(DirectedGraphError, match='directed graph'):
        local_graph_rows(edge_chunks(edge_index, lopsided), part, 'laplacian')
    with pytest.raises(ValueError, match='partition this graph again'):
        local_graph_rows(edge_chunks(edge_index + 40, None), part, 'laplacian')
    with pytest.raises(ValueError, match='partition has 2 parts but there are 1 processes'):
        local_graph_rows(edge_chunks(edge_index, None), partition_nodes(edge_index, n, 2, 'rcm'))


# ------------------------------------------------------------- launched
def test_rank_local_build_equals_the_whole_matrix_block_on_every_rank(launched):
    r"""At world size 2 and 3 each rank's block built from edge chunks (no
    whole matrix) equals the block cut from the whole matrix, kind by kind,
    and a graph directed only across the partition is refused on every
    rank."""
    world, _, results = launched
    assert len(results['local_build']) == world
    for checks in results['local_build']:
        assert_local_builds_match(checks)
    assert results['directed'] == ['DirectedGraphError'] * world


def test_fit_from_rank_local_rows_equals_fit_from_whole_matrix(launched):
    r"""The SBM fitted from rows built out of a streamed .npz: the same
    blocks, so the same fit, bit for bit, as from the whole matrix."""
    _, _, results = launched
    local, whole = results['sbm_local'], results['sbm']
    assert local['steps'] == whole['steps'] and local['converged']
    assert torch.equal(local['eigenvalues'], whole['eigenvalues'])
    assert torch.equal(local['vectors'], whole['vectors'])


@pytest.mark.parametrize('name', list(GRAPHS))
def test_split_fit_matches_single_process_fit_and_ground_truth(launched, name):
    world, _, results = launched
    got = results[name]
    ref = single_process_fit(name)
    values, vectors = exact(name)
    k = GRAPHS[name][3]
    assert got['converged'] and ref.converged
    assert float(relative_error(got['eigenvalues'], ref.eigenvalues, floor=1e-2).max()) < 1e-4
    assert max_principal_sine(got['vectors'], ref.eigenvectors) < 1e-3
    assert float(relative_error(got['eigenvalues'], values[:k], floor=1e-2).max()) < 1e-6
    assert max_principal_sine(got['vectors'], vectors[:, :k]) < 1e-3
    gram = got['vectors'].T @ got['vectors']
    assert torch.allclose(gram, torch.eye(k, dtype=gram.dtype), atol=1e-10)
    if name == 'grid':
        assert float(relative_error(got['eigenvalues'], grid_laplacian_spectrum(12, 9)[:k],
                                    floor=1e-2).max()) < 1e-6
    if name == 'components':  # the three zero eigenvalues and their span
        assert float(got['eigenvalues'][:3].abs().max()) < 1e-8
        assert max_principal_sine(got['vectors'][:, :3], vectors[:, :3]) < 1e-3
    # halo rows were exchanged at every step, all of them on a random split
    assert got['exchange_bytes'] > 0


def test_written_file_equals_in_memory_result(launched):
    _, out, results = launched
    vectors = np.load(out / 'grid.vectors.npy')
    values = np.load(out / 'grid.values.npy')
    assert vectors.shape == (108, 6) and vectors.dtype == np.float64
    assert np.array_equal(vectors, results['grid']['vectors'].numpy())
    assert np.array_equal(values, results['grid']['eigenvalues'].numpy())
    assert not list(out.glob('.*partial'))


def test_resume_equals_uninterrupted(launched):
    _, _, results = launched
    whole, resumed = results['uninterrupted'], results['resumed']
    assert results['stopped_steps'] == 100 and resumed['steps'] == whole['steps'] == 200
    assert torch.equal(resumed['vectors'], whole['vectors'])
    assert torch.equal(resumed['eigenvalues'], whole['eigenvalues'])
    assert resumed['loss_history'] == whole['loss_history']


def test_cli_one_process_then_partition_step_then_two_streaming_their_rows(tmp_path, capsys):
    r"""``eigs`` in this process (world size 1: the command line's own path;
    ``python -m`` is tested in test_cli), ``pyg-spectral partition``, then a
    two-process ``eigs`` under torchrun on the .npz that reuses the saved
    split and builds each rank's rows from the file: both write the
    eigenpairs of the graph; a named partition file that is missing or of
    another size stops every rank with the remedy."""
    edge_index, n, _, k = GRAPHS['sbm']
    np.savez(tmp_path / 'sbm.npz', edge_index=edge_index.numpy(), num_nodes=n)
    common = ['eigs', str(tmp_path / 'sbm.npz'), '--k', str(k), '--dtype', 'float64', '--tol',
              '1e-9', '--steps', str(STEPS), '--no-progress']
    from pyg_spectral.cli import main as cli_main
    assert cli_main([*common, '--out', str(tmp_path / 'one')]) == 0
    assert cli_main(['partition', str(tmp_path / 'sbm.npz'), '--parts', '2', '--out',
                     str(tmp_path / 'split.pt')]) == 0
    made = capsys.readouterr().out
    assert re.search(r'split\.pt: 190 nodes into 2 parts \((metis|rcm), .*edge cut \d+ of '
                     r'\d+ edges', made), made
    proc = launch(2, *common, '--out', str(tmp_path / 'two'), '--partition-file',
                  str(tmp_path / 'split.pt'), target=('-m', 'pyg_spectral'))
    assert f"reusing {tmp_path / 'split.pt'}" in proc.stderr
    assert 'each building its rows from' in proc.stderr and 'loaded whole' not in proc.stderr
    values, vectors = exact('sbm')
    for prefix in ('one', 'two'):
        got = np.load(tmp_path / f'{prefix}.values.npy')
        assert float(relative_error(torch.from_numpy(got), values[:k], floor=1e-2).max()) < 1e-6
        assert max_principal_sine(torch.from_numpy(np.load(tmp_path / f'{prefix}.vectors.npy')),
                                  vectors[:, :k]) < 1e-3
    missing = launch(2, *common, '--out', str(tmp_path / 'three'), '--partition-file',
                     str(tmp_path / 'nowhere.pt'), target=('-m', 'pyg_spectral'), check=False,
                     timeout=120)
    assert missing.returncode != 0
    assert 'does not exist; write it with pyg-spectral partition' in missing.stderr
    assert 'rank 1: rank 0 found no usable partition' in missing.stderr
    assert not (tmp_path / 'three.values.npy').exists()


def test_killed_rank_fails_the_launch_naming_it_and_leaves_no_output(tmp_path):
    r"""Rank 1 is killed (SIGKILL) at its 200th all-reduce, mid-fit: the
    launch fails within the collective timeout, the report names rank 1,
    and no file that looks finished is left; the partition rank 0 made
    (none was saved) is, for the next launch."""
    edge_index, n, _, k = GRAPHS['grid']
    torch.save(edge_index, tmp_path / 'grid.pt')
    timeout = 30
    start = time.monotonic()
    proc = launch(2, 'kill', 'eigs', str(tmp_path / 'grid.pt'), '--k', str(k), '--out',
                  str(tmp_path / 'out'), '--tol', '0', '--steps', '100000', '--no-progress',
                  '--timeout', str(timeout), check=False, timeout=120)
    elapsed = time.monotonic() - start
    assert proc.returncode != 0
    # torchrun's report (root cause: rank 1, SIGKILL) or the survivor's own
    named = re.search(r'rank\s*:\s*1 \(local_rank: 1\)\s*\n\s*exitcode\s*:\s*-9', proc.stderr) \
        or re.search(r'rank 1 stopped answering', proc.stderr)
    assert named, proc.stderr[-4000:]
    assert elapsed < timeout + 60  # interpreter start-up of both processes included
    assert not (tmp_path / 'out.vectors.npy').exists()
    assert not (tmp_path / 'out.values.npy').exists()
    assert NodePartition.load(tmp_path / 'out.partition.pt').num_parts == 2


# ------------------------------------------------------------- the worker
def _record(res, group=None) -> dict:
    return {'eigenvalues': res.eigenvalues.cpu(), 'vectors': res.gather(group).cpu(),
            'steps': res.steps, 'converged': res.converged,
            'loss_history': list(res.loss_history),
            'exchange_bytes': int(res.stats.get('exchange_bytes', 0))}


def worker(out: Path) -> None:
    import torch.distributed as dist
    dist.init_process_group('gloo')
    rank, world = dist.get_rank(), dist.get_world_size()
    results = {}
    for name in GRAPHS:
        part, exchange = uneven_partition(name, world)
        res = DistributedNeuralSVD(GRAPHS[name][3]).fit(
            operator(name), part, largest=False, tol=TOL, steps=STEPS, refine=True,
            exchange=exchange, progress=False)
        results[name] = _record(res)
        if name == 'grid':
            res.save(out / 'grid')
    # rank-local builds: every kind against the whole matrix's block
    edge_index, _, n = messy_graph()
    part = partition_nodes(edge_index, n, world, 'rcm', sizes=[12, 25] if world == 2 else None)
    checks = [None] * world
    dist.all_gather_object(checks, local_build_checks(part))
    results['local_build'] = checks
    # an edge whose mirror is missing, between two ranks' nodes
    owner = part.assignment()
    u, v = int(part.nodes(0)[0]), int(part.nodes(world - 1)[0])
    assert owner[u] != owner[v]
    directed = torch.cat([edge_index, torch.tensor([[u], [v]])], 1)
    try:
        local_graph_rows(edge_chunks(directed, None), part, 'sym_laplacian')
        outcome = 'built'
    except DirectedGraphError as error:
        outcome = type(error).__name__
    outcomes = [None] * world
    dist.all_gather_object(outcomes, outcome)
    results['directed'] = outcomes
    # the SBM from its streamed .npz, rows built rank-locally
    part, exchange = uneven_partition('sbm', world)
    block = local_graph_rows(GraphFile(out / 'sbm.npz').chunks(97), part, 'sym_laplacian',
                             torch.float64, exchange=exchange)
    res = DistributedNeuralSVD(GRAPHS['sbm'][3]).fit(block, largest=False, tol=TOL,
                                                     steps=STEPS, refine=True, progress=False)
    results['sbm_local'] = _record(res)
    # a checkpointed fit stopped after 100 steps, then resumed to 200
    part, _ = uneven_partition('sbm', world)
    solver = DistributedNeuralSVD(4)
    whole = solver.fit(operator('sbm'), part, largest=False, steps=200, progress=False)
    stopped = solver.fit(operator('sbm'), part, largest=False, steps=100, progress=False,
                         checkpoint=out / 'ckpt', checkpoint_every=50)
    resumed = DistributedNeuralSVD(4).fit(operator('sbm'), part, largest=False, steps=200,
                                          progress=False, checkpoint=out / 'ckpt',
                                          checkpoint_every=50)
    results['uninterrupted'], results['resumed'] = _record(whole), _record(resumed)
    results['stopped_steps'] = stopped.steps
    if rank == 0:
        torch.save(results, out / 'results.pt')
    dist.destroy_process_group()


def killing_worker(argv: list[str]) -> int:
    r"""The CLI, with rank 1 killed at its 200th all-reduce."""
    import torch.distributed as dist
    if os.environ.get('RANK') == '1':
        all_reduce, calls = dist.all_reduce, [0]

        def dying(*args, **kwargs):
            calls[0] += 1
            if calls[0] == 200:
                os.kill(os.getpid(), signal.SIGKILL)
            return all_reduce(*args, **kwargs)
        dist.all_reduce = dying
    from pyg_spectral.cli import main
    return main(argv)


if __name__ == '__main__':
    torch.set_num_threads(1)
    if sys.argv[1] == 'worker':
        worker(Path(sys.argv[2]))
    elif sys.argv[1] == 'kill':
        sys.exit(killing_worker(sys.argv[2:]))
