"""Hamiltonians: exact autograd Laplacian, operator applied to closed-form
eigenfunctions, learned spectra of the harmonic oscillator and hydrogen."""
import math

import pytest
import torch

from pyg_spectral.nn import EigenfunctionMLP
from pyg_spectral.operators import (GaussianSampling, Hamiltonian, HarmonicPotential,
                                    RadialSampling, hermite_functions, function_laplacian)
from pyg_spectral.solvers import SampledNeuralSVD


def finite_difference_laplacian(fn, x, eps=1e-4):
    eye = torch.eye(x.size(1), dtype=x.dtype)
    return sum((fn(x + eps * e) - 2 * fn(x) + fn(x - eps * e)) / eps ** 2 for e in eye)


@pytest.mark.parametrize('disjoint', [False, True])
def test_laplacian_equals_finite_differences(disjoint):
    torch.manual_seed(0)
    model = EigenfunctionMLP(3, 4, hidden_channels=16, num_layers=2, fourier_features=8,
                             disjoint=disjoint).double()
    x = torch.randn(7, 3, dtype=torch.float64)
    with torch.no_grad():
        exact = function_laplacian(model, x)
        fd = finite_difference_laplacian(model, x)
    assert exact.shape == (7, 4)
    # central differences: O(eps^2) truncation, O(1e-16 / eps^2) rounding
    torch.testing.assert_close(exact, fd, atol=1e-6 * exact.abs().max().item(), rtol=0)


def test_hutchinson_is_unbiased():
    torch.manual_seed(0)
    model = EigenfunctionMLP(4, 2, hidden_channels=16, num_layers=2).double()
    x = torch.randn(3, 4, dtype=torch.float64)
    probes = (2 * torch.randint(0, 2, (3, 4000, 4)) - 1).double()
    with torch.no_grad():
        exact, estimate = function_laplacian(model, x), function_laplacian(model, x, probes)
    # Rademacher probes: the error of one probe is bounded by the off-diagonal Hessian
    assert (estimate - exact).abs().max() < 0.05 * exact.abs().max() + 1e-3
    # the estimate is the probes' mean of v^T H v, Hessians by reverse-mode autograd
    H = torch.stack([torch.stack([torch.autograd.functional.hessian(
        lambda y, l=l: model(y[None])[0, l], row) for l in range(2)]) for row in x])
    torch.testing.assert_close(estimate, torch.einsum('bpd,blde,bpe->bl', probes, H, probes)
                               / probes.size(1), atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(exact, H.diagonal(dim1=-2, dim2=-1).sum(-1), atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize('sampling', [RadialSampling(2, 3.0), RadialSampling(3, 2.0),
                                      GaussianSampling(2, 2.0)])
def test_importance_weights_integrate_volume(sampling):
    # E_rho[1(|x| < 2) / rho(x)] = volume of the ball of radius 2
    x = sampling.sample(100_000, torch.Generator().manual_seed(0), dtype=torch.float64)
    estimate = (torch.exp(-sampling.log_density(x)) * (x.norm(dim=1) < 2)).mean()
    volume = math.pi * 4 if sampling.ndim == 2 else 4 / 3 * math.pi * 8
    assert abs(estimate / volume - 1) < 0.02


class OscillatorStates(torch.nn.Module):
    r"""The four lowest 1D oscillator eigenfunctions
    :math:`\mathrm{He}_n(\sqrt2 x) e^{-x^2/2}` (network = :math:`\psi`)."""

    def forward(self, x):
        return hermite_functions(math.sqrt(2) * x[:, 0], 3) * torch.exp(-x ** 2 / 2)


def test_operator_on_exact_eigenfunctions():
    op = Hamiltonian.harmonic_oscillator(1, envelope=False, dtype=torch.float64)
    x = op.sample(64, torch.Generator().manual_seed(0))[0]
    model = OscillatorStates()
    Tf = op.apply(model, x)
    # T psi_n = (c - E_n) psi_n pointwise, E_n = 2n + 1
    mu = op.shift - op.exact_eigenvalues(4)
    torch.testing.assert_close(Tf, model(x) * mu, atol=1e-8, rtol=1e-8)
    # Monte-Carlo Rayleigh-Ritz of the exact functions: the exact energies (up to
    # the symmetrisation of the sampled [k, k] matrix)
    res = SampledNeuralSVD(4).evaluate(op, model, num_samples=2 ** 15)
    torch.testing.assert_close(res.eigenvalues, op.exact_eigenvalues(4), atol=0, rtol=1e-4)
    assert res.orthogonality < 0.03


def test_hydrogen_exact_states_pointwise():
    r""":math:`e^{-r}` (E = -1) and :math:`x e^{-r/3}` (E = -1/9) solve
    :math:`-\nabla^2 \psi - \psi/r = E \psi` in 2D."""
    class States(torch.nn.Module):
        def forward(self, x):
            r = x.norm(dim=1)
            return torch.stack([torch.exp(-r), x[:, 0] * torch.exp(-r / 3)], dim=1)

    for envelope in (False, True):
        op = Hamiltonian.hydrogen(2, envelope=envelope, dtype=torch.float64)
        x = op.sample(32, torch.Generator().manual_seed(1))[0]
        model = lambda y, env_fn=op.sampling.log_envelope, e=envelope: \
            States()(y) / (torch.exp(env_fn(y)).unsqueeze(1) if e else 1)
        mu = op.scale * torch.tensor([1.0, 1 / 9], dtype=torch.float64)
        torch.testing.assert_close(op.apply(model, x), model(x) * mu, atol=1e-6, rtol=1e-6)
        # importance weights e^{2 env} / rho in closed form: rho = e^{-r/s} / (2 pi s r)
        r, s = x.norm(dim=1), op.sampling.scale
        expected = 2 * math.pi * s * r * (1 if envelope else torch.exp(r / s))
        torch.testing.assert_close(op.weights(x), expected, atol=0, rtol=1e-12)


def test_exact_spectra():
    energies = Hamiltonian.hydrogen(2).exact_eigenvalues(16)
    shells = [1, 3, 5, 7]
    expected = torch.cat([torch.full((m,), -1 / (4 * (n - 0.5) ** 2), dtype=torch.float64)
                          for n, m in zip(range(1, 5), shells)])
    torch.testing.assert_close(energies, expected)
    torch.testing.assert_close(Hamiltonian.harmonic_oscillator(2).exact_eigenvalues(6),
                               torch.tensor([2., 4, 4, 6, 6, 6], dtype=torch.float64))
    torch.testing.assert_close(Hamiltonian.hydrogen(3).exact_eigenvalues(5),
                               torch.tensor([-0.25] + [-1 / 16] * 4, dtype=torch.float64))
    with pytest.raises(ValueError, match='closed-form'):
        Hamiltonian.hydrogen(2, softening=0.1).exact_eigenvalues(4)


def fit_oscillator(ndim, steps, shift):
    torch.manual_seed(0)
    op = Hamiltonian.harmonic_oscillator(ndim, shift=shift)
    model = EigenfunctionMLP(ndim, 4, hidden_channels=64, num_layers=2, fourier_features=64,
                             fourier_scale=0.2)
    solver = SampledNeuralSVD(4, lr=5e-3, batch_size=256, ema_decay=0.99)
    res = solver.fit(op, model, steps=steps, progress=False, eval_samples=2 ** 14)
    return res, op.exact_eigenvalues(4)


# (at these steps the largest errors are 0.7 % and 0.4 %, the max |cos| 0.09 and 0.04)
@pytest.mark.parametrize('ndim,steps,shift', [(1, 400, 8.5), (2, 300, 7.0)])
def test_harmonic_oscillator_lowest_four(ndim, steps, shift):
    res, exact = fit_oscillator(ndim, steps, shift)
    rel = (res.eigenvalues - exact).abs() / exact
    assert rel.max() < 0.02, (res.eigenvalues, exact)
    assert res.orthogonality < 0.2
    assert len(res.loss_history) == steps


@pytest.mark.slow
def test_hydrogen_2d_lowest_four():
    torch.manual_seed(0)
    op = Hamiltonian.hydrogen(2, sampling=RadialSampling(2, 3.0))
    # Fourier scale 0.05: at 0.1 (the 'short' benchmark's) 1000 steps left
    # seeds 1 and 2 at 27 % error; at 0.05, 600 steps brought seeds 0-9 to
    # <= 2.8 % but seed 5 (8.6 %), which 750 steps brought to 2.4 % (seeds
    # 10 and 11: 2.5 and 2.0 %)
    model = EigenfunctionMLP(2, 4, hidden_channels=64, num_layers=2, fourier_features=64,
                             fourier_scale=0.05, disjoint=True)
    solver = SampledNeuralSVD(4, lr=5e-3, batch_size=256, ema_decay=0.99)
    res = solver.fit(op, model, steps=750, progress=False, eval_samples=2 ** 14)
    exact = op.exact_eigenvalues(4)  # -1, -1/9 (x3)
    rel = (res.eigenvalues - exact).abs() / exact.abs()
    assert rel.max() < 0.05, (res.eigenvalues, exact)


def test_bad_inputs():
    class Potential2D(HarmonicPotential):
        ndim = 2

    with pytest.raises(ValueError, match='ndim'):
        Hamiltonian(Potential2D(), ndim=3)
    with pytest.raises(ValueError, match='ndim'):
        Hamiltonian(HarmonicPotential(), ndim=2, sampling=GaussianSampling(3))
    with pytest.raises(ValueError, match='ndim >= 2'):
        Hamiltonian.hydrogen(ndim=1)
    with pytest.raises(ValueError, match='ndim'):
        Hamiltonian.harmonic_oscillator(ndim=0)
    with pytest.raises(TypeError, match='potential'):
        Hamiltonian(3.0, ndim=1)
    op = Hamiltonian.harmonic_oscillator(2)
    model = EigenfunctionMLP(2, 3, hidden_channels=8, num_layers=1)
    with pytest.raises(ValueError, match='non-finite'):
        op.estimates(model, (torch.tensor([[0.0, float('nan')], [1.0, 2.0]]),), k=3)
    with pytest.raises(ValueError, match=r'\[batch, 2\]'):
        op.estimates(model, (torch.zeros(4, 3),), k=3)
    with pytest.raises(ValueError, match=r'output \[batch, k\] = \[4, 5\]'):
        op.estimates(model, (torch.zeros(4, 2),), k=5)
    with pytest.raises(ValueError, match='potential must map'):
        bad = Hamiltonian(lambda x: x, ndim=2)
        bad.apply(model, torch.zeros(4, 2))
    with pytest.raises(ValueError, match='output'):
        SampledNeuralSVD(4).fit(op, model, steps=1, progress=False)
    with pytest.raises(TypeError, match='SampledOperator'):
        SampledNeuralSVD(3).fit(object(), model, steps=1, progress=False)
