r"""The canonical dependence kernel (CDK) of a joint distribution, learned
from paired samples."""
from __future__ import annotations

import heapq
import math
from typing import Callable

import torch
from torch import Tensor, nn
from torch_geometric.utils import coalesce

from .graph import GraphOperator, validate_graph
from .sampling import SampledEstimates, SampledOperator, Samples, check_output

PairSampler = Callable[[int, 'torch.Generator | None'], tuple[Tensor, Tensor]]


class CDK(SampledOperator):
    r"""The canonical dependence kernel
    :math:`k(x, y) = \frac{p(x, y)}{p(x) p(y)}` of a joint distribution,
    i.e. the operator :math:`(T f)(y) = E[f(X) \mid Y = y]` from
    :math:`L^2(p_X)` to :math:`L^2(p_Y)`, learned in the SVD form of
    NestedLoRA with a right network :math:`f(x)` and a left network
    :math:`g(y)`:

    .. math::
        \langle g_l, T f_l \rangle = E_{p(x, y)}[f_l(X) g_l(Y)],

    and the metric terms :math:`E[f f^\top]`, :math:`E[g g^\top]` come from the
    marginal samples (the two halves of a batch of pairs, so their product is
    unbiased). Its top singular value is 1 (constant functions); the next
    ones measure the dependence between :math:`X` and :math:`Y` (the
    maximal correlations).

    Args:
        sampler: :obj:`sampler(n, generator) -> (x, y)`, :obj:`n` pairs from
            :math:`p(x, y)`.
        exact_singular_values: optional :obj:`k -> [k]` ground truth.
    """
    num_models = 2
    is_symmetric = False

    def __init__(self, sampler: PairSampler,
                 exact_singular_values: Callable[[int], Tensor] | None = None) -> None:
        if not callable(sampler):
            raise TypeError(f"sampler must be callable, got {type(sampler).__name__}")
        self.sampler, self.exact_values = sampler, exact_singular_values
        self._device, self._dtype = torch.device('cpu'), torch.float32

    # ------------------------------------------------------------ presets
    @classmethod
    def gaussian(cls, rho: float | Tensor, ndim: int | None = None,
                 dtype: torch.dtype = torch.float32) -> 'CDK':
        r"""Standard Gaussian :math:`X` and :math:`Y = \rho X + \sqrt{1-\rho^2} Z`
        (per coordinate, :math:`\rho` a number or one per coordinate).

        The CDK's singular values are :math:`\prod_j \rho_j^{n_j}` over
        multi-indices :math:`n \in \mathbb{N}^d` (:math:`\rho^i` in 1D), with
        the products of normalised Hermite polynomials
        :math:`\mathrm{He}_{n_j}/\sqrt{n_j!}` (:func:`hermite_functions`) as
        singular functions on both sides (Mehler's formula).
        """
        rho = torch.as_tensor(rho, dtype=torch.float64).reshape(-1)
        if ndim is not None:
            if not isinstance(ndim, int) or ndim <= 0:
                raise ValueError(f"ndim must be a positive integer, got {ndim!r}")
            if rho.numel() not in (1, ndim):
                raise ValueError(f"rho must be a number or have {ndim} entries, got {rho.numel()}")
            rho = rho.expand(ndim).clone()
        if not ((rho.abs() < 1).all() and torch.isfinite(rho).all()):
            raise ValueError(f"rho must lie in (-1, 1), got {rho.tolist()}")
        r, s = rho.to(dtype), (1 - rho ** 2).sqrt().to(dtype)

        def sampler(n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
            x = torch.randn(n, rho.numel(), generator=generator, dtype=dtype)
            z = torch.randn(n, rho.numel(), generator=generator, dtype=dtype)
            return x, r * x + s * z

        op = cls(sampler, lambda k: _product_spectrum(rho.abs(), k))
        op._dtype, op.rho = dtype, rho
        return op

    @classmethod
    def graph(cls, edge_index: Tensor, edge_weight: Tensor | None = None,
              num_nodes: int | None = None) -> 'CDK':
        r"""The edge CDK of an undirected graph: :math:`p(x, y) \propto A_{xy}`
        over node pairs, sampled edge by edge. Its marginal is
        :math:`p(x) = d_x / \mathrm{vol}`, and its singular values are the
        absolute eigenvalues of :math:`D^{-1/2} A D^{-1/2}`
        (:attr:`graph_operator`); the singular functions evaluated at the
        nodes are :math:`D^{-1/2}` times its eigenvectors (up to scale). So
        node embeddings (e.g. :class:`torch.nn.Embedding` or a GNN indexed
        by node) learn a spectral embedding from sampled edges alone. The
        models take :obj:`[B]` node indices.
        """
        num_nodes = validate_graph(edge_index, edge_weight, num_nodes)
        if edge_weight is None:
            edge_weight = torch.ones(edge_index.size(1), device=edge_index.device)
        operator = GraphOperator.from_edge_index(edge_index, edge_weight, num_nodes,
                                                 kind='sym_adjacency', dtype=torch.float64)
        edge_index, edge_weight = coalesce(edge_index, edge_weight.double(), num_nodes)
        if (edge_weight < 0).any():
            raise ValueError("edge_weight must be non-negative (it is a probability up to scale)")
        edges, probs = edge_index.cpu(), (edge_weight / edge_weight.sum()).cpu()

        def sampler(n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
            idx = torch.multinomial(probs, n, replacement=True, generator=generator)
            pair = edges[:, idx]
            return pair[0], pair[1]

        def exact(k: int) -> Tensor:
            values = torch.linalg.eigvalsh(operator.to_dense()).abs()
            return values.sort(descending=True).values[:k]

        op = cls(sampler, exact)
        op.graph_operator, op.num_nodes = operator, num_nodes
        return op

    def exact_singular_values(self, k: int) -> Tensor:
        r"""The :obj:`k` largest singular values, decreasing (float64), for
        presets with a known spectrum."""
        if self.exact_values is None:
            raise ValueError("no ground-truth spectrum for this CDK")
        return self.exact_values(k)

    # ------------------------------------------------------------ protocol
    def spectral_bounds(self) -> tuple[float, float]:
        return 0.0, 1.0

    def sample(self, num_samples: int, generator: torch.Generator | None = None) -> Samples:
        x, y = self.sampler(num_samples, generator)
        for name, v in (('x', x), ('y', y)):
            if not isinstance(v, Tensor) or v.size(0) != num_samples:
                raise ValueError(f"sampler must return two tensors with {num_samples} rows, "
                                 f"got {name} of shape {getattr(v, 'shape', None)}")
            if v.is_floating_point() and not torch.isfinite(v).all():
                raise ValueError(f"sampler returned non-finite values in {name}")
        cast = (lambda v: v.to(self._device, self._dtype) if v.is_floating_point()
                else v.to(self._device))
        return cast(x), cast(y)

    def _evaluate(self, model: tuple[nn.Module, nn.Module], samples: Samples,
                  k: int) -> tuple[Tensor, Tensor]:
        x, y = samples
        f_model, g_model = model
        f, g = f_model(x), g_model(y)
        check_output(f, x.size(0), k, 'right model')
        check_output(g, y.size(0), k, 'left model')
        return f, g

    def estimates(self, model: tuple[nn.Module, nn.Module], samples: Samples, k: int,
                  generator: torch.Generator | None = None) -> SampledEstimates:
        f, g = self._evaluate(model, samples, k)
        return SampledEstimates(f, g, (f * g).mean(0))

    def moments(self, model: tuple[nn.Module, nn.Module], samples: Samples, k: int,
                generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
        with torch.no_grad():
            f, g = self._evaluate(model, samples, k)
            n = f.size(0)
            return f.T @ f / n, g.T @ g / n, g.T @ f / n

    def __repr__(self) -> str:
        if hasattr(self, 'rho'):
            return f'{self.__class__.__name__}.gaussian(rho={self.rho.tolist()})'
        if hasattr(self, 'num_nodes'):
            return f'{self.__class__.__name__}.graph(num_nodes={self.num_nodes})'
        return f'{self.__class__.__name__}(sampler={self.sampler!r})'


def hermite_functions(x: Tensor, degree: int) -> Tensor:
    r"""The normalised probabilists' Hermite polynomials
    :math:`\mathrm{He}_i(x) / \sqrt{i!}`, :math:`i = 0..\mathrm{degree}`, at
    :obj:`x` of shape :obj:`[B]`, as :obj:`[B, degree + 1]`: an orthonormal
    basis of :math:`L^2(\mathcal{N}(0, 1))`. Differentiable in :obj:`x`."""
    # the recurrence, not torch.special.hermite_polynomial_he: that has no
    # autograd (its output silently carries no gradient), and the Hamiltonians
    # differentiate eigenfunctions built from these twice
    out = [torch.ones_like(x), x]
    for i in range(1, degree):
        out.append(x * out[i] - i * out[i - 1])  # He_{i+1} = x He_i - i He_{i-1}
    out = torch.stack(out[:degree + 1], dim=-1)
    norms = torch.tensor([math.sqrt(math.factorial(i)) for i in range(degree + 1)],
                         dtype=x.dtype, device=x.device)
    return out / norms


def _product_spectrum(rho: Tensor, k: int) -> Tensor:
    r"""The :obj:`k` largest :math:`\prod_j \rho_j^{n_j}` over
    :math:`n \in \mathbb{N}^d` (best-first search over multi-indices)."""
    logs = [math.log(float(r)) if r > 0 else -math.inf for r in rho]
    start = (0,) * len(logs)
    heap, seen, out = [(-0.0, start)], {start}, []
    while heap and len(out) < k:
        neg, n = heapq.heappop(heap)
        out.append(math.exp(-neg))
        for j, lj in enumerate(logs):
            m = n[:j] + (n[j] + 1,) + n[j + 1:]
            if m not in seen and lj > -math.inf:
                seen.add(m)
                heapq.heappush(heap, (neg - lj, m))
    out += [0.0] * (k - len(out))
    return torch.tensor(out, dtype=torch.float64)
