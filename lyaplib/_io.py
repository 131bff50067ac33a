"""Writing files so that a crash never leaves a half-written one behind, and cleaning up
the temporary files of writers that were killed."""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

# A temporary file names its writer: ".<name>~<pid>~<host>~<random>.part". A writer that
# was killed (kill -9 runs no clean-up) is then recognisable as dead, on this host.
_HOST = re.sub(r"\W", "", socket.gethostname()) or "host"
_TEMPORARY = re.compile(r"^\..+~(\d+)~(\w+)~\w+\.part$")


def stable_id(settings: dict) -> str:
    """12 hex digits that name ``settings`` (JSON-able) across processes and machines."""
    canonical = json.dumps(settings, sort_keys=True)
    return hashlib.sha1(canonical.encode()).hexdigest()[:12]


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object],
                 check: Callable[[Path], None] | None = None) -> Path:
    """Write through ``write(f)`` into a temporary file beside ``path``, run ``check`` on
    it, then rename it into place; on any error the temporary file is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}~{os.getpid()}~{_HOST}~",
                               suffix=".part")
    try:
        os.chmod(tmp, 0o644)  # mkstemp makes it private; these are ordinary files
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if check is not None:
            check(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def remove_orphaned_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files in ``folder`` whose writer (on this host) is dead;
    return them. Files of live writers, of other hosts and of other programs stay."""
    removed = []
    for candidate in Path(folder).glob(".*.part"):
        match = _TEMPORARY.match(candidate.name)
        if match is None or match.group(2) != _HOST or _alive(int(match.group(1))):
            continue
        candidate.unlink(missing_ok=True)
        removed.append(candidate)
    return removed


def _alive(pid: int) -> bool:
    if os.name != "posix":
        return True  # os.kill(pid, 0) would terminate the process on Windows
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    return True
