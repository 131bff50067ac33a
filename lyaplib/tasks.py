"""The tasks of the book's experiments: what to learn, from which data, with which loss.

A task (``CharTask`` for War and Peace, ``MocapTask`` for CMU Mocap,
``SequenceClassificationTask`` for sequential MNIST, ``DelayedBitsTask`` for the delayed
copy and XOR of gradient flossing) satisfies the :class:`Task`
protocol: it yields batches, computes its loss, builds the model for a
:class:`~lyaplib.training.RunConfig` and supplies the held-out inputs that drive the
spectrum. :mod:`lyaplib.training` trains on any of them.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from .data import Corpus, MnistData, MocapData, as_sequences
from .models import LSTMPredictor, RecurrentClassifier, RecurrentTagger
from .perturbations import Perturbation

if TYPE_CHECKING:
    from .training import RunConfig


@runtime_checkable
class Task(Protocol):
    """What :func:`~lyaplib.training.train` needs from a task."""

    input_size: int
    output_size: int
    val_split: str  # the split that validation (and early stopping) reads

    def batches(self, split: str, batch_size: int, generator: torch.Generator | None = None,
                max_batches: int | None = None) -> Iterator[tuple[Tensor, Tensor]]:
        """(inputs, targets) batches of ``split``, shuffled by ``generator`` for "train"."""
        ...

    def loss(self, out: Tensor, target: Tensor) -> Tensor:
        """The scalar loss of the model's outputs against the targets."""
        ...

    def make_model(self, config: RunConfig) -> nn.Module:
        """A new model for ``config`` (the caller seeds the initialisation)."""
        ...

    def lyapunov_inputs(self, count: int = 10, length: int = 100) -> Tensor:
        """(count, length, input_size) held-out inputs that drive the spectrum."""
        ...

    # Optional, for tasks with right and wrong answers (SequenceClassificationTask,
    # DelayedBitsTask): ``accuracy(model, split="test") -> float``, the fraction of
    # ``model``'s answers on ``split`` that are right. One name, one signature: the
    # training functions call it for every task that has it.


def _lstm_predictor(task, config: RunConfig) -> LSTMPredictor:
    owner = type(task).__name__
    if config.architecture != "lstm":
        raise ValueError(f"config.architecture: {owner} trains an LSTMPredictor, so it "
                         f"must be 'lstm', got {config.architecture!r}")
    if config.options:
        raise ValueError(f"config.options: {owner}'s LSTMPredictor takes no options, got "
                         f"{config.options}")
    if config.init is None:
        raise ValueError(f"config.init: {owner}'s LSTMPredictor starts every weight on "
                         "U(-init, init), so init must be a number > 0, got None")
    return LSTMPredictor(task.input_size, config.hidden_size, task.output_size,
                         dropout=config.dropout, init=config.init)


def _recurrent_model(task, config: RunConfig, kind: type[RecurrentClassifier]):
    """The task's RecurrentClassifier (or Tagger), refusing what it cannot honour."""
    if config.dropout:
        raise ValueError(f"config.dropout: {type(task).__name__}'s {kind.__name__} has no "
                         f"dropout; pass dropout=0.0, got {config.dropout}")
    return kind(config.architecture, task.input_size, config.hidden_size, task.output_size,
                init=config.init, **config.options)


class CharTask(Task):
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
        """An :class:`~lyaplib.models.LSTMPredictor` (``config.architecture`` "lstm")."""
        return _lstm_predictor(self, config)

    def lyapunov_inputs(self, count: int = 10, length: int = 100) -> Tensor:
        """(count, length, V) one-hot windows of the validation split."""
        return self.corpus.one_hot(self.corpus.sequences("val", count, length))


class MocapTask(Task):
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
        """An :class:`~lyaplib.models.LSTMPredictor` (``config.architecture`` "lstm")."""
        return _lstm_predictor(self, config)

    def lyapunov_inputs(self, count: int = 10, length: int = 100) -> Tensor:
        """(count, length, dims) windows of the test recordings."""
        return self.data.sequences("test", count, length)


class SequenceClassificationTask(Task):
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
        """A :class:`~lyaplib.models.RecurrentClassifier` of ``config.architecture``."""
        return _recurrent_model(self, config, RecurrentClassifier)

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


class DelayedBitsTask(Task):
    """Delayed copy or XOR of random bits, a target at every step (Engelken 2023).

    Inputs are Bernoulli(1/2) bits s_t; the target is y_t = s_{t-d} ("copy") or
    y_t = s_{t-d} XOR s_{t-2d} ("xor"). Steps before the first defined target (t < d, or
    t < 2d) are not scored: their targets are -1. Loss: binary cross-entropy of the logits
    (B, T, 1) on the scored steps. There is no data set: every batch is fresh, drawn from
    ``generator``, and "train", "val" and "test" differ only in the generator.

    Args:
        kind: "copy" or "xor".  delay: d >= 1.  length: T, the steps per sequence
            (T > d for copy, T > 2d for XOR).  scale: the input bits are 0 or ``scale``.
    """

    KINDS = ("copy", "xor")

    def __init__(self, kind: str = "xor", delay: int = 10, length: int = 300, *,
                 scale: float = 1.0):
        if kind not in self.KINDS:
            raise ValueError(f"kind must be one of {self.KINDS}, got {kind!r}")
        if isinstance(delay, bool) or not isinstance(delay, int) or delay < 1:
            raise ValueError(f"delay must be an int >= 1, got {delay!r}")
        self.kind, self.delay, self.length, self.scale = kind, delay, length, float(scale)
        self.first_scored = delay * (2 if kind == "xor" else 1)
        if not isinstance(length, int) or length <= self.first_scored:
            raise ValueError(f"length must be an int > {self.first_scored} for {kind} with "
                             f"delay {delay} (the first scored step), got {length!r}")
        self.input_size = self.output_size = 1
        self.val_split = "val"

    def sample(self, batch: int, generator: torch.Generator | None = None
               ) -> tuple[Tensor, Tensor]:
        """(inputs (B, T, 1), targets (B, T) in {0, 1}, -1 where not scored)."""
        bits = torch.randint(0, 2, (batch, self.length), generator=generator)
        return self.inputs(bits), self.targets(bits)

    def inputs(self, bits: Tensor) -> Tensor:
        """The network's inputs (B, T, 1) for bits (B, T) of 0 and 1."""
        return self.scale * bits.unsqueeze(-1).float()

    def targets(self, bits: Tensor) -> Tensor:
        """The targets (B, T) for bits (B, T): -1 before the first scored step."""
        d = self.delay
        target = torch.full(bits.shape, -1.0, device=bits.device)
        if self.kind == "copy":
            target[:, d:] = bits[:, :-d]
        else:
            target[:, 2 * d:] = (bits[:, d:-d] ^ bits[:, : -2 * d]).float()
        return target

    def batches(self, split: str, batch_size: int, generator: torch.Generator | None = None,
                max_batches: int | None = None) -> Iterator[tuple[Tensor, Tensor]]:
        """``max_batches`` fresh batches (one if None)."""
        for _ in range(1 if max_batches is None else max_batches):
            yield self.sample(batch_size, generator)

    def loss(self, out: Tensor, target: Tensor) -> Tensor:
        """Mean binary cross-entropy (nats) of logits (B, T, 1) over the scored steps."""
        scored = target >= 0
        per_step = nn.functional.binary_cross_entropy_with_logits(
            out.squeeze(-1), target.clamp(min=0).to(out.dtype), reduction="none")
        return (per_step * scored).sum() / scored.sum()

    @staticmethod
    def correct_fraction(out: Tensor, target: Tensor) -> Tensor:
        """Fraction of scored steps whose logit has the target's sign, over the last two
        axes: logits (..., B, T, 1), targets (..., B, T) -> (...)."""
        scored = target >= 0
        right = ((out.squeeze(-1) > 0) == (target > 0.5)) & scored
        return right.flatten(-2).sum(-1) / scored.flatten(-2).sum(-1)

    @torch.no_grad()
    def accuracy(self, model: nn.Module, split: str = "test", batch_size: int = 500, *,
                 seed: int = 0) -> float:
        """Fraction of scored steps ``model`` gets right on ``batch_size`` fresh sequences,
        drawn reproducibly from ``seed`` and the split (the Task protocol's accuracy)."""
        if isinstance(model, Tensor):  # the old accuracy(out, target), one release
            warnings.warn("DelayedBitsTask.accuracy(out, target) is deprecated: it is now "
                          "accuracy(model, split); use correct_fraction(out, target)",
                          DeprecationWarning, stacklevel=2)
            return self.correct_fraction(model, split)
        if split not in ("train", "val", "test"):
            raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
        offset = ("train", "val", "test").index(split)
        generator = torch.Generator().manual_seed(3 * seed + offset)
        x, y = self.sample(batch_size, generator)
        was_training = model.training
        model.eval()
        try:
            out, _ = model(x.to(next(model.parameters())))
        finally:
            model.train(was_training)
        return float(self.correct_fraction(out, y.to(out.device)))

    def make_model(self, config: RunConfig) -> RecurrentTagger:
        """A :class:`~lyaplib.models.RecurrentTagger` (one logit per step)."""
        return _recurrent_model(self, config, RecurrentTagger)

    def lyapunov_inputs(self, count: int = 10, length: int = 100) -> Tensor:
        """(count, length, 1) random bits (from a fixed seed)."""
        bits = torch.randint(0, 2, (count, length, 1), generator=torch.Generator().manual_seed(0))
        return self.scale * bits.float()
