"""Textbook dynamical systems with known Lyapunov exponents.

Each map accepts an optional additive drive: ``step(state, x)`` returns
``f(state) + x`` for an input x of shape (B, D), so the same system can be run
autonomously (``x=None``) or driven by a signal (a random dynamical system).
The drive does not change the form of the Jacobian, only where it is evaluated.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .base import CellModule, shared_matmul


def _drive(new: Tensor, x: Tensor | None) -> Tensor:
    return new if x is None else new + x


def _spread(batch: int, lo: float, hi: float, dtype: torch.dtype) -> Tensor:
    """Deterministic, distinct points in (lo, hi): a golden-ratio sequence."""
    golden = (math.sqrt(5) - 1) / 2
    u = torch.remainder(0.3 + golden * torch.arange(batch, dtype=torch.float64), 1.0)
    return (lo + (hi - lo) * u).to(dtype)


class Logistic(CellModule):
    """The logistic map  x <- r x (1 - x);  dim 1.  At r = 4, lambda = ln 2."""

    dim = 1

    def __init__(self, r: float = 4.0):
        super().__init__()
        self.r = float(r)

    def initial_state(self, batch: int) -> Tensor:
        # Distinct starting points that avoid the preimages of the fixed point 0.
        return _spread(batch, 0.05, 0.45, self.dtype).unsqueeze(-1)

    def step(self, state: Tensor, x: Tensor | None) -> Tensor:
        return _drive(self.r * state * (1 - state), x)

    def tangent(self, state: Tensor, x: Tensor | None, Q: Tensor) -> tuple[Tensor, Tensor]:
        slope = self.r * (1 - 2 * state)  # (B, 1)
        return self.step(state, x), slope.unsqueeze(-1) * Q


class Henon(CellModule):
    """The Hénon map  (u, v) <- (1 - a u^2 + v, b u);  dim 2, state layout [u, v].

    At (a, b) = (1.4, 0.3): lambda = (0.4194, -1.6234), and since det J = -b
    everywhere, lambda_1 + lambda_2 = ln b exactly.
    """

    dim = 2

    def __init__(self, a: float = 1.4, b: float = 0.3):
        super().__init__()
        self.a, self.b = float(a), float(b)

    def initial_state(self, batch: int) -> Tensor:
        u = _spread(batch, -0.1, 0.1, self.dtype)
        return torch.stack([u, torch.zeros_like(u)], dim=-1)

    def step(self, state: Tensor, x: Tensor | None) -> Tensor:
        u, v = state.unbind(-1)
        return _drive(torch.stack([1 - self.a * u**2 + v, self.b * u], dim=-1), x)

    def tangent(self, state: Tensor, x: Tensor | None, Q: Tensor) -> tuple[Tensor, Tensor]:
        # J = [[-2 a u, 1], [b, 0]], applied row by row to Q (B, 2, k).
        u = state[:, :1]
        row_u = -2 * self.a * u * Q[:, 0] + Q[:, 1]
        row_v = self.b * Q[:, 0]
        return self.step(state, x), torch.stack([row_u, row_v], dim=1)


class LinearMap(CellModule):
    """A linear map  h <- A h;  the exponents are log|eigenvalues of A|.

    Args:
        A: (D, D) matrix. Its exponents are the logs of the moduli of its
            eigenvalues, not of its singular values (those only bound the
            one-step growth, which can be large for non-normal A).
    """

    def __init__(self, A: Tensor):
        super().__init__()
        if A.ndim != 2 or A.shape[0] != A.shape[1]:
            raise ValueError(f"A must be a square (D, D) matrix, got shape {tuple(A.shape)}")
        self.register_buffer("A", A.clone())
        self.dim = A.shape[0]

    def initial_state(self, batch: int) -> Tensor:
        # The fixed point 0: the tangent does not depend on the state, and a non-zero start
        # would overflow an expanding map (|h| ~ e^(lambda_1 t)) for nothing.
        return torch.zeros(batch, self.dim, dtype=self.dtype, device=self.device)

    def step(self, state: Tensor, x: Tensor | None) -> Tensor:
        return _drive(state @ self.A.T, x)

    def tangent(self, state: Tensor, x: Tensor | None, Q: Tensor) -> tuple[Tensor, Tensor]:
        return self.step(state, x), shared_matmul(self.A, Q)

    def exact_exponents(self) -> Tensor:
        """log|eigenvalues of A|, descending, (D,)."""
        moduli = torch.linalg.eigvals(self.A.double()).abs()
        return torch.sort(moduli.log(), descending=True).values


class Lorenz(CellModule):
    """The Lorenz flow, discretised by one classical Runge-Kutta (RK4) step of ``dt``.

    dx/dt = sigma (y - x),  dy/dt = x (rho - z) - y,  dz/dt = x y - beta z;
    dim 3, layout [x, y, z]. The exponents per step are ``dt`` times the flow's
    (0.9056, 0, -14.5723) per unit time at the classic (10, 28, 8/3); their sum
    is -dt (sigma + 1 + beta) up to the RK4 error. The tangent is the exact
    derivative of the RK4 step (the RK4 scheme applied to the variational equation).
    """

    dim = 3

    def __init__(self, sigma: float = 10.0, rho: float = 28.0, beta: float = 8 / 3,
                 dt: float = 0.01):
        super().__init__()
        self.sigma, self.rho, self.beta, self.dt = float(sigma), float(rho), float(beta), float(dt)

    def initial_state(self, batch: int) -> Tensor:
        x = _spread(batch, -1.0, 1.0, self.dtype)
        return torch.stack([x, x + 1, torch.full_like(x, 20.0)], dim=-1)

    def _field(self, s: Tensor) -> Tensor:
        x, y, z = s.unbind(-1)
        dx, dy, dz = self.sigma * (y - x), x * (self.rho - z) - y, x * y - self.beta * z
        return torch.stack([dx, dy, dz], dim=-1)

    def _field_jvp(self, s: Tensor, V: Tensor) -> Tensor:
        """Jacobian of the vector field at s (B, 3) applied to V (B, 3, k)."""
        x, y, z = (c.unsqueeze(-1) for c in s.unbind(-1))
        vx, vy, vz = V.unbind(1)
        return torch.stack([
            self.sigma * (vy - vx),
            (self.rho - z) * vx - vy - x * vz,
            y * vx + x * vy - self.beta * vz,
        ], dim=1)

    def step(self, state: Tensor, x: Tensor | None) -> Tensor:
        return self.tangent(state, x, state.new_zeros(state.shape[0], 3, 0))[0]

    def tangent(self, state: Tensor, x: Tensor | None, Q: Tensor) -> tuple[Tensor, Tensor]:
        h = self.dt
        k1 = self._field(state)
        d1 = self._field_jvp(state, Q)
        s2 = state + h / 2 * k1
        k2, d2 = self._field(s2), self._field_jvp(s2, Q + h / 2 * d1)
        s3 = state + h / 2 * k2
        k3, d3 = self._field(s3), self._field_jvp(s3, Q + h / 2 * d2)
        s4 = state + h * k3
        k4, d4 = self._field(s4), self._field_jvp(s4, Q + h * d3)
        new = state + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        return _drive(new, x), Q + h / 6 * (d1 + 2 * d2 + 2 * d3 + d4)
