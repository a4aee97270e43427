"""Canonical dependence kernels: Gaussian (singular values rho^i) and the
edge CDK of a graph (spectrum of D^-1/2 A D^-1/2), learned from samples."""
import itertools
import math

import numpy as np
import pytest
import torch
from torch_geometric.datasets import KarateClub

from pyg_spectral.metrics import max_principal_sine
from pyg_spectral.nn import EigenfunctionMLP
from pyg_spectral.operators import CDK, hermite_functions
from pyg_spectral.solvers import SampledNeuralSVD


def test_hermite_functions_are_orthonormal():
    nodes, weights = np.polynomial.hermite_e.hermegauss(40)
    x = torch.tensor(nodes)
    w = torch.tensor(weights) / math.sqrt(2 * math.pi)
    H = hermite_functions(x, 6)
    torch.testing.assert_close(H.T @ (w[:, None] * H), torch.eye(7, dtype=torch.float64))


def test_hermite_functions_are_differentiable():
    # He_n' = n He_{n-1}: for the normalised ones, d/dx h_n = sqrt(n) h_{n-1}
    x = torch.linspace(-3, 3, 13, dtype=torch.float64, requires_grad=True)
    H = hermite_functions(x, 5)
    grads = torch.stack([torch.autograd.grad(H[:, n].sum(), x, retain_graph=True)[0]
                         for n in range(1, 6)], 1)
    expected = torch.arange(1, 6, dtype=torch.float64).sqrt() * H[:, :5].detach()
    torch.testing.assert_close(grads, expected)


def test_gaussian_spectrum_enumeration():
    torch.testing.assert_close(CDK.gaussian(0.8).exact_singular_values(5),
                               0.8 ** torch.arange(5, dtype=torch.float64))
    rho = [0.9, 0.5, -0.7]
    brute = sorted((abs(rho[0]) ** a * abs(rho[1]) ** b * abs(rho[2]) ** c
                    for a, b, c in itertools.product(range(12), repeat=3)), reverse=True)
    torch.testing.assert_close(CDK.gaussian(rho).exact_singular_values(10),
                               torch.tensor(brute[:10], dtype=torch.float64))


def test_gaussian_cdk_top5():
    torch.manual_seed(0)
    op = CDK.gaussian(0.8)
    f, g = (EigenfunctionMLP(1, 5, hidden_channels=64, num_layers=3, activation='gelu')
            for _ in range(2))
    res = SampledNeuralSVD(5, lr=3e-3, batch_size=1024, ema_decay=0.99).fit(
        op, (f, g), steps=1500, progress=False)
    exact = op.exact_singular_values(5)  # 0.8^i
    assert (res.eigenvalues - exact).abs().max() < 0.02, (res.eigenvalues, exact)
    assert res.orthogonality < 0.2
    # the learned right functions span the Hermite polynomials He_0..He_i
    # (nested: the first i + 1 span the first i + 1); the last is the least
    # accurate, its singular value being the closest to the next one
    x = torch.randn(4096, 1, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        F = res.model[0](x).double()
    H = hermite_functions(x[:, 0].double(), 4)
    sines = [max_principal_sine(F[:, :i], H[:, :i]) for i in (3, 5)]
    assert sines[0] < 0.1 and sines[1] < 0.4, sines


def test_graph_edge_cdk_matches_eigh():
    torch.manual_seed(0)
    edge_index = KarateClub()[0].edge_index
    op = CDK.graph(edge_index)
    n, k = op.num_nodes, 4
    f, g = torch.nn.Embedding(n, k), torch.nn.Embedding(n, k)
    res = SampledNeuralSVD(k, lr=3e-2, batch_size=1024, ema_decay=0.99).fit(
        op, (f, g), steps=1000, progress=False)
    S = op.graph_operator.to_dense()
    lam, U = torch.linalg.eigh(S)
    order = lam.abs().argsort(descending=True)
    torch.testing.assert_close(res.eigenvalues, lam.abs()[order[:k]], atol=0.01, rtol=0)
    # singular functions at the nodes = D^-1/2 eigenvectors of D^-1/2 A D^-1/2
    deg = S.new_zeros(n).index_add_(0, edge_index[0], S.new_ones(edge_index.size(1)))
    embedding = res.model[0].weight.detach().double() * deg.sqrt()[:, None]
    assert max_principal_sine(embedding, U[:, order[:k]]) < 0.1


def test_bad_inputs():
    with pytest.raises(ValueError, match='rho'):
        CDK.gaussian(1.0)
    with pytest.raises(ValueError, match='rho'):
        CDK.gaussian([0.5, 0.2], ndim=3)
    with pytest.raises(ValueError, match='directed'):
        CDK.graph(torch.tensor([[0, 1], [1, 2]]))
    with pytest.raises(TypeError, match='sampler'):
        CDK(3)
    with pytest.raises(ValueError, match='no ground-truth'):
        CDK(lambda n, gen: (torch.zeros(n, 1), torch.zeros(n, 1))).exact_singular_values(3)
    op = CDK.gaussian(0.5)
    model = EigenfunctionMLP(1, 3, hidden_channels=8, num_layers=1)
    with pytest.raises(ValueError, match='right_model, left_model'):
        SampledNeuralSVD(3).fit(op, model, steps=1, progress=False)
    with pytest.raises(ValueError, match=r'left model must output \[batch, k\] = \[8, 3\]'):
        op.estimates((model, EigenfunctionMLP(1, 2, 8, 1)), op.sample(8), k=3)
    bad = CDK(lambda n, gen: (torch.full((n, 1), float('inf')), torch.zeros(n, 1)))
    with pytest.raises(ValueError, match='non-finite'):
        bad.sample(4)
