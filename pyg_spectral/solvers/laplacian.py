"""The smallest non-trivial Laplacian eigenpairs of every graph of a batch,
by three solvers: batched dense :func:`torch.linalg.eigh` on padded blocks
(small graphs), NeuralSVD (sparse, any device) and ARPACK (sparse, CPU).

All work on :class:`LaplacianProblem`, the Laplacian of a batch with its
zero eigenspace deflated (:class:`~pyg_spectral.operators.nullspace.DeflatedLaplacian`),
and return, for the graphs they are given, the :obj:`q[g]` smallest
eigenpairs of the deflated Laplacian, i.e. the non-zero part of the spectrum.
"""
from __future__ import annotations

import contextlib
import math
import numbers
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.csgraph import reverse_cuthill_mckee
from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator as ScipyOperator, eigsh, splu
from torch import Tensor

from torch_geometric.utils import coalesce, to_torch_csr_tensor

from ..operators import GraphOperator
from ..operators.nullspace import COMPONENT_EIGENVALUE, DeflatedLaplacian, NullSpace
from .neuralsvd import NeuralSVD


@dataclass
class LaplacianProblem:
    r"""The Laplacian of a batch of graphs and what the solvers need.

    Attributes:
        laplacian: the whole (block-diagonal) Laplacian.
        null: its zero eigenspace.
        batch: :obj:`[n]` graph of every node (sorted).
        ptr: :obj:`[G + 1]` node offsets of the graphs.
        q: :obj:`[G]` number of non-zero eigenpairs wanted per graph.
        shift: where the zero eigenvalues are moved (above the spectrum).
    """
    laplacian: GraphOperator
    null: NullSpace
    batch: Tensor
    ptr: Tensor
    q: Tensor
    shift: float

    @property
    def num_graphs(self) -> int:
        return self.ptr.numel() - 1

    def sizes(self) -> Tensor:
        return self.ptr[1:] - self.ptr[:-1]

    def graph_operator(self, g: int) -> DeflatedLaplacian:
        r"""The deflated Laplacian of graph :obj:`g` alone (a view of its rows)."""
        if self.num_graphs == 1:
            return DeflatedLaplacian(self.laplacian, self.null, self.shift)
        a, b = int(self.ptr[g]), int(self.ptr[g + 1])
        M = self.laplacian.matrix
        crow = M.crow_indices()[a:b + 1]
        lo, hi = int(crow[0]), int(crow[-1])
        sub = torch.sparse_csr_tensor(crow - lo, M.col_indices()[lo:hi] - a, M.values()[lo:hi],
                                      size=(b - a, b - a))
        op = GraphOperator(sub, self.laplacian.kind, self.laplacian.spectral_bounds())
        n = self.null
        comps, labels = torch.unique(n.labels[a:b], return_inverse=True)
        null = NullSpace(labels, torch.zeros_like(comps), n.rank[comps], n.basis[a:b],
                         n.sqrt_mass[a:b], n.volume[comps], n.count[g:g + 1])
        return DeflatedLaplacian(op, null, self.shift)


@contextlib.contextmanager
def _threads(num: int):
    r"""Runs a block with :obj:`num` intra-op threads. LAPACK gains nothing
    from threads on tiny matrices, and on a loaded machine its threads spin
    on busy cores: a batch of 32x32 eigh runs ~50x slower with 2 threads
    than with 1 here (see benchmarks/RESULTS.md, section 4)."""
    before = torch.get_num_threads()
    torch.set_num_threads(num)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _buckets(sizes: Tensor, graphs: Tensor, granularity: int = 4,
             max_entries: int = 1 << 24) -> list[tuple[Tensor, int]]:
    r"""Groups graphs of similar size into padded blocks of at most
    :obj:`max_entries` matrix entries: :obj:`(graph ids, padded size)`."""
    padded = ((sizes[graphs] + granularity - 1) // granularity) * granularity
    out = []
    for size in torch.unique(padded).tolist():
        ids = graphs[padded == size]
        per_chunk = max(1, max_entries // (size * size))
        out.extend((chunk, size) for chunk in ids.split(per_chunk))
    return out


def solve_exact(problem: LaplacianProblem, graphs: Tensor, vectors: Tensor,
                values: Tensor) -> None:
    r"""Dense :func:`torch.linalg.eigh` on padded blocks of the deflated
    Laplacians of :obj:`graphs`; writes the :obj:`q[g]` smallest eigenpairs
    into :obj:`vectors` :obj:`[n, r]` and :obj:`values` :obj:`[G, r]`.

    Every block is built with one scatter of the Laplacian's entries and the
    deflation :math:`s\,u u^T` restricted to each component (isolated nodes
    have :math:`u = 0`), so the cost is the batched :obj:`eigh` and a few
    passes over the blocks, with no per-graph work."""
    if graphs.numel() == 0:
        return
    M, null, ptr, batch = problem.laplacian.matrix, problem.null, problem.ptr, problem.batch
    device = batch.device
    n = batch.numel()
    crow = M.crow_indices()
    row = torch.repeat_interleave(torch.arange(n, device=device), crow[1:] - crow[:-1])
    col, weight = M.col_indices(), M.values()
    local = torch.arange(n, device=device) - ptr[batch]
    sizes, r = problem.sizes(), vectors.size(1)
    pad_value = 2 * problem.shift  # padding rows sort after the deflated zeros
    for ids, size in _buckets(sizes, graphs):
        B = ids.numel()
        block_of = torch.full((problem.num_graphs,), -1, dtype=torch.long, device=device)
        block_of[ids] = torch.arange(B, device=device)
        node_block = block_of[batch]
        nodes = (node_block >= 0).nonzero().view(-1)
        edges = (node_block[row] >= 0).nonzero().view(-1)
        dense = weight.new_zeros(B, size, size)
        # the CSR matrix has no duplicate entries: plain assignment
        dense.view(-1)[(node_block[row[edges]] * size + local[row[edges]]) * size
                       + local[col[edges]]] = weight[edges]
        u = weight.new_zeros(B, size)
        u[node_block[nodes], local[nodes]] = null.basis[nodes]
        # elementwise, not a batched matmul: baddbmm's rounding depends on
        # the batch size, and a graph must get the same bits (hence the same
        # basis inside a repeated eigenvalue) in any batch as alone
        outer = u[:, :, None] * u[:, None, :]
        if int(null.count[ids].max()) > 1:  # P_0 is block-diagonal over the components
            label = torch.full((B, size), -1, dtype=torch.long, device=device)
            label[node_block[nodes], local[nodes]] = null.labels[nodes]
            outer *= label[:, :, None] == label[:, None, :]
        dense.add_(outer, alpha=problem.shift)
        pad = torch.arange(size, device=device)[None, :] >= sizes[ids][:, None]
        dense.diagonal(dim1=1, dim2=2).add_(pad * pad_value)
        with _threads(1) if size <= 128 and dense.device.type == 'cpu' else contextlib.nullcontext():
            evals, evecs = torch.linalg.eigh(dense)
        t = min(r, size)
        keep = torch.arange(t, device=device)[None, :] < problem.q[ids][:, None]
        values[ids, :t] = torch.where(keep, evals[:, :t], torch.zeros_like(evals[:, :t]))
        picked = evecs[node_block[nodes], local[nodes], :t]
        vectors[nodes, :t] = picked * keep[node_block[nodes]]


def _problem_seed(seed: int | None, g: int) -> int | None:
    return None if seed is None else seed * 1_000_003 + g


class SolverOption(NamedTuple):
    r"""One option a solver takes from :class:`~pyg_spectral.transforms.AddNeuralSVDPE`:
    what its value must be (said in errors), the test of it, and where it
    goes (:obj:`'init'`: :class:`NeuralSVD`, :obj:`'fit'`: :meth:`NeuralSVD.fit`,
    :obj:`'arpack'`: :func:`solve_arpack`)."""
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


# The options are listed, not read from the solvers' signatures: a parameter
# added to NeuralSVD or eigsh is not a transform option until it is written
# here, and those that would change what the transform returns are refused
# (CONTRACT_KEYS) instead of being passed on.
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


def solve_neuralsvd(problem: LaplacianProblem, g: int, seed: int | None,
                    device: torch.device | None, **options: Any) -> tuple[Tensor, Tensor]:
    r"""NeuralSVD (free table, Nesterov SGD with Rayleigh-Ritz restarts) on
    the deflated Laplacian of graph :obj:`g`, on :obj:`device`; returns
    :obj:`(vectors [n_g, q], values [q])` ascending. :obj:`options`: those of
    :obj:`NEURALSVD_OPTIONS`, passed to :class:`~pyg_spectral.solvers.NeuralSVD`
    or its :meth:`fit` (defaults :obj:`NEURALSVD_DEFAULTS`). Raises
    :class:`NeuralSVDNoConvergence` when :obj:`tol` (not :obj:`None`) was
    not met within :obj:`steps`."""
    options = check_solver_options('solve_neuralsvd options', options, NEURALSVD_OPTIONS)
    q = int(problem.q[g])
    op = problem.graph_operator(g)
    if device is not None:
        op = op.to(device)
    init_kw = {key: v for key, v in options.items() if NEURALSVD_OPTIONS[key].target == 'init'}
    fit_kw = {key: v for key, v in options.items() if NEURALSVD_OPTIONS[key].target == 'fit'}
    fit_kw = {**NEURALSVD_DEFAULTS, 'progress': False, **fit_kw}
    with warnings.catch_warnings():  # the transform words its own warning
        warnings.filterwarnings('ignore', 'NeuralSVD did not reach', RuntimeWarning)
        result = NeuralSVD(q, seed=_problem_seed(seed, g), **init_kw).fit(
            op, largest=False, refine=True, **fit_kw)
    if fit_kw['tol'] is not None and not result.converged:
        raise NeuralSVDNoConvergence(g, op.shape[0], result.steps, fit_kw['tol'],
                                     result.eigenvectors, result.eigenvalues)
    return result.eigenvectors, result.eigenvalues


# The check for missed copies needs only the smallest eigenvalue of the
# operator with the found pairs deflated, and only whether it lies below the
# q-th found value: a Ritz value is an upper bound of the smallest eigenvalue,
# and its error is about the square of its residual (<= PROBE_TOL relative),
# so a loose tolerance decides it, at a fraction of a full round at `tol`.
PROBE_TOL = 1e-3
# A float32 first round is kept when the Davis-Kahan bound on its subspace
# error is at most the accuracy contract's subspace sine; otherwise the graph
# is solved again in float64. The bound is pessimistic (it charges the whole
# residual to the gap), so it certifies less often than it could.
CERTIFIED_SINE = 1e-2
# Restarts granted to plain Lanczos before `shift_invert=None` gives up on it
# for shift-invert: about twice what PubMed needs (43-44 from seed 0,
# benchmarks/RESULTS.md section 3.5), while on a large mesh-like graph (the
# 1e5-node RGG of section 4, whose low end is clustered) SciPy's plain
# Lanczos finds nothing within 60 s.
LANCZOS_RESTARTS = 100
# A graph whose RCM envelope ratio is at most this times sqrt(n) is taken
# for a planar mesh and solved by shift-invert from the start: its low end is
# a cluster that plain Lanczos resolves slowly or not at all, and its LU stays
# sparse. Measured (`pe_speed.py --sections modes`, benchmarks/RESULTS.md
# section 4): 0.11-0.14 on random geometric and kNN meshes of 2e3-1e5 nodes
# (shift-invert 1.5-18x faster than plain Lanczos); 0.65-2.1 on Cora's and
# CiteSeer's largest components, Erdos-Renyi graphs and PubMed, 3.5-8.7 on
# block models (there shift-invert is 3.6-34x slower or gives no answer
# within 60 s, except on the two small Planetoid components).
MESH_ENVELOPE = 0.3
# Shift-invert pole, relative to the spectral bound: just below the deflated
# zero eigenvalues, so that the smallest non-zero ones become the largest
# and best separated eigenvalues of the inverse, however small they are.
SHIFT_INVERT_SIGMA = -1e-6


def envelope_ratio(matrix: sp.csr_matrix) -> float:
    r"""The envelope (profile) of a symmetric sparse matrix after reverse
    Cuthill-McKee ordering, per stored entry: the fill that a factorization
    confined to the envelope could create, relative to the matrix; linear in
    the entries. It grows like :math:`\sqrt n` on planar meshes
    (RCM bandwidth) and like :math:`n` on graphs that expand well."""
    n = matrix.shape[0]
    if matrix.nnz == 0:
        return 0.0
    position = np.empty(n, dtype=np.int64)
    position[reverse_cuthill_mckee(matrix, symmetric_mode=True)] = np.arange(n)
    counts = np.diff(matrix.indptr)
    leftmost = position.copy()
    rows = counts > 0
    leftmost[rows] = np.minimum(leftmost[rows], np.minimum.reduceat(
        position[matrix.indices], matrix.indptr[:-1][rows]))
    return float((position - leftmost).sum() / matrix.nnz)


def is_mesh_like(matrix: Tensor) -> bool:
    r"""Whether a sparse CSR Laplacian :obj:`[n, n]` (any device) looks like
    a planar mesh: :func:`envelope_ratio` at most :obj:`MESH_ENVELOPE`
    :math:`\sqrt n`. Such a graph has a clustered low end and a sparse LU."""
    matrix = matrix.cpu()
    n = matrix.size(0)
    csr = sp.csr_matrix((matrix.values().numpy(), matrix.col_indices().numpy(),
                         matrix.crow_indices().numpy()), shape=(n, n))
    return envelope_ratio(csr) <= MESH_ENVELOPE * n ** 0.5


def solve_arpack(problem: LaplacianProblem, g: int, seed: int | None,
                 oversample: int | None = None, max_rounds: int = 8,
                 dtype: torch.dtype | None = None, shift_invert: bool | None = None,
                 tol: float = 1e-8, ncv: int | None = None,
                 maxiter: int | None = None) -> tuple[Tensor, Tensor]:
    r"""SciPy's ARPACK (:func:`scipy.sparse.linalg.eigsh`, CPU) on the
    deflated Laplacian of graph :obj:`g`, started from seeded vectors so that
    the result is reproducible; returns :obj:`(vectors [n_g, q], values [q])`.
    :obj:`tol`, :obj:`ncv` and :obj:`maxiter` go to :func:`eigsh` (the
    rounds that find the pairs; :obj:`None`: SciPy's default). The options
    are those of :obj:`ARPACK_OPTIONS`.

    A single-vector Krylov method sees one direction per eigenspace: on a
    64-cycle, whose eigenvalues are all double, plain ARPACK returned one copy
    of each and no warning. So after the first round a cheap probe (one
    eigenvalue, tolerance :obj:`PROBE_TOL`) looks for an eigenvalue below
    the :obj:`q`-th found one on the operator with the found pairs also
    deflated; while it finds one, a full round recovers the missed copies
    (they are then the smallest left) from a fresh start. :obj:`max_rounds=1`
    skips the probe and trusts ARPACK, as PyG does. The first round computes
    :obj:`oversample` extra pairs (default 0).

    :obj:`dtype` is the precision of the first round, the expensive one,
    and of the probe (recovery rounds run in float64). A float32 probe
    cannot tell a copy missed within about 3e-4 (relative) below the q-th
    value from the q-th value itself. With :obj:`dtype=None`, the gap in the
    bound below is then that small too; the bound fails, and the float64
    re-solve probes again in float64. :obj:`torch.float64`;
    :obj:`torch.float32`, PyG's precision (its Laplacian is float32),
    faster, with a subspace error near float32's resolution rather than
    float64's, too coarse for tightly clustered low ends (large meshes); or :obj:`None`
    (default): float32, refined by a float64 Rayleigh-Ritz step and kept
    only if the Davis-Kahan bound :math:`\|LV - V\Lambda\|_F /
    (\lambda_{q+1} - \lambda_q)` is at most :obj:`CERTIFIED_SINE`
    (:math:`\lambda_{q+1}`: an oversampled Ritz value or the probe's), else
    solved again in float64 (float64 from the start with
    :obj:`max_rounds=1`: no probe, no bound).

    :obj:`shift_invert`: :obj:`True` runs every round on the inverse of the
    deflated Laplacian shifted just below zero (one sparse LU of
    :math:`L - \sigma I`, in float64; the deflated directions are projected
    out, exactly so for the zero eigenspace, up to their residuals for the
    pairs already found):
    eigenvalues that are tiny and close for Lanczos (relative to the
    spectrum's width) are well separated after inversion; :obj:`False` never
    does; :obj:`None` (default) decides by structure, then by progress: a
    graph whose :func:`envelope_ratio` is at most :obj:`MESH_ENVELOPE`
    :math:`\sqrt n` (a planar mesh, a path, a cycle: a sparse LU and a
    clustered low end) goes to shift-invert at once; any other gets plain
    Lanczos with :obj:`LANCZOS_RESTARTS` restarts in its first round, and
    shift-invert when they run out. On a well-expanding graph plain Lanczos
    converges within the budget and no LU is formed (on PubMed the LU would
    cost several times the whole plain solve). An explicit :obj:`maxiter`
    is honoured as the budget."""
    eigsh_options = dict(tol=tol, **{key: v for key, v in dict(ncv=ncv, maxiter=maxiter).items()
                                     if v is not None})
    # zero rounds or a negative oversample compute nothing and would return zeros
    check_solver_options('solve_arpack', dict(
        oversample=oversample, max_rounds=max_rounds, dtype=dtype, shift_invert=shift_invert,
        **eigsh_options), ARPACK_OPTIONS)
    q = int(problem.q[g])
    op = problem.graph_operator(g).to('cpu', torch.float64)
    M = op.laplacian.matrix
    n = M.size(0)
    # ARPACK spends half its time in products with L. SciPy's (1.17) COO
    # product is faster than its CSR one, and fastest in column order (here
    # the rows and columns of the row-sorted CSR swapped: the same symmetric
    # matrix), where consecutive terms update different outputs.
    # (built per precision: .astype would sort the entries back into row order)
    coords = (M.col_indices().numpy(), np.repeat(np.arange(n), np.diff(M.crow_indices().numpy())))

    def laplacian(real: type) -> sp.coo_matrix:
        return sp.coo_matrix((M.values().numpy().astype(real), coords), shape=(n, n))
    L = laplacian(np.float64)
    if shift_invert is None and is_mesh_like(M):
        shift_invert = True
    # the bound needs the probe; a shift-invert round runs in float64 anyway
    certify = dtype is None and max_rounds > 1 and not shift_invert
    first = np.float64 if shift_invert else \
        np.float32 if dtype == torch.float32 or certify else np.float64
    null = op.null
    N = sp.csr_matrix((null.basis.numpy(), (np.arange(n), null.labels.numpy())),
                      shape=(n, null.num_components))
    # few components: one dense block with the locked vectors (ARPACK calls
    # apply() hundreds of times per solve, so per-call overhead counts)
    dense_null = N.toarray() if null.num_components <= 64 else np.zeros((n, 0))
    NT = N.T.tocsr()

    def deflated(locked: np.ndarray, real: type) -> ScipyOperator:
        r""":math:`L + s P` with :math:`P` the projector onto the null space
        and the orthonormal columns of :obj:`locked`, in precision :obj:`real`."""
        Lr, locked = laplacian(real), np.concatenate([dense_null, locked], 1).astype(real)

        def apply(X: np.ndarray) -> np.ndarray:
            out = Lr @ X + op.shift * (locked @ (locked.T @ X))
            return out if dense_null.shape[1] else out + op.shift * (N @ (NT @ X))
        return ScipyOperator((n, n), matvec=apply, matmat=apply, dtype=real)

    sigma = SHIFT_INVERT_SIGMA * op.laplacian.spectral_bounds()[1]
    lu = splu(sp.csc_matrix(L - sigma * sp.identity(n))) if shift_invert else None

    def deflated_inverse(locked: np.ndarray) -> ScipyOperator:
        r""":math:`(L + s P - \sigma I)^{-1} = (I - P)(L - \sigma I)^{-1}(I - P)
        + P / (s - \sigma)`, as :math:`P` projects onto (approximate)
        eigenvectors of :math:`L`."""
        locked = np.concatenate([dense_null, locked], 1)

        def split(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            inside = locked @ (locked.T @ X)
            if not dense_null.shape[1]:
                inside = inside + N @ (NT @ X)
            return X - inside, inside

        def apply(X: np.ndarray) -> np.ndarray:
            outside, inside = split(X)
            return split(lu.solve(outside))[0] + inside / (op.shift - sigma)
        return ScipyOperator((n, n), matvec=apply, matmat=apply, dtype=np.float64)

    def solve(locked: np.ndarray, real: type, **options):
        if not shift_invert:
            return eigsh(deflated(locked, real), **options)
        # in shift-invert mode eigsh takes only the shape and dtype of A
        inverse = deflated_inverse(locked)
        return eigsh(inverse, **{**options, 'sigma': sigma, 'which': 'LM', 'OPinv': inverse})

    generator = torch.Generator().manual_seed(s) if (s := _problem_seed(seed, g)) is not None else None
    options = {'which': 'SA', **eigsh_options}
    extra = 0 if oversample is None else oversample
    found_vectors, found_values = np.zeros((n, 0)), np.zeros(0)
    probe = None  # the smallest eigenvalue left once nothing was missed
    for round_ in range(max_rounds):
        real = first if round_ == 0 else np.float64
        v0 = torch.randn(n, generator=generator, dtype=torch.float64).numpy().astype(real)
        wanted = min((q + extra) if round_ == 0 else max(4, q // 2),
                     n - 2 - found_vectors.shape[1])
        if wanted <= 0:
            break
        bound = found_values[q - 1] if found_values.size >= q else np.inf
        slack = max(options['tol'], np.finfo(real).eps ** 0.5) * max(1.0, abs(bound))
        if round_:
            smallest = solve(found_vectors, first, k=1, v0=v0.astype(first), which='SA',
                             tol=PROBE_TOL, return_eigenvectors=False)[0]
            if smallest >= bound - slack:
                probe = smallest
                break
        # below float32's epsilon ARPACK's tolerance cannot be met
        round_options = {**options, 'tol': max(options['tol'], np.finfo(real).eps)} \
            if real is np.float32 and options['tol'] > 0 else options
        if round_ == 0 and shift_invert is None:
            round_options = {'maxiter': LANCZOS_RESTARTS, **round_options}
        try:
            if round_ == 0 and null.num_components == 1 and not shift_invert:
                # connected: the plain sparse matrix (ARPACK's matvecs stay in C,
                # ~5x faster on PubMed) and one more pair, the simple trivial one
                values, vectors = eigsh(laplacian(real), k=wanted + 1, v0=v0, **round_options)
                trivial = np.argmax(np.abs(dense_null[:, 0] @ vectors))
                values, vectors = np.delete(values, trivial), np.delete(vectors, trivial, 1)
            else:
                values, vectors = solve(found_vectors, real, k=wanted, v0=v0, **round_options)
        except ArpackNoConvergence:
            if round_ or shift_invert is not None:
                raise
            return solve_arpack(problem, g, seed, oversample, max_rounds, dtype, True, **eigsh_options)
        if real is np.float32:  # float64 Ritz pairs of the float32 span
            vectors = np.linalg.qr(vectors.astype(np.float64))[0]
            values, rotation = np.linalg.eigh(vectors.T @ (L @ vectors))
            vectors = vectors @ rotation
        new = values < bound - slack if round_ else values < np.inf
        if not new.any():
            break
        found_values = np.concatenate([found_values, values[new]])
        found_vectors = np.concatenate([found_vectors, vectors[:, new]], 1)
        order = np.argsort(found_values)[:q + extra]
        found_values, found_vectors = found_values[order], found_vectors[:, order]
    order = np.argsort(found_values)
    # the eigenvalue after the q-th: an oversampled Ritz value, else the probe's
    following = found_values[order[q]] if order.size > q else probe
    found_values, found_vectors = found_values[order[:q]], found_vectors[:, order[:q]]
    if certify:
        residual = np.linalg.norm(L @ found_vectors - found_vectors * found_values)
        gap = -np.inf if following is None else following * (1 - PROBE_TOL) - found_values[-1]
        if not residual <= CERTIFIED_SINE * gap:
            return solve_arpack(problem, g, seed, oversample, max_rounds, torch.float64,
                                shift_invert, **eigsh_options)
    return torch.from_numpy(np.ascontiguousarray(found_vectors)), torch.from_numpy(found_values)


# Up to this size the layer's exact basis is one dense float64 eigh; above it
# ARPACK with the recovery rounds of solve_arpack (30x faster on Cora, k = 64)
DENSE_NODES = 1024
COMPONENT_SOLVERS = ('eigh', 'eigsh')


@torch.no_grad()
def nontrivial_eigenpairs(operator: GraphOperator, null: NullSpace, k: int,
                          method: str | None = None, seed: int = 0) -> tuple[Tensor, Tensor]:
    r"""The :obj:`k` eigenpairs of a symmetric graph matrix next to its
    component space :obj:`null` (:meth:`NullSpace.of_operator`), i.e. the
    top :obj:`k` of :obj:`'gcn'` / :obj:`'sym_adjacency'` after eigenvalue 1,
    or the bottom :obj:`k` of a Laplacian after 0: the repeated eigenvalue is
    deflated in closed form and the rest solved by the PE transform's
    solvers, which are right on clustered and repeated eigenvalues.

    Args:
        operator: the graph matrix (a :class:`GraphOperator` of a kind in
            :obj:`COMPONENT_EIGENVALUE`).
        null: its component space.
        k: number of eigenpairs, at most :math:`n -` :obj:`null.dim`.
        method: :obj:`'eigh'` (dense, float64), :obj:`'eigsh'` (ARPACK,
            float64, CPU) or :obj:`None` (:obj:`'eigh'` up to
            :obj:`DENSE_NODES` nodes).
        seed: ARPACK's starting vectors.

    Returns:
        :obj:`(vectors [n, k], values [k])` on the operator's device and
        dtype, ordered from the wanted end (descending for adjacencies).
    """
    if operator.kind not in COMPONENT_EIGENVALUE:
        raise ValueError(f"operator must be of a kind in {tuple(COMPONENT_EIGENVALUE)}, "
                         f"got kind={operator.kind!r}")
    if method is not None and method not in COMPONENT_SOLVERS:
        raise ValueError(f"method must be one of {COMPONENT_SOLVERS} or None, got {method!r}")
    n = operator.num_nodes
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= n - null.dim:
        raise ValueError(f"k must be an integer in [1, {n - null.dim}] (the {n} nodes minus "
                         f"the {null.dim} component directions), got {k!r}")
    device, dtype = operator.device, operator.dtype
    M = operator.matrix.detach().to('cpu', torch.float64)
    crow, col, values = M.crow_indices(), M.col_indices(), M.values()
    row = torch.repeat_interleave(torch.arange(n), crow[1:] - crow[:-1])
    adjacency = COMPONENT_EIGENVALUE[operator.kind] == 1.0
    if adjacency:  # the smallest of I - A are the largest of A
        nodes = torch.arange(n)
        edges = torch.cat([torch.stack([row, col]), torch.stack([nodes, nodes])], 1)
        edges, values = coalesce(edges, torch.cat([-values, torch.ones(n, dtype=values.dtype)]), n)
        with warnings.catch_warnings():
            warnings.filterwarnings('ignore', message='Sparse (CSR tensor support|invariant checks)')
            M = to_torch_csr_tensor(edges, values, size=(n, n), is_coalesced=True)
        bounds = (0.0, 2.0)
    else:
        bounds = operator.spectral_bounds()
    laplacian = GraphOperator(M, 'sym_laplacian', bounds)
    problem = LaplacianProblem(laplacian, null.to('cpu', torch.float64),
                               torch.zeros(n, dtype=torch.long), torch.tensor([0, n]),
                               torch.tensor([k]), 1.05 * bounds[1] or 1.0)
    if method == 'eigh' or (method is None and n <= DENSE_NODES):
        vectors, found = torch.zeros(n, k, dtype=torch.float64), torch.zeros(1, k, dtype=torch.float64)
        solve_exact(problem, torch.tensor([0]), vectors, found)
        found = found[0]
    else:
        vectors, found = solve_arpack(problem, 0, seed)
    if adjacency:
        found = 1.0 - found
    return vectors.to(device, dtype), found.to(device, dtype)
