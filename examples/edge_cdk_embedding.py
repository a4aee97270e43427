"""Node embeddings from sampled edges alone: the edge CDK p(x, y) ~ A_xy of
Zachary's karate club, learned with two embedding tables, has the spectrum
of D^-1/2 A D^-1/2. Prints learned vs exact singular values and saves a
figure of the embedding in examples/output/ (needs matplotlib).

    python examples/edge_cdk_embedding.py [--k 4 --steps 1000]
"""
import torch
from torch_geometric.datasets import KarateClub

from pyg_spectral.metrics import max_principal_sine
from pyg_spectral.operators import CDK
from pyg_spectral.solvers import SampledNeuralSVD
from plotting import figure_path, integer_ticks, parser, pyplot, save, setup_threads


def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__, 'edge_cdk_embedding')
    p.add_argument('--k', type=int, default=4,
                   help='number of singular pairs learned (the figure needs k >= 3)')
    p.add_argument('--steps', type=int, default=1000,
                   help='training steps of SampledNeuralSVD (batches of 1024 edges)')
    args = p.parse_args(argv)
    torch.manual_seed(0)
    setup_threads(args.threads)
    data = KarateClub()[0]

    op = CDK.graph(data.edge_index)
    n, k = op.num_nodes, args.k
    f, g = torch.nn.Embedding(n, k), torch.nn.Embedding(n, k)
    res = SampledNeuralSVD(k, lr=3e-2, batch_size=1024, ema_decay=0.99).fit(
        op, (f, g), steps=args.steps)

    lam, U = torch.linalg.eigh(op.graph_operator.to_dense())
    order = lam.abs().argsort(descending=True)[:k]
    print('  i  |eig| of D^-1/2 A D^-1/2  learned')
    for i, (e, s) in enumerate(zip(lam.abs()[order].tolist(), res.eigenvalues.tolist())):
        print(f'{i:3d}  {e:24.4f}  {s:7.4f}')
    deg = torch.zeros(n, dtype=torch.float64).index_add_(
        0, data.edge_index[0], torch.ones(data.edge_index.size(1), dtype=torch.float64))
    embedding = res.model[0].weight.detach().double()
    print(f'largest principal sine between D^1/2 F and the eigenvectors: '
          f'{max_principal_sine(embedding * deg.sqrt()[:, None], U[:, order]):.3f}')

    plt = pyplot()
    if plt is None:
        return
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot(lam.abs()[order], 'o-', label='eigh')
    a.plot(res.eigenvalues, 'x--', label='learned from edges')
    a.set_xlabel('index i')
    a.set_ylabel('singular value')
    integer_ticks(a.xaxis)
    a.set_title('singular values')
    a.legend()
    b.scatter(embedding[:, 1], embedding[:, 2], c=data.y, cmap='tab10')
    b.set_xlabel('learned function i = 1')
    b.set_ylabel('learned function i = 2')
    b.set_title('nodes on learned functions 1 and 2 (colour: community)')
    save(fig, figure_path(args))


if __name__ == '__main__':
    main()
