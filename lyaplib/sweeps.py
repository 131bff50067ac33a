"""The results store and resumable sweeps.

A :class:`ResultStore` is a folder holding an SQLite database of result rows (JSON-ready
dicts, one per trained network) and the checkpoints of the runs still in progress::

    store = ResultStore("data/results/charrnn_ci.results")
    rows = run_sweep(configs, run, store)     # trains only what is not stored yet
    store.rows()                              # every row, in the order they were added

Many processes may read and write one store at once (SQLite in write-ahead-log mode; each
append is one transaction), and a process killed at any moment loses at most the run it
was in: a row is either stored whole or not at all, and that run resumes from its last
checkpoint. Because the checkpoints live inside the store, deleting the store's folder
recomputes everything (a stale checkpoint can never be resumed into a new store).

A sweep runs one configuration after another in this process, or hands them to any
``concurrent.futures`` executor (``run_sweep(..., executor=...)``: a process pool, a Dask
cluster, Slurm through submitit); the workers return rows, and the process that called
``run_sweep`` stays the only writer of the store.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import sqlite3
import time
import traceback
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, BrokenExecutor, Executor, Future, wait
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from tqdm.auto import tqdm

from ._io import remove_orphaned_temporaries
from ._io import stable_id as stable_id  # public here: names settings in store paths
from .training import LyapunovTracker, RunConfig, train

if TYPE_CHECKING:
    from .tasks import Task

DATABASE = "rows.sqlite"
CHECKPOINTS = "checkpoints"
SCHEMA = ("CREATE TABLE IF NOT EXISTS rows (n INTEGER PRIMARY KEY AUTOINCREMENT, "
          "run_id TEXT UNIQUE, row TEXT NOT NULL)")
BUSY_SECONDS = 120.0  # how long a writer waits for another's transaction before failing
POLL_SECONDS = 1.0  # how often the jobs of an executor without concurrent futures are polled


class DamagedStoreError(RuntimeError):
    """A results store whose files cannot be read back; the message names the file."""


class ResultStore:
    """Result rows in the folder ``path`` (created on the first write), safe for concurrent
    writers and crashes. A row with a ``run_id`` is stored at most once."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if self.path.is_file():
            raise ValueError(f"path: a results store is a folder, but {self.path} is a file "
                             "(results files of earlier versions are not read: delete it "
                             "to recompute)")
        self.database = self.path / DATABASE
        self.checkpoints = self.path / CHECKPOINTS

    def __repr__(self) -> str:
        return f"ResultStore({str(self.path)!r})"

    def __len__(self) -> int:
        if not self.database.is_file():
            return 0
        with self._connect() as db:
            return db.execute("SELECT COUNT(*) FROM rows").fetchone()[0]

    def __contains__(self, run_id: str) -> bool:
        return run_id in self.run_ids()

    def append(self, *rows: dict) -> None:
        """Add ``rows`` in one transaction: all are stored, or (on any error) none.

        Raises ``ValueError`` naming a ``run_id`` that is already stored or repeated, and
        ``TypeError`` for a row that is not a JSON-ready dict.
        """
        records = []
        for i, row in enumerate(rows):
            if not isinstance(row, dict):
                raise TypeError(f"rows[{i}] must be a dict, got {type(row).__name__}")
            run_id = row.get("run_id")
            if run_id is not None and not isinstance(run_id, str):
                raise TypeError(f"rows[{i}]['run_id'] must be a str, got {type(run_id).__name__}")
            records.append((run_id, json.dumps(row)))  # TypeError for what JSON cannot hold
        self.path.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            try:
                db.execute("BEGIN IMMEDIATE")  # take the write lock now, not halfway through
                db.executemany("INSERT INTO rows (run_id, row) VALUES (?, ?)", records)
                db.execute("COMMIT")
            except sqlite3.IntegrityError:
                db.execute("ROLLBACK")
                ids = [r for r, _ in records if r is not None]
                stored = self.run_ids()
                twice = next((r for r in ids if r in stored), None) or next(
                    r for r in ids if ids.count(r) > 1)
                raise ValueError(f"run_id {twice!r} is already in {self} or repeated in "
                                 "rows; nothing was added") from None
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise

    def rows(self) -> list[dict]:
        """Every stored row, in the order they were added."""
        if not self.database.is_file():
            return []
        with self._connect() as db:
            found = db.execute("SELECT n, row FROM rows ORDER BY n").fetchall()
        rows = []
        for n, text in found:
            try:
                rows.append(json.loads(text))
            except json.JSONDecodeError as exc:
                raise DamagedStoreError(f"{self.database}: row {n} is not valid JSON ({exc}); "
                                        f"delete {self.path} to recompute") from None
        return rows

    def run_ids(self) -> set[str]:
        """The ``run_id`` of every stored row that has one."""
        if not self.database.is_file():
            return set()
        with self._connect() as db:
            return {r for (r,) in db.execute("SELECT run_id FROM rows WHERE run_id IS NOT NULL")}

    def checkpoint(self, run_id: str) -> Path:
        """Where the run ``run_id`` keeps its checkpoint while in progress."""
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        return self.checkpoints / f"{run_id}.pt"

    def clean(self) -> list[Path]:
        """Delete what killed processes left behind: temporary files of dead writers, and
        checkpoints of runs whose row is stored. Returns the deleted paths."""
        if not self.checkpoints.is_dir():
            return []
        removed = remove_orphaned_temporaries(self.checkpoints)
        done = self.run_ids()
        for checkpoint in self.checkpoints.glob("*.pt"):
            if checkpoint.stem in done:
                checkpoint.unlink(missing_ok=True)
                removed.append(checkpoint)
        return removed

    def all_or_none(self, count: int, compute: Callable[[], list[dict]]) -> list[dict]:
        """The rows of a family of runs computed together (e.g. one population): the stored
        rows when there are ``count`` of them; otherwise the store is emptied, ``compute()``
        runs, and its ``count`` rows are stored in one transaction."""
        rows = self.rows()
        if len(rows) == count:
            return rows
        self.delete()
        rows = compute()
        if len(rows) != count:
            raise ValueError(f"compute() returned {len(rows)} rows, expected count={count}")
        self.append(*rows)
        return self.rows()

    def delete(self) -> None:
        """Delete the store: its rows and checkpoints."""
        shutil.rmtree(self.path, ignore_errors=True)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        if not self.database.exists() and Path(f"{self.database}-wal").exists():
            # Its write-ahead log would be replayed into a new database of the same name.
            raise DamagedStoreError(f"{self.database} was deleted but its log "
                                    f"{self.database}-wal was not: delete the whole folder "
                                    f"{self.path} to recompute")
        db = None
        try:
            db = _open(self.database)
            yield db
        except sqlite3.OperationalError as exc:  # locked past BUSY_SECONDS, disk full, ...
            raise sqlite3.OperationalError(f"{self.database}: {exc}") from exc
        except sqlite3.DatabaseError as exc:  # not a database, malformed pages
            raise DamagedStoreError(f"{self.database} is damaged or not a results store "
                                    f"({exc}); delete {self.path} to recompute") from None
        finally:
            if db is not None:
                db.close()


def _open(database: Path) -> sqlite3.Connection:
    """A connection to ``database`` in WAL mode, with the rows table.

    SQLite answers "database is locked" at once, without waiting, where waiting could
    deadlock: two connections that have both read and both want to write, as when two
    processes create a store at the same moment (the switch to WAL, the CREATE TABLE). The
    loser retries here, until BUSY_SECONDS.
    """
    deadline = time.monotonic() + BUSY_SECONDS
    while True:
        db = sqlite3.connect(database, timeout=BUSY_SECONDS, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")  # a committed row survives a power cut too
            db.execute(SCHEMA)
            return db
        except BaseException as exc:
            db.close()
            locked = isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)
            if not locked or time.monotonic() > deadline:
                raise
        time.sleep(0.01)


def as_store(store: ResultStore | str | os.PathLike) -> ResultStore:
    """``store`` itself, or the store in the folder it names."""
    return store if isinstance(store, ResultStore) else ResultStore(store)


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
    checkpoint when the workers share that folder. A run that raises, or whose worker
    dies, is submitted again up to ``retries`` times; one that fails every time is
    reported in a :class:`SweepError`, with its traceback, after every other run is
    stored. Without an executor, runs go one after another in this process and the first
    error is raised as it is.
    """
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
    return [row for row in train(configs) if row["run_id"] not in done]


def _attempt(work: Callable[..., list[dict]], args: tuple, attempt: int) -> tuple[bool, object]:
    """``work(*args)`` on a worker: (True, its rows) or (False, its traceback as text).
    ``attempt`` only makes every submission distinct: Dask caches the result of a call it
    has seen, so a retry with the same arguments would return the same failure."""
    try:
        return True, work(*args)
    except Exception:
        return False, traceback.format_exc()


def _execute(work: Callable[..., list[dict]], jobs: dict[str, tuple], store: ResultStore,
             executor: Executor | None, retries: int, progress: bool, desc: str,
             finished: Callable[[str], None] = lambda key: None) -> None:
    """Run ``work(*jobs[key])`` for every key, here or on ``executor``, and store the rows
    each returns in one transaction (then call ``finished(key)``)."""
    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
        raise ValueError(f"retries must be an int >= 0, got {retries!r}")
    if executor is not None and not callable(getattr(executor, "submit", None)):
        raise TypeError("executor must be None or have a submit(fn, *args) method (a "
                        f"concurrent.futures.Executor), got {type(executor).__name__}")
    bar = tqdm(total=len(jobs), desc=desc, disable=not progress or not jobs)
    with bar:
        if executor is None:
            for key, args in jobs.items():
                store.append(*work(*args))
                finished(key)
                bar.update()
            return
        attempts: Counter[str] = Counter()
        pending: dict[object, str] = {}
        failures: dict[str, str] = {}
        broken: BaseException | None = None

        def submit(key: str) -> None:
            nonlocal broken
            attempts[key] += 1
            try:
                pending[executor.submit(_attempt, work, jobs[key], attempts[key])] = key
            except BrokenExecutor as exc:  # e.g. a ProcessPoolExecutor whose worker died
                broken = broken or exc
                failures[key] = "".join(traceback.format_exception(exc))

        for key in jobs:
            submit(key)
        while pending:
            # No reference to a finished future may outlive this line: Dask recomputes the
            # results, held by a worker that dies, of the futures still referenced.
            finished_now = [(pending.pop(f), _outcome(f)) for f in _first_done(pending)]
            for key, (ok, value) in finished_now:
                if ok:
                    store.append(*value)
                    finished(key)
                elif attempts[key] <= retries and broken is None:
                    submit(key)
                    continue
                else:
                    failures[key] = value
                bar.update()
    if broken is not None:
        raise RuntimeError(f"executor: {executor!r} stopped taking work ({broken!r}; a "
                           "ProcessPoolExecutor does after one of its processes dies). "
                           f"{len(jobs) - len(failures)} of {len(jobs)} runs are stored and "
                           "the checkpoints of the others kept: run the sweep again, with "
                           "a new executor, to resume them") from broken
    if failures:
        raise SweepError(failures)


def _outcome(future) -> tuple[bool, object]:
    """What :func:`_attempt` returned, or (False, the traceback) if it never returned."""
    try:
        return future.result()
    except Exception as exc:  # its worker died, or the executor cancelled it
        return False, "".join(traceback.format_exception(exc))


def _first_done(futures: Collection) -> list:
    """The futures that are done, waiting for at least one. ``concurrent.futures`` futures
    (Dask's executor makes these too) are waited on; others (submitit's jobs) polled."""
    if all(isinstance(f, Future) for f in futures):
        return list(wait(futures, return_when=FIRST_COMPLETED).done)
    while not (done := [f for f in futures if f.done()]):
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
