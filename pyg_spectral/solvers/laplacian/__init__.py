r"""The smallest non-trivial Laplacian eigenpairs of every graph of a batch,
the problem of the PE transform, by three solvers: batched dense
:func:`torch.linalg.eigh` on padded blocks (small graphs), ARPACK (sparse,
CPU) and NeuralSVD (sparse, any device).

:class:`LaplacianProblem` is built once per graph or batch
(:mod:`.problem`); each solver has its own module and *returns* the
:obj:`q[g]` smallest eigenpairs of the deflated Laplacian of the graphs it
is given (the non-zero part of the spectrum): :func:`solve_dense`
(:mod:`.dense`) for a set of graphs at once, :func:`solve_arpack`
(:mod:`.arpack`) and :func:`solve_neuralsvd` (:mod:`.neuralsvd`) for one
:class:`GraphProblem` each. :mod:`.options` lists the settings each
iterative solver takes from the transform; :func:`nontrivial_eigenpairs`
(:mod:`.nontrivial`) serves the low-rank layers' exact basis.
"""
from .arpack import (CERTIFIED_SINE, LANCZOS_RESTARTS, MESH_ENVELOPE, PROBE_TOL,
                     SHIFT_INVERT_SIGMA, is_mesh_like, solve_arpack)
from .dense import buckets, solve_dense, solve_small_graph
from .neuralsvd import NEURALSVD_DEFAULTS, NeuralSVDNoConvergence, solve_neuralsvd
from .nontrivial import COMPONENT_SOLVERS, DENSE_NODES, nontrivial_eigenpairs
from .options import (ARPACK_OPTIONS, CONTRACT_KEYS, NEURALSVD_OPTIONS, SolverOption,
                      check_method, check_solver_options)
from .problem import Eigenpairs, GraphProblem, LaplacianProblem, envelope_ratio, graph_seed

__all__ = [
    'LaplacianProblem', 'GraphProblem', 'Eigenpairs', 'envelope_ratio', 'graph_seed',
    'solve_dense', 'solve_small_graph', 'buckets', 'solve_arpack', 'is_mesh_like', 'solve_neuralsvd',
    'NeuralSVDNoConvergence', 'nontrivial_eigenpairs', 'ARPACK_OPTIONS', 'NEURALSVD_OPTIONS',
    'CONTRACT_KEYS', 'SolverOption', 'check_method', 'check_solver_options', 'CERTIFIED_SINE', 'LANCZOS_RESTARTS',
    'MESH_ENVELOPE', 'PROBE_TOL', 'SHIFT_INVERT_SIGMA', 'NEURALSVD_DEFAULTS', 'COMPONENT_SOLVERS',
    'DENSE_NODES',
]
