"""The results store and resumable sweeps: concurrent writers, kill -9, damage, clean-up."""

import os
import random
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from lyaplib import store as store_module
from lyaplib import sweeps, training
from lyaplib._io import _HOST, atomic_write, remove_orphaned_temporaries

# A sweep small enough to run many times: three character-level LSTMs on a periodic text,
# checkpointed after every epoch (lyaplib.training.train), in a process of its own. Writing a
# checkpoint and storing a row are slowed down (as for big networks on a slow disk), so
# that some kills land in the middle of a write and just after a row is stored.
SWEEP = textwrap.dedent("""
    import sys
    import time
    import torch
    from lyaplib import sweeps, tasks, training
    from lyaplib.data import Corpus

    atomic_write, append = training.atomic_write, sweeps.ResultStore.append

    def slow_write(path, write, check=None):
        return atomic_write(path, lambda f: (write(f), time.sleep(0.05)), check)

    def slow_append(store, *rows, **options):
        append(store, *rows, **options)
        time.sleep(0.05)

    training.atomic_write, sweeps.ResultStore.append = slow_write, slow_append

    torch.set_num_threads(1)
    task = tasks.CharTask(Corpus(text="abcde" * 400, vocab=list("abcde"), source="test"),
                          seq_len=20)
    configs = [training.RunConfig(hidden_size=8, epochs=4, batch_size=16, max_batches=4, lr=lr,
                               dropout=0.2, seed=seed)
               for lr, seed in ((1e-2, 0), (2e-2, 1), (5e-3, 2))]

    def run(config, checkpoint):
        history = training.train(config.model(task), task, config, checkpoint=checkpoint,
                              progress=False)
        return {"val_loss": history.val_loss, "train_loss": history.train_loss}

    print("ready", flush=True)
    sweeps.run_sweep(configs, run, sys.argv[1], progress=False)
    print("done", flush=True)
""")


def small_config(**changes) -> training.RunConfig:
    return training.RunConfig(**{**dict(hidden_size=8, epochs=3, batch_size=16), **changes})


def test_sweep_resumes_without_losing_or_repeating_rows(tmp_path):
    store = sweeps.ResultStore(tmp_path / "results")
    configs = [small_config(lr=lr) for lr in (1e-3, 2e-3, 3e-3)]
    calls = []

    def run(config, checkpoint):
        calls.append(config.lr)
        if config.lr == 2e-3 and calls.count(2e-3) == 1:
            raise KeyboardInterrupt  # the session ends in the middle of the second run
        return {"lr_seen": config.lr}

    with pytest.raises(KeyboardInterrupt):
        sweeps.run_sweep(configs, run, store, progress=False)
    assert [r["lr_seen"] for r in store.rows()] == [1e-3]
    rows = sweeps.run_sweep(configs, run, store.path, progress=False)  # a path works too
    assert calls == [1e-3, 2e-3, 2e-3, 3e-3]  # the finished run is not repeated
    assert [r["lr_seen"] for r in rows] == [1e-3, 2e-3, 3e-3] and len(store) == 3
    assert sweeps.run_sweep(configs, run, store, progress=False) == rows and len(calls) == 4
    with pytest.raises(ValueError, match="duplicate"):
        sweeps.run_sweep([configs[0], configs[0]], run, store, progress=False)


def test_append_is_all_or_nothing_and_names_what_is_wrong(tmp_path):
    store = sweeps.ResultStore(tmp_path / "results")
    assert store.rows() == [] and len(store) == 0
    assert not store.path.exists()  # reading creates nothing
    store.append({"run_id": "a", "x": 1.5}, {"x": float("nan")})  # a row without run_id is fine
    assert "a" in store and store.run_ids() == {"a"} and len(store) == 2
    with pytest.raises(TypeError):
        store.append({"run_id": "b"}, {"run_id": "c", "bad": object()})  # not JSON
    with pytest.raises(ValueError, match="'a' is already in"):
        store.append({"run_id": "d"}, {"run_id": "a"})
    with pytest.raises(ValueError, match="'e' is already in .* or repeated"):
        store.append({"run_id": "e"}, {"run_id": "e"})
    with pytest.raises(TypeError, match=r"rows\[0\] must be a dict"):
        store.append([("run_id", "f")])
    with pytest.raises(TypeError, match=r"rows\[0\]\['run_id'\] must be a str"):
        store.append({"run_id": 7})
    assert store.run_ids() == {"a"} and len(store) == 2  # none of the failed rows landed


def test_two_processes_writing_at_once_lose_and_duplicate_nothing(tmp_path):
    path = tmp_path / "results"
    writer = textwrap.dedent("""
        import sys
        from lyaplib.sweeps import ResultStore
        store = ResultStore(sys.argv[1])
        for i in range(200):
            store.append({"run_id": f"{sys.argv[2]}-{i}", "i": i})
    """)
    procs = [subprocess.Popen([sys.executable, "-c", writer, str(path), name]) for name in "ab"]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    rows = sweeps.ResultStore(path).rows()
    ids = [r["run_id"] for r in rows]
    assert len(ids) == len(set(ids)) == 400
    assert set(ids) == {f"{name}-{i}" for name in "ab" for i in range(200)}
    for name in "ab":  # each writer's rows in its own order
        assert [r["i"] for r in rows if r["run_id"].startswith(name)] == list(range(200))


def _hold_write_lock(database) -> sqlite3.Connection:
    """A connection that has begun creating a store at ``database`` (rollback journal, the
    write lock taken) and not yet committed: what a second process sees when two create a
    store at the same moment."""
    database.parent.mkdir(parents=True, exist_ok=True)
    other = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    other.execute(store_module.SCHEMA)
    return other


def test_a_writer_waits_for_another_that_is_creating_the_store(tmp_path):
    # SQLite answers "database is locked" at once, busy timeout or not, to a connection that
    # has read and wants to write while another holds the write lock (the switch to WAL
    # does that): the store must wait and retry, not fail
    store = sweeps.ResultStore(tmp_path / "results")
    other = _hold_write_lock(store.database)
    timer = threading.Timer(0.5, lambda: (other.execute("COMMIT"), other.close()))
    timer.start()
    began = time.monotonic()
    store.append({"run_id": "a"})
    timer.join()
    assert time.monotonic() - began >= 0.4  # it waited for the other writer's commit
    assert store.run_ids() == {"a"}


def test_a_store_locked_for_longer_than_busy_seconds_names_its_file(tmp_path, monkeypatch):
    monkeypatch.setattr(store_module, "BUSY_SECONDS", 0.3)
    store = sweeps.ResultStore(tmp_path / "results")
    other = _hold_write_lock(store.database)
    began = time.monotonic()
    with pytest.raises(sqlite3.OperationalError, match=r"rows\.sqlite: database is locked"):
        store.append({"run_id": "a"})
    assert time.monotonic() - began < 30  # it gave up, after about BUSY_SECONDS
    other.execute("COMMIT")
    other.close()
    assert store.run_ids() == set()  # nothing was half written


def sweep(store, *, kill_after: float | None = None) -> tuple[bool, float]:
    """Run SWEEP into ``store`` in a new process, killing it (SIGKILL) ``kill_after`` seconds
    after its imports; (whether it was killed before it finished, seconds of work)."""
    proc = subprocess.Popen([sys.executable, "-c", SWEEP, str(store)], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "ready"
    began = time.monotonic()
    if kill_after is not None:
        try:
            proc.wait(timeout=kill_after)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return True, time.monotonic() - began
    assert proc.wait(timeout=600) == 0 and proc.stdout.read().strip() == "done"
    return False, time.monotonic() - began


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL and the pid check of the clean-up")
def test_kill_9_at_random_points_then_resume_equals_an_uninterrupted_sweep(tmp_path):
    _, work = sweep(tmp_path / "uninterrupted")
    reference = sweeps.ResultStore(tmp_path / "uninterrupted").rows()
    store = sweeps.ResultStore(tmp_path / "killed")
    draw, kills, attempts = random.Random(0), 0, 0
    while kills < 20:  # kill points spread over the whole sweep
        attempts += 1
        assert attempts < 200, f"only {kills} of {attempts} kills landed before the end"
        killed, _ = sweep(store.path, kill_after=draw.uniform(0, work))
        kills += killed
        if not killed:  # it finished before the kill: start again
            store.delete()
    sweep(store.path)
    assert store.rows() == reference  # every row once, equal to the uninterrupted sweep
    left = sorted(p.name for p in store.checkpoints.iterdir())
    assert left == [], f"leftovers after the sweep: {left}"


def test_deleting_the_store_recomputes_instead_of_resuming_a_stale_checkpoint(tmp_path):
    store = sweeps.ResultStore(tmp_path / "results")
    config = small_config()
    seen = []

    def interrupted(config, checkpoint):
        checkpoint.write_bytes(b"epoch 2 of an old run")
        raise KeyboardInterrupt

    def run(config, checkpoint):
        seen.append(checkpoint.exists())
        return {}

    with pytest.raises(KeyboardInterrupt):
        sweeps.run_sweep([config], interrupted, store, progress=False)
    assert store.checkpoint(config.run_id).is_file()
    store.delete()  # "delete the folder to recompute"
    sweeps.run_sweep([config], run, store, progress=False)
    assert seen == [False]


@pytest.mark.skipif(os.name != "posix", reason="the pid check of the clean-up")
def test_clean_removes_what_killed_processes_left_and_nothing_else(tmp_path):
    store = sweeps.ResultStore(tmp_path / "results")
    store.append({"run_id": "finished"})
    orphan = store.checkpoint("finished")  # killed between storing the row and deleting this
    running = store.checkpoint("running")
    for path in (orphan, running):
        path.write_bytes(b"checkpoint")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    name = f".running.pt~{dead}~{_HOST}~abc123.part"  # as atomic_write names its temporaries
    (store.checkpoints / name).write_bytes(b"half a checkpoint")
    mine = name.replace(f"~{dead}~", f"~{os.getpid()}~")  # this live process's
    (store.checkpoints / mine).write_bytes(b"being written")
    foreign = f".running.pt~{dead}~otherhost~abc123.part"  # another machine's writer
    (store.checkpoints / foreign).write_bytes(b"?")
    removed = sorted(p.name for p in store.clean())
    assert removed == sorted([name, "finished.pt"])
    assert sorted(p.name for p in store.checkpoints.iterdir()) == sorted(
        [foreign, mine, "running.pt"])
    assert remove_orphaned_temporaries(tmp_path) == []  # a folder without temporaries


def test_atomic_write_leaves_no_temporary_behind_when_it_fails(tmp_path):
    path = tmp_path / "file.bin"
    atomic_write(path, lambda f: f.write(b"first"))

    def crash_midway(f):
        f.write(b"sec")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, crash_midway)
    assert path.read_bytes() == b"first" and [p.name for p in tmp_path.iterdir()] == ["file.bin"]


def test_damage_is_reported_with_the_file(tmp_path):
    with pytest.raises(ValueError, match="path: a results store is a folder, but .*old.jsonl"):
        (tmp_path / "old.jsonl").write_text('{"run_id": "a"}\n')
        sweeps.ResultStore(tmp_path / "old.jsonl")

    garbage = sweeps.ResultStore(tmp_path / "garbage")
    garbage.path.mkdir()
    garbage.database.write_bytes(b"this is not an SQLite database" * 100)
    with pytest.raises(sweeps.DamagedStoreError, match=f"{garbage.database}.*delete"):
        garbage.rows()

    bad_row = sweeps.ResultStore(tmp_path / "bad_row")
    bad_row.append({"run_id": "a"}, {"run_id": "b"})
    with sqlite3.connect(bad_row.database) as db:
        db.execute("UPDATE rows SET row = '{\"run_id\": \"b\", \"x\": [1, 2' WHERE run_id = 'b'")
    db.close()
    with pytest.raises(sweeps.DamagedStoreError, match=f"{bad_row.database}: row 2 is not valid"):
        bad_row.rows()

    half_deleted = sweeps.ResultStore(tmp_path / "half_deleted")
    half_deleted.path.mkdir()
    (half_deleted.path / "rows.sqlite-wal").write_bytes(b"log of a deleted database")
    with pytest.raises(sweeps.DamagedStoreError, match="was deleted but its log"):
        half_deleted.append({"run_id": "a"})
