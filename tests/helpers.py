"""Small systems shared by the tests."""

import torch
from torch import nn


class RandomRNN(nn.Module):
    """A driven random tanh network h <- tanh(W h + U x), W_ij ~ N(0, gain^2 / dim)."""

    def __init__(self, dim: int, inputs: int, gain: float, seed: int = 0, dtype=torch.float64):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.W = nn.Parameter(torch.randn(dim, dim, generator=g, dtype=dtype) * gain / dim**0.5)
        self.U = nn.Parameter(torch.randn(dim, inputs, generator=g, dtype=dtype))

    def forward(self, h, x):
        return torch.tanh(h @ self.W.T + x @ self.U.T)
