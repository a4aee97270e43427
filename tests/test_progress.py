import re
import warnings

import torch

from pyg_spectral import GraphOperator, NeuralSVD
from pyg_spectral.nn import EigenfunctionMLP
from pyg_spectral.operators import Hamiltonian
from pyg_spectral.solvers import SampledNeuralSVD

from graphs import cycle_graph


def last_frame(err: str, desc: str) -> tuple[int, int]:
    r"""The step count and total of the last frame a tqdm bar drew."""
    frames = [f for f in err.replace('\n', '\r').split('\r') if f.startswith(desc + ':')]
    assert frames, err
    done, total = re.search(r'\| *(\d+)/(\d+) ', frames[-1]).groups()
    return int(done), int(total)


def test_a_fit_that_converges_early_ends_its_bar_at_100_percent(capsys):
    op = GraphOperator.from_edge_index(cycle_graph(60), num_nodes=60, kind='sym_laplacian')
    result = NeuralSVD(5).fit(op, largest=False, steps=5000, tol=1e-3, progress=True)
    assert result.converged and result.steps < 5000
    assert last_frame(capsys.readouterr().err, 'NeuralSVD') == (result.steps, result.steps)


def test_a_fit_that_runs_every_step_ends_its_bar_at_its_total(capsys):
    op = GraphOperator.from_edge_index(cycle_graph(60), num_nodes=60, kind='sym_laplacian')
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', RuntimeWarning)  # 300 steps: not converged
        result = NeuralSVD(5).fit(op, largest=False, steps=300, progress=True)
    assert result.steps == 300
    assert last_frame(capsys.readouterr().err, 'NeuralSVD') == (300, 300)


def test_a_sampled_fit_stopped_by_its_callback_ends_its_bar_at_100_percent(capsys):
    op = Hamiltonian.hydrogen(2)
    model = EigenfunctionMLP(2, 2, hidden_channels=8, num_layers=1, fourier_features=8,
                             disjoint=True)
    result = SampledNeuralSVD(2, batch_size=32).fit(
        op, model, steps=1000, check_every=10, eval_samples=256, progress=True,
        callback=lambda step, loss, values: step + 1 >= 30)
    assert result.steps == 30
    assert last_frame(capsys.readouterr().err, 'SampledNeuralSVD') == (30, 30)
