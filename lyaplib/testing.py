"""Checks for Cells: an analytic tangent against autograd, and every cell lyaplib ships.

:func:`check_tangent` is what every cell of lyaplib is tested with, and what a reader
runs on their own analytic tangent before trusting its exponents::

    from lyaplib.testing import check_tangent
    check_tangent(MyCell(...))    # raises AssertionError naming the wrong columns

:data:`CELLS` builds a small instance of every cell class in :mod:`lyaplib.cells`
(several configurations of some), for tests parametrised over all of them.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import Tensor, nn

from . import cells
from .cells.base import AutogradCell, Cell, StepFn
from .models import ARCHITECTURES


def check_tangent(cell: Cell, inputs: Tensor | None | str = "auto", *,
                  dtype: torch.dtype = torch.float64, rtol: float = 1e-10, atol: float = 1e-12,
                  batch: int = 3, k: int | None = None, state: Tensor | None = None,
                  reference: StepFn | None = None, seed: int = 0,
                  device: torch.device | str | None = None) -> None:
    """Assert that ``cell.tangent`` is J Q for the Jacobian J that autograd computes.

    The cell (a copy, when it is an ``nn.Module``) is cast to ``dtype``; a random state
    (``batch``, S), input and basis Q (``batch``, D, k) are drawn from ``seed``. Checked:
    the shapes and dtypes of ``tangent``'s results, that its next state is ``step``'s, and
    that J Q matches autograd's to ``rtol``/``atol`` (float64 leaves room for 1e-10).

    Args:
        cell: any Cell.
        inputs: "auto" (default): (batch, input_size) standard normal inputs when the
            cell has a positive ``input_size``, else None; or a (B, I) tensor (then B sets
            the batch), or None for an autonomous step.
        k: the number of tangent columns (default D).
        state: (batch, S) instead of a standard normal state.
        reference: ``step(h, x)`` on the D differentiated coordinates, whose Jacobian is
            the truth. Default: ``cell.step`` with the S - D carried coordinates held
            fixed (e.g. the LSTM's cell state in the "hidden" convention).
        device: where to check, e.g. "cuda" (the cell is moved there); default the
            device of the cell's parameters, else the CPU.
    Raises:
        AssertionError: saying which columns of J Q differ, and by how much.
    """
    if isinstance(cell, nn.Module):
        cell = copy.deepcopy(cell).to(dtype=dtype, device=device)
        device = device or next((t.device for t in (*cell.parameters(), *cell.buffers())),
                                None)
    device = torch.device(device or "cpu")
    D = cell.dim
    S = getattr(cell, "state_dim", D)
    generator = torch.Generator().manual_seed(seed)
    if isinstance(inputs, Tensor):
        batch = inputs.shape[0]
    elif state is not None:
        batch = state.shape[0]
    if state is None:
        state = torch.randn(batch, S, generator=generator, dtype=dtype).to(device)
    if isinstance(inputs, str):
        if inputs != "auto":
            raise ValueError(f"inputs must be 'auto', None or a (B, I) tensor, got {inputs!r}")
        width = getattr(cell, "input_size", None) or 0
        inputs = (torch.randn(batch, width, generator=generator, dtype=dtype).to(device)
                  if width else None)
    Q = torch.randn(state.shape[0], D, D if k is None else k, generator=generator,
                    dtype=dtype).to(device)
    name = type(cell).__name__
    nxt, JQ = cell.tangent(state, inputs, Q)
    if nxt.shape != state.shape or JQ.shape != Q.shape:
        raise AssertionError(f"{name}.tangent returned shapes {tuple(nxt.shape)} and "
                             f"{tuple(JQ.shape)}; expected {tuple(state.shape)} (the state) "
                             f"and {tuple(Q.shape)} (Q)")
    if nxt.dtype != dtype or JQ.dtype != dtype:
        raise AssertionError(f"{name}.tangent returned {nxt.dtype} and {JQ.dtype} "
                             f"for {dtype} inputs")
    torch.testing.assert_close(nxt, cell.step(state, inputs), rtol=rtol, atol=atol,
                               msg=lambda m: f"{name}.tangent's next state is not step's: {m}")
    if reference is None:
        carried = state[:, D:]
        reference = lambda h, x: cell.step(torch.cat([h, carried], -1), x)[:, :D]  # noqa: E731
    expected = AutogradCell(reference, D).tangent(state[:, :D], inputs, Q)[1]
    _assert_columns_close(JQ, expected, rtol, atol, name)


def _assert_columns_close(JQ: Tensor, expected: Tensor, rtol: float, atol: float,
                          name: str) -> None:
    """AssertionError naming every column j of J Q (B, D, k) with an element off by more
    than atol + rtol |expected|."""
    excess = (JQ - expected).abs() - (atol + rtol * expected.abs())
    bad = (excess > 0).flatten(0, 1).any(0).nonzero().flatten().tolist()
    if not bad:
        return
    gap = (JQ - expected).abs().amax((0, 1))
    size = expected.abs().amax((0, 1))
    listed = ", ".join(f"{j}: max |diff| {gap[j]:.2e} (max |J Q| {size[j]:.2e})"
                       for j in bad[:8])
    more = f", and {len(bad) - 8} more" if len(bad) > 8 else ""
    raise AssertionError(f"{name}.tangent differs from autograd's J Q (rtol={rtol:g}, "
                         f"atol={atol:g}) in {len(bad)} of {JQ.shape[-1]} columns: "
                         f"{listed}{more}")


def _randomised(make: Callable[[], nn.Module], spread: float = 0.3) -> Callable[[], nn.Module]:
    """The cell ``make`` builds, with every parameter and buffer moved off its default (so
    that zero biases and symmetric initialisations cannot hide a wrong term)."""

    def build() -> nn.Module:
        cell = make()
        with torch.no_grad():
            for t in (*cell.parameters(), *cell.buffers()):
                if t.is_floating_point():
                    t.add_(spread * torch.randn_like(t))
        return cell

    return build


def _torch_layer(kind: str, **options) -> Callable[[], Cell]:
    spec = ARCHITECTURES[kind]
    return _randomised(lambda: spec.as_cell(spec.build(3, 4, **options), "full"))


def _lstm_hidden(**options) -> Cell:
    return cells.LSTM(_randomised(lambda: nn.LSTM(3, 4, **options))(), "hidden")


CELLS: dict[str, Callable[[], Cell]] = {
    "logistic": lambda: cells.Logistic(3.7),
    "henon": lambda: cells.Henon(),
    "lorenz": lambda: cells.Lorenz(),
    "linear_map": lambda: cells.LinearMap(torch.tensor([[0.9, 0.4], [-0.3, 1.1]])),
    "vanilla_rnn": lambda: cells.VanillaRNN.random(5, 1.5, 3, leak=0.4),
    "vanilla_rnn_relu": lambda: cells.VanillaRNN.random(5, 1.5, 3, activation="relu"),
    "force": _randomised(lambda: cells.ForceRNN(3, 7, g=1.5, density=0.5)),
    "force_autonomous": _randomised(lambda: cells.ForceRNN(0, 7, g=1.5, density=0.5)),
    "rnn": _torch_layer("rnn"),
    "rnn_relu_2_layers": _torch_layer("rnn", nonlinearity="relu", num_layers=2),
    "gru": _torch_layer("gru"),
    "gru_2_layers_no_bias": _torch_layer("gru", num_layers=2, bias=False),
    "lstm_full": _torch_layer("lstm"),
    "lstm_full_2_layers": _torch_layer("lstm", num_layers=2),
    "lstm_hidden": _lstm_hidden,
    "lstm_hidden_2_layers": lambda: _lstm_hidden(num_layers=2),
    "antisymmetric": _randomised(lambda: cells.AntisymmetricRNN(3, 6, eps=0.3, gamma=0.1)),
    "cornn": _randomised(lambda: cells.CoRNN(3, 5, dt=0.3)),
    "lipschitz": _randomised(lambda: cells.LipschitzRNN(3, 6, eps=0.3)),
    "noisy": _randomised(lambda: cells.NoisyRNN(3, 6, eps=0.3).eval()),
    "lem": _randomised(lambda: cells.LEM(3, 5, dt=0.7)),
    "gamma_fixed": _randomised(lambda: cells.GammaRNN(3, 6, n=3.0, s=0.3), 0.2),
    "gamma_homogeneous": _randomised(lambda: cells.GammaRNN(3, 6, adapt="homogeneous"), 0.2),
    "gamma_heterogeneous": _randomised(lambda: cells.GammaRNN(3, 6, adapt="heterogeneous"), 0.2),
    "aru_full": _randomised(lambda: cells.ARU(3, 4, controller_size=5), 0.2),
}
"""Every cell class of :mod:`lyaplib.cells`, small, keyed by a name for test ids.

The ARU's "main" convention is not here: its Jacobian is not a block of the step's (the
controllers' (n, s) are frozen), so its test passes ``check_tangent`` a ``reference``.
"""
