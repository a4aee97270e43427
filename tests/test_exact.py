import torch

from pyg_spectral import GraphOperator
from pyg_spectral.metrics import max_principal_sine
from pyg_spectral.solvers.exact import exact_eigh

from graphs import path_graph


def test_arpack_at_the_component_end_misses_no_eigenvalue():
    # plain Lanczos (SciPy's eigsh, 'SA') returned four converged pairs
    # without the zero eigenvalue in 6 of 20 calls on this path
    n, k = 80, 4
    op = GraphOperator.from_edge_index(path_graph(n), num_nodes=n, kind='laplacian')
    M = op.matrix.to_dense().double()
    values, vectors = torch.linalg.eigh(M)
    for _ in range(10):
        vals, vecs = exact_eigh(op, k, largest=False, method='arpack')
        assert (vals.double() - values[:k]).abs().max() < 1e-6
        assert max_principal_sine(vecs.double(), vectors[:, :k]) < 1e-4


def test_arpack_with_more_components_than_k_returns_the_component_space():
    # three paths: eigenvalue 1 of the GCN matrix three times, k = 2 of them
    ei = torch.cat([path_graph(30), path_graph(20) + 30, path_graph(10) + 50], 1)
    op = GraphOperator.from_edge_index(ei, num_nodes=60, kind='gcn')
    M = op.matrix.to_dense().double()
    values, vectors = torch.linalg.eigh(M)
    top = vectors[:, values > 1 - 1e-5]  # a float32 matrix
    assert top.size(1) == 3
    vals, vecs = exact_eigh(op, 2, largest=True, method='arpack')
    assert torch.allclose(vals.double(), torch.ones(2, dtype=torch.float64), atol=1e-6)
    V = vecs.double()
    assert (V.T @ V - torch.eye(2, dtype=torch.float64)).abs().max() < 1e-5
    assert (top @ (top.T @ V) - V).abs().max() < 1e-5  # inside the eigenvalue-1 space
