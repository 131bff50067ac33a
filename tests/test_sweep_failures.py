"""The sweep driver where runs and executors misbehave: a run that exits or is
interrupted, futures cancelled under it, rows that cannot be stored, a process pool whose
worker dies, two drivers on one store, a store that may only be read. Each ends in a
named error or the full set of rows, never a silent exit, a hang or a lost row."""

import os
import sys
import threading
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor

import pytest
import torch

from lyaplib import store as store_module
from lyaplib import sweeps, training

CONFIGS = [training.RunConfig(hidden_size=8, epochs=1, lr=lr, seed=seed)
           for seed, lr in enumerate((1e-2, 2e-2, 5e-3))]


def row(config, checkpoint) -> dict:
    return {"lr": config.lr}


def exits(config, checkpoint) -> dict:
    if config.seed == 1:
        sys.exit(0)
    return row(config, checkpoint)


def interrupted(config, checkpoint) -> dict:
    if config.seed == 1:
        raise KeyboardInterrupt
    return row(config, checkpoint)


def tensor_row(config, checkpoint) -> dict:
    return {"lr": torch.tensor(config.lr)} if config.seed == 1 else row(config, checkpoint)


def dies_once(config, checkpoint) -> dict:
    """The first attempt of seed 0 ends its process at once (no exception, no cleanup)."""
    mark = checkpoint.with_suffix(".died")
    if config.seed == 0 and not mark.exists():
        mark.touch()
        os._exit(3)
    return row(config, checkpoint)


def finishes_within(seconds: float, fn) -> object:
    """fn() in a thread; fails the test if it has not returned within ``seconds``."""
    out = {}
    thread = threading.Thread(target=lambda: out.update(value=_catch(fn)), daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s (a hang)"
    return out["value"]


def _catch(fn):
    try:
        return fn()
    except BaseException as exc:  # noqa: BLE001 - handed back to the test to inspect
        return exc


@pytest.mark.parametrize("run", [exits, interrupted], ids=["sys.exit", "KeyboardInterrupt"])
def test_a_worker_that_exits_or_is_interrupted_fails_its_run_only(tmp_path, run):
    store = sweeps.ResultStore(tmp_path / "results")
    with ProcessPoolExecutor(2) as pool, pytest.raises(sweeps.SweepError) as failed:
        sweeps.run_sweep(CONFIGS, run, store, executor=pool, retries=1, progress=False)
    assert list(failed.value.failures) == [CONFIGS[1].run_id]
    assert ("SystemExit" if run is exits else "KeyboardInterrupt") in str(failed.value)
    assert store.run_ids() == {CONFIGS[0].run_id, CONFIGS[2].run_id}


def test_a_run_that_exits_in_this_process_is_an_error_naming_it(tmp_path):
    with pytest.raises(RuntimeError, match=f"run {CONFIGS[1].run_id} called sys.exit"):
        sweeps.run_sweep(CONFIGS, exits, tmp_path / "results", progress=False)


class Cancelling:
    """An executor whose futures come back cancelled (as after shutdown(cancel_futures))."""

    def submit(self, fn, *args):
        future = Future()
        future.cancel()
        return future


def test_cancelled_futures_end_the_sweep_instead_of_hanging(tmp_path):
    failed = finishes_within(30, lambda: sweeps.run_sweep(
        CONFIGS, row, tmp_path / "results", executor=Cancelling(), progress=False))
    assert isinstance(failed, sweeps.SweepError)
    assert set(failed.failures) == {c.run_id for c in CONFIGS}
    assert "CancelledError" in str(failed)


def test_a_pool_shut_down_under_the_sweep_ends_it_with_a_named_error(tmp_path):
    pool = ThreadPoolExecutor(1)

    def shuts_down(config, checkpoint):
        if config.seed == 0:
            pool.shutdown(wait=False, cancel_futures=True)
        return row(config, checkpoint)

    failed = finishes_within(30, lambda: sweeps.run_sweep(
        CONFIGS, shuts_down, tmp_path / "results", executor=pool, progress=False))
    assert isinstance(failed, RuntimeError) and "stopped taking work" in str(failed)
    assert sweeps.ResultStore(tmp_path / "results").run_ids() == {CONFIGS[0].run_id}


def test_a_row_that_cannot_be_stored_names_its_run_and_loses_no_other(tmp_path):
    with pytest.raises(TypeError, match=f"run {CONFIGS[1].run_id} returned rows that cannot"):
        sweeps.run_sweep(CONFIGS, tensor_row, tmp_path / "serial", progress=False)
    store = sweeps.ResultStore(tmp_path / "pool")
    with ThreadPoolExecutor(1) as pool, pytest.raises(sweeps.SweepError) as failed:
        sweeps.run_sweep(CONFIGS, tensor_row, store, executor=pool, progress=False)
    assert list(failed.value.failures) == [CONFIGS[1].run_id]
    assert "not JSON serializable" in str(failed.value)
    assert store.run_ids() == {CONFIGS[0].run_id, CONFIGS[2].run_id}


def test_a_process_pool_whose_worker_dies_is_replaced_and_every_run_stored(tmp_path):
    store = sweeps.ResultStore(tmp_path / "results")
    with ProcessPoolExecutor(2) as pool:
        rows = sweeps.run_sweep(CONFIGS, dies_once, store, executor=pool, progress=False)
    assert [r["lr"] for r in rows] == [c.lr for c in CONFIGS]
    assert store.checkpoint(CONFIGS[0].run_id).with_suffix(".died").exists()


def test_two_drivers_on_one_store_both_finish_with_each_run_stored_once(tmp_path):
    results = []

    def drive():
        results.append(sweeps.run_sweep(CONFIGS, row, tmp_path / "results", progress=False))

    drivers = [threading.Thread(target=drive) for _ in range(2)]
    for driver in drivers:
        driver.start()
    for driver in drivers:
        driver.join(60)
    assert len(results) == 2 and results[0] == results[1]
    assert len(sweeps.ResultStore(tmp_path / "results")) == len(CONFIGS)


def test_reading_a_store_never_writes(tmp_path, monkeypatch):
    store = sweeps.ResultStore(tmp_path / "results")
    store.append({"run_id": "a", "x": 1})

    def no_writes(database):
        raise AssertionError("a read opened the store for writing")

    monkeypatch.setattr(store_module, "_open", no_writes)
    assert store.rows() == [{"run_id": "a", "x": 1}] and len(store) == 1
    assert store.run_ids() == {"a"}


def test_a_population_whose_rows_miss_their_run_ids_is_named(tmp_path):
    def no_ids(configs):
        return [{"lr": c.lr} for c in configs]

    with pytest.raises(TypeError, match="train must return one dict per config"):
        sweeps.run_population_sweep([CONFIGS], no_ids, tmp_path / "results", progress=False)
