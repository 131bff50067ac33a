"""Vanilla recurrent networks: a functional RNN for the theory chapters, and torch.nn.RNN."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ._torch_layers import check_module, combined_bias, layer_weights, num_layers
from .activations import Activation, resolve, tanh_prime
from .base import CellModule, shared_matmul


class VanillaRNN(CellModule):
    """h <- (1 - leak) h + leak * phi(W h + U x + b);  state h, dim N.

    Jacobian: J = (1 - leak) I + leak * diag(phi'(a)) W, applied to Q as a row
    scaling of the one GEMM W @ Q.

    Args:
        weight_hh: W, (N, N).
        weight_ih: U, (N, I), or None for an autonomous network.
        bias: b, (N,), or None.
        activation: "tanh", "relu", "sigmoid", "linear" or any elementwise callable.
        leak: the leak rate alpha in (0, 1]; 1 is the plain (non-leaky) RNN.
    """

    def __init__(self, weight_hh: Tensor, weight_ih: Tensor | None = None,
                 bias: Tensor | None = None, activation: str | Activation = "tanh",
                 leak: float = 1.0):
        super().__init__()
        N = weight_hh.shape[0]
        if weight_hh.ndim != 2 or weight_hh.shape[1] != N:
            raise ValueError(f"weight_hh must be (N, N), got {tuple(weight_hh.shape)}")
        if weight_ih is not None and (weight_ih.ndim != 2 or weight_ih.shape[0] != N):
            raise ValueError(f"weight_ih must be (N, I) with N = {N}, got {tuple(weight_ih.shape)}")
        if bias is not None and bias.shape != (N,):
            raise ValueError(f"bias must be (N,) with N = {N}, got {tuple(bias.shape)}")
        if not 0 < leak <= 1:
            raise ValueError(f"leak must be in (0, 1], got {leak}")
        # Buffers, not parameters: this is a fixed map for analysis (wrap a torch.nn.RNN
        # with cells.RNN to train); they still follow .to() and dtype casts.
        self.register_buffer("weight_hh", weight_hh.clone())
        self.register_buffer("weight_ih", None if weight_ih is None else weight_ih.clone())
        self.register_buffer("bias", None if bias is None else bias.clone())
        self.phi, self.phi_prime = resolve(activation)
        self.leak = float(leak)
        self.dim = N

    @classmethod
    def random(cls, hidden_size: int, gain: float, input_size: int = 0, *,
               activation: str | Activation = "tanh", leak: float = 1.0,
               generator: torch.Generator | None = None,
               dtype: torch.dtype | None = None) -> VanillaRNN:
        """W_ij ~ N(0, gain^2 / N) and U_ij ~ N(0, 1 / I), so that U x has unit
        variance per unit for standard normal inputs."""
        W = torch.randn(hidden_size, hidden_size, generator=generator, dtype=dtype)
        U = None
        if input_size:
            U = torch.randn(hidden_size, input_size, generator=generator, dtype=dtype)
            U = U / math.sqrt(input_size)
        return cls(W * gain / math.sqrt(hidden_size), U, activation=activation, leak=leak)

    @property
    def input_size(self) -> int | None:
        """I, the width of the inputs (None for an autonomous network)."""
        return None if self.weight_ih is None else self.weight_ih.shape[1]

    def preactivation(self, state: Tensor, x: Tensor | None) -> Tensor:
        """a = W h + U x + b, (B, N)."""
        a = state @ self.weight_hh.T
        if x is not None:
            if self.weight_ih is None:
                raise ValueError("this VanillaRNN has no weight_ih, so it takes no input (x=None)")
            a = a + x @ self.weight_ih.T
        return a if self.bias is None else a + self.bias

    def step(self, state: Tensor, x: Tensor | None) -> Tensor:
        a = self.preactivation(state, x)
        return (1 - self.leak) * state + self.leak * self.phi(a)

    def tangent(self, state: Tensor, x: Tensor | None, Q: Tensor) -> tuple[Tensor, Tensor]:
        a = self.preactivation(state, x)
        nxt = (1 - self.leak) * state + self.leak * self.phi(a)
        JQ = (self.leak * self.phi_prime(a)).unsqueeze(-1) * shared_matmul(self.weight_hh, Q)
        return nxt, JQ if self.leak == 1 else JQ + (1 - self.leak) * Q


class RNN(CellModule):
    """A ``torch.nn.RNN`` or ``torch.nn.RNNCell`` (tanh or relu) as a Cell.

    State layout: the hidden states of all layers stacked, [h_1, ..., h_L],
    dim L N (layer 1 first, as in torch's ``h_n``). Inputs are (B, I) per step
    whatever the module's ``batch_first``. Inter-layer dropout is not applied
    (the map is analysed as in ``eval()`` mode).
    """

    def __init__(self, module: nn.RNN | nn.RNNCell):
        super().__init__()
        check_module(module, (nn.RNN, nn.RNNCell), "cells.RNN")
        self.module = module
        self.phi, self.phi_prime = resolve(module.nonlinearity)
        self.input_size = module.input_size
        self.hidden_size = module.hidden_size
        self.num_layers = num_layers(module)
        self.dim = self.num_layers * self.hidden_size

    def _layers(self, state: Tensor, x: Tensor | None):
        """Yield (layer weights, pre-activation a, new h) for each layer, bottom up."""
        inp = x
        for layer, h in zip(layer_weights(self.module), state.split(self.hidden_size, dim=-1),
                            strict=True):
            a = h @ layer.w_hh.T
            if inp is not None:
                a = a + inp @ layer.w_ih.T
            bias = combined_bias(layer)
            if bias is not None:
                a = a + bias
            new = self.phi(a)
            yield layer, a, new
            inp = new

    def step(self, state: Tensor, x: Tensor | None) -> Tensor:
        return torch.cat([new for _, _, new in self._layers(state, x)], dim=-1)

    def tangent(self, state: Tensor, x: Tensor | None, Q: Tensor) -> tuple[Tensor, Tensor]:
        news, tangents, d_below = [], [], None
        for (layer, a, new), Q_l in zip(self._layers(state, x), Q.split(self.hidden_size, dim=1),
                                        strict=True):
            # dh_l' = phi'(a) * (W_hh dh_l + W_ih dh_{l-1}'), the layer below already stepped
            d_pre = shared_matmul(layer.w_hh, Q_l)
            if d_below is not None:
                d_pre = d_pre + shared_matmul(layer.w_ih, d_below)
            d_below = self.phi_prime(a).unsqueeze(-1) * d_pre
            news.append(new)
            tangents.append(d_below)
        return torch.cat(news, dim=-1), torch.cat(tangents, dim=1)


class ForceRNN(CellModule):
    """The leaky rate network of FORCE learning (Sussillo & Abbott 2009), rank-1 feedback.

    x <- (1 - dt) x + dt (M r + w_f z + U u),  r = tanh(x),  z = w_o . r.

    M is sparse Gaussian (``density``) scaled by g / sqrt(density N), so that
    g > 1 is chaotic without feedback; w_f ~ U(-1, 1); the read-out w_o starts
    at 0 and is learned by recursive least squares (:func:`lyaplib.force.train_force`).
    Jacobian: (1 - dt) I + dt (M + w_f w_o^T) diag(1 - tanh^2 x); the tangent
    applies it as a row scaling, one GEMM with M and a rank-1 update.
    """

    def __init__(self, input_size: int = 0, hidden_size: int = 512, *, g: float = 1.5,
                 dt: float = 0.1, density: float = 0.1,
                 generator: torch.Generator | None = None, dtype: torch.dtype | None = None):
        super().__init__()
        if input_size < 0 or hidden_size < 1:
            raise ValueError(f"input_size must be >= 0 and hidden_size >= 1, "
                             f"got {input_size} and {hidden_size}")
        if not 0 < density <= 1:
            raise ValueError(f"density must be in (0, 1], got {density}")
        if not 0 < dt <= 1:
            raise ValueError(f"dt must be in (0, 1], got {dt}")
        N = hidden_size
        mask = torch.rand(N, N, generator=generator, dtype=dtype) < density
        M = torch.randn(N, N, generator=generator, dtype=dtype) * mask * g / math.sqrt(density * N)
        self.register_buffer("M", M)
        self.register_buffer("w_f", 2 * torch.rand(N, generator=generator, dtype=dtype) - 1)
        self.register_buffer("w_o", torch.zeros(N, dtype=M.dtype))
        self.register_buffer("U", torch.randn(N, input_size, generator=generator, dtype=dtype))
        self.input_size, self.hidden_size, self.dim = input_size, N, N
        self.g, self.dt = float(g), float(dt)

    @staticmethod
    def rates(state: Tensor) -> Tensor:
        """r = tanh(x), the firing rates the read-out and the recurrence see, (B, N)."""
        return torch.tanh(state)

    def readout(self, state: Tensor) -> Tensor:
        """z = w_o . tanh(x), shape (B,)."""
        return self.rates(state) @ self.w_o

    def _drive(self, state: Tensor, x: Tensor | None) -> tuple[Tensor, Tensor]:
        r = self.rates(state)
        drive = r @ self.M.T + (r @ self.w_o).unsqueeze(-1) * self.w_f
        if x is not None:
            drive = drive + x @ self.U.T
        return (1 - self.dt) * state + self.dt * drive, r

    def step(self, state: Tensor, x: Tensor | None) -> Tensor:
        return self._drive(state, x)[0]

    def tangent(self, state: Tensor, x: Tensor | None, Q: Tensor) -> tuple[Tensor, Tensor]:
        nxt, _ = self._drive(state, x)
        S = tanh_prime(state).unsqueeze(-1) * Q  # diag(1 - tanh^2 x) Q, (B, N, k)
        feedback = self.w_f.unsqueeze(-1) * (self.w_o @ S).unsqueeze(-2)  # w_f (w_o^T S)
        # M [S_1 ... S_B] as one (N, N) x (N, B k) GEMM: a broadcast matmul would copy M
        # B times, and for a vmapped population it dominated the step
        B, N, k = S.shape
        MS = (self.M @ S.transpose(0, 1).reshape(N, B * k)).reshape(N, B, k).transpose(0, 1)
        return nxt, (1 - self.dt) * Q + self.dt * (MS + feedback)
