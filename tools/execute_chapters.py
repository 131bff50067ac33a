"""Execute the book's chapters side by side, into the cache that `jupyter-book build` reads.

    python tools/execute_chapters.py [--jobs 2] [--book .] [--store-durations] [CHAPTER ...]

jupyter-book executes one notebook after another, and on 2 cores most of the book's work
(small networks, Python-heavy time loops) leaves the second core half idle. This tool runs
``--jobs`` chapters at once, each in its own kernel with torch's usual thread count, so
every number is the one a serial build computes (torch splits work by its thread count,
not by the cores free), and stores each executed notebook in the Jupyter cache. The book
is then built with ``execute_notebooks: cache`` and finds every chapter there.

Every chapter named (default: each notebook in ``_toc.yml``) is executed, whatever the
cache holds: its old entry is dropped first, so a chapter that fails here is not shown
from an earlier run. Chapters start longest first, by the times in the book's
``.chapter_durations.json`` ({scale: {chapter: seconds}}; ``--store-durations`` writes
this run's), since the longest chapter started last would leave one core idle at the end.
The output names each chapter as jupyter-book does ("chapters/x.md: Executed notebook in
12.3 seconds"), so tools/watchdog.py times and guards it the same way. Exit code 1 if any
chapter failed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

import yaml
from jupyter_cache import get_cache
from jupyter_cache.base import CacheBundleIn
from jupyter_cache.executors.utils import single_nb_execution
from myst_nb.core.config import NbParserConfig
from myst_nb.core.read import create_nb_reader
from myst_parser.config.main import MdParserConfig

DURATIONS = ".chapter_durations.json"


def toc_files(root: Path) -> list[Path]:
    """The documents of ``_toc.yml`` in reading order (root, then every part's files)."""
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    names = [toc["root"]] + [entry["file"] for part in toc.get("parts", [])
                             for entry in part.get("chapters", [])]
    return [root / f"{name}.md" for name in names]


def markdown_config(config: dict) -> MdParserConfig:
    """The MyST parser settings of the book's ``_config.yml`` (its contents)."""
    return MdParserConfig(
        enable_extensions=set(config.get("parse", {}).get("myst_enable_extensions", [])))


def read_notebook(path: Path, md_config: MdParserConfig):
    """``path`` as myst-nb reads it for the build, so that the cache key (the code cells
    with their metadata, and the kernelspec) is the one the build looks up; None if the
    file is plain Markdown, not a notebook."""
    text = path.read_text()
    reader = create_nb_reader(str(path), md_config, NbParserConfig(), text)
    return None if reader is None else reader.read(text)


def execute(notebook, cwd: Path, timeout: int):
    """Run one notebook in a fresh kernel (in a worker process): (notebook, seconds, error)."""
    result = single_nb_execution(notebook, cwd=str(cwd), timeout=timeout, allow_errors=False)
    return notebook, result.time, result.exc_string if result.err is not None else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("chapters", nargs="*", type=Path,
                        help="MyST notebooks to execute (default: every one in _toc.yml)")
    parser.add_argument("--jobs", type=int, default=2, help="chapters executed at once")
    parser.add_argument("--book", type=Path, default=Path(__file__).resolve().parent.parent,
                        help="the book's folder (_toc.yml, _config.yml; default: this repo)")
    parser.add_argument("--store-durations", action="store_true",
                        help=f"write this run's chapter times into the book's {DURATIONS}")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    root = args.book.resolve()
    if not (root / "_toc.yml").is_file() or not (root / "_config.yml").is_file():
        parser.error(f"--book {args.book}: expected a folder with _toc.yml and _config.yml")
    paths = [p.resolve() for p in args.chapters] or toc_files(root)
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        parser.error(f"no such chapter: {', '.join(missing)}")
    config = yaml.safe_load((root / "_config.yml").read_text())
    md_config = markdown_config(config)
    notebooks = {p: nb for p in paths if (nb := read_notebook(p, md_config)) is not None}
    timeout = int(config.get("execute", {}).get("timeout", 900))
    scale = os.environ.get("LYAPLIB_SCALE", "").strip().lower() or "book"  # as lyaplib.scale
    durations = root / DURATIONS

    # where myst-nb looks by default: the parent of the HTML output folder
    cache = get_cache(root / "_build" / ".jupyter_cache")
    for notebook in notebooks.values():
        try:
            cache.remove_cache(cache.match_cache_notebook(notebook).pk)
        except KeyError:
            pass  # not cached yet

    known = json.loads(durations.read_text()).get(scale, {}) if durations.is_file() else {}
    order = sorted(notebooks, key=lambda p: -known.get(name(p, root), 0.0))  # stable: TOC
    if args.jobs > 1:
        # Busy-waiting OpenMP threads of one kernel would take the cores the other kernel's
        # threads need (measured: two 2-thread jobs 24 x slower than one after the other);
        # sleeping ones cost a single job 7 % and let two run 1.4 x faster than in turn.
        os.environ["OMP_WAIT_POLICY"] = os.environ.get("OMP_WAIT_POLICY") or "PASSIVE"

    failed, seconds = [], {}
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        running = {}
        for path in order:
            print(f"{name(path, root)}.md: Executing notebook ({args.jobs} at a time)",
                  flush=True)
            running[pool.submit(execute, notebooks[path], path.parent, timeout)] = path
            if len(running) == args.jobs:
                failed += collect(running, cache, seconds, root)
        while running:
            failed += collect(running, cache, seconds, root)

    if args.store_durations and seconds:
        stored = json.loads(durations.read_text()) if durations.is_file() else {}
        stored[scale] = {**stored.get(scale, {}), **{k: round(v, 1) for k, v in seconds.items()}}
        partial = durations.with_suffix(".partial")
        partial.write_text(json.dumps(stored, indent=1, sort_keys=True) + "\n")
        os.replace(partial, durations)  # whole or not at all
    if failed:
        print(f"FAILED: {', '.join(failed)}", file=sys.stderr, flush=True)
    return 1 if failed else 0


def name(path: Path, root: Path) -> str:
    """The document name as the builder prints it: chapters/08_aelle."""
    return path.relative_to(root).with_suffix("").as_posix()


def collect(running: dict, cache, seconds: dict, root: Path) -> list[str]:
    """Wait for a chapter to finish; cache the executed ones, report the failed (names)."""
    done, _ = wait(running, return_when=FIRST_COMPLETED)
    failed = []
    for future in done:
        path = running.pop(future)
        label = name(path, root)
        try:
            notebook, elapsed, error = future.result()
        except Exception as exc:  # the worker itself died (killed, out of memory)
            notebook, elapsed, error = None, 0.0, repr(exc)
        if error is not None:
            print(f"{label}.md: Executing notebook failed:\n{error}", flush=True)
            failed.append(label)
            continue
        cache.cache_notebook_bundle(CacheBundleIn(notebook, str(path),
                                                  data={"execution_seconds": elapsed}),
                                    check_validity=False, overwrite=True)
        seconds[label] = elapsed
        print(f"{label}.md: Executed notebook in {elapsed:.2f} seconds", flush=True)
    return failed


if __name__ == "__main__":
    sys.exit(main())
