from .paths import DATA_ENV, CACHE_ENV, cache_dir
from .planetoid import PLANETOID_NAMES, load_planetoid
from .ogbn import load_ogbn, ogbn_evaluator, ogbn_split

__all__ = [
    'DATA_ENV', 'CACHE_ENV', 'cache_dir', 'PLANETOID_NAMES', 'load_planetoid',
    'load_ogbn', 'ogbn_evaluator', 'ogbn_split'
]
