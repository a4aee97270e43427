r"""``pyg-spectral bench`` as a user meets it: every flag's help says its
default, each row's memory is that model's own, the bar ends at 100 %, and
the bench (an application) chooses its thread count while the library never
does."""
import json
import re
import sys
import time
from pathlib import Path

import pytest
import torch

from pyg_spectral.cli import build_parser, main

PACKAGE = Path(__file__).resolve().parents[1] / 'pyg_spectral'


def option_blocks(help_text: str) -> dict[str, str]:
    r"""``--help`` output split into one block of text per option."""
    blocks, current = {}, None
    for line in help_text.splitlines():
        start = re.match(r'^  (-{1,2}[\w-]+)', line)
        if start:
            current = start.group(1)
            blocks[current] = line
        elif current and line.startswith('    '):
            blocks[current] += ' ' + line.strip()
        else:
            current = None
    return blocks


def test_every_bench_flag_says_what_it_does_and_its_default(capsys):
    with pytest.raises(SystemExit):
        main(['bench', 'planetoid', '--help'])
    blocks = option_blocks(capsys.readouterr().out)
    planetoid = build_parser()._subparsers._group_actions[0].choices['bench'] \
        ._subparsers._group_actions[0].choices['planetoid']
    flags = {a.option_strings[-1] for a in planetoid._actions if a.option_strings} - {'--help'}
    assert flags <= set(blocks), flags - set(blocks)
    assert {'--threads', '--seeds', '--epochs', '--no-progress'} <= flags
    for flag in flags:
        assert '(default' in blocks[flag], f'{flag}: {blocks[flag]!r}'
    assert '(default: 10)' in blocks['--seeds'] and '(default: 200)' in blocks['--epochs']
    assert '(default: 1)' in blocks['--threads']


@pytest.mark.skipif(not Path('/proc/self/statm').is_file(), reason='reads /proc/self/statm')
def test_peak_memory_is_the_blocks_own_not_the_process_peak():
    r"""A block that holds 64 MiB, then one that holds 16 MiB: the second
    reports about 16 MiB (the process-wide peak, ru_maxrss, would say at
    least the first's 64 MiB)."""
    from pyg_spectral.bench.memory import PeakMemory

    def hold(mib: int) -> PeakMemory:
        with PeakMemory('cpu', interval=0.002) as memory:
            x = torch.ones(mib * 2 ** 18)  # float32: mib MiB, every page touched
            time.sleep(0.05)
            del x
        return memory

    big, small = hold(64), hold(16)
    assert big.report.kind == small.report.kind == 'rss_increase_sampled'
    assert big.report.samples > 0 and '/proc/self/statm' in big.description()
    assert 56 < big.report.peak_mib < 96, big.report
    assert 12 < small.report.peak_mib < 40, small.report


@pytest.fixture
def ballast_model():
    r"""A GCN that holds a 96 MiB buffer: a model whose memory differs from
    GCN's by a known amount. Registered for the test only."""
    from pyg_spectral.bench import registry
    from pyg_spectral.bench.models.gcn import GCN

    name = 'test-ballast-gcn'

    @registry.register_model(name, 'GCN with a 96 MiB buffer (tests only)')
    def build(num_features, num_classes, data):
        net = GCN(num_features, 16, num_classes)
        net.register_buffer('ballast', torch.ones(24 * 2 ** 20))
        return net
    yield name
    registry._MODELS.pop(name)


@pytest.mark.skipif(sys.platform != 'linux', reason='per-model RSS from /proc/self/statm')
def test_each_row_reports_its_own_models_memory(ballast_model, tmp_path, capsys, cora):
    out = tmp_path / 'res.json'
    assert main(['bench', 'planetoid', '--model', ballast_model, 'gcn', '--seeds', '1',
                 '--epochs', '2', '--out', str(out), '--no-progress']) == 0
    ballast, gcn = json.loads(out.read_text())
    for row in (ballast, gcn):
        assert row['model_mem_kind'] == 'rss_increase_sampled'
        assert 'statm' in row['model_mem_measure'] and row['model_mem_baseline_mib'] > 0
        assert row['peak_mem_kind'] == 'process_max_rss'  # the old keys stay, same meaning
        assert row['settings']['epochs'] == 2 and row['seeds'] == [0]
    # the 96 MiB buffer shows in its own row and not in the next model's
    assert ballast['model_peak_mem_mib'] > 90
    assert gcn['model_peak_mem_mib'] < ballast['model_peak_mem_mib'] - 60
    assert gcn['peak_mem_mib'] >= ballast['model_peak_mem_mib']  # the process peak includes it
    table = capsys.readouterr().out
    header = table.splitlines()[0]
    assert all(column in header for column in ('seeds', 'epochs', 'peak +MiB'))
    rows = {line.split('|')[1].strip(): line.split('|')[-2].strip()
            for line in table.splitlines()[2:4]}
    assert rows == {ballast_model: f"{ballast['model_peak_mem_mib']:.0f}",
                    'gcn': f"{gcn['model_peak_mem_mib']:.0f}"
                    if gcn['model_peak_mem_mib'] >= 10 else f"{gcn['model_peak_mem_mib']:.1f}"}
    assert 'peak +MiB: per model' in table


def test_progress_bar_ends_at_100_percent(capsys, cora):
    r"""The bar's last frame is the finished run: every epoch draws a frame
    (its postfix), none stops early. A guard: the solvers' bars that stop
    at convergence are another matter."""
    from pyg_spectral.bench.node_classification import run_node_classification
    run_node_classification('Cora', 'gcn', seeds=2, epochs=3, progress=True)
    frames = [f for f in re.split(r'[\r\n]', capsys.readouterr().err) if '%|' in f]
    assert frames, 'no progress bar drawn'
    assert '100%' in frames[-1] and '6/6' in frames[-1], frames[-1]


def test_threads_flag_sets_the_runs_threads_and_is_recorded(tmp_path, cora):
    before = torch.get_num_threads()
    out = tmp_path / 'res.json'
    try:
        assert main(['bench', 'planetoid', '--threads', '2', '--seeds', '1', '--epochs', '1',
                     '--out', str(out), '--no-progress']) == 0
        assert json.loads(out.read_text())[0]['settings']['threads'] == 2
        assert main(['bench', 'planetoid', '--seeds', '1', '--epochs', '1', '--out', str(out),
                     '--no-progress']) == 0
        assert json.loads(out.read_text())[0]['settings']['threads'] == 1  # the default
    finally:
        torch.set_num_threads(before)


# the layers that may choose a process's thread count: the applications
APPLICATIONS = {'cli.py'}


def test_the_library_never_sets_the_thread_count():
    offenders = {str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob('*.py')
                 if 'set_num_threads(' in path.read_text()}
    # bench/ is importable (run_node_classification): only the command line sets threads
    library = offenders - APPLICATIONS
    assert not library, f'library modules set the thread count: {library}'


def test_runs_are_seeded_per_seed_and_leave_the_global_generator_alone(cora):
    from pyg_spectral.bench.node_classification import run_node_classification
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    first = run_node_classification('Cora', 'gcn', seeds=2, epochs=5, progress=False)
    assert torch.equal(torch.get_rng_state(), before)
    torch.manual_seed(99)  # the caller's state does not reach the runs
    again = run_node_classification('Cora', 'gcn', seeds=2, epochs=5, progress=False)
    assert again.test_acc == first.test_acc
    assert first.test_acc[0] != first.test_acc[1]  # each run has its own seed
