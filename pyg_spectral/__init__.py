"""pyg_spectral: learned spectral decompositions for PyTorch Geometric."""
__version__ = '0.1.0'
