import json
import subprocess
import sys

import pytest
import torch

from pyg_spectral.cli import main


def test_bench_planetoid_cora_table_and_json(tmp_path, capsys, cora):
    out = tmp_path / 'res.json'
    rc = main(['bench', 'planetoid', '--dataset', 'Cora', '--seeds', '2',
               '--epochs', '60', '--out', str(out), '--no-progress'])
    assert rc == 0
    table = capsys.readouterr().out
    assert '| gcn' in table and 'Cora' in table
    res = json.loads(out.read_text())[0]
    assert res['model'] == 'gcn' and len(res['test_acc']) == 2
    # 60 epochs of the Kipf GCN on Cora already reach well above 70%
    assert res['test_acc_mean'] > 0.70
    assert res['epoch_ms'] > 0 and res['peak_mem_mib'] > 0


def test_unknown_dataset_lists_valid_ones(capsys):
    with pytest.raises(SystemExit):
        main(['bench', 'planetoid', '--dataset', 'Coraa'])
    assert 'Cora, CiteSeer, PubMed' in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the no-CUDA message')
def test_cuda_without_cuda_says_so(capsys):
    assert main(['bench', 'planetoid', '--device', 'cuda']) == 2
    assert 'CUDA is not available' in capsys.readouterr().err


def test_python_dash_m_entry_point():
    proc = subprocess.run([sys.executable, '-m', 'pyg_spectral', 'bench', 'planetoid', '--help'],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and '--dataset' in proc.stdout


def test_largest_component_option(tmp_path, cora):
    r"""Cora's largest component: 2485 of 2708 nodes, masks carried along,
    and a connected graph (the top eigenvalue of its GCN matrix is simple)."""
    from pyg_spectral.bench.node_classification import load_graph
    data, num_classes, _ = load_graph('Cora', largest_component=True)
    assert data.num_nodes == 2485 and num_classes == 7
    assert data.train_mask.shape == (2485,) and int(data.train_mask.sum()) == 122
    from scipy.sparse.csgraph import connected_components
    from torch_geometric.utils import to_scipy_sparse_matrix
    assert connected_components(to_scipy_sparse_matrix(data.edge_index, num_nodes=2485))[0] == 1
    out = tmp_path / 'res.json'
    assert main(['bench', 'planetoid', '--dataset', 'Cora', '--largest-component', '--seeds', '1',
                 '--epochs', '5', '--out', str(out), '--no-progress']) == 0
    res = json.loads(out.read_text())[0]
    assert res['dataset'] == 'Cora (largest component)' and res['settings']['largest_component']


def test_rank_sweep_runs_each_rank_and_records_it(tmp_path, capsys, cora):
    out = tmp_path / 'sweep.json'
    assert main(['bench', 'planetoid', '--model', 'gcn', 'lowrank-gcn-exact', '--k', '8', '32',
                 '--seeds', '1', '--epochs', '40', '--out', str(out), '--no-progress']) == 0
    rows = json.loads(out.read_text())
    assert [(r['model'], r['k']) for r in rows] == [
        ('gcn', None), ('lowrank-gcn-exact', 8), ('lowrank-gcn-exact', 32)]
    table = capsys.readouterr().out
    assert '| lowrank-gcn-exact | Cora    | 32 | 1     | 40' in table
    # the 78 component vectors plus 32 eigenvectors after them carry the classes
    assert rows[2]['test_acc_mean'] > 0.6


def test_out_into_a_missing_directory_fails_before_the_run(tmp_path, capsys):
    assert main(['bench', 'planetoid', '--out', str(tmp_path / 'missing' / 'r.json')]) == 2
    assert 'is not a writable directory' in capsys.readouterr().err


def test_rank_for_a_model_without_one_is_refused():
    from pyg_spectral.bench.node_classification import run_node_classification
    with pytest.raises(ValueError, match="model='gcn' has no rank k"):
        run_node_classification('Cora', 'gcn', k=16)


@pytest.mark.parametrize('argv, message', [
    (['--seeds', '0'], 'seeds must be a positive integer'),
    (['--epochs', '0'], 'epochs must be a positive integer'),
    (['--device', 'tpu'], "device='tpu' is not a torch device"),
    (['--device', 'meta'], "the bench runs on 'cpu' or 'cuda'"),
    (['--k', '0'], '--k must be positive'),
    (['--threads', '-1'], '--threads must be >= 0'),
])
def test_bad_bench_arguments_are_named_before_any_work(argv, message, capsys):
    assert main(['bench', 'planetoid', '--no-progress', *argv]) == 2
    assert message in capsys.readouterr().err


def test_load_planetoid_names_bad_arguments():
    from pyg_spectral.datasets import load_planetoid
    with pytest.raises(TypeError, match='name must be a string'):
        load_planetoid(None)
    with pytest.raises(ValueError, match="split must be one of"):
        load_planetoid('Cora', split='bogus')


def test_out_is_written_after_every_run(tmp_path, monkeypatch, cora):
    r"""A sweep stopped in its second run keeps the first one's result."""
    from pyg_spectral.bench import node_classification
    real, calls = node_classification.run_node_classification, []

    def stop_at_second(*args, **kwargs):
        calls.append(kwargs.get('k'))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)
    monkeypatch.setattr(node_classification, 'run_node_classification', stop_at_second)
    out = tmp_path / 'partial.json'
    with pytest.raises(KeyboardInterrupt):
        main(['bench', 'planetoid', '--model', 'lowrank-gcn-exact', '--k', '4', '8', '--seeds', '1',
              '--epochs', '2', '--out', str(out), '--no-progress'])
    assert [r['k'] for r in json.loads(out.read_text())] == [4]
    assert [p.name for p in tmp_path.iterdir()] == ['partial.json']  # no temporary file left
