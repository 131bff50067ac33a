"""The three scale presets: ``ci``, ``book`` (default) and ``paper``.

Chapters ask ``current()`` which preset is active (from ``LYAPLIB_SCALE``) and
pick their sizes with :func:`pick`, so one source runs in CI in seconds, builds
the published book in minutes, and reproduces the papers on a GPU.
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


def device() -> torch.device:
    """CUDA when available (Colab, GPU machines), else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def describe() -> str:
    """One line for the top of every chapter: preset and device."""
    return f"lyaplib scale preset: {current()!r} on {device()} (set LYAPLIB_SCALE=ci|book|paper)"
