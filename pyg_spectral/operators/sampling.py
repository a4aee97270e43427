"""Operators on function spaces known only through samples, their own small
protocol (:class:`SampledOperator`), the Monte-Carlo inner products it
estimates, and the sampling densities of those estimates."""
from __future__ import annotations

import copy
import math
from typing import NamedTuple

import torch
from torch import Tensor, nn

Samples = tuple[Tensor, ...]


def check_samples(x: Tensor, ndim: int, name: str = 'x') -> None:
    r"""Raises if :obj:`x` is not a finite :obj:`[B, ndim]` floating tensor."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 2 or x.size(1) != ndim:
        raise ValueError(f"{name} must have shape [batch, {ndim}] (points of R^{ndim}), "
                         f"got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {x.dtype}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains non-finite values (nan or inf)")


def check_output(out: Tensor, batch: int, k: int, name: str = 'model') -> None:
    if not isinstance(out, Tensor) or out.dim() != 2 or out.shape != (batch, k):
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(f"{name} must output [batch, k] = [{batch}, {k}] (one column per "
                         f"component), got {shape}")


def weighted_mean(values: Tensor, weight: Tensor | None) -> Tensor:
    r"""Mean over dim 0 of :obj:`values` with optional sample weights."""
    if weight is None:
        return values.mean(0)
    return (weight.view(-1, *([1] * (values.dim() - 1))) * values).mean(0)


def symmetric_cross(f: Tensor, Tf: Tensor, weight: Tensor | None = None) -> Tensor:
    r""":math:`\langle f_l, T f_l\rangle` for a self-adjoint T with :obj:`Tf`
    computed without autograd: the value is exact and the gradient with
    respect to :obj:`f` is :math:`2 T f` (what autograd through T gives),
    without differentiating through T."""
    Tf = Tf.detach()
    first = weighted_mean(f * Tf, weight)
    return 2 * first - first.detach()


class SampledEstimates(NamedTuple):
    r"""What a :class:`SampledOperator` estimates from one batch of samples
    for a model of :obj:`k` functions.

    Attributes:
        f: :obj:`[B, k]` values of the right functions at the samples.
        g: :obj:`[B', k]` values of the left functions, or :obj:`None` for a
            self-adjoint operator (:obj:`g = f`).
        cross: :obj:`[k]` estimates of :math:`\langle g_l, T f_l \rangle`
            whose gradient is the true one (the operator decides how; a
            self-adjoint one is applied without autograd, and
            :func:`symmetric_cross` restores the gradient).
        weight_f, weight_g: :obj:`[B]` importance weights of the samples
            (:obj:`None` for uniform), so that
            :math:`\langle a, b \rangle \approx \frac1B \sum_i w_i a_i b_i`.
    """
    f: Tensor
    g: Tensor | None
    cross: Tensor
    weight_f: Tensor | None = None
    weight_g: Tensor | None = None


class SampledOperator:
    r"""An operator on a function space whose inner products are
    Monte-Carlo estimates (a Hamiltonian, a dependence kernel): it has no
    shape and no product with a block of vectors, so it is not a
    :class:`~pyg_spectral.operators.LinearOperator`. Subclasses draw
    batches with :meth:`sample`, turn a model's values on a batch into
    :class:`SampledEstimates` with :meth:`estimates`, and give the
    :obj:`[k, k]` moment matrices of :meth:`moments` from which the solvers
    read eigenvalues by Rayleigh-Ritz.

    :attr:`num_models` is 1 for a self-adjoint operator (EVD form, one
    network) and 2 for the SVD form (right and left networks).
    """
    num_models: int = 1
    is_symmetric: bool = True
    # where samples are drawn and what precision; set by subclasses, moved by to()
    _device: torch.device = torch.device('cpu')
    _dtype: torch.dtype = torch.float32

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def dtype(self) -> torch.dtype:
        return self._dtype

    def sample(self, num_samples: int, generator: torch.Generator | None = None) -> Samples:
        raise NotImplementedError

    def estimates(self, model: nn.Module | tuple[nn.Module, nn.Module], samples: Samples,
                  k: int, generator: torch.Generator | None = None) -> SampledEstimates:
        r"""The model's values on :obj:`samples` and the estimate of each
        :math:`\langle g_l, T f_l \rangle`, with its gradient."""
        raise NotImplementedError

    def moments(self, model: nn.Module | tuple[nn.Module, nn.Module], samples: Samples, k: int,
                generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
        r"""Estimates of :math:`(\langle f_l, f_{l'}\rangle, \langle g_l, g_{l'}\rangle,
        \langle g_l, T f_{l'}\rangle)` as three :obj:`[k, k]` matrices
        (:obj:`g = f` for the EVD form), without autograd."""
        raise NotImplementedError

    def original_eigenvalues(self, mu: Tensor) -> Tensor:
        r"""Maps eigenvalues of the learned operator back to the problem's
        (e.g. energies); the identity unless the operator was shifted."""
        return mu

    def to(self, device=None, dtype=None) -> 'SampledOperator':
        r"""A shallow copy whose samples are drawn with :obj:`dtype` on
        :obj:`device`."""
        out = copy.copy(self)
        out._device = torch.device(device) if device is not None else self._device
        out._dtype = dtype or self._dtype
        return out


class GaussianSampling(nn.Module):
    r"""Samples :math:`x \sim \mathcal{N}(0, \sigma^2 I_d)` with importance
    weights :math:`1 / \rho(x)`, so that
    :math:`\int a b \, dx \approx \frac1B \sum_i a(x_i) b(x_i) / \rho(x_i)`.

    Args:
        ndim: dimension :math:`d`.
        std: :math:`\sigma`; should cover the support of the wanted
            functions (e.g. 16 for the 16 lowest states of 2D hydrogen).
    """

    def __init__(self, ndim: int, std: float = 1.0) -> None:
        super().__init__()
        if not isinstance(ndim, int) or ndim <= 0:
            raise ValueError(f"ndim must be a positive integer, got {ndim!r}")
        if not std > 0:
            raise ValueError(f"std must be positive, got {std!r}")
        self.ndim, self.std = ndim, float(std)

    def sample(self, num_samples: int, generator: torch.Generator | None = None,
               dtype=torch.float32) -> Tensor:
        return self.std * torch.randn(num_samples, self.ndim, generator=generator, dtype=dtype)

    def log_density(self, x: Tensor) -> Tensor:
        r""":obj:`[B]` log-density of :obj:`x` of shape :obj:`[B, d]`."""
        return (-0.5 * (x / self.std).pow(2).sum(-1)
                - self.ndim * math.log(self.std * math.sqrt(2 * math.pi)))

    def log_envelope(self, x: Tensor) -> Tensor:
        r""":math:`-|x|^2 / (4\sigma^2)`: :math:`\sqrt{\rho}` up to a constant,
        so that a function :math:`\psi = e^{\mathrm{env}} \phi` has
        importance weights :math:`e^{2\,\mathrm{env}}/\rho` that are constant
        in :math:`\phi`."""
        return -(x / self.std).pow(2).sum(-1) / 4

    def extra_repr(self) -> str:
        return f'ndim={self.ndim}, std={self.std:g}'


class RadialSampling(nn.Module):
    r"""Samples a uniform direction and a radius :math:`r \sim \mathrm{Exp}(s)`,
    i.e. the density :math:`\rho(x) = e^{-r/s} / (s\, S_{d-1} r^{d-1})` with
    :math:`S_{d-1}` the area of the unit sphere.

    Its :math:`r^{1-d}` peak at the origin cancels a Coulomb singularity:
    with Gaussian samples the estimate of :math:`\langle f, f/r \rangle` has
    infinite variance in 2D (the integrand :math:`1/r^2` of its second
    moment is not integrable there), with these it is bounded. Its
    exponential tail matches bound states that decay like :math:`e^{-\kappa r}`
    (use :math:`s \ge 1 / (2\kappa)` for the slowest one).
    """

    def __init__(self, ndim: int, scale: float = 1.0) -> None:
        super().__init__()
        if not isinstance(ndim, int) or ndim <= 0:
            raise ValueError(f"ndim must be a positive integer, got {ndim!r}")
        if not scale > 0:
            raise ValueError(f"scale must be positive, got {scale!r}")
        self.ndim, self.scale = ndim, float(scale)
        # log of the area of the unit sphere S^{d-1}
        self.log_sphere = math.log(2) + (ndim / 2) * math.log(math.pi) - math.lgamma(ndim / 2)

    def sample(self, num_samples: int, generator: torch.Generator | None = None,
               dtype=torch.float32) -> Tensor:
        direction = torch.randn(num_samples, self.ndim, generator=generator, dtype=dtype)
        direction = direction / direction.norm(dim=1, keepdim=True).clamp_min(1e-30)
        # float64 uniforms: u = 0 (radius 0, where a Coulomb potential is
        # infinite) would come up every ~1e7 float32 samples; the clamp at
        # 1e-6 s removes the last 2^-53 chance at a negligible bias
        u = torch.rand(num_samples, 1, generator=generator, dtype=torch.float64)
        radius = (-self.scale * torch.log1p(-u)).clamp_min(1e-6 * self.scale)
        return radius.to(dtype) * direction

    def log_density(self, x: Tensor) -> Tensor:
        r = x.norm(dim=-1).clamp_min(torch.finfo(x.dtype).tiny)
        return -r / self.scale - math.log(self.scale) - self.log_sphere - (self.ndim - 1) * r.log()

    def log_envelope(self, x: Tensor) -> Tensor:
        r""":math:`-r / (2s)`: the decay of :math:`\sqrt{\rho}` without its
        singular factor, so :math:`\psi = e^{\mathrm{env}} \phi` has weights
        :math:`\propto r^{d-1}` in :math:`\phi` (and the cusp of
        :math:`e^{-r/2s}` at the origin, like a Coulomb bound state)."""
        return -x.norm(dim=-1) / (2 * self.scale)

    def extra_repr(self) -> str:
        return f'ndim={self.ndim}, scale={self.scale:g}'
