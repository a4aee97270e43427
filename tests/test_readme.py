"""Every Python block in README.md runs and asserts what it prints, so the
README cannot rot; its test command is the one CI runs (.ci/test)."""
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / 'README.md'
TEXT = README.read_text()
BLOCKS = re.findall(r'```python\n(.*?)```', TEXT, flags=re.S)
VENV = 'python3 -m venv .venv && . .venv/bin/activate && '


def test_readme_has_python_blocks():
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize('index', range(len(BLOCKS)))
def test_readme_block_runs(index, planetoid_source):
    exec(compile(BLOCKS[index], f'README.md[python block {index}]', 'exec'), {})


@pytest.mark.parametrize('index', range(len(BLOCKS)))
def test_readme_block_asserts_what_it_prints(index):
    if 'print(' in BLOCKS[index]:
        assert 'assert ' in BLOCKS[index], f'python block {index} prints a figure it does not check'


def _fresh_machine_commands() -> dict[str, str]:
    r"""The first bash block: ``{'main job': command, 'tests': command}``,
    each command the line after its ``# name:`` marker."""
    block = re.search(r'```bash\n(.*?)```', TEXT, flags=re.S).group(1).splitlines()
    return {line[2:].split(':')[0]: block[i + 1] for i, line in enumerate(block) if line.startswith('# ')}


def test_the_two_fresh_machine_commands_open_the_readme():
    assert TEXT.index('```bash') < TEXT.index('\n## ')  # before any section
    commands = _fresh_machine_commands()
    assert list(commands) == ['main job', 'tests']
    assert commands['main job'].startswith(VENV)
    assert commands['main job'].endswith('pyg-spectral bench planetoid --dataset Cora')


def test_the_readme_test_command_is_the_one_ci_runs():
    script = (REPO / '.ci' / 'test').read_text().splitlines()
    ci_command = [line for line in script if line and not line.startswith('#')][-1]
    assert _fresh_machine_commands()['tests'] == VENV + ci_command
    assert 'bash .ci/test' in (REPO / '.ci' / 'run').read_text()


def test_the_readme_shows_the_headline_results_and_cites_no_section_number():
    assert '(benchmarks/results/headline.png)' in TEXT
    assert (REPO / 'benchmarks' / 'results' / 'headline.png').is_file()
    assert '(benchmarks/RESULTS.md)' in TEXT
    assert not re.search(r'RESULTS(\.md)?`?,? section \d', TEXT)
    for anchor in re.findall(r'benchmarks/RESULTS\.md#([\w-]+)', TEXT):  # links into RESULTS resolve
        headings = re.findall(r'^## (.+)$', (REPO / 'benchmarks' / 'RESULTS.md').read_text(), flags=re.M)
        slugs = {re.sub(r'[^\w\- ]', '', h.lower()).replace(' ', '-') for h in headings}
        assert anchor in slugs, anchor
