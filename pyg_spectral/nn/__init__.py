from .eigen_loss import EigenLossModule, eigen_loss

__all__ = ['EigenLossModule', 'eigen_loss']
