"""The claim audit: execute the chapters across seeds and thread counts, and table every
claim with its value, threshold, margin and spread.

    python tools/claims.py --scale ci --seeds 0 1 2 --threads 1 2      # 6 runs of the book
    python tools/claims.py --chapters 02 09 --seeds 0 1                # some chapters only
    python tools/claims.py --table data/claims/ci.jsonl                # re-table old records

Every ``lyaplib.claims.claim`` call appends a record (``LYAPLIB_CLAIMS``). For each claim
the table gives the worst margin of each run and, across runs, the smallest margin and
the spread (largest minus smallest margin). A claim is WEAK when its smallest margin is
below its spread: a few more seeds or another machine could flip it; "thin" when it is
below two spreads. Exit code 1 when a claim failed or is weak, or a chapter did not run
through.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = ROOT / "chapters"


def execute(chapter: Path, env: dict[str, str], timeout: int) -> str | None:
    """Run one chapter's MyST source in a fresh kernel; the error's last line, or None."""
    import jupytext
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    notebook = jupytext.read(chapter)
    client = NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(chapter.parent)}})
    try:
        client.execute(env=env)
    except CellExecutionError as err:
        lines = [line for line in str(err).strip().splitlines() if line.strip()]
        return lines[-1] if lines else "CellExecutionError"
    except Exception as err:  # a dead or stalled kernel: the chapter did not run through
        return f"{type(err).__name__}: {err}"
    return None


def audit(chapters: list[Path], scale: str, seeds: list[int], threads: list[int],
          records: Path, timeout: int) -> list[str]:
    """Execute every chapter for every (threads, seed); return the failures, one line each."""
    failures = []
    runs = [(n, s) for n in threads for s in seeds]
    for i, (n, s) in enumerate(runs, 1):
        for chapter in chapters:
            name = f"chapters/{chapter.name}"
            env = dict(os.environ, LYAPLIB_SCALE=scale, LYAPLIB_SEED=str(s),
                       LYAPLIB_CHAPTER=chapter.stem, LYAPLIB_CLAIMS=str(records),
                       LYAPLIB_DOWNLOAD="0", OMP_NUM_THREADS=str(n), MKL_NUM_THREADS=str(n))
            print(f"[run {i}/{len(runs)}: seed offset {s}, {n} thread(s)] {name} ...",
                  end="", flush=True)
            began = time.monotonic()
            error = execute(chapter, env, timeout)
            print(f" {time.monotonic() - began:.0f} s" + (f"  FAILED: {error}" if error else ""),
                  flush=True)
            if error:
                failures.append(f"{name} (seed offset {s}, {n} threads): {error}")
    return failures


def table(rows: list[dict]) -> tuple[str, int]:
    """A Markdown table of the claims, and how many of them failed or are weak."""
    runs = sorted({(r["seed"], r["threads"]) for r in rows})
    worst: dict[tuple, dict[tuple, dict]] = defaultdict(dict)  # claim -> run -> worst record
    for r in rows:
        op = r["op"] + (" (log10)" if r.get("log") else "")
        key, run = (r["chapter"], r["claim"], op), (r["seed"], r["threads"])
        seen = worst[key].get(run)
        if seen is None or _margin(r) < _margin(seen):
            worst[key][run] = r
    lines = [f"{len(worst)} claims over {len(runs)} runs (seed offset, threads): "
             + ", ".join(f"({s}, {n})" for s, n in runs), "",
             "| chapter | claim | value (min..max) | op | threshold | min margin | spread "
             "| margin / spread | status |", "|---|---|---|---|---|---|---|---|---|"]
    bad = 0
    for (chapter, statement, op), by_run in sorted(worst.items(), key=lambda kv: kv[0][0]):
        recs = list(by_run.values())
        margins = [_margin(r) for r in recs]
        values = [r["value"] for r in recs]
        thresholds = sorted({r["threshold"] for r in recs})
        finite = [m for m in margins if math.isfinite(m)]
        low = min(margins)
        spread = max(finite) - min(finite) if finite else 0.0  # an infinite margin cannot move
        ratio = math.inf if spread == 0 else low / spread
        status = ("FAILS" if not all(r["passed"] for r in recs)
                  else "WEAK" if low < spread
                  else "thin" if low < 2 * spread else "ok")
        if len(recs) < len(runs):
            status += f" ({len(recs)}/{len(runs)} runs)"
        bad += status.startswith(("FAILS", "WEAK"))
        threshold = (_fmt(thresholds[0]) if len(thresholds) == 1
                     else f"{_fmt(thresholds[0])}..{_fmt(thresholds[-1])}")
        lines.append(f"| {chapter} | {statement} | {_fmt(min(values))}..{_fmt(max(values))} "
                     f"| {op} | {threshold} | {_fmt(low)} | {_fmt(spread)} "
                     f"| {'inf' if math.isinf(ratio) else f'{ratio:.1f}'} | {status} |")
    return "\n".join(lines), bad


def _margin(record: dict) -> float:
    m = record["margin"]
    return -math.inf if m is None or (isinstance(m, float) and math.isnan(m)) else m


def _fmt(x: float) -> str:
    return f"{x:.3g}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", default="ci", choices=["ci", "book", "paper"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--chapters", nargs="+", default=None,
                        help="chapter numbers or names (default: all)")
    parser.add_argument("--out", type=Path, default=None,
                        help="records file (default data/claims/<scale>.jsonl, replaced)")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    parser.add_argument("--table", type=Path, default=None,
                        help="only table an existing records file")
    args = parser.parse_args(argv)
    if any(n < 1 for n in args.threads):
        parser.error(f"--threads must be positive, got {args.threads}")
    if args.table is not None:
        if not args.table.is_file():
            parser.error(f"--table {args.table}: no such file")
        records, failures = args.table, []
    else:
        every = sorted(CHAPTERS.glob("*.md"))  # the numbered chapters, then the appendix
        wanted = every if not args.chapters else [
            c for c in every if any(c.stem.startswith(w) or c.stem == w for w in args.chapters)]
        if not wanted:
            parser.error(f"--chapters {args.chapters} matches none of {[c.stem for c in every]}")
        # absolute: the kernels run in chapters/, where a relative path would point elsewhere
        records = (args.out or ROOT / "data" / "claims" / f"{args.scale}.jsonl").resolve()
        records.parent.mkdir(parents=True, exist_ok=True)
        records.unlink(missing_ok=True)
        failures = audit(wanted, args.scale, args.seeds, args.threads, records, args.timeout)
    rows = [json.loads(line) for line in records.read_text(encoding="utf-8").splitlines()
            if line.strip()]
    text, bad = table(rows)
    print("\n" + text)
    for line in failures:
        print(f"chapter did not run through: {line}")
    print(f"\nrecords: {records}")
    return 1 if bad or failures else 0


if __name__ == "__main__":
    sys.exit(main())
