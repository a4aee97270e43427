"""NestedLoRA: the nested low-rank approximation loss of Ryu et al. (ICML 2024).

For right functions f = (f_1..f_k) and left functions g = (g_1..g_k),

    L(f, g) = -2 sum_l <g_l, T f_l> + sum_{l,l'} <f_l, f_l'> <g_l, g_l'>,

whose minimisers span T's top-k singular subspaces. Joint nesting minimises
sum_i w_i L(f_{1:i}, g_{1:i}), which is L with the weights m_l = sum_{i>=l} w_i
on the operator term and m_{max(l,l')} on the metric term. Sequential nesting
gives (f_l, g_l) only the gradient of L(f_{1:l}, g_{1:l}) with f_{<l}, g_{<l}
held fixed; both make the optimum ordered: f_l is the l-th singular function
with |f_l|^2 = sigma_l.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn

from ..operators.base import LinearOperator
from ..operators.sampling import symmetric_cross

NESTINGS = ('joint', 'sequential')


@dataclass
class LoRATerms:
    r"""What NestedLoRA needs for one step: the functions' values and the
    estimates of the operator's inner products (Monte-Carlo or exact).

    Attributes:
        f: :obj:`[B, k]` values of the right functions at the samples.
        g: :obj:`[B', k]` values of the left functions, or :obj:`None` for a
            self-adjoint operator (EVD form, :obj:`g = f`).
        cross: :obj:`[k]` estimates of :math:`\langle g_l, T f_l \rangle`
            whose gradient is the true one.
        weight_f, weight_g: :obj:`[B]` importance weights of the samples
            (:obj:`None` for uniform), so that
            :math:`\langle a, b \rangle \approx \frac1B \sum_i w_i a_i b_i`.

    A :class:`~pyg_spectral.operators.SampledOperator`'s
    :class:`~pyg_spectral.operators.sampling.SampledEstimates` has the same
    fields in the same order: :obj:`LoRATerms(*estimates)`.
    """
    f: Tensor
    g: Tensor | None
    cross: Tensor
    weight_f: Tensor | None = None
    weight_g: Tensor | None = None


def lora_terms(operator: LinearOperator, f: Tensor, g: Tensor | None = None) -> LoRATerms:
    r"""The :class:`LoRATerms` of a finite operator for the values :obj:`f`
    (:obj:`[n, k]`; and :obj:`g` in the SVD form) at every row: one
    full-batch estimate with uniform weights, so that :math:`\langle a, b
    \rangle = \frac1n \sum_i a_i b_i` and the optimum has :math:`|f_l|^2 =
    \lambda_l`. The operator is applied without autograd; the cross terms
    carry the gradients :math:`Tf` (for :obj:`g`) and :math:`T^\top g` (for
    :obj:`f`)."""
    if g is None:
        if not operator.is_symmetric:
            raise ValueError("A non-symmetric operator needs the SVD form "
                             "(left and right vectors).")
        with torch.no_grad():
            Tf = operator.matmat(f)
        return LoRATerms(f, None, symmetric_cross(f, Tf))
    # <g, T f> = g^T T f / n: gradient T f for g and T^T g for f
    with torch.no_grad():
        Tf, Ttg = operator.matmat(f), operator.rmatmat(g)
    scale = 1.0 / f.size(0)
    cross = (scale * (g * Tf).sum(0) + scale * (f * Ttg).sum(0)
             - scale * (g.detach() * Tf).sum(0))
    return LoRATerms(f, g, cross)


def second_moment(a: Tensor, b: Tensor, weight: Tensor | None = None) -> Tensor:
    r""":math:`E[a b^\top]`: the :obj:`[k, k]` matrix of inner products."""
    if weight is not None:
        a = a * weight.view(-1, 1)
    return a.transpose(0, 1) @ b / a.size(0)


class NestedLoRA(nn.Module):
    r"""The NestedLoRA objective for :obj:`k` components.

    Args:
        k: number of components.
        nesting: :obj:`'joint'` (one loss, masks on the :obj:`[k, k]` moment
            matrices; suits a shared network) or :obj:`'sequential'` (each
            component sees the loss of the first :obj:`l`, earlier ones held
            fixed; suits separate parametrisations).
        level_weights: :obj:`[k]` positive weights :math:`w_i` of the joint
            levels (default uniform, :math:`w_i = 1/k`).
        split_batch: estimate the two moment matrices of the metric term
            from two disjoint halves of the batch, making it unbiased under
            sampling (use for Monte-Carlo operators; full-batch matrices
            need not).

    :meth:`forward` takes :class:`LoRATerms` and
    returns a scalar. For sequential nesting the value is the plain loss
    :math:`L(f_{1:k}, g_{1:k})` and only the gradient follows the nesting.
    """

    def __init__(self, k: int, nesting: str = 'joint',
                 level_weights: Tensor | None = None, split_batch: bool = False) -> None:
        super().__init__()
        if k <= 0:
            raise ValueError(f"k must be positive, got {k}")
        if nesting not in NESTINGS:
            raise ValueError(f"nesting must be one of {NESTINGS}, got {nesting!r}")
        self.k, self.nesting, self.split_batch = k, nesting, split_batch
        if level_weights is None:
            level_weights = torch.full((k,), 1.0 / k)
        level_weights = torch.as_tensor(level_weights, dtype=torch.float64)
        if level_weights.shape != (k,) or (level_weights <= 0).any():
            raise ValueError(f"level_weights must be {k} positive numbers")
        # m_l = sum_{i >= l} w_i; joint mask P_{ll'} = m_{max(l, l')}
        m = level_weights.flip(0).cumsum(0).flip(0)
        idx = torch.arange(k)
        self.register_buffer('operator_weights', m.float(), persistent=False)
        self.register_buffer('joint_mask', m[torch.maximum(idx[:, None], idx[None, :])].float(),
                             persistent=False)
        # sequential: row l of E[f sg(f)^T] carries the gradient of f_l; the
        # factor 2 on l' <= l restores d/df_l of <f_l, f_l'>^2-type terms
        self.register_buffer('sequential_mask', 2.0 * torch.ones(k, k).tril(), persistent=False)

    def _moments(self, x: Tensor, weight: Tensor | None, detach_partner: bool) -> tuple[Tensor, Tensor]:
        partner = x.detach() if detach_partner else x
        if not self.split_batch:
            m = second_moment(x, partner, weight)
            return m, m
        half = x.size(0) // 2
        if half == 0:
            raise ValueError("split_batch needs a batch of at least 2 samples")
        w1 = None if weight is None else weight[:half]
        w2 = None if weight is None else weight[half:2 * half]
        return (second_moment(x[:half], partner[:half], w1),
                second_moment(x[half:2 * half], partner[half:2 * half], w2))

    def forward(self, terms: LoRATerms) -> Tensor:
        f, g, cross = terms.f, terms.g, terms.cross
        if f.dim() != 2 or f.size(1) != self.k:
            raise ValueError(f"f must have shape [batch, {self.k}], got {tuple(f.shape)}")
        if g is not None and (g.dim() != 2 or g.size(1) != self.k):
            raise ValueError(f"g must have shape [batch, {self.k}], got {tuple(g.shape)}")
        if not isinstance(cross, Tensor) or cross.shape != (self.k,):
            shape = tuple(cross.shape) if isinstance(cross, Tensor) else type(cross).__name__
            raise ValueError(f"cross must have shape [{self.k}] (one <g_l, T f_l> per "
                             f"function), got {shape}")
        sequential = self.nesting == 'sequential'
        mf1, mf2 = self._moments(f, terms.weight_f, sequential)
        if g is None:
            # EVD form: pair the two halves (or the full batch with itself)
            mg = mf2
        else:
            mg1, mg2 = self._moments(g, terms.weight_g, sequential)
            mg = mg2 if self.split_batch else mg1
        metric_pairs = mf1 * mg
        if not sequential:
            return (-2 * (self.operator_weights * cross).sum()
                    + (self.joint_mask * metric_pairs).sum())
        surrogate = -2 * cross.sum() + (self.sequential_mask * metric_pairs).sum()
        plain = -2 * cross.sum() + metric_pairs.sum()
        return surrogate + (plain - surrogate).detach()

    def table_gradient(self, f: Tensor, Tf: Tensor,
                       reduce: Callable[[Tensor], Tensor] | None = None,
                       num_rows: int | None = None) -> tuple[Tensor, Tensor, Tensor]:
        r"""The EVD-form loss of a full batch of :math:`n` equally weighted
        rows (a free table :obj:`f` :obj:`[n, k]` on a finite symmetric
        operator, :obj:`Tf` :obj:`[n, k]`), with its gradient in closed form:
        returns :obj:`(loss, grad [n, k], cross [k])`.

        With :math:`G = f^\top f / n`, joint nesting has gradient
        :math:`\tfrac{4}{n}(f\,(P \odot G) - Tf\,\mathrm{diag}(m))` and
        sequential nesting :math:`\tfrac{4}{n}(f\,(\mathrm{tril} \odot G)^\top
        - Tf)`, the same as autograd of :meth:`forward` (tested), at the cost of
        two :obj:`[n, k] x [k, k]` products and no autograd graph: the
        solver's inner loop is otherwise dominated by autograd's
        bookkeeping, not by the sparse product.

        Rows split among processes: :obj:`f` and :obj:`Tf` are this
        process's rows, :obj:`num_rows` the total :math:`n`, and
        :obj:`reduce` sums a tensor over the processes (an all-reduce); the
        :obj:`[k]` and :obj:`[k, k]` moments go through it in one call, and
        the gradient returned is that of the local rows."""
        if self.split_batch:
            raise ValueError("table_gradient is the full-batch form; split_batch needs forward()")
        n = f.size(0) if num_rows is None else num_rows
        cross = (f * Tf).sum(0) / n
        G = f.T @ f / n
        if reduce is not None:
            k = cross.numel()
            moments = reduce(torch.cat([cross, G.reshape(-1)]))
            cross, G = moments[:k], moments[k:].view(k, k)
        if self.nesting == 'joint':
            weights, mask = self.operator_weights.to(f.dtype), self.joint_mask.to(f.dtype)
            loss = -2 * (weights * cross).sum() + (mask * G * G).sum()
            coupling = mask * G
        else:
            weights = torch.ones_like(cross)
            loss = -2 * cross.sum() + (G * G).sum()
            coupling = (self.sequential_mask.to(f.dtype) / 2 * G).T
        # the 4/n folded into the small factors: one product and one fused
        # pass over [n, k] instead of a scaled copy, an addmm and a rescale
        grad = (f @ (coupling * (4 / n))).addcmul_(Tf, weights * (4 / n), value=-1)
        return loss, grad, cross

    def extra_repr(self) -> str:
        return f'k={self.k}, nesting={self.nesting!r}, split_batch={self.split_batch}'


def nested_lora_loss(terms: LoRATerms, nesting: str = 'joint') -> Tensor:
    r"""Functional form of :class:`NestedLoRA` with default weights."""
    return NestedLoRA(terms.f.size(1), nesting).to(terms.f.device)(terms)


def subspace_lora_loss(f: Tensor, operator: LinearOperator, rank: int | None = None) -> Tensor:
    r"""The LoRA loss of a finite symmetric positive semi-definite operator
    :math:`T` for :obj:`rank` functions (default: the :obj:`m` columns of
    :obj:`f` :obj:`[n, m]`) inside the span of :obj:`f`, minimised in closed
    form over them (variable projection; Euclidean inner products):
    :math:`\min_{M \in \mathbb{R}^{m \times r}} L(fM) = -\sum_{i \le r}
    \theta_i^2`, the :math:`r` largest Ritz values :math:`\theta_i` of
    :math:`T` on the span (:math:`-\|Q^\top T Q\|_F^2` for :math:`r = m`,
    with :math:`Q` an orthonormal basis). It scores the span, not the
    columns: the right loss for a model whose columns cannot be the
    eigenfunctions themselves (an encoder driven by fresh noise), whose span
    is turned into ordered eigenpairs by a Rayleigh-Ritz step afterwards; its
    minimisers hold :math:`T`'s top-:math:`r` eigenspace, and :math:`m > r`
    leaves room for what the model cannot separate from it. :math:`T` is
    applied without autograd; the gradient :math:`-4\,TQ\,S\Theta S^\top`
    with respect to :math:`Q` (:math:`S, \Theta` the top-:math:`r` Ritz
    pairs; defined where :math:`\theta_r > \theta_{r+1}`) is restored by a
    detached correction, and the QR factorisation carries it to :obj:`f`."""
    if f.dim() != 2 or operator.shape is None or f.size(0) != operator.shape[1] \
            or f.size(1) > f.size(0):
        raise ValueError(f"f must have shape [n, m] with m <= n = the operator's size, "
                         f"got {tuple(f.shape)}")
    rank = f.size(1) if rank is None else rank
    if not 0 < rank <= f.size(1):
        raise ValueError(f"rank must lie in [1, {f.size(1)}], got {rank}")
    Q = torch.linalg.qr(f).Q
    with torch.no_grad():
        TQ = operator.matmat(Q)
        theta, S = torch.linalg.eigh((Q.T @ TQ + TQ.T @ Q) / 2)
        theta, S = theta[-rank:], S[:, -rank:]
        value = -(theta * theta).sum()
        coupling = (S * theta) @ S.T
    surrogate = -4 * (Q * (TQ @ coupling)).sum()
    return surrogate + (value - surrogate).detach()
