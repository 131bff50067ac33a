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
    history = train_flossed(model, task, epochs=1000, schedule=FlossingSchedule(k=16))
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .population import Population
from .spectrum import lyapunov_spectrum
from .tasks import DelayedBitsTask, Task


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
        if not 0 <= warmup < length:
            raise ValueError(f"warmup must be in [0, length = {length}), got {warmup}")
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
    epochs 100 and 200, k = 75 of N = 80, estimated on 55 steps after a 16-step warm-up)."""

    k: int
    before: int = 500
    at: tuple[int, ...] = (100, 200)
    steps: int = 500
    length: int = 55
    warmup: int = 16
    lr: float = 1e-3
    target: float = 0.0
    jacobian: str = "full"

    def flosser(self, model: nn.Module | Population,
                only: Sequence[bool] | Tensor | None = None) -> Flosser:
        """A :class:`Flosser` of ``model`` with these settings (``only``: see there)."""
        return Flosser(model, self.k, target=self.target, length=self.length,
                       warmup=self.warmup, lr=self.lr, jacobian=self.jacobian, only=only)


@dataclass
class FlossingHistory:
    """What :func:`train_flossed` recorded; (…, P) columns for a population.

    ``loss``: (epochs, P) training loss per epoch;  ``accuracy``: (n, P) test accuracy at
    ``accuracy_epochs``;  ``flossing``: the flossing losses of each phase, by the epoch it
    preceded;  ``seconds_training`` and ``seconds_flossing``: host wall time of each part
    (on a GPU, queued work is counted where the host waits for it).
    """

    loss: Tensor
    accuracy: Tensor
    accuracy_epochs: list[int]
    flossing: dict[int, Tensor] = field(default_factory=dict)
    seconds_training: float = 0.0
    seconds_flossing: float = 0.0

    @property
    def final_accuracy(self) -> Tensor:
        """(P,) the last recorded test accuracy."""
        return self.accuracy[-1]


def train_flossed(model: nn.Module | Population,
                  tasks: DelayedBitsTask | Sequence[DelayedBitsTask], *, epochs: int,
                  schedule: FlossingSchedule | None = None,
                  flossed: Sequence[bool] | Tensor | None = None, batch_size: int = 16,
                  lr: float = 1e-3, clip: float | None = 0.03,
                  eval_every: int = 50, eval_batch: int = 128,
                  generator: torch.Generator | None = None, progress: bool = False
                  ) -> FlossingHistory:
    """Train on a delayed-bits task with Adam, flossing on ``schedule`` (None: never).

    Each epoch is one batch of fresh sequences (as in Engelken's code). The training
    batches, the flossing inputs and the test sets come from three generators seeded from
    ``generator``, so that a run with flossing and one without see the same training and
    test data (a paired comparison). Every network of a population sees the same input
    bits, each with the targets of its own task. ``flossed``: for a population, which
    networks the schedule flosses (default all), so that networks with and without
    flossing train side by side. ``model`` is one network (``tasks`` one task) or a
    :class:`~lyaplib.population.Population` (``tasks`` one per network, so that networks
    of different delays train side by side; its own Adam learning rates and clipping
    apply, and ``lr``/``clip`` are ignored). Gradients are clipped to norm ``clip``
    per network. Test accuracy (fresh sequences, scored steps only) is recorded every
    ``eval_every`` epochs and after the last.
    """
    population = isinstance(model, Population)
    tasks = list(tasks) if isinstance(tasks, Sequence) else [tasks]
    P = model.P if population else 1
    if len(tasks) != P:
        raise ValueError(f"tasks: need one task per network ({P}), got {len(tasks)}")
    if len({(t.length, t.scale) for t in tasks}) != 1:
        raise ValueError("tasks must share one sequence length and input scale (networks "
                         "run side by side on the same inputs)")
    parameters = list(model.parameters())
    optimizer = None if population else torch.optim.Adam(parameters, lr=lr)
    flosser = schedule.flosser(model, flossed) if schedule else None
    history = FlossingHistory(loss=torch.zeros(epochs, P), accuracy=torch.zeros(0, P),
                              accuracy_epochs=[])
    seeds = torch.randint(2**62, (3,), generator=generator).tolist()
    data, floss_data, test_data = (torch.Generator().manual_seed(s) for s in seeds)
    losses, accuracies = [], []  # kept on the device: no host sync per epoch

    def floss(epoch: int, steps: int) -> None:
        start = time.perf_counter()
        history.flossing[epoch] = flosser.run(tasks[0], steps, generator=floss_data)
        history.seconds_flossing += time.perf_counter() - start

    for epoch in tqdm(range(epochs), desc="training", disable=not progress):
        if flosser is not None and schedule.before and epoch == 0:
            floss(epoch, schedule.before)
        elif flosser is not None and epoch in schedule.at:
            floss(epoch, schedule.steps)
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
        if (epoch + 1) % eval_every == 0 or epoch + 1 == epochs:
            accuracies.append(accuracy(model, tasks, eval_batch, test_data))
            history.accuracy_epochs.append(epoch + 1)
    history.loss = torch.stack(losses).cpu()
    history.accuracy = torch.stack(accuracies)
    return history


@torch.no_grad()
def accuracy(model: nn.Module | Population, tasks: Sequence[DelayedBitsTask], size: int = 128,
             generator: torch.Generator | None = None) -> Tensor:
    """(P,) accuracy of each network on ``size`` fresh sequences of its task (scored steps)."""
    x, y = _draw(tasks, size, generator, next(model.parameters()))
    out = model(x, per_network=True) if isinstance(model, Population) else model(x[0])[0][None]
    return tasks[0].accuracy(out, y).cpu()


def _draw(tasks: Sequence[DelayedBitsTask], size: int, generator: torch.Generator | None,
          like: Tensor) -> tuple[Tensor, Tensor]:
    """One batch of bits for every task: inputs (P, B, T, 1) (the same for all), and each
    task's targets (P, B, T)."""
    bits = torch.randint(0, 2, (size, tasks[0].length), generator=generator)
    x = tasks[0].inputs(bits).expand(len(tasks), -1, -1, -1)
    return x.to(like), torch.stack([t.targets(bits) for t in tasks]).to(like)
