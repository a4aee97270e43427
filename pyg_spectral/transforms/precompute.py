"""Encode a whole :class:`~torch_geometric.data.InMemoryDataset` at once,
batch by batch, with a progress bar and an on-disk cache."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
from torch_geometric.data import Batch, InMemoryDataset
from tqdm.auto import tqdm

from .add_neuralsvd_pe import AddNeuralSVDPE


def _cache_key(dataset: InMemoryDataset, transform: AddNeuralSVDPE) -> str:
    h = hashlib.sha1()
    settings = (transform.k, transform.attr_name, transform.normalization, transform.method,
                transform.random_sign, transform.seed, sorted(transform.solver_kwargs.items()),
                type(transform.encoder).__name__, len(dataset))
    h.update(repr(settings).encode())
    for key in ('edge_index', 'edge_weight'):
        if key in dataset._data:
            h.update(dataset._data[key].cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def precompute_pe(dataset: InMemoryDataset, transform: AddNeuralSVDPE,
                  cache_dir: str | os.PathLike | None = None, batch_size: int = 4096,
                  progress: bool = True) -> InMemoryDataset:
    r"""Adds :obj:`transform`'s encoding to every graph of :obj:`dataset`, in
    place, solving :obj:`batch_size` graphs together (one block-diagonal
    problem per chunk), and returns the dataset. Afterwards
    :obj:`dataset[i]` carries :obj:`transform.attr_name` and its eigenvalues
    as if the transform had been its :obj:`pre_transform`.

    With :obj:`cache_dir`, the encodings are saved there under a key made of
    the transform's settings and the dataset's edges, and a second call loads
    them instead of solving. With :obj:`random_sign=True` the flips are drawn
    per chunk from :obj:`transform.seed` (set one for a reproducible cache).
    """
    if not isinstance(dataset, InMemoryDataset):
        raise TypeError(f"dataset must be an InMemoryDataset, got {type(dataset).__name__}")
    if dataset._indices is not None:
        raise ValueError("dataset is a view (dataset[idx]); pass the full dataset")
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f'pe_{_cache_key(dataset, transform)}.pt'
    if path is not None and path.is_file():
        pe, values = torch.load(path)
    else:
        pes, vals = [], []
        starts = range(0, len(dataset), batch_size)
        for a in tqdm(starts, disable=not progress, desc='AddNeuralSVDPE'):
            batch = Batch.from_data_list([dataset.get(i) for i in range(a, min(a + batch_size, len(dataset)))])
            p, v = transform.encode(batch.edge_index, batch.num_nodes,
                                    batch.get('edge_weight'), batch.batch)
            pes.append(p)
            vals.append(v)
        pe, values = torch.cat(pes), torch.cat(vals)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save((pe, values), path)

    data, slices = dataset._data, dataset.slices
    node_slices = slices['x'] if 'x' in slices else torch.cat(
        [torch.zeros(1, dtype=torch.long), torch.as_tensor(
            [dataset.get(i).num_nodes for i in range(len(dataset))]).cumsum(0)])
    name = transform.attr_name or 'laplacian_eigenvector_pe'
    if transform.attr_name is None:
        x = data.x.view(-1, 1) if data.x.dim() == 1 else data.x
        data.x = torch.cat([x, pe.to(x.dtype)], dim=-1)
    else:
        data[transform.attr_name] = pe
        slices[transform.attr_name] = node_slices
    data[name + '_eigenvalues'] = values
    slices[name + '_eigenvalues'] = torch.arange(len(dataset) + 1)
    dataset._data_list = None  # drop graphs cached before the new attributes
    return dataset
