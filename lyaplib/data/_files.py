"""Finding, verifying and downloading dataset files.

Every dataset is resolved in the same order (DESIGN.md, "Data"): an explicit
``root``, the folder in ``LYAPLIB_DATA``, the project's ``data/`` cache, a
download (only when asked for), and finally an announced fallback. Files are
checked against pinned hashes; downloads land in a temporary file that is moved
into place only once its hash matches, so no half-written file is ever left.
"""

from __future__ import annotations

import hashlib
import os
import sys
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

from .._io import atomic_write

ENV_VAR = "LYAPLIB_DATA"


class DataError(ValueError):
    """A dataset file is missing, corrupt or truncated."""


class DataFallbackWarning(UserWarning):
    """The real dataset was not found; a small substitute is used instead."""


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def git_blob_sha1(path: Path) -> str:
    """The hash git gives a file's contents (what GitHub shows for a blob)."""
    data = Path(path).read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def verify(path: Path, *, sha256_hex: str | None = None, git_sha1: str | None = None,
           size: int | None = None) -> None:
    """Raise :class:`DataError` naming ``path`` unless it has the expected size and hash."""
    path = Path(path)
    if size is not None and path.stat().st_size != size:
        raise DataError(f"{path}: expected {size:,} bytes, found {path.stat().st_size:,} "
                        "(truncated or a different version of the file)")
    if sha256_hex is not None and (found := sha256(path)) != sha256_hex:
        raise DataError(f"{path}: sha256 {found} does not match the expected {sha256_hex} "
                        "(corrupt or a different version of the file)")
    if git_sha1 is not None and (found := git_blob_sha1(path)) != git_sha1:
        raise DataError(f"{path}: git blob sha1 {found} does not match the expected {git_sha1} "
                        "(corrupt or a different version of the file)")


def project_cache() -> Path:
    """``data/`` of the source checkout lyaplib runs from, else ``$XDG_CACHE_HOME/lyaplib``
    (``~/.cache/lyaplib`` when that is unset or, as the XDG spec says, not absolute)."""
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "pyproject.toml").is_file() and (checkout / "lyaplib").is_dir():
        return checkout / "data"
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "lyaplib"


def shown(path: Path, folder: Path, how: str) -> str:
    """``path`` named by the kind of place it was found in, e.g. ``LYAPLIB_DATA/x.txt``, so
    that a printed source does not expose this machine's folders (an explicit root, the
    caller's own choice, is shown as given)."""
    if how == ENV_VAR:
        return f"{ENV_VAR}/{path.relative_to(folder).as_posix()}"
    if folder == project_cache():
        return f"the project's data cache/{path.relative_to(folder).as_posix()}"
    return f"{path} ({how})"


def search_roots(root: str | os.PathLike | None) -> Iterator[tuple[Path, str]]:
    """(folder, how it was chosen) in resolution order; an explicit root is the only one."""
    if root is not None:
        yield Path(root), "the root argument"
        return
    if os.environ.get(ENV_VAR):
        yield Path(os.environ[ENV_VAR]), ENV_VAR
    yield project_cache(), "the project's data cache"


def download(url: str, dest: Path, check: Callable[[Path], None]) -> Path:
    """Fetch ``url`` into ``dest`` atomically: temp file, ``check`` it, then rename."""

    def fetch(out):
        with urllib.request.urlopen(url, timeout=60) as response:
            for block in iter(lambda: response.read(1 << 20), b""):
                out.write(block)

    return atomic_write(dest, fetch, check)


def in_colab() -> bool:
    """True inside Google Colab."""
    return "google.colab" in sys.modules


def download_allowed() -> bool:
    """What the chapters pass as ``download=``: ``LYAPLIB_DOWNLOAD=1|0`` if set, else in Colab."""
    flag = os.environ.get("LYAPLIB_DOWNLOAD", "").strip()
    if flag not in ("", "0", "1"):
        raise ValueError(f"LYAPLIB_DOWNLOAD must be 0 or 1, got {flag!r}")
    return flag == "1" if flag else in_colab()


NETWORK_ERRORS = (urllib.error.URLError, TimeoutError, ConnectionError)


def download_all(files: list[tuple[str, Path, Callable[[Path], None]]],
                 searched: list[str]) -> bool:
    """Download each ``(url, dest, check)`` whose ``dest`` is not there yet.

    Returns False when the network cannot be reached, noting in ``searched`` which
    download failed (the loader then falls back, loudly); a file that arrives but fails its
    ``check`` raises :class:`DataError`.
    """
    for url, dest, check in files:
        if dest.is_file():
            continue
        try:
            download(url, dest, check)
        except NETWORK_ERRORS as err:
            searched.append(f"download from {url} failed ({err})")
            return False
    return True


def announce_fallback(dataset: str, searched: list[str], substitute: str) -> None:
    """Say loudly, in the notebook and in the logs, that a substitute is used."""
    places = "; ".join(searched) or "nowhere"
    message = (f"\n{'!' * 78}\nDATASET NOT FOUND: {dataset}. Searched: {places}.\n"
               f"Using a FALLBACK instead: {substitute}.\nResults will differ from the paper's. "
               f"Set {ENV_VAR} to a folder with the data, or allow the download (download=True; "
               f"`make book` does) where the network is reachable.\n{'!' * 78}")
    warnings.warn(message, DataFallbackWarning, stacklevel=3)
    if sys.stderr is not sys.__stderr__ and sys.__stderr__ is not None:
        # In a Jupyter kernel the warning lands in the notebook only; say it in the log of
        # whoever runs the kernel (jupyter-book, nbval) too, so a build cannot hide it.
        print(f"[lyaplib] DATASET NOT FOUND: {dataset}. Using a FALLBACK: {substitute}.",
              file=sys.__stderr__, flush=True)
