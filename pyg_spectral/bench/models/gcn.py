import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import GCNConv

from ..registry import register_model


class GCN(nn.Module):
    r"""Kipf & Welling's two-layer GCN (hidden 16, dropout 0.5)."""

    def __init__(self, in_channels: int, hidden_channels: int, out_channels: int,
                 dropout: float = 0.5) -> None:
        super().__init__()
        self.conv1 = GCNConv(in_channels, hidden_channels, cached=True)
        self.conv2 = GCNConv(hidden_channels, out_channels, cached=True)
        self.dropout = dropout

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        x = F.dropout(x, self.dropout, self.training)
        x = self.conv1(x, edge_index).relu()
        x = F.dropout(x, self.dropout, self.training)
        return self.conv2(x, edge_index)


@register_model('gcn', 'two-layer GCNConv baseline (Kipf & Welling)')
def build_gcn(num_features, num_classes, data):
    return GCN(num_features, 16, num_classes)
