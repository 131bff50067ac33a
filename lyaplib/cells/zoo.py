"""Recurrent units designed for stable long-term memory, as trainable modules and Cells.

The architectures of the AeLLE paper's zoo (Vogt et al.): the antisymmetric RNN,
the coupled oscillatory RNN (coRNN), the Lipschitz RNN, the noisy RNN and the
long expressive memory (LEM). Each is an ``nn.Module`` with trainable
parameters (``(input_size, hidden_size, **hyperparameters)``), ``run`` for a
whole sequence, and an analytic ``tangent`` (row scalings and stacked GEMMs, no
dense diagonal matrices) tested against autograd. Batches are rows: a state is
(B, D) and weights act as ``h @ W.T``, the column-vector equations transposed.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .activations import sigmoid_prime, tanh_prime
from .base import RecurrentModule, check_sizes


class AntisymmetricRNN(RecurrentModule):
    """h <- h + eps * tanh((W - W^T - gamma I) h + V x + b)  (Chang et al. 2019).

    J = I + eps * diag(tanh'(a)) (W - W^T - gamma I): an antisymmetric matrix has
    imaginary eigenvalues, so for small eps the Jacobian is close to orthogonal.
    """

    def __init__(self, input_size: int, hidden_size: int, *, eps: float = 0.01,
                 gamma: float = 0.01):
        super().__init__()
        check_sizes(input_size, hidden_size)
        self.input_size, self.hidden_size, self.dim = input_size, hidden_size, hidden_size
        self.eps, self.gamma = float(eps), float(gamma)
        self.W, self.V = self._init_linear((hidden_size, hidden_size), (hidden_size, input_size))
        self.b = nn.Parameter(torch.zeros(hidden_size))

    def recurrent_matrix(self) -> Tensor:
        """W - W^T - gamma I, (N, N): antisymmetric but for the damping."""
        W = self.W - self.W.T
        return W - self.gamma * torch.eye(self.hidden_size, dtype=W.dtype, device=W.device)

    def _pre(self, h: Tensor, x: Tensor | None) -> tuple[Tensor, Tensor]:
        A = self.recurrent_matrix()
        a = h @ A.T + self.b
        return (a if x is None else a + x @ self.V.T), A

    def step(self, state: Tensor, x: Tensor | None) -> Tensor:
        a, _ = self._pre(state, x)
        return state + self.eps * torch.tanh(a)

    def tangent(self, state: Tensor, x: Tensor | None, Q: Tensor) -> tuple[Tensor, Tensor]:
        a, A = self._pre(state, x)
        JQ = Q + (self.eps * tanh_prime(a)).unsqueeze(-1) * torch.matmul(A, Q)
        return state + self.eps * torch.tanh(a), JQ


class CoRNN(RecurrentModule):
    """Coupled oscillatory RNN (Rusch & Mishra 2021); state [y, z], dim 2N.

    z <- z + dt (tanh(W_y y + W_z z + V x + b) - gamma y - eps z);  y <- y + dt z_new.
    A chain of damped, driven oscillators: the tangent uses one GEMM of the
    stacked [W_y  W_z] (N x 2N) with [Q_y; Q_z].
    """

    def __init__(self, input_size: int, hidden_size: int, *, dt: float = 0.042,
                 gamma: float = 2.7, eps: float = 4.7):
        super().__init__()
        check_sizes(input_size, hidden_size)
        self.input_size, self.hidden_size, self.dim = input_size, hidden_size, 2 * hidden_size
        self.dt, self.gamma, self.eps = float(dt), float(gamma), float(eps)
        self.W, self.V = self._init_linear((hidden_size, 2 * hidden_size),
                                           (hidden_size, input_size))  # W = [W_y  W_z]
        self.b = nn.Parameter(torch.zeros(hidden_size))

    def _run(self, state: Tensor, x: Tensor | None, Q: Tensor | None):
        N = self.hidden_size
        y, z = state[..., :N], state[..., N:]
        a = state @ self.W.T + self.b
        if x is not None:
            a = a + x @ self.V.T
        z_new = z + self.dt * (torch.tanh(a) - self.gamma * y - self.eps * z)
        y_new = y + self.dt * z_new
        nxt = torch.cat([y_new, z_new], dim=-1)
        if Q is None:
            return nxt, None
        Q_y, Q_z = Q[:, :N], Q[:, N:]
        dz = Q_z + self.dt * (tanh_prime(a).unsqueeze(-1) * torch.matmul(self.W, Q)
                              - self.gamma * Q_y - self.eps * Q_z)
        return nxt, torch.cat([Q_y + self.dt * dz, dz], dim=1)

    def step(self, state: Tensor, x: Tensor | None) -> Tensor:
        return self._run(state, x, None)[0]

    def tangent(self, state: Tensor, x: Tensor | None, Q: Tensor) -> tuple[Tensor, Tensor]:
        return self._run(state, x, Q)


class LipschitzRNN(RecurrentModule):
    """h <- h + eps (A h + tanh(W h + U x + b))  (Erichson et al. 2021).

    A = beta (B - B^T) + (1 - beta)(B + B^T) - gamma I, and W likewise from C:
    mostly antisymmetric, with a small symmetric part and a damping gamma.
    J = I + eps (A + diag(tanh'(a)) W); the tangent stacks [A; W] into one GEMM.
    """

    def __init__(self, input_size: int, hidden_size: int, *, eps: float = 0.01,
                 beta: float = 0.8, gamma: float = 0.01):
        super().__init__()
        check_sizes(input_size, hidden_size)
        self.input_size, self.hidden_size, self.dim = input_size, hidden_size, hidden_size
        self.eps, self.beta, self.gamma = float(eps), float(beta), float(gamma)
        N = hidden_size
        self.B = nn.Parameter(torch.randn(N, N) / math.sqrt(N))
        self.C = nn.Parameter(torch.randn(N, N) / math.sqrt(N))
        (self.U,) = self._init_linear((N, input_size))
        self.b = nn.Parameter(torch.zeros(N))

    def _compose(self, M: Tensor) -> Tensor:
        eye = torch.eye(self.hidden_size, dtype=M.dtype, device=M.device)
        return self.beta * (M - M.T) + (1 - self.beta) * (M + M.T) - self.gamma * eye

    def matrices(self) -> tuple[Tensor, Tensor]:
        """(A, W), each (N, N)."""
        return self._compose(self.B), self._compose(self.C)

    def _run(self, state: Tensor, x: Tensor | None, Q: Tensor | None):
        N = self.hidden_size
        AW = torch.cat(self.matrices(), dim=0)  # (2N, N): one GEMM for both
        pre = state @ AW.T
        Ah, a = pre[..., :N], pre[..., N:] + self.b
        if x is not None:
            a = a + x @ self.U.T
        nxt = state + self.eps * (Ah + torch.tanh(a))
        if Q is None:
            return nxt, None
        AQ_WQ = torch.matmul(AW, Q)
        JQ = Q + self.eps * (AQ_WQ[:, :N] + tanh_prime(a).unsqueeze(-1) * AQ_WQ[:, N:])
        return nxt, JQ

    def step(self, state: Tensor, x: Tensor | None) -> Tensor:
        return self._run(state, x, None)[0]

    def tangent(self, state: Tensor, x: Tensor | None, Q: Tensor) -> tuple[Tensor, Tensor]:
        return self._run(state, x, Q)


class NoisyRNN(LipschitzRNN):
    """The Lipschitz RNN with noise injected while training (Lim et al. 2021).

    In training mode each step adds ``additive * xi_1 + multiplicative * h * xi_2``
    (standard normal xi), a regulariser; in eval mode the map is the
    deterministic Lipschitz RNN, and that is the map whose tangent and
    Lyapunov exponents are computed (``tangent`` refuses training mode).
    """

    def __init__(self, input_size: int, hidden_size: int, *, eps: float = 0.01,
                 beta: float = 0.8, gamma: float = 0.01, additive: float = 0.05,
                 multiplicative: float = 0.02):
        super().__init__(input_size, hidden_size, eps=eps, beta=beta, gamma=gamma)
        self.additive, self.multiplicative = float(additive), float(multiplicative)

    def step(self, state: Tensor, x: Tensor | None) -> Tensor:
        nxt = super().step(state, x)
        if self.training:
            nxt = (nxt + self.additive * torch.randn_like(nxt)
                   + self.multiplicative * state * torch.randn_like(nxt))
        return nxt

    def tangent(self, state: Tensor, x: Tensor | None, Q: Tensor) -> tuple[Tensor, Tensor]:
        if self.training:
            raise RuntimeError("NoisyRNN is stochastic in training mode; call .eval() to "
                               "analyse the deterministic map")
        return super().tangent(state, x, Q)


class LEM(RecurrentModule):
    """Long expressive memory (Rusch et al. 2022); state [y, z], dim 2N.

    dt_z = dt s(V_2 y + W_2 x + b_2),   dt_y = dt s(V_1 y + W_1 x + b_1),
    z <- (1 - dt_z) z + dt_z tanh(V_z y + W_zx x + b_z),
    y <- (1 - dt_y) y + dt_y tanh(W_y z_new + W_yx x + b_y).
    Two learned, state-dependent time steps. The tangent uses one GEMM of the
    stacked [V_1; V_2; V_z] (3N x N) with Q_y and one of W_y with dz.
    """

    def __init__(self, input_size: int, hidden_size: int, *, dt: float = 1.0):
        super().__init__()
        check_sizes(input_size, hidden_size)
        self.input_size, self.hidden_size, self.dim = input_size, hidden_size, 2 * hidden_size
        self.dt = float(dt)
        N = hidden_size
        # rows: gate of y (1), gate of z (2), candidate of z
        self.V, self.W_x = self._init_linear((3 * N, N), (4 * N, input_size))
        (self.W_y,) = self._init_linear((N, N))
        self.b = nn.Parameter(torch.zeros(4 * N))

    def _run(self, state: Tensor, x: Tensor | None, Q: Tensor | None):
        N, dt = self.hidden_size, self.dt
        y, z = state[..., :N], state[..., N:]
        drive = self.b if x is None else x @ self.W_x.T + self.b  # (.., 4N)
        a1, a2, a_z = (state[..., :N] @ self.V.T + drive[..., :3 * N]).split(N, dim=-1)
        g1, g2, cand_z = torch.sigmoid(a1), torch.sigmoid(a2), torch.tanh(a_z)
        z_new = (1 - dt * g2) * z + dt * g2 * cand_z
        a_y = z_new @ self.W_y.T + drive[..., 3 * N:]
        cand_y = torch.tanh(a_y)
        y_new = (1 - dt * g1) * y + dt * g1 * cand_y
        nxt = torch.cat([y_new, z_new], dim=-1)
        if Q is None:
            return nxt, None
        Q_y, Q_z = Q[:, :N], Q[:, N:]
        G1, G2, Gz = torch.matmul(self.V, Q_y).split(N, dim=1)
        col = lambda v: v.unsqueeze(-1)  # noqa: E731 - row scaling of a (B, N, k) block
        dz = (col(1 - dt * g2) * Q_z + col(dt * (cand_z - z) * sigmoid_prime(a2)) * G2
              + col(dt * g2 * tanh_prime(a_z)) * Gz)
        dy = (col(1 - dt * g1) * Q_y + col(dt * (cand_y - y) * sigmoid_prime(a1)) * G1
              + col(dt * g1 * tanh_prime(a_y)) * torch.matmul(self.W_y, dz))
        return nxt, torch.cat([dy, dz], dim=1)

    def step(self, state: Tensor, x: Tensor | None) -> Tensor:
        return self._run(state, x, None)[0]

    def tangent(self, state: Tensor, x: Tensor | None, Q: Tensor) -> tuple[Tensor, Tensor]:
        return self._run(state, x, Q)
