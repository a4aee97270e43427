"""The NumPy routes for one small graph on the CPU (the fixed cost of a
transform applied graph by graph) give the same bits as the torch routes
they stand in for. The dense solver's route is checked by the transform's
own tests (a graph gets the same bits alone as in a batch)."""
import numpy as np
import pytest
import torch
from torch_geometric.utils import to_undirected

import pyg_spectral.linalg as linalg
import pyg_spectral.operators.graph as graph
import pyg_spectral.operators.nullspace as nullspace
from pyg_spectral.operators import GraphOperator, NullSpace

from graphs import cycle_graph, grid_graph, path_graph


def small_graphs():
    g = torch.Generator().manual_seed(0)
    random = to_undirected(torch.randint(0, 30, (2, 60), generator=g), num_nodes=30)
    random = random[:, random[0] != random[1]]
    weight = to_undirected(random, torch.rand(random.size(1), generator=g, dtype=torch.float64),
                           30, reduce='mean')[1]
    zero = weight.clone()
    zero[(random[0] == 3) | (random[1] == 3)] = 0  # edges of weight 0: node 3 is cut off
    two = torch.cat([cycle_graph(7), path_graph(5) + 7], 1)
    return [(path_graph(12), None, 12), (grid_graph(4, 5), None, 22),  # two isolated nodes
            (random, weight, 30), (random, weight.float(), 30), (random, zero, 30),
            (two, None, 12), (torch.zeros(2, 0, dtype=torch.long), None, 4)]


@pytest.mark.parametrize('kind', ['sym_laplacian', 'laplacian'])
def test_small_laplacian_is_the_torch_route_bit_for_bit(kind, monkeypatch):
    taken = []
    small = graph._small_laplacian
    monkeypatch.setattr(graph, '_small_laplacian', lambda *a: taken.append(small(*a)) or taken[-1])
    for edge_index, weight, n in small_graphs():
        fast = GraphOperator.from_edge_index(edge_index, weight, n, kind=kind,
                                             dtype=torch.float64)
        with monkeypatch.context() as m:
            m.setattr(graph, 'SMALL_GRAPH_EDGES', -1)
            slow = GraphOperator.from_edge_index(edge_index, weight, n, kind=kind,
                                                 dtype=torch.float64)
        for a, b in ((fast.matrix.crow_indices(), slow.matrix.crow_indices()),
                     (fast.matrix.col_indices(), slow.matrix.col_indices()),
                     (fast.matrix.values(), slow.matrix.values())):
            assert a.dtype == b.dtype and torch.equal(a, b)
        assert fast.spectral_bounds() == slow.spectral_bounds()
        assert (fast.degree is None) == (slow.degree is None)
        assert fast.degree is None or torch.equal(fast.degree, slow.degree)
    assert len(taken) == len(small_graphs()) and all(t is not None for t in taken)


def test_small_laplacian_leaves_what_it_does_not_handle_to_torch():
    ei = path_graph(6)
    assert graph._small_laplacian(ei.flip(1), None, 6, 'laplacian') is None  # unsorted
    loops = torch.cat([ei, torch.tensor([[2], [2]])], 1)
    assert graph._small_laplacian(to_undirected(loops), None, 6, 'laplacian') is None
    assert graph._small_laplacian(ei[:, ::2].contiguous(), None, 6, 'laplacian') is None  # directed
    w = torch.arange(1.0, ei.size(1) + 1, dtype=torch.float64)  # not symmetric
    assert graph._small_laplacian(ei, w, 6, 'laplacian') is None


@pytest.mark.parametrize('kind', ['sym_laplacian', 'laplacian'])
def test_small_null_space_is_the_torch_route_bit_for_bit(kind, monkeypatch):
    for edge_index, weight, n in small_graphs():
        op = GraphOperator.from_edge_index(edge_index, weight, n, kind=kind, dtype=torch.float64)
        fast = NullSpace.of_operator(op)
        with monkeypatch.context() as m:
            m.setattr(nullspace, 'PYTHON_SEARCH_ENTRIES', -1)
            slow = NullSpace.of_operator(op)
        for field in NullSpace.__dataclass_fields__:
            a, b = getattr(fast, field), getattr(slow, field)
            assert a.dtype == b.dtype and torch.equal(a, b), field


@pytest.mark.parametrize('n, dtype', [(40, torch.float64), (40, torch.float32),
                                      (5001, torch.float32), (19717, torch.float64)])
def test_numpy_sign_vector_is_the_torch_route_bit_for_bit(n, dtype):
    r"""The NumPy route of CPU blocks (column maxima by halving the rows) and
    the torch route of other devices give the same signs: small blocks, and
    tall ones with an odd row count at some halving, whose ties and largest
    entries sit in the first, middle and last rows."""
    g = torch.Generator().manual_seed(n)
    U = torch.randn(n, 8, generator=g, dtype=torch.float64).to(dtype)
    U[:, 1] = 0  # a zero column keeps its sign
    big = U[:, 2].abs().max() * 1.5
    U[3, 2], U[n - 1, 2] = -big, big  # a tie: the first
    U[5, 3] = -0.0
    U[9, 4], U[11, 4] = 10.0, -10.0 * (1 - 5e-4)  # within SIGN_RTOL of each other
    U[n // 2, 5] = -20.0  # the largest in the middle row
    U[n - 1, 6], U[n - 2, 6] = -30.0, 30.0  # the largest in the last rows
    U[:, 7] = 0.25  # every entry ties
    fast = linalg.canonical_sign_vector(U)
    slow = linalg._sign_vector_torch(U, linalg.SIGN_RTOL)
    assert fast.dtype == slow.dtype == dtype and torch.equal(fast, slow)
    assert fast[[1, 2, 4, 5, 6, 7]].tolist() == [1, -1, 1, -1, 1, 1]
    batched = linalg.canonical_sign_vector(U, batch=torch.zeros(n, dtype=torch.long),
                                           num_graphs=1)
    assert torch.equal(batched, fast[None])


def encoding_cases():
    r"""(edge_index, edge_weight, num_nodes, whether the one-graph NumPy
    route takes it): connected graphs it takes, with and without weights,
    with fewer nodes than k + 1 (padded columns), and the graphs it leaves
    to the general route."""
    g = torch.Generator().manual_seed(1)
    random = to_undirected(torch.randint(0, 40, (2, 120), generator=g), num_nodes=40)
    random = random[:, random[0] != random[1]]
    random = torch.cat([random, to_undirected(path_graph(40))], 1)  # connected
    random = to_undirected(random)
    weight = to_undirected(random, torch.rand(random.size(1), generator=g, dtype=torch.float64),
                           40, reduce='mean')[1]
    zero = weight.clone()
    zero[(random[0] == 3) | (random[1] == 3)] = 0
    loops = to_undirected(torch.cat([cycle_graph(9), torch.tensor([[4], [4]])], 1))
    return [(path_graph(12), None, 12, True), (cycle_graph(31), None, 31, True),
            (path_graph(5), None, 5, True), (path_graph(2), None, 2, True),
            (random, weight, 40, True), (random, weight.float(), 40, True),
            (cycle_graph(300), None, 300, False),  # ARPACK under method='arpack'
            (random, zero, 40, False),  # node 3 cut off: two components
            (grid_graph(4, 5), None, 22, False),  # two isolated nodes
            (torch.cat([cycle_graph(7), path_graph(5) + 7], 1), None, 12, False),
            (cycle_graph(10).flip(1), None, 10, False),  # unsorted
            (loops, None, 9, False), (torch.zeros(2, 0, dtype=torch.long), None, 3, False)]


@pytest.mark.parametrize('normalization', ['sym', None])
@pytest.mark.parametrize('method', ['auto', 'arpack'])
@pytest.mark.parametrize('signs', ['seeded', 'global', 'canonical'])
def test_small_graph_encoding_is_the_general_route_bit_for_bit(normalization, method, signs,
                                                               monkeypatch):
    from torch_geometric.data import Data

    from pyg_spectral.transforms import AddNeuralSVDPE
    from pyg_spectral.transforms import add_neuralsvd_pe as pe_module
    transform = AddNeuralSVDPE(8, normalization=normalization, method=method,
                               random_sign=signs != 'canonical',
                               seed=0 if signs == 'seeded' else None)
    real, taken = pe_module.AddNeuralSVDPE._encode_small, []

    def spy(self, *args):
        out = real(self, *args)
        taken.append(out is not None)
        return out
    monkeypatch.setattr(pe_module.AddNeuralSVDPE, '_encode_small', spy)

    def encode(edge_index, weight, n):
        torch.manual_seed(3)  # the draws of signs='global'
        data = transform(Data(edge_index=edge_index, edge_weight=weight, num_nodes=n))
        return data.laplacian_eigenvector_pe, data.laplacian_eigenvector_pe_eigenvalues
    cases = encoding_cases()
    fast = [encode(*case[:3]) for case in cases]
    expected = [case[3] and not (method == 'arpack' and case[2] >= 64) for case in cases]
    assert taken == expected
    monkeypatch.setattr(pe_module.AddNeuralSVDPE, '_encode_small', lambda self, *args: None)
    for (edge_index, weight, n, _), ours in zip(cases, fast):
        general = encode(edge_index, weight, n)
        for a, b in zip(ours, general):
            assert a.dtype == b.dtype and a.shape == b.shape
            assert torch.equal(a.view(torch.int32), b.view(torch.int32))  # -0.0 too


def test_small_graph_encoding_is_the_batch_encoding():
    from torch_geometric.data import Batch, Data

    from pyg_spectral.transforms import AddNeuralSVDPE
    # the dense solver's graphs (ARPACK's start depends on the place in the batch)
    graphs = [Data(edge_index=edge_index, num_nodes=n)
              for edge_index, weight, n, _ in encoding_cases() if weight is None and n <= 256]
    transform = AddNeuralSVDPE(8, seed=0)
    batched = transform(Batch.from_data_list(graphs))
    for data, alone in zip(batched.to_data_list(), [transform(g.clone()) for g in graphs]):
        assert torch.equal(data.laplacian_eigenvector_pe, alone.laplacian_eigenvector_pe)
        assert torch.equal(data.laplacian_eigenvector_pe_eigenvalues,
                           alone.laplacian_eigenvector_pe_eigenvalues)
