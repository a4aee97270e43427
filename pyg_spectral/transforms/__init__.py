"""PyG transforms: Laplacian positional encodings by NeuralSVD and friends."""
from .add_neuralsvd_pe import AddNeuralSVDPE
from .encoder import PEEncoder, fit_pe_encoder
from .precompute import precompute_pe

__all__ = ['AddNeuralSVDPE', 'PEEncoder', 'fit_pe_encoder', 'precompute_pe']
