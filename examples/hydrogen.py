"""Learn the lowest states of the 2D hydrogen atom H = -lap - 1/r with
NeuralSVD, print learned vs exact energies and save a figure of the learned
functions next to the analytic ones in examples/output/ (needs matplotlib:
pip install "pyg-spectral[plot]").

    python examples/hydrogen.py [--steps 1000]
"""
import torch

from pyg_spectral.nn import EigenfunctionMLP
from pyg_spectral.operators import Hamiltonian, RadialSampling
from pyg_spectral.solvers import SampledNeuralSVD
from plotting import figure_path, parser, pyplot, save, setup_threads


def analytic(x: torch.Tensor) -> torch.Tensor:
    r"""1s, 2s, 2p_x, 2p_y of H = -lap - 1/r in 2D (unnormalised)."""
    r = x.norm(dim=-1)
    return torch.stack([torch.exp(-r), (1 - 2 * r / 3) * torch.exp(-r / 3),
                        x[..., 0] * torch.exp(-r / 3), x[..., 1] * torch.exp(-r / 3)], -1)


def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__, 'hydrogen')
    p.add_argument('--steps', type=int, default=1000,
                   help='training steps of SampledNeuralSVD (batches of 256 samples)')
    args = p.parse_args(argv)
    torch.manual_seed(0)
    setup_threads(args.threads)  # small batched products: threads only contend

    op = Hamiltonian.hydrogen(2, sampling=RadialSampling(2, 3.0))
    model = EigenfunctionMLP(2, 4, hidden_channels=64, num_layers=2, fourier_features=64,
                             fourier_scale=0.1, disjoint=True)
    res = SampledNeuralSVD(4, lr=5e-3, batch_size=256, ema_decay=0.99).fit(
        op, model, steps=args.steps)
    exact = op.exact_eigenvalues(4)
    print('state  exact E    learned E  rel. error')
    for i, (e, l) in enumerate(zip(exact.tolist(), res.eigenvalues.tolist())):
        print(f'{i + 1:5d}  {e:9.5f}  {l:9.5f}  {abs(l - e) / abs(e):8.2%}')
    print(f'max |cos| between learned functions: {res.orthogonality:.3f}')

    plt = pyplot()
    if plt is None:
        return
    grid = torch.linspace(-15, 15, 121)
    xy = torch.stack(torch.meshgrid(grid, grid, indexing='xy'), -1).reshape(-1, 2)
    with torch.no_grad():
        # the network is psi / envelope (see Hamiltonian's envelope option)
        learned = res.model(xy) * op.sampling.log_envelope(xy).exp().unsqueeze(1)
    rows = [('learned', learned), ('analytic', analytic(xy))]
    fig, axes = plt.subplots(2, 4, figsize=(12, 6))
    for row, (name, values) in enumerate(rows):
        for j in range(4):
            v = values[:, j].reshape(121, 121)
            vmax = v.abs().max()
            ax = axes[row, j]
            ax.imshow(v, cmap='RdBu', vmin=-vmax, vmax=vmax, extent=(-15, 15, -15, 15),
                      origin='lower')
            ax.set_title(f'{name} {j + 1}')
            ax.set_xlabel('x (Bohr radii)')
            ax.set_ylabel('y (Bohr radii)')
    fig.suptitle('2D hydrogen: learned states (any rotation within the n = 2 shell) '
                 'and the analytic 1s, 2s, 2p (colour: amplitude, red < 0 < blue)')
    save(fig, figure_path(args))


if __name__ == '__main__':
    main()
