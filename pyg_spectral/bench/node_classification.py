"""Semi-supervised node classification runs behind ``pyg-spectral bench``."""
from __future__ import annotations

import math
import resource
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
import torch_geometric.transforms as Tr
from torch_geometric.data import Data
from tqdm.auto import tqdm

from ..datasets import load_ogbn, load_planetoid, ogbn_evaluator, ogbn_split
from ..devices import resolve_device as check_device
from ..nn import eigen_loss, eigen_parameters
from .memory import PeakMemory
from .registry import available_models, get_model


@dataclass
class RunResult:
    model: str
    dataset: str
    k: int | None
    seeds: list[int]
    test_acc: list[float]
    test_acc_mean: float
    test_acc_std: float
    epoch_ms: float
    total_s: float
    peak_mem_mib: float  # the process's peak (see peak_mem_kind), the same on every row
    peak_mem_kind: str
    device: str
    settings: dict = field(default_factory=dict)
    # this model's own peak: the increase over the memory in use before its
    # first seed (bench.memory.PeakMemory; model_mem_measure says what exactly)
    model_peak_mem_mib: float | None = None
    model_mem_baseline_mib: float | None = None
    model_mem_kind: str | None = None
    model_mem_measure: str | None = None


def resolve_device(device: str) -> torch.device:
    resolved = check_device(device)
    if resolved.type not in ('cpu', 'cuda'):
        raise ValueError(f"device={device!r}: the bench runs on 'cpu' or 'cuda'")
    return resolved


def load_graph(dataset: str, largest_component: bool = False) -> tuple[Data, int, object | None]:
    r"""Returns :obj:`(data, num_classes, ogb_evaluator_or_None)`; with
    :obj:`largest_component` only the largest connected component (its
    nodes keep their split masks)."""
    if dataset.startswith('ogbn-'):
        ds = load_ogbn(dataset)
        # OGB ships some graphs (e.g. arxiv) directed; GCN baselines symmetrise
        data, num_classes, evaluator = (Tr.ToUndirected()(ogbn_split(ds)), ds.num_classes,
                                        ogbn_evaluator(dataset))
    else:
        ds = load_planetoid(dataset, transform=Tr.NormalizeFeatures())
        data, num_classes, evaluator = ds[0], ds.num_classes, None
    if largest_component:
        data = Tr.LargestConnectedComponents()(data)
    return data, num_classes, evaluator


def _accuracy(logits, data, mask, evaluator) -> float:
    pred = logits[mask].argmax(dim=-1)
    if evaluator is not None:
        return float(evaluator.eval({'y_true': data.y[mask].view(-1, 1).cpu(),
                                     'y_pred': pred.view(-1, 1).cpu()})['acc'])
    return float((pred == data.y[mask]).float().mean())


def _peak_memory_mib(device: torch.device) -> tuple[float, str]:
    if device.type == 'cuda':
        return torch.cuda.max_memory_allocated(device) / 2**20, 'cuda_max_allocated'
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes
    return (rss / 2**20 if sys.platform == 'darwin' else rss / 2**10), 'process_max_rss'


BASIS_SCHEDULES = ('cosine', 'constant')


# Adam moves every entry of W by about its rate per step, relative to
# entries of AmortizedEigenbasis's init_scale 0.1: the basis's own rate sets
# how far it can travel in a run of a few hundred steps
BASIS_LR = 0.05


def make_optimizer(net: torch.nn.Module, lr: float, weight_decay: float, basis_schedule: str,
                   steps: int, basis_lr: float = BASIS_LR,
                   ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    r"""The bench's Adam: the model's parameters at a constant learning rate
    :obj:`lr`, the eigen-loss parameters
    (:func:`~pyg_spectral.nn.eigen_parameters`) in a group of their own at
    :obj:`basis_lr`, following :obj:`basis_schedule` over :obj:`steps`
    steps; one :obj:`scheduler.step()` per optimizer step."""
    basis = eigen_parameters(net)
    ids = {id(p) for p in basis}
    rest = [p for p in net.parameters() if id(p) not in ids]
    constant = lambda step: 1.0  # noqa: E731
    cosine = lambda step: 0.5 * (1 + math.cos(math.pi * min(step, steps) / steps))  # noqa: E731
    groups = [(rest, lr, constant),
              (basis, basis_lr, cosine if basis_schedule == 'cosine' else constant)]
    groups = [(params, rate, factor) for params, rate, factor in groups if params]
    opt = torch.optim.Adam([{'params': params, 'lr': rate} for params, rate, _ in groups],
                           weight_decay=weight_decay)
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, [factor for *_, factor in groups])


@contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
    r"""Seeds the generators that build and train one model, the CPU's and
    :obj:`device`'s, and gives the caller's states back on exit."""
    # torch.manual_seed would also seed every accelerator, through a call
    # queued until CUDA starts when it has not yet: past the end of the block
    if device.type == 'cpu':
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)
            yield
    elif device.type == 'cuda':
        index = device.index if device.index is not None else torch.cuda.current_device()
        with torch.random.fork_rng(devices=[index], device_type='cuda'):
            torch.default_generator.manual_seed(seed)
            torch.cuda.default_generators[index].manual_seed(seed)
            yield
    else:
        with torch.random.fork_rng(device_type=device.type):
            torch.default_generator.manual_seed(seed)
            torch.get_device_module(device.type).manual_seed(seed)
            yield


def _train(net: torch.nn.Module, opt: torch.optim.Optimizer, schedule, data: Data, evaluator,
           epochs: int, epoch_times: list[float], bar, seed: int) -> float:
    r"""Trains :obj:`net` and returns its test accuracy at the epoch of best
    validation accuracy, appending each epoch's time to :obj:`epoch_times`."""
    dev = data.x.device
    best_val, best_test = -1.0, 0.0
    for _ in range(epochs):
        t = time.perf_counter()
        net.train()
        opt.zero_grad()
        out = net(data.x, data.edge_index)
        loss = F.cross_entropy(out[data.train_mask], data.y[data.train_mask])
        loss = loss + eigen_loss(net)
        loss.backward()
        opt.step()
        schedule.step()
        if dev.type == 'cuda':
            torch.cuda.synchronize(dev)
        epoch_times.append(time.perf_counter() - t)

        net.eval()
        with torch.no_grad():
            out = net(data.x, data.edge_index)
        val = _accuracy(out, data, data.val_mask, evaluator)
        if val > best_val:
            best_val, best_test = val, _accuracy(out, data, data.test_mask, evaluator)
        bar.update(1)
        bar.set_postfix(seed=seed, loss=f'{loss.item():.3f}', val=f'{best_val:.3f}')
    return best_test


def run_node_classification(
    dataset: str,
    model: str = 'gcn',
    seeds: int = 10,
    epochs: int = 200,
    lr: float = 0.01,
    weight_decay: float = 5e-4,
    device: str = 'cpu',
    progress: bool = True,
    basis_schedule: str = 'cosine',
    largest_component: bool = False,
    k: int | None = None,
    basis_lr: float = BASIS_LR,
) -> RunResult:
    r"""Trains :obj:`model` from scratch for each seed on the public split and
    reports the test accuracy at the epoch of best validation accuracy.

    The parameters of eigen-loss modules (an amortized eigenbasis) form their
    own Adam group, at :obj:`basis_lr` with the same weight decay, whose rate
    follows :obj:`basis_schedule`: :obj:`'cosine'` (decayed to 0 over the
    run, so that the basis settles; see
    :func:`~pyg_spectral.nn.eigen_parameters`) or :obj:`'constant'`.

    :obj:`largest_component` trains and evaluates on the largest connected
    component only: there the top eigenvalue of the GCN matrix is simple,
    so the top-k eigenspace that a rank-k spectral model uses is defined
    (on Cora and CiteSeer as a whole it is any k dimensions of a 78- or
    438-dimensional eigenspace).

    :obj:`k` is the rank of a low-rank model (its default when :obj:`None`);
    a model that has no rank refuses it."""
    if basis_schedule not in BASIS_SCHEDULES:
        raise ValueError(f"basis_schedule must be one of {BASIS_SCHEDULES}, got {basis_schedule!r}")
    for arg, value in (('seeds', seeds), ('epochs', epochs)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{arg} must be a positive integer, got {value!r}")
    dev = resolve_device(device)
    spec = get_model(model)
    options = {}
    if k is not None:
        if 'k' not in spec.options:
            raise ValueError(f"model={model!r} has no rank k; pass k only to "
                             f"{', '.join(m for m, s in available_models().items() if 'k' in s.options)}")
        options['k'] = k
    data, num_classes, evaluator = load_graph(dataset, largest_component)
    data = data.to(dev)
    if dev.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(dev)

    accs, epoch_times = [], []
    # the memory sampler starts before and stops after the timed span: its
    # start and stop are not timed
    with PeakMemory(dev) as memory:
        start = time.perf_counter()
        bar = tqdm(total=seeds * epochs, desc=f'{model} on {dataset}',
                   disable=not progress, leave=False)
        for seed in range(seeds):
            # the seed fixes the model's initialisation and its dropout masks
            with _seeded(seed, dev):
                net = spec.build(data.num_features, num_classes, data, **options).to(dev)
                opt, schedule = make_optimizer(net, lr, weight_decay, basis_schedule, epochs,
                                               basis_lr)
                accs.append(_train(net, opt, schedule, data, evaluator, epochs, epoch_times,
                                   bar, seed))
        bar.close()
        total = time.perf_counter() - start
    own = memory.report
    mem, mem_kind = _peak_memory_mib(dev)
    label = dataset + (' (largest component)' if largest_component else '')
    return RunResult(
        model=model, dataset=label, k=k, seeds=list(range(seeds)), test_acc=accs,
        test_acc_mean=statistics.fmean(accs),
        test_acc_std=statistics.stdev(accs) if len(accs) > 1 else 0.0,
        epoch_ms=1e3 * statistics.fmean(epoch_times), total_s=total,
        peak_mem_mib=mem, peak_mem_kind=mem_kind, device=str(dev),
        settings=dict(epochs=epochs, lr=lr, basis_lr=basis_lr, weight_decay=weight_decay,
                      basis_schedule=basis_schedule, largest_component=largest_component,
                      selection='test accuracy at best validation accuracy',
                      threads=torch.get_num_threads()),
        model_peak_mem_mib=own.peak_mib, model_mem_baseline_mib=own.baseline_mib,
        model_mem_kind=own.kind, model_mem_measure=memory.description())


MEMORY_COLUMN = {
    'rss_increase_sampled': 'its peak RSS increase over the RSS before it started',
    'cuda_max_allocated_increase': 'its peak CUDA allocation over the allocation before it '
                                   'started',
    'process_max_rss': "the process's peak RSS (not per model: RSS unreadable here)",
}


def _mib(value: float | None) -> str:
    return '-' if value is None else f'{value:.1f}' if value < 10 else f'{value:.0f}'


def format_table(results: list[RunResult]) -> str:
    r"""The bench's summary: one row per run, with its seeds, epochs and its
    own peak memory (:attr:`RunResult.model_peak_mem_mib`), then a line
    saying what the memory column measured."""
    header = ('model', 'dataset', 'k', 'seeds', 'epochs', 'test acc (%)', 'ms/epoch', 'total s',
              'peak +MiB')
    rows = [(r.model, r.dataset, '-' if r.k is None else str(r.k), str(len(r.seeds)),
             str(r.settings['epochs']), f'{100 * r.test_acc_mean:.1f} ± {100 * r.test_acc_std:.1f}',
             f'{r.epoch_ms:.2f}', f'{r.total_s:.1f}', _mib(r.model_peak_mem_mib))
            for r in results]
    kinds = sorted({r.model_mem_kind for r in results if r.model_mem_kind})
    notes = '; '.join(MEMORY_COLUMN.get(kind, kind) for kind in kinds)
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    line = lambda cells: '| ' + ' | '.join(c.ljust(w) for c, w in zip(cells, widths)) + ' |'
    sep = '|' + '|'.join('-' * (w + 2) for w in widths) + '|'
    table = [line(header), sep, *map(line, rows)]
    if notes:
        table.append(f'peak +MiB: per model, {notes} (JSON: model_mem_measure)')
    return '\n'.join(table)


def as_dict(result: RunResult) -> dict:
    return asdict(result)
