"""Learn the canonical dependence kernel of a correlated Gaussian pair
(X, Y = rho X + sqrt(1 - rho^2) Z) from samples: its singular values are
rho^i and its singular functions the Hermite polynomials. Prints learned vs
exact values and saves a figure in examples/output/ (needs matplotlib).

    python examples/cdk_gaussian.py [--rho 0.8 --steps 1500]
"""
import torch

from pyg_spectral.nn import EigenfunctionMLP
from pyg_spectral.operators import CDK, hermite_functions
from pyg_spectral.solvers import SampledNeuralSVD
from plotting import figure_path, integer_ticks, parser, pyplot, save, setup_threads


def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__, 'cdk_gaussian')
    p.add_argument('--rho', type=float, default=0.8,
                   help='correlation of X and Y, in (-1, 1): the singular values are rho^i')
    p.add_argument('--k', type=int, default=5, help='number of singular pairs learned')
    p.add_argument('--steps', type=int, default=1500,
                   help='training steps of SampledNeuralSVD (batches of 1024 pairs)')
    args = p.parse_args(argv)
    torch.manual_seed(0)
    setup_threads(args.threads)

    op = CDK.gaussian(args.rho)
    f, g = (EigenfunctionMLP(1, args.k, hidden_channels=64, num_layers=3, activation='gelu')
            for _ in range(2))
    res = SampledNeuralSVD(args.k, lr=3e-3, batch_size=1024, ema_decay=0.99).fit(
        op, (f, g), steps=args.steps)
    exact = op.exact_singular_values(args.k)
    print('  i  exact rho^i  learned')
    for i, (e, s) in enumerate(zip(exact.tolist(), res.eigenvalues.tolist())):
        print(f'{i:3d}  {e:10.4f}  {s:8.4f}')

    plt = pyplot()
    if plt is None:
        return
    x = torch.linspace(-3, 3, 200)
    with torch.no_grad():
        learned = res.model[0](x[:, None])
    learned = learned / learned.pow(2).mean(0).sqrt()  # unit norm on the grid, for shape only
    hermite = hermite_functions(x, args.k - 1)
    hermite = hermite / hermite.pow(2).mean(0).sqrt()
    sign = torch.sign((learned * hermite).sum(0))
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    a.plot(exact, 'o-', label=r'exact $\rho^i$')
    a.plot(res.eigenvalues, 'x--', label='learned')
    a.set_xlabel('index i')
    a.set_ylabel('singular value')
    integer_ticks(a.xaxis)
    a.set_title('singular values')
    a.legend()
    for i in range(args.k):
        b.plot(x, hermite[:, i], color=f'C{i}', alpha=0.5)
        b.plot(x, sign[i] * learned[:, i], '--', color=f'C{i}')
    b.set_xlabel('x')
    b.set_ylabel('f_i(x), unit norm on the grid')
    b.set_title('learned f_i (dashed) vs Hermite He_i (solid)')
    save(fig, figure_path(args))


if __name__ == '__main__':
    main()
