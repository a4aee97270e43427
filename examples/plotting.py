"""Figures for the examples: matplotlib is an optional extra (``[plot]``)."""


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


def save(fig, path: str) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    print(f'saved {path}')
