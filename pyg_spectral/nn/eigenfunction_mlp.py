r"""A multilayer perceptron for eigenfunctions :math:`\mathbb{R}^d \to \mathbb{R}^k`."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

ACTIVATIONS = {'softplus': nn.functional.softplus, 'tanh': torch.tanh,
               'silu': nn.functional.silu, 'gelu': nn.functional.gelu}


class EigenfunctionMLP(nn.Module):
    r"""An MLP whose :obj:`k` outputs are :obj:`k` functions on
    :math:`\mathbb{R}^d`, built for eigenfunctions of differential operators.

    - Smooth activations (default softplus): the Laplacian of a ReLU network
      is zero almost everywhere.
    - Optional Gaussian Fourier features, from the `"Fourier Features Let
      Networks Learn High Frequency Functions in Low Dimensional Domains"
      <https://arxiv.org/abs/2006.10739>`_ paper (Tancik et al., 2020):
      :math:`x \mapsto [\cos 2\pi Bx, \sin 2\pi Bx]` with a fixed
      :math:`B \sim \mathcal{N}(0, \sigma^2)`, which lets a small network
      fit oscillating functions; :math:`\sigma` sets the resolution
      relative to the scale of :math:`x`.
    - :obj:`disjoint=True`: :obj:`k` separate MLPs (one per component,
      evaluated together as batched matrix products), as the `NeuralSVD paper
      <https://proceedings.mlr.press/v235/ryu24b.html>`_ uses with sequential nesting so that a later component cannot disturb
      an earlier one through shared weights.

    Args:
        in_channels (int): :math:`d`, the dimension of the input points.
        out_channels (int): :obj:`k`, the number of functions.
        hidden_channels (int, optional): width of the hidden layers.
            (default: :obj:`128`)
        num_layers (int, optional): number of hidden layers. (default: :obj:`3`)
        activation (str, optional): :obj:`'softplus'`, :obj:`'tanh'`,
            :obj:`'silu'` or :obj:`'gelu'`. (default: :obj:`'softplus'`)
        fourier_features (int, optional): number of random frequencies
            (:obj:`0`: the raw input). (default: :obj:`0`)
        fourier_scale (float, optional): :math:`\sigma` of the frequencies.
            (default: :obj:`1.0`)
        disjoint (bool, optional): one MLP per output. (default: :obj:`False`)

    Shapes:
        input :obj:`[B, d]`, output :obj:`[B, k]`.
    """

    def __init__(self, in_channels: int, out_channels: int, hidden_channels: int = 128,
                 num_layers: int = 3, activation: str = 'softplus', fourier_features: int = 0,
                 fourier_scale: float = 1.0, disjoint: bool = False) -> None:
        super().__init__()
        for name, value in (('in_channels', in_channels), ('out_channels', out_channels),
                            ('hidden_channels', hidden_channels), ('num_layers', num_layers)):
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        if not isinstance(fourier_features, int) or fourier_features < 0:
            raise ValueError(f"fourier_features must be a non-negative integer, "
                             f"got {fourier_features!r}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.hidden_channels, self.num_layers = hidden_channels, num_layers
        self.activation, self.disjoint = activation, disjoint
        self.fourier_features, self.fourier_scale = fourier_features, float(fourier_scale)
        self.act = ACTIVATIONS[activation]
        self.register_buffer('frequencies', torch.empty(in_channels, fourier_features))
        widths = ([2 * fourier_features if fourier_features else in_channels]
                  + [hidden_channels] * num_layers)
        # disjoint: a leading axis of size k on every weight (k networks)
        copies = out_channels if disjoint else 1
        self.weights = nn.ParameterList(
            nn.Parameter(torch.empty(copies, a, b)) for a, b in zip(widths[:-1], widths[1:]))
        self.biases = nn.ParameterList(
            nn.Parameter(torch.empty(copies, 1, b)) for b in widths[1:])
        out_width = 1 if disjoint else out_channels
        self.head = nn.Parameter(torch.empty(copies, hidden_channels, out_width))
        self.head_bias = nn.Parameter(torch.empty(copies, 1, out_width))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.frequencies, std=self.fourier_scale)
        for weight, bias in zip(list(self.weights) + [self.head],
                                list(self.biases) + [self.head_bias]):
            # nn.Linear's default, per network
            bound = 1 / math.sqrt(weight.size(1))
            nn.init.uniform_(weight, -bound, bound)
            nn.init.uniform_(bias, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        if self.fourier_features:
            angle = 2 * math.pi * x @ self.frequencies
            x = torch.cat([angle.cos(), angle.sin()], dim=-1)
        # all layers as [copies, B, width] batched products; the first one as a
        # single 2D product against the copies' weights side by side, because
        # forward-mode AD (the Laplacian) of a broadcast matmul is very slow
        first = self.weights[0]
        copies, width = first.size(0), first.size(2)
        h = (x @ first.transpose(0, 1).reshape(first.size(1), copies * width))
        h = self.act(h.view(-1, copies, width).transpose(0, 1).contiguous() + self.biases[0])
        for weight, bias in zip(self.weights[1:], self.biases[1:]):
            h = self.act(torch.baddbmm(bias, h, weight))
        out = torch.baddbmm(self.head_bias, h, self.head)  # [copies, B, out_width]
        return out.squeeze(-1).transpose(0, 1) if self.disjoint else out.squeeze(0)

    def __repr__(self) -> str:
        extra = (f', fourier_features={self.fourier_features}, fourier_scale={self.fourier_scale:g}'
                 if self.fourier_features else '')
        return (f'{self.__class__.__name__}({self.in_channels}, {self.out_channels}, '
                f'hidden_channels={self.hidden_channels}, num_layers={self.num_layers}, '
                f'activation={self.activation!r}, disjoint={self.disjoint}{extra})')
