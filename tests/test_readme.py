"""Every Python block in README.md runs, so the README cannot rot."""
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / 'README.md'
BLOCKS = re.findall(r'```python\n(.*?)```', README.read_text(), flags=re.S)


def test_readme_has_python_blocks():
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize('index', range(len(BLOCKS)))
def test_readme_block_runs(index, planetoid_source):
    exec(compile(BLOCKS[index], f'README.md[python block {index}]', 'exec'), {})
