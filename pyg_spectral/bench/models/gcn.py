from typing import Callable

import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import GCNConv

from ..registry import register_model


class GCN(nn.Module):
    r"""Kipf & Welling's two-layer GCN (dropout 0.5); :obj:`make_conv(in, out)`
    builds each layer, so spectral variants reuse the same architecture."""

    def __init__(self, in_channels: int, hidden_channels: int, out_channels: int,
                 dropout: float = 0.5,
                 make_conv: Callable[[int, int], nn.Module] | None = None) -> None:
        super().__init__()
        make_conv = make_conv or (lambda i, o: GCNConv(i, o, cached=True))
        self.conv1 = make_conv(in_channels, hidden_channels)
        self.conv2 = make_conv(hidden_channels, out_channels)
        self.dropout = dropout

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        x = F.dropout(x, self.dropout, self.training)
        x = self.conv1(x, edge_index).relu()
        x = F.dropout(x, self.dropout, self.training)
        return self.conv2(x, edge_index)


@register_model('gcn', 'two-layer GCNConv baseline (Kipf & Welling)')
def build_gcn(num_features, num_classes, data):
    return GCN(num_features, 16, num_classes)
