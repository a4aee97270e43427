r"""A graph matrix known to a fit through sampled nodes and sampled edges:
the NestedLoRA terms of a node-wise encoder estimated without touching the
whole graph in a step, for :class:`~pyg_spectral.solvers.SampledNeuralSVD`
(one process) and :mod:`pyg_spectral.solvers.edge_sampled` (several)."""
from __future__ import annotations

import numbers

import torch
from torch import Tensor, nn

from .graph import GraphOperator
from .sampling import SampledEstimates, SampledOperator, Samples, check_output
from .spectral import top_positive


class EdgeSampledGraph(SampledOperator):
    r"""The target :math:`S = \alpha T + \beta I` of a symmetric
    :class:`~pyg_spectral.operators.GraphOperator` :math:`T` (shifted by its
    safe bound, as :func:`~pyg_spectral.operators.top_positive` does, so
    that the :obj:`largest` or smallest end of :math:`T` is the top of a
    positive semi-definite operator), seen by an encoder over node features
    through samples, with the inner products of the full-batch fit
    (:func:`~pyg_spectral.losses.lora_terms`):
    :math:`\langle a, b \rangle = \frac1n \sum_i a_i b_i`.

    A batch is :obj:`B` nodes drawn uniformly and :obj:`E` off-diagonal
    entries :math:`(i, j)` drawn with probability :math:`|T_{ij}| / W`,
    :math:`W = \sum_{i \ne j} |T_{ij}|`. Then

    .. math::
        \langle f_l, S f_l \rangle \approx
        \frac1B \sum_{b} S_{i_b i_b} f_l(x_{i_b})^2
        + \frac{\alpha W}{n} \frac1E \sum_{e}
        \mathrm{sign}(T_{i_e j_e})\, f_l(x_{i_e}) f_l(x_{j_e})

    is unbiased, and so is the metric term of
    :class:`~pyg_spectral.losses.NestedLoRA` with :obj:`split_batch=True`
    (the two Gram matrices from the two halves of the nodes, independent).
    Autograd through both ends of a sampled entry gives the gradient
    :math:`2 S f` in expectation, since :math:`S` is symmetric. A step
    touches :math:`B + 2E` feature rows, whatever the size of the graph; the
    operator keeps the off-diagonal entries and their cumulative weights
    (drawn by binary search, :math:`O(\log m)` per sample).

    The model is node-wise: it maps the features of a batch of nodes
    :obj:`[B, d]` to :obj:`[B, k]` (an MLP such as
    :class:`~pyg_spectral.nn.EigenfunctionMLP` over node features or
    positional features). A message-passing encoder reads neighbours and is
    not a function of a node's own row; it would need neighbour sampling.

    Args:
        operator (GraphOperator): the graph matrix, symmetric.
        x (torch.Tensor): :obj:`[n, d]` node features, floating point.
        largest (bool, optional): learn the largest eigenvalues of
            :obj:`operator` (else the smallest). (default: :obj:`True`)
        edges_per_node (float, optional): sampled entries per sampled node,
            :obj:`E = round(edges_per_node * B)`. (default: :obj:`1.0`)

    Samples (:meth:`sample`): :obj:`(nodes [B], entries [E])`, node ids and
    positions among the off-diagonal entries.
    """
    num_models = 1
    is_symmetric = True

    def __init__(self, operator: GraphOperator, x: Tensor, largest: bool = True,
                 edges_per_node: float = 1.0) -> None:
        if not isinstance(operator, GraphOperator):
            raise TypeError(f"operator must be a GraphOperator, got {type(operator).__name__}")
        if not operator.is_symmetric:
            raise ValueError(f"operator must be symmetric (kind {operator.kind!r} is not)")
        n = operator.shape[0]
        if not isinstance(x, Tensor) or x.dim() != 2 or x.size(0) != n \
                or not x.is_floating_point():
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"x must be floating-point node features of shape [{n}, d], "
                             f"got {shape}")
        if isinstance(edges_per_node, bool) or not isinstance(edges_per_node, numbers.Real) \
                or not edges_per_node > 0:
            raise ValueError(f"edges_per_node must be a positive number, got {edges_per_node!r}")
        shifted = top_positive(operator, largest)
        self.alpha, self.beta = shifted.alpha, shifted.beta
        self.num_nodes, self.largest, self.edges_per_node = n, bool(largest), float(edges_per_node)
        self.kind = operator.kind
        coo = operator.matrix.to_sparse_coo().coalesce()
        (rows, cols), values = coo.indices().cpu(), coo.values().cpu().double()
        on_diagonal = rows == cols
        diagonal = torch.zeros(n, dtype=torch.float64)
        diagonal[rows[on_diagonal]] = values[on_diagonal]
        off = ~on_diagonal
        rows, cols, values = rows[off], cols[off], values[off]
        weight = values.abs()
        self.total_weight = float(weight.sum())
        # the diagonal of S at every node, and per entry only what the
        # estimate reads: the two ends, the sign, the cumulative weight
        self.diagonal = (self.alpha * diagonal + self.beta).to(x.dtype)
        self.rows, self.cols = rows, cols
        self.signs = values.sign().to(x.dtype)
        cdf = weight.cumsum(0)
        self.cdf = cdf / cdf[-1] if cdf.numel() else cdf
        self.x = x
        self._device, self._dtype = x.device, x.dtype

    def original_eigenvalues(self, mu: Tensor) -> Tensor:
        return (mu - self.beta) / self.alpha

    def to(self, device=None, dtype=None) -> 'EdgeSampledGraph':
        out = super().to(device, dtype)
        out.x = self.x.to(out.device, out.dtype)
        out.diagonal, out.signs = (t.to(out.dtype) for t in (self.diagonal, self.signs))
        return out

    def sample(self, num_samples: int, generator: torch.Generator | None = None) -> Samples:
        nodes = torch.randint(self.num_nodes, (num_samples,), generator=generator)
        num_edges = max(1, round(self.edges_per_node * num_samples))
        if not self.rows.numel():
            empty = torch.zeros(0, dtype=torch.long)
            return nodes, empty
        u = torch.rand(num_edges, generator=generator, dtype=torch.float64)
        entry = torch.searchsorted(self.cdf, u, right=True).clamp_max_(self.cdf.numel() - 1)
        return nodes, entry

    def _ends(self, samples: Samples) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        nodes, entry = samples
        return nodes, self.rows[entry], self.cols[entry], self.signs[entry]

    def _values(self, model: nn.Module, samples: Samples,
                k: int) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        nodes, rows, cols, signs = self._ends(samples)
        # one forward for the lot: a DistributedDataParallel model expects one
        # forward per backward, and one product is cheaper than three
        index = torch.cat([nodes, rows, cols]).to(self.x.device)
        out = model(self.x[index])
        check_output(out, index.numel(), k)
        b, e = nodes.numel(), rows.numel()
        f, f_rows, f_cols = out[:b], out[b:b + e], out[b + e:]
        return (f, f_rows, f_cols, self.diagonal[nodes].to(out.device).unsqueeze(1),
                signs.to(out.device).unsqueeze(1))

    def _edge_scale(self) -> float:
        return self.alpha * self.total_weight / self.num_nodes

    def estimates(self, model: nn.Module, samples: Samples, k: int,
                  generator: torch.Generator | None = None) -> SampledEstimates:
        f, f_rows, f_cols, diagonal, signs = self._values(model, samples, k)
        cross = (diagonal * f * f).mean(0)
        if f_rows.numel():
            cross = cross + self._edge_scale() * (signs * f_rows * f_cols).mean(0)
        return SampledEstimates(f, None, cross)

    def moments(self, model: nn.Module, samples: Samples, k: int,
                generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
        with torch.no_grad():
            f, f_rows, f_cols, diagonal, signs = self._values(model, samples, k)
            gram = f.T @ f / f.size(0)
            cross = (diagonal * f).T @ f / f.size(0)
            if f_rows.numel():
                edge = (signs * f_rows).T @ f_cols * (self._edge_scale() / f_rows.size(0))
                cross = cross + (edge + edge.T) / 2
            return gram, gram, cross

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(num_nodes={self.num_nodes}, kind={self.kind!r}, '
                f'largest={self.largest}, edges_per_node={self.edges_per_node:g})')
