"""AddNeuralSVDPE on a PyG Batch: the new attributes split back per graph,
through the one place that writes PyG's private collation record."""
import torch
from torch_geometric.data import Batch, Data

from pyg_spectral.transforms import AddNeuralSVDPE
from pyg_spectral.transforms.add_neuralsvd_pe import split_in_batch

from graphs import cycle_graph, path_graph


def small_graphs():
    return [Data(edge_index=path_graph(5), num_nodes=5),
            Data(edge_index=cycle_graph(7), num_nodes=7),
            Data(edge_index=path_graph(4), num_nodes=4)]


def test_split_in_batch_writes_what_from_data_list_writes():
    r"""If PyG changes how Batch.from_data_list records its collation, this
    fails rather than the split going wrong silently."""
    graphs = small_graphs()
    carrying = [Data(edge_index=g.edge_index, num_nodes=g.num_nodes,
                     pe=torch.randn(g.num_nodes, 3), pe_eigenvalues=torch.randn(1, 3))
                for g in graphs]
    expected = Batch.from_data_list(carrying)
    batch = Batch.from_data_list(graphs)
    batch.pe, batch.pe_eigenvalues = expected.pe, expected.pe_eigenvalues
    split_in_batch(batch, node_attrs=['pe'], graph_attrs=['pe_eigenvalues'])
    for attr in ('pe', 'pe_eigenvalues'):
        assert torch.equal(batch._slice_dict[attr], expected._slice_dict[attr])
        assert torch.equal(batch._inc_dict[attr], expected._inc_dict[attr])
    for got, want in zip(batch.to_data_list(), carrying):
        assert torch.equal(got.pe, want.pe) and torch.equal(got.pe_eigenvalues, want.pe_eigenvalues)


def test_attributes_split_back_per_graph_also_a_created_x():
    transform = AddNeuralSVDPE(2, attr_name=None, seed=0)
    parts = transform(Batch.from_data_list(small_graphs())).to_data_list()
    for part, graph in zip(parts, small_graphs()):
        alone = transform(graph)
        assert torch.equal(part.x, alone.x)
        assert torch.equal(part.laplacian_eigenvector_pe_eigenvalues,
                           alone.laplacian_eigenvector_pe_eigenvalues)


def test_batch_built_without_from_data_list():
    r"""Such a batch has no collation record: the transform still encodes it
    (it raised AttributeError on the missing record)."""
    graphs = small_graphs()
    collated = Batch.from_data_list(graphs)
    batch = Batch(edge_index=collated.edge_index, batch=collated.batch, ptr=collated.ptr,
                  num_nodes=collated.num_nodes)
    out = AddNeuralSVDPE(2, seed=0)(batch)
    expected = AddNeuralSVDPE(2, seed=0)(collated)
    assert torch.equal(out.laplacian_eigenvector_pe, expected.laplacian_eigenvector_pe)
    assert not hasattr(out, '_slice_dict')


def test_private_batch_record_is_written_in_one_place():
    from pathlib import Path

    import pyg_spectral
    package = Path(pyg_spectral.__file__).resolve().parent
    users = {str(path.relative_to(package)) for path in package.rglob('*.py')
             if '_slice_dict' in path.read_text() or '_inc_dict' in path.read_text()}
    assert users == {'transforms/add_neuralsvd_pe.py'}
