"""LSTM and GRU cells built from torch.nn modules, with analytic tangent maps.

Both wrap ``torch.nn.LSTM`` / ``LSTMCell`` / ``GRU`` / ``GRUCell`` (any number of
layers, with or without biases, any ``batch_first``; inputs are (B, I) per step).
Each layer's recurrent tangent is one GEMM of its stacked gate weights
(4N x N for the LSTM, 3N x N for the GRU) with Q, followed by row scalings.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from ._torch_layers import check_module, combined_bias, layer_weights, num_layers
from .activations import tanh_prime
from .base import CellModule, jacobian_convention, shared_matmul

JacobianConvention = Literal["full", "hidden"]


# From k >= this fraction of N tangent columns, forming the row-scaled Jacobian blocks and
# multiplying them with Q beats one GEMM of the stacked 4N-row gate weights with Q (measured
# on 2 CPU cores, N = 32 to 512, float32 and float64): for the hidden state from k = N / 16
# on, and at k = N 2-3x faster; for the full state, whose explicit blocks are twice as
# tall, from about k = N / 2 on (a tie there; at k = 2 N a tie at N = 32, 1.3-1.6x faster
# at N = 128).
_EXPLICIT_FROM = {"hidden": 1 / 16, "full": 1 / 2}
_GATE = {"i": 0, "f": 1, "g": 2, "o": 3}


def _scaled_rows(scales: tuple[Tensor, ...], w: Tensor, order: str) -> Tensor:
    """Sum over the named gates of diag(scale) W_gate; scales (B, N), w (4N, M) -> (B, N, M).

    One batched GEMM over the N rows, (N, B, G) @ (N, G, M) for G gates: it reads the weights
    once and writes the result once, where G row scalings added in turn would write G
    (B, N, M) intermediates (5-14x slower at N = 512, memory-bound). Out of place, so that
    torch.func.vmap batches it (an in-place op would fall back to a loop over a population).
    """
    if len(scales) == 1:  # one gate: a row scaling of a view of the weights
        return scales[0].unsqueeze(-1) * w.unflatten(0, (4, -1))[_GATE[order]]
    pairs = sorted(zip((_GATE[gate] for gate in order), scales, strict=True),
                   key=lambda pair: pair[0])
    first, last = pairs[0][0], pairs[-1][0]
    if last - first + 1 != len(pairs):
        raise ValueError(f"order: the gates must be adjacent in torch's order ifgo, got {order!r}")
    blocks = w.unflatten(0, (4, -1))[first: last + 1]  # (G, N, M), a view: no copy
    S = torch.stack([scale for _, scale in pairs], dim=-1)  # (B, N, G)
    return torch.matmul(S.transpose(0, 1), blocks.transpose(0, 1)).transpose(0, 1)


def _affine(x: Tensor, w: Tensor, bias: Tensor | None) -> Tensor:
    """x (B, M) @ w.T (M, R) + bias (R,): one fused op (addmm) when there is a bias."""
    return x @ w.T if bias is None else torch.addmm(bias, x, w.T)


class LSTM(CellModule):
    """An LSTM as a Cell, in one of two conventions.

    Gate order (torch): i, f, g, o.  y = W_ih x + W_hh h + b,
    c' = s(y_f) c + s(y_i) tanh(y_g),  h' = s(y_o) tanh(c').

    * ``jacobian="full"`` (default): the dynamical system on (h, c). State and
      tangent layout [h_1, ..., h_L, c_1, ..., c_L] (torch's ``h_n`` then
      ``c_n``), dim 2 L N. These are the true Lyapunov exponents of the LSTM.
    * ``jacobian="hidden"``: the N-exponent convention of Vogt et al. (2022): the
      Jacobian dh'/dh with c treated as an input (dc'/dc and the c-dependence
      dropped). The state still carries (h, c) (``state_dim`` 2 L N) so that
      the dynamics are exact; the tangent space is h only, dim L N.

    ``state=`` is the deprecated name of ``jacobian=``.
    """

    def __init__(self, module: nn.LSTM | nn.LSTMCell, jacobian: JacobianConvention | None = None,
                 *, state: JacobianConvention | None = None):
        super().__init__()
        check_module(module, (nn.LSTM, nn.LSTMCell), "cells.LSTM")
        self.module = module
        self.convention = jacobian_convention(jacobian, state, ("full", "hidden"), "cells.LSTM")
        self.input_size = module.input_size
        self.hidden_size = N = module.hidden_size
        self.num_layers = L = num_layers(module)
        self.dim = 2 * L * N if self.convention == "full" else L * N

    @property
    def state_dim(self) -> int:
        return 2 * self.num_layers * self.hidden_size

    def _split(self, state: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        parts = state.split(self.hidden_size, dim=-1)
        return list(parts[: self.num_layers]), list(parts[self.num_layers:])

    def step(self, state: Tensor, x: Tensor | None) -> Tensor:
        return self._run(state, x, None)[0]

    def tangent(self, state: Tensor, x: Tensor | None, Q: Tensor) -> tuple[Tensor, Tensor]:
        return self._run(state, x, Q)

    def _run(self, state: Tensor, x: Tensor | None, Q: Tensor | None):
        hs, cs = self._split(state)
        full = self.convention == "full"
        if Q is not None:
            Q_rows = Q.split(self.hidden_size, dim=1)
            Q_h, Q_c = Q_rows[: self.num_layers], Q_rows[self.num_layers:]
        wide = Q is not None and Q.shape[-1] >= _EXPLICIT_FROM[self.convention] * self.hidden_size
        new_h, new_c, d_h, d_c = [], [], [], []
        inp, d_below = x, None
        for j, layer in enumerate(layer_weights(self.module)):
            y = _affine(hs[j], layer.w_hh, combined_bias(layer))
            if inp is not None:  # a fused multiply-add: one op where a product and a sum are two
                y = torch.addmm(y, inp, layer.w_ih.T)
            y_i, y_f, y_g, y_o = y.chunk(4, dim=-1)
            i, f, g, o = torch.sigmoid(y_i), torch.sigmoid(y_f), torch.tanh(y_g), torch.sigmoid(y_o)
            c = f * cs[j] + i * g
            tanh_c = torch.tanh(c)
            h = o * tanh_c
            new_h.append(h)
            new_c.append(c)
            inp = h
            if Q is None:
                continue
            # dc = a_i dy_i + a_f dy_f + a_g dy_g (+ f dc_old),  dh = a_o dy_o + b dc,
            # with dy = W_hh dh_old + W_ih dh_below and the row scalings a, b below.
            # s'(y) = s(y) s(-y) (activations.sigmoid_prime) with s(y) reused from above
            a_i = i * torch.sigmoid(-y_i) * g
            a_f = f * torch.sigmoid(-y_f) * cs[j]
            a_g = i * tanh_prime(y_g)
            a_o, b = o * torch.sigmoid(-y_o) * tanh_c, o * tanh_prime(c)
            inputs = [(layer.w_hh, Q_h[j])] + ([] if d_below is None else [(layer.w_ih, d_below)])
            if wide and not full:
                # form J = a_o W_o + b (a_i W_i + a_f W_f + a_g W_g), (B, N, M), then one
                # (B, N, M) x (B, M, k) GEMM instead of a 4N-row one
                dh = sum(_scaled_rows((a_o, b * a_i, b * a_f, b * a_g), w, "oifg") @ q
                         for w, q in inputs)
                dc = None
            else:
                if wide:  # [a_o W_o; a_i W_i + a_f W_f + a_g W_g], (B, 2N, M), one GEMM
                    o_part, dc = sum(torch.cat([_scaled_rows((a_o,), w, "o"),
                                                _scaled_rows((a_i, a_f, a_g), w, "ifg")], 1) @ q
                                     for w, q in inputs).chunk(2, dim=1)
                else:
                    dy = sum(shared_matmul(w, q) for w, q in inputs)  # (B, 4N, k): 4 gates, 1 GEMM
                    dy_i, dy_f, dy_g, dy_o = dy.chunk(4, dim=1)
                    dc = (a_i.unsqueeze(-1) * dy_i + a_f.unsqueeze(-1) * dy_f
                          + a_g.unsqueeze(-1) * dy_g)
                    o_part = a_o.unsqueeze(-1) * dy_o
                if full:
                    dc = dc + f.unsqueeze(-1) * Q_c[j]
                dh = o_part + b.unsqueeze(-1) * dc
            d_h.append(dh)
            d_c.append(dc)
            d_below = dh
        nxt = torch.cat(new_h + new_c, dim=-1)
        if Q is None:
            return nxt, None
        d_state = d_h + d_c if full else d_h
        return nxt, d_state[0] if len(d_state) == 1 else torch.cat(d_state, dim=1)


class GRU(CellModule):
    """A GRU as a Cell. Gate order (torch): r, z, n.

    r = s(W_ir x + b_ir + W_hr h + b_hr),  z = s(W_iz x + b_iz + W_hz h + b_hz),
    n = tanh(W_in x + b_in + r (W_hn h + b_hn)),  h' = (1 - z) n + z h.

    The GRU's state is h alone, so its Jacobian dh'/dh is the true one and
    ``jacobian="full"`` and ``jacobian="hidden"`` are the same (both accepted).
    Layout [h_1, ..., h_L], dim L N.
    """

    def __init__(self, module: nn.GRU | nn.GRUCell, jacobian: JacobianConvention | None = None,
                 *, state: JacobianConvention | None = None):
        super().__init__()
        check_module(module, (nn.GRU, nn.GRUCell), "cells.GRU")
        self.convention = jacobian_convention(jacobian, state, ("full", "hidden"), "cells.GRU")
        self.module = module
        self.input_size = module.input_size
        self.hidden_size = module.hidden_size
        self.num_layers = num_layers(module)
        self.dim = self.num_layers * self.hidden_size

    def step(self, state: Tensor, x: Tensor | None) -> Tensor:
        return self._run(state, x, None)[0]

    def tangent(self, state: Tensor, x: Tensor | None, Q: Tensor) -> tuple[Tensor, Tensor]:
        return self._run(state, x, Q)

    def _run(self, state: Tensor, x: Tensor | None, Q: Tensor | None):
        hs = state.split(self.hidden_size, dim=-1)
        Q_h = None if Q is None else Q.split(self.hidden_size, dim=1)
        new_h, d_h = [], []
        inp, d_below = x, None
        for j, layer in enumerate(layer_weights(self.module)):
            gh = _affine(hs[j], layer.w_hh, layer.b_hh)
            gi = torch.zeros_like(gh) if inp is None else _affine(inp, layer.w_ih, layer.b_ih)
            if inp is None and layer.b_ih is not None:
                gi = gi + layer.b_ih
            gi_r, gi_z, gi_n = gi.chunk(3, dim=-1)
            gh_r, gh_z, gh_n = gh.chunk(3, dim=-1)
            a_r, a_z = gi_r + gh_r, gi_z + gh_z
            r, z = torch.sigmoid(a_r), torch.sigmoid(a_z)
            a_n = gi_n + r * gh_n
            n = torch.tanh(a_n)
            h = n + z * (hs[j] - n)
            new_h.append(h)
            inp = h
            if Q is None:
                continue
            dgh = shared_matmul(layer.w_hh, Q_h[j])  # (B, 3N, k): all three gates in one GEMM
            dgh_r, dgh_z, dgh_n = dgh.chunk(3, dim=1)
            dgi_r = dgi_z = dgi_n = 0.0
            if d_below is not None:
                dgi_r, dgi_z, dgi_n = shared_matmul(layer.w_ih, d_below).chunk(3, dim=1)
            # s'(a) = s(a) s(-a) (activations.sigmoid_prime) with s(a) reused from above
            dr = (r * torch.sigmoid(-a_r)).unsqueeze(-1) * (dgi_r + dgh_r)
            dz = (z * torch.sigmoid(-a_z)).unsqueeze(-1) * (dgi_z + dgh_z)
            dn = tanh_prime(a_n).unsqueeze(-1) * (dgi_n + gh_n.unsqueeze(-1) * dr
                                                  + r.unsqueeze(-1) * dgh_n)
            dh = (1 - z).unsqueeze(-1) * dn + z.unsqueeze(-1) * Q_h[j] \
                + (hs[j] - n).unsqueeze(-1) * dz
            d_h.append(dh)
            d_below = dh
        nxt = new_h[0] if len(new_h) == 1 else torch.cat(new_h, dim=-1)
        if Q is None:
            return nxt, None
        return nxt, d_h[0] if len(d_h) == 1 else torch.cat(d_h, dim=1)
