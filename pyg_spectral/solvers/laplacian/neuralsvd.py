r"""NeuralSVD as a solver of the PE transform: a free table fitted to one
graph's deflated Laplacian, on any device."""
from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import Tensor

from ..neuralsvd import NeuralSVD
from .options import NEURALSVD_OPTIONS, check_solver_options
from .problem import GraphProblem

# tol bounds the Ritz residuals relative to the spectral bound; 1e-5 is
# about the float32 floor there (a smaller value only runs out the steps)
NEURALSVD_DEFAULTS = dict(steps=4000, tol=1e-5, check_every=25)


class NeuralSVDNoConvergence(RuntimeError):
    r"""NeuralSVD ran out of steps before its Ritz residuals met :obj:`tol`
    (first-order methods need many steps where the low end of the spectrum
    is tightly clustered, as on large mesh-like graphs). Carries the
    unconverged pairs as :obj:`vectors` and :obj:`values`."""

    def __init__(self, graph: int, num_nodes: int, steps: int, tol: float,
                 vectors: Tensor, values: Tensor) -> None:
        super().__init__(f"NeuralSVD did not converge on graph {graph} ({num_nodes} nodes): "
                         f"Ritz residuals above tol={tol:g} after {steps} steps")
        self.graph, self.num_nodes, self.steps, self.tol = graph, num_nodes, steps, tol
        self.vectors, self.values = vectors, values



def solve_neuralsvd(graph: GraphProblem, seed: int | None, device: torch.device | None = None,
                    **options: Any) -> tuple[Tensor, Tensor]:
    r"""NeuralSVD (free table, Nesterov SGD with Rayleigh-Ritz restarts) on
    the deflated Laplacian of :obj:`graph`, on :obj:`device` (default: the
    graph's); returns :obj:`(vectors [n_g, q], values [q])` ascending.
    :obj:`options`: those of :obj:`NEURALSVD_OPTIONS`, passed to
    :class:`~pyg_spectral.solvers.NeuralSVD` or its :meth:`fit` (defaults
    :obj:`NEURALSVD_DEFAULTS`). Raises :class:`NeuralSVDNoConvergence` when
    :obj:`tol` (not :obj:`None`) was not met within :obj:`steps`."""
    options = check_solver_options('solve_neuralsvd options', options, NEURALSVD_OPTIONS)
    op = graph.operator if device is None else graph.operator.to(device)
    init_kw = {key: v for key, v in options.items() if NEURALSVD_OPTIONS[key].target == 'init'}
    fit_kw = {key: v for key, v in options.items() if NEURALSVD_OPTIONS[key].target == 'fit'}
    fit_kw = {**NEURALSVD_DEFAULTS, 'progress': False, **fit_kw}
    with warnings.catch_warnings():  # the transform words its own warning
        warnings.filterwarnings('ignore', 'NeuralSVD did not reach', RuntimeWarning)
        result = NeuralSVD(graph.q, seed=graph.seed(seed), **init_kw).fit(
            op, largest=False, refine=True, **fit_kw)
    if fit_kw['tol'] is not None and not result.converged:
        raise NeuralSVDNoConvergence(graph.index, graph.num_nodes, result.steps, fit_kw['tol'],
                                     result.eigenvectors, result.eigenvalues)
    return result.eigenvectors, result.eigenvalues
