"""benchmarks/distributed.py's reference, the ground truth of its time to a
sine: right where eigenvalues repeat (three components, each eigenvalue of
a path three times), against the closed-form spectrum of a path."""
import importlib.util
import json
import math
import sys

import numpy as np
import torch

from conftest import REPO
from graphs import path_graph
from pyg_spectral.graph_file import GraphWriter


def load_script():
    sys.path.insert(0, str(REPO / 'benchmarks'))  # the script imports common.py from there
    spec = importlib.util.spec_from_file_location('distributed_bench',
                                                  REPO / 'benchmarks' / 'distributed.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_reference_holds_every_copy_of_repeated_eigenvalues(tmp_path, capsys):
    m, copies = 2000, 3  # 6000 nodes: above the dense limit, so the sparse route
    edge_index = torch.cat([path_graph(m) + i * m for i in range(copies)], 1)
    with GraphWriter(tmp_path / 'paths.npz', m * copies, edge_index.size(1)) as writer:
        writer.write(edge_index)
    script = load_script()
    script.main(['reference', str(tmp_path / 'paths.npz'), '--k', '6', '--solver',
                 'shift-invert', '--out', str(tmp_path / 'ref.npy')])
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    # the normalized Laplacian of a path of m nodes: 1 - cos(pi j / (m - 1))
    path = [1 - math.cos(math.pi * j / (m - 1)) for j in range(3)]
    expected = [path[0]] * 3 + [path[1]] * 3 + [path[2]]
    assert np.allclose(report['values'][:7], expected, rtol=1e-5, atol=1e-9)
    assert report['gap'] > 0 and report['sine_bound'] < 1e-3
    vectors = np.load(tmp_path / 'ref.npy')
    assert vectors.shape == (m * copies, 6)
    assert np.allclose(vectors.T @ vectors, np.eye(6), atol=1e-8)
    # the zero eigenspace: each path's D^1/2 1 / sqrt(vol), spanned by the first three
    deg = np.full(m, 2.0)
    deg[[0, -1]] = 1
    for i in range(copies):
        indicator = np.zeros(m * copies)
        indicator[i * m:(i + 1) * m] = np.sqrt(deg / deg.sum())
        assert np.linalg.norm(vectors[:, :3].T @ indicator) > 1 - 1e-8
    assert not list(tmp_path.glob('*partial*'))
