"""Adaptive recurrent units (Geadah et al.): the gamma(x; n, s) activation family,
RNNs built on it with static (n, s), and the ARU network whose (n, s) are set at
every step by small controller RNNs.

gamma(x; n, s) = (1 - s) softplus(n x) / n + s sigmoid(n x) interpolates between
a smooth ReLU (s = 0) and a sigmoid (s = 1); n sets the sharpness.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import RecurrentModule, check_sizes, jacobian_convention


def _value(x: Tensor, n: Tensor, s: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """gamma(x; n, s), with the sigmoid and softplus / n it is made of."""
    nx = n * x
    sig = torch.sigmoid(nx)
    soft = F.softplus(nx) / n  # stable for large |n x|
    return (1 - s) * soft + s * sig, sig, soft


def _partials(x: Tensor, n: Tensor, s: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """gamma and its partial derivatives in x, n and s (broadcast shapes)."""
    value, sig, soft = _value(x, n, s)
    dsig = sig * (1 - sig)
    d_x = (1 - s) * sig + s * n * dsig
    d_n = (1 - s) / n * (x * sig - soft) + s * x * dsig
    d_s = sig - soft
    return value, d_x, d_n, d_s


def _reduce(grad: Tensor, like: Tensor) -> Tensor:
    """Sum a broadcast gradient back to the shape of ``like``."""
    while grad.ndim > like.ndim:
        grad = grad.sum(0)
    for dim, size in enumerate(like.shape):
        if size == 1 and grad.shape[dim] != 1:
            grad = grad.sum(dim, keepdim=True)
    return grad


class _Gamma(torch.autograd.Function):
    """gamma with analytic derivatives; torch.func-ready (vmap rule, forward-mode jvp)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x, n, s):
        return _partials(x, n, s)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs, *output[1:])
        ctx.save_for_forward(*inputs, *output[1:])
        ctx.mark_non_differentiable(*output[1:])  # the partials ride along, not differentiated

    @staticmethod
    def backward(ctx, grad, *_):
        x, n, s, d_x, d_n, d_s = ctx.saved_tensors
        return _reduce(grad * d_x, x), _reduce(grad * d_n, n), _reduce(grad * d_s, s)

    @staticmethod
    def jvp(ctx, x_t, n_t, s_t):
        x, n, s, d_x, d_n, d_s = ctx.saved_tensors
        tangent = sum(d * t for d, t in ((d_x, x_t), (d_n, n_t), (d_s, s_t)) if t is not None)
        return tangent, None, None, None


def gamma(x: Tensor, n: Tensor | float, s: Tensor | float) -> Tensor:
    """gamma(x; n, s), with n, s scalars or tensors broadcasting against x (e.g. (N,)
    per neuron). A custom autograd function with the analytic derivatives in x, n, s."""
    n = torch.as_tensor(n, dtype=x.dtype, device=x.device)
    s = torch.as_tensor(s, dtype=x.dtype, device=x.device)
    return _Gamma.apply(x, n, s)[0]


def gamma_prime(x: Tensor, n: Tensor | float, s: Tensor | float) -> Tensor:
    """d gamma / d x."""
    n = torch.as_tensor(n, dtype=x.dtype, device=x.device)
    s = torch.as_tensor(s, dtype=x.dtype, device=x.device)
    return _partials(x, n, s)[1]


def sup_gamma_prime(n: float, s: float) -> float:
    """sup over x of gamma'(x; n, s): (1 + s(n - 1))^2 / (4 n s) if s > 1/(n + 1), else 1 - s."""
    if s > 1 / (n + 1):
        return (1 + s * (n - 1)) ** 2 / (4 * n * s)
    return 1 - s


def unit_gain_saturation(n: float) -> float:
    """The saturation s > 0 on the unit-gain curve sup gamma'(n, s) = 1: s = 1 / (sqrt(n) - 1)^2.

    Solves (1 + s(n - 1))^2 = 4 n s on the branch s > 1/(n + 1). Below the curve a
    unit never amplifies (sup gamma' <= 1), above it it does; s <= 1 needs n >= 4,
    so for n < 4 every s in [0, 1] is contracting (returns inf).
    """
    if n <= 1:
        return math.inf
    return 1 / (math.sqrt(n) - 1) ** 2


class GammaRNN(RecurrentModule):
    """h <- gamma(W h + U x + b; n, s) with static n, s.

    ``adapt``: "fixed" (n, s are constants), "homogeneous" (one learned n and s)
    or "heterogeneous" (learned per neuron). J = diag(gamma'(a; n, s)) W.
    Fixed n, s may be tensors broadcasting against the pre-activation (B, N):
    (N,) per neuron, or (B, 1) to run a grid of activation shapes as one batch.
    """

    def __init__(self, input_size: int, hidden_size: int, *, n: float | Tensor = 5.0,
                 s: float | Tensor = 0.0, adapt: str = "fixed"):
        super().__init__()
        check_sizes(input_size, hidden_size)
        if adapt not in ("fixed", "homogeneous", "heterogeneous"):
            raise ValueError(f"adapt must be 'fixed', 'homogeneous' or 'heterogeneous', "
                             f"got {adapt!r}")
        self.input_size, self.hidden_size, self.dim = input_size, hidden_size, hidden_size
        self.adapt = adapt
        if adapt == "fixed":
            for name, value in (("n", n), ("s", s)):
                self.register_buffer(name, torch.as_tensor(
                    value, dtype=torch.get_default_dtype()).clone())
        else:
            shape = (hidden_size,) if adapt == "heterogeneous" else ()
            self.n = nn.Parameter(torch.full(shape, float(n)))
            self.s = nn.Parameter(torch.full(shape, float(s)))
        self.W = nn.Parameter(torch.linalg.qr(torch.randn(hidden_size, hidden_size))[0])
        (self.U,) = self._init_linear((hidden_size, input_size))
        self.b = nn.Parameter(torch.zeros(hidden_size))

    def _pre(self, h: Tensor, x: Tensor | None) -> Tensor:
        a = h @ self.W.T + self.b
        return a if x is None else a + x @ self.U.T

    def step(self, state: Tensor, x: Tensor | None) -> Tensor:
        return gamma(self._pre(state, x), self.n, self.s)

    def tangent(self, state: Tensor, x: Tensor | None, Q: Tensor) -> tuple[Tensor, Tensor]:
        a = self._pre(state, x)
        value, d_x, _, _ = _partials(a, self.n, self.s)
        return value, d_x.unsqueeze(-1) * torch.matmul(self.W, Q)


class ARU(RecurrentModule):
    """The adaptive recurrent unit network: every neuron's (n, s) set online by a controller.

    a = W h + U x + b;  for each neuron i, with controller weights shared by all neurons,
    g_i <- tanh(u a_i + W_g g_i + b_g),  n_i = w_n . g_i + b_n,  s_i = w_s . g_i + b_s,
    h_i <- gamma(a_i; n_i, s_i).
    State layout [h (N), g_1 (C), ..., g_N (C)], ``state_dim`` N (1 + C).

    ``jacobian="full"``: the Jacobian of the whole system (h, g), dim N (1 + C).
    ``jacobian="main"``: the paper's main-network Jacobian at the current (n, s), frozen:
    diag(gamma'(a; n_t, s_t)) W, dim N (the controllers are carried, not differentiated).
    """

    def __init__(self, input_size: int, hidden_size: int, *, controller_size: int = 50,
                 n0: float = 6.0, jacobian: str | None = None, state: str | None = None):
        super().__init__()
        check_sizes(input_size, hidden_size)
        convention = jacobian_convention(jacobian, state, ("full", "main"), "cells.ARU")
        N, C = hidden_size, controller_size
        self.input_size, self.hidden_size, self.controller_size = input_size, N, C
        self.convention = convention
        self.dim = N * (1 + C) if convention == "full" else N
        self.W = nn.Parameter(torch.linalg.qr(torch.randn(N, N))[0])
        (self.U,) = self._init_linear((N, input_size))
        self.b = nn.Parameter(torch.zeros(N))
        self.u = nn.Parameter(torch.randn(C) / math.sqrt(C))
        self.W_g = nn.Parameter(torch.linalg.qr(torch.randn(C, C))[0])
        self.b_g = nn.Parameter(torch.zeros(C))
        self.w_ns = nn.Parameter(0.1 * torch.randn(2, C) / math.sqrt(C))  # rows: w_n, w_s
        self.b_ns = nn.Parameter(torch.tensor([n0, 0.0]))

    @property
    def state_dim(self) -> int:
        return self.hidden_size * (1 + self.controller_size)

    def with_convention(self, jacobian: str) -> ARU:
        """This network read with another Jacobian convention: a view sharing its weights."""
        jacobian = jacobian_convention(jacobian, None, ("full", "main"), "cells.ARU")
        view = copy.copy(self)  # the parameter dict is shared, the attributes are not
        view.convention = jacobian
        view.dim = self.state_dim if jacobian == "full" else self.hidden_size
        return view

    def gains(self, g: Tensor) -> tuple[Tensor, Tensor]:
        """(n, s) of every neuron from its controller state g (..., N, C)."""
        ns = g @ self.w_ns.T + self.b_ns
        return ns[..., 0], ns[..., 1]

    def activation_parameters(self, state: Tensor) -> tuple[Tensor, Tensor]:
        """(n, s), each (..., N), that the controllers of ``state`` (..., state_dim) set."""
        N, C = self.hidden_size, self.controller_size
        return self.gains(state[..., N:].unflatten(-1, (N, C)))

    @torch.no_grad()
    def main_network(self, n: Tensor, s: Tensor, drive: float = 0.0) -> GammaRNN:
        """The main network alone with (n, s) frozen (per neuron, (N,)) and a constant
        drive added to every pre-activation: h <- gamma(W h + b + drive; n, s), no input."""
        net = GammaRNN(0, self.hidden_size, n=n.detach(), s=s.detach()).to(self.W)
        net.W.copy_(self.W)
        net.b.copy_(self.b + drive)
        return net

    def _run(self, state: Tensor, x: Tensor | None, Q: Tensor | None):
        N, C = self.hidden_size, self.controller_size
        h, g = state.split([N, N * C], dim=-1)  # split: its backward is one cat, no zeros
        g = g.unflatten(-1, (N, C))
        a = h @ self.W.T + self.b
        if x is not None:
            a = a + x @ self.U.T
        pre_g = a.unsqueeze(-1) * self.u + g @ self.W_g.T + self.b_g
        g_new = torch.tanh(pre_g)
        n, s = self.gains(g_new)
        if Q is None:  # a step: autograd needs the value only (training differentiates it)
            return torch.cat([_value(a, n, s)[0], g_new.flatten(-2)], dim=-1), None
        value, d_x, d_n, d_s = _partials(a, n, s)
        nxt = torch.cat([value, g_new.flatten(-2)], dim=-1)
        da = torch.matmul(self.W, Q[:, :N])  # (B, N, k)
        if self.convention == "main":
            return nxt, d_x.unsqueeze(-1) * da
        Q_g = Q[:, N:].unflatten(1, (N, C))  # (B, N, C, k)
        dpre = da.unsqueeze(2) * self.u[:, None] + torch.einsum("cd,bndk->bnck", self.W_g, Q_g)
        dg = (1 - g_new ** 2).unsqueeze(-1) * dpre
        dns = torch.einsum("jc,bnck->bnjk", self.w_ns, dg)  # (B, N, 2, k)
        dh = (d_x.unsqueeze(-1) * da + d_n.unsqueeze(-1) * dns[:, :, 0]
              + d_s.unsqueeze(-1) * dns[:, :, 1])
        return nxt, torch.cat([dh, dg.flatten(1, 2)], dim=1)

    def step(self, state: Tensor, x: Tensor | None) -> Tensor:
        return self._run(state, x, None)[0]

    def tangent(self, state: Tensor, x: Tensor | None, Q: Tensor) -> tuple[Tensor, Tensor]:
        return self._run(state, x, Q)


__all__ = ["ARU", "GammaRNN", "gamma", "gamma_prime", "sup_gamma_prime", "unit_gain_saturation"]
