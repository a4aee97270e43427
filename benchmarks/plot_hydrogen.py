"""Figures of the 16-state hydrogen fit of ``benchmarks/hydrogen.py``.

    python benchmarks/plot_hydrogen.py \\
        --csv benchmarks/results/hydrogen16_s0_progress.csv \\
        --fit benchmarks/results/hydrogen16.pt

writes ``benchmarks/results/hydrogen16_convergence.png`` (per-state relative
error vs step, from the CSV) and, with ``--fit``,
``benchmarks/results/hydrogen16_states.png`` (the learned n = 3, 4 states,
rotated to the Ritz basis, and their shell densities next to the analytic
ones). A shell's states are only defined up to a rotation within the shell,
so the density compared is the shell's total sum_m |psi_nm|^2, which is
invariant to it.
"""
from __future__ import annotations

import argparse
import csv
import math
import sys
from pathlib import Path

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hydrogen import load_small, shells  # noqa: E402

COLORS = {1: 'tab:blue', 2: 'tab:orange', 3: 'tab:green', 4: 'tab:red'}


def plot_convergence(path: str, out: str) -> None:
    with open(path, newline='') as fh:
        rows = list(csv.DictReader(fh))
    steps = [int(r['step']) for r in rows]
    k = sum(1 for key in rows[0] if key.startswith('ritz_') and key[5:].isdigit())
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for ax, kind, title in ((axes[0], 'ritz', 'Rayleigh-Ritz values of the learned span'),
                            (axes[1], 'own', "each function's own Rayleigh quotient")):
        for i, n in enumerate(shells(k)):
            ax.plot(steps, [100 * float(r[f'{kind}_{i + 1}']) for r in rows], color=COLORS[n],
                    lw=0.8, alpha=0.7, label=f'n = {n}' if i == n * n - 2 * n + 1 else None)
        mean = [100 * sum(float(r[f'{kind}_{i + 1}']) for i in range(k)) / k for r in rows]
        ax.plot(steps, mean, color='k', lw=2, label='mean of 16')
        ax.axhline(0.9, color='gray', ls='--', lw=1, label='paper, sequential: 0.9 %')
        ax.set_yscale('log')
        ax.set_xlabel('step')
        ax.set_title(title)
        ax.grid(True, which='both', alpha=0.3)
    axes[0].set_ylabel('relative eigenvalue error (%)')
    axes[0].legend(fontsize=8)
    fig.suptitle(f'2D hydrogen, 16 states: {Path(path).name} '
                 f'(last row: step {steps[-1]}, {float(rows[-1]["wall_s"]) / 3600:.2f} h)')
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def print_table(paths: list[str]) -> None:
    r"""One markdown row per CSV row: the shells' Ritz error ranges and the
    means of 16 (``--table``; the hydrogen tuning runs' summary)."""
    print('| run | step | wall (s) | Ritz n <= 2 max | Ritz n = 3 | Ritz n = 4 '
          '| Ritz mean of 16 | own mean of 16 |')
    print('|---|---|---|---|---|---|---|---|')
    for path in paths:
        with open(path, newline='') as fh:
            for row in csv.DictReader(fh):
                ritz = [100 * float(row[f'ritz_{i}']) for i in range(1, 17)]
                own = [100 * float(row[f'own_{i}']) for i in range(1, 17)]
                print(f"| {Path(path).stem} | {row['step']} | {float(row['wall_s']):.0f} "
                      f"| {max(ritz[:4]):.2f} % | {min(ritz[4:9]):.1f}-{max(ritz[4:9]):.1f} % "
                      f"| {min(ritz[9:]):.1f}-{max(ritz[9:]):.1f} % | {sum(ritz) / 16:.2f} % "
                      f"| {sum(own) / 16:.2f} % |")


def laguerre(n: int, alpha: int, x: torch.Tensor) -> torch.Tensor:
    r"""Generalized Laguerre :math:`L_n^{(\alpha)}(x)` by its three-term recurrence."""
    prev, cur = torch.zeros_like(x), torch.ones_like(x)
    for j in range(n):
        prev, cur = cur, ((2 * j + 1 + alpha - x) * cur - (j + alpha) * prev) / (j + 1)
    return cur


def analytic_shell_density(n: int, r: torch.Tensor) -> torch.Tensor:
    r""":math:`\sum_m |\psi_{nm}|^2` of :math:`H = -\nabla^2 - 1/r` in 2D:
    :math:`R_{nl} \propto \rho^l e^{-\rho/2} L^{(2l)}_{n-l-1}(\rho)`,
    :math:`\rho = r / (n - 1/2)`, each normalised to :math:`\int R^2 r\,dr = 1`;
    :math:`l = 0` has one angular function :math:`1/\sqrt{2\pi}`, :math:`l > 0`
    two (:math:`\cos l\theta, \sin l\theta` over :math:`\sqrt\pi`)."""
    fine = torch.linspace(0, 400, 400_001, dtype=torch.float64)
    total = torch.zeros_like(r)
    for l in range(n):
        def radial(x):
            rho = x / (n - 0.5)
            return rho ** l * torch.exp(-rho / 2) * laguerre(n - l - 1, 2 * l, rho)
        norm = torch.trapezoid(radial(fine) ** 2 * fine, fine)
        total = total + radial(r) ** 2 / norm / (2 * math.pi if l == 0 else math.pi)
    return total


@torch.no_grad()
def ritz_functions(path: str, samples: int, seed: int):
    r"""The saved fit's functions rotated to an orthonormal Ritz basis:
    a callable :math:`x \mapsto \tilde\psi(x)` (:obj:`[B, k]`) and the energies."""
    saved, op, model = load_small(path)
    op = op.to(dtype=torch.float64)
    model = model.double()
    generator = torch.Generator().manual_seed(seed)
    gram = cross = 0
    chunks = max(1, samples // 4096)
    for _ in range(chunks):
        g, _, c = op.moments(model, op.sample(4096, generator), saved['config']['k'], generator)
        gram, cross = gram + g / chunks, cross + c / chunks
    e, V = torch.linalg.eigh(gram)
    W = V * e.clamp_min(1e-12 * e.max()).rsqrt()
    mu, U = torch.linalg.eigh(W.T @ cross @ W)
    C = W @ U.flip(1)  # decreasing mu: increasing energy
    energies = op.original_eigenvalues(mu.flip(0))

    @torch.no_grad()
    def psi(x: torch.Tensor) -> torch.Tensor:
        return (model(x) * op.sampling.log_envelope(x).exp().unsqueeze(1)) @ C
    return psi, energies, saved


def plot_states(path: str, out: str, samples: int, seed: int) -> None:
    psi, energies, saved = ritz_functions(path, samples, seed)
    k = saved['config']['k']
    shell = torch.tensor(shells(k))
    half = 60.0
    grid = torch.linspace(-half, half, 161, dtype=torch.float64)
    xy = torch.stack(torch.meshgrid(grid, grid, indexing='xy'), -1).reshape(-1, 2)
    values = psi(xy)
    fig, axes = plt.subplots(4, 7, figsize=(19, 11.5))
    for row, n in ((0, 3), (1, 4)):
        idx = (shell == n).nonzero().flatten().tolist()
        for j in range(7):
            ax = axes[row, j]
            ax.axis('off')
            if j < len(idx):
                v = values[:, idx[j]].reshape(161, 161)
                vmax = v.abs().max()
                ax.imshow(v, cmap='RdBu', vmin=-vmax, vmax=vmax, extent=(-half, half, -half, half))
                ax.set_title(f'learned state {idx[j] + 1} (n = {n})\nE = {energies[idx[j]]:.5f}, '
                             f'exact {-1 / (4 * (n - 0.5) ** 2):.5f}', fontsize=8)
    r = torch.linspace(0, 90, 241, dtype=torch.float64)
    angles = torch.linspace(0, 2 * math.pi, 65, dtype=torch.float64)[:-1]
    ring = torch.stack([r[:, None] * angles.cos(), r[:, None] * angles.sin()], -1).reshape(-1, 2)
    ring_values = psi(ring)
    for n in (3, 4):
        col0 = 0 if n == 3 else 3
        idx = (shell == n).nonzero().flatten()
        learned = values[:, idx].pow(2).sum(1).reshape(161, 161)
        exact = analytic_shell_density(n, xy.norm(dim=1)).reshape(161, 161)
        vmax = exact.max()
        for ax, img, name in ((axes[2, col0], learned, 'learned'),
                              (axes[2, col0 + 1], exact, 'analytic')):
            ax.imshow(img, cmap='magma', vmin=0, vmax=vmax, extent=(-half, half, -half, half))
            ax.set_title(f'{name} n = {n} shell density\n' + r'$\sum_m |\psi_{nm}|^2$',
                         fontsize=8)
            ax.set_xlabel('x')
            ax.set_ylabel('y')
        ax = axes[2, col0 + 2]
        ax.plot(r, 2 * math.pi * r * ring_values[:, idx].pow(2).sum(1).reshape(241, 64).mean(1),
                label='learned (angle average)')
        ax.plot(r, 2 * math.pi * r * analytic_shell_density(n, r), '--', label='analytic')
        ax.set_xlabel('r')
        ax.set_ylabel(r'$2\pi r \sum_m |\psi_{nm}|^2$')
        ax.set_title(f'n = {n}: radial shell density', fontsize=8)
        ax.legend(fontsize=7)
    axes[2, 6].axis('off')
    for j, n in enumerate((1, 2)):
        ax = axes[3, j]
        idx = (shell == n).nonzero().flatten()
        rr = torch.linspace(0, 25, 201, dtype=torch.float64)
        ring_n = torch.stack([rr[:, None] * angles.cos(), rr[:, None] * angles.sin()],
                             -1).reshape(-1, 2)
        ax.plot(rr, 2 * math.pi * rr * psi(ring_n)[:, idx].pow(2).sum(1).reshape(201, 64).mean(1),
                label='learned (angle average)')
        ax.plot(rr, 2 * math.pi * rr * analytic_shell_density(n, rr), '--', label='analytic')
        ax.set_xlabel('r')
        ax.set_ylabel(r'$2\pi r \sum_m |\psi_{nm}|^2$')
        ax.set_title(f'n = {n}: radial shell density', fontsize=8)
        ax.legend(fontsize=7)
    for j in range(2, 7):
        axes[3, j].axis('off')
    fig.suptitle(f"2D hydrogen: {Path(path).name}, step {saved['step']} "
                 f"(Ritz basis on {samples} samples; states within a shell are any rotation "
                 f"of the analytic ones)")
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--csv', default='benchmarks/results/hydrogen16_s0_progress.csv')
    parser.add_argument('--out', default='benchmarks/results/hydrogen16_convergence.png')
    parser.add_argument('--fit', default=None, help='a fit written by hydrogen.py --save')
    parser.add_argument('--states-out', default='benchmarks/results/hydrogen16_states.png')
    parser.add_argument('--samples', type=int, default=2 ** 15)
    parser.add_argument('--seed', type=int, default=2000)
    parser.add_argument('--table', nargs='+', default=None, metavar='CSV',
                        help='print a markdown summary of these CSVs and exit')
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.table:
        print_table(args.table)
        return
    if args.csv:
        plot_convergence(args.csv, args.out)
        print(f'wrote {args.out}')
    if args.fit:
        plot_states(args.fit, args.states_out, args.samples, args.seed)
        print(f'wrote {args.states_out}')


if __name__ == '__main__':
    main()
