"""The book's claims, checked where they are computed and recorded for the audit.

A chapter states a claim in its text and checks it in code::

    from lyaplib.claims import claim
    claim("the logistic map at r = 4 separates at rate ln 2", abs(slope - math.log(2)), "<", 0.15)

``claim`` compares ``value OP threshold`` element by element (numbers, numpy arrays or
tensors, broadcast against each other) and raises :class:`ClaimError`, an
``AssertionError``, naming the claim, the worst element, the threshold and the margin.
The *margin* is how far the worst element is inside the threshold: ``threshold - value``
for ``<`` and ``<=``, ``value - threshold`` for ``>`` and ``>=``, ``-|value - threshold|``
for ``==``. With ``log=True`` (positive quantities that vary by factors, such as ratios of
errors or of timings) value and threshold are compared as ``log10``, so the margin is in
decades. A claim whose margin is smaller than the value's spread across seeds and thread
counts is not a claim; ``tools/claims.py`` measures that spread.

When ``LYAPLIB_CLAIMS`` names a file, every claim (passed or failed) appends one JSON
line to it: the chapter (``LYAPLIB_CHAPTER``), the statement, operator, worst value,
threshold, margin, preset, seed offset and thread count.
"""

from __future__ import annotations

import json
import operator
import os
from typing import Any

import numpy as np
import torch

from . import scale

RECORD_VAR, CHAPTER_VAR = "LYAPLIB_CLAIMS", "LYAPLIB_CHAPTER"
_OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
        "==": operator.eq}


class ClaimError(AssertionError):
    """A claim of the book does not hold."""


def _array(x: Any, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float64).numpy()
    out = np.asarray(x, dtype=np.float64)
    if out.size == 0:
        raise ValueError(f"{name} is empty: a claim needs at least one number")
    return out


def margins(value: Any, op: str, threshold: Any, log: bool = False) -> np.ndarray:
    """Element-wise margins of ``value OP threshold`` (positive, or 0 for <=, >=, ==: holds);
    in decades with ``log``."""
    if op not in _OPS:
        raise ValueError(f"op must be one of {sorted(_OPS)}, got {op!r}")
    v, t = np.broadcast_arrays(_array(value, "value"), _array(threshold, "threshold"))
    if log:
        if not (t > 0).all():
            raise ValueError(f"log=True needs a positive threshold, got {t.min():g}")
        with np.errstate(divide="ignore", invalid="ignore"):  # value <= 0: -inf or nan
            v, t = np.log10(v), np.log10(t)
    if op in ("<", "<="):
        return t - v
    if op in (">", ">="):
        return v - t
    return -np.abs(v - t)


def claim(statement: str, value: Any, op: str, threshold: Any, *, log: bool = False) -> float:
    """Check ``value OP threshold`` for every element; record it; return the worst margin
    (in decades with ``log``).

    Raises :class:`ClaimError` if any element fails (NaN fails), naming ``statement``.
    """
    if not isinstance(statement, str) or not statement.strip():
        raise ValueError(f"statement must be a non-empty string, got {statement!r}")
    m = margins(value, op, threshold, log)
    v, t = np.broadcast_arrays(_array(value, "value"), _array(threshold, "threshold"))
    held = _OPS[op](v, t)
    worst = int(np.argmin(np.where(np.isnan(m), -np.inf, m)))
    value_w, threshold_w, margin_w = (float(a.flat[worst]) for a in (v, t, m))
    passed = bool(held.all())
    _record(statement, op, value_w, threshold_w, margin_w, passed, m.size, log)
    if not passed:
        where = f" (worst of {m.size} elements, index {worst})" if m.size > 1 else ""
        unit = " decades" if log else ""
        raise ClaimError(f"claim does not hold: {statement}: {value_w:.6g} {op} "
                         f"{threshold_w:.6g} is false{where}; margin {margin_w:.3g}{unit}")
    return margin_w


def _record(statement: str, op: str, value: float, threshold: float, margin: float,
            passed: bool, size: int, log: bool) -> None:
    path = os.environ.get(RECORD_VAR)
    if not path:
        return
    row = {"chapter": os.environ.get(CHAPTER_VAR, ""), "claim": statement, "op": op,
           "value": value, "threshold": threshold, "margin": margin, "log": log,
           "passed": passed,
           "elements": size, "scale": scale.current(), "seed": scale.seed_offset(),
           "threads": torch.get_num_threads()}
    line = json.dumps(row, allow_nan=True) + "\n"
    # One write of one line, in append mode: records of concurrent kernels do not interleave.
    with open(path, "a", encoding="utf-8") as f:
        f.write(line)
