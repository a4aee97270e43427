r"""The edge-sampled fit of an encoder over node features
(pyg_spectral.operators.graph_sampling, pyg_spectral.solvers.edge_sampled)
against ground truth: the exact inner products of a small graph, dense
eigenpairs of a mid-size SBM, and SampledNeuralSVD itself at world size 1.
Two processes are launched with torchrun on gloo, running this file as the
worker script (see ``worker`` at the bottom)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import scipy.linalg
import torch
import torch.distributed as dist
from torch import nn
from torch_geometric.utils import stochastic_blockmodel_graph

from pyg_spectral import GraphOperator
from pyg_spectral.metrics import max_principal_sine
from pyg_spectral.operators.graph_sampling import EdgeSampledGraph
from pyg_spectral.solvers.edge_sampled import DistributedSampledNeuralSVD, process_seed
from pyg_spectral.solvers.sampled import SampledNeuralSVD
from test_distributed import launch

HERE = Path(__file__).resolve()
K, CHANNELS = 4, 32
SIZES = [500, 600, 700, 800]


def sbm_operator() -> GraphOperator:
    r"""2600 nodes in four communities: sym. Laplacian eigenvalues 0, 0.185,
    0.206, 0.230, then 0.586 (a gap that makes the low 4 well defined)."""
    state = torch.get_rng_state()
    torch.manual_seed(0)
    p = torch.full((4, 4), 0.002).fill_diagonal_(0.03)
    edge_index = stochastic_blockmodel_graph(SIZES, p)
    torch.set_rng_state(state)
    return GraphOperator.from_edge_index(edge_index, num_nodes=sum(SIZES), kind='sym_laplacian',
                                         dtype=torch.float64)


def node_features(op: GraphOperator) -> torch.Tensor:
    r"""Positional features a linear encoder can map onto the low end: 32
    channels of noise smoothed by 30 lazy random-walk steps, then
    orthonormalised, so every direction of their span (the low 4 and 28
    others) has the same weight and the fit has to find the 4."""
    x = torch.randn(op.shape[0], CHANNELS, generator=torch.Generator().manual_seed(0),
                    dtype=torch.float64)
    for _ in range(30):
        x = x - 0.5 * op.matmat(x)
        x = x / x.norm(dim=0)
    return (torch.linalg.qr(x).Q * op.shape[0] ** 0.5).float()


def solver(batch_size: int = 1024) -> DistributedSampledNeuralSVD:
    return DistributedSampledNeuralSVD(K, nesting='joint', lr=1e-2, batch_size=batch_size,
                                       ema_decay=0.99, min_lr_ratio=0.01)


def encoder(seed: int) -> nn.Linear:
    model = nn.Linear(CHANNELS, K, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.randn(K, CHANNELS, generator=torch.Generator().manual_seed(seed))
                           / CHANNELS ** 0.5)
    return model


# ------------------------------------------------------------- in-process
def test_estimates_are_unbiased_for_the_exact_inner_products():
    edge_index = torch.tensor([[0, 1, 1, 2, 2, 3, 3, 0, 0, 2, 4, 0, 4, 5],
                               [1, 0, 2, 1, 3, 2, 0, 3, 2, 0, 0, 4, 5, 4]])
    weight = torch.tensor([1., 1, 2, 2, 1, 1, 3, 3, 1, 1, 2, 2, 1, 1])
    for kind, largest in (('sym_laplacian', False), ('laplacian', False), ('adjacency', True)):
        op = GraphOperator.from_edge_index(edge_index, weight, 6, kind=kind, dtype=torch.float64)
        x = torch.randn(6, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        model = nn.Linear(3, 2, dtype=torch.float64)
        sampled = EdgeSampledGraph(op, x, largest=largest, edges_per_node=2)
        lo, hi = op.spectral_bounds()
        S = (op.to_dense() - lo * torch.eye(6)) if largest else (hi * torch.eye(6) - op.to_dense())
        with torch.no_grad():
            f = model(x)
        exact_gram, exact_cross = f.T @ f / 6, f.T @ S @ f / 6
        generator = torch.Generator().manual_seed(2)
        draws = [sampled.moments(model, sampled.sample(64, generator), 2) for _ in range(2000)]
        for got, exact in ((torch.stack([d[0] for d in draws]), exact_gram),
                           (torch.stack([d[2] for d in draws]), exact_cross)):
            error = (got.mean(0) - exact).abs()
            assert (error <= 5 * got.std(0) / len(draws) ** 0.5 + 1e-12).all(), (kind, error)
        # the loss's cross term is the diagonal of the moments' cross matrix
        samples = sampled.sample(64, generator)
        cross = sampled.estimates(model, samples, 2).cross.detach()
        torch.testing.assert_close(cross, sampled.moments(model, samples, 2)[2].diagonal())
        mapped = sampled.original_eigenvalues(torch.linalg.eigvalsh(S))
        torch.testing.assert_close(mapped.sort().values, torch.linalg.eigvalsh(op.to_dense()))


def test_arguments_are_checked():
    op = sbm_operator()
    with pytest.raises(ValueError, match='x must be'):
        EdgeSampledGraph(op, torch.zeros(3, 2))
    with pytest.raises(ValueError, match='edges_per_node'):
        EdgeSampledGraph(op, torch.zeros(op.shape[0], 2), edges_per_node=0)
    directed = GraphOperator.from_edge_index(torch.tensor([[0, 1], [1, 2]]), num_nodes=3,
                                             kind='rw_adjacency')
    with pytest.raises(ValueError, match='operator must be symmetric'):
        EdgeSampledGraph(directed, torch.zeros(3, 2))


def test_one_process_is_sampled_neuralsvd_bit_for_bit(tmp_path):
    op = sbm_operator().to(dtype=torch.float32)
    sampled = EdgeSampledGraph(op, node_features(op.to(dtype=torch.float64)), largest=False)
    plain = SampledNeuralSVD(K, nesting='joint', lr=1e-2, batch_size=256, ema_decay=0.99,
                             min_lr_ratio=0.01).fit(sampled, encoder(3), steps=60,
                                                   progress=False, eval_samples=4096)
    dist.init_process_group('gloo', store=dist.FileStore(str(tmp_path / 'store'), 1),
                            rank=0, world_size=1)
    try:
        wrapped = solver(256).fit(sampled, encoder(3), steps=60, progress=False,
                                  eval_samples=4096)
    finally:
        dist.destroy_process_group()
    assert torch.equal(plain.model.weight, wrapped.model.weight)
    assert torch.equal(plain.eigenvalues, wrapped.eigenvalues)
    assert plain.loss_history == wrapped.loss_history


def test_process_streams_differ():
    seeds = {process_seed(s, r) for s in range(3) for r in range(4)}
    assert len(seeds) == 12


# ------------------------------------------------------------- launched
def test_two_processes_fit_the_low_end_from_sampled_edges(tmp_path):
    launch(2, 'worker', str(tmp_path), target=(str(HERE),), timeout=600)
    out = torch.load(tmp_path / 'results.pt', weights_only=True)
    first, second = out['ranks']
    # DDP keeps the models equal; the processes drew different batches
    assert torch.equal(first['weight'], second['weight'])
    assert torch.equal(first['values'], second['values'])
    # each process's loss is its own batches' estimate
    assert first['loss_history'] != second['loss_history']
    # a fit stopped at step 30 and resumed from each process's checkpoint
    # is the uninterrupted one; checkpoints of different steps are refused
    for rank in (first, second):
        assert rank['stopped_at'] == 30 and rank['files'] == ['ckpt.rank0-of-2.pt',
                                                                'ckpt.rank1-of-2.pt']
        whole, resumed = rank['uninterrupted'], rank['resumed']
        assert resumed['loss_history'] == whole['loss_history'] and len(whole['loss_history']) == 60
        assert torch.equal(resumed['weight'], whole['weight'])
        assert torch.equal(resumed['values'], whole['values'])
        assert 'rank 0: step 60, rank 1: none' in rank['mismatch']
    op = sbm_operator()
    values, vectors = scipy.linalg.eigh(op.to_dense().numpy(), subset_by_index=[0, K - 1])
    f = node_features(op) @ first['weight'].T
    sine = max_principal_sine(torch.from_numpy(vectors), f.double())
    assert sine < 0.05, sine
    # Rayleigh-Ritz values from moments averaged over both processes
    assert (first['values'] - torch.from_numpy(values)).abs().max() < 0.02, first['values']


def checkpoint_runs(sampled: EdgeSampledGraph, out: Path, rank: int) -> dict:
    r"""60 steps uninterrupted; stopped at step 30 (a callback, agreed by
    both processes) and resumed from the checkpoints; then rank 1's file
    removed, so that the two disagree."""
    def run(**kwargs):
        res = solver(256).fit(sampled, encoder(20), steps=60, check_every=10, progress=False,
                              eval_samples=4096, **kwargs)
        return res, {'weight': res.model.weight.detach(), 'values': res.eigenvalues,
                     'loss_history': res.loss_history}
    _, whole = run()
    stopped, _ = run(checkpoint=out / 'ckpt.pt', checkpoint_every=10,
                     callback=lambda step, loss, values: step + 1 == 30)
    dist.barrier()
    files = sorted(p.name for p in out.glob('ckpt*'))
    _, resumed = run(checkpoint=out / 'ckpt.pt', checkpoint_every=10)
    dist.barrier()
    if rank == 1:
        (out / 'ckpt.rank1-of-2.pt').unlink()
    dist.barrier()
    try:
        run(checkpoint=out / 'ckpt.pt')
        mismatch = 'resumed'
    except ValueError as error:
        mismatch = str(error)
    return {'uninterrupted': whole, 'resumed': resumed, 'stopped_at': stopped.steps,
            'files': files, 'mismatch': mismatch}


def worker(out: Path) -> None:
    dist.init_process_group('gloo')
    rank = dist.get_rank()
    op = sbm_operator()
    sampled = EdgeSampledGraph(op.to(dtype=torch.float32), node_features(op), largest=False)
    # different starts on purpose: DDP starts every process from rank 0's
    res = solver().fit(sampled, encoder(10 + rank), steps=2000, check_every=500,
                       progress=False, eval_samples=2 ** 14)
    record = {'weight': res.model.weight.detach(), 'values': res.eigenvalues,
              'loss_history': res.loss_history}
    record.update(checkpoint_runs(sampled, out, rank))
    records = [None] * dist.get_world_size()
    dist.all_gather_object(records, record)
    if rank == 0:
        torch.save({'ranks': records}, out / 'results.pt')
    dist.destroy_process_group()


if __name__ == '__main__':
    torch.set_num_threads(1)
    if sys.argv[1] == 'worker':
        worker(Path(sys.argv[2]))
