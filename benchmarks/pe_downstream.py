"""Downstream check: a GNN with our PE vs PyG's PE vs no PE, on a task where
positions matter.

    OMP_NUM_THREADS=1 python benchmarks/pe_downstream.py

Task ("where in the square"): random geometric graphs (points uniform in
the unit square, connected within a radius, largest component, ~300
nodes); every node is labelled by its distance to the centre of the square:
class 0 below 0.2, class 1 below 0.35, class 2 beyond. Node features are a
constant, so a message-passing GNN only sees local structure (degrees drop
near the border, within its 3-hop receptive field of ~0.15) and cannot tell
the centre from the middle ring; the low Laplacian eigenvectors are smooth
global coordinates of the graph and can. Both encodings are Laplacian
eigenvectors with random signs; the model sees them with a fresh random sign
per graph and column at every epoch (the usual sign augmentation), so it
must use sign-invariant information. Test accuracy is on unseen graphs.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch_geometric.data import Batch, Data
from torch_geometric.loader import DataLoader
from torch_geometric.nn import GINConv
from torch_geometric.transforms import AddLaplacianEigenvectorPE

from pyg_spectral.transforms import AddNeuralSVDPE

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (largest_component, largest_component_mask, machine_header,  # noqa: E402
                    radius_graph)


def make_graph(n: int, rng: np.random.Generator) -> Data:
    pos = rng.random((n, 2))
    graph = radius_graph(pos, 10.0)
    keep = largest_component_mask(graph)
    dist = np.linalg.norm(pos[keep] - 0.5, axis=1)
    graph = largest_component(graph)
    graph.y = torch.from_numpy(np.digitize(dist, [0.2, 0.35])).long()
    return graph


class GIN(torch.nn.Module):
    def __init__(self, in_channels: int, hidden: int = 64, layers: int = 3, classes: int = 3):
        super().__init__()
        dims = [in_channels] + [hidden] * layers
        self.convs = torch.nn.ModuleList(
            GINConv(torch.nn.Sequential(torch.nn.Linear(a, b), torch.nn.ReLU(), torch.nn.Linear(b, b)))
            for a, b in zip(dims[:-1], dims[1:]))
        self.out = torch.nn.Linear(hidden, classes)

    def forward(self, x, edge_index):
        for conv in self.convs:
            x = F.relu(conv(x, edge_index))
        return self.out(x)


def features(batch: Batch, pe: str | None, generator: torch.Generator | None) -> torch.Tensor:
    x = torch.ones(batch.num_nodes, 1)
    if pe is None:
        return x
    P = batch[pe]
    if generator is not None:  # sign augmentation, per graph and column
        flips = 2 * torch.randint(0, 2, (batch.num_graphs, P.size(1)), generator=generator) - 1
        P = P * flips[batch.batch]
    return torch.cat([x, P], 1)


def train_eval(train, test, pe, seed, epochs):
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    k = 0 if pe is None else train[0][pe].size(1)
    model = GIN(1 + k)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    loader = DataLoader(train, batch_size=16, shuffle=True, generator=generator)
    for _ in range(epochs):
        model.train()
        for batch in loader:
            opt.zero_grad()
            loss = F.cross_entropy(model(features(batch, pe, generator), batch.edge_index), batch.y)
            loss.backward()
            opt.step()
    model.eval()
    batch = Batch.from_data_list(test)
    with torch.no_grad():
        pred = model(features(batch, pe, None), batch.edge_index).argmax(1)
    return float((pred == batch.y).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument('--train', type=int, default=200)
    parser.add_argument('--test', type=int, default=50)
    parser.add_argument('--nodes', type=int, default=300)
    parser.add_argument('--k', type=int, default=8)
    parser.add_argument('--epochs', type=int, default=60)
    parser.add_argument('--seeds', type=int, default=3)
    args = parser.parse_args()
    print(machine_header(), flush=True)
    rng = np.random.default_rng(0)
    graphs = [make_graph(args.nodes, rng) for _ in range(args.train + args.test)]

    t = time.perf_counter()
    batch = AddNeuralSVDPE(args.k, attr_name='ours', seed=0)(Batch.from_data_list(graphs))
    graphs = batch.to_data_list()
    t_ours = time.perf_counter() - t
    torch.manual_seed(0)
    pyg = AddLaplacianEigenvectorPE(args.k, attr_name='pyg', is_undirected=True)
    t = time.perf_counter()
    graphs = [pyg(g) for g in graphs]
    t_pyg = time.perf_counter() - t
    train, test = graphs[:args.train], graphs[args.train:]
    counts = torch.bincount(torch.cat([g.y for g in test]), minlength=3)
    print(f"\n{len(graphs)} graphs, {sum(g.num_nodes for g in graphs)} nodes; test class shares "
          f"{[round(float(c), 3) for c in counts / counts.sum()]} (majority-class accuracy "
          f"{float(counts.max() / counts.sum()):.3f}); PE time: ours {t_ours:.2f} s, PyG {t_pyg:.2f} s\n")
    print(f'| input | test accuracy (mean ± std over {args.seeds} seeds) |')
    print('|---|---|')
    for name, pe in (('no PE', None), ('PyG AddLaplacianEigenvectorPE', 'pyg'),
                     ('ours AddNeuralSVDPE', 'ours')):
        accs = [train_eval(train, test, pe, s, args.epochs) for s in range(args.seeds)]
        print(f'| {name} | {np.mean(accs):.3f} ± {np.std(accs):.3f} |', flush=True)


if __name__ == '__main__':
    main()
