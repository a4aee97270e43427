"""The public classes document their arguments as PyG's gcn_conv.py does:
an ``Args:`` entry per parameter with its type, the default of every optional
one, and a link to the paper the method comes from."""
import inspect
import re

import pytest

from pyg_spectral.nn import AmortizedEigenbasis, EigenfunctionMLP, LowRankGCNConv
from pyg_spectral.operators import GraphOperator
from pyg_spectral.operators.graph import validate_graph
from pyg_spectral.solvers import NeuralSVD
from pyg_spectral.transforms import AddNeuralSVDPE, precompute_pe

# (documented object, the callable whose signature it documents, paper linked)
DOCUMENTED = {
    'LowRankGCNConv': (LowRankGCNConv, LowRankGCNConv.__init__, True),
    'AddNeuralSVDPE': (AddNeuralSVDPE, AddNeuralSVDPE.__init__, True),
    'AddNeuralSVDPE.encode': (AddNeuralSVDPE.encode, AddNeuralSVDPE.encode, False),
    'NeuralSVD': (NeuralSVD, NeuralSVD.__init__, True),
    'AmortizedEigenbasis': (AmortizedEigenbasis, AmortizedEigenbasis.__init__, True),
    'EigenfunctionMLP': (EigenfunctionMLP, EigenfunctionMLP.__init__, True),
    'GraphOperator': (GraphOperator, GraphOperator.__init__, False),
    'GraphOperator.from_edge_index': (GraphOperator.from_edge_index,
                                      GraphOperator.from_edge_index, False),
    'validate_graph': (validate_graph, validate_graph, False),
    'precompute_pe': (precompute_pe, precompute_pe, False),
}


def args_entries(doc: str) -> dict[str, str]:
    r"""The entries of a docstring's ``Args:`` section, by parameter name."""
    section = re.search(r'\n( *)Args:\n(.*?)(?:\n\s*\n(?! )|\Z)', doc, re.S)
    assert section, 'no Args: section'
    indent = len(section.group(1)) + 4
    entries, name = {}, None
    for line in section.group(2).split('\n'):
        match = re.match(rf' {{{indent}}}(\**\w+)(.*)', line)
        if match:
            name = match.group(1)
            entries[name] = match.group(2)
        elif name is not None:
            entries[name] += ' ' + line.strip()
    return entries


@pytest.mark.parametrize('name', list(DOCUMENTED))
def test_args_have_types_and_defaults(name):
    documented, function, paper = DOCUMENTED[name]
    doc = inspect.getdoc(documented)
    entries = args_entries('\n' + doc)
    parameters = [p for p in inspect.signature(function).parameters.values()
                  if p.name not in ('self', 'cls') and p.kind is not p.VAR_KEYWORD]
    for p in parameters:
        assert p.name in entries, f'{name}: {p.name} is not documented'
        entry = entries[p.name]
        assert re.match(r' \([^)]+\):', entry), f'{name}: {p.name} has no (type):'
        if p.default is not p.empty:
            assert 'optional' in entry.split(':')[0] and '(default:' in entry, \
                f'{name}: {p.name} has a default, not written as "(default: ...)"'
    if paper:
        assert re.search(r'`"[^"]+"\s*<https://[^>]+>`_', doc), f'{name}: no paper linked'
