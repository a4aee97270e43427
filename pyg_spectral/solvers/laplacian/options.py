r"""The settings each iterative solver of the PE transform takes, as an
explicit table: a parameter added to :class:`~pyg_spectral.solvers.NeuralSVD`
or to :func:`~scipy.sparse.linalg.eigsh` is not a transform option until it
is written here, and those that would change what the transform returns are
refused (:obj:`CONTRACT_KEYS`) instead of being passed on."""
from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any, Callable, NamedTuple

import torch


class SolverOption(NamedTuple):
    r"""One option a solver takes from :class:`~pyg_spectral.transforms.AddNeuralSVDPE`:
    what its value must be (said in errors), the test of it, and where it
    goes (:obj:`'init'`: :class:`NeuralSVD`, :obj:`'fit'`: :meth:`NeuralSVD.fit`,
    :obj:`'arpack'`: :func:`~pyg_spectral.solvers.laplacian.solve_arpack`)."""
    expected: str
    check: Callable[[Any], bool]
    target: str


def _integer(minimum: int) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= minimum


def _real(positive: bool) -> Callable[[Any], bool]:
    return lambda v: (isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)
                      and (v > 0 if positive else v >= 0))


def _or_none(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: v is None or check(v)


def _one_of(*values: Any) -> Callable[[Any], bool]:
    # by identity for None, bools and dtypes: 1 == True, and 0 must not pass for False
    return lambda v: any(v is x for x in values) or (isinstance(v, str) and v in values)


ARPACK_OPTIONS: dict[str, SolverOption] = {
    'tol': SolverOption('a finite number >= 0 (relative accuracy of the Ritz values; '
                        '0: machine precision)', _real(False), 'arpack'),
    'ncv': SolverOption('an integer >= 2 (Lanczos vectors, more than the pairs wanted)',
                        _integer(2), 'arpack'),
    'maxiter': SolverOption('an integer >= 1 (ARPACK restarts)', _integer(1), 'arpack'),
    'max_rounds': SolverOption('an integer >= 1 (1: one ARPACK round and no check for missed '
                               'copies)', _integer(1), 'arpack'),
    'oversample': SolverOption('None or an integer >= 0', _or_none(_integer(0)), 'arpack'),
    'dtype': SolverOption('None, torch.float32 or torch.float64',
                          _one_of(None, torch.float32, torch.float64), 'arpack'),
    'shift_invert': SolverOption('None, True or False', _one_of(None, True, False), 'arpack'),
}
NEURALSVD_OPTIONS: dict[str, SolverOption] = {
    'steps': SolverOption('an integer >= 1', _integer(1), 'fit'),
    'tol': SolverOption('None or a finite number >= 0 (Ritz residuals relative to the '
                        'spectral bound)', _or_none(_real(False)), 'fit'),
    'check_every': SolverOption('an integer >= 1', _integer(1), 'fit'),
    'lr': SolverOption('None or a finite number > 0', _or_none(_real(True)), 'fit'),
    'progress': SolverOption('True or False', _one_of(True, False), 'fit'),
    'nesting': SolverOption("'joint' or 'sequential'", _one_of('joint', 'sequential'), 'init'),
    'optimizer': SolverOption("None, 'sgd' or 'adam'", _one_of(None, 'sgd', 'adam'), 'init'),
    'momentum': SolverOption('None or a finite number >= 0', _or_none(_real(False)), 'init'),
    'grad_clip': SolverOption('None or a finite number > 0', _or_none(_real(True)), 'init'),
    'step_scale': SolverOption('None or a finite number > 0', _or_none(_real(True)), 'init'),
    'oversample': SolverOption('None or an integer >= 0', _or_none(_integer(0)), 'init'),
    'ritz_restart': SolverOption('True or False', _one_of(True, False), 'init'),
}
_SMALLEST = "AddNeuralSVDPE returns the k smallest non-trivial eigenpairs of the Laplacian, always"
_SHIFT_INVERT = ("shift-invert is chosen by arpack_options={'shift_invert': True}, its pole "
                 "fixed just below the spectrum")
_SEEDED = "the starting vectors are drawn from the transform's seed="
_FREE_TABLE = ("the transform fits a free table per graph; a learned encoder is passed as "
               "encoder=PEEncoder(...)")
# solver arguments that would change what the transform returns
CONTRACT_KEYS: dict[str, str] = {
    'k': "the number of eigenpairs is the transform's k", 'which': _SMALLEST,
    'largest': _SMALLEST, 'sigma': _SHIFT_INVERT, 'OPinv': _SHIFT_INVERT, 'mode': _SHIFT_INVERT,
    'M': "a generalised eigenproblem is not the Laplacian's",
    'Minv': "a generalised eigenproblem is not the Laplacian's",
    'v0': _SEEDED, 'init': _SEEDED, 'seed': "it is the transform's own seed= argument",
    'return_eigenvectors': 'the encoding is the eigenvectors',
    'refine': 'the closing Rayleigh-Ritz step orders the pairs and is always on',
    'svd': 'the Laplacian is symmetric: the eigenvalue form is used',
    'model': _FREE_TABLE, 'inputs': _FREE_TABLE,
}


def check_method(method: object, choices: tuple, optional: bool = False) -> None:
    r"""Raises :class:`ValueError` unless :obj:`method` is one of
    :obj:`choices` (or :obj:`None` where :obj:`optional`). SciPy's
    :func:`~scipy.sparse.linalg.eigsh` (ARPACK) is named :obj:`'arpack'`
    throughout the package, so :obj:`'eigsh'` gets that name in the error."""
    if optional and method is None or method in choices:
        return
    also = ' or None' if optional else ''
    hint = (" (SciPy's eigsh, ARPACK, is method='arpack' in this package)"
            if method == 'eigsh' and 'arpack' in choices else '')
    raise ValueError(f"method must be one of {choices}{also}, got {method!r}{hint}")


def check_solver_options(argument: str, options: Mapping[str, Any] | None,
                         table: Mapping[str, SolverOption]) -> dict[str, Any]:
    r"""A copy of :obj:`options` (:obj:`{}` for :obj:`None`) once every key is
    an option of :obj:`table` (:obj:`ARPACK_OPTIONS` or :obj:`NEURALSVD_OPTIONS`)
    and every value of the kind it needs. :obj:`argument` names the options
    in the errors: :class:`TypeError` when they are not a mapping,
    :class:`ValueError` for a key of :obj:`CONTRACT_KEYS` (with the reason),
    an unknown key (with the allowed ones) or a bad value."""
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise TypeError(f"{argument} must be a dict of options or None, got "
                        f"{type(options).__name__}")
    allowed = ', '.join(table)
    for key, value in options.items():
        if key in CONTRACT_KEYS:
            raise ValueError(f"{argument}[{key!r}] cannot be set: {CONTRACT_KEYS[key]}. "
                             f"Its options are: {allowed}")
        if key not in table:
            raise ValueError(f"{argument} has no option {key!r}; its options are: {allowed}")
        if not table[key].check(value):
            raise ValueError(f"{argument}: {key} must be {table[key].expected}, got {value!r}")
    return dict(options)
