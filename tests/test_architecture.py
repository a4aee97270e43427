r"""The package's layering, as the import-linter contracts in pyproject.toml
state it: operators -> losses -> solvers -> nn | transforms -> bench -> cli,
the utilities (linalg, metrics, io, devices) below all, datasets apart, and
no import cycle inside any package."""
from __future__ import annotations

import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

import pyg_spectral

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_are_kept(tmp_path):
    # run as `lint-imports` does, in a child process: its report is the
    # failure message; the cache goes to tmp_path, not the repository
    result = subprocess.run(
        [sys.executable, '-c', 'from importlinter.cli import lint_imports_command; '
         'lint_imports_command()', str(ROOT / 'pyproject.toml'), '--cache-dir', str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"import contracts broken:\n{result.stdout}\n{result.stderr}"
    kept = re.search(r'Contracts: (\d+) kept, 0 broken\.', result.stdout)
    assert kept and int(kept.group(1)) >= 4, result.stdout  # every contract ran


def test_every_top_level_module_has_a_place_in_the_contracts():
    r"""A new top-level module or package that no contract names would be
    free to import anything: it must be given a layer (or a forbidden rule)."""
    tomllib = pytest.importorskip('tomllib')  # Python >= 3.11
    config = tomllib.loads((ROOT / 'pyproject.toml').read_text())['tool']['importlinter']
    named = set()
    for contract in config['contracts']:
        for layer in contract.get('layers', []):
            named |= {name.strip() for name in layer.replace('|', ':').split(':')}
        for key in ('source_modules', 'forbidden_modules'):
            named |= {module.split('.')[1] for module in contract.get(key, [])}
    modules = {info.name for info in pkgutil.iter_modules(pyg_spectral.__path__)}
    # __main__ only calls cli.main; nothing imports it
    assert modules - named == {'__main__'}


def test_license_file_matches_pyproject():
    tomllib = pytest.importorskip('tomllib')  # Python >= 3.11
    declared = tomllib.loads((ROOT / 'pyproject.toml').read_text())['project']['license']['text']
    text = (ROOT / 'LICENSE').read_text()
    assert declared == 'MIT' and text.startswith('MIT License\n')
    assert 'Copyright (c) ' in text and 'the pyg_spectral authors' in text
    assert 'Permission is hereby granted, free of charge' in text
