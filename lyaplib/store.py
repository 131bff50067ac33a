"""The results store: a folder holding an SQLite database of result rows (JSON-ready
dicts, one per trained network) and the checkpoints of the runs still in progress.

Many processes may read and write one store at once (SQLite in write-ahead-log mode; each
append is one transaction), and a process killed at any moment loses at most the run it
was in: a row is either stored whole or not at all, and that run resumes from its last
checkpoint. Because the checkpoints live inside the store, deleting the store's folder
recomputes everything (a stale checkpoint can never be resumed into a new store).
Reading never writes: a store in a read-only folder can be read.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ._io import remove_orphaned_temporaries

DATABASE = "rows.sqlite"
CHECKPOINTS = "checkpoints"
SCHEMA = ("CREATE TABLE IF NOT EXISTS rows (n INTEGER PRIMARY KEY AUTOINCREMENT, "
          "run_id TEXT UNIQUE, row TEXT NOT NULL)")
BUSY_SECONDS = 120.0  # how long a writer waits for another's transaction before failing


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
        with self._connect(write=False) as db:
            return db.execute("SELECT COUNT(*) FROM rows").fetchone()[0]

    def __contains__(self, run_id: str) -> bool:
        return run_id in self.run_ids()

    def append(self, *rows: dict, skip_stored: bool = False) -> None:
        """Add ``rows`` in one transaction: all are stored, or (on any error) none.

        Raises ``ValueError`` naming a ``run_id`` that is already stored or repeated
        (with ``skip_stored``, such rows are dropped instead: another process stored the
        same run first), and ``TypeError`` for a row that is not a JSON-ready dict.
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
                verb = "INSERT OR IGNORE" if skip_stored else "INSERT"
                db.executemany(f"{verb} INTO rows (run_id, row) VALUES (?, ?)", records)
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
        with self._connect(write=False) as db:
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
        with self._connect(write=False) as db:
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
    def _connect(self, write: bool = True) -> Iterator[sqlite3.Connection]:
        if not self.database.exists() and Path(f"{self.database}-wal").exists():
            # Its write-ahead log would be replayed into a new database of the same name.
            raise DamagedStoreError(f"{self.database} was deleted but its log "
                                    f"{self.database}-wal was not: delete the whole folder "
                                    f"{self.path} to recompute")
        db = None
        try:
            db = _open(self.database) if write else _open_to_read(self.database)
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


def _open_to_read(database: Path) -> sqlite3.Connection:
    """A read-only connection: it writes nothing, so a store in a folder this process may
    not write (a shared, read-only copy) can be read. SQLite still needs the log's index
    file beside the database; where it cannot create that, a database without an unmerged
    log is opened as immutable (nothing is lost: every row is in the database file)."""
    uri = database.absolute().as_uri()
    db = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=BUSY_SECONDS,
                         isolation_level=None)
    try:
        db.execute("SELECT 1 FROM rows LIMIT 1")
        return db
    except sqlite3.OperationalError as exc:
        db.close()
        if "no such table" in str(exc):  # another process is creating the store: empty
            empty = sqlite3.connect(":memory:", isolation_level=None)
            empty.execute(SCHEMA)
            return empty
        wal = Path(f"{database}-wal")
        if os.access(database.parent, os.W_OK) or (wal.exists() and wal.stat().st_size):
            raise
    return sqlite3.connect(f"{uri}?immutable=1", uri=True, isolation_level=None)


def as_store(store: ResultStore | str | os.PathLike) -> ResultStore:
    """``store`` itself, or the store in the folder it names."""
    return store if isinstance(store, ResultStore) else ResultStore(store)
