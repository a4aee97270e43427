"""Figures of benchmarks/RESULTS.md, regenerated from the raw results that the
benchmark scripts write into benchmarks/results/.

    python benchmarks/plots.py            # every figure whose inputs exist

Needs matplotlib (the ``plot`` extra). Each figure is written to a temporary
name and renamed, so an interrupted run never leaves half a PNG.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / 'results'
DATASETS = ('Cora', 'CiteSeer', 'PubMed')
LOWRANK_MODELS = {'lowrank-gcn-exact': 'exact basis', 'lowrank-gcn': 'amortized basis'}


def _save(fig, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(suffix='.png', dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=120, bbox_inches='tight')
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def lowrank_accuracy(results: Path = RESULTS) -> Path | None:
    r"""Test accuracy vs rank k of the low-rank GCN (exact and amortized
    basis) on each Planetoid dataset, with GCN's band, from
    ``lowrank_sweep_<Dataset>.json`` (``pyg-spectral bench planetoid --k ... --out``)."""
    runs = {d: json.loads(p.read_text()) for d in DATASETS
            if (p := results / f'lowrank_sweep_{d}.json').exists()}
    if not runs:
        return None
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(runs), figsize=(4.2 * len(runs), 3.4), squeeze=False)
    for ax, (dataset, rows) in zip(axes[0], runs.items()):
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
        seeds = len(rows[0]['seeds'])
        ax.set_xscale('log', base=2)
        ks = sorted({r['k'] for r in rows if r['k'] is not None})
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.set_xlabel('rank k (eigenvectors after the component space)')
        ax.set_ylabel('test accuracy (%)')
        ax.set_title(f'{dataset} ({seeds} seeds)')
        ax.legend(fontsize=8, loc='lower right')
    fig.suptitle('Low-rank GCN on the public Planetoid split', fontsize=10)
    path = results / 'lowrank_accuracy_vs_k.png'
    _save(fig, path)
    plt.close(fig)
    return path


FIGURES = {'lowrank': lowrank_accuracy}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--only', nargs='*', choices=sorted(FIGURES), default=sorted(FIGURES),
                        help='figures to make (default: all)')
    args = parser.parse_args(argv)
    for name in args.only:
        path = FIGURES[name]()
        print(f'{name}: ' + (str(path) if path else 'no input results, skipped'))


if __name__ == '__main__':
    main()
