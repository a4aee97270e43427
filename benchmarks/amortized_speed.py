"""Per-iteration cost of amortized eigendecomposition against exact solvers.

Reproduces the rows of Table 1 of Li, Shi, Zhao, Lin (2024), "Amortized
Eigendecomposition for Neural Networks", on this machine:

- low-rank GCN (rank k, default 16; ``--k`` sweeps) on Cora, CiteSeer, PubMed,
  propagating with the component space and the k eigenvectors after it
  (``--plain`` for the paper's plain top-k): t0 (backbone with a fixed
  basis), t1 (+ dense ``torch.linalg.eigh`` every iteration), t2 (+ the
  amortized basis), speed-up (t1 - t0) / (t2 - t0), and the strong peers
  SciPy ``eigsh`` (warm-started in plain mode; in component mode ARPACK next
  to the component space, with the recovery rounds that make it right on
  repeated eigenvalues) and ``torch.lobpcg`` (plain mode only: it cannot
  deflate), as extra columns; plus the floor of the method (one sparse
  product A U and one QR of an n x k matrix) and, in component mode, the
  share of the amortized step spent on the projection onto the complement
  (the QR's time with it less its time without). The amortized basis runs without canonical
  signs, as LowRankGCNConv's does (its propagation does not depend on
  them); the step with them is its own column;
- nuclear-norm regularisation of an MLP of width 128/256/512 (full SVD vs
  ``amortized_svd``);
- latent-space PCA in an autoencoder (``eigh`` of the latent covariance vs
  ``amortized_eigh``);
- the regime where amortization pays: the graph changes every step (DropEdge,
  10% of the edges dropped at random; learned edge weights), with time per
  iteration and final accuracy for every solver.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/amortized_speed.py --out benchmarks/results/amortized_speed.md
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F
import torch_geometric.transforms as Tr
from torch import nn
from torch_geometric.utils import dropout_edge

from pyg_spectral.datasets import load_planetoid
from pyg_spectral.bench.node_classification import make_optimizer
from pyg_spectral.nn import AmortizedEigenbasis, amortized_eigh, amortized_svd, exact_eigh
from pyg_spectral.linalg import signed_qr
from pyg_spectral.operators import GraphOperator, NullSpace

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import machine_header  # noqa: E402

PAPER_SPEEDUP = {'Cora': 23.4, 'CiteSeer': 23.7, 'PubMed': 615.2}
K = 16


def timed(step, iters: int, warmup: int = 1) -> float:
    r"""Fastest of :obj:`iters` calls of :obj:`step`, in seconds: the machine
    is shared, and other processes only ever add time."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return min(times)


# ---------------------------------------------------------------- low-rank GCN
class LowRankGCNBackbone(nn.Module):
    r"""Two rank-k spectral GCN layers on a given :obj:`(U, lam)`, plus the
    component space :obj:`null` (eigenvalue 1) when given."""

    def __init__(self, num_features: int, num_classes: int, hidden: int = 16) -> None:
        super().__init__()
        self.lin1, self.lin2 = nn.Linear(num_features, hidden), nn.Linear(hidden, num_classes)

    def forward(self, x, U, lam, null=None):
        def prop(h):
            out = U @ (lam.unsqueeze(-1) * (U.T @ h))
            return out if null is None else out + null.project(h)
        x = F.dropout(x, 0.5, self.training)
        x = prop(self.lin1(x)).relu()
        x = F.dropout(x, 0.5, self.training)
        return prop(self.lin2(x))


class Solver:
    r"""Returns :obj:`(U, lam, aux_loss)` for an operator with one method;
    the exact ones re-solve every call, warm-started where they can be."""

    def __init__(self, method: str, n: int, k: int = K, seed: int = 0) -> None:
        self.method, self.previous, self.k = method, None, k
        if method == 'amortized':
            # an eigen-loss module, so that the bench's optimizer finds W
            # (eigen_parameters) and gives it the basis group and schedule
            # without canonical signs, as LowRankGCNConv's own basis: the
            # propagation U diag(lam) U^T does not depend on them
            self.basis = AmortizedEigenbasis(n, k, canonical_signs=False)
            gen = torch.Generator().manual_seed(seed)
            with torch.no_grad():
                self.basis.weight.copy_(0.1 * torch.randn(n, k, generator=gen))
            self.W = self.basis.weight

    def parameters(self):
        return [self.W] if self.method == 'amortized' else []

    def modules(self) -> dict:
        return {'basis': self.basis} if self.method == 'amortized' else {}

    def __call__(self, op, null=None):
        if self.method == 'amortized':
            res = amortized_eigh(op, self.W, self.k, null=null, signs=False)
            return res.eigenvectors, res.eigenvalues, res.loss
        # ARPACK next to the component space starts from seeded vectors: no warm
        # start. 'eigsh' labels the recorded results; the library calls it 'arpack'
        method = 'arpack' if self.method == 'eigsh' else self.method
        _, U = exact_eigh(op, self.k, method=method,
                          init=self.previous if null is None else None, null=null)
        self.previous = U
        return U, (U * op.matmat(U)).sum(0), 0.0


def gcn_step(model, opt, data, solver, op, null=None):
    model.train()
    opt.zero_grad()
    U, lam, aux = solver(op, null)
    out = model(data.x, U, lam, null)
    loss = F.cross_entropy(out[data.train_mask], data.y[data.train_mask]) + aux
    loss.backward()
    opt.step()


def lowrank_gcn_rows(names, iters, ks=(K,), components=True):
    rows = []
    for name in names:
        data = load_planetoid(name, transform=Tr.NormalizeFeatures())[0]
        n = data.num_nodes
        op = GraphOperator.from_edge_index(data.edge_index, num_nodes=n, kind='gcn')
        null = NullSpace.of_operator(op) if components else None
        for k in ks:
            fixed_U = exact_eigh(op, k, method='arpack', null=null)[1]
            fixed_lam = (fixed_U * op.matmat(fixed_U)).sum(0)
            row = {'graph': f'{name} ({n}x{k})', 'name': name, 'k': k,
                   'components': None if null is None else null.dim}
            for method in ('fixed', 'eigh', 'eigsh', 'lobpcg', 'amortized'):
                if (method == 'eigh' and n > 5000) or (method == 'lobpcg' and null is not None):
                    # dense eigh of PubMed: minutes per iteration here; lobpcg cannot deflate
                    row[method] = row[method + '_alone'] = None
                    continue
                torch.manual_seed(0)
                model = LowRankGCNBackbone(data.num_features, int(data.y.max()) + 1)
                solver = ((lambda op, null: (fixed_U, fixed_lam, 0.0)) if method == 'fixed'
                          else Solver(method, n, k))
                params = list(model.parameters()) + (solver.parameters() if method != 'fixed' else [])
                opt = torch.optim.Adam(params, lr=0.01, weight_decay=5e-4)
                count = 2 if method == 'eigh' else iters
                row[method] = timed(lambda: gcn_step(model, opt, data, solver, op, null), count)
                if method != 'fixed':  # the solver alone, out of the backbone's noise
                    step = ((lambda: solver(op, null)[2].backward()) if method == 'amortized'
                            else (lambda: solver(op, null)))
                    row[method + '_alone'] = timed(step, count)
                if method == 'amortized':  # as a user calling amortized_eigh gets it
                    row['amortized_signed'] = timed(
                        lambda: amortized_eigh(op, solver.W, k, null=null).loss.backward(), count)
                print(f'  {name} k={k} {method}: {1e3 * row[method]:.1f} ms', flush=True)
            W = torch.randn(n, k)
            if null is not None:  # what the projection adds to the amortized step's QR
                # what the complement adds to the QR: the QR with it against
                # without (fastest of 50 each: they take a fraction of a ms)
                pair = null.basis_matrices(W.dtype)
                row['projection'] = (timed(lambda: signed_qr(W, False, pair), 50)
                                     - timed(lambda: signed_qr(W, False), 50))
            row['floor'] = timed(lambda: (op.matmat(W), torch.linalg.qr(W)), iters)
            # the same with the orthonormalisation the amortized step itself uses
            row['floor_own_qr'] = timed(lambda: (op.matmat(W), signed_qr(W, signs=False)), iters)
            rows.append(row)
    return rows


def format_gcn(rows) -> str:
    r"""Whole training steps give t0, t1, t2 and the paper's speed-up
    (t1 - t0) / (t2 - t0); on a shared CPU the backbone's noise can exceed
    the basis's cost, so each solver is also timed alone (forward, and the
    eigen-loss backward for the amortized basis) and compared with the
    amortized basis alone."""
    ms = lambda t: f'{1e3 * t:.2f}' if t is not None else 'not run'
    lines = ['| graph | components | t0 backbone (ms) | t1 +eigh (ms) | t2 +amortized (ms) '
             '| speed-up (t1-t0)/(t2-t0) | paper (GPU) | alone: eigh (ms) | eigsh (ms) '
             '| lobpcg warm (ms) | amortized fwd+bwd (ms) | eigh / amortized | eigsh / amortized '
             '| lobpcg / amortized | floor A·U+QR (ms) | amortized / floor '
             '| A·U + its own Cholesky-QR2 (ms) | amortized / that '
             '| projection / amortized | amortized with canonical signs (ms) |',
             '|' + '---|' * 20]
    for r in rows:
        t0, t2, am = r['fixed'], r['amortized'], r['amortized_alone']
        speedup = ('not run' if r['eigh'] is None else
                   f"{(r['eigh'] - t0) / (t2 - t0):.1f}x" if t2 > t0 else 'n/a (t2 <= t0: noise)')
        alone = [r.get(m + '_alone') for m in ('eigh', 'eigsh', 'lobpcg')]
        ratios = ' | '.join(f'{t / am:.1f}x' if t is not None else 'n/a' for t in alone)
        projection = ('plain top-k' if r.get('projection') is None
                      else f"{100 * r['projection'] / am:.1f} %")
        comps = 'not used' if r['components'] is None else r['components']
        lines.append(f"| {r['graph']} | {comps} | {ms(t0)} | {ms(r['eigh'])} | {ms(t2)} | {speedup} "
                     f"| {PAPER_SPEEDUP[r['name']]}x | {' | '.join(map(ms, alone))} | {ms(am)} "
                     f"| {ratios} | {ms(r['floor'])} | {am / r['floor']:.2f} "
                     f"| {ms(r['floor_own_qr'])} | {am / r['floor_own_qr']:.2f} | {projection} "
                     f"| {ms(r.get('amortized_signed'))} |")
    return '\n'.join(lines)


# ------------------------------------------------------- nuclear-norm and PCA
def nuclear_rows(dims, iters, layers=4, batch=256, eta=1e-3):
    rows = []
    for d in dims:
        row = {'d': d}
        for method in ('none', 'svd', 'amortized'):
            torch.manual_seed(0)
            mlp = nn.Sequential(*[m for _ in range(layers) for m in (nn.Linear(d, d), nn.ReLU())][:-1])
            weights = [m.weight for m in mlp if isinstance(m, nn.Linear)]
            states = [nn.Parameter(0.1 * torch.randn(d, d)) for _ in weights]
            opt = torch.optim.Adam(list(mlp.parameters()) + states, lr=1e-3)
            x, y = torch.randn(batch, d), torch.randn(batch, d)

            def step():
                opt.zero_grad()
                loss = F.mse_loss(mlp(x), y)
                for W, state in zip(weights, states):
                    if method == 'svd':
                        loss = loss + eta * torch.linalg.svdvals(W).sum()
                    elif method == 'amortized':
                        res = amortized_svd(W, state, d)
                        loss = loss + eta * res.S.sum() + res.loss
                loss.backward()
                opt.step()

            row[method] = timed(step, iters)
        rows.append(row)
    return rows


def pca_rows(dims, iters, k=K, batch=512, inputs=256):
    rows = []
    for d in dims:
        row = {'d': d}
        for method in ('none', 'eigh', 'amortized'):
            torch.manual_seed(0)
            enc = nn.Sequential(nn.Linear(inputs, d), nn.ReLU(), nn.Linear(d, d))
            dec = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, inputs))
            state = nn.Parameter(0.1 * torch.randn(d, k))
            opt = torch.optim.Adam([*enc.parameters(), *dec.parameters(), state], lr=1e-3)
            x = torch.randn(batch, inputs)

            def step():
                opt.zero_grad()
                h = enc(x)
                hc = h - h.mean(0)
                aux = 0.0
                if method == 'none':
                    z = h
                else:
                    C = hc.T @ hc / batch
                    if method == 'eigh':
                        U = torch.linalg.eigh(C)[1][:, -k:]
                    else:
                        res = amortized_eigh(C, state, k)
                        U, aux = res.eigenvectors, res.loss
                    z = hc @ U @ U.T + h.mean(0)  # project onto the top-k principal components
                loss = F.mse_loss(dec(z), x) + aux
                loss.backward()
                opt.step()

            row[method] = timed(step, iters)
        rows.append(row)
    return rows


def format_dense(rows, exact: str, title: str) -> str:
    lines = [f'| {title} | t0 backbone (ms) | t1 +{exact} (ms) | t2 +amortized (ms) | speed-up (t1-t0)/(t2-t0) |',
             '|---|---|---|---|---|']
    for r in rows:
        t0, t1, t2 = r['none'], r[exact], r['amortized']
        sp = f'{(t1 - t0) / (t2 - t0):.1f}x' if t2 > t0 else 'n/a (t2 <= t0)'
        lines.append(f"| {r['d']} | {1e3 * t0:.2f} | {1e3 * t1:.2f} | {1e3 * t2:.2f} | {sp} |")
    return '\n'.join(lines)


# ------------------------------------------------------------ changing graphs
def changing_graph_run(name, method, regime, epochs, iters_only=False, k=K, components=True):
    r"""Trains the rank-k GCN with the graph changing every step (its
    component space, when used, rebuilt every step too) under the bench's
    optimizer (an amortized basis in its own group at the bench's basis rate,
    decayed to 0 by a cosine over the epochs); returns (median
    seconds per training step, seconds of the basis in a step: the median
    solve for an exact solver, forward and backward for the amortized one,
    test accuracy at best validation)."""
    data = load_planetoid(name, transform=Tr.NormalizeFeatures())[0]
    n = data.num_nodes
    torch.manual_seed(0)
    model = LowRankGCNBackbone(data.num_features, int(data.y.max()) + 1)
    solver = Solver(method, n, k)
    net = nn.ModuleDict({'model': model, **solver.modules()})
    theta = None
    if regime == 'learned-weights':
        theta = nn.Parameter(torch.zeros(data.edge_index.size(1)))
        net.register_parameter('theta', theta)
    # the bench's optimizer: an amortized basis in its own group, decayed to 0
    opt, decay = make_optimizer(net, 0.01, 5e-4, 'cosine', epochs)
    full = GraphOperator.from_edge_index(data.edge_index, num_nodes=n, kind='gcn')
    full_null = NullSpace.of_operator(full) if components else None
    reverse = _reverse_edges(data.edge_index, n)
    basis_times = []

    def timed_solver(op, null):
        t = time.perf_counter()
        out = solver(op, null)
        basis_times.append(time.perf_counter() - t)
        return out

    def train_step():
        if regime == 'dropedge':
            ei, _ = dropout_edge(data.edge_index, p=0.1, force_undirected=True)
            op = GraphOperator.from_edge_index(ei, num_nodes=n, kind='gcn')
        else:  # symmetric learned weights in (0, 2), through the normalization
            w = torch.sigmoid(theta) * 2
            op = GraphOperator.from_edge_index(data.edge_index, (w + w[reverse]) / 2, n, kind='gcn')
        null = NullSpace.of_operator(op) if components else None
        gcn_step(model, opt, data, timed_solver, op, null)
        decay.step()

    times, best_val, best_test = [], -1.0, 0.0
    eval_solver = Solver('eigsh', n, k) if method != 'amortized' else solver
    for epoch in range(epochs):
        t = time.perf_counter()
        train_step()
        times.append(time.perf_counter() - t)
        if iters_only:
            continue
        model.eval()
        with torch.no_grad():
            if regime == 'learned-weights':
                w = torch.sigmoid(theta) * 2
                full = GraphOperator.from_edge_index(data.edge_index, (w + w[reverse]) / 2, n, kind='gcn')
                full_null = NullSpace.of_operator(full) if components else None
            U, lam, _ = eval_solver(full, full_null)
            pred = model(data.x, U, lam, full_null).argmax(-1)
        val = float((pred[data.val_mask] == data.y[data.val_mask]).float().mean())
        if val > best_val:
            best_val = val
            best_test = float((pred[data.test_mask] == data.y[data.test_mask]).float().mean())
    basis_time = statistics.median(basis_times[1:] or basis_times)
    if method == 'amortized':  # its backward runs inside the step: time both on the last graph
        op = GraphOperator.from_edge_index(data.edge_index, num_nodes=n, kind='gcn')
        null = NullSpace.of_operator(op) if components else None
        basis_time = timed(lambda: solver(op, null)[2].backward(), 10)
    return statistics.median(times[1:] or times), basis_time, None if iters_only else best_test


def _reverse_edges(edge_index, n):
    key = edge_index[0] * n + edge_index[1]
    order = torch.argsort(key)
    return order[torch.searchsorted(key[order], edge_index[1] * n + edge_index[0])]


REGIMES = ('dropedge', 'learned-weights')


def changing_rows(names, epochs, k=K, components=True, regimes=REGIMES):
    rows = []
    for name in names:
        for regime in regimes:
            for method in ('eigh', 'eigsh', 'lobpcg', 'amortized'):
                big = load_planetoid(name)[0].num_nodes > 5000
                if (method == 'eigh' and big) or (method == 'lobpcg' and components):
                    continue  # lobpcg cannot deflate the component space
                iters_only = method == 'eigh'  # 200 dense eigh are too slow here for accuracy
                t, basis, acc = changing_graph_run(name, method, regime, 3 if iters_only else epochs,
                                                   iters_only, k, components)
                rows.append(dict(graph=name, regime=regime, method=method, ms=1e3 * t,
                                 basis_ms=1e3 * basis, acc=acc))
                print(f'  {name} {regime} {method}: {1e3 * t:.1f} ms, acc {acc}', flush=True)
    return rows


def format_changing(rows) -> str:
    lines = ['| graph | regime | solver | ms / training step | basis (ms; amortized: fwd+bwd) '
             '| basis / step | test acc (best val) |', '|---|---|---|---|---|---|---|']
    for r in rows:
        acc = f"{100 * r['acc']:.1f}" if r['acc'] is not None else 'not run (3 steps timed)'
        lines.append(f"| {r['graph']} | {r['regime']} | {r['method']} | {r['ms']:.1f} "
                     f"| {r['basis_ms']:.1f} | {100 * r['basis_ms'] / r['ms']:.0f} % | {acc} |")
    return '\n'.join(lines)


def convergence_rows(name, checkpoints=(50, 100, 200, 400, 800)):
    r"""The basis alone under the bench's optimizer (Adam, lr 0.01, weight
    decay 5e-4) on the GCN matrix, with a constant learning rate and with
    the bench's cosine decay to 0 over the last checkpoint's steps: largest
    principal-angle sine against the exact top eigenspace (the whole
    eigenvalue-1 cluster when it has more than k dimensions) and the worst
    eigenvalue error."""
    from pyg_spectral.metrics import max_principal_sine
    data = load_planetoid(name)[0]
    n = data.num_nodes
    op = GraphOperator.from_edge_index(data.edge_index, num_nodes=n, kind='gcn')
    vals, vecs = exact_eigh(op, K, method='arpack')
    # eigenvalue 1 has one eigenvector D^1/2 1_C per connected component C;
    # with more than k components the top-k eigenspace is any k dimensions of them
    from scipy.sparse.csgraph import connected_components
    from torch_geometric.utils import degree, to_scipy_sparse_matrix
    cluster, label = connected_components(to_scipy_sparse_matrix(data.edge_index, num_nodes=n))
    if cluster >= K:
        vecs = torch.zeros(n, cluster)
        vecs[torch.arange(n), torch.from_numpy(label)] = (degree(data.edge_index[0], n) + 1).sqrt()
        # eigsh misses copies of the repeated top eigenvalue (section 2): all k are 1
        vals = torch.ones(K)
    else:
        cluster = K
    rows, total = [], max(checkpoints)
    for schedule in ('constant', 'cosine'):
        torch.manual_seed(0)
        basis = AmortizedEigenbasis(n, K)
        opt, decay = make_optimizer(basis, 0.01, 5e-4, schedule, total, basis_lr=0.01)
        for step in range(1, total + 1):
            opt.zero_grad()
            U, lam = basis(op)
            basis.eigen_loss().backward()
            opt.step()
            decay.step()
            if step in checkpoints:
                rows.append(dict(graph=name, schedule=schedule, step=step, cluster=cluster,
                                 sine=max_principal_sine(U, vecs),
                                 err=float((lam.detach() - vals[:K]).abs().max())))
    return rows


def format_convergence(rows) -> str:
    lines = ['| graph | dim of the reference eigenspace | lr schedule | step | max principal sine | max eigenvalue error |',
             '|---|---|---|---|---|---|']
    lines += [f"| {r['graph']} | {r['cluster']} | {r['schedule']} | {r['step']} | {r['sine']:.3f} | {r['err']:.1e} |"
              for r in rows]
    return '\n'.join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--graphs', nargs='+', default=['Cora', 'CiteSeer', 'PubMed'])
    p.add_argument('--k', nargs='+', type=int, default=[K], help='ranks of the low-rank GCN rows')
    p.add_argument('--plain', action='store_true',
                   help="the paper's plain top-k instead of the component space + k after it")
    p.add_argument('--iters', type=int, default=20)
    p.add_argument('--nuclear-dims', nargs='+', type=int, default=[128, 256, 512])
    p.add_argument('--pca-dims', nargs='+', type=int, default=[256, 512, 1024])
    p.add_argument('--changing-graphs', nargs='+', default=['Cora'])
    p.add_argument('--changing-regimes', nargs='+', choices=REGIMES, default=list(REGIMES),
                   help='how the graph changes every step (default: both)')
    p.add_argument('--epochs', type=int, default=200)
    p.add_argument('--skip', nargs='*', default=[], choices=['gcn', 'nuclear', 'pca', 'changing', 'convergence'])
    p.add_argument('--out')
    args = p.parse_args(argv)
    header = machine_header()
    print(header, flush=True)
    sections = [header]
    if 'gcn' not in args.skip:
        mode = 'plain top-k' if args.plain else 'component space + the k eigenvectors after it'
        sections += [f'### Low-rank GCN ({mode}), per training iteration',
                     format_gcn(lowrank_gcn_rows(args.graphs, args.iters, args.k, not args.plain))]
        print(sections[-1], flush=True)
    if 'nuclear' not in args.skip:
        sections += ['### Nuclear-norm regularisation (4-layer MLP, batch 256, full SVD of each weight)',
                     format_dense(nuclear_rows(args.nuclear_dims, args.iters), 'svd', 'width')]
        print(sections[-1], flush=True)
    if 'pca' not in args.skip:
        sections += [f'### Latent-space PCA (autoencoder, batch 512, top-{K} of the latent covariance)',
                     format_dense(pca_rows(args.pca_dims, args.iters), 'eigh', 'latent dim')]
        print(sections[-1], flush=True)
    if 'changing' not in args.skip:
        mode = 'plain top-k' if args.plain else 'component space + the k after it'
        sections += [f'### Graph changing every step ({args.epochs} epochs, rank {args.k[0]}, {mode})',
                     format_changing(changing_rows(args.changing_graphs, args.epochs, args.k[0],
                                                   not args.plain, args.changing_regimes))]
        print(sections[-1], flush=True)
    if 'convergence' not in args.skip:
        sections += ['### Convergence of the amortized basis under the bench optimizer (Adam 0.01, wd 5e-4; '
                     'constant, or cosine decay to 0 at step 800)',
                     format_convergence([r for g in args.graphs for r in convergence_rows(g)])]
        print(sections[-1], flush=True)
    sections.append(f"Load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.out:
        with open(args.out, 'w') as f:
            f.write('\n\n'.join(sections) + '\n')


if __name__ == '__main__':
    main()
