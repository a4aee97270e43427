"""Laplacian eigenvector positional encodings: a drop-in for PyG's
:class:`~torch_geometric.transforms.AddLaplacianEigenvectorPE` that solves
whole batches at once, on any device, is exact on disconnected graphs and can
encode unseen graphs with a fitted encoder."""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch_geometric.data import Batch, Data
from torch_geometric.data.datapipes import functional_transform
from torch_geometric.transforms import BaseTransform
from torch_geometric.transforms.add_positional_encoding import add_node_attr
from torch_geometric.utils import cumsum

from ..devices import resolve_device
from ..linalg import canonical_sign_vector
from ..operators.graph import DirectedGraphError, validate_graph
from ..solvers.laplacian import (ARPACK_OPTIONS, CONTRACT_KEYS, NEURALSVD_OPTIONS, Eigenpairs,
                                 LaplacianProblem, NeuralSVDNoConvergence, check_method,
                                 check_solver_options, is_mesh_like, solve_arpack, solve_dense,
                                 solve_neuralsvd, solve_small_graph)
from .encoder import encoder_solve
from .signs import graph_signs, seeded_signs

METHODS = ('auto', 'exact', 'neuralsvd', 'arpack')
NORMALIZATIONS = {'sym': 'sym_laplacian', None: 'laplacian'}
# the methods that can run each solver ('auto': ARPACK on a CPU, NeuralSVD on
# an accelerator, ARPACK again where NeuralSVD runs out of steps)
SOLVER_METHODS = {'arpack_options': ('arpack', 'auto'), 'neuralsvd_options': ('neuralsvd', 'auto')}


def split_in_batch(batch: Batch, node_attrs: list[str], graph_attrs: list[str]) -> None:
    r"""Lets :meth:`Batch.to_data_list`, :meth:`Batch.get_example` and
    indexing split attributes set on a :class:`~torch_geometric.data.Batch`
    after it was collated: :obj:`node_attrs` with one row per node,
    :obj:`graph_attrs` with one row per graph, both concatenated along
    dimension 0 and not incremented, as :meth:`Batch.from_data_list` would
    have collated them.

    PyG (2.8) has no public way to do this: :meth:`Batch.from_data_list`
    records how it concatenated each attribute in the private
    :obj:`_slice_dict` and :obj:`_inc_dict`, and
    :func:`torch_geometric.data.separate.separate` splits only the attributes
    listed there, so an attribute that a transform adds to a batch (PyG's own
    :class:`~torch_geometric.transforms.AddLaplacianEigenvectorPE` included)
    is silently left out of :meth:`Batch.to_data_list`. The public route,
    :meth:`Batch.to_data_list` then :meth:`Batch.from_data_list`, cost 60% of
    the whole transform on 200 small graphs (33 ms against 54). This is the
    package's one use of those private attributes; a test checks that the
    entries written here are those :meth:`Batch.from_data_list` writes.

    A batch not made by :meth:`Batch.from_data_list` has no such record and
    cannot be split (PyG raises there); it is left as it is.

    Args:
        batch (Batch): the batch, changed in place.
        node_attrs (list[str]): attributes of shape :obj:`[num_nodes, *]`.
        graph_attrs (list[str]): attributes of shape :obj:`[num_graphs, *]`.
    """
    if not hasattr(batch, '_slice_dict'):
        return
    G = batch.num_graphs
    ptr = batch.ptr.cpu() if 'ptr' in batch else cumsum(
        torch.bincount(batch.batch.cpu(), minlength=G))
    for attr in node_attrs:
        batch._slice_dict[attr] = ptr
        batch._inc_dict[attr] = torch.zeros(G, dtype=torch.long)
    for attr in graph_attrs:
        batch._slice_dict[attr] = torch.arange(G + 1)
        batch._inc_dict[attr] = torch.zeros(G, dtype=torch.long)


def _solver_keywords_error(method: str, kwargs: dict[str, Any]) -> TypeError:
    r"""The error for solver settings passed as keyword arguments, saying
    how to write the call instead."""
    names = ', '.join(f'{key}=' for key in kwargs)
    contract = [key for key in kwargs if key in CONTRACT_KEYS]
    if contract:
        key = contract[0]
        return TypeError(f"AddNeuralSVDPE() does not take {key}={kwargs[key]!r}: "
                         f"{CONTRACT_KEYS[key]}")
    if method == 'exact' and all(key in ARPACK_OPTIONS or key in NEURALSVD_OPTIONS
                                 for key in kwargs):
        return TypeError(f"AddNeuralSVDPE() got solver settings ({names}), but method='exact' "
                         f"runs no iterative solver: drop them, or pass them as arpack_options= "
                         f"or neuralsvd_options= with method='arpack', 'neuralsvd' or 'auto'")
    per_solver = {}
    for argument, table in (('arpack_options', ARPACK_OPTIONS),
                            ('neuralsvd_options', NEURALSVD_OPTIONS)):
        found = {key: value for key, value in kwargs.items() if key in table}
        if found and method in SOLVER_METHODS[argument]:
            per_solver[argument] = found
    unknown = [key for key in kwargs if not any(key in found for found in per_solver.values())]
    unused = [(key, argument) for key in unknown for argument, table in
              (('arpack_options', ARPACK_OPTIONS), ('neuralsvd_options', NEURALSVD_OPTIONS))
              if key in table]
    if unused and len(unused) == len(unknown):
        key, argument = unused[0]
        return TypeError(f"AddNeuralSVDPE() got {key}=, a setting of {argument}, which "
                         f"method={method!r} does not use (methods {SOLVER_METHODS[argument]} do)")
    if unknown:
        return TypeError(
            f"AddNeuralSVDPE() got unexpected keyword argument(s) {names}; solver settings go "
            f"in arpack_options (keys: {', '.join(ARPACK_OPTIONS)}) or neuralsvd_options "
            f"(keys: {', '.join(NEURALSVD_OPTIONS)})")
    rewrite = ', '.join(f'{argument}={found!r}' for argument, found in per_solver.items())
    both = [key for key in kwargs if key in ARPACK_OPTIONS and key in NEURALSVD_OPTIONS]
    note = (f" ({', '.join(both)}: an option of both solvers, with a meaning of its own in "
            f"each; keep the one you mean)" if both and len(per_solver) > 1 else '')
    return TypeError(f"AddNeuralSVDPE() takes solver settings per solver, not as keyword "
                     f"arguments ({names}): pass {rewrite}{note}")


@functional_transform('add_neuralsvd_pe')
class AddNeuralSVDPE(BaseTransform):
    r"""Adds the Laplacian eigenvector positional encoding from the
    `"Benchmarking Graph Neural Networks" <https://arxiv.org/abs/2003.00982>`_
    paper (Dwivedi et al.) to a graph or to a whole
    :class:`~torch_geometric.data.Batch` (functional name:
    :obj:`add_neuralsvd_pe`), with the contract of PyG's
    :class:`~torch_geometric.transforms.AddLaplacianEigenvectorPE`: the
    :obj:`k` eigenvectors of the Laplacian after the trivial one, columns by
    increasing eigenvalue, orthonormal (per graph), each column's sign flipped
    at random by default.

    It adds :obj:`data[attr_name]` :obj:`[num_nodes, k]` and the eigenvalues
    :obj:`data[attr_name + '_eigenvalues']` :obj:`[num_graphs, k]` (one row
    per graph, so that batching concatenates them). With
    :obj:`attr_name=None` the encoding is concatenated to :obj:`data.x` and
    the eigenvalues are stored as :obj:`data.laplacian_eigenvector_pe_eigenvalues`.

    Conventions:

    * **Disconnected graphs.** With :math:`c` components carrying a zero
      eigenvalue (all components for :obj:`normalization=None`; all but
      isolated nodes for :obj:`'sym'`, whose Laplacian entry there is 1), the
      zero eigenvalue repeats :math:`c` times. *The trivial one* is the
      stationary direction of the whole graph, :math:`D^{1/2} 1` (or
      :math:`1`); the next :math:`\min(k, c-1)` columns are the rest of the
      zero eigenspace in a fixed basis: column :math:`j` contrasts the
      :math:`(j+1)`-th largest component with the :math:`j` larger ones
      (Helmert basis, eigenvalue exactly 0); the remaining columns are the
      smallest non-zero eigenpairs of the whole graph. The zero eigenspace is
      built from the connected components, never solved for, which is why
      the result is right where iterative solvers return only part of it.
    * **Small graphs.** A graph with :math:`n \le k` nodes (fewer than
      :math:`k + 1`) has only :math:`n - 1` non-trivial eigenvectors; the
      other columns are zero and their eigenvalues 0.
    * **Signs.** With :obj:`random_sign=False` the entry of largest magnitude
      of each column (per graph) is positive, ties (within
      :obj:`~pyg_spectral.linalg.SIGN_RTOL` = 1e-3 relative) going to the
      lowest node index, as every basis of the library
      (:func:`~pyg_spectral.linalg.canonical_signs`). With
      :obj:`random_sign=True` that column is then multiplied by a
      random sign per graph and column: with a :obj:`seed`, a function of the
      seed and of the graph itself, so that a graph gets the same signs
      encoded alone, in any :class:`~torch_geometric.data.Batch` and through
      :func:`~pyg_spectral.transforms.precompute_pe` (identical graphs get
      identical signs); with :obj:`seed=None`, drawn from :obj:`torch`'s
      global generator, as PyG does. The same :obj:`seed` gives bit-identical
      output on the same device.
    * **Threads.** The transform uses the process's thread setting as it
      finds it. Small graphs gain nothing from more than one thread, and on
      a busy CPU extra threads spin on busy cores (several times slower):
      applied graph by graph (a :obj:`pre_transform`), run it with one
      thread, chosen by the application: :func:`torch.set_num_threads`, or
      within ``threadpoolctl.threadpool_limits(1)``.

    Args:
        k (int): number of non-trivial eigenvectors.
        attr_name (str, optional): attribute to store the encoding in
            (:obj:`None`: concatenate to :obj:`data.x`).
            (default: :obj:`'laplacian_eigenvector_pe'`)
        is_undirected (bool, optional): accepted for compatibility with PyG;
            the graph must be undirected either way (checked; a directed
            graph raises :class:`ValueError`: symmetrise it first, e.g. with
            :class:`torch_geometric.transforms.ToUndirected`).
            (default: :obj:`False`)
        normalization (str, optional): :obj:`'sym'` (:math:`I - D^{-1/2} A
            D^{-1/2}`, as PyG) or :obj:`None` (:math:`D - A`), the values of
            :func:`torch_geometric.utils.get_laplacian`'s argument (the kinds
            :obj:`'sym_laplacian'` and :obj:`'laplacian'` of
            :meth:`~pyg_spectral.operators.GraphOperator.from_edge_index`).
            (default: :obj:`'sym'`)
        method (str, optional): :obj:`'exact'` (batched dense :func:`torch.linalg.eigh` on
            padded blocks), :obj:`'neuralsvd'` (NestedLoRA on the deflated,
            shifted Laplacian, sparse, on :obj:`device`), :obj:`'arpack'`
            (SciPy's :func:`~scipy.sparse.linalg.eigsh` on the deflated
            Laplacian, sparse, CPU) or :obj:`'auto'`: exact for graphs of at
            most :attr:`EXACT_THRESHOLD` nodes, and above it ARPACK on a CPU,
            NeuralSVD on an accelerator except for mesh-like graphs, which
            go to ARPACK in shift-invert mode (crossover measured in
            ``benchmarks/pe_speed.py``). Graphs of fewer than
            :attr:`SPARSE_MIN_NODES` nodes always go to exact, in every
            method: there a sparse solver is slower, and ARPACK unreliable
            (its Krylov space cannot outgrow the number of distinct
            eigenvalues, which is small for trees and other symmetric
            graphs; it returned wrong pairs on such molecule-like graphs).
            (default: :obj:`'auto'`)
        encoder (PEEncoder, optional): a fitted
            :class:`~pyg_spectral.transforms.PEEncoder`: inductive mode, no
            eigensolve (see its docs); overrides :obj:`method` for graphs it
            can encode. (default: :obj:`None`)
        device (torch.device or str, optional): where to solve; the result
            comes back on the data's device. (default: :obj:`None`: the
            data's device)
        random_sign (bool, optional): flip each column's sign at random (as
            PyG). (default: :obj:`True`)
        seed (int, optional): seed of the random signs and of the iterative
            solvers' starts. (default: :obj:`None`: torch's global generator)
        arpack_options (dict, optional): settings of ARPACK (:obj:`method='arpack'` or
            :obj:`'auto'`), a dict with keys from
            :obj:`~pyg_spectral.solvers.laplacian.ARPACK_OPTIONS`: :obj:`tol`
            (default 1e-8), :obj:`ncv` and :obj:`maxiter` of :func:`eigsh`;
            :obj:`max_rounds` (default 8; 1 skips the probe for missed
            copies of repeated eigenvalues), :obj:`dtype` of the main round
            (default :obj:`None`: float32, kept where an error bound certifies
            it, else float64), :obj:`oversample`, and :obj:`shift_invert`
            (default :obj:`None`: shift-invert with one sparse LU for
            mesh-like graphs, plain Lanczos for the others, switching to
            shift-invert when it stalls); see
            :func:`~pyg_spectral.solvers.laplacian.solve_arpack`.
            (default: :obj:`None`)
        neuralsvd_options (dict, optional): settings of NeuralSVD (:obj:`method='neuralsvd'`
            or :obj:`'auto'`), a dict with keys from
            :obj:`~pyg_spectral.solvers.laplacian.NEURALSVD_OPTIONS`:
            :obj:`steps`, :obj:`tol`, :obj:`check_every`, :obj:`lr`,
            :obj:`progress` of :meth:`~pyg_spectral.solvers.NeuralSVD.fit`
            (default :obj:`steps=4000, tol=1e-5`) and :obj:`nesting`,
            :obj:`optimizer`, :obj:`momentum`, :obj:`grad_clip`,
            :obj:`step_scale`, :obj:`oversample`, :obj:`ritz_restart` of
            :class:`~pyg_spectral.solvers.NeuralSVD`. A graph that does not
            converge within :obj:`steps` emits a :class:`RuntimeWarning`,
            and under :obj:`'auto'` is solved again with ARPACK on the CPU.
            (default: :obj:`None`)

    Both option dicts are checked here: an unknown key, a value of the
    wrong kind, options of a solver that :obj:`method` never runs, and the
    solver arguments that would change the result (:obj:`which`,
    :obj:`sigma`, :obj:`v0`, :obj:`k`, ...) raise :class:`ValueError`.
    :obj:`tol` and :obj:`oversample` exist in both with different meanings
    (:obj:`tol`: ARPACK's relative accuracy of the Ritz values, NeuralSVD's
    Ritz residuals relative to the spectral bound), hence one dict per solver. A solver
    setting passed as a keyword argument raises :class:`TypeError` saying
    which dict it belongs in.
    """
    EXACT_THRESHOLD: int = 256
    SPARSE_MIN_NODES: int = 64

    def __init__(
        self,
        k: int,
        attr_name: str | None = 'laplacian_eigenvector_pe',
        is_undirected: bool = False,
        normalization: str | None = 'sym',
        method: str = 'auto',
        encoder: nn.Module | None = None,
        device: torch.device | str | None = None,
        random_sign: bool = True,
        seed: int | None = None,
        arpack_options: dict[str, Any] | None = None,
        neuralsvd_options: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if not isinstance(k, int) or isinstance(k, bool) or k <= 0:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        check_method(method, METHODS)
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization must be 'sym' or None, got {normalization!r}")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
            raise TypeError(f"seed must be an int or None, got {type(seed).__name__}")
        if encoder is not None and getattr(encoder, 'k', k) < k:
            raise ValueError(f"encoder outputs {encoder.k} columns, fewer than k={k}")
        if kwargs:
            raise _solver_keywords_error(method, kwargs)
        self.arpack_options = check_solver_options('arpack_options', arpack_options,
                                                   ARPACK_OPTIONS)
        self.neuralsvd_options = check_solver_options('neuralsvd_options', neuralsvd_options,
                                                      NEURALSVD_OPTIONS)
        for argument, methods in SOLVER_METHODS.items():
            if getattr(self, argument) and method not in methods:
                raise ValueError(f"{argument} are given, but method={method!r} never runs that "
                                 f"solver (it does with method={methods[0]!r} or 'auto')")
        self.k, self.attr_name, self.is_undirected = k, attr_name, is_undirected
        self.normalization, self.method, self.encoder = normalization, method, encoder
        self.device = resolve_device(device) if device is not None else None
        self.random_sign, self.seed = random_sign, seed

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(k={self.k}, method={self.method!r}, '
                f'normalization={self.normalization!r})')

    # ------------------------------------------------------------ transform
    def forward(self, data: Data) -> Data:
        if data.edge_index is None:
            raise ValueError("data has no edge_index")
        is_batch = isinstance(data, Batch)
        batch = data.batch if is_batch else None
        pe, values = self.encode(data.edge_index, data.get('edge_weight'),
                                 data.num_nodes, batch)
        data = add_node_attr(data, pe, attr_name=self.attr_name)
        name = self.attr_name or 'laplacian_eigenvector_pe'
        data[name + '_eigenvalues'] = values
        if is_batch:
            # attr_name=None on a batch without x creates x: it needs slices too
            split_in_batch(data, node_attrs=[self.attr_name or 'x'],
                           graph_attrs=[name + '_eigenvalues'])
        return data

    def encode(self, edge_index: Tensor, edge_weight: Tensor | None = None,
               num_nodes: int | None = None,
               batch: Tensor | None = None) -> tuple[Tensor, Tensor]:
        r"""The encoding :obj:`[n, k]` and eigenvalues :obj:`[G, k]` of a graph
        or of a batch, on the device of :obj:`edge_index`.

        Args:
            edge_index (torch.Tensor): :obj:`[2, m]` edges of an undirected graph.
            edge_weight (torch.Tensor, optional): :obj:`[m]` non-negative
                weights. (default: :obj:`None`: all 1)
            num_nodes (int, optional): the number of nodes. (default:
                :obj:`None`: one more than the largest index in :obj:`edge_index`)
            batch (torch.Tensor, optional): :obj:`[n]` graph of every node,
                sorted, as PyG's. (default: :obj:`None`: one graph)
        """
        if batch is None and self.encoder is None and edge_index.device.type == 'cpu' \
                and (self.device is None or self.device.type == 'cpu'):
            encoded = self._encode_small(edge_index, edge_weight, num_nodes)
            if encoded is not None:
                return encoded
        out_device = edge_index.device
        problem = self.problem(edge_index, edge_weight, num_nodes, batch)
        vectors, values = self._gather(problem, self._solve(problem))
        G, k, r, g = problem.num_graphs, self.k, vectors.size(1), problem.batch
        if G == 1 and r == k:  # one graph with k non-zero pairs: no contrasts, no padding
            pe, eig = vectors, values
        else:
            pe, eig = self._assemble(problem, vectors, values)
        sign = canonical_sign_vector(pe, batch=g, num_graphs=G)
        if self.random_sign and self.seed is not None:
            sign = sign * seeded_signs(edge_index, g, problem.ptr, self.seed, k).to(sign)
        elif self.random_sign:
            sign = sign * (2 * torch.randint(0, 2, (G, k)) - 1).to(sign)
        pe = pe * (sign if G == 1 else sign[g])
        dtype = torch.get_default_dtype()
        return pe.to(out_device, dtype), eig.to(out_device, dtype)

    def _encode_small(self, edge_index: Tensor, edge_weight: Tensor | None,
                      num_nodes: int | None) -> tuple[Tensor, Tensor] | None:
        r""":meth:`encode` of one small connected graph on the CPU, by
        :func:`~pyg_spectral.solvers.laplacian.solve_small_graph` and the
        assembly and signs of the general route redone in NumPy: the same
        bits, at a fraction of the fixed cost per graph. :obj:`None` where
        the graph needs the general route."""
        n = validate_graph(edge_index, edge_weight, num_nodes)
        k = self.k
        if not self._dense_route(n, min(k, n - 1), True):
            return None
        solved = solve_small_graph(edge_index, edge_weight, n, k=k,
                                   kind=NORMALIZATIONS[self.normalization])
        if solved is None:
            return None
        vectors, values = solved
        q = values.size
        if q < k:  # as _assemble pads: the last column times 0 (the zeros keep its signs)
            source, keep = np.minimum(np.arange(k), q - 1), np.arange(k) < q
            vectors, values = vectors[:, source] * keep, values[source] * keep
        sign = canonical_sign_vector(torch.from_numpy(vectors)).numpy()
        if self.random_sign and self.seed is not None:
            sign = sign * graph_signs(edge_index.numpy(), n, self.seed, k)
        elif self.random_sign:
            sign = sign * (2 * torch.randint(0, 2, (1, k)) - 1).numpy()[0]
        dtype = torch.get_default_dtype()
        return (torch.from_numpy(vectors * sign).to(dtype),
                torch.from_numpy(values[None]).to(dtype))

    def _assemble(self, problem: LaplacianProblem, vectors: Tensor,
                  values: Tensor) -> tuple[Tensor, Tensor]:
        r"""The :obj:`[n, k]` encoding and :obj:`[G, k]` eigenvalues before
        the signs: each graph's zero-eigenspace contrasts first, then its
        solved pairs, then zeros."""
        G, n, k, r = problem.num_graphs, problem.batch.numel(), self.k, vectors.size(1)
        zeros = (problem.null.count - 1).clamp(0, k)  # [G]
        cols = torch.arange(k, device=vectors.device)
        source = cols[None, :] - zeros[:, None]  # [G, k]: column of `vectors`
        from_solver = (source >= 0) & (source < problem.q[:, None])
        source = source.clamp(0, max(r - 1, 0))
        g = problem.batch
        if r > 0:
            solved = vectors.gather(1, source[g]) * from_solver[g]
            eig = values.gather(1, source) * from_solver
        else:
            solved, eig = vectors.new_zeros(n, k), values.new_zeros(G, k)
        if bool(zeros.any()):  # some graph has several zero eigenvalues
            solved = torch.where(cols[None, :] < zeros[g][:, None], problem.null.contrasts(k, g),
                                 solved)
        return solved, eig

    # --------------------------------------------------------------- pieces
    def problem(self, edge_index: Tensor, edge_weight: Tensor | None = None,
                num_nodes: int | None = None, batch: Tensor | None = None) -> LaplacianProblem:
        r"""The deflated Laplacian of the graph or batch, on :attr:`device`
        (:meth:`~pyg_spectral.solvers.laplacian.LaplacianProblem.build`)."""
        try:
            return LaplacianProblem.build(edge_index, edge_weight, num_nodes, batch, k=self.k,
                                          kind=NORMALIZATIONS[self.normalization],
                                          device=self.device)
        except DirectedGraphError as err:
            raise ValueError(f"{self.__class__.__name__} needs an undirected graph, but "
                             f"edge_index is directed; symmetrise it first, e.g. with the "
                             f"transform torch_geometric.transforms.ToUndirected() (or "
                             f"torch_geometric.utils.to_undirected)") from err

    @staticmethod
    def _accelerated(problem: LaplacianProblem) -> bool:
        return problem.laplacian.device.type != 'cpu'

    def _sparse_method(self, problem: LaplacianProblem, g: int) -> str:
        r"""The solver of graph :obj:`g` above the dense threshold. :obj:`'auto'`
        takes ARPACK on a CPU; on an accelerator NeuralSVD, except for
        mesh-like graphs: there a first-order method needs too many steps
        (still wrong after 3000 on a 1e5-node kNN mesh), while shift-invert
        ARPACK is the fastest solver."""
        if self.method != 'auto':
            return self.method
        if not self._accelerated(problem) or is_mesh_like(problem.graph(g)):
            return 'arpack'
        return 'neuralsvd'

    def _solve_neuralsvd(self, problem: LaplacianProblem, g: int) -> tuple[Tensor, Tensor]:
        r"""NeuralSVD on graph :obj:`g`. Where it runs out of steps, :obj:`'auto'`
        solves the graph again with ARPACK on the CPU (the CPU path is always
        there), an explicit :obj:`'neuralsvd'` keeps the unconverged pairs;
        both warn."""
        graph = problem.graph(g)
        try:
            return solve_neuralsvd(graph, self.seed, self.device, **self.neuralsvd_options)
        except NeuralSVDNoConvergence as error:
            if self.method != 'auto':
                warnings.warn(f"{error}; the encoding of this graph is not accurate "
                              f"(raise neuralsvd_options={{'steps': ...}}, or use "
                              f"method='arpack')", RuntimeWarning)
                return error.vectors, error.values
            warnings.warn(f"{error}; solving it with ARPACK on the CPU instead", RuntimeWarning)
            return solve_arpack(graph, self.seed, **self.arpack_options)

    def _dense_route(self, sizes: Tensor | int, q: Tensor | int,
                     wanted: Tensor | bool) -> Tensor | bool:
        r"""Which of the :obj:`wanted` graphs go to the dense solver;
        elementwise, on :obj:`[G]` tensors or on the ints of one graph."""
        if self.method == 'exact':
            return wanted
        small = wanted & ((q >= sizes - 1) | (sizes < self.SPARSE_MIN_NODES))
        if self.method == 'auto' and self.encoder is None:
            small = small | (wanted & (sizes <= self.EXACT_THRESHOLD))
        return small

    def _solve_sparse(self, problem: LaplacianProblem, g: int) -> Eigenpairs:
        if self._sparse_method(problem, g) == 'arpack':
            vectors, values = solve_arpack(problem.graph(g), self.seed, **self.arpack_options)
        else:
            vectors, values = self._solve_neuralsvd(problem, g)
        return Eigenpairs(torch.tensor([g]), vectors, values[None])

    def _solve(self, problem: LaplacianProblem) -> list[Eigenpairs]:
        r"""Dispatch: each graph with pairs to find goes to one solver; their
        answers, graph sets with pairs."""
        if problem.num_graphs == 1 and self.encoder is None:  # in ints: no [G] masks
            q, n = int(problem.q[0]), problem.laplacian.num_nodes
            if q == 0:
                return []
            if self._dense_route(n, q, True):
                return [solve_dense(problem, torch.zeros(1, dtype=torch.long,
                                                         device=problem.batch.device))]
            return [self._solve_sparse(problem, 0)]
        sizes, q = problem.sizes, problem.q
        wanted = q > 0
        answers = []
        if self.encoder is not None:
            encoded = encoder_solve(self.encoder, problem, self.seed)
            if encoded.graphs.numel():
                answers.append(encoded)
                wanted[encoded.graphs] = False
        small = self._dense_route(sizes, q, wanted)
        if bool(small.any()):
            answers.append(solve_dense(problem, small.nonzero().view(-1)))
        answers.extend(self._solve_sparse(problem, g)
                       for g in (wanted & ~small).nonzero().view(-1).tolist())
        return answers

    @staticmethod
    def _gather(problem: LaplacianProblem, answers: list[Eigenpairs]) -> tuple[Tensor, Tensor]:
        r"""The solvers' answers as :obj:`vectors [n, r]` and :obj:`values
        [G, r]` of the whole batch (:obj:`r`: the largest :obj:`q`; zeros
        where a graph has fewer pairs)."""
        basis = problem.null.basis
        G, r = problem.num_graphs, int(problem.q.max()) if problem.num_graphs else 0
        if len(answers) == 1 and answers[0].graphs.numel() == G \
                and answers[0].values.size(1) == r:  # one solver did it all
            return answers[0].vectors.to(basis), answers[0].values.to(basis)
        vectors, values = basis.new_zeros(basis.numel(), r), basis.new_zeros(G, r)
        ptr = problem.ptr.tolist() if any(a.graphs.numel() == 1 for a in answers) else None
        for answer in answers:
            t = answer.values.size(1)
            if answer.graphs.numel() == 1:
                g = int(answer.graphs)
                vectors[ptr[g]:ptr[g + 1], :t] = answer.vectors.to(vectors)
            else:
                nodes = torch.zeros(G, dtype=torch.bool, device=basis.device)
                nodes[answer.graphs.to(basis.device)] = True
                vectors[nodes[problem.batch], :t] = answer.vectors.to(vectors)
            values[answer.graphs.to(basis.device), :t] = answer.values.to(values)
        return vectors, values
