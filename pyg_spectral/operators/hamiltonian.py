r"""Schrödinger operators :math:`H = -\nabla^2 + V(x)` on functions
:math:`f: \mathbb{R}^d \to \mathbb{R}^L` given by a network, with the
Laplacian taken exactly by autograd."""
from __future__ import annotations

import copy
import math
from typing import Callable

import torch
from torch import Tensor, nn
from torch.func import jvp, vmap

from .sampling import (GaussianSampling, RadialSampling, SampledEstimates, SampledOperator,
                       Samples, check_output, check_samples, symmetric_cross)


def function_laplacian(fn: Callable[[Tensor], Tensor], x: Tensor,
                       probes: Tensor | None = None) -> Tensor:
    r"""The Laplacian :math:`\nabla^2 f_l(x_i)` of every output of a
    row-wise function :obj:`fn` (:obj:`[B, d] -> [B, L]`), as :obj:`[B, L]`.

    Each term :math:`v^\top \nabla^2 f\, v` is a second directional
    derivative, taken by forward-over-forward mode (:func:`torch.func.jvp`
    twice, vectorised over directions with :func:`torch.func.vmap`): no
    Hessian is stored and no reverse pass is needed. Because row :obj:`i` of
    the output depends on row :obj:`i` of the input only, one batched
    :obj:`jvp` with a different direction per row gives all rows at once.

    Args:
        fn: maps :obj:`[B, d]` to :obj:`[B, L]`, each row depending on its
            own input row only (an MLP; not batch normalisation).
        x: :obj:`[B, d]` points.
        probes: :obj:`None` for the exact trace (the :obj:`d` coordinate
            directions), else :obj:`[B, P, d]` random probes with
            :math:`E[v v^\top] = I` (e.g. Rademacher): Hutchinson's unbiased
            estimate :math:`\frac1P \sum_p v_p^\top \nabla^2 f\, v_p`, whose
            cost does not grow with :obj:`d`.
    """
    B, d = x.shape
    if probes is None:
        probes = torch.eye(d, dtype=x.dtype, device=x.device).expand(B, d, d)
        scale = 1.0
    else:
        if probes.dim() != 3 or probes.size(0) != B or probes.size(2) != d:
            raise ValueError(f"probes must have shape [{B}, P, {d}], got {tuple(probes.shape)}")
        scale = 1.0 / probes.size(1)

    def second_derivative(v: Tensor) -> Tensor:
        def directional(y: Tensor) -> Tensor:
            return jvp(fn, (y,), (v,))[1]
        return jvp(directional, (x,), (v,))[1]

    per_probe = vmap(second_derivative, in_dims=1)(probes)  # [P, B, L]
    return per_probe.sum(0) * scale


class CoulombPotential(nn.Module):
    r""":math:`V(x) = -Z / \sqrt{|x|^2 + a^2}`: the Coulomb attraction of a
    nucleus of charge :math:`Z`, softened at the core by :math:`a`
    (:math:`a = 0`: exact)."""

    def __init__(self, charge: float = 1.0, softening: float = 0.0) -> None:
        super().__init__()
        if softening < 0:
            raise ValueError(f"softening must be non-negative, got {softening!r}")
        self.charge, self.softening = float(charge), float(softening)

    def forward(self, x: Tensor) -> Tensor:
        r2 = x.pow(2).sum(-1)
        if self.softening > 0:
            return -self.charge * torch.rsqrt(r2 + self.softening ** 2)
        return -self.charge * torch.rsqrt(r2)

    def extra_repr(self) -> str:
        return f'charge={self.charge:g}, softening={self.softening:g}'


class HarmonicPotential(nn.Module):
    r""":math:`V(x) = \omega^2 |x|^2`, whose Hamiltonian :math:`-\nabla^2 + V`
    has the energies :math:`\omega (2 |n| + d)` for :math:`n \in \mathbb{N}^d`."""

    def __init__(self, omega: float = 1.0) -> None:
        super().__init__()
        if not omega > 0:
            raise ValueError(f"omega must be positive, got {omega!r}")
        self.omega = float(omega)

    def forward(self, x: Tensor) -> Tensor:
        return self.omega ** 2 * x.pow(2).sum(-1)

    def extra_repr(self) -> str:
        return f'omega={self.omega:g}'


class Hamiltonian(SampledOperator):
    r"""The operator :math:`T = c - s H` with :math:`H = -\nabla^2 + V(x)` on
    :math:`L^2(\mathbb{R}^d)`, acting on a network :math:`f: \mathbb{R}^d \to
    \mathbb{R}^L` whose :math:`L` outputs are the learned functions.

    NestedLoRA learns the top positive eigenvalues of :math:`T`, i.e. the
    lowest energies :math:`E = (c - \mu) / s` of :math:`H` (:math:`s > 0`);
    choose :math:`c` so that the wanted states have :math:`\mu > 0` and
    the rest as few positive ones as possible.

    Inner products are Monte-Carlo estimates over :obj:`sampling` with
    importance weights (:math:`1/\rho(x)` on :math:`\psi`, see
    :obj:`envelope`). :math:`T f` is computed without
    autograd (the Laplacian by :func:`function_laplacian`, forward mode) and
    :func:`~pyg_spectral.operators.symmetric_cross` restores its exact
    gradient :math:`2 T f` from self-adjointness, so training never takes a
    third derivative.

    Args:
        potential: :math:`V`, maps :obj:`[B, d]` to :obj:`[B]`. A potential
            with an :obj:`ndim` attribute is checked against :obj:`ndim`.
        ndim: dimension :math:`d`.
        scale: :math:`s > 0`.
        shift: :math:`c`.
        sampling: a density with :obj:`sample(n, generator, dtype)` and
            :obj:`log_density(x)` (default :class:`GaussianSampling` with
            :math:`\sigma = 1`).
        hutchinson_probes: :obj:`None` for the exact Laplacian (cost
            :math:`\propto d`), else the number of Rademacher probes of
            Hutchinson's estimator (for large :obj:`d`).
        envelope: the network represents :math:`\phi = \psi / e^{\mathrm{env}(x)}`
            with the sampling's :obj:`log_envelope` (:math:`\sqrt{\rho}`
            without normalisation, as in the NeuralSVD paper), so the learned
            :math:`\psi` decays like the samples without the network having
            to learn it and the Monte-Carlo weights of :math:`\phi` stay
            bounded; :obj:`False`: the network is :math:`\psi` itself.
        dtype: dtype of the samples.
    """

    def __init__(self, potential: Callable[[Tensor], Tensor], ndim: int, scale: float = 1.0,
                 shift: float = 0.0, sampling: nn.Module | None = None,
                 hutchinson_probes: int | None = None, envelope: bool = True,
                 dtype: torch.dtype = torch.float32) -> None:
        if not isinstance(ndim, int) or ndim <= 0:
            raise ValueError(f"ndim must be a positive integer, got {ndim!r}")
        if not callable(potential):
            raise TypeError(f"potential must be callable, got {type(potential).__name__}")
        pot_ndim = getattr(potential, 'ndim', None)
        if pot_ndim is not None and pot_ndim != ndim:
            raise ValueError(f"potential is defined on R^{pot_ndim} but ndim={ndim}")
        if not scale > 0:
            raise ValueError(f"scale must be positive, got {scale!r}")
        if hutchinson_probes is not None and (not isinstance(hutchinson_probes, int)
                                              or hutchinson_probes <= 0):
            raise ValueError(f"hutchinson_probes must be a positive integer or None, "
                             f"got {hutchinson_probes!r}")
        sampling = GaussianSampling(ndim) if sampling is None else sampling
        if getattr(sampling, 'ndim', ndim) != ndim:
            raise ValueError(f"sampling is on R^{sampling.ndim} but ndim={ndim}")
        self.potential, self.ndim = potential, ndim
        self.scale, self.shift = float(scale), float(shift)
        if envelope and not hasattr(sampling, 'log_envelope'):
            raise ValueError("envelope=True needs a sampling with a log_envelope(x) method")
        self.sampling, self.hutchinson_probes, self.envelope = sampling, hutchinson_probes, envelope
        self._dtype, self._device = dtype, torch.device('cpu')
        self.exact_energies: Callable[[int], Tensor] | None = None

    # ------------------------------------------------------------ presets
    @classmethod
    def hydrogen(cls, ndim: int = 2, softening: float = 0.0, scale: float = 100.0,
                 shift: float = 0.0, sampling: nn.Module | None = None,
                 **kwargs) -> 'Hamiltonian':
        r"""The hydrogen-like atom :math:`H = -\nabla^2 - 1/|x|` (optionally
        softened, :math:`-1/\sqrt{|x|^2 + a^2}`), learned as
        :math:`T = 100 (-H)` so that the bound states are the top positive
        eigenvalues and the continuum maps to :math:`\le 0`.

        In :math:`d` dimensions the bound energies are
        :math:`E_n = -1 / (4 (n + (d-3)/2)^2)`, :math:`n = 1, 2, \dots`, with
        multiplicity :math:`2n - 1` in 2D and :math:`n^2` in 3D
        (:meth:`exact_eigenvalues`, for :obj:`softening = 0`). The default
        sampling is :class:`RadialSampling` with scale 4 (enough for the
        :math:`n \le 2` shells, whose slowest decay is :math:`e^{-r/3}`; use a
        larger one for more states, e.g. 8 for :math:`n \le 4`).
        """
        if ndim < 2:
            raise ValueError(f"hydrogen needs ndim >= 2 (1/|x| is not integrable in 1D), "
                             f"got {ndim!r}")
        sampling = RadialSampling(ndim, 4.0) if sampling is None else sampling
        op = cls(CoulombPotential(1.0, softening), ndim, scale, shift, sampling, **kwargs)
        if softening == 0 and ndim in (2, 3):
            op.exact_energies = lambda k: _hydrogen_energies(ndim, k)
        return op

    @classmethod
    def harmonic_oscillator(cls, ndim: int = 1, omega: float = 1.0, shift: float | None = None,
                            sampling: nn.Module | None = None, **kwargs) -> 'Hamiltonian':
        r"""The harmonic oscillator :math:`H = -\nabla^2 + \omega^2 |x|^2`,
        energies :math:`\omega(2|n| + d)`, learned as :math:`T = c - H`.

        The default :math:`c` is the fifth energy level
        :math:`\omega(d + 8)`: the states of the four lowest levels are
        positive. The default sampling is Gaussian with
        :math:`\sigma = 1/\sqrt{\omega}`, whose envelope
        :math:`e^{-\omega|x|^2/4}` decays more slowly than the ground state
        :math:`e^{-\omega|x|^2/2}`; with :math:`\sigma = 1/\sqrt{2\omega}`
        (the ground state's own density) the network is free to grow in the
        tails, where no sample sees it, and fits collapse.
        """
        if not isinstance(ndim, int) or ndim <= 0:
            raise ValueError(f"ndim must be a positive integer, got {ndim!r}")
        shift = omega * (ndim + 8) if shift is None else shift
        sampling = GaussianSampling(ndim, 1 / math.sqrt(omega)) if sampling is None else sampling
        op = cls(HarmonicPotential(omega), ndim, 1.0, shift, sampling, **kwargs)
        op.exact_energies = lambda k: _oscillator_energies(ndim, omega, k)
        return op

    def exact_eigenvalues(self, k: int) -> Tensor:
        r"""The :obj:`k` lowest energies of :math:`H`, increasing (float64),
        for presets with a closed form."""
        if self.exact_energies is None:
            raise ValueError("no closed-form spectrum for this Hamiltonian")
        return self.exact_energies(k)

    # ------------------------------------------------------------ protocol
    def to(self, device=None, dtype=None) -> 'Hamiltonian':
        r"""A copy whose samples are drawn with :obj:`dtype` and moved to
        :obj:`device` (the potential is moved too when it is a module)."""
        out = super().to(device, dtype)
        if isinstance(self.potential, nn.Module):
            out.potential = copy.deepcopy(self.potential).to(out._device)
        return out

    def original_eigenvalues(self, mu: Tensor) -> Tensor:
        return (self.shift - mu) / self.scale

    def sample(self, num_samples: int, generator: torch.Generator | None = None) -> Samples:
        x = self.sampling.sample(num_samples, generator, dtype=self._dtype)
        return (x.to(self._device),)

    def _log_envelope(self, x: Tensor) -> Tensor:
        return self.sampling.log_envelope(x) if self.envelope else torch.zeros_like(x[:, 0])

    def apply(self, model: nn.Module, x: Tensor,
              generator: torch.Generator | None = None) -> Tensor:
        r""":math:`(T \psi) / e^{\mathrm{env}}` at :obj:`x` (:obj:`[B, d]`)
        as :obj:`[B, L]`, where :math:`\psi = e^{\mathrm{env}}` :obj:`model`
        (see :obj:`envelope`), without a graph to the model's parameters."""
        check_samples(x, self.ndim)
        probes = None
        if self.hutchinson_probes is not None:
            signs = torch.randint(0, 2, (x.size(0), self.hutchinson_probes, self.ndim),
                                  generator=generator).to(device=x.device, dtype=x.dtype)
            probes = 2 * signs - 1

        def psi(y: Tensor) -> Tensor:
            return self._log_envelope(y).exp().unsqueeze(1) * model(y)

        with torch.no_grad():
            lap = function_laplacian(psi, x, probes)
            env = self._log_envelope(x).exp().unsqueeze(1)
            f = model(x)
            V = self.potential(x)
            if V.shape != (x.size(0),):
                raise ValueError(f"potential must map [B, {self.ndim}] to [B], "
                                 f"got {tuple(V.shape)}")
            # T psi / env = (c - s V) phi + s (lap psi) / env
            return (self.shift - self.scale * V.unsqueeze(1)) * f + self.scale * lap / env

    def weights(self, x: Tensor) -> Tensor:
        r""":obj:`[B]` importance weights :math:`e^{2\,\mathrm{env}(x)}/\rho(x)`
        of the network's values."""
        return torch.exp(2 * self._log_envelope(x) - self.sampling.log_density(x))

    def estimates(self, model: nn.Module, samples: Samples, k: int,
                  generator: torch.Generator | None = None) -> SampledEstimates:
        x, = samples
        check_samples(x, self.ndim)
        f = model(x)
        check_output(f, x.size(0), k)
        w = self.weights(x)
        return SampledEstimates(f, None, symmetric_cross(f, self.apply(model, x, generator), w), w)

    def moments(self, model: nn.Module, samples: Samples, k: int,
                generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
        x, = samples
        check_samples(x, self.ndim)
        Tf = self.apply(model, x, generator)
        with torch.no_grad():
            f = model(x)
            check_output(f, x.size(0), k)
            fw = f * self.weights(x).unsqueeze(1)
            gram = fw.transpose(0, 1) @ f / x.size(0)
            cross = fw.transpose(0, 1) @ Tf / x.size(0)
        return gram, gram, (cross + cross.transpose(0, 1)) / 2

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(ndim={self.ndim}, potential={self.potential!r}, '
                f'T = {self.shift:g} - {self.scale:g} H, sampling={self.sampling!r})')


def _hydrogen_energies(ndim: int, k: int) -> Tensor:
    energies = []
    n = 1
    while len(energies) < k:
        mult = 2 * n - 1 if ndim == 2 else n * n
        energies += [-1.0 / (4 * (n + (ndim - 3) / 2) ** 2)] * mult
        n += 1
    return torch.tensor(energies[:k], dtype=torch.float64)


def _oscillator_energies(ndim: int, omega: float, k: int) -> Tensor:
    energies = []
    level = 0
    while len(energies) < k:
        # number of n in N^d with |n| = level
        energies += [omega * (2 * level + ndim)] * math.comb(level + ndim - 1, ndim - 1)
        level += 1
    return torch.tensor(energies[:k], dtype=torch.float64)
