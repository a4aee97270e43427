"""k=16 smallest eigenpairs of the normalized Laplacian: NeuralSVD vs SciPy
eigsh (default and shift-invert), torch.lobpcg and PyG's
AddLaplacianEigenvectorPE, cold and after a small change of the graph.

    PYG_SPECTRAL_DATA=../shared/data python benchmarks/neuralsvd_speed.py \
        --graphs Cora CiteSeer PubMed geo100000 --out /tmp/neuralsvd_speed.md

With ``--trace FILE.json`` the script records instead how the NeuralSVD fits
converge: the cold fit and the two warm starts, each error against the
trusted reference at every convergence check (wall time, step, max principal
sine, max eigenvalue error), and the cold eigsh re-solves of the changed
graphs as the times to beat (``benchmarks/plots.py`` draws them):

    OMP_NUM_THREADS=1 PYG_SPECTRAL_DATA=../shared/data python benchmarks/neuralsvd_speed.py \
        --graphs Cora PubMed --trace benchmarks/results/neuralsvd_trace.json

Synthetic graphs are named by family and size: 'geo1e5' (kNN graph of
random points in the unit square: mesh-like), 'sbm1e6' (stochastic block
model with 32 communities: expands well).

Every row is checked against a trusted reference (`common.reference_smallest`:
dense float64 eigh where it fits, else the zero eigenspace from the components
and float64 Lanczos with it projected out, shift-invert for Planetoid and
'geo', plain for 'sbm') and marked WRONG by the one definition of `common.py`
(eigenvalue error, relative per eigenvalue with an absolute floor of 1e-6,
above 1e-3, or subspace sine above 1e-2), rather than timed as if it were
right. The peers are `common.py`'s, in the settings each row names.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch_geometric.utils import coalesce, to_undirected

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from common import (SINE_TOL, EIG_TOL, block_graph, eigsh_smallest, errors, geometric_graph,  # noqa: E402
                    lobpcg_smallest, machine_header, null_space_basis, pyg_pe,
                    reference_smallest, run_limited, sym_laplacian)

from pyg_spectral import GraphOperator, NeuralSVD  # noqa: E402
from pyg_spectral.io import atomic_write_text  # noqa: E402
from pyg_spectral.linalg import rayleigh_ritz  # noqa: E402
from pyg_spectral.solvers.neuralsvd import EigenTable  # noqa: E402
from pyg_spectral.datasets import load_planetoid  # noqa: E402

K = 16


# synthetic families: name prefix -> (generator, reference solver above the dense limit)
SYNTHETIC = {'geo': (geometric_graph, 'shift-invert'), 'sbm': (block_graph, 'lanczos')}


def load_graph(name: str) -> tuple[torch.Tensor, int, str]:
    r"""(edge_index, n, sparse reference solver) of a Planetoid graph or of
    a synthetic one named by family and size, e.g. 'geo100000', 'sbm1e6'."""
    family = SYNTHETIC.get(name[:3])
    if family is not None:
        n = int(float(name[3:]))
        return family[0](n), n, family[1]
    data = load_planetoid(name)[0]
    return data.edge_index, data.num_nodes, 'shift-invert'


def perturb_weights(ei, n, rel=0.05, seed=0):
    gen = torch.Generator().manual_seed(seed)
    w = 1 + rel * (2 * torch.rand(ei.size(1), generator=gen) - 1)
    # symmetric: average each edge with its reverse
    ei2, w2 = to_undirected(ei, w, n, reduce='mean')
    return ei2, w2


def rewire(ei, n, frac=0.01, seed=0):
    gen = torch.Generator().manual_seed(seed)
    und = ei[:, ei[0] < ei[1]]
    m = und.size(1)
    drop = torch.randperm(m, generator=gen)[:int(frac * m)]
    keep = torch.ones(m, dtype=torch.bool)
    keep[drop] = False
    new = torch.randint(0, n, (2, drop.numel()), generator=gen)
    new = new[:, new[0] != new[1]]
    out = torch.cat([und[:, keep], new], 1)
    return coalesce(to_undirected(out, num_nodes=n), num_nodes=n), None


# ---------------------------------------------------------------- methods
def run_neuralsvd(ei, n, w, steps, tol, init=None, check_every=25):
    r"""Also returns the fit, whose whole table warm-starts the next solve."""
    op = GraphOperator.from_edge_index(ei, w, n, kind='sym_laplacian')
    res = NeuralSVD(K).fit(op, largest=False, steps=steps, tol=tol, init=init,
                           check_every=check_every, refine=True, progress=False)
    return res.eigenvalues.numpy(), res.eigenvectors.numpy(), f'{res.steps} steps', res


def run_eigsh(L, shift_invert=False, v0=None):
    return (*eigsh_smallest(L, K, v0, shift_invert), '')


def run_lobpcg(L, X0=None, niter=500):
    r"""In float32, from :obj:`X0` or a seeded random start."""
    X = torch.as_tensor(X0, dtype=torch.float32) if X0 is not None else \
        torch.randn(L.shape[0], K, generator=torch.Generator().manual_seed(0))
    return (*lobpcg_smallest(L, X, niter, tol=1e-5), f'niter<={niter}')


def run_pyg(ei, n, L, ref):
    # PyG's random start as the forked child inherits torch's generator
    pe = pyg_pe(ei, n, K - 1, seed=None)
    # PyG returns k=15 vectors after the trivial one and no eigenvalues: add
    # the trivial vector and take Rayleigh quotients
    V = np.concatenate([ref.vectors[:, :1], pe], 1)
    return np.einsum('ij,ij->j', V, L @ V), V, 'k=15 after the trivial one'


def verdict(eig_err, sine, ref=None):
    r""":func:`common.verdict` (:obj:`ref` is not read: gpu_suite.py passes it)."""
    return common.verdict(eig_err, sine)


def timed_row(graph, regime, method, run, ref, limit, base=None):
    r"""Runs :obj:`run() -> (values, vectors, note, *extra)` in a child
    process for at most :obj:`limit` seconds and formats its row; a solver
    that raises (e.g. ARPACK's no-convergence) or runs out of time is
    reported as FAILED. Returns :obj:`(seconds or None when it failed,
    vectors or None when not right, row, extra)`; :obj:`base` (our seconds,
    None when ours failed) gives the ratio column."""
    status, seconds, peak, out = run_limited(run, (), limit)
    ratio = f'{seconds / base:.2f}' if base and status == 'ok' else ''
    if status != 'ok':
        return None, None, (f'| {graph} | {regime} | {method} | {seconds:.3f} | {ratio} | '
                            f'{peak:.0f} | - | - | FAILED | {out} |'), ()
    w, V, note, *extra = out
    eig_err, sine = errors(w, V, ref, K)
    v = verdict(eig_err, sine, ref)
    return seconds, V if v == 'ok' else None, (
        f'| {graph} | {regime} | {method} | {seconds:.3f} | {ratio} | '
        f'{peak:.0f} | {eig_err:.2e} | {sine:.2e} | {v} | {note} |'), extra


def bench_graph(name, steps, tol, limit, lines, track_tol=None):
    ei, n, sparse = load_graph(name)
    L = sym_laplacian(ei, n)
    t = time.perf_counter()
    ref = reference_smallest(L, K, null_space_basis(ei, n), sparse=sparse)
    lines.append(f'\n**{name}**: n={n}, edges={ei.size(1)}, reference: {ref.how} '
                 f'({time.perf_counter() - t:.1f} s), eigenvalue cluster at k closes at '
                 f'K={len(ref.values)}; lambda_1..16 = {ref.values[0]:.3g} .. {ref.values[K - 1]:.3g}\n')
    lines.append('| graph | regime | method | seconds | / ours | peak MiB | eig err | subspace sine | verdict | note |')
    lines.append('|---|---|---|---|---|---|---|---|---|---|')
    ours, V_ours, line, fit = timed_row(name, 'cold', 'NeuralSVD (free table)',
                                        lambda: run_neuralsvd(ei, n, None, steps, tol), ref, limit)
    lines.append(line)
    peers = [('scipy eigsh SA', lambda: run_eigsh(L)),
             ('scipy eigsh shift-invert', lambda: run_eigsh(L, shift_invert=True)),
             ('torch.lobpcg fp32', lambda: run_lobpcg(L)),
             ('PyG AddLaplacianEigenvectorPE', lambda: run_pyg(ei, n, L, ref))]
    for method, run in peers:
        lines.append(timed_row(name, 'cold', method, run, ref, limit, ours)[2])
    print('\n'.join(lines[-7:]), flush=True)

    # tracking: a small change of the graph, warm starts from the previous
    # solution: ours (the whole table, oversampled columns included) where it
    # is right, else the reference's, so that a failed cold solve does not
    # decide the tracking rows too
    if V_ours is not None:
        init, V_old, start = fit[0], V_ours, 'from ours'
    else:
        V_old = ref.vectors[:, :K]
        init, start = torch.from_numpy(np.ascontiguousarray(V_old)), 'from the reference'
    for regime, (ei2, w2) in (('weights +-5%', perturb_weights(ei, n)),
                              ('1% edges rewired', rewire(ei, n))):
        L2 = sym_laplacian(ei2, n, w2)
        ref2 = reference_smallest(L2, K, null_space_basis(ei2, n, w2), sparse=sparse)
        warm_tol = tol if track_tol is None else track_tol
        ours, _, line, _ = timed_row(name, regime, f'NeuralSVD warm {start}, tol {warm_tol:g}',
                                     lambda: run_neuralsvd(ei2, n, w2, steps, warm_tol, init=init,
                                                           check_every=5), ref2, limit)
        lines.append(line)
        peers = [('scipy eigsh SA cold', lambda: run_eigsh(L2)),
                 ('scipy eigsh shift-invert cold', lambda: run_eigsh(L2, shift_invert=True)),
                 (f'scipy eigsh SA, v0 {start}', lambda: run_eigsh(L2, v0=V_old.sum(1))),
                 (f'torch.lobpcg warm {start} fp32', lambda: run_lobpcg(L2, X0=V_old))]
        for method, run in peers:
            lines.append(timed_row(name, regime, method, run, ref2, limit, ours)[2])
        print('\n'.join(lines[-5:]), flush=True)


# ---------------------------------------------------------------- traces
def traced_neuralsvd(ei, n, w, steps, tol, ref, init=None, check_every=25):
    r""":func:`run_neuralsvd` (same settings, same fit) with a snapshot of
    the table at the start of descent and at every convergence check, then,
    after the fit, each snapshot's errors against :obj:`ref`. The snapshots
    are taken where the fit already checks: a denser :obj:`check_every`
    would change the fit itself (a Ritz restart runs at every check).

    Timing: the clock runs from before the operator is built, as in the
    timed rows; the time spent copying snapshots is measured and subtracted
    from every later time stamp and from the fit's total, and the errors are
    computed after the fit, outside the clock. Returns :obj:`(values,
    vectors, note, result, trace)`."""
    holder, snapshots, overhead = {}, [], [0.0]
    original = EigenTable.forward

    def snapshot(table, step):
        t = time.perf_counter()
        snapshots.append((t - start - overhead[0], step, table.weight.detach().clone()))
        overhead[0] += time.perf_counter() - t

    def forward(self, *args):
        # the fit owns its table; reading it where the fit does is the
        # only way to see it without changing the library
        if 'table' not in holder:
            holder['table'] = self
            snapshot(self, 0)
        return original(self, *args)

    def callback(step, loss, values):
        snapshot(holder['table'], step + 1)  # after the step (the table is updated in place)

    EigenTable.forward = forward
    try:
        start = time.perf_counter()
        op = GraphOperator.from_edge_index(ei, w, n, kind='sym_laplacian')
        res = NeuralSVD(K).fit(op, largest=False, steps=steps, tol=tol, init=init,
                               check_every=check_every, refine=True, progress=False,
                               callback=callback)
        seconds = time.perf_counter() - start - overhead[0]
    finally:
        EigenTable.forward = original
    if not snapshots:
        raise RuntimeError('no snapshot of the table: NeuralSVD.fit no longer calls the table')
    points = []
    with torch.no_grad():
        for t, step, F in snapshots:
            # what the fit would return if stopped here: Rayleigh-Ritz on the
            # table's span with the fit's own operator and precision, as
            # refine=True does at the end (so the last point is the answer)
            Q = torch.linalg.qr(F)[0]
            values, S = rayleigh_ritz(Q.T @ op.matmat(Q))
            eig_err, sine = errors(values[:K].numpy(), (Q @ S[:, :K]).numpy(), ref, K)
            points.append([round(t, 6), step, sine, eig_err])
    eig_err, sine = errors(res.eigenvalues.numpy(), res.eigenvectors.numpy(), ref, K)
    trace = {'seconds': seconds, 'snapshot_seconds': overhead[0], 'steps': res.steps,
             'converged': bool(res.converged), 'check_every': check_every, 'tol': tol,
             'eig_err': eig_err, 'sine': sine, 'verdict': common.verdict(eig_err, sine),
             'points': points}
    return res.eigenvalues.numpy(), res.eigenvectors.numpy(), f'{res.steps} steps', res, trace


def trace_graph(name, steps, tol, limit, track_tol=None) -> dict:
    r"""The convergence traces of one graph (see :func:`traced_neuralsvd`):
    the cold fit, the warm starts after the two changes of :func:`bench_graph`
    (from the cold fit where it is right, else from the reference), and the
    cold eigsh re-solves of each changed graph, timed as in the table."""
    ei, n, sparse = load_graph(name)
    L = sym_laplacian(ei, n)
    t = time.perf_counter()
    ref = reference_smallest(L, K, null_space_basis(ei, n), sparse=sparse)
    out = {'graph': name, 'n': n, 'edges': int(ei.size(1)), 'reference': ref.how,
           'reference_seconds': time.perf_counter() - t, 'fits': [], 'peers': []}

    def fit(regime, start, run):
        status, _, _, result = run_limited(run, (), limit)
        if status != 'ok':
            out['fits'].append({'regime': regime, 'start': start, 'verdict': 'FAILED',
                                'note': str(result)})
            return None
        *_, res, trace = result
        out['fits'].append({'regime': regime, 'start': start, **trace})
        print(f"{name} {regime} ({start}): {trace['seconds']:.3f} s, {trace['steps']} steps, "
              f"sine {trace['sine']:.2e}, eig err {trace['eig_err']:.2e}, {trace['verdict']}; "
              f"{len(trace['points'])} snapshots took {trace['snapshot_seconds'] * 1e3:.1f} ms",
              flush=True)
        return res if trace['verdict'] == 'ok' else None

    cold = fit('cold', 'random', lambda: traced_neuralsvd(ei, n, None, steps, tol, ref))
    if cold is not None:
        init, V_old, start = cold, cold.eigenvectors.numpy(), 'from ours'
    else:
        V_old = ref.vectors[:, :K]
        init, start = torch.from_numpy(np.ascontiguousarray(V_old)), 'from the reference'
    warm_tol = tol if track_tol is None else track_tol
    for regime, (ei2, w2) in (('weights +-5%', perturb_weights(ei, n)),
                              ('1% edges rewired', rewire(ei, n))):
        L2 = sym_laplacian(ei2, n, w2)
        ref2 = reference_smallest(L2, K, null_space_basis(ei2, n, w2), sparse=sparse)
        fit(regime, start, lambda: traced_neuralsvd(ei2, n, w2, steps, warm_tol, ref2,
                                                    init=init, check_every=5))
        for method, run in (('scipy eigsh SA cold', lambda: run_eigsh(L2)),
                            ('scipy eigsh shift-invert cold',
                             lambda: run_eigsh(L2, shift_invert=True))):
            seconds, _, line, _ = timed_row(name, regime, method, run, ref2, limit)
            cells = [c.strip() for c in line.strip('|').split('|')]
            out['peers'].append({'regime': regime, 'method': method, 'seconds': float(cells[3]),
                                 'eig_err': common_float(cells[6]), 'sine': common_float(cells[7]),
                                 'verdict': cells[8]})
            print(line, flush=True)
    return out


def common_float(cell: str) -> float | None:
    try:
        return float(cell)
    except ValueError:
        return None


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--graphs', nargs='+', default=['Cora', 'CiteSeer', 'PubMed', 'geo100000'])
    p.add_argument('--steps', type=int, default=3000)
    p.add_argument('--tol', type=float, default=1e-5)
    p.add_argument('--track-tol', type=float, default=None,
                   help='tol of the warm starts after the change (default: --tol); a looser one '
                        'asks for the accuracy of the contract rather than that of the cold run')
    p.add_argument('--limit', type=float, default=600.0,
                   help='seconds per row; a slower solver is killed and reported FAILED')
    p.add_argument('--out')
    p.add_argument('--trace', metavar='FILE.json',
                   help='record convergence traces of the NeuralSVD fits (cold and warm) into this '
                        'JSON instead of the comparison table (default: no trace)')
    args = p.parse_args()
    if args.trace:
        payload = {'header': machine_header(), 'k': K, 'sine_tol': SINE_TOL, 'eig_tol': EIG_TOL,
                   'graphs': []}
        print(payload['header'], flush=True)
        for g in args.graphs:
            payload['graphs'].append(trace_graph(g, args.steps, args.tol, args.limit, args.track_tol))
            atomic_write_text(json.dumps(payload, indent=1), args.trace)  # after every graph
        return
    lines = [machine_header(), '',
             f'### NeuralSVD vs eigensolvers, k={K} smallest of the sym. normalized Laplacian',
             '', '"/ ours" = seconds / seconds of our row of the same regime']
    print(lines[0], flush=True)
    for g in args.graphs:
        bench_graph(g, args.steps, args.tol, args.limit, lines, args.track_tol)
        if args.out:  # after every graph, so that a stopped run keeps what it measured
            Path(args.out).write_text('\n'.join(lines) + '\n')


if __name__ == '__main__':
    main()
