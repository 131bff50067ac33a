"""Sweeps on executors: a process pool and a Dask cluster give the serial sweep's rows,
workers that die lose and duplicate nothing, a run that always fails is reported."""

import functools
import os
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from lyaplib import store as store_module
from lyaplib import sweeps, tasks, training
from lyaplib.data import Corpus

TASK = tasks.CharTask(Corpus(text="abcde" * 400, vocab=list("abcde"), source="test"),
                      seq_len=20)
CONFIGS = [training.RunConfig(hidden_size=8, epochs=3, batch_size=16, max_batches=4, lr=lr,
                              dropout=0.2, seed=seed)
           for seed, lr in enumerate((1e-2, 2e-2, 5e-3, 3e-3))]


def train_row(config: training.RunConfig, checkpoint: Path) -> dict:
    """One run as the chapters do it: trained with a checkpoint after every epoch."""
    history = training.train(config.model(TASK), TASK, config, checkpoint=checkpoint,
                             progress=False)
    return {"val_loss": history.val_loss, "train_loss": history.train_loss,
            "lr": config.lr, "pid": os.getpid()}


def die_once_checkpointed(config: training.RunConfig, checkpoint: Path,
                          seeds: tuple[int, ...]) -> dict:
    """``train_row``, but the first attempt of each of ``seeds`` kills its own process
    (kill -9) as soon as its first checkpoint is on disk. Next to the checkpoint it counts
    its attempts (a line each in ``.attempts``), and leaves a ``.killed`` mark, and a
    ``.resumed`` one when a later attempt finds the checkpoint."""
    with checkpoint.with_suffix(".attempts").open("a") as attempts:
        attempts.write(f"{os.getpid()}\n")
    killed = checkpoint.with_suffix(".killed")
    if killed.exists() and checkpoint.exists():
        checkpoint.with_suffix(".resumed").touch()
    if config.seed in seeds and not killed.exists():

        def kill_when_checkpointed():
            while not checkpoint.exists():
                time.sleep(0.005)
            killed.touch()
            os.kill(os.getpid(), signal.SIGKILL)

        threading.Thread(target=kill_when_checkpointed, daemon=True).start()
    return train_row(config, checkpoint)


def same_results(rows: list[dict]) -> list[dict]:
    """The rows without what depends on where they ran."""
    return [{k: v for k, v in row.items() if k != "pid"} for row in rows]


@pytest.fixture(scope="module")
def serial(tmp_path_factory) -> list[dict]:
    """The rows of the sweep in this process, on one torch thread as every worker below:
    the thread count changes how float sums are split, hence their last bits."""
    store = tmp_path_factory.mktemp("serial") / "results"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return same_results(sweeps.run_sweep(CONFIGS, train_row, store, progress=False))
    finally:
        torch.set_num_threads(threads)


def one_thread_pool() -> ProcessPoolExecutor:
    return ProcessPoolExecutor(2, initializer=torch.set_num_threads, initargs=(1,))


def test_a_process_pool_sweep_equals_the_serial_one(tmp_path, serial):
    with one_thread_pool() as pool:
        rows = sweeps.run_sweep(CONFIGS, train_row, tmp_path / "results", executor=pool,
                                progress=False)
    assert same_results(rows) == serial
    assert len({row["pid"] for row in rows} - {os.getpid()}) >= 1  # it ran elsewhere
    assert not list((tmp_path / "results" / store_module.CHECKPOINTS).iterdir())


def test_a_broken_process_pool_is_replaced_and_the_killed_run_resumes(tmp_path, serial):
    store = sweeps.ResultStore(tmp_path / "results")
    run = functools.partial(die_once_checkpointed, seeds=(0,))
    with one_thread_pool() as pool:  # kill -9 of a worker breaks the pool for good
        rows = sweeps.run_sweep(CONFIGS, run, store, executor=pool, progress=False)
    assert same_results(rows) == serial and len(store) == len(CONFIGS)
    assert store.checkpoint(CONFIGS[0].run_id).with_suffix(".resumed").exists()


def test_a_run_that_keeps_failing_is_reported_with_its_traceback(tmp_path):
    calls = []

    def flaky(config, checkpoint):
        calls.append(config.seed)
        if config.seed == 1 or (config.seed == 2 and calls.count(2) == 1):
            raise ArithmeticError(f"seed {config.seed} failed")  # 2 fails only once
        return {"lr": config.lr}

    store = sweeps.ResultStore(tmp_path / "results")
    with ThreadPoolExecutor(2) as pool, pytest.raises(sweeps.SweepError) as failed:
        sweeps.run_sweep(CONFIGS, flaky, store, executor=pool, retries=3, progress=False)
    assert list(failed.value.failures) == [CONFIGS[1].run_id]
    assert "ArithmeticError: seed 1 failed" in failed.value.failures[CONFIGS[1].run_id]
    assert "in flaky" in str(failed.value)  # the traceback names the failing function
    assert sorted(calls) == [0, 1, 1, 1, 1, 2, 2, 3]  # 1 + retries attempts, no more
    assert sorted(row["lr"] for row in store.rows()) == sorted(CONFIGS[i].lr for i in (0, 2, 3))


class Job:
    """What submitit's executors return: not a concurrent.futures.Future, but with
    ``done()`` and ``result()``."""

    def __init__(self, fn, args):
        self.value = fn(*args)

    def done(self) -> bool:
        return True

    def result(self):
        return self.value


class JobExecutor:
    def submit(self, fn, *args):
        return Job(fn, args)


def test_an_executor_of_jobs_that_are_not_futures_works(tmp_path, serial):
    rows = sweeps.run_sweep(CONFIGS, train_row, tmp_path / "results", executor=JobExecutor(),
                            progress=False)
    assert same_results(rows) == serial


def test_a_population_sweep_on_an_executor_equals_the_serial_one(tmp_path):
    def train(configs):
        return [{"run_id": c.run_id, "lr": c.lr, "size": len(configs)} for c in configs]

    populations = [CONFIGS[:3], CONFIGS[3:]]
    expected = sweeps.run_population_sweep(populations, train, tmp_path / "serial",
                                           progress=False)
    with ThreadPoolExecutor(2) as pool:
        rows = sweeps.run_population_sweep(populations, train, tmp_path / "pool",
                                           executor=pool, progress=False)
    assert rows == expected and [r["size"] for r in rows] == [3, 3, 3, 1]


def test_bad_executor_arguments_are_refused_by_name(tmp_path):
    with pytest.raises(TypeError, match="executor must be None or have a submit"):
        sweeps.run_sweep(CONFIGS, train_row, tmp_path / "a", executor=object(),
                         progress=False)
    with pytest.raises(ValueError, match="retries must be an int >= 0, got -1"):
        sweeps.run_sweep(CONFIGS, train_row, tmp_path / "b", executor=JobExecutor(),
                         retries=-1, progress=False)


@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("distributed")
    # The test module travels by value: the workers cannot import it by name.
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        with distributed.Client(cluster) as client:
            yield client


def test_a_local_cluster_sweep_equals_the_serial_one(tmp_path, serial, cluster):
    rows = sweeps.run_sweep(CONFIGS, train_row, tmp_path / "results",
                            executor=cluster.get_executor(), progress=False)
    assert same_results(rows) == serial
    assert os.getpid() not in {row["pid"] for row in rows}  # the workers ran them


def test_killed_workers_lose_and_duplicate_nothing(tmp_path, serial, cluster):
    store = sweeps.ResultStore(tmp_path / "results")
    run = functools.partial(die_once_checkpointed, seeds=(0, 2))
    rows = sweeps.run_sweep(CONFIGS, run, store, executor=cluster.get_executor(),
                            progress=False)
    assert same_results(rows) == serial  # resumed runs end exactly where uninterrupted end
    assert len(store) == len(CONFIGS) and len(store.run_ids()) == len(CONFIGS)
    killed = sorted(p.stem for p in store.checkpoints.glob("*.killed"))
    assert killed == sorted(c.run_id for c in CONFIGS if c.seed in (0, 2))
    assert sorted(p.stem for p in store.checkpoints.glob("*.resumed")) == killed
    attempts = {c.run_id: len(store.checkpoint(c.run_id).with_suffix(".attempts")
                              .read_text().split()) for c in CONFIGS}
    # A run is started again only when it was killed: Dask does not recompute finished runs
    # whose rows are in the dead worker's memory (the sweep lets go of their futures).
    assert attempts == {c.run_id: 1 + (c.run_id in killed) for c in CONFIGS}
    assert not list(store.checkpoints.glob("*.pt"))


def test_the_chapters_executor_comes_from_the_environment(tmp_path, serial, cluster,
                                                          monkeypatch):
    monkeypatch.delenv(sweeps.SCHEDULER_VARIABLE, raising=False)
    assert sweeps.executor_from_env() is None
    monkeypatch.setenv(sweeps.SCHEDULER_VARIABLE, cluster.scheduler.address)
    rows = sweeps.run_sweep(CONFIGS, train_row, tmp_path / "results",
                            executor=sweeps.executor_from_env(), progress=False)
    assert same_results(rows) == serial
    assert os.getpid() not in {row["pid"] for row in rows}


def always_die(config: training.RunConfig, checkpoint: Path) -> dict:
    """Kills its worker (kill -9) on every attempt, counting them (a line each in
    ``.attempts`` beside the checkpoint)."""
    with checkpoint.with_suffix(".attempts").open("a") as attempts:
        attempts.write(f"{os.getpid()}\n")
    os.kill(os.getpid(), signal.SIGKILL)
    return {}


def test_a_run_that_keeps_killing_its_worker_is_reported_not_retried_forever(tmp_path):
    distributed = pytest.importorskip("distributed")
    import cloudpickle
    import dask

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    # Dask itself gives up on a task after this many worker deaths (default 3); then the
    # sweep resubmits it, `retries` times.
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), \
            distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                     dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        store = sweeps.ResultStore(tmp_path / "results")
        # That run alone: a worker's death fails the other tasks it held too, with this
        # setting (the rows of the others are stored: the thread-pool test above).
        with pytest.raises(sweeps.SweepError) as failed:
            sweeps.run_sweep(CONFIGS[1:2], always_die, store,
                             executor=client.get_executor(), retries=1, progress=False)
    assert list(failed.value.failures) == [CONFIGS[1].run_id]
    assert "KilledWorker" in failed.value.failures[CONFIGS[1].run_id]
    attempts = store.checkpoint(CONFIGS[1].run_id).with_suffix(".attempts").read_text()
    assert len(attempts.split()) == 2  # 1 + retries, each one worker's death
    assert len(store) == 0
