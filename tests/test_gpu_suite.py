"""benchmarks/gpu_suite.py --smoke, as CI runs it: every part runs at toy
size on the CPU, writes both files, and every result that has a reference
is right."""
import json
import os
import subprocess
import sys

import pytest

from conftest import REPO

SCRIPT = REPO / 'benchmarks' / 'gpu_suite.py'
PARTS = ('amortized', 'pe', 'neuralsvd', 'hydrogen')


@pytest.fixture(scope='module')
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp('gpu_suite')
    # a child process, as CI and users run it; one thread keeps it off the other jobs' cores
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    proc = subprocess.run([sys.executable, str(SCRIPT), '--smoke', '--out', str(out)], env=env,
                          capture_output=True, text=True, timeout=300)
    return proc, out


def test_smoke_exits_zero_and_writes_both_files(smoke):
    proc, out = smoke
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ['gpu_suite.json', 'gpu_suite.md']  # no temporary left


def test_every_part_ran_and_every_checked_result_is_right(smoke):
    _, out = smoke
    result = json.loads((out / 'gpu_suite.json').read_text())
    header = result['header']
    assert header['mode'] == 'smoke' and header['device'] == 'cpu' and header['gpu'] is None
    import torch
    commit = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=REPO, capture_output=True, text=True)
    assert header['git_commit'] == (commit.stdout.strip() or 'unknown')
    assert header['torch'] == torch.__version__ and header['cpu_count'] == os.cpu_count()
    assert header['command'] == f'python benchmarks/gpu_suite.py --smoke --out {out}'
    assert list(result['parts']) == list(PARTS)
    for name, part in result['parts'].items():
        assert part['status'] == 'ok', (name, part)
        assert part['rows'] and part['wall_s'] <= part['budget_s'] + 30
    verdicts = [row['verdict'] for part in result['parts'].values() for row in part['rows']
                if 'verdict' in row]
    assert verdicts and all(v == 'ok' for v in verdicts), verdicts
    amortized = result['parts']['amortized']['rows'][0]
    assert amortized['eigh_check'] == amortized['amortized_check'] == 'ok'
    assert isinstance(amortized['speedup'], float) or amortized['speedup'].startswith('n/a')
    # PE and NeuralSVD: ours and the CPU peer, both checked
    for name in ('pe', 'neuralsvd'):
        rows = result['parts'][name]['rows']
        assert all('eig_err' in r and 'sine' in r for r in rows), rows
    hydrogen = result['parts']['hydrogen']['rows'][0]
    assert hydrogen['finite']
    # stopped by its budget at a check (every 5 steps), long before its step count
    assert hydrogen['steps'] % 5 == 0 and 0 < hydrogen['steps'] < _suite().SMOKE_HYDROGEN['steps']
    # the rate is timed between two checks (the first at step 5) inside the fit, which
    # is the row's time less its evaluation's
    assert (hydrogen['steps'] - 5) / hydrogen['steps_per_s'] <= \
        hydrogen['wall_s'] - hydrogen['eval_s'] + 1e-9


def test_markdown_says_gpu_figures_are_not_measured(smoke):
    _, out = smoke
    text = (out / 'gpu_suite.md').read_text()
    assert 'GPU figures are not measured here' in text
    for name in PARTS:
        assert f'## {name}:' in text
    # ... which a run on a GPU does not say
    result = json.loads((out / 'gpu_suite.json').read_text())
    result['header'].update(mode='full', device='cuda:0', gpu='NVIDIA H200', cuda='12.8')
    assert 'not measured' not in _suite().markdown(result)


# The command line itself runs in the smoke fixture's child process; the tests
# below call main() in this process, sparing a fresh interpreter each.
def test_full_mode_without_cuda_is_a_clear_error(tmp_path, capsys):
    import torch
    if torch.cuda.is_available():
        pytest.skip('CUDA is available here')
    with pytest.raises(SystemExit) as exit_:  # the script exits with main()'s code
        _suite().main(['--out', str(tmp_path)])
    assert exit_.value.code == 2 and 'CUDA is not available' in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_a_part_whose_budget_is_spent_is_skipped_not_failed(tmp_path):
    # the part that still runs is the quick amortized one: the smoke fixture
    # already fits hydrogen, whose smoke fit runs until its budget
    assert _suite().main(['--smoke', '--parts', 'pe', 'amortized', '--budget', 'pe=0',
                          '--out', str(tmp_path)]) == 0
    parts = json.loads((tmp_path / 'gpu_suite.json').read_text())['parts']
    assert parts['pe']['status'] == 'skipped (budget)'
    assert parts['amortized']['status'] == 'ok'


def _suite():
    import importlib.util
    spec = importlib.util.spec_from_file_location('gpu_suite', SCRIPT)
    module = importlib.util.module_from_spec(spec)
    path = list(sys.path)
    try:
        spec.loader.exec_module(module)
    finally:  # the script puts benchmarks/ first on the path; other tests keep theirs
        sys.path[:] = path
    return module


def test_a_part_that_raises_is_recorded_and_the_suite_goes_on(tmp_path, monkeypatch):
    suite = _suite()

    def broken(device, clock, smoke, refs, rows, notes, **kw):
        rows.append(dict(graph='g', method='ours', wall_s=1.0, verdict='ok', status='ok'))
        raise RuntimeError('boom')

    def wrong(device, clock, smoke, refs, rows, notes, **kw):
        rows.append(dict(graph='g', method='ours', wall_s=1.0, verdict='WRONG', status='ok'))

    def fine(device, clock, smoke, refs, rows, notes, **kw):
        rows.append(dict(graph='g', method='ours', wall_s=1.0, verdict='ok', status='ok'))

    monkeypatch.setitem(suite.RUNNERS, 'amortized', broken)
    monkeypatch.setitem(suite.RUNNERS, 'pe', fine)
    # full mode on the CPU: a failed part is not the run's failure while another part ran
    assert suite.main(['--device', 'cpu', '--parts', 'amortized', 'pe', '--out', str(tmp_path)]) == 0
    parts = json.loads((tmp_path / 'gpu_suite.json').read_text())['parts']
    assert parts['amortized']['status'] == 'error' and 'boom' in parts['amortized']['error']
    assert len(parts['amortized']['rows']) == 1  # what it measured before it raised
    assert parts['pe']['status'] == 'ok'
    assert suite.main(['--device', 'cpu', '--parts', 'amortized', '--out', str(tmp_path)]) == 1
    # smoke: any failed part or WRONG result fails the run
    assert suite.main(['--smoke', '--parts', 'amortized', 'pe', '--out', str(tmp_path)]) == 1
    monkeypatch.setitem(suite.RUNNERS, 'pe', wrong)
    assert suite.main(['--smoke', '--parts', 'pe', '--out', str(tmp_path)]) == 1
    assert json.loads((tmp_path / 'gpu_suite.json').read_text())['parts']['pe']['status'] == \
        'WRONG result(s)'


def test_ratio_needs_both_sides_right():
    suite = _suite()
    ours = dict(wall_s=2.0, verdict='ok')
    assert suite.ratio(dict(wall_s=6.0, verdict='ok'), ours) == '3.00x'
    assert suite.ratio(dict(wall_s=6.0, verdict='WRONG'), ours) == '-'
    assert suite.ratio(dict(wall_s=6.0, verdict='ok'), dict(wall_s=2.0, verdict='WRONG')) == '-'
    assert suite.ratio(dict(wall_s=6.0, verdict='ok'), dict(wall_s=2.0, verdict='unchecked')) == '-'
    assert suite.ratio(dict(wall_s=6.0, status='timeout'), ours).startswith('> 3.00x')
