"""One name for each solver across the package's public functions."""
import pytest
import torch

from pyg_spectral.nn import exact_eigh
from pyg_spectral.operators import GraphOperator

from graphs import path_graph


@pytest.mark.parametrize('solver', ['exact_eigh', 'ExactEigenbasis', 'nontrivial_eigenpairs',
                                    'AddNeuralSVDPE'])
def test_arpack_is_the_one_name_of_scipys_eigsh(solver):
    from pyg_spectral.nn import ExactEigenbasis
    from pyg_spectral.operators import NullSpace
    from pyg_spectral.solvers.laplacian import nontrivial_eigenpairs
    from pyg_spectral.transforms import AddNeuralSVDPE
    op = GraphOperator.from_edge_index(path_graph(80), kind='sym_laplacian', dtype=torch.float64)
    null = NullSpace.of_operator(op)  # next to it ARPACK is seeded: a deterministic answer
    build = {'exact_eigh': lambda m: exact_eigh(op, 3, largest=False, method=m, null=null)[0],
             'ExactEigenbasis': lambda m: ExactEigenbasis(80, 3, largest=False, method=m)(
                 op, null)[1],
             'nontrivial_eigenpairs': lambda m: nontrivial_eigenpairs(op, null, 3, method=m)[1],
             'AddNeuralSVDPE': lambda m: AddNeuralSVDPE(3, method=m, seed=0).encode(
                 path_graph(80))[1][0].double()}[solver]
    # the path's normalised Laplacian after 0: 1 - cos(pi j / 79), j = 1, 2, 3
    expected = 1 - torch.cos(torch.pi * torch.arange(1, 4, dtype=torch.float64) / 79)
    assert torch.allclose(build('arpack'), expected, atol=1e-6)
    with pytest.raises(ValueError, match="SciPy's eigsh, ARPACK, is method='arpack'"):
        build('eigsh')
