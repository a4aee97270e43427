r"""The eigenpairs of a symmetric graph matrix next to its component space,
by the PE transform's solvers: the exact basis of the low-rank layers."""
from __future__ import annotations

import warnings

import torch
from torch import Tensor
from torch_geometric.utils import coalesce, to_torch_csr_tensor

from ...operators import GraphOperator
from ...operators.nullspace import COMPONENT_EIGENVALUE, NullSpace
from .arpack import solve_arpack
from .dense import solve_dense
from .options import check_method
from .problem import LaplacianProblem, deflation_shift

# Up to this size the layer's exact basis is one dense float64 eigh; above it
# ARPACK with the recovery rounds of solve_arpack (30x faster on Cora, k = 64)
DENSE_NODES = 1024
COMPONENT_SOLVERS = ('eigh', 'arpack')


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
        method: :obj:`'eigh'` (dense, float64), :obj:`'arpack'`
            (:func:`solve_arpack`, float64, CPU) or :obj:`None` (:obj:`'eigh'` up to
            :obj:`DENSE_NODES` nodes).
        seed: ARPACK's starting vectors.

    Returns:
        :obj:`(vectors [n, k], values [k])` on the operator's device and
        dtype, ordered from the wanted end (descending for adjacencies).
    """
    if operator.kind not in COMPONENT_EIGENVALUE:
        raise ValueError(f"operator must be of a kind in {tuple(COMPONENT_EIGENVALUE)}, "
                         f"got kind={operator.kind!r}")
    check_method(method, COMPONENT_SOLVERS, optional=True)
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
                               torch.tensor([k]), deflation_shift(bounds[1]))
    if method == 'eigh' or (method is None and n <= DENSE_NODES):
        pairs = solve_dense(problem, torch.tensor([0]))
        vectors, found = pairs.vectors, pairs.values[0]
    else:
        vectors, found = solve_arpack(problem.graph(0), seed)
    if adjacency:
        found = 1.0 - found
    return vectors.to(device, dtype), found.to(device, dtype)
