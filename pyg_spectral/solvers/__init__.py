from .neuralsvd import EigenTable, NeuralSVD, NeuralSVDResult
from .sampled import SampledNeuralSVD, SampledSVDResult

__all__ = ['EigenTable', 'NeuralSVD', 'NeuralSVDResult', 'SampledNeuralSVD', 'SampledSVDResult']
