"""Training, for one network or a population, with the spectrum tracked along the way.

``RunConfig`` describes one run; ``train`` fits one model with Adam and ``train_population``
fits many at once (a :class:`~lyaplib.population.Population`). Both go through the same
loop over the same batches (:func:`epoch_batches`), and :func:`evaluate`
measures either. A :class:`LyapunovTracker` computes the spectrum at chosen epochs
without touching the training's random numbers; checkpoints make ``train`` resumable.
"""

from __future__ import annotations

import itertools
import math
import numbers
import os
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import vmap
from tqdm.auto import tqdm

from ._arguments import int_at_least, real
from ._io import atomic_write, stable_id
from .benchmark import timed_call
from .cells.base import jacobian_convention
from .cells.gated import JacobianConvention
from .models import get_architecture
from .population import Population
from .scale import analysis_dtype
from .spectrum import LyapunovResult, lyapunov_spectrum
from .tasks import Task


@dataclass(frozen=True)
class RunConfig:
    """One training run, validated. ``max_batches`` caps an epoch (small presets; None:
    all data), ``val_batches`` the validation. ``options``: keyword arguments for the
    model's recurrent module (e.g. ``{"nonlinearity": "relu"}``); JSON values only.
    ``init``: the U(-init, init) half-width of every weight, or None for each
    architecture's own initialisation (the classification tasks only). A task refuses a
    field its model cannot honour (``dropout`` > 0 for the classifiers, ``options`` for
    the LSTM predictor)."""

    hidden_size: int = 128
    architecture: str = "lstm"
    dropout: float = 0.1
    lr: float = 2e-3
    init: float | None = 0.08
    epochs: int = 15
    batch_size: int = 128
    max_batches: int | None = None
    val_batches: int | None = None
    clip: float | None = 5.0
    seed: int = 0
    options: dict = field(default_factory=dict, hash=False)

    def __post_init__(self):
        # exact types: True == 1 and 1000.0 == 1000 would train alike under other run ids
        for name, low, optional in (("hidden_size", 1, False), ("epochs", 1, False),
                                    ("batch_size", 1, False), ("seed", 0, False),
                                    ("max_batches", 1, True), ("val_batches", 1, True)):
            checked = int_at_least(getattr(self, name), low, name, optional=optional,
                                   error=ValueError)
            object.__setattr__(self, name, checked)
        object.__setattr__(self, "lr", real(self.lr, "lr", above=0))  # 1 and 1.0: one id
        object.__setattr__(self, "init", real(self.init, "init", above=0, optional=True))
        object.__setattr__(self, "clip", real(self.clip, "clip", above=0, optional=True))
        object.__setattr__(self, "dropout", real(self.dropout, "dropout", low=0))
        if not self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not isinstance(self.options, dict):
            raise ValueError(f"options must be a dict, got {type(self.options).__name__}")
        get_architecture(self.architecture)  # a ValueError that lists the registered names

    @property
    def run_id(self) -> str:
        """A stable id for the configuration (used to skip runs already done)."""
        fields = asdict(self)
        if not fields["options"]:  # ids from before ``options`` existed stay valid
            del fields["options"]
        return stable_id(fields)

    def model(self, task: Task) -> nn.Module:
        """The task's model for this configuration, initialised from ``seed``."""
        with torch.random.fork_rng():
            torch.manual_seed(self.seed)
            return task.make_model(self)


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
        """The number of epochs trained so far."""
        return len(self.val_loss)

    @property
    def best_epoch(self) -> int:
        """1-based epoch of the lowest validation loss."""
        return min(range(self.epochs), key=self.val_loss.__getitem__) + 1


class LyapunovTracker:
    """Computes the spectrum of a model's recurrent layer on fixed held-out inputs.

    It runs under ``torch.no_grad`` on the live weights (or a cast copy when
    ``dtype`` differs) inside ``torch.random.fork_rng``, so training continues
    exactly as it would have without it. Epoch 0 is the untrained network.

    Args:
        inputs: (B, T, I) held-out inputs (the paper: 10 sequences x 100 steps).
        epochs: the epochs to measure at; None for every epoch (and epoch 0).
        jacobian: the convention passed to ``model.cell`` (default "hidden"), which
            refuses one the model does not have: for an LSTM "hidden" (the paper's N
            exponents) or "full" (the (h, c) system, 2N); for the ARU "full" or "main".
            ``state=`` is its deprecated name.
        k, warmup: passed to :func:`~lyaplib.lyapunov_spectrum`.
        dtype: default :func:`~lyaplib.scale.analysis_dtype` of the model's device:
            float64 on the CPU, float32 on CUDA (float64 is 32x slower on most GPUs; the
            engine sums in float64 anyway). Pass float64 for networks that saturate: in
            float32 a deeply saturated unit's derivative can underflow to exactly 0,
            which makes the Jacobian singular (an exponent of -inf).
    """

    def __init__(self, inputs: Tensor, epochs: Sequence[int] | None = None, *,
                 jacobian: str | None = None, k: int | None = None,
                 warmup: int = 0, dtype: torch.dtype | None = None,
                 state: JacobianConvention | None = None):
        if inputs.ndim != 3:
            raise ValueError(f"inputs must be (B, T, I), got shape {tuple(inputs.shape)}")
        self.jacobian = jacobian_convention(jacobian, state, None, "LyapunovTracker")
        self.inputs, self.k, self.warmup, self.dtype = inputs, k, warmup, dtype
        if epochs is not None:
            if isinstance(epochs, (str, bytes)) or not all(
                    not isinstance(e, bool) and isinstance(e, numbers.Integral) and e >= 0
                    for e in epochs):
                raise ValueError(f"epochs must be ints >= 0 (0: the untrained network), got "
                                 f"{epochs!r}")
            epochs = {int(e) for e in epochs}
        self.epochs = epochs

    def wants(self, epoch: int) -> bool:
        """Whether the spectrum is measured after ``epoch``."""
        return self.epochs is None or epoch in self.epochs

    def __call__(self, model: nn.Module) -> LyapunovResult:
        """The spectrum of ``model.cell(jacobian)``, in evaluation mode."""
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()  # the deterministic map (e.g. NoisyRNN without its training noise)
        try:
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                return lyapunov_spectrum(model.cell(self.jacobian), self.inputs.to(device),
                                         k=self.k, warmup=self.warmup,
                                         dtype=self.dtype or analysis_dtype(device))
        finally:
            model.train(was_training)


def epoch_batches(task: Task, config: RunConfig, epoch: int) -> Iterator[tuple[Tensor, Tensor]]:
    """The training batches of ``epoch`` (1-based), shuffled reproducibly from the
    config's seed and the epoch alone, so that a resumed run sees the same batches."""
    generator = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
    return task.batches("train", config.batch_size, generator, config.max_batches)


@torch.no_grad()
def evaluate(model: nn.Module | Population, task: Task, split: str, batch_size: int = 128,
             max_batches: int | None = None) -> float | Tensor:
    """Mean loss over ``split`` (weighted by batch size), in evaluation mode.

    A float for a model; for a :class:`~lyaplib.population.Population`, every network's
    loss, (P,) on the CPU.
    """
    population = isinstance(model, Population)
    was_training = model.training
    model.eval()
    device = model.lrs.device if population else next(model.parameters()).device
    total, count = 0.0, 0
    for x, y in task.batches(split, batch_size, max_batches=max_batches):
        x, y = x.to(device), y.to(device)
        if population:
            total = total + vmap(task.loss, in_dims=(0, None))(model(x), y) * len(x)
        else:
            total += task.loss(model(x)[0], y).item() * len(x)
        count += len(x)
    model.train(was_training)
    return (total / count).cpu() if population else total / count


def _fit(step: Callable[[Tensor, Tensor], Tensor],
         epochs: Iterable[tuple[int, Iterable[tuple[Tensor, Tensor]]]], *,
         after_step: Callable[[], None] | None = None,
         after_epoch: Callable[[int, list[Tensor], float], None] | None = None) -> None:
    """The training loop of both ``train`` and ``train_population``.

    ``step(x, y)`` makes one optimizer step and returns its loss, detached (no host sync);
    ``after_epoch(epoch, losses, seconds)`` gets the epoch's losses and training time.
    """
    for epoch, batches in epochs:
        began, losses = time.perf_counter(), []
        for x, y in batches:
            losses.append(step(x, y))
            if after_step is not None:
                after_step()
        if after_epoch is not None:
            after_epoch(epoch, losses, time.perf_counter() - began)


def train(model: nn.Module, task: Task, config: RunConfig, *,
          tracker: LyapunovTracker | None = None, checkpoint: str | os.PathLike | None = None,
          keep_epochs: Collection[int] = (), progress: bool = True) -> History:
    """Train with Adam for ``config.epochs`` epochs; return the :class:`History`.

    With ``checkpoint``, the model, optimizer, history and random state are
    saved (atomically) after every epoch, and a later call with the same path
    continues where it stopped, giving the same result as an uninterrupted run.
    The checkpoints of ``keep_epochs`` are also kept, at :func:`snapshot_path`, to be
    read back with :func:`load_weights`. Global random state is left as it was
    (training runs in ``fork_rng``).
    """
    if keep_epochs and checkpoint is None:
        raise ValueError("keep_epochs needs a checkpoint path to keep them beside")
    device = next(model.parameters()).device
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    history, start = History(), 0
    path = None if checkpoint is None else Path(checkpoint)

    def step(x: Tensor, y: Tensor) -> Tensor:
        return _train_step(model, task, optimizer, x, y, config.clip)

    def after_epoch(epoch: int, losses: list[Tensor], seconds: float) -> None:
        history.epoch_seconds.append(seconds)
        history.iterations.append(len(losses))
        history.train_loss.append(torch.stack(losses).mean().item())  # one sync per epoch
        history.val_loss.append(evaluate(model, task, task.val_split, config.batch_size,
                                         config.val_batches))
        if not math.isfinite(history.val_loss[-1]):
            raise FloatingPointError(f"validation loss is {history.val_loss[-1]} after "
                                     f"epoch {epoch} (lr={config.lr} too large?)")
        if tracker is not None and tracker.wants(epoch):
            _track(tracker, model, history, epoch)
        bar.set_postfix(val=f"{history.val_loss[-1]:.3f}")
        bar.update()
        if path is not None:
            _save_checkpoint(path, model, optimizer, history, epoch)
        if epoch in keep_epochs:  # a copy of the checkpoint just written
            atomic_write(snapshot_path(path, epoch), lambda f: f.write(path.read_bytes()))

    with _seeded(config.seed, device):
        if path is not None and path.is_file():
            start, history = _load_checkpoint(path, model, optimizer)
        if start == 0 and tracker is not None and tracker.wants(0):
            _track(tracker, model, history, 0)
        model.train()
        with tqdm(desc="epochs", disable=not progress, initial=start, total=config.epochs,
                  leave=False) as bar:
            _fit(step, ((e, epoch_batches(task, config, e))
                        for e in range(start + 1, config.epochs + 1)), after_epoch=after_epoch)
    return history


def train_population(task: Task, configs: Sequence[RunConfig], *,
                     le_inputs: Tensor | None = None, le_fractions: Sequence[float] = (1.0,),
                     progress: bool = True, device: torch.device | None = None) -> list[dict]:
    """Train the networks of ``configs`` (one architecture and size; their own ``init``,
    ``lr`` and ``seed``) as one :class:`~lyaplib.population.Population`; one row each.

    All networks see the same batches (the first config's :func:`epoch_batches`), so the
    configs must share ``epochs``, ``batch_size``, ``max_batches``, ``val_batches``,
    ``clip``, ``dropout`` and ``options`` (refused otherwise). At each of
    ``le_fractions`` of the training steps (0: before training, 1: the end) the
    validation loss and, given ``le_inputs`` (B, T, I), the spectrum of every
    network are recorded. Rows hold the config, ``val_loss`` and ``spectrum``
    (at the end), ``val_loss_at`` and ``spectrum_at`` ({fraction: ...}) and
    ``accuracy`` on the test split when the task has one.
    """
    if not configs:
        raise ValueError("configs: a population needs at least one config")
    first = configs[0]
    shapes = {(c.architecture, c.hidden_size) for c in configs}
    if len(shapes) != 1:
        raise ValueError(f"a population needs one architecture and size, got {sorted(shapes)}")
    # every network trains on the first config's schedule: a row must not claim another
    for name in ("epochs", "batch_size", "max_batches", "val_batches", "clip", "dropout",
                 "options"):
        values = [getattr(c, name) for c in configs]
        if any(v != values[0] for v in values):
            raise ValueError(f"configs: a population trains every network with one {name}; "
                             f"got {values}. Train the configs that differ as their own "
                             "populations (one per value)")
    if any(not 0 <= f <= 1 for f in le_fractions):
        raise ValueError(f"le_fractions must lie in [0, 1], got {list(le_fractions)}")
    device = device or torch.device("cpu")
    pop = Population([c.model(task).to(device) for c in configs], [c.lr for c in configs],
                     clip=first.clip, forward_kwargs={"stepwise": True})
    plan = [(e, list(epoch_batches(task, first, e))) for e in range(1, first.epochs + 1)]
    steps = sum(len(batches) for _, batches in plan)
    marks = {round(f * steps): float(f) for f in (*le_fractions, 1.0)}
    losses_at, spectra_at, done = {}, {}, [0]

    def record() -> None:
        if done[0] not in marks:
            return
        f = marks[done[0]]
        losses_at[f] = evaluate(pop, task, task.val_split, first.batch_size, first.val_batches)
        if le_inputs is not None and f in le_fractions:
            spectra_at[f] = pop.spectra(lambda m: m.eval().cell("full"), le_inputs.to(device))[0]

    def step(x: Tensor, y: Tensor) -> Tensor:
        return pop.train_step(task.loss, x.to(device), y.to(device))

    def after_step() -> None:
        done[0] += 1
        bar.update()
        record()

    with _seeded(first.seed, device):
        record()
        with tqdm(total=steps, desc="training steps", disable=not progress,
                  leave=False) as bar:
            _fit(step, plan, after_step=after_step)
    rows = []
    for i, config in enumerate(configs):
        row = {**asdict(config), "run_id": config.run_id, "val_loss": float(losses_at[1.0][i]),
               "val_loss_at": {str(f): float(v[i]) for f, v in losses_at.items()}}
        if spectra_at:
            row["spectrum_at"] = {str(f): v[i].tolist() for f, v in spectra_at.items()}
            row["spectrum"] = row["spectrum_at"][str(max(spectra_at))]
        if callable(getattr(task, "accuracy", None)):  # the Task protocol's optional method
            row["accuracy"] = task.accuracy(pop.model(i), "test")
        rows.append(row)
    return rows


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
                  jacobian: JacobianConvention = "hidden",
                  device: torch.device | None = None) -> SpectrumCost:
    """Time one tracked spectrum against training iterations of ``config``'s model.

    Each repeat times one spectrum (``le_count`` sequences of ``le_length`` steps, as
    :func:`lyaplib.sweeps.train_and_measure` tracks it) and then ``iterations`` optimizer
    steps, back to back, after one untimed warm-up repeat. A ratio of two timings taken side by side
    survives a machine whose load changes slowly, and the median over repeats one that is
    busy for a moment. Nothing here is cached: a timing belongs to the machine it ran on.
    """
    if repeats < 1 or iterations < 1:
        raise ValueError(f"repeats and iterations must be >= 1, got {repeats}, {iterations}")
    device = device or torch.device("cpu")
    model = config.model(task).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    tracker = LyapunovTracker(task.lyapunov_inputs(le_count, le_length), jacobian=jacobian)
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


@contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
    """The global generators seeded with ``seed`` inside, the caller's restored after.

    Training noise (NoisyRNN) and dropout draw from them, and a fresh process seeds them at
    random: seeded, a run trains the same in every process.
    """
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


def _train_step(model: nn.Module, task: Task, optimizer: torch.optim.Optimizer,
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


def _track(tracker: LyapunovTracker, model: nn.Module, history: History, epoch: int):
    if next(model.parameters()).is_cuda:
        torch.cuda.synchronize()
    began = time.perf_counter()
    result = tracker(model)
    exponents = result.exponents.tolist()  # the host copy ends the timed region
    history.le_seconds.append(time.perf_counter() - began)
    history.spectra[epoch] = exponents


def snapshot_path(checkpoint: str | os.PathLike, epoch: int) -> Path:
    """Where :func:`train` keeps the checkpoint of ``epoch`` (``keep_epochs``)."""
    path = Path(checkpoint)
    return path.with_name(f"{path.stem}.epoch{epoch}{path.suffix}")


def load_weights(model: nn.Module, checkpoint: str | os.PathLike) -> History:
    """Load the weights of a :func:`train` checkpoint into ``model``; its History."""
    return History(**_read_checkpoint(checkpoint, model)["history"])


def _read_checkpoint(path: str | os.PathLike, model: nn.Module) -> dict:
    """A checkpoint's contents, its weights already loaded into ``model``."""
    state = torch.load(path, map_location=next(model.parameters()).device, weights_only=True)
    model.load_state_dict(state["model"])
    return state


def _save_checkpoint(path: Path, model, optimizer, history: History, epoch: int) -> None:
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch,
             "history": asdict(history), "rng": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    atomic_write(path, lambda f: torch.save(state, f))


def _load_checkpoint(path: Path, model, optimizer) -> tuple[int, History]:
    state = _read_checkpoint(path, model)
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["rng"].cpu())
    if "cuda_rng" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda_rng"]])
    return state["epoch"], History(**state["history"])
