"""Figures of benchmarks/RESULTS.md, redrawn from the raw outputs that the
benchmark scripts wrote into benchmarks/results/ (JSON, CSV, and the
markdown tables of the scripts that write only those).

    python benchmarks/plots.py                    # every figure whose inputs exist
    python benchmarks/plots.py --only pe lowrank  # some of them
    python benchmarks/plots.py --out /tmp/figs    # elsewhere (inputs still from --results)

Needs matplotlib (the ``plot`` extra). No number is written here: every
point is parsed from a file under ``--results``, and a figure whose inputs
are missing is skipped with a message. Results whose check failed (WRONG) or
that gave no answer within the time limit (FAILED) are drawn as marks in a
strip above the axes, never as a time. Each PNG is written to a temporary
name and renamed, so an interrupted run never leaves half a file.

Every figure but ``hydrogen_states`` takes a few seconds; that one
re-evaluates the committed fit ``hydrogen16.pt`` on 2^15 samples
(``--hydrogen-samples``), about half a minute on one core.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import sys
import tempfile
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / 'results'
DATASETS = ('Cora', 'CiteSeer', 'PubMed')
LOWRANK_MODELS = {'lowrank-gcn-exact': 'exact basis', 'lowrank-gcn': 'amortized basis'}
_DATE = re.compile(r'(\d{4}-\d{2}-\d{2})(?:[ T](\d{2}:\d{2}))?')


# --------------------------------------------------------------------------- parsing

class Table:
    r"""One markdown table of a raw output: its rows as dicts keyed by the
    header, the last heading line above it, and the last date seen above it
    (``YYYY-MM-DD`` or ``YYYY-MM-DD HH:MM``; ``''`` if none). (A plain class,
    not a dataclass: tests load this file without registering it as a module.)"""

    def __init__(self, source: Path, heading: str, date: str, header: list[str]) -> None:
        self.source, self.heading, self.date, self.header = source, heading, date, header
        self.rows: list[dict] = []


def read_tables(path: Path) -> list[Table]:
    r"""Every pipe table in a markdown (or console-output) file."""
    lines = path.read_text().splitlines()
    tables, heading, date, i = [], '', '', 0
    while i < len(lines):
        line = lines[i].strip()
        if (match := _DATE.search(line)) and not line.startswith('|'):
            date = match.group(1) + (f' {match.group(2)}' if match.group(2) else '')
        if line.startswith(('#', '**')) and not line.startswith('# date') and not line.startswith('#!'):
            heading = line
        if (line.startswith('|') and i + 1 < len(lines)
                and re.match(r'^\|[-| :]+\|$', lines[i + 1].strip())):
            header = _cells(line)
            table = Table(path, heading, date, header)
            i += 2
            while i < len(lines) and lines[i].strip().startswith('|'):
                cells = _cells(lines[i].strip())
                repeated = cells == header or all(re.match(r'^:?-+:?$', c) for c in cells)
                if len(cells) == len(header) and not repeated:
                    table.rows.append(dict(zip(header, cells)))
                i += 1
            tables.append(table)
            continue
        i += 1
    return tables


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip('|').split('|')]


def number(text: str | None) -> float | None:
    r"""The leading number of a cell (``'0.87'``, ``'1.61x'``, ``'3.5 s'``,
    ``'1.14 %'``); ``None`` for ``'-'``, ``'not run'``, ``'n/a'`` and the like."""
    if text is None:
        return None
    match = re.match(r'^\s*\**([-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?)', text)
    return float(match.group(1)) if match else None


def status(verdict: str) -> str:
    r"""``'ok'``, ``'WRONG'``, ``'FAILED'`` (no answer within the limit or an
    error) or ``'n/a'`` (not run)."""
    for word in ('WRONG', 'FAILED', 'n/a'):
        if verdict.startswith(word):
            return word
    return 'ok' if verdict.startswith('ok') else 'n/a'


# benchmarks/common.py's one WRONG rule (copied: common imports torch and
# SciPy, which drawing does not need; tests/test_plots.py checks they agree)
EIG_TOL, SINE_TOL = 1e-3, 1e-2


def verdict_now(row: dict, eig_key: str, sine_key: str) -> str:
    r""":func:`status` of a raw row under the current WRONG rule: some raw
    files were written under the scripts' earlier sine limit 0.05 and say
    'ok' for a sine between 1e-2 and 0.05."""
    verdict = status(row.get('verdict', ''))
    eig_err, sine = number(row.get(eig_key)), number(row.get(sine_key))
    if verdict == 'ok' and ((eig_err is not None and eig_err > EIG_TOL)
                            or (sine is not None and sine > SINE_TOL)):
        return 'WRONG'
    return verdict


def _newer(a: str, b: str) -> bool:
    return a > b  # ISO dates (with an optional HH:MM) sort as strings


# --------------------------------------------------------------------------- drawing helpers

def _plt():
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path: Path) -> None:
    from pyg_spectral.io import atomic_write_file  # here: the parsers need no torch
    atomic_write_file(path, lambda fh: fig.savefig(fh, format='png', dpi=110, bbox_inches='tight'))
    _plt().close(fig)


STYLE = {  # peer -> (colour, marker); ours drawn thicker
    'PyG AddLaplacianEigenvectorPE': ('tab:red', 's'),
    'SciPy eigsh (SA)': ('tab:orange', 'v'),
    'scipy eigsh SA': ('tab:orange', 'v'),
    'SciPy eigsh shift-invert': ('tab:brown', '^'),
    'scipy eigsh shift-invert': ('tab:brown', '^'),
    'torch.lobpcg': ('tab:purple', 'D'),
    'torch.lobpcg fp32': ('tab:purple', 'D'),
    'torch.linalg.eigh (batched dense)': ('tab:gray', 'P'),
    'ours auto': ('tab:blue', 'o'),
    'ours neuralsvd': ('tab:cyan', 'o'),
    'NeuralSVD (free table)': ('tab:blue', 'o'),
}


def _peer_lines(ax, series: dict[str, list[tuple[float, float | None, str]]], strip_labels=True):
    r"""``series[peer] = [(x, seconds, status), ...]``: a log-log line of the
    correct results per peer; WRONG and FAILED results as marks in two rows
    of a strip above the axes (their times are not speeds)."""
    from matplotlib.transforms import blended_transform_factory
    top = blended_transform_factory(ax.transData, ax.transAxes)
    for index, (peer, points) in enumerate(series.items()):
        colour, marker = STYLE.get(peer, ('k', 'o'))
        shift = 10 ** (0.035 * (index - (len(series) - 1) / 2))  # side by side in the strip
        ours = peer.startswith(('ours', 'NeuralSVD'))
        ok = sorted((x, t) for x, t, s in points if s == 'ok' and t is not None)
        if ok:
            ax.plot(*zip(*ok), color=colour, marker=marker, lw=2.4 if ours else 1.2,
                    ms=7 if ours else 5, label=peer, zorder=3 if ours else 2)
        else:
            ax.plot([], [], color=colour, marker=marker, label=peer)
        for x, _, s in points:
            if s in ('WRONG', 'FAILED'):
                ax.plot([x * shift], [1.05 if s == 'WRONG' else 1.13], transform=top, clip_on=False,
                        color=colour, marker='x' if s == 'WRONG' else marker, ls='',
                        mfc='none', ms=8 if s == 'WRONG' else 6, mew=2 if s == 'WRONG' else 1.2)
    if strip_labels:
        ax.text(-0.01, 1.05, 'WRONG (x)', transform=ax.transAxes, va='center', ha='right',
                fontsize=7, color='0.2')
        ax.text(-0.01, 1.13, 'no answer in\nthe time limit', transform=ax.transAxes, va='center',
                ha='right', fontsize=7, color='0.2')
    ax.set_xscale('log')
    ax.set_yscale('log')
    ax.grid(True, which='both', alpha=0.25)


# --------------------------------------------------------------------------- PE transform

PE_PEERS = ('PyG AddLaplacianEigenvectorPE', 'SciPy eigsh (SA)', 'SciPy eigsh shift-invert',
            'torch.lobpcg', 'torch.linalg.eigh (batched dense)', 'ours auto', 'ours neuralsvd')
_PE_TITLE = re.compile(r'^##+ (.+?): (\d+) graph\(s\), (\d+) nodes')


def pe_tables(results: Path = RESULTS) -> dict[str, tuple[int, int, Table]]:
    r"""The newest ``pe_speed.py`` table of each graph (set), by the date in
    its file: ``{name: (graphs, nodes, table)}``."""
    newest: dict[str, tuple[int, int, Table]] = {}
    for path in sorted(results.glob('pe_speed_*.md')):
        if 'inductive' in path.name:
            continue
        for table in read_tables(path):
            match = _PE_TITLE.match(table.heading)
            if not match or 'verdict' not in table.header:
                continue
            name, graphs, nodes = match.group(1), int(match.group(2)), int(match.group(3))
            if name not in newest or _newer(table.date, newest[name][2].date):
                newest[name] = (graphs, nodes, table)
    return newest


def _draw_pe(ax, tables, legend=True) -> None:
    single = {name: v for name, v in tables.items() if v[0] == 1}
    series: dict[str, list] = {p: [] for p in PE_PEERS}
    for name, (_, nodes, table) in single.items():
        for row in table.rows:
            if row['peer'] in series:
                series[row['peer']].append((nodes, number(row['wall s']),
                                            verdict_now(row, 'eig err', 'subspace err')))
    _peer_lines(ax, {p: s for p, s in series.items() if s})
    _name_graphs(ax, [(name.replace(' 100000 nodes', ' 1e5'), nodes) for name, (_, nodes, _) in single.items()])
    ax.set_xlabel('nodes (one graph)')
    ax.set_ylabel('wall time (s), correct results only')
    ax.set_title('Laplacian PE, k = 16: one graph', fontsize=10, pad=46)
    if legend:
        ax.legend(fontsize=7, loc='upper center', bbox_to_anchor=(0.5, -0.14), ncol=4)


def _name_graphs(ax, names) -> None:
    for name, x in names:
        ax.axvline(x, color='0.85', lw=0.8, zorder=0)
        ax.annotate(name, (x, 0), xycoords=('data', 'axes fraction'), xytext=(-2, 4),
                    textcoords='offset points', ha='right', va='bottom', fontsize=7, color='0.35',
                    rotation=90)


def pe_speed(results: Path = RESULTS, out: Path | None = None) -> list[Path]:
    r"""PE wall time vs graph size against every peer (the newest
    ``pe_speed.py --sections table`` output of each graph), and the
    10,000-small-graph set as bars."""
    tables = pe_tables(results)
    if not tables:
        return []
    plt = _plt()
    sets = {name: v for name, v in tables.items() if v[0] > 1}
    fig, axes = plt.subplots(1, 1 + bool(sets), figsize=(12.5 if sets else 7, 4.6),
                             gridspec_kw={'width_ratios': [1.5, 1] if sets else [1]}, squeeze=False)
    _draw_pe(axes[0, 0], tables)
    for ax, (name, (graphs, nodes, table)) in zip(axes[0, 1:], sets.items()):
        rows = [r for r in table.rows if r['peer'] in PE_PEERS or r['peer'].startswith('ours')]
        labels, values, colours, notes = [], [], [], []
        for r in rows:
            labels.append(r['peer'])
            s, t = status(r['verdict']), number(r['wall s'])
            values.append(t if s == 'ok' and t is not None else 0)
            colours.append(STYLE.get(r['peer'], ('tab:blue' if r['peer'].startswith('ours') else 'k',))[0])
            notes.append('' if s == 'ok' else ('n/a (per-graph loop)' if s == 'n/a' else s))
        y = range(len(labels))
        ax.barh(list(y), values, color=colours)
        for yi, v, note in zip(y, values, notes):
            ax.text(v + 0.05 * max(values), yi, note or f'{v:.2f} s', va='center', fontsize=7)
        ax.set_yticks(list(y), labels, fontsize=7)
        ax.invert_yaxis()
        ax.set_xlim(0, 1.35 * max(values))
        ax.set_xlabel('wall time (s), all graphs')
        ax.set_title(f'{name}: {graphs:,} graphs, {nodes:,} nodes', fontsize=10)
    dates = sorted({v[2].date for v in tables.values()})
    fig.suptitle(f'AddNeuralSVDPE vs peers, CPU, one thread (pe_speed.py; runs {dates[0]} .. {dates[-1]})',
                 fontsize=10, y=1.06)
    path = (out or results) / 'pe_time_vs_size.png'
    _save(fig, path)
    return [path]


# --------------------------------------------------------------------------- NeuralSVD vs eigensolvers

EIG_PEERS = ('NeuralSVD (free table)', 'scipy eigsh SA', 'scipy eigsh shift-invert',
             'torch.lobpcg fp32', 'PyG AddLaplacianEigenvectorPE')
_NSVD_HEAD = re.compile(r'^\*\*(\w+)\*\*: n=(\d+)')


def neuralsvd_tables(results: Path = RESULTS) -> dict[str, tuple[int, str, list[dict]]]:
    r"""The newest ``neuralsvd_speed.py`` rows of each graph (the first run
    of the newest file that has it): ``{graph: (n, date, rows)}``."""
    newest: dict[str, tuple[int, str, list[dict]]] = {}
    for path in sorted(results.glob('neuralsvd_speed*.md')):
        seen = set()
        for table in read_tables(path):
            if 'regime' not in table.header:
                continue
            by_graph: dict[str, list[dict]] = {}
            for row in table.rows:
                by_graph.setdefault(row['graph'], []).append(row)
            for graph, rows in by_graph.items():
                if graph in seen:
                    continue
                seen.add(graph)
                match = _NSVD_HEAD.match(table.heading)
                if match and match.group(1) == graph:
                    n = int(match.group(2))
                else:  # geo100000, sbm1e6: the size is in the name
                    digits = re.search(r'(\d+(?:e\d+)?)$', graph).group(1)
                    n = int(float(digits))
                if graph not in newest or _newer(table.date, newest[graph][1]):
                    newest[graph] = (n, table.date, rows)
    return newest


def eigensolvers(results: Path = RESULTS, out: Path | None = None) -> list[Path]:
    r"""Cold solves, k = 16 smallest of the normalised Laplacian, wall time
    vs n: graphs that expand well (Planetoid, block models) and kNN meshes."""
    graphs = neuralsvd_tables(results)
    if not graphs:
        return []
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(12.5, 4.6))
    for ax, mesh in zip(axes, (False, True)):
        series: dict[str, list] = {p: [] for p in EIG_PEERS}
        names = []
        for graph, (n, _, rows) in graphs.items():
            if graph.startswith('geo') != mesh:
                continue
            names.append((graph, n))
            for row in rows:
                if row['regime'] == 'cold' and row['method'] in series:
                    series[row['method']].append((n, number(row['seconds']),
                                                  verdict_now(row, 'eig err', 'subspace sine')))
        _peer_lines(ax, {p: s for p, s in series.items() if s})
        _name_graphs(ax, names)
        ax.set_xlabel('nodes')
        ax.set_ylabel('wall time (s), correct results only')
        ax.set_title('kNN meshes (geo)' if mesh else 'graphs that expand well (Planetoid, block model)',
                     fontsize=10, pad=46)
        ax.legend(fontsize=7, loc='upper center', bbox_to_anchor=(0.5, -0.14), ncol=3)
    dates = sorted({d for _, d, _ in graphs.values()})
    fig.suptitle('Cold solve, k = 16 smallest of the normalised Laplacian, CPU, one thread '
                 f'(neuralsvd_speed.py; runs {dates[0]} .. {dates[-1]})',
                 fontsize=10, y=1.06)
    path = (out or results) / 'eigensolvers_time_vs_size.png'
    _save(fig, path)
    return [path]


def tracking(results: Path = RESULTS, out: Path | None = None) -> list[Path]:
    r"""NeuralSVD cold vs warm-started: the subspace sine each fit ended at
    against its wall time (``neuralsvd_speed*_tracktol.md``, one point per
    ``--track-tol``), with the cold ``eigsh`` re-solves it must beat. End
    points; :func:`neuralsvd_convergence` draws whole traces."""
    paths = sorted(results.glob('neuralsvd_speed*_tracktol.md'))
    if not paths:
        return []
    plt = _plt()
    per_graph: dict[str, list[dict]] = {}
    for path in paths:
        for table in read_tables(path):
            if 'regime' in table.header:
                for row in table.rows:
                    per_graph.setdefault(row['graph'], []).append(row)
    fig, axes = plt.subplots(1, len(per_graph), figsize=(6.6 * len(per_graph), 6.2), squeeze=False)
    regimes = {'cold': ('tab:blue', 'o'), 'weights +-5%': ('tab:green', 's'),
               '1% edges rewired': ('tab:red', 'D')}
    for ax, (graph, rows) in zip(axes[0], per_graph.items()):
        drawn = set()
        for row in rows:
            regime, method = row['regime'], row['method']
            t, sine = number(row['seconds']), number(row['subspace sine'])
            if not method.startswith('NeuralSVD') or t is None or sine is None:
                continue
            key = (regime, method)
            if key in drawn:  # the cold row repeats in every run of the file
                continue
            drawn.add(key)
            colour, marker = regimes[regime]
            wrong = verdict_now(row, 'eig err', 'subspace sine') == 'WRONG'
            ax.plot([t], [sine], marker='x' if wrong else marker, color=colour, ms=9 if wrong else 7,
                    mew=2 if wrong else 1, ls='')
            tol = re.search(r'tol ([\d.e-]+)', method)
            label = ('cold' if regime == 'cold' else f'warm, tol {tol.group(1) if tol else "?"}') + \
                (' WRONG' if wrong else '') + f", {row['note']}"
            ax.annotate(label, (t, sine), xytext=(5, 3), textcoords='offset points', fontsize=6.5,
                        color=colour)
        # the fastest correct cold eigsh of each regime, as in the tables' ratio
        for regime in ('weights +-5%', '1% edges rewired'):
            cold = [(number(r['seconds']), r['method']) for r in rows
                    if r['regime'] == regime and r['method'].startswith('scipy eigsh')
                    and r['method'].endswith('cold') and verdict_now(r, 'eig err', 'subspace sine') == 'ok']
            if cold:
                t, method = min(cold)
                ax.axvline(t, color=regimes[regime][0], ls=':', lw=1.5,
                           label=f'fastest correct cold re-solve after "{regime}": {method} ({t:.3f} s)')
        ax.axhline(SINE_TOL, color='0.3', ls='--', lw=1)
        ax.text(1.0, SINE_TOL, f' {SINE_TOL:g}: WRONG above', transform=ax.get_yaxis_transform(),
                fontsize=7, va='center')
        for regime, (colour, marker) in regimes.items():
            ax.plot([], [], marker=marker, color=colour, ls='', label='NeuralSVD ' + regime)
        ax.set_xscale('log')
        ax.set_yscale('log')
        ax.set_xlabel('wall time of the fit (s)')
        ax.set_ylabel('max principal sine to the reference subspace')
        ax.set_title(f'{graph}: where each fit stopped', fontsize=10)
        ax.grid(True, which='both', alpha=0.25)
        ax.legend(fontsize=7, loc='upper center', bbox_to_anchor=(0.5, -0.15), ncol=1)
    fig.suptitle('NeuralSVD cold vs warm-started after a small change of the graph '
                 '(neuralsvd_speed.py --track-tol: where each fit stopped, one point per tol; '
                 'the traces are in neuralsvd_convergence.png)',
                 fontsize=10)
    fig.tight_layout()
    path = (out or results) / 'neuralsvd_cold_vs_warm.png'
    _save(fig, path)
    return [path]


TRACE_REGIMES = {'cold': 'tab:blue', 'weights +-5%': 'tab:green', '1% edges rewired': 'tab:red'}


def neuralsvd_traces(results: Path = RESULTS) -> list[dict]:
    r"""The graphs of ``neuralsvd_trace.json`` (``neuralsvd_speed.py
    --trace``), with its header line and WRONG thresholds in each."""
    path = results / 'neuralsvd_trace.json'
    if not path.exists():
        return []
    payload = json.loads(path.read_text())
    return [{**g, 'header': payload['header'], 'sine_tol': payload['sine_tol'],
             'eig_tol': payload['eig_tol']} for g in payload['graphs']]


def _draw_trace(ax, graph: dict, column: int, legend=True) -> None:
    r"""One error (column 2: max principal sine, 3: max eigenvalue error)
    against wall time for every fit of :obj:`graph`: the trace at each
    convergence check, the fit's own answer as a filled mark at its end,
    the WRONG threshold, and the fastest correct cold eigsh re-solve of
    each changed graph as a vertical line."""
    for fit in graph['fits']:
        colour = TRACE_REGIMES.get(fit['regime'], 'k')
        label = fit['regime'] if fit['regime'] == 'cold' else f"warm after {fit['regime']} ({fit['start']})"
        if fit.get('verdict') == 'FAILED':
            ax.plot([], [], color=colour, label=f'{label}: FAILED')
            continue
        t = [p[0] for p in fit['points']]
        err = [max(p[column], 1e-16) for p in fit['points']]  # an exact 0 has no place on a log axis
        ax.plot(t, err, color=colour, marker='.', ms=4, lw=1.4,
                label=f"{label}: {fit['seconds']:.2f} s, {fit['steps']} steps, {fit['verdict']}")
        final = fit['sine'] if column == 2 else fit['eig_err']
        ax.plot([fit['seconds']], [max(final, 1e-16)], color=colour, marker='o', ms=7,
                mec='k', ls='')
    tol = graph['sine_tol'] if column == 2 else graph['eig_tol']
    ax.axhline(tol, color='0.3', ls='--', lw=1)
    ax.text(0.99, tol, f'WRONG above {tol:g}', transform=ax.get_yaxis_transform(), ha='right',
            va='bottom', fontsize=7, color='0.3')
    for regime in ('weights +-5%', '1% edges rewired'):
        ok = [(p['seconds'], p['method']) for p in graph['peers']
              if p['regime'] == regime and p['verdict'] == 'ok']
        if ok:
            t, method = min(ok)
            ax.axvline(t, color=TRACE_REGIMES[regime], ls=':', lw=1.5,
                       label=f"fastest correct cold re-solve after {regime}: "
                             f"{method.replace('scipy ', '').replace(' cold', '')}, {t:.2f} s")
    ax.set_xscale('log')
    ax.set_yscale('log')
    ax.set_xlabel('wall time since the fit started (s)')
    ax.set_ylabel('max principal sine to the reference' if column == 2 else
                  'max relative eigenvalue error')
    ax.grid(True, which='both', alpha=0.25)
    if legend:
        ax.legend(fontsize=6.5, loc='upper center', bbox_to_anchor=(0.5, -0.16), ncol=1)


def neuralsvd_convergence(results: Path = RESULTS, out: Path | None = None) -> list[Path]:
    r"""Convergence of NeuralSVD, cold vs warm-started after a small change
    of the graph: subspace sine and eigenvalue error against wall time
    (``neuralsvd_trace.json``), one row per graph."""
    graphs = neuralsvd_traces(results)
    if not graphs:
        return []
    plt = _plt()
    fig, axes = plt.subplots(len(graphs), 2, figsize=(12.5, 6.2 * len(graphs)), squeeze=False)
    for row, graph in zip(axes, graphs):
        for ax, column in zip(row, (2, 3)):
            _draw_trace(ax, graph, column, legend=column == 2)
            ax.set_title(f"{graph['graph']} (n = {graph['n']:,}): "
                         + ('subspace sine' if column == 2 else 'eigenvalue error'), fontsize=10)
    date = _DATE.search(graphs[0]['header'])
    fig.suptitle('NeuralSVD, k = 16 smallest of the normalised Laplacian: error at every convergence '
                 f"check, cold vs warm-started (neuralsvd_speed.py --trace; {date.group(0) if date else ''}, "
                 'CPU, one thread)', fontsize=10)
    fig.tight_layout()
    path = (out or results) / 'neuralsvd_convergence.png'
    _save(fig, path)
    return [path]


# --------------------------------------------------------------------------- amortized eigendecomposition

_GRAPH_NK = re.compile(r'^(\w+) \((\d+)x(\d+)\)$')


def _alone_rows(path: Path) -> list[dict]:
    r"""Rows of the per-iteration table of ``amortized_speed.py`` with
    ``graph``, ``n`` and ``k`` parsed from ``'Cora (2708x16)'``."""
    rows = []
    for table in read_tables(path):
        if 'amortized fwd+bwd (ms)' not in table.header:
            continue
        for row in table.rows:
            match = _GRAPH_NK.match(row['graph'])
            if match:
                rows.append({**row, 'name': match.group(1), 'n': int(match.group(2)),
                             'k': int(match.group(3))})
    return rows


def _col(row: dict, *names: str) -> float | None:
    for name in names:
        if name in row:
            return number(row[name])
    return None


AMORTIZED_SERIES = (  # label, columns (the two scripts' spellings), colour, marker
    ('dense eigh', ('alone: eigh (ms)',), 'tab:gray', 'P'),
    ('eigsh (ARPACK)', ('eigsh warm (ms)', 'eigsh (ms)'), 'tab:orange', 'v'),
    ('lobpcg (warm)', ('lobpcg warm (ms)',), 'tab:purple', 'D'),
    ('amortized basis (fwd+bwd)', ('amortized fwd+bwd (ms)',), 'tab:blue', 'o'),
    ('floor: A·U + QR', ('floor A·U+QR (ms)',), 'k', '_'),
)


def _draw_amortized(ax, rows, x_key, group_key, legend=True) -> None:
    groups = sorted({r[group_key] for r in rows})
    styles = ['-', '--', ':']
    for (label, columns, colour, marker) in AMORTIZED_SERIES:
        for g, ls in zip(groups, styles):
            points = sorted((r[x_key], _col(r, *columns)) for r in rows if r[group_key] == g)
            points = [(x, y) for x, y in points if y is not None]
            if points:
                ax.plot(*zip(*points), color=colour, marker=marker, ls=ls, ms=6,
                        lw=2.4 if label.startswith('amortized') else 1.2,
                        label=f'{label}' + (f', {g}' if len(groups) > 1 else ''))
    ax.set_xscale('log', base=2 if x_key == 'k' else 10)
    ax.set_yscale('log')
    xs = sorted({r[x_key] for r in rows})
    ax.set_xticks(xs, [str(x) for x in xs])
    ax.xaxis.set_minor_locator(__import__('matplotlib.ticker').ticker.NullLocator())
    ax.grid(True, which='both', alpha=0.25)
    if legend:
        ax.legend(fontsize=6.5, loc='upper center', bbox_to_anchor=(0.5, -0.13), ncol=2)


def amortized(results: Path = RESULTS, out: Path | None = None) -> list[Path]:
    r"""The basis's per-step cost against the exact solvers and the SpMM+QR
    floor, each timed alone: vs k (component-aware layer,
    ``amortized_speed_components.md``) and vs n at k = 16 (plain top-k layer,
    ``amortized_speed_gcn_idle.md``)."""
    by_k_path, by_n_path = results / 'amortized_speed_components.md', results / 'amortized_speed_gcn_idle.md'
    by_k = _alone_rows(by_k_path) if by_k_path.exists() else []
    by_n = _alone_rows(by_n_path) if by_n_path.exists() else []
    if not by_k and not by_n:
        return []
    plt = _plt()
    panels = [p for p in ((by_k, 'k', 'name'), (by_n, 'n', 'k')) if p[0]]
    fig, axes = plt.subplots(1, len(panels), figsize=(6.4 * len(panels), 4.6), squeeze=False)
    for ax, (rows, x_key, group_key) in zip(axes[0], panels):
        _draw_amortized(ax, rows, x_key, group_key)
        ax.set_ylabel('ms per call, fastest of N (basis alone)')
        if x_key == 'k':
            ax.set_xlabel('rank k (eigenvectors after the component space)')
            ax.set_title(f'vs k: component-aware layer ({by_k_path.name})', fontsize=9)
        else:
            ax.set_xlabel('nodes n (Cora, CiteSeer, PubMed)')
            ax.set_title(f'vs n, k = 16: plain top-k layer ({by_n_path.name})', fontsize=9)
            for r in rows:
                ax.annotate(r['name'], (r['n'], 0), xycoords=('data', 'axes fraction'), xytext=(0, 4),
                            textcoords='offset points', ha='center', fontsize=7, color='0.3')
    fig.suptitle('Amortized eigenbasis step vs exact solvers, CPU, one thread (amortized_speed.py; '
                 'missing points were not run: dense eigh of PubMed, lobpcg next to the component space)',
                 fontsize=9)
    fig.tight_layout()
    path = (out or results) / 'amortized_step_cost.png'
    _save(fig, path)
    return [path]


# --------------------------------------------------------------------------- low-rank GCN

def _lowrank_runs(results: Path) -> dict[str, list[dict]]:
    r"""Rows per dataset from ``lowrank_sweep_<Dataset>.json``, where a
    ``lowrank10_<Dataset>_*.json`` run of the same model and k with at least
    as many seeds replaces the sweep's row."""
    runs = {}
    for d in DATASETS:
        rows: dict[tuple, dict] = {}
        sources = [results / f'lowrank_sweep_{d}.json'] + sorted(results.glob(f'lowrank10_{d}_*.json'))
        for path in sources:
            if not path.exists():
                continue
            for row in json.loads(path.read_text()):
                key = (row['model'], row['k'])
                if key not in rows or len(row['seeds']) >= len(rows[key]['seeds']):
                    rows[key] = row
        if rows:
            runs[d] = list(rows.values())
    return runs


def _draw_lowrank(ax, dataset, rows, legend=True) -> None:
    for row in rows:
        if row['model'] == 'gcn':
            mean, std = 100 * row['test_acc_mean'], 100 * row['test_acc_std']
            ax.axhspan(mean - std, mean + std, color='0.85')
            ax.axhline(mean, color='0.3', lw=1, label=f'GCN ({mean:.1f} %)')
    for model, label in LOWRANK_MODELS.items():
        points = sorted((r['k'], 100 * r['test_acc_mean'], 100 * r['test_acc_std'])
                        for r in rows if r['model'] == model)
        if points:
            k, mean, std = zip(*points)
            ax.errorbar(k, mean, yerr=std, marker='o', capsize=3, label=label)
    seeds = '/'.join(str(n) for n in sorted({len(r['seeds']) for r in rows}))
    epochs = rows[0].get('settings', {}).get('epochs')
    ax.set_xscale('log', base=2)
    ks = sorted({r['k'] for r in rows if r['k'] is not None})
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.minorticks_off()
    ax.set_xlabel('rank k (after the component space)')
    ax.set_ylabel('test accuracy (%)')
    ax.set_title(f'{dataset} ({seeds} seeds' + (f', {epochs} epochs)' if epochs else ')'), fontsize=10)
    if legend:
        ax.legend(fontsize=8, loc='best')


def lowrank_accuracy(results: Path = RESULTS, out: Path | None = None) -> Path | None:
    r"""Test accuracy vs rank k of the low-rank GCN (exact and amortized
    basis) on each Planetoid dataset, with GCN's band, from
    ``lowrank_sweep_<Dataset>.json`` (``pyg-spectral bench planetoid --k ... --out``)."""
    runs = _lowrank_runs(results)
    if not runs:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, len(runs), figsize=(4.4 * len(runs), 3.6), squeeze=False)
    for ax, (dataset, rows) in zip(axes[0], runs.items()):
        _draw_lowrank(ax, dataset, rows)
    fig.suptitle('Low-rank GCN on the public Planetoid split (test accuracy at best validation; mean ± std over seeds)',
                 fontsize=10)
    fig.tight_layout()
    path = (out or results) / 'lowrank_accuracy_vs_k.png'
    _save(fig, path)
    return path


# --------------------------------------------------------------------------- hydrogen

def _plot_hydrogen():
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import plot_hydrogen
    return plot_hydrogen


def hydrogen_convergence(results: Path = RESULTS, out: Path | None = None) -> list[Path]:
    r"""Per-state error vs step of every 16-state fit with a progress CSV
    (``hydrogen.py --csv``): ``hydrogen16_r10_s0_progress.csv``, the chosen
    configuration's seed 0, gives ``hydrogen16_convergence.png``; any other
    ``hydrogen16_<run>_progress.csv`` gives ``hydrogen16_<run>_convergence.png``."""
    paths = []
    for csv_path in sorted(results.glob('hydrogen16*_progress.csv')):
        stem = csv_path.name[:-len('_progress.csv')]
        name = 'hydrogen16_convergence.png' if stem == 'hydrogen16_r10_s0' else f'{stem}_convergence.png'
        with open(csv_path, newline='') as fh:
            if len(list(csv.DictReader(fh))) < 1:
                continue
        path = (out or results) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix='.png', dir=path.parent)
        os.close(fd)
        try:
            _plot_hydrogen().plot_convergence(str(csv_path), tmp)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        paths.append(path)
    return paths


_FINAL_FIT = re.compile(r"step (\d+) of config \{.*'steps': (\d+).*training seed (\d+)")


def hydrogen_evaluations(results: Path = RESULTS) -> dict[str, list[dict]]:
    r"""``{'seed N': per-state rows}`` of every ``hydrogen16*_evaluate.md``
    (the console output of ``hydrogen.py --evaluate FIT``) whose fit ran its
    whole schedule; evaluations of intermediate steps are history, not
    results."""
    runs = {}
    for path in sorted(results.glob('hydrogen16*_evaluate.md')):
        match = _FINAL_FIT.search(path.read_text())
        if match is None or match.group(1) != match.group(2):
            continue
        for table in read_tables(path):
            if 'rel. err. (Ritz)' in table.header:
                runs[f'seed {match.group(3)}'] = table.rows
    return dict(sorted(runs.items()))


def _draw_hydrogen_errors(ax, runs, legend=True) -> None:
    colours = {1: 'tab:blue', 2: 'tab:orange', 3: 'tab:green', 4: 'tab:red'}
    width = 0.8 / max(1, len(runs))
    for j, (name, rows) in enumerate(runs.items()):
        states = [int(r['state']) for r in rows]
        ritz = [number(r['rel. err. (Ritz)']) for r in rows]
        own = [number(r['rel. err. (own)']) for r in rows]
        x = [s - 0.4 + width * (j + 0.5) for s in states]
        label = None
        if j == 0:  # one entry: the bars of a state are the runs, left to right
            label = ('Rayleigh-Ritz of the span' if len(runs) == 1 else
                     f"Rayleigh-Ritz, bars left to right: {', '.join(runs)}") + ' (colour: shell n)'
        ax.bar(x, ritz, width=width * 0.9, color=[colours[int(r['n'])] for r in rows], label=label)
        ax.plot(x, own, 'k_', ms=9, mew=1.5, ls='',
                label="each function's own quotient" if j == 0 else None)
        for xi, value in zip(x, ritz):
            if value == 0:  # 0.00 % as printed: no bar on a log axis
                ax.annotate('0.00', (xi, 0), xycoords=('data', 'axes fraction'), xytext=(0, 3),
                            textcoords='offset points', ha='center', fontsize=6, rotation=90)
    ax.axhline(0.9, color='0.3', ls='--', lw=1, label="paper's mean, sequential: 0.6-0.9 %")
    ax.axhline(3.0, color='tab:red', ls=':', lw=1, label='target: every state <= 3 %')
    ax.set_yscale('log')
    ax.set_xticks(range(1, 17), [str(s) for s in range(1, 17)])
    ax.set_xlabel('state (n = 1 | 2 2 2 | 3 x5 | 4 x7)')
    ax.set_ylabel('relative energy error (%)')
    ax.grid(True, axis='y', which='both', alpha=0.25)
    if legend:
        ax.legend(fontsize=7, loc='upper left')


def hydrogen_energies(results: Path = RESULTS, out: Path | None = None) -> list[Path]:
    r"""Learned vs exact energy per state, and the relative errors, of every
    ``hydrogen16*_evaluate.md``."""
    runs = hydrogen_evaluations(results)
    if not runs:
        return []
    plt = _plt()
    fig, (a, b) = plt.subplots(1, 2, figsize=(13, 4.4))
    for j, (name, rows) in enumerate(runs.items()):
        states = [int(r['state']) for r in rows]
        if j == 0:
            a.plot(states, [-number(r['exact E']) for r in rows], 'k_', ms=18, mew=2, ls='',
                   label='exact -1/(4(n-1/2)^2)')
        a.plot(states, [-number(r['Ritz E']) for r in rows], 'o', mfc='none', ms=7,
               label=f'learned, Rayleigh-Ritz ({name})')
        a.plot(states, [-number(r['own Rayleigh E']) for r in rows], 'x', ms=6,
               label=f"learned, own quotient ({name})")
    a.set_yscale('log')
    a.set_xticks(range(1, 17), [str(s) for s in range(1, 17)])
    a.set_xlabel('state')
    a.set_ylabel('binding energy -E')
    a.grid(True, which='both', alpha=0.25)
    a.legend(fontsize=7)
    _draw_hydrogen_errors(b, runs)
    fig.suptitle('2D hydrogen, 16 lowest states: learned vs exact on 2^16 fresh samples '
                 '(hydrogen.py --evaluate)', fontsize=10)
    fig.tight_layout()
    path = (out or results) / 'hydrogen16_energies.png'
    _save(fig, path)
    return [path]


def hydrogen_states(results: Path = RESULTS, out: Path | None = None,
                    samples: int = 2 ** 15, seed: int = 2000) -> list[Path]:
    r"""The learned n = 3, 4 states of ``hydrogen16.pt`` and the shells'
    densities next to the analytic ones (re-evaluates the fit)."""
    fit = results / 'hydrogen16.pt'
    if not fit.exists():
        return []
    path = (out or results) / 'hydrogen16_states.png'
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix='.png', dir=path.parent)
    os.close(fd)
    try:
        _plot_hydrogen().plot_states(str(fit), tmp, samples, seed)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return [path]


# --------------------------------------------------------------------------- learned eigenvectors on a mesh

def mesh_eigenvectors(results: Path = RESULTS, out: Path | None = None,
                      shown: tuple[int, ...] = (1, 2, 3, 4, 5, -1)) -> list[Path]:
    r"""Learned low eigenvectors of the normalised Laplacian of a kNN mesh,
    coloured on the points, above the exact ones (``mesh_eigenvectors.npz``,
    written by ``mesh_eigenvectors.py``, the learned vectors already aligned
    to the exact ones); :obj:`shown` indexes the k fitted vectors (the first,
    sqrt(degree), is left out: it carries no picture)."""
    path = results / 'mesh_eigenvectors.npz'
    if not path.exists():
        return []
    import numpy as np
    data = np.load(path)
    meta = json.loads(str(data['meta']))
    points, exact, learned = data['points'], data['exact'], data['learned']
    k = exact.shape[1]
    shown = [i % k for i in shown]
    plt = _plt()
    fig, axes = plt.subplots(2, len(shown), figsize=(2.6 * len(shown), 6.4), squeeze=False)
    for j, i in enumerate(shown):
        scale = float(np.abs(exact[:, i]).max())
        for row, (vectors, name) in enumerate(((learned, 'NeuralSVD'), (exact, 'exact'))):
            ax = axes[row, j]
            ax.scatter(points[:, 0], points[:, 1], c=vectors[:, i], s=3, cmap='RdBu_r',
                       vmin=-scale, vmax=scale, linewidths=0, rasterized=True)
            ax.set_aspect('equal')
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(f"u{i}: λ = {data['learned_values'][i]:.5f}\n"
                             f"sine to exact u{i}: {data['per_vector_sine'][i]:.1e}", fontsize=8)
            else:
                ax.set_title(f"exact u{i}: λ = {data['exact_values'][i]:.5f}", fontsize=8)
            if j == 0:
                ax.set_ylabel(name if row == 0 else f"exact ({meta['reference'].split(' (')[0]})",
                              fontsize=9)
    date = _DATE.search(meta['header'])
    fig.suptitle(f"NeuralSVD on the normalised Laplacian of a {meta['neighbours']}-NN graph of "
                 f"{meta['nodes']:,} random points in the unit square: k = {k}, {meta['steps']} steps, "
                 f"{meta['seconds']:.2f} s; subspace sine of all {k} vectors {meta['sine']:.1e}, "
                 f"eigenvalue error {meta['eig_err']:.1e} ({meta['verdict']})\n"
                 f"learned vectors aligned to the exact ones by sign, or by Procrustes inside clusters "
                 f"of eigenvalues closer than {meta['cluster_gap']:g} relative "
                 f"(mesh_eigenvectors.py; {date.group(0) if date else ''}, CPU, one thread)", fontsize=9)
    fig.tight_layout(h_pad=2.0)
    png = (out or results) / 'mesh_eigenvectors.png'
    _save(fig, png)
    return [png]


# --------------------------------------------------------------------------- headline

def headline(results: Path = RESULTS, out: Path | None = None) -> list[Path]:
    r"""One figure for the README: PE time vs size, the amortized step vs
    exact solvers, low-rank GCN accuracy on Cora, hydrogen per-state error."""
    pe = pe_tables(results)
    amort = _alone_rows(results / 'amortized_speed_components.md') \
        if (results / 'amortized_speed_components.md').exists() else []
    lowrank = _lowrank_runs(results)
    hydrogen = hydrogen_evaluations(results)
    if not (pe or amort or lowrank or hydrogen):
        return []
    plt = _plt()
    fig, axes = plt.subplots(2, 2, figsize=(13, 10.5))
    (a, b), (c, d) = axes
    if pe:
        _draw_pe(a, pe)
    else:
        a.text(0.5, 0.5, 'no pe_speed results', ha='center', transform=a.transAxes)
    if amort:
        _draw_amortized(b, amort, 'k', 'name')
        b.set_xlabel('rank k')
        b.set_ylabel('ms per step (basis alone)')
        b.set_title('Amortized eigenbasis vs exact solvers, per step (Cora, PubMed)', fontsize=10)
    if lowrank:
        name = 'Cora' if 'Cora' in lowrank else next(iter(lowrank))
        _draw_lowrank(c, name, lowrank[name])
        c.set_title(f'Low-rank GCN vs GCN: {c.get_title()}', fontsize=10)
    if hydrogen:
        _draw_hydrogen_errors(d, hydrogen)
        d.set_title('2D hydrogen, 16 states: error per state', fontsize=10)
    fig.suptitle('pyg_spectral on a 2-core CPU, one thread (no GPU measured): '
                 'see benchmarks/RESULTS.md', fontsize=11)
    fig.tight_layout()
    path = (out or results) / 'headline.png'
    _save(fig, path)
    return [path]


FIGURES = {
    'headline': headline,
    'pe': pe_speed,
    'eigensolvers': eigensolvers,
    'tracking': tracking,
    'convergence': neuralsvd_convergence,
    'amortized': amortized,
    'lowrank': lowrank_accuracy,
    'hydrogen': hydrogen_convergence,
    'hydrogen_energies': hydrogen_energies,
    'hydrogen_states': hydrogen_states,
    'mesh': mesh_eigenvectors,
}


def main(argv=None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog='figures: ' + ', '.join(FIGURES))
    parser.add_argument('--only', nargs='+', choices=list(FIGURES), default=None, metavar='FIGURE',
                        help='figures to draw (default: all)')
    parser.add_argument('--skip', nargs='+', choices=list(FIGURES), default=(), metavar='FIGURE',
                        help='figures not to draw (default: none)')
    parser.add_argument('--results', type=Path, default=RESULTS,
                        help='directory of the raw outputs (default: benchmarks/results)')
    parser.add_argument('--out', type=Path, default=None,
                        help='where the PNGs go (default: the --results directory)')
    parser.add_argument('--hydrogen-samples', type=int, default=2 ** 15,
                        help='samples of the Ritz basis for hydrogen_states (default: 32768)')
    args = parser.parse_args(argv)
    written = []
    for name in args.only or FIGURES:
        if name in args.skip:
            continue
        if name == 'hydrogen_states':
            paths = hydrogen_states(args.results, args.out, samples=args.hydrogen_samples)
        else:
            paths = FIGURES[name](args.results, args.out)
        paths = [paths] if isinstance(paths, Path) else list(paths or [])
        print(f'{name}: ' + (', '.join(str(p) for p in paths) if paths else 'no input results, skipped'))
        written += paths
    return written


if __name__ == '__main__':
    main()
