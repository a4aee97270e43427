"""NeuralSVD: fit the top-k eigen/singular vectors of an operator with NestedLoRA."""
from __future__ import annotations

import math
import numbers
import warnings
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..linalg import canonical_signs, rayleigh_ritz
from ..losses import NestedLoRA, lora_terms
from ..operators.base import LinearOperator
from ..operators.sampling import SampledOperator
from ..operators.spectral import top_positive
from .loop import (check_models, descend, finish, flush_losses, positive_int,
                   rayleigh_quotients, show, ticks)
from .loop import drain_losses  # noqa: F401 (solvers.distributed imports it from here)


# What `converged` means without `tol` (the library's accuracy contract):
# with a gap estimate (a free table's oversampled columns), the Davis-Kahan
# bound ||T Q - Q M||_F / gap on the subspace sine, as the ARPACK path
# certifies its float32 rounds; without one, the largest Ritz residual
# relative to the spectral bound.
CERTIFIED_SINE = 1e-2
CERTIFIED_RESIDUAL = 1e-4
# Ritz values closer than this many machine epsilons of the spectral bound
# are one eigenvalue as far as the arithmetic can tell (measured: 1-2 eps on
# the pairs of cycles of 30-200 nodes and on a zero operator; a 2000-node
# path's smallest gaps are 25 eps)
ROUNDING_GAP = 10


class EigenTable(nn.Module):
    r"""A free parameter table :obj:`[n, k]`: the model of the matrix case,
    one learnable value per node and component."""

    def __init__(self, num_rows: int, k: int, init: Tensor | None = None,
                 generator: torch.Generator | None = None, dtype=torch.float32,
                 device=None) -> None:
        super().__init__()
        self.num_rows, self.k = num_rows, k
        if init is None:
            init = torch.randn(num_rows, k, generator=generator, dtype=dtype) / math.sqrt(k)
        elif init.shape != (num_rows, k):
            raise ValueError(f"init must have shape [{num_rows}, {k}], got {tuple(init.shape)}")
        self.weight = nn.Parameter(init.to(device=device, dtype=dtype).clone())

    def forward(self, *_: object) -> Tensor:
        return self.weight

    def extra_repr(self) -> str:
        return f'{self.num_rows}, {self.k}'


@dataclass
class NeuralSVDResult:
    r"""What :meth:`NeuralSVD.fit` returns.

    Attributes:
        eigenvalues: :obj:`[k]` estimates (singular values in the SVD form),
            ordered from the end of the spectrum that was asked for.
        eigenvectors: :obj:`[n, k]` orthonormal columns (finite operators),
            else :obj:`None`; for the SVD form the right vectors.
        left_vectors, right_vectors: :obj:`[n, k]` for the SVD form.
        loss_history: the loss at every step.
        eigenvalue_history: :obj:`[checks, k]` estimates at every check.
        model: the fitted model (a tuple of two for the SVD form).
        steps: the number of steps taken.
        converged: whether :obj:`tol` was met; without :obj:`tol`,
            whether the result is certified to the default accuracy (see
            :meth:`NeuralSVD.fit`). :obj:`False` comes with a
            :class:`RuntimeWarning`, unless a callback stopped the fit.
        residual: the largest Ritz residual :math:`\|Tq_l - \lambda_l q_l\|`
            of the returned pairs relative to the spectral bound (for the
            SVD form the larger of the two sides).
        sine_bound: Davis-Kahan bound on the subspace sine of the returned
            vectors (:obj:`inf` where no gap estimate exists: a model, the
            SVD form, no oversampled columns).
    """
    eigenvalues: Tensor
    eigenvectors: Tensor | None
    model: nn.Module | tuple[nn.Module, nn.Module]
    loss_history: list[float] = field(default_factory=list)
    eigenvalue_history: Tensor | None = None
    left_vectors: Tensor | None = None
    right_vectors: Tensor | None = None
    steps: int = 0
    converged: bool = False
    residual: float = float('nan')
    sine_bound: float = float('inf')


def _columns_normalized(X: Tensor) -> Tensor:
    return X / X.norm(dim=0, keepdim=True).clamp_min(torch.finfo(X.dtype).tiny)


def _ordered_orthonormal(X: Tensor) -> Tensor:
    r"""Gram-Schmidt in column order (so the nesting order is kept), with
    the sign of each column chosen to agree with the input column."""
    Q, R = torch.linalg.qr(X)
    sign = torch.sign(torch.diagonal(R))
    return Q * torch.where(sign == 0, torch.ones_like(sign), sign)


@dataclass
class _Run:
    r"""One :meth:`NeuralSVD.fit`: its settings, then its state as it runs."""
    operator: LinearOperator
    target: LinearOperator  # the operator with the wanted end on top (the SVD form: itself)
    largest: bool
    svd: bool
    free_table: bool
    model: nn.Module | tuple[nn.Module, nn.Module]
    models: tuple[nn.Module, ...]
    inputs: tuple
    n: int
    width: int
    dtype: torch.dtype
    opt: torch.optim.Optimizer
    params: list[Tensor]
    loss_fn: NestedLoRA
    scale: float  # the operator's spectral bound: what residuals and tol are relative to
    zero: bool  # a zero operator: nothing to descend
    closed_form: bool
    restarts: bool
    steps: int
    check_every: int
    tol: float | None
    step: int = 0
    losses: list[float] = field(default_factory=list)
    pending: list[Tensor] = field(default_factory=list)  # on-device: no sync every step
    history: list[Tensor] = field(default_factory=list)
    previous: Tensor | None = None
    converged: bool = False
    stopped: bool = False


class NeuralSVD:
    r"""Learns the top-:obj:`k` eigenvectors (or singular vectors) of an
    operator with the NestedLoRA objective of the `"Operator SVD with Neural
    Networks via Nested Low-Rank Approximation"
    <https://proceedings.mlr.press/v235/ryu24b.html>`_ paper (Ryu et al.,
    ICML 2024).

    .. code-block:: python

        op = GraphOperator.from_edge_index(edge_index, kind='sym_laplacian')
        res = NeuralSVD(k=8).fit(op, largest=False, steps=3000)
        res.eigenvalues   # [8], increasing
        res.eigenvectors  # [n, 8], orthonormal

    Args:
        k (int): number of components.
        nesting (str, optional): :obj:`'joint'` or :obj:`'sequential'` (see
            :class:`~pyg_spectral.losses.NestedLoRA`). (default: :obj:`'joint'`)
        level_weights (torch.Tensor, optional): joint-nesting weights
            :obj:`[k]`. (default: :obj:`None`: uniform)
        optimizer (str, optional): :obj:`'sgd'` (Nesterov momentum, with a
            step size from the operator's spectral bound) or :obj:`'adam'`.
            (default: :obj:`None`: :obj:`'sgd'` for a free table,
            :obj:`'adam'` for neural models)
        momentum (float, optional): momentum of :obj:`'sgd'`. (default:
            :obj:`None`: 0.97 with Ritz restarts, whose heavy ball suits the
            small relative gaps at the ends of graph spectra, else 0.9)
        grad_clip (float, optional): clip the gradient norm to this value.
            (default: :obj:`None`: off)
        seed (int, optional): seed of the free table's random start.
            (default: :obj:`0`)
        step_scale (float, optional): SGD step for a free table, in units of
            n / spectral bound; larger steps made sequential nesting diverge,
            whose update is not a gradient. (default: :obj:`None`: 0.15 with
            Ritz restarts, else 0.125)
        oversample (int, optional): for a free table in the EVD form, fit
            :obj:`k + oversample` columns and return the first :obj:`k`. As
            in subspace iteration, the first k then converge at the rate of
            the gap to eigenvalue k + oversample + 1 instead of k + 1, which
            matters where eigenvalues cluster (PubMed's low end). (default:
            :obj:`None`: :obj:`max(4, k // 2)`, capped by n)
        ritz_restart (bool, optional): for a free table (EVD form), rotate the
            table onto the Rayleigh-Ritz vectors of its span at every check.
            Nesting alone orders components at a rate proportional to the
            eigenvalue gaps inside the subspace, which is slow for clustered
            spectra (e.g. the low end of a Laplacian); the restart makes the
            order exact and leaves only the subspace to converge.
            (default: :obj:`True`)
    """

    def __init__(self, k: int, nesting: str = 'joint', level_weights: Tensor | None = None,
                 optimizer: str | None = None, momentum: float | None = None,
                 grad_clip: float | None = None, seed: int | None = 0,
                 step_scale: float | None = None, oversample: int | None = None,
                 ritz_restart: bool = True) -> None:
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k <= 0:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        k = int(k)
        if optimizer not in (None, 'sgd', 'adam'):
            raise ValueError(f"optimizer must be 'sgd' or 'adam', got {optimizer!r}")
        self.k, self.nesting, self.level_weights = k, nesting, level_weights
        self.optimizer, self.momentum, self.grad_clip, self.seed = optimizer, momentum, grad_clip, seed
        if oversample is not None and (isinstance(oversample, bool) or not isinstance(
                oversample, numbers.Integral) or oversample < 0):
            raise ValueError(f"oversample must be None or an integer >= 0, got {oversample!r}")
        if oversample and level_weights is not None:
            raise ValueError("level_weights are given for k components; set oversample=0")
        self.step_scale, self.ritz_restart, self.oversample = step_scale, ritz_restart, oversample
        self.loss = NestedLoRA(k, nesting, level_weights)

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(k={self.k}, nesting={self.nesting!r})'

    # ------------------------------------------------------------------ fit
    def fit(
        self,
        operator: LinearOperator,
        model: nn.Module | tuple[nn.Module, nn.Module] | None = None,
        inputs: tuple | Tensor | None = None,
        steps: int = 2000,
        lr: float | None = None,
        largest: bool = True,
        tol: float | None = None,
        check_every: int = 25,
        callback: Callable[[int, float, Tensor], bool | None] | None = None,
        progress: bool = True,
        refine: bool = False,
        init: 'NeuralSVDResult | Tensor | None' = None,
        svd: bool | None = None,
    ) -> NeuralSVDResult:
        r"""Fits the model and returns a :class:`NeuralSVDResult`.

        Args:
            operator: a finite :class:`~pyg_spectral.operators.LinearOperator`
                (e.g. :class:`~pyg_spectral.operators.GraphOperator`).
            model: :obj:`None` for a free table :obj:`[n, k]`; an
                :class:`~torch.nn.Module` mapping :obj:`inputs` to :obj:`[n, k]`
                (e.g. a GNN over node features: an inductive encoder); for the
                SVD form a pair :obj:`(right_model, left_model)`.
            inputs: what the model is called with (a tensor or a tuple).
            steps: maximum number of optimisation steps.
            lr: learning rate (default: from the spectral bound for a table
                with SGD, :obj:`1e-3` for Adam).
            largest: learn the largest (else the smallest) eigenvalues; the
                operator is shifted by its safe spectral bound so that they
                become the top positive ones. Ignored for the SVD form.
            tol: stop early (a fit that runs out of :obj:`steps` first
                warns, and its result has :obj:`converged=False`). For a free
                table with Rayleigh-Ritz restarts: when every Ritz residual
                :math:`\|Tq_l - \mu_l q_l\|` is below :obj:`tol` times the
                spectral bound (a residual bounds the
                subspace error by residual / gap, while eigenvalue movement
                can stall on small gaps long before the subspace is right).
                Otherwise: when the eigenvalue estimates change by less than
                :obj:`tol` (relative to the spectral bound) between checks.
                :obj:`None`: run all :obj:`steps`, then certify the result:
                :obj:`converged` is whether the Davis-Kahan bound on the
                subspace sine, :math:`\|TQ - QM\|_F` over the gap to the
                next Ritz value of the oversampled columns, is at most
                :obj:`CERTIFIED_SINE` (a repeated eigenvalue split by
                :obj:`k` is certified as a whole with the gap after it;
                where all the columns span one repeated eigenvalue, the
                residuals must be at rounding level); where no gap is known
                (a model, the SVD form, no oversampling), whether every Ritz
                residual is at most :obj:`CERTIFIED_RESIDUAL` times the
                spectral bound. Not met: a :class:`RuntimeWarning`.
            check_every: steps between convergence checks and progress updates.
            callback: called as :obj:`callback(step, loss, eigenvalues)` at
                every check; returning :obj:`True` stops the fit.
            refine: finish with a Rayleigh-Ritz step on the learned subspace
                (one :obj:`[k, k]` eigh; the output is then sorted).
            init: warm start for a free table: a previous result or
                :obj:`[n, k]` vectors.
            svd: use the SVD form (default: when the operator is not symmetric).
        """
        run = self._prepare(operator, model, inputs, steps, lr, largest, tol, check_every,
                            init, svd)
        bar = tqdm(total=0 if run.zero else steps, disable=not progress, desc='NeuralSVD',
                   leave=False)
        if run.closed_form:
            self._descend_table(run, bar, callback)
        else:
            self._descend_autograd(run, bar, callback)
        finish(bar, 0 if run.zero else run.step + 1)
        return self._conclude(run, refine)

    def _prepare(self, operator, model, inputs, steps, lr, largest, tol, check_every, init,
                 svd) -> '_Run':
        r"""Checks the arguments of :meth:`fit` and builds what every mode
        needs: the target, the models, the optimizer, the loss."""
        if isinstance(operator, Tensor):
            raise TypeError(
                "operator is a torch.Tensor; fit() takes a LinearOperator: build a graph "
                "matrix with GraphOperator.from_edge_index(edge_index, kind=...), or wrap a "
                "symmetric matrix M as GraphOperator(M.to_sparse_csr(), 'adjacency', "
                "bounds=(-b, b)) with b = float(M.abs().sum(1).max())")
        if isinstance(operator, SampledOperator):
            raise TypeError(f"operator must be a LinearOperator (a finite one, e.g. "
                            f"GraphOperator), got the sampled operator "
                            f"{type(operator).__name__}; fit it with SampledNeuralSVD")
        if not isinstance(operator, LinearOperator):
            raise TypeError(f"operator must be a LinearOperator (e.g. GraphOperator), got "
                            f"{type(operator).__name__}")
        steps, check_every = positive_int(steps, 'steps'), positive_int(check_every, 'check_every')
        if tol is not None and (isinstance(tol, bool) or not isinstance(tol, numbers.Real)
                                or not 0 <= tol < math.inf):
            raise ValueError(f"tol must be None or a finite number >= 0, got {tol!r}")
        if lr is not None and (isinstance(lr, bool) or not isinstance(lr, numbers.Real)
                               or not 0 < lr < math.inf):
            raise ValueError(f"lr must be None or a finite positive number, got {lr!r}")
        n = operator.shape[0]
        if self.k >= n:
            raise ValueError(f"k={self.k} must be smaller than the number of rows n={n}")
        svd = (not operator.is_symmetric) if svd is None else svd
        if not svd and not operator.is_symmetric:
            raise ValueError("operator is not symmetric: use svd=True")
        target = operator if svd else top_positive(operator, largest)
        device, dtype = operator.device, operator.dtype
        generator = torch.Generator().manual_seed(self.seed) if self.seed is not None else None

        free_table = model is None
        width = self.k
        if free_table and not svd:
            extra = self.oversample if self.oversample is not None else \
                (0 if self.level_weights is not None else max(4, self.k // 2))
            width = self.k + max(0, min(extra, n - 1 - self.k))
        if free_table:
            model = self._tables(target, n, svd, init, generator, dtype, device, width)
        elif init is not None:
            raise ValueError("init= warm-starts a free table; for a model, pass the "
                             "already trained model instead")
        models = tuple(model) if isinstance(model, (tuple, list)) else (model,)
        if svd and len(models) != 2:
            raise ValueError("the SVD form needs model=(right_model, left_model)")
        check_models(models, device, dtype)
        inputs = () if inputs is None else (inputs if isinstance(inputs, tuple) else (inputs,))
        for x in inputs:
            if isinstance(x, Tensor) and x.is_floating_point() and x.dtype != dtype:
                raise TypeError(f"inputs are {x.dtype} but the operator is {dtype}; convert "
                                f"them with .to({dtype})")

        bounds = operator.spectral_bounds()
        if not all(math.isfinite(b) for b in bounds):
            # the shift and the step size come from the bound: an infinite one
            # shifts by inf or steps by n / inf = 0 and never moves
            raise ValueError(f"operator.spectral_bounds() returned {bounds}; NeuralSVD needs "
                             f"finite safe bounds of the spectrum (e.g. Gershgorin's row "
                             f"sums) to shift the operator and size its steps")
        params = [p for m in models for p in m.parameters()]
        closed_form = free_table and not svd
        restarts = closed_form and self.ritz_restart
        if (self.optimizer or ('sgd' if free_table else 'adam')) == 'sgd':
            # inner products are means over n rows, so a table's gradient carries
            # a 1/n; the curvature of the loss is about 8 * bound / n
            hi = max(abs(b) for b in target.spectral_bounds()) or 1.0
            step_scale = self.step_scale or (0.15 if restarts else 0.125)
            momentum = self.momentum if self.momentum is not None else (0.97 if restarts else 0.9)
            opt = torch.optim.SGD(params, lr=lr or step_scale * n / hi,
                                  momentum=momentum, nesterov=True)
        else:
            opt = torch.optim.Adam(params, lr=lr or 1e-3)
        loss_fn = (self.loss if width == self.k else NestedLoRA(width, self.nesting)).to(device)
        # the user's operator's bound, not the shifted target's: for an
        # indefinite operator the shift doubles the target's bound, and
        # residuals and tolerances relative to it read up to 2x too small
        scale = max(abs(b) for b in bounds) or 1.0
        # safe bounds (0, 0): T = 0, every unit vector is a pair with value 0,
        # and descent on the quartic term alone can only diverge
        zero = max(abs(b) for b in bounds) == 0
        return _Run(operator, target, largest, svd, free_table, model, models, inputs, n, width,
                    dtype, opt, params, loss_fn, scale, zero, closed_form, restarts, steps,
                    check_every, tol, step=-1 if zero else 0)

    def _descend_table(self, run: '_Run', bar, callback) -> None:
        r"""The EVD form of a free table: the NestedLoRA gradient in closed
        form (:meth:`~pyg_spectral.losses.NestedLoRA.table_gradient`), since
        autograd's bookkeeping otherwise costs more than the sparse product,
        and with :obj:`ritz_restart` a Rayleigh-Ritz restart at every check."""
        table = run.models[0]
        if run.restarts and not run.zero:
            # start at the optimal column norms: the curvature of the quartic
            # term grows with |F|^2, so a random scale can diverge at once
            self._ritz_restart(run.target, table, run.opt, self.k)
        for run.step in ticks(bar):
            f = table()
            self._check_width(f, run.n, run.width, run.dtype)
            with torch.no_grad():
                loss, f.grad, cross = run.loss_fn.table_gradient(f, run.target.matmat(f))
            descend(run.opt, run.params, self.grad_clip)
            run.pending.append(loss.detach())
            # (f shares the table's storage: the quotients are those after the step)
            if self._at_check(run, bar, callback, lambda: rayleigh_quotients(f.detach(), None, cross)):
                break

    def _descend_autograd(self, run: '_Run', bar, callback) -> None:
        r"""Models, and the SVD form: the loss through autograd; a pair of
        tables rebalanced after every step (:meth:`_balance`)."""
        balanced = run.free_table and run.svd
        for run.step in ticks(bar):
            f = run.models[0](*run.inputs)
            g = run.models[1](*run.inputs) if run.svd else None
            self._check_width(f, run.n, run.width, run.dtype)
            terms = lora_terms(run.target, f, g)
            loss = run.loss_fn(terms)
            descend(run.opt, run.params, self.grad_clip, loss)
            if balanced:
                self._balance(run.models, run.opt)
            run.pending.append(loss.detach())
            if self._at_check(run, bar, callback,
                              lambda: rayleigh_quotients(terms.f, terms.g, terms.cross)):
                break

    def _at_check(self, run: '_Run', bar, callback, quotients) -> bool:
        r"""At every :obj:`check_every` steps and the last: the losses
        checked, the estimates recorded and shown, the callback, and the
        stopping test (with Ritz restarts: the largest Ritz residual against
        :obj:`tol`, which the restart computes; otherwise the movement of
        the estimates). Whether to stop."""
        step = run.step
        if (step + 1) % run.check_every != 0 and step != run.steps - 1:
            return False
        flush_losses(run.pending, run.losses, run.opt)
        est = quotients()[:self.k]
        run.history.append(est.cpu())
        shown = est if run.svd else run.target.original_eigenvalues(est)
        show(bar, run.losses[-1], shown)
        if callback is not None and callback(step, run.losses[-1], shown.detach()):
            run.stopped = True
            return True
        tol, limit = run.tol, None if run.tol is None else run.tol * run.scale
        if run.restarts:
            residual = self._ritz_restart(run.target, run.models[0], run.opt, self.k)
            if tol is not None and residual <= limit:
                run.converged = True
                return True
        elif tol is not None and run.previous is not None and \
                float((est - run.previous).abs().max()) <= limit:
            run.converged = True
            return True
        run.previous = est
        return False

    def _conclude(self, run: '_Run', refine: bool) -> NeuralSVDResult:
        r"""The result: the pairs of the fitted span (:meth:`_finish`), their
        accuracy (:meth:`_accuracy`), and whether it is certified."""
        models, svd, steps, tol = run.models, run.svd, run.steps, run.tol
        with torch.no_grad():
            f = models[0](*run.inputs)
            g = models[1](*run.inputs) if svd else None
            self._check_finite(f, g, run.step + 1)
            result = self._finish(run, f, g, refine)
            result.residual, result.sine_bound, limit = self._accuracy(
                run.operator, run.target, result, f, svd, run.scale)
        converged = run.converged
        if tol is None or run.zero:
            certified = result.sine_bound <= CERTIFIED_SINE if math.isfinite(result.sine_bound) \
                else result.residual <= limit
            converged = bool(certified)
            if not converged and not run.stopped:
                measure = (f"a subspace sine bound of {result.sine_bound:.2g} (certified: "
                           f"<= {CERTIFIED_SINE:g})" if math.isfinite(result.sine_bound) else
                           f"a Ritz residual of {result.residual:.2g} of the spectral bound "
                           f"(certified: <= {limit:.2g})")
                warnings.warn(f"NeuralSVD did not reach the default accuracy within "
                              f"steps={steps}: {measure}; the result is not converged (raise "
                              f"steps=, or set tol= to stop when met)", RuntimeWarning)
        elif not converged and not run.stopped:
            warnings.warn(f"NeuralSVD did not reach tol={tol:g} within steps={steps}; the "
                          f"result is not converged (raise steps=)", RuntimeWarning)
        result.model = run.model
        result.loss_history = run.losses
        result.eigenvalue_history = torch.stack(run.history) if run.history else None
        result.steps, result.converged = run.step + 1, converged
        return result

    # ------------------------------------------------------------ helpers
    def _check_width(self, f: Tensor, n: int, width: int, dtype: torch.dtype) -> None:
        if not isinstance(f, Tensor) or f.dim() != 2 or f.shape != (n, width):
            shape = tuple(f.shape) if isinstance(f, Tensor) else type(f).__name__
            raise ValueError(f"the model must output [{n}, {width}] (one row per node, "
                             f"k={width} columns), got {shape}")
        if f.dtype != dtype:
            raise TypeError(f"the model outputs {f.dtype} but the operator is {dtype}; "
                            f"convert one with .to()")

    @staticmethod
    def _check_finite(f: Tensor, g: Tensor | None, step: int) -> None:
        # NaN reaching an eigh fails deep inside LAPACK without a word on the cause
        for name, x in (('model output', f), ('left model output', g)):
            if x is not None and not torch.isfinite(x).all():
                raise FloatingPointError(
                    f"the {name} has NaN or inf values at step {step}; check the inputs "
                    f"and init= for non-finite values, lower lr or set grad_clip")

    @staticmethod
    def _accuracy(operator: LinearOperator, target: LinearOperator, result: NeuralSVDResult,
                  f: Tensor, svd: bool, scale: float) -> tuple[float, float, float]:
        r"""The largest Ritz residual of the returned pairs relative to the
        operator's spectral bound; the Davis-Kahan bound on the sine between
        the returned vectors' span and the wanted eigenspace: the residual
        over the gap between their smallest Ritz value and the largest one of
        the rest of :obj:`f`'s span (:obj:`target`, :obj:`operator` shifted
        to have the wanted end on top);
        and the residual that certifies the pairs where that bound is
        :obj:`inf`. A gap within rounding (an eigenvalue repeated across the
        :obj:`k`-th) is no gap: the vectors are certified together with the
        next directions of the span, up to the first real gap. Without
        columns beyond the returned ones there is no gap estimate (bound :obj:`inf`, residual
        :obj:`CERTIFIED_RESIDUAL`); where every gap in the span is within
        rounding, the residual must be within rounding too."""
        if svd:
            V, W, values = result.right_vectors, result.left_vectors, result.eigenvalues
            residual = torch.maximum((target.matmat(V) - W * values).norm(dim=0),
                                     (target.rmatmat(W) - V * values).norm(dim=0))
            return float(residual.max()) / scale, math.inf, CERTIFIED_RESIDUAL
        V, values = result.eigenvectors, result.eigenvalues
        residual = float((operator.matmat(V) - V * values).norm(dim=0).max()) / scale
        k, width = V.size(1), f.size(1)
        if width == k:
            return residual, math.inf, CERTIFIED_RESIDUAL
        Q = torch.linalg.qr(f)[0]
        # the rest of the span: an orthonormal basis orthogonal to V, by Ritz value
        C = Q @ torch.linalg.svd(Q.transpose(0, 1) @ V)[0][:, k:]
        TC = target.matmat(C)
        nu, S = rayleigh_ritz(C.transpose(0, 1) @ TC, descending=True)
        C, TC = C @ S, TC @ S
        TV = target.matmat(V)
        rounding = ROUNDING_GAP * torch.finfo(V.dtype).eps
        bound = math.inf
        for extra in range(width - k):
            Vb, TVb = torch.cat([V, C[:, :extra]], 1), torch.cat([TV, TC[:, :extra]], 1)
            M = Vb.transpose(0, 1) @ TVb
            M = (M + M.transpose(0, 1)) / 2
            gap = float(rayleigh_ritz(M)[0][0] - nu[extra])
            if gap > rounding * scale:
                # the first real gap decides: across it, the returned vectors
                # could mix in the next eigenvalue's directions unseen
                bound = float((TVb - Vb @ M).norm()) / gap
                break
        return residual, bound, rounding

    def _tables(self, target, n, svd, init, generator, dtype, device, width):
        def table(start):
            return EigenTable(n, width, start, generator, dtype, device)
        if init is None and svd:
            # random tables with mean squared entries bound / k: a fixed scale
            # far above the singular values of a small operator diverges under
            # the step sized from the bound
            hi = max(abs(b) for b in target.spectral_bounds()) or 1.0
            tables = (table(None), table(None))
            for t in tables:
                t.weight.data.mul_(math.sqrt(hi))
            return tables
        if init is None:
            return table(None)
        if isinstance(init, NeuralSVDResult):
            if svd:
                return (table(init.model[0].weight.detach()), table(init.model[1].weight.detach()))
            if init.model.weight.size(1) == width:
                return table(init.model.weight.detach())
            init = init.eigenvectors
        if not isinstance(init, Tensor):
            raise TypeError(f"init must be a NeuralSVDResult or a tensor [{n}, {self.k}], "
                            f"got {type(init).__name__}")
        if not torch.isfinite(init).all():
            raise ValueError("init has NaN or inf values")
        # vectors: scale each column to the optimum norm |f_l|^2 = mu_l
        V = _columns_normalized(init.to(device=device, dtype=dtype))
        if V.shape != (n, self.k):
            raise ValueError(f"init must have shape [{n}, {self.k}], got {tuple(init.shape)}")
        if width > self.k:  # fresh random directions for the oversampled columns
            pad = torch.randn(n, width - self.k, generator=generator, dtype=dtype).to(device)
            V = torch.cat([V, _columns_normalized(pad)], 1)
        if svd:
            U = _columns_normalized(target.matmat(V))
            s = (U * target.matmat(V)).sum(0).clamp_min(0)
            return (table(V * (n * s).sqrt()), table(U * (n * s).sqrt()))
        mu = (V * target.matmat(V)).sum(0).clamp_min(0)
        return table(V * (n * mu).sqrt())

    @staticmethod
    @torch.no_grad()
    def _balance(tables: tuple[EigenTable, EigenTable], opt) -> None:
        r"""Rescales each column pair of the SVD form's tables to equal
        norms, f_l <- c f_l and g_l <- g_l / c. The loss is invariant under
        this rescaling, so descent does not hold the two norms together:
        they drift apart along it (on tiny operators from the first steps),
        the curvature in one table grows with the other's norm, and the step
        sized from the spectral bound diverges. The momentum buffers are
        displacements and scale with their tables."""
        F, G = tables[0].weight, tables[1].weight
        c = (G.norm(dim=0) / F.norm(dim=0)).sqrt()
        c = torch.where(torch.isfinite(c) & (c > 0), c, torch.ones_like(c))
        F.mul_(c)
        G.div_(c)
        for param, factor in ((F, c), (G, 1 / c)):
            buf = opt.state.get(param, {}).get('momentum_buffer')
            if buf is not None:
                buf.mul_(factor)

    @staticmethod
    @torch.no_grad()
    def _ritz_restart(target, table: EigenTable, opt, k: int) -> float:
        r"""Rotates the table onto the Ritz vectors of its span, scaled to the
        optimum norms, and returns the largest Ritz residual norm of the first
        :obj:`k` (the oversampled columns only guard them). The step is
        a right-multiplication F <- F M, so the momentum buffer is carried
        over by the same M instead of being dropped."""
        F = table.weight
        Q, R = torch.linalg.qr(F)
        TQ = target.matmat(Q)
        mu, S = rayleigh_ritz(Q.transpose(0, 1) @ TQ, descending=True)
        residual = float((TQ @ S[:, :k] - (Q @ S[:, :k]) * mu[:k]).norm(dim=0).max())
        scale = (F.size(0) * mu.clamp_min(0)).sqrt()
        M = torch.linalg.solve_triangular(R, S * scale, upper=True)
        if not torch.isfinite(M).all():  # rank-deficient table: restart from Q
            F.copy_(Q @ S * scale)
            opt.state.clear()
            return residual
        F.copy_(F @ M)
        buf = opt.state.get(F, {}).get('momentum_buffer')
        if buf is not None:
            buf.copy_(buf @ M)
        return residual

    def _finish(self, run: _Run, f: Tensor, g: Tensor | None, refine: bool) -> NeuralSVDResult:
        r"""The first :obj:`k` pairs of the span of :obj:`f` (and :obj:`g`):
        the nesting order kept, or a Rayleigh-Ritz step with :obj:`refine`."""
        k = self.k
        if run.svd:
            Qf, Qg = _ordered_orthonormal(f), _ordered_orthonormal(g)
            H = Qg.transpose(0, 1) @ run.target.matmat(Qf)
            if refine:
                U, S, Vh = torch.linalg.svd(H)
                right, left = Qf @ Vh.transpose(0, 1), Qg @ U
                values = S
            else:
                values = torch.diagonal(H)
                sign = torch.where(values < 0, -1.0, 1.0).to(values.dtype)
                right, left, values = Qf, Qg * sign, values.abs()
            return NeuralSVDResult(values, right, None, left_vectors=left, right_vectors=right)
        # Rayleigh quotients on the original operator: mapping back from the
        # shifted one, (mu - beta) / alpha, cancels digits at the far end
        Q = _ordered_orthonormal(f)
        H = Q.transpose(0, 1) @ run.operator.matmat(Q)
        if refine:
            values, S = rayleigh_ritz(H, descending=run.largest)
            Q = Q @ S
        else:
            values = torch.diagonal(H)
        return NeuralSVDResult(values[:k], canonical_signs(Q[:, :k]), None)
