"""Models and training loops for the 2022 paper's experiments, with Lyapunov tracking.

A *task* (``CharTask`` for War and Peace, ``MocapTask`` for CMU Mocap) knows its
data, its loss and which held-out inputs drive the spectrum. ``train`` fits an
``LSTMPredictor`` with Adam, computes the spectrum at chosen epochs through a
``LyapunovTracker`` (without touching the training's random numbers), and can
resume from a checkpoint (``lyaplib.sweeps`` runs many of them into a results store).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from . import cells
from ._io import atomic_write
from .benchmark import timed_call
from .data import Corpus, MnistData, MocapData, as_sequences
from .perturbations import Perturbation
from .spectrum import LyapunovResult, lyapunov_spectrum


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

    def cell(self, state: cells.gated.StateConvention = "hidden") -> cells.LSTM:
        """The recurrent layer as a Cell (it shares this model's live weights)."""
        return cells.LSTM(self.lstm, state=state)


TORCH_RECURRENT = {"lstm": (nn.LSTM, cells.LSTM), "gru": (nn.GRU, cells.GRU),
                   "rnn": (nn.RNN, cells.RNN)}
ZOO = {"antisymmetric": cells.AntisymmetricRNN, "cornn": cells.CoRNN,
       "lipschitz": cells.LipschitzRNN, "noisy": cells.NoisyRNN, "lem": cells.LEM,
       "gamma": cells.GammaRNN, "aru": cells.ARU}
ARCHITECTURES = (*TORCH_RECURRENT, *ZOO)
AELLE_ARCHITECTURES = ("lstm", "gru", "rnn", "antisymmetric", "cornn", "lipschitz", "noisy",
                       "lem")  # the zoo of the AeLLE paper (chapters 07-08)

# Where a drive enters each architecture's first layer: the Cell's (input weight,
# recurrent weight) names, and which of its stacked row blocks are the neurons'
# pre-activations (the LSTM's cell candidate g, the GRU's candidate n).
_DRIVE_ENTRY = {"rnn": ("module.weight_ih_l0", "module.weight_hh_l0", 0, 1),
                "lstm": ("module.weight_ih_l0", "module.weight_hh_l0", 2, 4),
                "gru": ("module.weight_ih_l0", "module.weight_hh_l0", 2, 3),
                "gamma": ("U", "W", 0, 1), "aru": ("U", "W", 0, 1)}


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
    """Any architecture of the zoo, read out linearly from its last hidden state.

    ``architecture``: "lstm", "gru", "rnn" (torch.nn modules, wrapped by the
    gated/rnn cells for analysis) or "antisymmetric", "cornn", "lipschitz",
    "noisy", "lem", "gamma", "aru" (``lyaplib.cells``, each its own Cell).
    ``init``: when given, every recurrent parameter starts uniform on
    [-init, init]; otherwise each architecture keeps its own default
    initialisation. ``hyperparameters`` go to the recurrent module (e.g.
    ``nonlinearity="relu"`` for "rnn", ``adapt="heterogeneous"`` for "gamma").
    """

    def __init__(self, architecture: str, input_size: int, hidden_size: int,
                 num_classes: int, *, init: float | None = None, **hyperparameters):
        super().__init__()
        if architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}")
        self.architecture = architecture
        if architecture in TORCH_RECURRENT:
            self.recurrent = TORCH_RECURRENT[architecture][0](
                input_size, hidden_size, batch_first=True, **hyperparameters)
        else:
            self.recurrent = ZOO[architecture](input_size, hidden_size, **hyperparameters)
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
        if self.architecture in TORCH_RECURRENT and not stepwise and drive is None:
            h, state = self.recurrent(x, state)
            return self.readout(h[:, -1]), state
        state = self.trajectory(x, state, drive=drive)[:, -1]
        return self.readout(state[..., : self.hidden_size]), state

    def trajectory(self, x: Tensor, state: Tensor | None = None, *,
                   drive: Tensor | None = None) -> Tensor:
        """The Cell's states after every step, (B, T, S), for inputs x (B, T, I).

        ``drive`` (B, T) or (B, T, N): an external current added to every neuron's
        pre-activation in the first layer, as optogenetic stimulation would (for the
        LSTM and GRU: to the candidate's pre-activation). Architectures: rnn, lstm,
        gru, gamma, aru.
        """
        if drive is None:
            return torch.stack(self._unroll(x, state), dim=1)
        x, (name, weight) = self._with_drive(x, drive)
        return torch.stack(self._unroll(x, state, lambda t: {name: weight}), dim=1)

    def _unroll(self, x: Tensor, state: Tensor | None = None,
                weights_at: Callable[[int], dict[str, Tensor]] | None = None) -> list[Tensor]:
        """The Cell's states after each step; ``weights_at(t)`` replaces Cell parameters
        (by name) at step t, through ``functional_call``."""
        cell = self.cell("full")
        state = cell.initial_state(x.shape[0]).to(x) if state is None else state
        step = _Step(cell)
        states = []
        for t in range(x.shape[1]):
            if weights_at is None:
                state = cell.step(state, x[:, t])
            else:
                weights = {f"cell.{name}": w for name, w in weights_at(t).items()}
                state = torch.func.functional_call(step, weights, (state, x[:, t]))
            states.append(state)
        return states

    def _drive_entry(self) -> tuple[str, str, int, int]:
        if self.architecture not in _DRIVE_ENTRY:
            raise ValueError(f"a drive or recurrent-weight gradient is implemented for "
                             f"{tuple(_DRIVE_ENTRY)}, not {self.architecture!r}")
        return _DRIVE_ENTRY[self.architecture]

    def _with_drive(self, x: Tensor, drive: Tensor) -> tuple[Tensor, tuple[str, Tensor]]:
        """Inputs with the drive appended as extra channels, and the input weight that
        routes those channels to the neurons' pre-activations."""
        name, _, block, blocks = self._drive_entry()
        N = self.hidden_size
        if drive.ndim == 2:
            drive = drive.unsqueeze(-1)
        if drive.shape[:2] != x.shape[:2] or drive.shape[-1] not in (1, N):
            raise ValueError(f"drive must be (B, T) = {tuple(x.shape[:2])} or (B, T, {N}), "
                             f"got {tuple(drive.shape)}")
        weight = self.cell("full").get_parameter(name)
        route = weight.new_zeros(blocks * N, drive.shape[-1])
        rows = route[block * N:(block + 1) * N]
        rows.copy_(torch.eye(N, dtype=rows.dtype) if drive.shape[-1] == N else
                   torch.ones(N, 1, dtype=rows.dtype))
        return torch.cat([x, drive.to(x)], dim=-1), (name, torch.cat([weight, route], dim=1))

    def gradient_profile(self, x: Tensor, y: Tensor) -> GradientProfile:
        """How much each step's use of the recurrent weights W_hh contributes to the
        gradient of the cross-entropy of (x, y), from one backward pass: every step
        gets its own zero offset of W_hh, whose gradient is that step's share."""
        _, name, _, _ = self._drive_entry()
        weight = self.cell("full").get_parameter(name)
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
        return self.recurrent.hidden_size

    def cell(self, state: cells.gated.StateConvention = "full") -> cells.Cell:
        """The recurrent part as a Cell sharing this model's weights."""
        if self.architecture in TORCH_RECURRENT:
            wrapper = TORCH_RECURRENT[self.architecture][1]
            return wrapper(self.recurrent, state=state) if self.architecture != "rnn" else \
                wrapper(self.recurrent)
        return self.recurrent


# ----------------------------------------------------------------------------- tasks

class CharTask:
    """Next-character prediction on a :class:`~lyaplib.data.Corpus` (cross-entropy, nats)."""

    def __init__(self, corpus: Corpus, seq_len: int = 100):
        self.corpus, self.seq_len = corpus, seq_len
        self.input_size = self.output_size = len(corpus.vocab)
        self.val_split = "val"

    def batches(self, split: str, batch_size: int, generator: torch.Generator | None = None,
                max_batches: int | None = None) -> Iterator[tuple[Tensor, Tensor]]:
        for x, y in self.corpus.batches(split, self.seq_len, batch_size, shuffle=split == "train",
                                        generator=generator, max_batches=max_batches):
            yield self.corpus.one_hot(x), y

    def loss(self, out: Tensor, target: Tensor) -> Tensor:
        return nn.functional.cross_entropy(out.flatten(0, 1), target.flatten())

    def make_model(self, config: RunConfig) -> LSTMPredictor:
        return LSTMPredictor(self.input_size, config.hidden_size, self.output_size,
                             dropout=config.dropout, init=config.init)

    def lyapunov_inputs(self, count: int = 10, length: int = 100) -> Tensor:
        """(count, length, V) one-hot windows of the validation split."""
        return self.corpus.one_hot(self.corpus.sequences("val", count, length))


class MocapTask:
    """Next-frame prediction on :class:`~lyaplib.data.MocapData` (mean squared error)."""

    def __init__(self, data: MocapData, seq_len: int = 25):
        self.data, self.seq_len = data, seq_len
        self.input_size = self.output_size = data.dims
        self.val_split = "test"
        self._windows = {s: data.windows(s, seq_len) for s in ("train", "test")}

    def batches(self, split: str, batch_size: int, generator: torch.Generator | None = None,
                max_batches: int | None = None) -> Iterator[tuple[Tensor, Tensor]]:
        w = self._windows[split]
        order = torch.randperm(len(w), generator=generator) if split == "train" else None
        w = w if order is None else w[order]
        if max_batches is not None:
            w = w[: max_batches * batch_size]
        for chunk in w.split(batch_size):
            yield chunk[:, :-1], chunk[:, 1:]

    def loss(self, out: Tensor, target: Tensor) -> Tensor:
        return nn.functional.mse_loss(out, target)

    def make_model(self, config: RunConfig) -> LSTMPredictor:
        return LSTMPredictor(self.input_size, config.hidden_size, self.output_size,
                             dropout=config.dropout, init=config.init)

    def lyapunov_inputs(self, count: int = 10, length: int = 100) -> Tensor:
        """(count, length, dims) windows of the test recordings."""
        return self.data.sequences("test", count, length)


class SequenceClassificationTask:
    """Classify images read as sequences (sequential / permuted MNIST), cross-entropy."""

    def __init__(self, images: MnistData, mode: str = "row", permutation: Tensor | None = None,
                 train_size: int | None = None, test_size: int | None = None,
                 pixels_per_step: int = 1):
        self.images, self.mode, self.permutation = images, mode, permutation
        self.pixels_per_step = pixels_per_step
        self.sizes = {"train": train_size, "val": test_size, "test": test_size}
        x, _ = self._split("test")
        self.input_size, self.output_size = x.shape[-1], 10
        self.val_split = "val"

    def _split(self, split: str) -> tuple[Tensor, Tensor]:
        x, y = self.images.split(split)
        n = self.sizes.get(split)
        x, y = (x, y) if n is None else (x[:n], y[:n])
        return as_sequences(x, self.mode, self.permutation, self.pixels_per_step), y

    def batches(self, split: str, batch_size: int, generator: torch.Generator | None = None,
                max_batches: int | None = None) -> Iterator[tuple[Tensor, Tensor]]:
        x, y = self._split(split)
        order = torch.randperm(len(x), generator=generator) if split == "train" else \
            torch.arange(len(x))
        if max_batches is not None:
            order = order[: max_batches * batch_size]
        for idx in order.split(batch_size):
            yield x[idx], y[idx]

    def loss(self, out: Tensor, target: Tensor) -> Tensor:
        return nn.functional.cross_entropy(out, target)

    def make_model(self, config: RunConfig) -> RecurrentClassifier:
        return RecurrentClassifier(config.architecture, self.input_size, config.hidden_size,
                                   self.output_size, init=config.init, **config.options)

    def lyapunov_inputs(self, count: int = 10, length: int = 112) -> Tensor:
        """(count, length, I): consecutive test images read one after another."""
        x, _ = self._split("test")
        per = math.ceil(length / x.shape[1])
        if count * per > len(x):
            raise ValueError(f"count x length needs {count * per} test images, have {len(x)}")
        return x[: count * per].reshape(count, per * x.shape[1], -1)[:, :length]

    @torch.no_grad()
    def accuracy(self, model: nn.Module, split: str = "test", batch_size: int = 500, *,
                 perturbation: Perturbation | None = None, seed: int = 0) -> float:
        """Fraction classified correctly; with ``perturbation`` (see
        :mod:`lyaplib.perturbations`) applied to every batch, reproducibly from ``seed``."""
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        generator = torch.Generator().manual_seed(seed)
        correct = total = 0
        for x, y in self.batches(split, batch_size):
            if perturbation is None:
                logits, _ = model(x.to(device))
            else:
                x, drive = perturbation(x, generator)
                logits, _ = model(x.to(device), drive=None if drive is None else drive.to(device))
            correct += int((logits.argmax(-1).cpu() == y).sum())
            total += len(y)
        model.train(was_training)
        return correct / total


Task = CharTask | MocapTask | SequenceClassificationTask


# ----------------------------------------------------------------------------- tracking

class LyapunovTracker:
    """Computes the spectrum of a model's LSTM on fixed held-out inputs at chosen epochs.

    It runs under ``torch.no_grad`` on the live weights (or a cast copy when
    ``dtype`` differs) inside ``torch.random.fork_rng``, so training continues
    exactly as it would have without it. Epoch 0 is the untrained network.

    Args:
        inputs: (B, T, I) held-out inputs (the paper: 10 sequences x 100 steps).
        epochs: the epochs to measure at; None for every epoch (and epoch 0).
        state: "hidden" (the paper's N exponents) or "full" (the (h, c) system, 2N).
        k, warmup: passed to :func:`~lyaplib.lyapunov_spectrum`.
        dtype: float64 by default: trained networks saturate some units, and in
            float32 a saturated unit's derivative underflows to exactly 0, which
            makes the Jacobian exactly singular (an exponent of -inf).
    """

    def __init__(self, inputs: Tensor, epochs: Sequence[int] | None = None, *,
                 state: cells.gated.StateConvention = "hidden", k: int | None = None,
                 warmup: int = 0, dtype: torch.dtype = torch.float64):
        if inputs.ndim != 3:
            raise ValueError(f"inputs must be (B, T, I), got shape {tuple(inputs.shape)}")
        self.inputs, self.state, self.k, self.warmup, self.dtype = inputs, state, k, warmup, dtype
        self.epochs = None if epochs is None else set(epochs)

    def wants(self, epoch: int) -> bool:
        return self.epochs is None or epoch in self.epochs

    def __call__(self, model: LSTMPredictor) -> LyapunovResult:
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()  # the deterministic map (e.g. NoisyRNN without its training noise)
        try:
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                return lyapunov_spectrum(model.cell(self.state), self.inputs.to(device),
                                         k=self.k, warmup=self.warmup, dtype=self.dtype)
        finally:
            model.train(was_training)


# ----------------------------------------------------------------------------- training

@dataclass
class History:
    """What ``train`` measured; ``spectra[e]`` is the spectrum after epoch e (0: at init)."""

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)       # after epochs 1, 2, ...
    epoch_seconds: list[float] = field(default_factory=list)  # training only, no validation/LE
    iterations: list[int] = field(default_factory=list)       # optimizer steps per epoch
    spectra: dict[int, list[float]] = field(default_factory=dict)
    le_seconds: list[float] = field(default_factory=list)

    @property
    def epochs(self) -> int:
        return len(self.val_loss)

    @property
    def best_epoch(self) -> int:
        """1-based epoch of the lowest validation loss."""
        return min(range(self.epochs), key=self.val_loss.__getitem__) + 1

    def spectrum(self, epoch: int) -> Tensor:
        return torch.tensor(self.spectra[epoch], dtype=torch.float64)


@dataclass(frozen=True)
class RunConfig:
    """One training run. ``max_batches`` caps an epoch (small presets); None = all data.
    ``options``: keyword arguments for the model's recurrent module (e.g.
    ``{"nonlinearity": "relu"}``); JSON values only."""

    hidden_size: int = 128
    architecture: str = "lstm"
    dropout: float = 0.1
    lr: float = 2e-3
    init: float = 0.08
    epochs: int = 15
    batch_size: int = 128
    max_batches: int | None = None
    val_batches: int | None = None
    clip: float | None = 5.0
    seed: int = 0
    options: dict = field(default_factory=dict, hash=False)

    def __post_init__(self):
        for name in ("hidden_size", "epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")

    @property
    def run_id(self) -> str:
        """A stable id for the configuration (used to skip runs already done)."""
        fields = asdict(self)
        if not fields["options"]:  # ids from before ``options`` existed stay valid
            del fields["options"]
        canonical = json.dumps(fields, sort_keys=True)
        return hashlib.sha1(canonical.encode()).hexdigest()[:12]

    def model(self, task: Task) -> nn.Module:
        """The task's model for this configuration, initialised from ``seed``."""
        with torch.random.fork_rng():
            torch.manual_seed(self.seed)
            return task.make_model(self)


@torch.no_grad()
def evaluate(model: LSTMPredictor, task: Task, split: str, batch_size: int = 128,
             max_batches: int | None = None) -> float:
    """Mean loss over ``split`` (weighted by batch size), dropout off."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for x, y in task.batches(split, batch_size, max_batches=max_batches):
        out, _ = model(x.to(device))
        total += task.loss(out, y.to(device)).item() * len(x)
        count += len(x)
    model.train(was_training)
    return total / count


def train(model: LSTMPredictor, task: Task, config: RunConfig, *,
          tracker: LyapunovTracker | None = None, checkpoint: str | os.PathLike | None = None,
          progress: bool = True) -> History:
    """Train with Adam for ``config.epochs`` epochs; return the :class:`History`.

    With ``checkpoint``, the model, optimizer, history and random state are
    saved (atomically) after every epoch, and a later call with the same path
    continues where it stopped, giving the same result as an uninterrupted run.
    Global random state is left as it was (training runs in ``fork_rng``).
    """
    device = next(model.parameters()).device
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    history, start = History(), 0
    path = None if checkpoint is None else Path(checkpoint)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(config.seed)
        if path is not None and path.is_file():
            start, history = _load_checkpoint(path, model, optimizer)
        if start == 0 and tracker is not None and tracker.wants(0):
            _track(tracker, model, history, 0)
        bar = tqdm(range(start + 1, config.epochs + 1), desc="epochs", disable=not progress,
                   initial=start, total=config.epochs, leave=False)
        for epoch in bar:
            model.train()
            generator = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
            began, losses = time.perf_counter(), []
            for x, y in task.batches("train", config.batch_size, generator, config.max_batches):
                losses.append(_train_step(model, task, optimizer, x, y, config.clip))
            train_loss = torch.stack(losses).mean().item()  # one sync per epoch
            history.epoch_seconds.append(time.perf_counter() - began)
            history.iterations.append(len(losses))
            history.train_loss.append(train_loss)
            history.val_loss.append(evaluate(model, task, task.val_split, config.batch_size,
                                             config.val_batches))
            if not math.isfinite(history.val_loss[-1]):
                raise FloatingPointError(f"validation loss is {history.val_loss[-1]} after "
                                         f"epoch {epoch} (lr={config.lr} too large?)")
            if tracker is not None and tracker.wants(epoch):
                _track(tracker, model, history, epoch)
            bar.set_postfix(val=f"{history.val_loss[-1]:.3f}")
            if path is not None:
                _save_checkpoint(path, model, optimizer, history, epoch)
    return history


def _train_step(model: LSTMPredictor, task: Task, optimizer: torch.optim.Optimizer,
                x: Tensor, y: Tensor, clip: float | None) -> Tensor:
    """One optimizer step on the batch (x, y); the loss, detached (no host sync)."""
    device = next(model.parameters()).device
    optimizer.zero_grad(set_to_none=True)
    out, _ = model(x.to(device))
    loss = task.loss(out, y.to(device))
    loss.backward()
    if clip is not None:
        nn.utils.clip_grad_norm_(model.parameters(), clip)
    optimizer.step()
    return loss.detach()


def _track(tracker: LyapunovTracker, model: LSTMPredictor, history: History, epoch: int):
    if next(model.parameters()).is_cuda:
        torch.cuda.synchronize()
    began = time.perf_counter()
    result = tracker(model)
    exponents = result.exponents.tolist()  # the host copy ends the timed region
    history.le_seconds.append(time.perf_counter() - began)
    history.spectra[epoch] = exponents


def _save_checkpoint(path: Path, model, optimizer, history: History, epoch: int) -> None:
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch,
             "history": asdict(history), "rng": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    atomic_write(path, lambda f: torch.save(state, f))


def _load_checkpoint(path: Path, model, optimizer) -> tuple[int, History]:
    state = torch.load(path, map_location=next(model.parameters()).device, weights_only=True)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["rng"].cpu())
    if "cuda_rng" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda_rng"]])
    return state["epoch"], History(**state["history"])


# ----------------------------------------------------------------------------- sweeps

def train_and_measure(task: Task, config: RunConfig, *, le_epochs: Sequence[int] | None = None,
                      le_count: int = 10, le_length: int = 100,
                      states: Sequence[str] = ("hidden",), checkpoint=None,
                      progress: bool = False, device: torch.device | None = None) -> dict:
    """Train one configuration and return its result row (JSON-ready).

    The spectrum (``state="hidden"``) is tracked at ``le_epochs`` (default: 0
    and the last); the final network's spectrum is also computed for every
    convention in ``states``. Row fields: the config, ``run_id``, ``val_loss``
    per epoch, ``best_val_loss``, ``best_epoch``, ``spectra`` {epoch: list},
    ``final_<state>`` spectra, ``epoch_seconds``, ``iterations``, ``le_seconds``.
    """
    epochs = [0, config.epochs] if le_epochs is None else list(le_epochs)
    model = config.model(task).to(device or torch.device("cpu"))
    inputs = task.lyapunov_inputs(le_count, le_length)
    history = train(model, task, config, tracker=LyapunovTracker(inputs, epochs),
                    checkpoint=checkpoint, progress=progress)
    row = {**asdict(config), "run_id": config.run_id, "val_loss": history.val_loss,
           "train_loss": history.train_loss, "best_val_loss": min(history.val_loss),
           "best_epoch": history.best_epoch,
           "spectra": {str(e): s for e, s in history.spectra.items()},
           "epoch_seconds": history.epoch_seconds, "iterations": history.iterations,
           "le_seconds": history.le_seconds}
    for state in states:
        row[f"final_{state}"] = LyapunovTracker(inputs, state=state)(model).exponents.tolist()
    return row


@dataclass(frozen=True)
class SpectrumCost:
    """One spectrum's cost next to training, timed side by side on this machine.

    ``spectrum_seconds`` and ``iteration_seconds`` are medians over the repeats;
    ``in_iterations`` is the median over repeats of their ratio (spectrum / iteration).
    """

    spectrum_seconds: float
    iteration_seconds: float
    in_iterations: float


def spectrum_cost(task: Task, config: RunConfig, *, repeats: int = 7, iterations: int = 10,
                  le_count: int = 10, le_length: int = 100,
                  state: cells.gated.StateConvention = "hidden",
                  device: torch.device | None = None) -> SpectrumCost:
    """Time one tracked spectrum against training iterations of ``config``'s model.

    Each repeat times one spectrum (``le_count`` sequences of ``le_length`` steps, as
    :func:`train_and_measure` tracks it) and then ``iterations`` optimizer steps, back to
    back, after one untimed warm-up repeat. A ratio of two timings taken side by side
    survives a machine whose load changes slowly, and the median over repeats one that is
    busy for a moment. Nothing here is cached: a timing belongs to the machine it ran on.
    """
    if repeats < 1 or iterations < 1:
        raise ValueError(f"repeats and iterations must be >= 1, got {repeats}, {iterations}")
    device = device or torch.device("cpu")
    model = config.model(task).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    tracker = LyapunovTracker(task.lyapunov_inputs(le_count, le_length), state=state)
    batches = list(task.batches("train", config.batch_size, torch.Generator().manual_seed(0),
                                iterations))  # a small data set's batches are used again

    def train_block():
        for x, y in itertools.islice(itertools.cycle(batches), iterations):
            _train_step(model, task, optimizer, x, y, config.clip)

    timings = []
    for _ in range(repeats + 1):  # the first repeat warms up allocators and caches
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            le_seconds = timed_call(lambda: tracker(model), device)[0]
            train_seconds = timed_call(train_block, device)[0] / iterations
        timings.append((le_seconds, train_seconds))
    le, it = np.array(timings[1:]).T
    return SpectrumCost(float(np.median(le)), float(np.median(it)), float(np.median(le / it)))


# ----------------------------------------------------------------------------- FORCE learning

def four_sines(steps: int, dt: float = 0.1, generator: torch.Generator | None = None,
               dtype: torch.dtype | None = None) -> Tensor:
    """The AeLLE target: f(t) = sum_k sin(f_k pi t / 60) / s_k, t = n dt, (steps,).

    Four terms with random integers s_k in 1..10 and f_k in 1..5.
    """
    s = torch.randint(1, 11, (4,), generator=generator)
    f = torch.randint(1, 6, (4,), generator=generator)
    t = torch.arange(steps, dtype=dtype or torch.get_default_dtype()) * dt
    return (torch.sin(f[:, None] * math.pi * t / 60) / s[:, None]).sum(0)


@dataclass
class ForceResult:
    """Errors are mean |f - z|; ``z_test``/``target_test`` the free run after training."""

    train_error: float
    test_error: float
    z_test: Tensor
    target_test: Tensor
    state: Tensor


@torch.no_grad()
def train_force(net: cells.ForceRNN, target: Tensor, train_steps: int, *, every: int = 2,
                alpha: float = 1.0, washout: int = 0, x0: Tensor | None = None, seed: int = 0,
                progress: bool = False) -> ForceResult:
    """Learn ``net.w_o`` by recursive least squares (FORCE), then run freely.

    Steps 0..``train_steps`` of ``target`` (T,) are learned: every ``every`` steps
    the error e = z - f updates P (P_0 = I / alpha) and w_o <- w_o - e P r.
    The rest of ``target`` is the test: the network runs on its own output,
    and ``test_error`` = mean |f - z| there. ``x0`` (N,): the initial state
    (default 0.5 N(0, 1) drawn from ``seed``).
    """
    if target.ndim != 1 or not 0 < train_steps < len(target):
        raise ValueError(f"target must be (T,) with 0 < train_steps < T, got "
                         f"{tuple(target.shape)} and train_steps={train_steps}")
    N, dtype = net.hidden_size, net.M.dtype
    target = target.to(dtype=dtype, device=net.M.device)
    P = torch.eye(N, dtype=dtype, device=target.device) / alpha
    if x0 is None:
        x0 = 0.5 * torch.randn(N, generator=torch.Generator().manual_seed(seed), dtype=dtype)
    x = x0.reshape(1, N).to(target)
    z_all = torch.empty_like(target)
    for n in tqdm(range(len(target)), desc="FORCE", disable=not progress, leave=False):
        x = net.step(x, None)
        r = torch.tanh(x[0])
        z_all[n] = r @ net.w_o
        if washout <= n < train_steps and n % every == 0:
            Pr = P @ r
            k = Pr / (1 + r @ Pr)
            P -= torch.outer(k, Pr)
            net.w_o -= (z_all[n] - target[n]) * k
    err = (z_all - target).abs()
    return ForceResult(train_error=float(err[washout:train_steps].mean()),
                       test_error=float(err[train_steps:].mean()),
                       z_test=z_all[train_steps:].cpu(), target_test=target[train_steps:].cpu(),
                       state=x)
