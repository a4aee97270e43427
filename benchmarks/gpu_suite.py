"""Every GPU target of the issues in one run, each part within its own time
budget (defaults: 60 + 190 + 130 + 60 s, and 470 s for the whole run from
start, so that one GPU machine finishes within 8 minutes). Full mode, one line:

    python benchmarks/gpu_suite.py --device cuda --out benchmarks/results/gpu

It has not been run on a GPU yet: no GPU was lent to the session that wrote it.

Parts (``--parts`` picks some, ``--budget PART=SECONDS`` changes a budget):

* ``amortized``: the low-rank GCN training step of Table 1 of Li et al.
  (2024) on Cora, CiteSeer and PubMed, plain top-16 as in the paper: t0
  (fixed basis), t1 (+ dense ``torch.linalg.eigh`` every step), t2 (+ the
  amortized basis) and (t1 - t0) / (t2 - t0), next to the paper's
  23.4x / 23.7x / 615.2x. Check: t1's eigenpairs against float64 ARPACK
  next to the component space (the whole eigenvalue cluster at k counts);
  t2's basis orthonormal and finite.
* ``pe``: ``AddNeuralSVDPE(method='auto')`` on the device against PyG's
  ``AddLaplacianEigenvectorPE`` on the CPU: PubMed, block models of 1e5 and
  1e6 nodes (they expand well: NeuralSVD's side of 'auto'; a mesh-like graph
  would go to ARPACK on the CPU) and 10,000 molecule-like graphs. Check
  (both sides): ``pe_speed.check`` against ``common.reference_smallest``.
* ``neuralsvd``: a cold NeuralSVD solve (free table, k = 16 smallest of the
  normalized Laplacian, from a CPU ``edge_index``) of the 1e6-node block
  model on the device against SciPy ``eigsh`` on the CPU. Check (both
  sides): eigenvalue error and principal sine against the same reference.
* ``hydrogen``: the ``full`` config of ``benchmarks/hydrogen.py`` (16 states)
  for as many steps as the budget allows: the step rate, the time it gives
  for the config's 1e5 steps, and the errors of the partial fit.

A result whose check fails is WRONG and gets no speed ratio, and one whose
reference did not fit in the budget is 'unchecked' and gets none either; CPU
peers and references run in a child process killed when the part's budget
runs out (a killed peer gives a lower bound on the ratio). Work on the device
cannot be interrupted, so a part can overrun by its last step. A part whose
budget is spent before a row starts records that row (or the whole part) as
``skipped (budget)``; a part that raises is recorded with its message and the
suite goes on. Exit status 1 when every part failed, or, with ``--smoke``,
when any part failed or any checked result is WRONG.

``--smoke`` runs every part at toy size on the CPU (CI runs it; tests/
test_gpu_suite.py). ``--out DIR`` writes ``gpu_suite.json`` and
``gpu_suite.md`` (each to a temporary name, renamed when complete, after
every part).
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import subprocess
import sys
import time

STARTED = time.perf_counter()  # the run's 8 minutes count from here, imports included
import traceback
import warnings
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import amortized_speed  # noqa: E402
import common  # noqa: E402
import hydrogen  # noqa: E402
import neuralsvd_speed  # noqa: E402
import pe_speed  # noqa: E402

PARTS = ('amortized', 'pe', 'neuralsvd', 'hydrogen')
# seconds on one GPU; the CPU references and peers of 'pe' and 'neuralsvd'
# take most of theirs (ARPACK on the 1e6-node graph: about 70-100 s each on
# one core of the development machine)
BUDGETS = {'amortized': 60.0, 'pe': 190.0, 'neuralsvd': 130.0, 'hydrogen': 60.0}
# the whole run from the start of this module; parts past it are skipped.
# Work on the device cannot be interrupted: a part overruns by its last step
TOTAL = 470.0
# the smoke fit of hydrogen runs until its budget: a few seconds show the stop
SMOKE_BUDGETS = {'amortized': 20.0, 'pe': 20.0, 'neuralsvd': 20.0, 'hydrogen': 2.5}
SMOKE_TOTAL = 120.0
SKIPPED = 'skipped (budget)'
# 'auto' on a CPU is ARPACK: the smoke run asks for the NeuralSVD path that
# 'auto' takes on a GPU for these graphs
SMOKE_PE_METHOD = 'neuralsvd'


# ------------------------------------------------------------ bookkeeping
class Clock:
    r"""The deadline of one part: its own budget, cut by the whole run's."""

    def __init__(self, budget: float, run_deadline: float) -> None:
        self.start = time.perf_counter()
        self.budget = budget
        self.deadline = min(self.start + budget, run_deadline)

    def left(self) -> float:
        return self.deadline - time.perf_counter()

    def spent(self) -> float:
        return time.perf_counter() - self.start


def sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)


def peak_mib(device: torch.device) -> float | None:
    r"""Peak device memory since :func:`reset_peak`; None on the CPU, where
    this process's RSS would mostly be what earlier parts left behind."""
    if device.type == 'cuda':
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    return None


def on_device(fn, device: torch.device):
    r"""(seconds, peak MiB, result, warnings) of :obj:`fn()`, synchronized."""
    reset_peak(device)
    sync(device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        t = time.perf_counter()
        out = fn()
        sync(device)
        wall = time.perf_counter() - t
    # RuntimeWarning: a solver that ran out of steps (and 'auto''s CPU fallback);
    # the library's and torch's API notices (UserWarning and the like) are left out
    notes = sorted({f'{w.category.__name__}: {str(w.message)[:160]}' for w in caught
                    if issubclass(w.category, RuntimeWarning)})
    return wall, peak_mib(device), out, notes


def cpu_peer(fn, args: tuple, clock: Clock):
    r"""A CPU peer in a forked child, killed when the part's time is out:
    (status, seconds, peak MiB of RSS above the child's start, result)."""
    limit = clock.left()
    if limit <= 0:
        return SKIPPED, None, None, None
    return common.run_limited(fn, args, limit)


def ratio(peer: dict, ours: dict) -> str:
    r"""Peer seconds over ours, both checked right; a peer killed at the
    budget gives a lower bound."""
    if ours.get('verdict') != 'ok' or not ours['wall_s'] > 0:
        return '-'
    if peer.get('verdict') == 'ok':
        return f"{peer['wall_s'] / ours['wall_s']:.2f}x"
    if peer.get('status') == 'timeout':
        return f"> {peer['wall_s'] / ours['wall_s']:.2f}x (peer killed at the budget)"
    return '-'


# ------------------------------------------------------- shared references
class References:
    r"""Graphs, Laplacians and references built once per run: the 1e6-node
    graph and its reference (about a minute of ARPACK) serve 'pe' and
    'neuralsvd' both."""

    def __init__(self) -> None:
        self.graphs, self.laplacians, self.refs = {}, {}, {}

    def block_graph(self, n: int) -> torch.Tensor:
        if n not in self.graphs:
            self.graphs[n] = common.block_graph(n)
        return self.graphs[n]

    def laplacian(self, key, edge_index: torch.Tensor, n: int):
        if key not in self.laplacians:
            self.laplacians[key] = pe_speed.laplacian(edge_index, n)
        return self.laplacians[key]

    def smallest(self, key, edge_index: torch.Tensor, n: int, count: int, sparse: str,
                 clock: Clock | None = None):
        r"""(reference, seconds): the :obj:`count` smallest pairs, trivial one
        included, closed over the cluster at :obj:`count`
        (:func:`common.reference_smallest`). With :obj:`clock` it runs in a
        child killed when the part's time is out: :obj:`(None, message)`."""
        if (key, count) not in self.refs:
            L = self.laplacian(key, edge_index, n)
            null = common.null_space_basis(edge_index, n)
            solve = lambda: common.reference_smallest(L, count, null, sparse=sparse)  # noqa: E731
            if clock is None:
                t = time.perf_counter()
                self.refs[key, count] = (solve(), time.perf_counter() - t)
            else:
                status, seconds, _, out = cpu_peer(solve, (), clock)
                if status != 'ok':
                    return None, f'reference {status}' + (f' ({out})' if status != SKIPPED else '')
                self.refs[key, count] = (out, seconds)
        return self.refs[key, count]


def closed_at(ref: common.Reference, k: int, tol: float = 1e-6) -> common.Reference:
    r"""The reference closed over the eigenvalue cluster at position
    :obj:`k` instead of its own :obj:`len(ref.values)`."""
    w = ref.values
    K = k
    while K < len(w) and w[K] - w[k - 1] <= tol * max(1.0, abs(w[k - 1])):
        K += 1
    return common.Reference(w[:K], ref.vectors[:, :K], ref.how)


# --------------------------------------------------------------- amortized
def gcn_graphs(smoke: bool):
    r"""(name, data, paper's speed-up or None) for the low-rank GCN rows."""
    if smoke:
        from torch_geometric.data import Data
        gen = torch.Generator().manual_seed(0)
        n = 300
        train = torch.zeros(n, dtype=torch.bool)
        train[:60] = True
        data = Data(x=torch.randn(n, 24, generator=gen), y=torch.randint(0, 4, (n,), generator=gen),
                    edge_index=common.block_graph(n, blocks=6), train_mask=train, num_nodes=n)
        return [(f'block model {n}', lambda: data, None)]
    import torch_geometric.transforms as Tr
    from pyg_spectral.datasets import load_planetoid
    return [(name, lambda name=name: load_planetoid(name, transform=Tr.NormalizeFeatures())[0],
             amortized_speed.PAPER_SPEEDUP[name]) for name in ('Cora', 'CiteSeer', 'PubMed')]


def gcn_reference(edge_index: torch.Tensor, n: int, k: int):
    r"""(top eigenvalues, basis of the eigenspace of all eigenvalues >=
    lambda_k) of the GCN matrix in float64: the component space (eigenvalue
    1, exact) and float64 ARPACK next to it, which is right on repeated
    eigenvalues (``exact_eigh(..., null=...)``)."""
    from pyg_spectral.nn import exact_eigh
    from pyg_spectral.operators import GraphOperator, NullSpace
    op = GraphOperator.from_edge_index(edge_index, num_nodes=n, kind='gcn', dtype=torch.float64)
    null = NullSpace.of_operator(op)
    comps = torch.zeros(n, null.num_components, dtype=torch.float64)
    comps[torch.arange(n), null.labels] = null.basis.double()
    comps = comps[:, comps.abs().sum(0) > 0]
    c = comps.size(1)
    if c >= k:  # the top k all lie in the eigenvalue-1 space, which is the whole cluster
        return torch.ones(k, dtype=torch.float64), comps
    vals, vecs = exact_eigh(op, min(k - c + 8, n - c), method='arpack', null=null)
    values = torch.cat([torch.ones(c, dtype=torch.float64), vals.double()])
    space = torch.cat([comps, vecs.double()], 1)
    K = k
    while K < values.numel() and values[k - 1] - values[K] <= 1e-6:
        K += 1
    return values[:k], space[:, :K]


def part_amortized(device: torch.device, clock: Clock, smoke: bool, refs: References, rows: list,
                   notes: list, k: int = 16) -> None:
    from pyg_spectral.metrics import max_principal_sine
    from pyg_spectral.operators import GraphOperator
    notes += ["plain top-k (the paper's setting): U diag(lam) U^T of the GCN matrix, no "
              "component space; times are the fastest of the timed training steps (two-layer "
              "backbone, Adam; 1 step for PubMed's t1), each synchronized; checks: t1's "
              "eigenvalues within 1e-4 and sine <= 1e-2 against the float64 reference, t2's "
              "max abs(U^T U - I) <= 1e-4"]
    iters = 3 if smoke else 10
    for name, load, paper in gcn_graphs(smoke):
        if clock.left() <= 0:
            rows.append(dict(graph=name, status=SKIPPED))
            continue
        data = load()
        n = data.num_nodes
        row = dict(graph=f'{name} ({n} nodes, k={k})', status='ok', paper=paper)
        t = time.perf_counter()
        ref_vals, ref_space = gcn_reference(data.edge_index, n, k)
        row['reference_s'] = time.perf_counter() - t
        data = data.to(device)
        op = GraphOperator.from_edge_index(data.edge_index, num_nodes=n, kind='gcn')
        fixed_U = ref_space[:, :k].to(device, torch.float32)
        fixed_lam = (fixed_U * op.matmat(fixed_U)).sum(0)
        classes = int(data.y.max()) + 1
        for method in ('fixed', 'amortized', 'eigh'):
            if clock.left() <= 0:
                row[method] = None
                row['status'] = SKIPPED + f' from {method}'
                break
            torch.manual_seed(0)
            model = amortized_speed.LowRankGCNBackbone(data.num_features, classes).to(device)
            if method == 'fixed':
                solver, params = (lambda op, null: (fixed_U, fixed_lam, 0.0)), []
            else:
                solver = amortized_speed.Solver(method, n, k)
                if method == 'amortized':
                    solver.W = torch.nn.Parameter(solver.W.detach().to(device))
                params = solver.parameters()
            opt = torch.optim.Adam(list(model.parameters()) + params, lr=0.01, weight_decay=5e-4)

            def step(model=model, opt=opt, solver=solver):
                amortized_speed.gcn_step(model, opt, data, solver, op)
                sync(device)
            # dense eigh of PubMed is the slow one: one step, no warm-up (Cora's
            # and CiteSeer's eigh warmed the solver up), and not timed alone
            big_eigh = method == 'eigh' and n > 5000
            count = iters if method != 'eigh' else (1 if big_eigh else 3)
            reset_peak(device)
            row[method] = amortized_speed.timed(step, count, warmup=0 if big_eigh else 1)
            row[method + '_peak_mib'] = peak_mib(device)
            if method != 'fixed' and not big_eigh and clock.left() > 0:
                # the basis alone (the amortized one with its eigen-loss backward), as in
                # amortized_speed: t2 - t0 can drown in the backbone's noise
                def alone(solver=solver, method=method):
                    out = solver(op)
                    if method == 'amortized':
                        out[2].backward()
                    sync(device)
                row[method + '_alone'] = amortized_speed.timed(alone, count, warmup=0)
            if method == 'amortized':
                with torch.no_grad():
                    U = solver(op)[0].double().cpu()
                err = float((U.T @ U - torch.eye(k, dtype=torch.float64)).abs().max())
                row['amortized_orth_err'] = err
                row['amortized_check'] = 'ok' if math.isfinite(err) and err <= 1e-4 else 'WRONG'
            if method == 'eigh':  # the last step's own eigenpairs
                U = solver.previous.double().cpu()
                lam = (U * op.matmat(solver.previous).double().cpu()).sum(0)
                row['eigh_eig_err'] = float((lam.sort(descending=True).values - ref_vals).abs().max())
                row['eigh_sine'] = max_principal_sine(U, ref_space)
                row['eigh_check'] = ('ok' if row['eigh_eig_err'] <= 1e-4 and row['eigh_sine'] <= 1e-2
                                     else 'WRONG')
        t0, t1, t2 = row.get('fixed'), row.get('eigh'), row.get('amortized')
        right = row.get('eigh_check') == 'ok' and row.get('amortized_check') == 'ok'
        if None in (t0, t1, t2):
            row['speedup'] = None
        elif not right:
            row['speedup'] = 'WRONG'
        else:
            row['speedup'] = (t1 - t0) / (t2 - t0) if t2 > t0 else 'n/a (t2 <= t0: noise)'
        rows.append(row)
        print(f'  amortized {row["graph"]}: t0 {t0}, t1 {t1}, t2 {t2}, speed-up {row["speedup"]}',
              flush=True)


def format_amortized(rows) -> list[str]:
    ms = lambda t: f'{1e3 * t:.2f}' if isinstance(t, float) else '-'  # noqa: E731
    mib = lambda m: f'{m:.0f}' if isinstance(m, float) else '-'  # noqa: E731
    out = ['| graph | t0 fixed basis (ms) | t1 + eigh (ms) | t2 + amortized (ms) '
           '| (t1-t0)/(t2-t0) | paper (GPU) | alone: eigh (ms) | alone: amortized fwd+bwd (ms) '
           '| eigh / amortized alone | eigh check: eig err, sine | amortized check: '
           'max abs(UᵀU - I) | peak MiB t1 / t2 | status |', '|' + '---|' * 13]
    for r in rows:
        if 'fixed' not in r:
            out.append(f"| {r['graph']} |" + ' - |' * 11 + f" {r['status']} |")
            continue
        sp = r['speedup']
        sp = f'{sp:.1f}x' if isinstance(sp, float) else (sp or '-')
        e, a = r.get('eigh_alone'), r.get('amortized_alone')
        alone = (f'{e / a:.1f}x' if r.get('speedup') != 'WRONG' else 'WRONG') if e and a else '-'
        eigh = (f"{r['eigh_eig_err']:.1e}, {r['eigh_sine']:.1e} ({r['eigh_check']})"
                if 'eigh_check' in r else '-')
        am = (f"{r['amortized_orth_err']:.1e} ({r['amortized_check']})"
              if 'amortized_check' in r else '-')
        paper = f"{r['paper']}x" if r['paper'] else 'n/a'
        out.append(f"| {r['graph']} | {ms(r.get('fixed'))} | {ms(r.get('eigh'))} "
                   f"| {ms(r.get('amortized'))} | {sp} | {paper} | {ms(e)} | {ms(a)} | {alone} "
                   f"| {eigh} | {am} "
                   f"| {mib(r.get('eigh_peak_mib'))} / {mib(r.get('amortized_peak_mib'))} "
                   f"| {r['status']} |")
    return out


# ---------------------------------------------------------------------- pe
def pe_cases(smoke: bool, refs: References):
    r"""(name, make graphs, k, reference key or None, sparse reference
    solver, graphs checked) for the PE rows."""
    from torch_geometric.data import Data

    def block(n):
        return lambda: [Data(edge_index=refs.block_graph(n), num_nodes=n)]

    def pubmed():
        from pyg_spectral.datasets import load_planetoid
        data = load_planetoid('PubMed')[0]
        return [Data(edge_index=data.edge_index, num_nodes=data.num_nodes)]

    if smoke:
        return [('block model 600', block(600), 16, ('block', 600), 'lanczos', 1),
                ('block model 2000', block(2000), 16, ('block', 2000), 'lanczos', 1),
                ('40 molecule-like graphs', lambda: pe_speed.molecule_like(40, 0), 8, None, None, 40)]
    return [('PubMed', pubmed, 16, ('PubMed',), 'shift-invert', 1),
            ('10000 molecule-like graphs', lambda: pe_speed.molecule_like(10_000, 0), 8, None, None, 200),
            ('block model 1e5', block(100_000), 16, ('block', 100_000), 'lanczos', 1),
            ('block model 1e6', block(1_000_000), 16, ('block', 1_000_000), 'lanczos', 1)]


def pe_reference(refs: References, graph, k: int, key, sparse: str, clock: Clock):
    r"""As ``pe_speed.reference`` (eigenvalues 1..k, basis of the eigenspace
    of eigenvalues <= lambda_k), with the sparse solver chosen per graph
    family (shift-invert's LU fills in on a block model), shared, and
    bounded by the part's budget: :obj:`(None, message)` past it."""
    n = graph.num_nodes
    if key is None:
        return pe_speed.reference(graph, k), 0.0
    null = common.null_space_basis(graph.edge_index, n)
    if null.shape[1] >= k + 1:
        return (np.zeros(k), null), 0.0
    ref, seconds = refs.smallest(key, graph.edge_index, n, k + 1, sparse, clock)
    if ref is None:
        return None, seconds
    return (ref.values[1:k + 1], ref.vectors), seconds


def check_pe(graphs, outs, check_ids, refs_by_id) -> dict:
    errs = [pe_speed.check(graphs[i], outs[i], refs_by_id[i]) for i in check_ids]
    eig, sub = max(e[0] for e in errs), max(e[1] for e in errs)
    notes = sorted({e[2] for e in errs if e[2]})
    ok = eig <= pe_speed.EIG_TOL and sub <= pe_speed.SUB_TOL
    return dict(eig_err=eig, sine=sub, verdict='ok' if ok else 'WRONG',
                checked=len(check_ids), note='; '.join(notes))


def part_pe(device: torch.device, clock: Clock, smoke: bool, refs: References, rows: list,
            notes: list, method: str = 'auto') -> None:
    from torch_geometric.data import Batch
    from pyg_spectral.transforms import AddNeuralSVDPE
    from torch_geometric.data import Data
    notes += [f"ours: AddNeuralSVDPE(k, method={method!r}, seed=0) on {device}, one cold call (a "
              f"300-node graph warmed the device up first), the data moved from the CPU and the "
              f"result back included; PyG: AddLaplacianEigenvectorPE, per graph, on the CPU in a "
              f"child process (torch threads: {torch.get_num_threads()}); checks: pe_speed.check "
              f"against common.reference_smallest, eig err <= {pe_speed.EIG_TOL:g}, "
              f"sine <= {pe_speed.SUB_TOL:g} (small-graph set: an evenly spaced subset)"]
    wg = Data(edge_index=common.block_graph(300, blocks=4, seed=1), num_nodes=300)
    AddNeuralSVDPE(4, method=method, seed=0, attr_name='pe', device=device)(wg.clone())
    sync(device)
    for name, make, k, key, sparse, checks in pe_cases(smoke, refs):
        if clock.left() <= 0:
            rows.append(dict(graph=name, method='-', status=SKIPPED))
            continue
        t = time.perf_counter()
        graphs = make()
        build_s = time.perf_counter() - t
        check_ids = np.linspace(0, len(graphs) - 1, min(len(graphs), checks)).astype(int).tolist()
        transform = AddNeuralSVDPE(k, method=method, seed=0, attr_name='pe', device=device)

        def ours():
            if len(graphs) == 1:
                out = transform(graphs[0].clone())
                return [out.pe.double().cpu().numpy()]
            out = transform(Batch.from_data_list(graphs))
            pe, ptr = out.pe.double().cpu().numpy(), out.ptr.tolist()
            return [pe[a:b] for a, b in zip(ptr[:-1], ptr[1:])]
        wall, peak, outs, warned = on_device(ours, device)
        nodes = sum(g.num_nodes for g in graphs)
        graph_label = f'{name} ({nodes} nodes, k={k})'
        ours_row = dict(graph=graph_label, method=f'ours ({device})', wall_s=wall, peak_mib=peak,
                        status='ok', graphs_s=build_s)
        t = time.perf_counter()
        refs_by_id, missing = {}, None
        for i in check_ids:
            refs_by_id[i], s = pe_reference(refs, graphs[i], k, key, sparse, clock)
            if refs_by_id[i] is None:
                missing = s
                break
        ours_row['reference_s'] = None if missing else time.perf_counter() - t
        if missing:  # a result without its check is neither right nor a speed
            ours_row.update(verdict='unchecked', note='; '.join([missing, *warned]))
        else:
            check = check_pe(graphs, outs, check_ids, refs_by_id)
            ours_row.update(check, note='; '.join(filter(None, [check['note'], *warned])))
        rows.append(ours_row)
        print(f"  pe {graph_label} ours: {wall:.3f} s {ours_row['verdict']}", flush=True)
        del outs
        status, seconds, mem, out = cpu_peer(pe_speed.peer_pyg, (graphs, k, 0), clock)
        peer = dict(graph=graph_label, method='PyG (cpu)', wall_s=seconds, peak_mib=mem,
                    status=status if status != 'ok' else 'ok')
        if status == 'ok' and missing:
            peer['verdict'] = 'unchecked'
        elif status == 'ok':
            peer.update(check_pe(graphs, out, check_ids, refs_by_id))
        else:
            peer['note'] = str(out) if out is not None else ''
        peer['ratio'] = ratio(peer, ours_row)
        rows.append(peer)
        print(f"  pe {graph_label} PyG: {status} {seconds} {peer.get('verdict')}", flush=True)


def format_rows(rows, columns) -> list[str]:
    def cell(r, key, spec):
        v = r.get(key)
        if v is None or v == '':
            return '-'
        text = format(v, spec) if spec and isinstance(v, (int, float)) else str(v)
        return text.replace('|', '\\|').replace('\n', ' ')
    out = ['| ' + ' | '.join(title for title, _, _ in columns) + ' |', '|' + '---|' * len(columns)]
    out += ['| ' + ' | '.join(cell(r, key, spec) for _, key, spec in columns) + ' |' for r in rows]
    return out


PE_COLUMNS = [('graph', 'graph', ''), ('method', 'method', ''), ('wall s', 'wall_s', '.3f'),
              ('peak MiB', 'peak_mib', '.0f'), ('eig err', 'eig_err', '.1e'),
              ('sine', 'sine', '.1e'), ('graphs checked', 'checked', 'd'),
              ('verdict', 'verdict', ''), ('PyG / ours', 'ratio', ''), ('status', 'status', ''),
              ('reference s', 'reference_s', '.1f'), ('note', 'note', '')]


# -------------------------------------------------------------- neuralsvd
def part_neuralsvd(device: torch.device, clock: Clock, smoke: bool, refs: References, rows: list,
                   notes: list,
                   steps: int = 3000, tol: float = 1e-5):
    from pyg_spectral import GraphOperator, NeuralSVD
    k = neuralsvd_speed.K
    n = 2000 if smoke else 1_000_000
    notes += [f'k = {k} smallest of the sym. normalized Laplacian of a block model '
              f'(common.block_graph); ours: NeuralSVD(k).fit(free table, steps<={steps}, '
              f'tol={tol:g}, refine=True) on {device}, cold, timed from the CPU edge_index '
              f'(copy and operator build included), stopped early if the budget runs out; '
              f'SciPy eigsh(L, k, which="SA") on the CPU in a child process (L prebuilt, not '
              f'timed); checks: neuralsvd_speed.verdict against common.reference_smallest']
    t = time.perf_counter()
    ei = refs.block_graph(n)
    graphs_s = time.perf_counter() - t
    L = refs.laplacian(('block', n), ei, n)
    label = f'block model {n} (k={k})'
    stopped = []

    def budget_out(step, loss, quotients):
        if clock.left() <= 0:
            stopped.append(step)
            return True
        return False

    def ours():
        op = GraphOperator.from_edge_index(ei.to(device), num_nodes=n, kind='sym_laplacian')
        start = time.perf_counter()
        res = NeuralSVD(k).fit(op, largest=False, steps=steps, tol=tol, check_every=25,
                               refine=True, progress=False, callback=budget_out)
        sync(device)
        return res, time.perf_counter() - start
    wall, peak, (res, fit_s), warned = on_device(ours, device)
    row = dict(graph=label, method=f'NeuralSVD ({device})', wall_s=wall, fit_s=fit_s, peak_mib=peak,
               steps=res.steps, converged=bool(getattr(res, 'converged', True)),
               status='ok' if not stopped else f'stopped (budget) at step {stopped[0] + 1}',
               graphs_s=graphs_s, note='; '.join(warned))
    values, vectors = res.eigenvalues.double().cpu().numpy(), res.eigenvectors.double().cpu().numpy()
    del res
    rows.append(row)
    print(f'  neuralsvd {label} ours: {wall:.2f} s, {row["steps"]} steps', flush=True)
    # the reference before the peer: without it neither row can be read
    ref17, ref_s = refs.smallest(('block', n), ei, n, k + 1, 'lanczos', clock)
    ref = None
    if ref17 is None:  # a result without its check is neither right nor a speed
        row.update(verdict='unchecked', note='; '.join(filter(None, [row['note'], ref_s])))
    else:
        ref = closed_at(ref17, k)
        row['reference_s'] = ref_s
        row['eig_err'], row['sine'] = common.errors(values, vectors, ref, k)
        row['verdict'] = neuralsvd_speed.verdict(row['eig_err'], row['sine'], ref)
    status, seconds, mem, out = cpu_peer(neuralsvd_speed.run_eigsh, (L,), clock)
    peer = dict(graph=label, method='SciPy eigsh SA (cpu)', wall_s=seconds, peak_mib=mem,
                status=status, note='' if status == 'ok' else str(out or ''))
    if status == 'ok' and ref is None:
        peer['verdict'] = 'unchecked'
    elif status == 'ok':
        peer['eig_err'], peer['sine'] = common.errors(out[0], out[1], ref, k)
        peer['verdict'] = neuralsvd_speed.verdict(peer['eig_err'], peer['sine'], ref)
    peer['ratio'] = ratio(peer, row)
    rows.append(peer)
    print(f'  neuralsvd {label} eigsh: {status} {seconds} {peer.get("verdict")}', flush=True)


NEURALSVD_COLUMNS = [('graph', 'graph', ''), ('method', 'method', ''), ('wall s', 'wall_s', '.3f'),
                     ('fit s', 'fit_s', '.3f'), ('steps', 'steps', 'd'), ('converged', 'converged', ''),
                     ('peak MiB', 'peak_mib', '.0f'), ('eig err', 'eig_err', '.1e'),
                     ('sine', 'sine', '.1e'), ('verdict', 'verdict', ''),
                     ('eigsh / ours', 'ratio', ''), ('status', 'status', ''),
                     ('reference s', 'reference_s', '.1f'), ('note', 'note', '')]


# --------------------------------------------------------------- hydrogen
SMOKE_HYDROGEN = dict(k=4, hidden=8, layers=1, fourier=4, fourier_scale=0.1, steps=100_000,
                      batch=16, lr=1e-3, ema=0.9, scale=3.0, warmup=0)


def part_hydrogen(device: torch.device, clock: Clock, smoke: bool, refs: References, rows: list,
                  notes: list,
                  nesting: str = 'sequential'):
    from pyg_spectral.solvers import SampledNeuralSVD
    cfg = dict(SMOKE_HYDROGEN if smoke else hydrogen.CONFIGS['full'])
    every = 5 if smoke else 10  # the budget is checked only at these steps
    eval_most, eval_chunk = (2 ** 10, 2 ** 9) if smoke else (2 ** 15, 2 ** 12)
    # the fit stops when the budget left would just hold an evaluation of
    # eval_most samples, costed as that many training samples (on the
    # development CPU the full config's evaluation took about that); the
    # evaluation then takes what the budget allows, one chunk at least
    floor = 1.0 if smoke else 5.0
    notes += [f"config {'smoke' if smoke else 'full'} of benchmarks/hydrogen.py: {cfg}, nesting "
              f"{nesting}; the fit is stopped at the first check (every {every} steps) where the "
              f"budget left is below the estimated time of an evaluation of {eval_most} samples "
              f"(that of {eval_most / cfg['batch']:g} training steps, at least {floor:g} s); "
              f"step rate between the first and the last check; errors: Rayleigh-Ritz values of "
              f"the partial fit on fresh samples against the exact E_n (hydrogen.errors), not a "
              f"verdict: a partial fit is not converged"]
    torch.manual_seed(0)
    op, model = hydrogen.build(cfg, str(device))
    solver = SampledNeuralSVD(cfg['k'], nesting=nesting, lr=cfg['lr'], batch_size=cfg['batch'],
                              ema_decay=cfg['ema'], seed=0, warmup_steps=cfg['warmup'])
    marks = []

    def per_sample() -> float:
        # between checks once there are two: the first steps' one-off costs left out
        (s0, t0), (s1, t1) = (marks[0], marks[-1]) if len(marks) >= 2 else ((0, started), marks[0])
        return (t1 - t0) / ((s1 - s0) * cfg['batch'])

    def stop(step, loss, quotients):
        marks.append((step + 1, time.perf_counter()))
        # not before the second check unless the budget is gone: a rate between two checks
        # leaves the first steps' one-off costs out of both the rate and the estimate
        left = clock.left()
        return left <= floor or (len(marks) >= 2 and left <= per_sample() * eval_most)

    def fit_and_evaluate():
        res = solver.fit(op, model, steps=cfg['steps'], check_every=every, callback=stop,
                         eval_samples=eval_chunk, eval_batch_size=eval_chunk, progress=False)
        fitted = time.perf_counter()
        chunks = int(max(1, min(eval_most // eval_chunk,
                                clock.left() / (per_sample() * eval_chunk)))) if marks else 1
        final = solver.evaluate(op, res.model, num_samples=chunks * eval_chunk,
                                batch_size=eval_chunk)
        final.steps = res.steps
        return final, fitted, chunks * eval_chunk
    started = time.perf_counter()
    wall, peak, (res, fitted, samples), warned = on_device(fit_and_evaluate, device)
    row = dict(config='smoke' if smoke else 'full', steps=res.steps, wall_s=wall, peak_mib=peak,
               eval_samples=samples, eval_s=started + wall - fitted, note='; '.join(warned),
               status='ok')
    if marks:
        row['steps_per_s'] = 1 / (per_sample() * cfg['batch'])
        row['hours_to_1e5'] = 1e5 / row['steps_per_s'] / 3600
        if len(marks) < 2:
            row['note'] = '; '.join(filter(None, [row['note'], 'one check: rate from the start']))
    ritz, own = hydrogen.errors(res, op.exact_eigenvalues(cfg['k']))
    row['ritz_mean_pct'], row['ritz_max_pct'] = 100 * float(ritz.mean()), 100 * float(ritz.max())
    row['max_cos'] = float(res.orthogonality)
    row['finite'] = bool(torch.isfinite(res.eigenvalues).all())
    if not row['finite']:
        row['verdict'] = 'WRONG'
        row['note'] = '; '.join(filter(None, [row['note'], 'non-finite eigenvalues']))
    print(f"  hydrogen: {res.steps} steps in {wall:.1f} s, {row.get('steps_per_s')} steps/s", flush=True)
    rows.append(row)


HYDROGEN_COLUMNS = [('config', 'config', ''), ('steps done', 'steps', 'd'), ('wall s', 'wall_s', '.1f'),
                    ('of which evaluation s', 'eval_s', '.1f'), ('eval samples', 'eval_samples', 'd'),
                    ('steps / s', 'steps_per_s', '.1f'), ('hours for 1e5 steps', 'hours_to_1e5', '.2f'),
                    ('peak MiB', 'peak_mib', '.0f'), ('Ritz rel. err. mean %', 'ritz_mean_pct', '.2f'),
                    ('max %', 'ritz_max_pct', '.2f'), ('max cos', 'max_cos', '.3f'),
                    ('status', 'status', ''), ('note', 'note', '')]

RUNNERS = {'amortized': part_amortized, 'pe': part_pe, 'neuralsvd': part_neuralsvd,
           'hydrogen': part_hydrogen}
TITLES = {'amortized': 'Amortized low-rank GCN step (Table 1 of Li et al., 2024)',
          'pe': 'Laplacian PE: ours on the device vs PyG on the CPU',
          'neuralsvd': 'Cold NeuralSVD solve vs CPU eigsh',
          'hydrogen': '2D hydrogen, 16 states: step rate of the full config'}


# ------------------------------------------------------------------ output
def git_commit() -> str:
    try:
        out = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=HERE, capture_output=True,
                             text=True, timeout=10)
        return out.stdout.strip() or 'unknown'
    except (OSError, subprocess.SubprocessError):
        return 'unknown'


def header(device: torch.device, smoke: bool, argv) -> dict:
    cuda = device.type == 'cuda'
    return dict(
        mode='smoke' if smoke else 'full',
        device=str(device),
        gpu=torch.cuda.get_device_name(device) if cuda else None,
        torch=torch.__version__, cuda=torch.version.cuda if cuda else None,
        date=datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M:%S UTC'),
        git_commit=git_commit(), python=platform.python_version(),
        cpu=platform.processor() or platform.machine(), cpu_count=os.cpu_count(),
        torch_threads=torch.get_num_threads(), load_average=list(os.getloadavg()),
        command=' '.join(['python', 'benchmarks/gpu_suite.py', *argv]))


def markdown(result: dict) -> str:
    h = result['header']
    lines = ['# GPU suite', '']
    if h['gpu'] is None:
        lines += ['**GPU figures are not measured here**: this run used the '
                  f"{h['device']} ({'toy sizes, --smoke' if h['mode'] == 'smoke' else 'full sizes'}); "
                  'its seconds say nothing about a GPU.', '']
    lines += [f"`{h['command']}`", '',
              f"{h['date']}; device {h['device']}" + (f" ({h['gpu']}, CUDA {h['cuda']})" if h['gpu'] else '')
              + f"; torch {h['torch']}; commit {h['git_commit']}; {h['cpu_count']} CPUs, "
              f"{h['torch_threads']} torch threads, load average {h['load_average'][0]:.1f}", '']
    columns = {'pe': PE_COLUMNS, 'neuralsvd': NEURALSVD_COLUMNS, 'hydrogen': HYDROGEN_COLUMNS}
    for name, part in result['parts'].items():
        lines += [f'## {name}: {TITLES[name]}', '',
                  f"status: **{part['status']}**; budget {part['budget_s']:g} s, "
                  f"spent {part['wall_s']:.1f} s", '']
        if part.get('error'):
            lines += ['```', part['error'], '```', '']
        lines += [f'- {note}' for note in part.get('notes', [])]
        if part.get('rows'):
            lines += [''] + (format_amortized(part['rows']) if name == 'amortized'
                             else format_rows(part['rows'], columns[name]))
        lines.append('')
    return '\n'.join(lines)


def write(out: Path | None, result: dict) -> None:
    if out is None:
        return
    from pyg_spectral.io import atomic_write_text
    atomic_write_text(json.dumps(result, indent=1, default=str) + '\n', out / 'gpu_suite.json')
    atomic_write_text(markdown(result), out / 'gpu_suite.md')


def part_status(rows: list[dict]) -> str:
    statuses = [str(r.get('status', 'ok')) for r in rows]
    wrong = any(r.get('verdict') == 'WRONG' or r.get('speedup') == 'WRONG'
                or 'WRONG' in (r.get('eigh_check'), r.get('amortized_check')) for r in rows)
    if wrong:
        return 'WRONG result(s)'
    if rows and all(s.startswith(SKIPPED) for s in statuses):
        return SKIPPED
    if any(s.startswith((SKIPPED, 'stopped')) or s == 'timeout' for s in statuses) \
            or any(r.get('verdict') == 'unchecked' for r in rows):
        return 'partial (budget)'
    return 'ok'


# -------------------------------------------------------------------- main
def parse_budgets(items) -> dict:
    out = {}
    for item in items:
        name, _, value = item.partition('=')
        if name not in PARTS or not value:
            raise argparse.ArgumentTypeError(f"--budget takes PART=SECONDS with PART in {PARTS}, "
                                             f"got {item!r}")
        out[name] = float(value)
    return out


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--device', default='cuda')
    p.add_argument('--smoke', action='store_true', help='toy sizes on the CPU (forces --device cpu)')
    p.add_argument('--out', type=Path, default=None, help='directory for gpu_suite.json and .md')
    p.add_argument('--parts', nargs='+', choices=PARTS, default=list(PARTS))
    p.add_argument('--budget', nargs='*', default=[], metavar='PART=SECONDS')
    p.add_argument('--total', type=float, default=None,
                   help=f'seconds for the whole run, startup included (default {TOTAL:.0f}; '
                        f'smoke {SMOKE_TOTAL:.0f})')
    args = p.parse_args(argv)
    try:
        overrides = parse_budgets(args.budget)
    except argparse.ArgumentTypeError as e:
        p.error(str(e))
    if args.smoke:
        device = torch.device('cpu')
    else:
        device = torch.device(args.device)
        if device.type == 'cuda' and not torch.cuda.is_available():
            p.error(f"CUDA is not available here (torch {torch.__version__}, built with CUDA "
                    f"{torch.version.cuda}): the full suite measures a GPU. Run with --smoke "
                    f"for the toy CPU run, or --device cpu for full sizes on the CPU.")
    budgets = {**(SMOKE_BUDGETS if args.smoke else BUDGETS), **overrides}
    total = args.total if args.total is not None else (SMOKE_TOTAL if args.smoke else TOTAL)
    if device.type == 'cuda':
        torch.zeros(1, device=device)  # the CUDA context, outside every part's own clock
    result = dict(header=header(device, args.smoke, argv), parts={})
    print(json.dumps(result['header']), flush=True)
    run_deadline = STARTED + total
    refs = References()
    for name in args.parts:
        clock = Clock(budgets[name], run_deadline)
        part = dict(budget_s=budgets[name], rows=[], notes=[])
        print(f'# {name} (budget {budgets[name]:g} s)', flush=True)
        if clock.left() <= 0:
            part.update(status=SKIPPED, wall_s=0.0)
        else:
            try:
                kwargs = {'method': SMOKE_PE_METHOD} if args.smoke and name == 'pe' else {}
                # rows are appended as they are measured: a part that raises keeps them
                RUNNERS[name](device, clock, args.smoke, refs, part['rows'], part['notes'], **kwargs)
                part['status'] = part_status(part['rows'])
            except Exception as e:  # one part's failure is its result; the others still run
                traceback.print_exc()
                part.update(status='error', error=f'{type(e).__name__}: {e}'[:2000])
            part['wall_s'] = clock.spent()
        if device.type == 'cuda':
            torch.cuda.empty_cache()
        result['parts'][name] = part
        print(f"# {name}: {part['status']} in {part['wall_s']:.1f} s", flush=True)
        write(args.out, result)
    print(markdown(result))
    statuses = [part['status'] for part in result['parts'].values()]
    if all(s == 'error' for s in statuses):
        return 1
    if args.smoke and any(s in ('error', 'WRONG result(s)') for s in statuses):
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
