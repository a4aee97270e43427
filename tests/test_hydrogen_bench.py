"""benchmarks/hydrogen.py's bookkeeping on tiny fits: a saved fit
re-evaluates with the promised last line, and the progress CSV resumes
without repeating rows."""
import csv
import importlib.util
import re

import torch

from conftest import REPO

spec = importlib.util.spec_from_file_location('hydrogen_bench', REPO / 'benchmarks' / 'hydrogen.py')
hydrogen = importlib.util.module_from_spec(spec)
spec.loader.exec_module(hydrogen)

TINY = dict(k=4, hidden=8, layers=1, fourier=4, fourier_scale=0.1, steps=4, batch=16, lr=1e-3,
            ema=0.9, scale=3.0, warmup=0)


def test_evaluate_saved_fit_prints_summary_last(tmp_path, capsys):
    torch.manual_seed(0)
    _, model = hydrogen.build(TINY)
    path = tmp_path / 'fit.pt'
    hydrogen.save_small(str(path), TINY, 'sequential', 0, 4, model)
    saved = torch.load(path, weights_only=True)
    assert all(v.dtype == torch.float32 for v in saved['model'].values())
    hydrogen.main(['--evaluate', str(path), '--eval-samples', '1024'])
    lines = capsys.readouterr().out.strip().splitlines()
    assert sum(line.startswith('| ') and line[2].isdigit() for line in lines) == 4
    assert re.fullmatch(r'mean relative error (\d+\.\d\d|nan) %, max (\d+\.\d\d|nan) %', lines[-1])


def test_progress_csv_resumes_without_repeating_rows(tmp_path, monkeypatch):
    monkeypatch.setitem(hydrogen.CONFIGS, 'tiny', TINY)
    args = ['--config', 'tiny', '--checkpoint', str(tmp_path / 'ckpt.pt'),
            '--csv', str(tmp_path / 'p.csv'), '--csv-every', '2', '--csv-samples', '256',
            '--save', str(tmp_path / 'fit.pt'), '--save-best', str(tmp_path / 'best.pt')]
    hydrogen.main(args)
    hydrogen.main(args)  # finished: resumes at the end, adds nothing
    with open(tmp_path / 'p.csv', newline='') as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r['step']) for r in rows] == [2, 4]
    assert float(rows[1]['wall_s']) >= float(rows[0]['wall_s'])
    assert torch.load(tmp_path / 'fit.pt', weights_only=True)['step'] == 4
    means = [float(r['ritz_mean']) for r in rows]
    best = torch.load(tmp_path / 'best.pt', weights_only=True)['step']
    assert best == int(rows[means.index(min(means))]['step'])
