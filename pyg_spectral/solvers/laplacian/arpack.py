r"""SciPy's ARPACK (:func:`scipy.sparse.linalg.eigsh`, CPU) as a solver of
the PE transform: one graph at a time, seeded, with recovery rounds for the
copies of repeated eigenvalues that a single-vector Krylov method misses,
float32 where an error bound certifies it, and shift-invert for mesh-like
graphs."""
from __future__ import annotations

import enum

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as sla
import torch
from scipy.sparse.linalg import ArpackNoConvergence, eigsh, splu
from torch import Tensor

from ...linalg import rayleigh_ritz
from .options import ARPACK_OPTIONS, check_solver_options
from .problem import GraphProblem

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
# for shift-invert: about twice what PubMed needs (43-44 from seed 0), while
# on a large mesh-like graph (a 1e5-node random geometric graph, whose low
# end is clustered) SciPy's plain Lanczos finds nothing within 60 s.
LANCZOS_RESTARTS = 100
# A graph whose RCM envelope ratio is at most this times sqrt(n) is taken
# for a planar mesh and solved by shift-invert from the start: its low end is
# a cluster that plain Lanczos resolves slowly or not at all, and its LU stays
# sparse. Measured by `benchmarks/pe_speed.py --sections modes`: 0.11-0.14 on
# random geometric and kNN meshes of 2e3-1e5 nodes
# (shift-invert 1.5-18x faster than plain Lanczos); 0.65-2.1 on Cora's and
# CiteSeer's largest components, Erdos-Renyi graphs and PubMed, 3.5-8.7 on
# block models (there shift-invert is 3.6-34x slower or gives no answer
# within 60 s, except on the two small Planetoid components).
MESH_ENVELOPE = 0.3
# Shift-invert pole, relative to the spectral bound: just below the deflated
# zero eigenvalues, so that the smallest non-zero ones become the largest
# and best separated eigenvalues of the inverse, however small they are.
SHIFT_INVERT_SIGMA = -1e-6


def is_mesh_like(graph: GraphProblem) -> bool:
    r"""Whether a graph looks like a planar mesh: the
    :func:`~pyg_spectral.solvers.laplacian.envelope_ratio` of its Laplacian
    is at most :obj:`MESH_ENVELOPE` :math:`\sqrt n`. Such a graph has a
    clustered low end and a sparse LU."""
    return graph.envelope_ratio <= MESH_ENVELOPE * graph.num_nodes ** 0.5


class _System:
    r"""The SciPy forms of one graph's deflated Laplacian, built once and
    shared by every round and fallback of :func:`solve_arpack`."""

    def __init__(self, graph: GraphProblem) -> None:
        csr = graph.scipy_laplacian
        n = self.n = csr.shape[0]
        self.shift = graph.operator.shift
        self.sigma = SHIFT_INVERT_SIGMA * graph.operator.laplacian.spectral_bounds()[1]
        # ARPACK spends half its time in products with L. SciPy's (1.17) COO
        # product is faster than its CSR one, and fastest in column order (here
        # the rows and columns of the row-sorted CSR swapped: the same symmetric
        # matrix), where consecutive terms update different outputs.
        self._coords = (csr.indices, np.repeat(np.arange(n), np.diff(csr.indptr)))
        self._values = csr.data
        self._laplacians: dict[type, sp.coo_matrix] = {}
        self._lu = None
        null = graph.operator.null.to('cpu', torch.float64)
        self.num_components = null.num_components
        self.N = sp.csr_matrix((null.basis.numpy(), (np.arange(n), null.labels.numpy())),
                               shape=(n, null.num_components))
        # few components: one dense block with the locked vectors (ARPACK calls
        # apply() hundreds of times per solve, so per-call overhead counts)
        self.dense_null = self.N.toarray() if null.num_components <= 64 else np.zeros((n, 0))
        self.NT = self.N.T.tocsr()

    def laplacian(self, real: type) -> sp.coo_matrix:
        r""":math:`L` in precision :obj:`real` (built once per precision:
        :meth:`astype` would sort the entries back into row order)."""
        if real not in self._laplacians:
            self._laplacians[real] = sp.coo_matrix((self._values.astype(real), self._coords),
                                                   shape=(self.n, self.n))
        return self._laplacians[real]

    def deflated(self, locked: np.ndarray, real: type) -> sla.LinearOperator:
        r""":math:`L + s P` with :math:`P` the projector onto the null space
        and the orthonormal columns of :obj:`locked`, in precision :obj:`real`."""
        Lr, shift, N, NT = self.laplacian(real), self.shift, self.N, self.NT
        dense = self.dense_null.shape[1] > 0
        locked = np.concatenate([self.dense_null, locked], 1).astype(real)

        def apply(X: np.ndarray) -> np.ndarray:
            out = Lr @ X + shift * (locked @ (locked.T @ X))
            return out if dense else out + shift * (N @ (NT @ X))
        return sla.LinearOperator((self.n, self.n), matvec=apply, matmat=apply, dtype=real)

    def deflated_inverse(self, locked: np.ndarray) -> sla.LinearOperator:
        r""":math:`(L + s P - \sigma I)^{-1} = (I - P)(L - \sigma I)^{-1}(I - P)
        + P / (s - \sigma)`, as :math:`P` projects onto (approximate)
        eigenvectors of :math:`L`; one sparse LU of :math:`L - \sigma I`,
        formed on first use."""
        if self._lu is None:
            L = self.laplacian(np.float64)
            self._lu = splu(sp.csc_matrix(L - self.sigma * sp.identity(self.n)))
        lu, shift, sigma, N, NT = self._lu, self.shift, self.sigma, self.N, self.NT
        dense = self.dense_null.shape[1] > 0
        locked = np.concatenate([self.dense_null, locked], 1)

        def split(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            inside = locked @ (locked.T @ X)
            if not dense:
                inside = inside + N @ (NT @ X)
            return X - inside, inside

        def apply(X: np.ndarray) -> np.ndarray:
            outside, inside = split(X)
            return split(lu.solve(outside))[0] + inside / (shift - sigma)
        return sla.LinearOperator((self.n, self.n), matvec=apply, matmat=apply, dtype=np.float64)

    def eigsh(self, locked: np.ndarray, real: type, shift_invert: bool | None, **options):
        r""":func:`eigsh` on the deflated Laplacian with :obj:`locked` also
        deflated, plain or in shift-invert mode (:obj:`options` include the
        seeded :obj:`rng`, see :func:`_attempt`)."""
        if not shift_invert:
            return eigsh(self.deflated(locked, real), **options)
        # in shift-invert mode eigsh takes only the shape and dtype of A
        inverse = self.deflated_inverse(locked)
        return eigsh(inverse, **{**options, 'sigma': self.sigma, 'which': 'LM',
                                 'OPinv': inverse})


class _Fallback(enum.Enum):
    r"""Why an attempt of :func:`solve_arpack` gave no answer."""
    STALLED = 'plain Lanczos ran out of its restarts in the first round'
    UNCERTIFIED = 'the error bound does not certify the float32 result'


def solve_arpack(graph: GraphProblem, seed: int | None,
                 oversample: int | None = None, max_rounds: int = 8,
                 dtype: torch.dtype | None = None, shift_invert: bool | None = None,
                 tol: float = 1e-8, ncv: int | None = None,
                 maxiter: int | None = None) -> tuple[Tensor, Tensor]:
    r"""SciPy's ARPACK (:func:`scipy.sparse.linalg.eigsh`, CPU) on the
    deflated Laplacian of :obj:`graph`, started from seeded vectors, and
    with ARPACK's own restart vectors seeded too, so that the result is
    reproducible; returns :obj:`(vectors [n_g, q], values [q])`.
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
    system = _System(graph)
    if shift_invert is None and is_mesh_like(graph):
        shift_invert = True
    # The attempts, in order: the one asked for; where plain Lanczos stalls
    # (shift_invert=None), the same in shift-invert mode; where float32 is
    # not certified, float64 (which may stall in turn). Each fallback is taken
    # once, so there are at most three attempts.
    while True:
        outcome = _attempt(system, graph, seed, oversample, max_rounds, dtype, shift_invert,
                           eigsh_options)
        if outcome is _Fallback.STALLED:
            shift_invert = True
        elif outcome is _Fallback.UNCERTIFIED:
            dtype = torch.float64
        else:
            return outcome


def _attempt(system: _System, graph: GraphProblem, seed: int | None, oversample: int | None,
             max_rounds: int, dtype: torch.dtype | None, shift_invert: bool | None,
             eigsh_options: dict) -> tuple[Tensor, Tensor] | _Fallback:
    r"""One attempt of :func:`solve_arpack` in the given mode: the pairs, or
    the reason to fall back."""
    q, n = graph.q, system.n
    # the bound needs the probe; a shift-invert round runs in float64 anyway
    certify = dtype is None and max_rounds > 1 and not shift_invert
    first = np.float64 if shift_invert else \
        np.float32 if dtype == torch.float32 or certify else np.float64
    L, dense_null = system.laplacian(np.float64), system.dense_null
    s = graph.seed(seed)
    generator = torch.Generator().manual_seed(s) if s is not None else None
    restarts = None  # the generator of ARPACK's restart vectors
    options = {'which': 'SA', **eigsh_options}
    extra = 0 if oversample is None else oversample
    found_vectors, found_values = np.zeros((n, 0)), np.zeros(0)
    probe = None  # the smallest eigenvalue left once nothing was missed
    for round_ in range(max_rounds):
        real = first if round_ == 0 else np.float64
        v0 = torch.randn(n, generator=generator, dtype=torch.float64).numpy().astype(real)
        if restarts is None:
            # ARPACK draws a new start vector whenever its Krylov space turns
            # invariant (repeated eigenvalues: copies of a component, symmetric
            # graphs) from SciPy's `rng`, unseeded by default, so the same seed
            # would not give the same result. Seeded with the graph's seed, or
            # (seed=None) with the first start vector's bits, which come from
            # torch's global generator: torch.manual_seed reproduces them
            # without a further draw from it.
            restarts = np.random.default_rng(
                s if s is not None else np.frombuffer(v0[:8].tobytes(), np.uint32))
            options['rng'] = restarts
        wanted = min((q + extra) if round_ == 0 else max(4, q // 2),
                     n - 2 - found_vectors.shape[1])
        if wanted <= 0:
            break
        bound = found_values[q - 1] if found_values.size >= q else np.inf
        slack = max(options['tol'], np.finfo(real).eps ** 0.5) * max(1.0, abs(bound))
        if round_:
            smallest = system.eigsh(found_vectors, first, shift_invert, k=1,
                                    v0=v0.astype(first), which='SA', tol=PROBE_TOL,
                                    rng=restarts, return_eigenvectors=False)[0]
            if smallest >= bound - slack:
                probe = smallest
                break
        # below float32's epsilon ARPACK's tolerance cannot be met
        round_options = {**options, 'tol': max(options['tol'], np.finfo(real).eps)} \
            if real is np.float32 and options['tol'] > 0 else options
        if round_ == 0 and shift_invert is None:
            round_options = {'maxiter': LANCZOS_RESTARTS, **round_options}
        try:
            if round_ == 0 and system.num_components == 1 and not shift_invert:
                # connected: the plain sparse matrix (ARPACK's matvecs stay in C,
                # ~5x faster on PubMed) and one more pair, the simple trivial one
                values, vectors = eigsh(system.laplacian(real), k=wanted + 1, v0=v0,
                                        **round_options)
                trivial = np.argmax(np.abs(dense_null[:, 0] @ vectors))
                values, vectors = np.delete(values, trivial), np.delete(vectors, trivial, 1)
            else:
                values, vectors = system.eigsh(found_vectors, real, shift_invert, k=wanted,
                                               v0=v0, **round_options)
        except ArpackNoConvergence:
            if round_ or shift_invert is not None:
                raise
            return _Fallback.STALLED
        if real is np.float32:  # float64 Ritz pairs of the float32 span
            vectors = np.linalg.qr(vectors.astype(np.float64))[0]
            values, rotation = rayleigh_ritz(torch.from_numpy(vectors.T @ (L @ vectors)))
            values, vectors = values.numpy(), vectors @ rotation.numpy()
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
            return _Fallback.UNCERTIFIED
    return torch.from_numpy(np.ascontiguousarray(found_vectors)), torch.from_numpy(found_values)
