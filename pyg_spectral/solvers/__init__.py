from .neuralsvd import EigenTable, NeuralSVD, NeuralSVDResult, fix_sign
from .sampled import SampledNeuralSVD, SampledSVDResult

__all__ = ['EigenTable', 'NeuralSVD', 'NeuralSVDResult', 'fix_sign', 'SampledNeuralSVD', 'SampledSVDResult']
