"""Resumable sweeps into a results store (:mod:`lyaplib.store`)::

    store = ResultStore("data/results/charrnn_ci.results")
    rows = run_sweep(configs, run, store)     # trains only what is not stored yet
    store.rows()                              # every row, in the order they were added

A sweep runs one configuration after another in this process, or hands them to any
``concurrent.futures`` executor (``run_sweep(..., executor=...)``: a process pool, a Dask
cluster, Slurm through submitit); the workers return rows, and the process that called
``run_sweep`` stays the only writer of the store.
"""

from __future__ import annotations

import functools
import os
import time
import traceback
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import (
    FIRST_COMPLETED,
    BrokenExecutor,
    Executor,
    Future,
    ProcessPoolExecutor,
    wait,
)
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from tqdm.auto import tqdm

from ._io import stable_id as stable_id  # public here: names settings in store paths
from .store import DamagedStoreError as DamagedStoreError  # public here too, as before
from .store import ResultStore, as_store
from .training import LyapunovTracker, RunConfig, train

if TYPE_CHECKING:
    from .tasks import Task

POLL_SECONDS = 1.0  # how often the jobs of an executor without concurrent futures are polled


def run_sweep(configs: Sequence[RunConfig], run: Callable[[RunConfig, Path], dict],
              store: ResultStore | str | os.PathLike, *, executor: Executor | None = None,
              retries: int = 2, progress: bool = True, desc: str = "runs") -> list[dict]:
    """Run every configuration whose ``run_id`` is not yet in ``store``; return the rows of
    all ``configs``, in their order.

    ``run(config, checkpoint)`` trains one configuration (resuming from ``checkpoint`` if
    that file exists) and returns its row. Each finished row is stored at once and its
    checkpoint deleted, so a sweep killed at any point resumes without losing or repeating
    a run. Leftovers of killed processes are cleaned first.

    With an ``executor`` (any ``concurrent.futures.Executor``: a
    ``ProcessPoolExecutor``, Dask's ``Client.get_executor()``, or anything whose
    ``submit`` returns objects with ``done()`` and ``result()``, such as submitit's), the
    runs go to its workers, and ``run`` must be picklable there. This process stays the
    only writer of ``store``: workers return rows, and it stores each as it arrives. The
    checkpoints are in the store's folder, so a worker that dies is resumed from its
    checkpoint when the workers share that folder. A run that raises (``SystemExit`` and
    ``KeyboardInterrupt`` in a worker included), is cancelled, or whose worker dies, is
    submitted again up to ``retries`` times; a ``ProcessPoolExecutor`` that breaks when
    one of its processes dies is replaced by an equal one (at most ``retries`` times). A
    run that fails every time, or returns a row that cannot be stored, is reported in a
    :class:`SweepError`, with its traceback, after every other run is stored; an executor
    that stops taking work (shut down, broken) ends the sweep with a ``RuntimeError``
    naming it. Without an executor, runs go one after another in this process and the
    first error is raised (a run's ``sys.exit`` as a ``RuntimeError`` naming the run).
    Several drivers may run one sweep on one store: a run another driver has stored is
    skipped, and a row stored twice is kept once (the first).
    """
    _check_sweep(configs, run)
    store = as_store(store)
    ids = [c.run_id for c in configs]
    if len(set(ids)) != len(ids):
        raise ValueError("configs contains duplicate configurations")
    store.clean()
    done = store.run_ids()
    jobs = {c.run_id: (run, c, store.checkpoint(c.run_id).absolute())
            for c in configs if c.run_id not in done}
    _execute(_run_one, jobs, store, executor, retries, progress, desc,
             finished=lambda run_id: store.checkpoint(run_id).unlink(missing_ok=True))
    rows = {r["run_id"]: r for r in store.rows() if "run_id" in r}
    return [rows[i] for i in ids]


def run_population_sweep(populations: Sequence[Sequence[RunConfig]],
                         train: Callable[[Sequence[RunConfig]], list[dict]],
                         store: ResultStore | str | os.PathLike, *,
                         executor: Executor | None = None, retries: int = 2,
                         progress: bool = True, desc: str = "populations") -> list[dict]:
    """:func:`run_sweep` for networks trained together: ``train(configs)`` trains one
    population and returns one row per config. A population is trained unless every one
    of its ``run_id`` s is stored; its new rows are stored in one transaction. With an
    ``executor``, each population is one job for its workers (see :func:`run_sweep`).
    Returns the rows of every config of every population, in order."""
    for configs in populations:
        _check_sweep(configs, train)
    store = as_store(store)
    ids = [c.run_id for configs in populations for c in configs]
    if len(set(ids)) != len(ids):
        raise ValueError("populations contain duplicate configurations")
    done = store.run_ids()
    jobs = {configs[0].run_id: (train, list(configs), done) for configs in populations
            if any(c.run_id not in done for c in configs)}
    _execute(_run_population, jobs, store, executor, retries, progress, desc)
    rows = {r["run_id"]: r for r in store.rows() if "run_id" in r}
    return [rows[i] for i in ids]


def _check_sweep(configs: Sequence[RunConfig], run: Callable) -> None:
    """Refuse what a sweep cannot run, naming it, before anything starts."""
    if not callable(run):
        raise TypeError(f"run must be callable, got {type(run).__name__}")
    for i, config in enumerate(configs):
        if not isinstance(config, RunConfig):
            raise TypeError(f"configs[{i}] must be a RunConfig, got {type(config).__name__}")


SCHEDULER_VARIABLE = "LYAPLIB_SCHEDULER"

# Dask settings for workers that train: ``with dask.config.set(DASK_CONFIG):`` around the
# creation of a cluster. Dask starts each worker process with MALLOC_TRIM_THRESHOLD_=65536,
# which makes glibc hand freed memory back to the system at once; a training loop frees
# and allocates all the time, and trained 2.4x slower under it (chapter 05's LSTM, CPU).
# This keeps Dask's other default: one BLAS/OpenMP thread per worker.
DASK_CONFIG = {"distributed.nanny.pre-spawn-environ": {
    "OMP_NUM_THREADS": 1, "MKL_NUM_THREADS": 1, "OPENBLAS_NUM_THREADS": 1}}


def executor_from_env() -> Executor | None:
    """The executor the chapters run their sweeps on: None (in this process) unless the
    environment variable ``LYAPLIB_SCHEDULER`` names a running Dask scheduler, by its
    address (``tcp://host:8786``) or by the path of its scheduler file (dask-jobqueue,
    dask-mpi). Needs ``distributed`` (``pip install "lyaplib[cluster]"``); the client is
    made once per process."""
    where = os.environ.get(SCHEDULER_VARIABLE, "").strip()
    return _dask_executor(where) if where else None


@functools.cache
def _dask_executor(where: str) -> Executor:
    try:
        import distributed
    except ImportError:
        raise ImportError(f"{SCHEDULER_VARIABLE}={where!r} asks for a Dask cluster, but "
                          "distributed is not installed: pip install 'lyaplib[cluster]'"
                          ) from None
    if Path(where).is_file():
        return distributed.Client(scheduler_file=where).get_executor()
    return distributed.Client(where).get_executor()


class SweepError(RuntimeError):
    """Jobs of a sweep that failed on every attempt. ``failures`` maps the ``run_id`` of
    each (a population's first) to the traceback of its last attempt; the rows of every
    other job are stored, so running the sweep again retries only these."""

    def __init__(self, failures: dict[str, str]):
        self.failures = dict(failures)
        run_id, last = next(iter(self.failures.items()))
        super().__init__(f"{len(self.failures)} run(s) failed on every attempt: "
                         f"{', '.join(self.failures)}; the traceback of {run_id}:\n{last}")


def _run_one(run: Callable[[RunConfig, Path], dict], config: RunConfig,
             checkpoint: Path) -> list[dict]:
    return [{**run(config, checkpoint), "run_id": config.run_id}]


def _run_population(train: Callable[[Sequence[RunConfig]], list[dict]],
                    configs: list[RunConfig], done: set[str]) -> list[dict]:
    rows = train(configs)
    ids = [c.run_id for c in configs]
    got = [row.get("run_id") if isinstance(row, dict) else None for row in rows]
    if sorted(map(str, got)) != sorted(ids):
        raise TypeError(f"train must return one dict per config, each with its config's "
                        f"run_id; got run_ids {got} for {ids}")
    return [row for row in rows if row["run_id"] not in done]


def _attempt(work: Callable[..., list[dict]], args: tuple, attempt: int) -> tuple[bool, object]:
    """``work(*args)`` on a worker: (True, its rows) or (False, its traceback as text).
    ``attempt`` only makes every submission distinct: Dask caches the result of a call it
    has seen, so a retry with the same arguments would return the same failure."""
    try:
        return True, work(*args)
    except BaseException:  # SystemExit and KeyboardInterrupt too: they end the run, not us
        return False, traceback.format_exc()


def _execute(work: Callable[..., list[dict]], jobs: dict[str, tuple], store: ResultStore,
             executor: Executor | None, retries: int, progress: bool, desc: str,
             finished: Callable[[str], None] = lambda key: None) -> None:
    """Run ``work(*jobs[key])`` for every key, here or on ``executor``, and store the rows
    each returns in one transaction (then call ``finished(key)``). A job whose rows
    another process stored meanwhile is skipped, and its rows, if it ran, dropped."""
    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
        raise ValueError(f"retries must be an int >= 0, got {retries!r}")
    if executor is not None and not callable(getattr(executor, "submit", None)):
        raise TypeError("executor must be None or have a submit(fn, *args) method (a "
                        f"concurrent.futures.Executor), got {type(executor).__name__}")
    with tqdm(total=len(jobs), desc=desc, disable=not progress or not jobs) as bar:
        if executor is None:
            for key, args in jobs.items():
                if key not in store.run_ids():  # not stored by another driver meanwhile
                    try:
                        rows = work(*args)
                    except SystemExit as exc:  # a run must not end the sweep in silence
                        raise RuntimeError(f"run {key} called sys.exit({exc.code})") from exc
                    _store(store, key, rows)
                finished(key)
                bar.update()
            return
        _Driver(work, jobs, store, executor, retries, bar, finished).run()


def _store(store: ResultStore, key: str, rows: object) -> None:
    """Store a job's rows in one transaction, naming the job if they cannot be stored."""
    try:
        store.append(*rows, skip_stored=True)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"run {key} returned rows that cannot be stored: {exc}") from exc


class _Driver:
    """The loop of :func:`_execute` over an executor's futures: retries, a process pool
    replaced when one of its processes dies, every storable row stored."""

    def __init__(self, work, jobs, store, executor, retries, bar, finished):
        self.work, self.jobs, self.store, self.executor = work, jobs, store, executor
        self.retries, self.bar, self.finished = retries, bar, finished
        self.attempts: Counter[str] = Counter()
        self.pending: dict[object, str] = {}
        self.failures: dict[str, str] = {}
        self.broken: BaseException | None = None
        self.owned: list[Executor] = []  # replacement pools, shut down at the end

    def run(self) -> None:
        try:
            for key in self.jobs:
                self.submit(key)
            while self.pending:
                # No reference to a finished future may outlive this line: Dask recomputes
                # the results, held by a worker that dies, of the futures still referenced.
                finished_now = [(self.pending.pop(f), _outcome(f))
                                for f in _first_done(self.pending)]
                for key, outcome in finished_now:
                    self.settle(key, *outcome)
        finally:
            for pool in self.owned:
                pool.shutdown(wait=False, cancel_futures=True)
        if self.broken is not None:
            raise RuntimeError(
                f"executor: {self.executor!r} stopped taking work ({self.broken!r}). "
                f"{len(self.jobs) - len(self.failures)} of {len(self.jobs)} runs are stored "
                "and the checkpoints of the others kept: run the sweep again, with a new "
                "executor, to resume them") from self.broken
        if self.failures:
            raise SweepError(self.failures)

    def settle(self, key: str, ok: bool, value: object) -> None:
        if ok:
            try:
                _store(self.store, key, value)
                self.finished(key)
            except TypeError as exc:  # the same rows would come back: no retry
                self.failures[key] = "".join(traceback.format_exception(exc))
        elif self.attempts[key] <= self.retries and self.broken is None:
            self.submit(key)
            return
        else:
            self.failures[key] = value
        self.bar.update()

    def submit(self, key: str) -> None:
        if key in self.store.run_ids():  # stored by another driver meanwhile
            self.finished(key)
            self.bar.update()
            return
        self.attempts[key] += 1
        for _ in range(2):
            try:
                future = self.executor.submit(_attempt, self.work, self.jobs[key],
                                              self.attempts[key])
                self.pending[future] = key
                return
            except (BrokenExecutor, RuntimeError) as exc:  # a dead or shut-down executor
                if not self.replace():
                    self.broken = self.broken or exc
                    self.failures[key] = "".join(traceback.format_exception(exc))
                    self.bar.update()
                    return

    def replace(self) -> bool:
        """A process pool one of whose processes died breaks for good: start an equal one
        (its runs resume from their checkpoints). Other executors cannot be replaced."""
        old = self.executor
        if not isinstance(old, ProcessPoolExecutor) or len(self.owned) > self.retries:
            return False
        self.executor = ProcessPoolExecutor(
            max_workers=getattr(old, "_max_workers", None),
            mp_context=getattr(old, "_mp_context", None),
            initializer=getattr(old, "_initializer", None),
            initargs=getattr(old, "_initargs", ()))
        self.owned.append(self.executor)
        return True


def _outcome(future) -> tuple[bool, object]:
    """What :func:`_attempt` returned, or (False, the traceback) if it never returned.
    The future is done, so ``result()`` does not wait: whatever it raises (a worker's
    SystemExit forwarded by the pool included) is that job's failure, not this process's."""
    try:
        return future.result()
    except BaseException as exc:  # its worker died, or the executor cancelled it
        return False, "".join(traceback.format_exception(exc))


def _first_done(futures: Collection) -> list:
    """The futures that are done, waiting for at least one. ``concurrent.futures`` futures
    (Dask's executor makes these too) are waited on; others (submitit's jobs) polled."""
    # done() is also true of a future cancelled without notice (shutdown(cancel_futures=
    # True)), which concurrent.futures.wait never counts as done: so it only ever waits
    # for a while, and done() decides
    concurrent = all(isinstance(f, Future) for f in futures)
    while not (done := [f for f in futures if f.done()]):
        if concurrent:
            wait(futures, timeout=POLL_SECONDS, return_when=FIRST_COMPLETED)
        else:
            time.sleep(POLL_SECONDS)
    return done


def train_and_measure(task: Task, config: RunConfig, *, le_epochs: Sequence[int] | None = None,
                      le_count: int = 10, le_length: int = 100,
                      jacobians: Sequence[str] = ("hidden",), checkpoint=None,
                      progress: bool = False, device: torch.device | None = None) -> dict:
    """Train one configuration and return its result row (JSON-ready).

    The spectrum (``jacobian="hidden"``) is tracked at ``le_epochs`` (default: 0
    and the last); the final network's spectrum is also computed for every
    convention in ``jacobians``. Row fields: the config, ``run_id``, ``val_loss``
    per epoch, ``best_val_loss``, ``best_epoch``, ``spectra`` {epoch: list},
    ``final_<jacobian>`` spectra, ``epoch_seconds``, ``iterations``, ``le_seconds``.
    """
    epochs = [0, config.epochs] if le_epochs is None else list(le_epochs)
    model = config.model(task).to(device or torch.device("cpu"))
    inputs = task.lyapunov_inputs(le_count, le_length)
    # float64 on every device: the papers' trained networks saturate (chapter 06)
    tracker = LyapunovTracker(inputs, epochs, dtype=torch.float64)
    history = train(model, task, config, tracker=tracker, checkpoint=checkpoint,
                    progress=progress)
    row = {**asdict(config), "run_id": config.run_id, "val_loss": history.val_loss,
           "train_loss": history.train_loss, "best_val_loss": min(history.val_loss),
           "best_epoch": history.best_epoch,
           "spectra": {str(e): s for e, s in history.spectra.items()},
           "epoch_seconds": history.epoch_seconds, "iterations": history.iterations,
           "le_seconds": history.le_seconds}
    for jacobian in jacobians:
        final = LyapunovTracker(inputs, jacobian=jacobian, dtype=torch.float64)(model)
        row[f"final_{jacobian}"] = final.exponents.tolist()
    return row
