"""The Cell protocol, the seam between dynamical systems and the QR engine.

A cell is a map  h_t = f(h_{t-1}, x_t)  on a flat state, applied to a batch of
B independent sequences at once. Besides stepping the state it pushes a batch
of tangent bases forward: ``tangent(h, x, Q)`` returns ``(f(h, x), J Q)`` with
``J = df/dh`` evaluated at ``(h, x)``.

``dim`` (D) is the dimension of the tangent space, i.e. the number of
exponents. The state usually has the same size, but a cell may carry more
state than it differentiates (``state_dim`` S > D): the LSTM in the 2022
paper's "hidden" convention carries (h, c) but takes the Jacobian in h only.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Literal, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

StepFn = Callable[[Tensor, Tensor | None], Tensor]


@runtime_checkable
class Cell(Protocol):
    """What ``lyapunov_spectrum`` needs from a dynamical system."""

    dim: int  # D; an optional ``state_dim`` (S) defaults to D

    def initial_state(self, batch: int) -> Tensor:
        """A default initial state, (B, S)."""
        ...

    def step(self, state: Tensor, x: Tensor | None) -> Tensor:
        """state (B, S), input (B, I) or None  ->  next state (B, S)."""
        ...

    def tangent(self, state: Tensor, x: Tensor | None, Q: Tensor) -> tuple[Tensor, Tensor]:
        """state (B, S), Q (B, D, k)  ->  (next state (B, S), J @ Q (B, D, k))."""
        ...


class CellModule(nn.Module):
    """Base class for cells: an ``nn.Module`` with a ``dim`` and a zero initial state."""

    dim: int

    @property
    def state_dim(self) -> int:
        """S, the size of the state (D unless the cell carries more than it differentiates)."""
        return self.dim

    def initial_state(self, batch: int) -> Tensor:
        """Zeros, (B, S), in the cell's dtype and on its device."""
        return torch.zeros(batch, self.state_dim, dtype=self.dtype, device=self.device)

    def step(self, state: Tensor, x: Tensor | None) -> Tensor:
        """state (B, S), input (B, I) or None  ->  next state (B, S)."""
        raise NotImplementedError

    def tangent(self, state: Tensor, x: Tensor | None, Q: Tensor) -> tuple[Tensor, Tensor]:
        """state (B, S), Q (B, D, k)  ->  (next state (B, S), J @ Q (B, D, k))."""
        raise NotImplementedError

    @property
    def dtype(self) -> torch.dtype:
        """dtype of the first floating parameter or buffer, else the default dtype."""
        for t in _floating_tensors(self):
            return t.dtype
        return torch.get_default_dtype()

    @property
    def device(self) -> torch.device:
        """device of the first floating parameter or buffer, else the CPU."""
        for t in _floating_tensors(self):
            return t.device
        return torch.device("cpu")

    def forward(self, state: Tensor, x: Tensor | None = None) -> Tensor:
        """The same as :meth:`step` (so that a cell can be called like any module)."""
        return self.step(state, x)


class RecurrentModule(CellModule):
    """A trainable cell with ``input_size`` and ``hidden_size``; ``run`` unrolls ``step``."""

    input_size: int
    hidden_size: int

    def run(self, inputs: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """inputs (B, T, I) -> (hidden outputs (B, T, hidden_size), final state (B, S))."""
        if inputs.ndim != 3 or inputs.shape[-1] != self.input_size:
            raise ValueError(f"inputs must be (B, T, {self.input_size}), "
                             f"got {tuple(inputs.shape)}")
        state = self.initial_state(inputs.shape[0]) if state is None else state
        states = unroll(lambda h, x, t: self.step(h, x), inputs, state)
        return self.output(torch.stack(states, dim=1)), states[-1]

    def output(self, state: Tensor) -> Tensor:
        """The part of the state a read-out sees (the hidden units), (..., hidden_size)."""
        return state[..., : self.hidden_size]

    def _init_linear(self, *shapes: tuple[int, int]) -> list[nn.Parameter]:
        """Weights with torch.nn.Linear's default U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
        params = []
        for rows, cols in shapes:
            bound = 1 / math.sqrt(cols) if cols else 0.0
            params.append(nn.Parameter(torch.empty(rows, cols).uniform_(-bound, bound)))
        return params


def unroll(step: Callable[[Tensor, Tensor, int], Tensor], inputs: Tensor,
           state: Tensor) -> list[Tensor]:
    """The states after each step of ``state <- step(state, inputs[:, t], t)``.

    inputs (B, T, I), state (B, S) -> T states (B, S). The one unroll of the library:
    ``RecurrentModule.run`` and ``models.RecurrentClassifier`` both go through it.
    """
    states = []
    for t in range(inputs.shape[1]):
        state = step(state, inputs[:, t], t)
        states.append(state)
    return states


def check_sizes(input_size: int, hidden_size: int) -> None:
    """Refuse sizes that cannot build a recurrent module, naming both."""
    if input_size < 0 or hidden_size < 1:
        raise ValueError(f"input_size must be >= 0 and hidden_size >= 1, "
                         f"got {input_size} and {hidden_size}")


def jacobian_convention(jacobian: str | None, state: str | None,
                        allowed: Sequence[str] | None, owner: str) -> str:
    """The Jacobian convention of a cell, from ``jacobian=`` or the deprecated ``state=``;
    one of ``allowed`` (the first by default), or with ``allowed`` None any name, which
    the model's ``cell`` then checks ("hidden" by default).

    ``state=`` used to name the convention, which collided with the state tensor that
    every other ``state`` in the library is; it still works, with a DeprecationWarning.
    """
    if state is not None:
        if jacobian is not None:
            raise TypeError(f"{owner}: pass jacobian= only (state= is its deprecated name)")
        warnings.warn(f"{owner}(state=...) is deprecated; use jacobian={state!r}",
                      DeprecationWarning, stacklevel=3)
        jacobian = state
    if jacobian is None:
        return "hidden" if allowed is None else allowed[0]
    if allowed is None:
        if not isinstance(jacobian, str):
            raise ValueError(f"{owner}: jacobian must be a convention's name, got {jacobian!r}")
        return jacobian
    if jacobian not in allowed:
        raise ValueError(f"{owner}: jacobian must be one of {tuple(allowed)}, got {jacobian!r}")
    return jacobian


def shared_matmul(weight: Tensor, Q: Tensor) -> Tensor:
    """weight @ Q for a weight shared by the batch: (R, M) x (B, M, k) -> (B, R, k).

    One (R, M) x (M, B k) GEMM instead of the B GEMMs that broadcasting runs; on 2 CPU
    cores 1.1-5x faster (most for small k). The result is a strided view.
    """
    B, M, k = Q.shape
    return (weight @ Q.transpose(0, 1).reshape(M, B * k)).view(-1, B, k).transpose(0, 1)


def _floating_tensors(module: nn.Module):
    for t in (*module.parameters(), *module.buffers()):
        if t.is_floating_point():
            yield t


class AutogradCell(CellModule):
    """Any ``step(state, x)`` as a Cell, with the tangent computed by ``torch.func``.

    The generic fallback for a model without an analytic tangent, and the
    reference every analytic tangent in lyaplib is tested against.

    Its derivatives are torch's: ``torch.tanh`` and ``torch.sigmoid`` are differentiated
    from their outputs (1 - tanh^2), which is exactly 0 where the unit saturates
    (``|a| > 19`` in float64, ``> 9`` in float32), so a saturated network's Jacobian gets zero
    rows, and the lowest exponents are lost or the engine stops at a singular tangent.
    Write the step with :func:`lyaplib.cells.activations.tanh` and ``.sigmoid`` (same
    values, saturation-safe derivatives) to avoid that.

    Args:
        step_fn: ``(state (B, D), x (B, I) | None) -> (B, D)``; rows of the batch
            must not interact (each sequence evolves on its own). If it is an
            ``nn.Module`` its parameters follow ``.to()`` and dtype casts.
        dim: the state dimension D.
        initial_state: a (D,) tensor or a callable ``batch -> (B, D)``; zeros if None.
        mode: ``"jvp"`` pushes the k columns of Q through forward-mode AD (vmapped;
            best for k < D); ``"jacrev"`` builds each (D, D) Jacobian by reverse mode
            and multiplies (best for k = D with small D).
    """

    def __init__(
        self,
        step_fn: StepFn,
        dim: int,
        *,
        initial_state: Tensor | Callable[[int], Tensor] | None = None,
        mode: Literal["jvp", "jacrev"] = "jvp",
    ):
        super().__init__()
        if not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be a positive int, got {dim!r}")
        if mode not in ("jvp", "jacrev"):
            raise ValueError(f"mode must be 'jvp' or 'jacrev', got {mode!r}")
        self.step_fn = step_fn
        self.dim = dim
        self.mode = mode
        self._initial_state = initial_state

    def initial_state(self, batch: int) -> Tensor:
        init = self._initial_state
        if init is None:
            return super().initial_state(batch)
        if callable(init):
            return init(batch)
        return init.expand(batch, self.dim).clone()

    def step(self, state: Tensor, x: Tensor | None) -> Tensor:
        return self.step_fn(state, x)

    def jacobian(self, state: Tensor, x: Tensor | None) -> Tensor:
        """The dense Jacobians df/dh, (B, D, D)."""

        def single(h: Tensor, u: Tensor | None) -> Tensor:
            return self.step_fn(h[None], None if u is None else u[None])[0]

        jac = torch.func.jacrev(single)
        return torch.func.vmap(jac, in_dims=(0, None if x is None else 0))(state, x)

    def tangent(self, state: Tensor, x: Tensor | None, Q: Tensor) -> tuple[Tensor, Tensor]:
        nxt = self._checked_step(state, x)
        if self.mode == "jacrev":
            return nxt, self.jacobian(state, x) @ Q

        def push(v: Tensor) -> Tensor:  # v: (B, D), one column of every Q
            return torch.func.jvp(lambda h: self.step_fn(h, x), (state,), (v,))[1]

        return nxt, torch.func.vmap(push, in_dims=2, out_dims=2)(Q)

    def _checked_step(self, state: Tensor, x: Tensor | None) -> Tensor:
        """The step, refused at any step where it changes the state's shape or writes into
        its argument: the tangent is taken at the argument after the step (checks of
        metadata only: no host sync)."""
        from .._arguments import LyapunovError  # the engine's error (it imports this module)

        version = state._version
        nxt = self.step_fn(state, x)
        if state._version != version:
            raise LyapunovError("AutogradCell: step_fn wrote into its state argument (an "
                                "in-place operation); the tangent would be taken at the "
                                "changed state. Return a new tensor (h = h + ..., not h += ...)")
        if nxt.shape != state.shape:
            raise LyapunovError(f"AutogradCell: step_fn returned a state of shape "
                                f"{tuple(nxt.shape)} from one of shape {tuple(state.shape)}; "
                                "the state's shape must not change from step to step")
        return nxt
