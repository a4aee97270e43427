"""Encode a whole :class:`~torch_geometric.data.InMemoryDataset` at once,
batch by batch, with a progress bar and an on-disk cache."""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
from torch import Tensor
from torch_geometric.data import Batch, InMemoryDataset
from torch_geometric.utils import cumsum
from tqdm.auto import tqdm

from ..io import atomic_save, digest, safe_load
from .add_neuralsvd_pe import AddNeuralSVDPE


def _node_slices(dataset: InMemoryDataset) -> Tensor:
    slices = dataset.slices or {}  # None: a dataset of one graph, stored as is
    if 'x' in slices:
        return slices['x']
    return cumsum(torch.as_tensor([dataset.get(i).num_nodes for i in range(len(dataset))],
                                  dtype=torch.long))


def _cache_key(dataset: InMemoryDataset, transform: AddNeuralSVDPE, node_slices: Tensor) -> str:
    r"""A digest of everything the encodings depend on: the transform's
    settings and encoder (its parameters too), each graph's edges, edge
    weights and node count, and the output dtype. Not the chunk size: it
    changes only which random signs are drawn, and either draw is valid."""
    device = None if transform.device is None else str(transform.device)
    settings = dict(type=type(transform).__qualname__, k=transform.k,
                    attr_name=transform.attr_name, is_undirected=transform.is_undirected,
                    normalization=transform.normalization, method=transform.method,
                    device=device, random_sign=transform.random_sign, seed=transform.seed,
                    arpack_options=dict(transform.arpack_options),
                    neuralsvd_options=dict(transform.neuralsvd_options), num_graphs=len(dataset),
                    dtype=torch.get_default_dtype())
    graphs = {key: (dataset._data[key], (dataset.slices or {}).get(key))
              for key in ('edge_index', 'edge_weight') if key in dataset._data}
    return digest(settings, node_slices, graphs, transform.encoder)[:16]


def _checked(loaded: object, num_nodes: int, num_graphs: int, k: int) -> tuple[Tensor, Tensor]:
    r"""The cached :obj:`(pe, values)` if they fit the dataset, else a
    :class:`ValueError` saying what does not."""
    if not (isinstance(loaded, tuple) and len(loaded) == 2
            and all(isinstance(t, Tensor) for t in loaded)):
        raise ValueError("does not hold a pair of tensors")
    pe, values = loaded
    if pe.shape != (num_nodes, k) or values.shape != (num_graphs, k):
        raise ValueError(f"holds encodings {tuple(pe.shape)} and eigenvalues "
                         f"{tuple(values.shape)} where the dataset needs {(num_nodes, k)} "
                         f"and {(num_graphs, k)}")
    if not (torch.isfinite(pe).all() and torch.isfinite(values).all()):
        raise ValueError("holds non-finite values")
    return pe, values


def precompute_pe(dataset: InMemoryDataset, transform: AddNeuralSVDPE,
                  cache_dir: str | os.PathLike | None = None, batch_size: int = 4096,
                  progress: bool = True) -> InMemoryDataset:
    r"""Adds :obj:`transform`'s encoding to every graph of :obj:`dataset`, in
    place, solving :obj:`batch_size` graphs together (one block-diagonal
    problem per chunk), and returns the dataset. Afterwards
    :obj:`dataset[i]` carries :obj:`transform.attr_name` and its eigenvalues
    as if the transform had been its :obj:`pre_transform`.

    With :obj:`cache_dir`, the encodings are saved there under a key made of
    everything they depend on (the transform's settings and encoder
    parameters, each graph's edges, edge weights and node count), and a
    later call with the same inputs loads them
    instead of solving. The file is written under a temporary name and
    renamed, so an interrupted run leaves no partial cache and concurrent
    readers see a whole file or none. A cache that cannot be read or does
    not fit the dataset is recomputed and replaced, with a
    :class:`RuntimeWarning`; a cache directory that cannot be written to
    gives a warning naming it, and the computed encodings are still
    attached. With :obj:`random_sign=True` the flips are drawn per chunk
    from :obj:`transform.seed` (set one for a reproducible cache).

    Args:
        dataset (InMemoryDataset): the graphs; not a view
            (:obj:`dataset[idx]`).
        transform (AddNeuralSVDPE): the encoding to add.
        cache_dir (str or os.PathLike, optional): where to keep the
            encodings between runs. (default: :obj:`None`: no cache)
        batch_size (int, optional): graphs solved together. (default:
            :obj:`4096`)
        progress (bool, optional): show a progress bar. (default: :obj:`True`)
    """
    if not isinstance(dataset, InMemoryDataset):
        raise TypeError(f"dataset must be an InMemoryDataset, got {type(dataset).__name__}")
    if not isinstance(transform, AddNeuralSVDPE):
        raise TypeError(f"transform must be an AddNeuralSVDPE, got {type(transform).__name__}")
    if dataset._indices is not None:
        raise ValueError("dataset is a view (dataset[idx]); pass the full dataset")
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if transform.attr_name is None and dataset._data.get('x') is None:
        # checked before the work: the encodings would have nowhere to go
        raise ValueError("transform.attr_name=None concatenates the encoding to x, but the "
                         "dataset has no x; set attr_name (e.g. 'laplacian_eigenvector_pe')")
    node_slices = _node_slices(dataset)
    path = None
    if cache_dir is not None:
        key = _cache_key(dataset, transform, node_slices)
        path = Path(cache_dir) / f'pe_{key}.pt'
    pe = values = None
    if path is not None and path.is_file():
        try:
            loaded = safe_load(path, 'encoding cache', 'it is recomputed and replaced',
                               map_location='cpu', weights_only=True)
            pe, values = _checked(loaded, int(node_slices[-1]), len(dataset), transform.k)
        except ValueError as error:
            message = str(error) if str(path) in str(error) else \
                f"encoding cache '{path}' {error}; it is recomputed and replaced"
            warnings.warn(message, RuntimeWarning)
    if pe is None:
        pes, vals = [], []
        starts = range(0, len(dataset), batch_size)
        for a in tqdm(starts, disable=not progress, desc='AddNeuralSVDPE'):
            batch = Batch.from_data_list([dataset.get(i) for i in range(a, min(a + batch_size, len(dataset)))])
            p, v = transform.encode(batch.edge_index, batch.get('edge_weight'),
                                    batch.num_nodes, batch.batch)
            pes.append(p)
            vals.append(v)
        pe, values = torch.cat(pes), torch.cat(vals)
        if path is not None:
            try:
                atomic_save((pe, values), path)
            except OSError as error:
                warnings.warn(f"could not write the encoding cache '{path}' ({error}); the "
                              f"encodings are attached but not cached: make the directory "
                              f"writable or pass another cache_dir", RuntimeWarning)

    data, slices = dataset._data, dataset.slices
    name = transform.attr_name or 'laplacian_eigenvector_pe'
    if transform.attr_name is None:
        x = data.x.view(-1, 1) if data.x.dim() == 1 else data.x
        data.x = torch.cat([x, pe.to(x.dtype)], dim=-1)
    else:
        data[transform.attr_name] = pe
        if slices is not None:
            slices[transform.attr_name] = node_slices
    data[name + '_eigenvalues'] = values
    if slices is not None:
        slices[name + '_eigenvalues'] = torch.arange(len(dataset) + 1)
    dataset._data_list = None  # drop graphs cached before the new attributes
    return dataset
