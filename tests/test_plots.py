"""benchmarks/plots.py redraws every figure of benchmarks/RESULTS.md from the
committed raw outputs in benchmarks/results/, and never draws a WRONG or
FAILED result as a time."""
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip('matplotlib')

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / 'benchmarks' / 'results'
spec = importlib.util.spec_from_file_location('plots', REPO / 'benchmarks' / 'plots.py')
plots = importlib.util.module_from_spec(spec)
spec.loader.exec_module(plots)

# what RESULTS.md embeds, besides hydrogen16_states.png (drawn by its own test)
FIGURES = {'headline.png', 'pe_time_vs_size.png', 'eigensolvers_time_vs_size.png',
           'neuralsvd_cold_vs_warm.png', 'amortized_step_cost.png', 'lowrank_accuracy_vs_k.png',
           'hydrogen16_convergence.png', 'hydrogen16_s0_convergence.png', 'hydrogen16_energies.png'}


def test_every_figure_is_drawn_from_the_committed_results(tmp_path):
    written = plots.main(['--out', str(tmp_path), '--skip', 'hydrogen_states'])
    names = {p.name for p in written}
    assert FIGURES <= names, FIGURES - names
    for path in written:
        assert path.parent == tmp_path and path.stat().st_size > 10_000
    assert not [p for p in tmp_path.iterdir() if p.suffix != '.png']  # no temporary left


def test_every_embedded_figure_is_committed_beside_the_results_page():
    text = (REPO / 'benchmarks' / 'RESULTS.md').read_text()
    for name in FIGURES | {'hydrogen16_states.png'}:
        assert (RESULTS / name).is_file(), name
        assert f'results/{name}' in text, f'{name} is not shown in RESULTS.md'
    headings = re.findall(r'^## (.+)$', text, flags=re.M)  # the headline table's links resolve
    slugs = {re.sub(r'[^\w\- ]', '', h.lower()).replace(' ', '-') for h in headings}
    for anchor in re.findall(r'\]\(#([^)]+)\)', text):
        assert anchor in slugs, anchor


def test_hydrogen_states_figure_from_the_committed_fit(tmp_path):
    # the full figure uses 2^15 samples; 2^12 keeps the test short
    assert plots.main(['--out', str(tmp_path), '--only', 'hydrogen_states',
                       '--hydrogen-samples', '4096']) == [tmp_path / 'hydrogen16_states.png']


def test_the_parsers_read_the_committed_tables():
    pe = plots.pe_tables(RESULTS)
    assert {'Cora', 'CiteSeer', 'PubMed', 'RGG 100000 nodes', '10000 molecule-like graphs'} <= set(pe)
    for graphs, nodes, table in pe.values():
        ours = [r for r in table.rows if r['peer'] == 'ours auto']
        assert len(ours) == 1 and plots.status(ours[0]['verdict']) == 'ok'
        assert plots.number(ours[0]['wall s']) > 0 and table.date.startswith('20')
    assert pe['PubMed'][:2] == (1, 19717) and pe['10000 molecule-like graphs'][0] == 10000
    eig = plots.neuralsvd_tables(RESULTS)
    assert {'Cora', 'CiteSeer', 'PubMed', 'geo100000', 'geo1000000', 'sbm1e5', 'sbm1e6'} <= set(eig)
    assert eig['sbm1e6'][0] == 1_000_000 and eig['geo100000'][0] == 100_000
    evaluation = plots.hydrogen_evaluations(RESULTS)['hydrogen16']
    assert [int(r['state']) for r in evaluation] == list(range(1, 17))


def test_cells_and_verdicts():
    assert plots.number('0.87') == 0.87 and plots.number('1.61x') == 1.61
    assert plots.number('1.14 %') == 1.14 and plots.number('2.9e-06') == 2.9e-06
    assert plots.number('-') is None and plots.number('not run') is None
    assert [plots.status(v) for v in ('ok', 'WRONG', 'FAILED (> 60 s)', 'n/a (dense n x n too large)')] \
        == ['ok', 'WRONG', 'FAILED', 'n/a']


def test_wrong_and_failed_results_are_marks_not_times(tmp_path):
    head = ('| peer | wall s | peak MB | eig err | subspace err | verdict | ratio to fastest correct |\n'
            '|---|---|---|---|---|---|---|\n')
    for name, nodes, pyg, scipy in (('A', 1000, 'WRONG', 'ok'), ('B', 10000, 'FAILED (> 60 s)', 'WRONG')):
        (tmp_path / f'pe_speed_{name}.md').write_text(
            f'# date 2026-01-01 00:00 UTC\n\n## {name}: 1 graph(s), {nodes} nodes, k = 16\n\n' + head
            + f'| PyG AddLaplacianEigenvectorPE | 0.50 | 1 | 1e-1 | 1.0 | {pyg} | - |\n'
            + f'| SciPy eigsh (SA) | 0.70 | 1 | 1e-9 | 1e-9 | {scipy} | 1.00x |\n'
            + '| ours auto | 0.20 | 1 | 1e-9 | 1e-9 | ok | 1.00x |\n')
    plt = plots._plt()
    fig, ax = plt.subplots()
    plots._draw_pe(ax, plots.pe_tables(tmp_path))
    in_data = {line.get_label(): list(line.get_xdata()) for line in ax.get_lines()
               if line.get_transform() == ax.transData and not line.get_label().startswith('_')}
    assert in_data['PyG AddLaplacianEigenvectorPE'] == []  # legend entry only: never a time
    assert in_data['SciPy eigsh (SA)'] == [1000] and in_data['ours auto'] == [1000, 10000]
    marks = [line for line in ax.get_lines()
             if line.get_transform() != ax.transData and line.get_marker() not in (None, 'None', '')]
    assert len(marks) == 3  # PyG WRONG, PyG FAILED, SciPy WRONG, in the strip above the axes
    plt.close(fig)


def test_command_line_help_and_hydrogen_table():
    out = subprocess.run([sys.executable, str(REPO / 'benchmarks' / 'plots.py'), '--help'],
                         capture_output=True, text=True, check=True).stdout
    assert '--only' in out and 'hydrogen_states' in out
    table = subprocess.run([sys.executable, str(REPO / 'benchmarks' / 'plot_hydrogen.py'), '--table',
                            str(RESULTS / 'hydrogen16_r10_s0_progress.csv')],
                           capture_output=True, text=True, check=True).stdout
    assert '| hydrogen16_r10_s0_progress | 24000 |' in table
