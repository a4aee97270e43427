"""The examples run end to end (few steps: this checks they work, not their accuracy)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / 'examples'


@pytest.mark.parametrize('name', ['hydrogen', 'cdk_gaussian', 'edge_cdk_embedding'])
def test_example_runs_and_prints_exact_vs_learned(name, tmp_path):
    out = tmp_path / f'{name}.png'
    proc = subprocess.run([sys.executable, str(EXAMPLES / f'{name}.py'), '--steps', '30',
                           '--out', str(out)], capture_output=True, text=True,
                          env={**os.environ, 'OMP_NUM_THREADS': '1'}, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert 'learned' in proc.stdout  # the learned-vs-exact table
    assert out.is_file() or 'matplotlib is not installed' in proc.stdout
