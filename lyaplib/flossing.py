"""Gradient flossing (Engelken 2023): push Lyapunov exponents towards a target during training.

Gradients through T steps of a recurrent network are products of T Jacobians, which grow or
shrink like exp(T lambda_i): exponents far from 0 make them explode or vanish. Flossing
minimises ``mean((lambda_i - target)^2)`` over the k largest exponents, estimated on a short
trajectory by the differentiable QR algorithm (``lyapunov_spectrum(differentiable=True)``),
with respect to the recurrent part of the network only (the read-out is left untouched).

One network (any :class:`~lyaplib.models.RecurrentClassifier`, e.g. a
:class:`~lyaplib.models.RecurrentTagger`) or a vmapped
:class:`~lyaplib.population.Population` of them::

    flosser = Flosser(model, k=16)
    flosser.run(task, steps=500)                 # flossing before training
    history = train_flossed(model, task, iterations=1000, schedule=FlossingSchedule(k=16))
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ._arguments import int_at_least, real
from .population import Population
from .spectrum import lyapunov_spectrum
from .tasks import DelayedBitsTask, Task


def _settings(k, target, length, warmup, lr) -> tuple[int, float, int, int, float]:
    """A flosser's settings, checked: each bad one named."""
    k = int_at_least(k, 1, "k", error=ValueError)
    target = real(target, "target")  # a NaN target would write NaN into the weights
    length = int_at_least(length, 2, "length", error=ValueError)
    warmup = int_at_least(warmup, 0, "warmup", error=ValueError)
    if not warmup < length:
        raise ValueError(f"warmup must be in [0, length = {length}), got {warmup}")
    return k, target, length, warmup, real(lr, "lr", above=0)


def flossing_loss(exponents: Tensor, target: float | Tensor = 0.0) -> Tensor:
    """mean over the last axis of (lambda_i - target)^2: (..., k) -> (...)."""
    return (exponents - target).pow(2).mean(-1)


class Flosser:
    """Flosses one network or a population: its own Adam over the recurrent parameters.

    Args:
        model: a model with ``.recurrent`` (the flossed parameters) and ``.cell(jacobian)``,
            or a :class:`~lyaplib.population.Population` of such models (each network
            flossed on its own loss).
        k: how many of the largest exponents to push (1 <= k <= D).
        target: the exponents' target (0: neither exploding nor vanishing).
        length: steps of the trajectory that estimates the exponents, warm-up included.
        warmup: its first steps, which move the state and basis without counting (and
            without gradients).
        lr: Adam's learning rate.  batch: trajectories averaged per estimate.
        jacobian: "full" or "hidden", for architectures with a cell state (LSTM).
        only: for a population, a (P,) boolean mask of the networks to floss (default
            all). The others get zero gradients, which leave them exactly unchanged
            (their Adam moments stay 0), so that flossed and unflossed networks can
            train side by side in one population.
    """

    def __init__(self, model: nn.Module | Population, k: int, *, target: float = 0.0,
                 length: int = 55, warmup: int = 16, lr: float = 1e-3, batch: int = 1,
                 jacobian: str = "full", only: Sequence[bool] | Tensor | None = None):
        if not isinstance(model, (nn.Module, Population)):
            raise ValueError(f"model must be a module or a Population, got "
                             f"{type(model).__name__}")
        k, target, length, warmup, lr = _settings(k, target, length, warmup, lr)
        batch = int_at_least(batch, 1, "batch", error=ValueError)
        if not isinstance(jacobian, str):
            raise ValueError(f"jacobian must be a convention's name, got {jacobian!r}")
        self.only = None
        if only is not None:
            P = model.P if isinstance(model, Population) else None
            self.only = torch.as_tensor(only, dtype=torch.bool)
            if P is None or self.only.shape != (P,):
                raise ValueError(f"only must be a (P,) mask for a population of P networks, "
                                 f"got shape {tuple(self.only.shape)} for "
                                 f"{'a single network' if P is None else f'P = {P}'}")
        self.model, self.k, self.target = model, k, float(target)
        self.length, self.warmup, self.batch, self.jacobian = length, warmup, batch, jacobian
        if isinstance(model, Population):
            self.parameters = [p for n, p in model.stacked().items() if n.startswith("recurrent.")]
        else:
            self.parameters = list(model.recurrent.parameters())
        if not self.parameters:
            raise ValueError("model has no recurrent parameters to floss (model.recurrent)")
        # Adam is elementwise, so one Adam over the stacked (P, ...) tensors is P Adams
        self.optimizer = torch.optim.Adam(self.parameters, lr=lr)

    def exponents(self, inputs: Tensor) -> Tensor:
        """The k largest exponents, differentiable: (k,) for one network, (P, k) for a
        population; ``inputs`` (B, length, I) drive every network."""
        def make_cell(model):
            return model.cell(self.jacobian)

        if isinstance(self.model, Population):
            return self.model.spectra(make_cell, inputs, k=self.k, warmup=self.warmup,
                                      differentiable=True)[0]
        return lyapunov_spectrum(make_cell(self.model), inputs, k=self.k, warmup=self.warmup,
                                 differentiable=True).exponents

    def step(self, inputs: Tensor) -> Tensor:
        """One Adam step on the flossing loss; returns the loss before it, () or (P,)."""
        losses = flossing_loss(self.exponents(inputs), self.target)
        total = losses if self.only is None else losses * self.only.to(losses.device)
        self.optimizer.zero_grad(set_to_none=True)
        grads = torch.autograd.grad(total.sum(), self.parameters)  # per network: sum
        for p, g in zip(self.parameters, grads, strict=True):
            p.grad = g
        self.optimizer.step()
        return losses.detach()

    def run(self, task: Task, steps: int, *, generator: torch.Generator | None = None,
            progress: bool = False) -> Tensor:
        """``steps`` flossing steps, each on fresh inputs of ``task``; returns the losses
        (steps,) or (steps, P)."""
        losses = []
        steps = int_at_least(steps, 1, "steps", error=ValueError)
        for _ in tqdm(range(steps), desc="flossing", disable=not progress):
            (x, _), = task.batches("train", self.batch, generator)
            if x.shape[1] < self.length:
                raise ValueError(f"task sequences have {x.shape[1]} steps; flossing needs "
                                 f"length = {self.length}")
            losses.append(self.step(x[:, : self.length].to(self.parameters[0])))
        return torch.stack(losses)


@dataclass(frozen=True)
class FlossingSchedule:
    """When to floss, and how (Engelken's defaults: 500 steps before training, 500 more at
    training iterations 100 and 200, k = 75 of N = 80, estimated on 55 steps after a
    16-step warm-up). ``at``: the training iterations (one batch each; Engelken's code
    calls them epochs) before which ``steps`` more flossing steps run."""

    k: int
    before: int = 500
    at: tuple[int, ...] = (100, 200)
    steps: int = 500
    length: int = 55
    warmup: int = 16
    lr: float = 1e-3
    target: float = 0.0
    jacobian: str = "full"

    def __post_init__(self):
        for name, low in (("k", 1), ("before", 0), ("steps", 1)):
            int_at_least(getattr(self, name), low, name, error=ValueError)
        if not isinstance(self.at, (tuple, list)):
            raise ValueError(f"at must be a tuple of training iterations, got {self.at!r}")
        for i in self.at:
            int_at_least(i, 1, "at's iterations", error=ValueError)
        object.__setattr__(self, "at", tuple(int(i) for i in self.at))
        _settings(self.k, self.target, self.length, self.warmup, self.lr)

    def flosser(self, model: nn.Module | Population,
                only: Sequence[bool] | Tensor | None = None) -> Flosser:
        """A :class:`Flosser` of ``model`` with these settings (``only``: see there)."""
        return Flosser(model, self.k, target=self.target, length=self.length,
                       warmup=self.warmup, lr=self.lr, jacobian=self.jacobian, only=only)


@dataclass
class FlossingHistory:
    """What :func:`train_flossed` recorded; (…, P) columns for a population.

    ``loss``: (iterations, P) training loss of each iteration (one batch);  ``accuracy``:
    (n, P) test accuracy after the iterations ``accuracy_iterations``;  ``flossing``: the
    flossing losses of each phase, by the iteration it preceded;  ``seconds_training``
    and ``seconds_flossing``: host wall time of each part (on a GPU, queued work is
    counted where the host waits for it).
    """

    loss: Tensor
    accuracy: Tensor
    accuracy_iterations: list[int]
    flossing: dict[int, Tensor] = field(default_factory=dict)
    seconds_training: float = 0.0
    seconds_flossing: float = 0.0

    @property
    def final_accuracy(self) -> Tensor:
        """(P,) the last recorded test accuracy."""
        return self.accuracy[-1]

    @property
    def accuracy_epochs(self) -> list[int]:
        """Deprecated name of ``accuracy_iterations`` (they were never epochs)."""
        warnings.warn("FlossingHistory.accuracy_epochs is deprecated: use "
                      "accuracy_iterations", DeprecationWarning, stacklevel=2)
        return self.accuracy_iterations


def train_flossed(model: nn.Module | Population,
                  tasks: DelayedBitsTask | Sequence[DelayedBitsTask], *,
                  iterations: int | None = None, schedule: FlossingSchedule | None = None,
                  flossed: Sequence[bool] | Tensor | None = None, batch_size: int = 16,
                  lr: float = 1e-3, clip: float | None = 0.03,
                  eval_every: int = 50, eval_batch: int = 128,
                  generator: torch.Generator | None = None, progress: bool = False,
                  epochs: int | None = None) -> FlossingHistory:
    """Train on a delayed-bits task with Adam for ``iterations`` iterations, flossing on
    ``schedule`` (None: never).

    Each iteration is one batch of fresh sequences (Engelken's code calls them epochs;
    ``epochs=`` is the deprecated name of ``iterations``). The training batches, the
    flossing inputs and the test sets come from three generators seeded from
    ``generator``, so that a run with flossing and one without see the same training and
    test data (a paired comparison). Every network of a population sees the same input
    bits, each with the targets of its own task. ``flossed``: for a population, which
    networks the schedule flosses (default all), so that networks with and without
    flossing train side by side. ``model`` is one network (``tasks`` one task), trained
    with Adam at ``lr`` and gradients clipped to norm ``clip`` (None: no clipping); or a
    :class:`~lyaplib.population.Population` (``tasks`` one per network, so that networks
    of different delays train side by side), which trains with its own learning rates
    and clipping, so an ``lr`` or ``clip`` other than the defaults is refused there.
    Test accuracy (fresh sequences, scored steps only) is recorded every ``eval_every``
    iterations and after the last.
    """
    iterations = _iterations(iterations, epochs)
    population = isinstance(model, Population)
    if population and (lr != 1e-3 or clip != 0.03):
        raise ValueError(f"lr, clip: a Population trains with its own learning rates and "
                         f"clipping (Population(models, lrs, clip=...)); got lr={lr}, "
                         f"clip={clip}")
    lr = real(lr, "lr", above=0)
    clip = real(clip, "clip", above=0, optional=True)
    batch_size = int_at_least(batch_size, 1, "batch_size", error=ValueError)
    eval_every = int_at_least(eval_every, 1, "eval_every", error=ValueError)
    eval_batch = int_at_least(eval_batch, 1, "eval_batch", error=ValueError)
    tasks = list(tasks) if isinstance(tasks, Sequence) else [tasks]
    P = model.P if population else 1
    if len(tasks) != P:
        raise ValueError(f"tasks: need one task per network ({P}), got {len(tasks)}")
    if not all(isinstance(t, DelayedBitsTask) for t in tasks):
        raise ValueError("tasks must be DelayedBitsTask objects (one per network)")
    if len({(t.length, t.scale) for t in tasks}) != 1:
        raise ValueError("tasks must share one sequence length and input scale (networks "
                         "run side by side on the same inputs)")
    parameters = list(model.parameters())
    optimizer = None if population else torch.optim.Adam(parameters, lr=lr)
    flosser = schedule.flosser(model, flossed) if schedule else None
    history = FlossingHistory(loss=torch.zeros(iterations, P), accuracy=torch.zeros(0, P),
                              accuracy_iterations=[])
    seeds = torch.randint(2**62, (3,), generator=generator).tolist()
    data, floss_data, test_data = (torch.Generator().manual_seed(s) for s in seeds)
    losses, accuracies = [], []  # kept on the device: no host sync per iteration

    def floss(iteration: int, steps: int) -> None:
        start = time.perf_counter()
        history.flossing[iteration] = flosser.run(tasks[0], steps, generator=floss_data)
        history.seconds_flossing += time.perf_counter() - start

    for iteration in tqdm(range(iterations), desc="training", disable=not progress):
        if flosser is not None and schedule.before and iteration == 0:
            floss(iteration, schedule.before)
        elif flosser is not None and iteration in schedule.at:
            floss(iteration, schedule.steps)
        start = time.perf_counter()
        x, y = _draw(tasks, batch_size, data, parameters[0])
        if population:
            losses.append(model.train_step(tasks[0].loss, x, y, per_network=True))
        else:
            out, _ = model(x[0])
            loss = tasks[0].loss(out, y[0])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if clip is not None:
                nn.utils.clip_grad_norm_(parameters, clip)
            optimizer.step()
            losses.append(loss.detach().view(1))
        history.seconds_training += time.perf_counter() - start
        if (iteration + 1) % eval_every == 0 or iteration + 1 == iterations:
            accuracies.append(fresh_accuracy(model, tasks, eval_batch, test_data))
            history.accuracy_iterations.append(iteration + 1)
    history.loss = torch.stack(losses).cpu()
    history.accuracy = torch.stack(accuracies)
    return history


def _iterations(iterations: int | None, epochs: int | None) -> int:
    """``iterations``, or the deprecated ``epochs`` (with a warning); exactly one."""
    if epochs is not None:
        if iterations is not None:
            raise ValueError("pass iterations= only (epochs= is its deprecated name)")
        warnings.warn("train_flossed(epochs=...) is deprecated: each was one batch; use "
                      "iterations=", DeprecationWarning, stacklevel=3)
        iterations = epochs
    if iterations is None:
        raise ValueError("iterations: how many training iterations (batches) to run")
    return int_at_least(iterations, 1, "iterations", error=ValueError)


@torch.no_grad()
def fresh_accuracy(model: nn.Module | Population, tasks: Sequence[DelayedBitsTask],
                   size: int = 128, generator: torch.Generator | None = None) -> Tensor:
    """(P,) accuracy of each network on the same ``size`` fresh sequences, scored by its
    own task (for one network, ``tasks`` holds its one task)."""
    x, y = _draw(tasks, size, generator, next(model.parameters()))
    out = model(x, per_network=True) if isinstance(model, Population) else model(x[0])[0][None]
    return tasks[0].correct_fraction(out, y).cpu()


def __getattr__(name: str):
    if name == "accuracy":  # the old name, one release
        warnings.warn("lyaplib.flossing.accuracy is deprecated: use fresh_accuracy (tasks "
                      "have accuracy(model, split))", DeprecationWarning, stacklevel=2)
        return fresh_accuracy
    raise AttributeError(f"module 'lyaplib.flossing' has no attribute {name!r}")


def _draw(tasks: Sequence[DelayedBitsTask], size: int, generator: torch.Generator | None,
          like: Tensor) -> tuple[Tensor, Tensor]:
    """One batch of bits for every task: inputs (P, B, T, 1) (the same for all), and each
    task's targets (P, B, T)."""
    bits = torch.randint(0, 2, (size, tasks[0].length), generator=generator)
    x = tasks[0].inputs(bits).expand(len(tasks), -1, -1, -1)
    return x.to(like), torch.stack([t.targets(bits) for t in tasks]).to(like)
