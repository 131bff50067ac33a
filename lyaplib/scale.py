"""The three scale presets: ``ci``, ``book`` (default) and ``paper``; seeds.

Chapters ask ``current()`` which preset is active (from ``LYAPLIB_SCALE``) and
pick their sizes with :func:`pick`, so one source runs in CI in seconds, builds
the published book in minutes, and reproduces the papers on a GPU.

Every random draw of a chapter goes through :func:`seed` or :func:`generator`, which
add the offset in ``LYAPLIB_SEED`` (default 0): the claim audit (``tools/claims.py``)
re-runs the book with other offsets to measure how much each number moves.
"""

from __future__ import annotations

import os
from typing import TypeVar

import torch

SCALES = ("ci", "book", "paper")
DEFAULT = "book"

T = TypeVar("T")


def current() -> str:
    """The active preset, read from the environment variable ``LYAPLIB_SCALE``."""
    name = os.environ.get("LYAPLIB_SCALE", DEFAULT).strip().lower() or DEFAULT
    if name not in SCALES:
        raise ValueError(f"LYAPLIB_SCALE must be one of {SCALES}, got {name!r}")
    return name


def pick(ci: T, book: T, paper: T) -> T:
    """Return the value for the active preset, e.g. ``T = pick(200, 2_000, 10_000)``."""
    return {"ci": ci, "book": book, "paper": paper}[current()]


def seed_offset() -> int:
    """The integer in ``LYAPLIB_SEED`` (default 0), added to every seed of the chapters."""
    raw = os.environ.get("LYAPLIB_SEED", "").strip() or "0"
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"LYAPLIB_SEED must be an integer, got {raw!r}") from None


def seed(n: int = 0) -> int:
    """Seed ``n`` of a chapter, shifted by the offset in ``LYAPLIB_SEED``."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"seed must be a non-negative int, got {n!r}")
    return n + seed_offset()


def generator(n: int = 0) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with :func:`seed` ``(n)``."""
    return torch.Generator().manual_seed(seed(n))


def tag() -> str:
    """The preset, with the seed offset when there is one (``"ci"``, ``"book_seed2"``): the
    key of a chapter's cached results, so that runs of other seeds never mix with them."""
    return current() + (f"_seed{seed_offset()}" if seed_offset() else "")


def device() -> torch.device:
    """CUDA when available (Colab, GPU machines), else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def analysis_dtype(on: torch.device | str | None = None) -> torch.dtype:
    """The dtype the library's trackers default to on device ``on`` (default :func:`device`):
    float64 on the CPU, where it costs about 2x and keeps saturated units' derivatives
    far from underflow; float32 on CUDA, where float64 runs at 1/32 of the float32 rate on
    a T4 and 1/64 on an L4 (an A100: 1/2). The engine sums log R_ii in float64 either way;
    pass ``dtype=torch.float64`` where a chapter shows it is needed (saturated networks)."""
    return torch.float32 if torch.device(on or device()).type == "cuda" else torch.float64


def describe() -> str:
    """One line for the top of every chapter: the preset, the device (with the GPU's name)
    and the versions of lyaplib and torch."""
    from lyaplib import __version__  # noqa: PLC0415 (lyaplib imports this module)

    where = device()
    if where.type == "cuda":
        where = f"{where} ({torch.cuda.get_device_name(where)})"
    offset = f", seed offset {seed_offset()}" if seed_offset() else ""
    return (f"lyaplib {__version__} (torch {torch.__version__}), scale preset {current()!r} "
            f"on {where}{offset} (set LYAPLIB_SCALE=ci|book|paper)")
