"""The examples run end to end (few steps: this checks they work, not their accuracy)."""
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / 'examples'
NAMES = ['hydrogen', 'cdk_gaussian', 'edge_cdk_embedding']


def load_example(name: str, monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))  # the examples import their plotting module
    spec = importlib.util.spec_from_file_location(f'example_{name}', EXAMPLES / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize('name', NAMES)
def test_example_runs_and_prints_exact_vs_learned(name, tmp_path, monkeypatch, capsys):
    r"""Run in this process (so that its figure can be looked at): the table
    is printed, the figure lands in --out-dir, and every panel has labelled
    axes, with whole-number ticks on an index axis."""
    module = load_example(name, monkeypatch)
    figures = []
    real_save = module.save

    def save(fig, path):
        figures.append(fig)
        real_save(fig, path)
    monkeypatch.setattr(module, 'save', save)
    with torch.random.fork_rng():  # the example seeds torch's global generator
        module.main(['--steps', '30', '--out-dir', str(tmp_path / 'figures')])
    out = capsys.readouterr().out
    assert 'learned' in out  # the learned-vs-exact table
    if 'matplotlib is not installed' in out:
        return
    assert [p.name for p in (tmp_path / 'figures').iterdir()] == [f'{name}.png']
    (fig,) = figures
    fig.canvas.draw()
    for ax in fig.axes:
        assert ax.get_xlabel() and ax.get_ylabel(), f'{name}: unlabelled axes {ax.get_title()!r}'
        for axis, label, lim in ((ax.xaxis, ax.get_xlabel(), ax.get_xlim()),
                                 (ax.yaxis, ax.get_ylabel(), ax.get_ylim())):
            if label.startswith('index'):
                lo, hi = sorted(lim)
                ticks = [t for t in axis.get_ticklocs() if lo <= t <= hi]
                assert ticks and all(t == round(t) for t in ticks), f'{name}: {label} {ticks}'
    import matplotlib.pyplot as plt
    plt.close(fig)


def test_example_runs_as_a_script():
    r"""``python examples/NAME.py --help`` from a shell: the script's own
    entry point and imports (the tests below call ``main`` in this process,
    sparing an interpreter start-up each)."""
    proc = subprocess.run([sys.executable, str(EXAMPLES / 'hydrogen.py'), '--help'],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, 'OMP_NUM_THREADS': '1'})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert '--out-dir' in proc.stdout


@pytest.mark.parametrize('name', NAMES)
def test_example_help_states_each_option_and_its_default(name, monkeypatch, capsys):
    r"""``--help``: every option has a help text with its default, and the
    figure goes to the git-ignored examples/output/ unless told otherwise."""
    module = load_example(name, monkeypatch)
    monkeypatch.setenv('COLUMNS', '80')  # argparse wraps as in an 80-column terminal
    with pytest.raises(SystemExit) as stop:
        module.main(['--help'])
    assert stop.value.code == 0
    blocks, current = {}, None
    for line in capsys.readouterr().out.split('options:')[1].splitlines():
        start = re.match(r'^  (-{1,2}[\w-]+)', line)
        if start:
            current = start.group(1)
            blocks[current] = line
        elif current:
            blocks[current] += ' ' + line.strip()
    assert {'--out-dir', '--out', '--threads', '--steps'} <= set(blocks)
    for flag, text in blocks.items():
        if flag not in ('-h', '--help'):
            assert '(default' in text, f'{name} {flag}: {text!r}'
    assert str(EXAMPLES / 'output') in blocks['--out-dir']
    assert f'OUT_DIR/{name}.png' in blocks['--out']


def test_example_output_directory_is_git_ignored():
    proc = subprocess.run(['git', 'check-ignore', '-q', 'examples/output/hydrogen.png'],
                          cwd=REPO, capture_output=True)
    assert proc.returncode == 0, 'examples/output/ is not git-ignored'
