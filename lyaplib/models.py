"""Trainable models, and the one registry of the recurrent architectures they are built from.

``ARCHITECTURES`` maps a name ("lstm", "cornn", ...) to an :class:`Architecture`: how to
build its trainable recurrent module, how to read that module as a Cell, its display
name, and where an external drive enters it. Adding an architecture is its class plus
one entry here; the models, the tasks, the tests and the chapters all read the registry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from . import cells
from .cells.base import unroll
from .cells.gated import JacobianConvention


@dataclass(frozen=True)
class DriveEntry:
    """Where a drive enters an architecture's first layer.

    ``input_weight`` and ``recurrent_weight`` are the Cell's parameter names; the
    neurons' pre-activations are row block ``block`` of ``blocks`` stacked blocks of
    those weights (the LSTM's cell candidate g is block 2 of 4, the GRU's n 2 of 3).
    """

    input_weight: str
    recurrent_weight: str
    block: int = 0
    blocks: int = 1


@dataclass(frozen=True)
class Architecture:
    """One recurrent architecture, as the models and the chapters use it.

    ``build(input_size, hidden_size, **hyperparameters)`` returns the trainable module;
    ``as_cell(module, jacobian)`` reads it as a Cell sharing its weights, for each
    convention in ``jacobians`` (where "hidden" and "full" both appear for a module
    whose state is h alone, they are the same system). ``fused``: the module is a
    torch.nn layer whose forward runs a whole (B, T, I) sequence in one kernel.
    ``in_aelle_zoo``: one of the eight architectures of the AeLLE paper.
    """

    display_name: str
    build: Callable[..., nn.Module]
    as_cell: Callable[[nn.Module, str], cells.Cell]
    jacobians: tuple[str, ...] = ("full", "hidden")
    fused: bool = False
    drive: DriveEntry | None = None
    in_aelle_zoo: bool = False

    def cell(self, module: nn.Module, jacobian: str) -> cells.Cell:
        """``as_cell(module, jacobian)``, refusing a convention it cannot honour."""
        if jacobian not in self.jacobians:
            raise ValueError(f"jacobian: the {self.display_name} has the Jacobian "
                             f"conventions {self.jacobians}, got {jacobian!r}")
        return self.as_cell(module, jacobian)


def _torch_layer(kind: type[nn.RNNBase]) -> Callable[..., nn.Module]:
    return lambda input_size, hidden_size, **hp: kind(input_size, hidden_size, batch_first=True,
                                                      **hp)


def _itself(module: nn.Module, jacobian: str) -> cells.Cell:
    """The zoo's modules are their own Cells; one built with another convention (the
    ARU's "main") is read through a view that shares its weights."""
    if getattr(module, "convention", jacobian) == jacobian:
        return module
    return module.with_convention(jacobian)


_TORCH_DRIVE = "module.weight_ih_l0", "module.weight_hh_l0"

ARCHITECTURES: dict[str, Architecture] = {
    "lstm": Architecture("LSTM", _torch_layer(nn.LSTM), cells.LSTM, fused=True,
                         drive=DriveEntry(*_TORCH_DRIVE, 2, 4), in_aelle_zoo=True),
    "gru": Architecture("GRU", _torch_layer(nn.GRU), cells.GRU, fused=True,
                        drive=DriveEntry(*_TORCH_DRIVE, 2, 3), in_aelle_zoo=True),
    # the RNN's state is h alone: its Jacobian needs no convention
    "rnn": Architecture("vanilla RNN", _torch_layer(nn.RNN), lambda m, jacobian: cells.RNN(m),
                        fused=True, drive=DriveEntry(*_TORCH_DRIVE), in_aelle_zoo=True),
    "antisymmetric": Architecture("antisymmetric RNN", cells.AntisymmetricRNN, _itself,
                                  in_aelle_zoo=True),
    # coRNN and LEM carry two state vectors (y, z): no "hidden" system is defined
    "cornn": Architecture("coRNN", cells.CoRNN, _itself, ("full",), in_aelle_zoo=True),
    "lipschitz": Architecture("Lipschitz RNN", cells.LipschitzRNN, _itself, in_aelle_zoo=True),
    "noisy": Architecture("noisy RNN", cells.NoisyRNN, _itself, in_aelle_zoo=True),
    "lem": Architecture("LEM", cells.LEM, _itself, ("full",), in_aelle_zoo=True),
    "gamma": Architecture("gamma RNN", cells.GammaRNN, _itself, drive=DriveEntry("U", "W")),
    "aru": Architecture("ARU", cells.ARU, _itself, ("full", "main"),
                        drive=DriveEntry("U", "W")),
}
"""Every architecture by name; a new one is its class plus one entry here."""

AELLE_ARCHITECTURES: tuple[str, ...] = tuple(n for n, a in ARCHITECTURES.items()
                                             if a.in_aelle_zoo)
"""The zoo of the AeLLE paper (chapters 07 and 08), in registry order."""


def get_architecture(name: str) -> Architecture:
    """The registry entry ``name``, or a ValueError that lists the registered names."""
    if name not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {tuple(ARCHITECTURES)}, got {name!r}")
    return ARCHITECTURES[name]


def display_names() -> dict[str, str]:
    """{registry name: display name}, for figure legends and tables."""
    return {name: a.display_name for name, a in ARCHITECTURES.items()}


class LSTMPredictor(nn.Module):
    """(B, L, I) inputs -> LSTM(N) -> dropout -> linear -> (B, L, O) predictions.

    Every weight and bias starts uniform on [-init, init] (the paper's ``p``).
    """

    def __init__(self, input_size: int, hidden_size: int, output_size: int, *,
                 dropout: float = 0.1, init: float = 0.08, num_layers: int = 1):
        super().__init__()
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if not init > 0:
            raise ValueError(f"init (the U(-p, p) half-width p) must be > 0, got {init}")
        self.lstm = nn.LSTM(input_size, hidden_size, num_layers, batch_first=True,
                            dropout=dropout if num_layers > 1 else 0.0)
        self.dropout = nn.Dropout(dropout)
        self.decoder = nn.Linear(hidden_size, output_size)
        with torch.no_grad():
            for weight in self.parameters():
                weight.uniform_(-init, init)

    def forward(self, x: Tensor, state: tuple[Tensor, Tensor] | None = None):
        """x (B, L, I) -> (predictions (B, L, O), final (h, c))."""
        h, state = self.lstm(x, state)
        return self.decoder(self.dropout(h)), state

    def cell(self, jacobian: JacobianConvention = "hidden") -> cells.LSTM:
        """The recurrent layer as a Cell (it shares this model's live weights)."""
        return cells.LSTM(self.lstm, jacobian)


class _Step(nn.Module):
    """A Cell's ``step`` as a module's forward, so ``functional_call`` can swap its weights."""

    def __init__(self, cell: cells.Cell):
        super().__init__()
        self.cell = cell

    def forward(self, state: Tensor, x: Tensor) -> Tensor:
        return self.cell.step(state, x)


@dataclass(frozen=True)
class GradientProfile:
    """Where the gradient of the recurrent weight matrix comes from, (T,) each.

    ``per_step[t]``: ||dL/dW_hh through the use of W_hh at step t||;
    ``by_start[t]``: ||sum over steps >= t of those contributions||, the gradient
    norm when accumulation starts at step t (``by_start[0]`` is the full gradient).
    """

    per_step: Tensor
    by_start: Tensor


class RecurrentClassifier(nn.Module):
    """Any registered architecture, read out linearly from its last hidden state.

    ``architecture``: a name in :data:`ARCHITECTURES`. ``init``: when given, every
    recurrent parameter starts uniform on [-init, init]; otherwise each architecture
    keeps its own default initialisation. ``hyperparameters`` go to the recurrent
    module (e.g. ``nonlinearity="relu"`` for "rnn", ``adapt="heterogeneous"`` for "gamma").
    """

    def __init__(self, architecture: str, input_size: int, hidden_size: int,
                 num_classes: int, *, init: float | None = None, **hyperparameters):
        super().__init__()
        self.spec = get_architecture(architecture)
        self.architecture = architecture
        self.recurrent = self.spec.build(input_size, hidden_size, **hyperparameters)
        if init is not None:
            with torch.no_grad():
                for weight in self.recurrent.parameters():
                    weight.uniform_(-init, init)
        self.readout = nn.Linear(hidden_size, num_classes)

    def forward(self, x: Tensor, state=None, *, stepwise: bool = False,
                drive: Tensor | None = None):
        """x (B, T, I) -> (logits (B, classes) from the last step, final state).

        ``stepwise`` unrolls the Cell's ``step`` in Python instead of calling the
        fused torch.nn kernel: plain tensor operations, which ``torch.func.vmap``
        can batch over a population of networks. ``drive`` (B, T), or (B, T, N)
        per neuron, is added to the neurons' pre-activations (see :meth:`trajectory`).
        """
        if self.spec.fused and not stepwise and drive is None:
            h, state = self.recurrent(x, state)
            return self.readout(h[:, -1]), state
        state = self._states(x, state, drive)[-1]  # not stacked: only the last is read
        return self.readout(state[..., : self.hidden_size]), state

    def trajectory(self, x: Tensor, state: Tensor | None = None, *,
                   drive: Tensor | None = None) -> Tensor:
        """The Cell's states after every step, (B, T, S), for inputs x (B, T, I).

        ``drive`` (B, T) or (B, T, N): an external current added to every neuron's
        pre-activation in the first layer, as optogenetic stimulation would (for the
        LSTM and GRU: to the candidate's pre-activation). Architectures with a
        ``drive`` entry in the registry: rnn, lstm, gru, gamma, aru.
        """
        return torch.stack(self._states(x, state, drive), dim=1)

    def _states(self, x: Tensor, state: Tensor | None, drive: Tensor | None) -> list[Tensor]:
        """The T states of :meth:`trajectory`, as a list."""
        if drive is None:
            return self._unroll(x, state)
        x, (name, weight) = self._with_drive(x, drive)
        return self._unroll(x, state, lambda t: {name: weight})

    def _unroll(self, x: Tensor, state: Tensor | None = None,
                weights_at: Callable[[int], dict[str, Tensor]] | None = None) -> list[Tensor]:
        """The Cell's states after each step; ``weights_at(t)`` replaces Cell parameters
        (by name) at step t, through ``functional_call``."""
        cell = self.cell("full")
        state = cell.initial_state(x.shape[0]).to(x) if state is None else state
        if weights_at is None:
            return unroll(lambda h, u, t: cell.step(h, u), x, state)
        module = _Step(cell)

        def step(h: Tensor, u: Tensor, t: int) -> Tensor:
            weights = {f"cell.{name}": w for name, w in weights_at(t).items()}
            return torch.func.functional_call(module, weights, (h, u))

        return unroll(step, x, state)

    def _drive_entry(self) -> DriveEntry:
        if self.spec.drive is None:
            with_drive = tuple(n for n, a in ARCHITECTURES.items() if a.drive is not None)
            raise ValueError(f"a drive or recurrent-weight gradient is implemented for "
                             f"{with_drive}, not {self.architecture!r}")
        return self.spec.drive

    def recurrent_weight(self) -> nn.Parameter:
        """The first layer's recurrent weight matrix W_hh (all gates stacked)."""
        return self.cell("full").get_parameter(self._drive_entry().recurrent_weight)

    def _with_drive(self, x: Tensor, drive: Tensor) -> tuple[Tensor, tuple[str, Tensor]]:
        """Inputs with the drive appended as extra channels, and the input weight that
        routes those channels to the neurons' pre-activations."""
        entry = self._drive_entry()
        N = self.hidden_size
        if drive.ndim == 2:
            drive = drive.unsqueeze(-1)
        if drive.shape[:2] != x.shape[:2] or drive.shape[-1] not in (1, N):
            raise ValueError(f"drive must be (B, T) = {tuple(x.shape[:2])} or (B, T, {N}), "
                             f"got {tuple(drive.shape)}")
        weight = self.cell("full").get_parameter(entry.input_weight)
        route = weight.new_zeros(entry.blocks * N, drive.shape[-1])
        rows = route[entry.block * N:(entry.block + 1) * N]
        rows.copy_(torch.eye(N, dtype=rows.dtype) if drive.shape[-1] == N else
                   torch.ones(N, 1, dtype=rows.dtype))
        return (torch.cat([x, drive.to(x)], dim=-1),
                (entry.input_weight, torch.cat([weight, route], dim=1)))

    def gradient_profile(self, x: Tensor, y: Tensor) -> GradientProfile:
        """How much each step's use of the recurrent weights W_hh contributes to the
        gradient of the cross-entropy of (x, y), from one backward pass: every step
        gets its own zero offset of W_hh, whose gradient is that step's share."""
        name = self._drive_entry().recurrent_weight
        weight = self.recurrent_weight()
        offsets = torch.zeros(x.shape[1], *weight.shape, dtype=weight.dtype,
                              device=weight.device, requires_grad=True)
        state = self._unroll(x, None, lambda t: {name: weight + offsets[t]})[-1]
        loss = nn.functional.cross_entropy(self.readout(state[..., : self.hidden_size]), y)
        (shares,) = torch.autograd.grad(loss, offsets)
        from_start = shares.flip(0).cumsum(0).flip(0)
        return GradientProfile(per_step=torch.linalg.matrix_norm(shares).detach(),
                               by_start=torch.linalg.matrix_norm(from_start).detach())

    @property
    def hidden_size(self) -> int:
        """N, the width of the recurrent layer."""
        return self.recurrent.hidden_size

    def cell(self, jacobian: str = "full") -> cells.Cell:
        """The recurrent part as a Cell sharing this model's weights; ``jacobian``: one of
        the architecture's conventions (``ARCHITECTURES[name].jacobians``)."""
        return self.spec.cell(self.recurrent, jacobian)


class RecurrentTagger(RecurrentClassifier):
    """A :class:`RecurrentClassifier` read out at every step: x (B, T, I) -> logits
    (B, T, classes), for tasks with a target at each step (delayed copy and XOR)."""

    def forward(self, x: Tensor, state=None, *, stepwise: bool = False):
        """x (B, T, I) -> (logits (B, T, classes), final state); ``stepwise`` as in
        :meth:`RecurrentClassifier.forward` (vmappable over a population)."""
        if self.spec.fused and not stepwise:
            h, state = self.recurrent(x, state)
            return self.readout(h), state
        states = self.trajectory(x, state)
        return self.readout(states[..., : self.hidden_size]), states[:, -1]
