"""pyg_spectral: learned spectral decompositions for PyTorch Geometric."""
from .operators import GraphOperator
from .solvers import NeuralSVD, NeuralSVDResult

__version__ = '0.1.0'

__all__ = ['GraphOperator', 'NeuralSVD', 'NeuralSVDResult', '__version__']
