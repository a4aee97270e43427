from .neuralsvd import EigenTable, NeuralSVD, NeuralSVDResult, fix_sign

__all__ = ['EigenTable', 'NeuralSVD', 'NeuralSVDResult', 'fix_sign']
