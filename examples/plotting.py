"""What the examples share: their command-line options for output and threads,
and figures (matplotlib is an optional extra, ``[plot]``)."""
import argparse
from pathlib import Path

# git-ignored (see .gitignore): figures are outputs, not sources
OUT_DIR = Path(__file__).resolve().parent / 'output'


class _Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    r"""Shows each option's default, unless its help already says it."""

    def _get_help_string(self, action):
        if '(default' in (action.help or ''):
            return action.help
        return super()._get_help_string(action)


def parser(doc: str, name: str) -> argparse.ArgumentParser:
    r"""An example's parser: its docstring as the description, every option's
    default shown in ``--help``, and the options all examples share."""
    p = argparse.ArgumentParser(description=doc, formatter_class=_Formatter)
    p.add_argument('--out-dir', type=Path, default=OUT_DIR,
                   help='directory for the figure (created if missing)')
    p.add_argument('--out', type=Path, default=None,
                   help=f"the figure's path; overrides --out-dir (default: OUT_DIR/{name}.png)")
    p.set_defaults(figure_name=name)
    p.add_argument('--threads', type=int, default=1,
                   help='intra-op CPU threads (torch.set_num_threads); 0 keeps torch\'s own '
                        'choice. The problems are small: on a shared CPU more threads only '
                        'contend')
    return p


def setup_threads(threads: int) -> None:
    r"""The example is an application: it may choose its thread count."""
    if threads:
        import torch
        torch.set_num_threads(threads)


def figure_path(args: argparse.Namespace) -> Path:
    return args.out if args.out is not None else args.out_dir / f'{args.figure_name}.png'


def pyplot():
    r"""``matplotlib.pyplot`` on the file-only Agg backend, or :obj:`None`
    (saying so) when matplotlib is not installed."""
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError:
        print('matplotlib is not installed: no figure (pip install "pyg-spectral[plot]")')
        return None
    return plt


def integer_ticks(axis) -> None:
    r"""Ticks at whole numbers only, for an axis that is an index."""
    from matplotlib.ticker import MaxNLocator
    axis.set_major_locator(MaxNLocator(integer=True))


def save(fig, path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    print(f'saved {path}')
