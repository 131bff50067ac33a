"""Run a command that executes chapters, and stop a chapter that has stalled.

    python tools/watchdog.py [--stall SECONDS] -- jupyter-book build . -W -n --keep-going
    python tools/watchdog.py -- python -m pytest --nbval-lax chapters

A stall is a stretch of ``--stall`` seconds in which the command prints nothing and its
whole process tree (the builder and its Jupyter kernels) does next to no work: under 2 %
of one CPU core and under 1 MB of reads and writes. A computing cell keeps a core busy and
a download moves bytes; the intermittent kernel hang this guards against (both sides idle,
each waiting for the other) does neither.

On a stall the watchdog names the chapter last mentioned in the output and kills the
Jupyter kernels, so that the executor fails that chapter: nbval fails the cell at its
``--nbval-cell-timeout`` and goes on with the next notebook; jupyter-book stops with
"Kernel died". If the tree stays silent for another ``--stall`` seconds, or has no kernel
to kill, the whole command is killed (exit code 124). At the end it prints the wall time
of every chapter jupyter-book executed, the chapters that failed or stalled, and any
fallback data used.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

import psutil

CHAPTER = re.compile(r"(chapters/[\w.-]+?)\.(?:md|ipynb)")
EXECUTING = re.compile(r"(chapters/[\w.-]+?)\.md: Executing notebook(?! failed)")
EXECUTED = re.compile(r"(chapters/[\w.-]+?)\.md: Executed notebook in ([\d.]+) seconds")
FAILED = re.compile(r"(chapters/[\w.-]+?)\.md: .*Executing notebook failed"
                    r"|FAILED (chapters/[\w.-]+?)\.ipynb")
FALLBACK = re.compile(r"DATASET NOT FOUND: ([^.]+)\.")
KERNEL = "ipykernel_launcher"
IDLE_CPU = 0.02     # fraction of one core below which the tree counts as idle
IDLE_BYTES = 1e6    # bytes read and written per window below which it counts as idle
TICK = 2.0          # seconds between samples (at most; a quarter of --stall when shorter)


@dataclass
class Report:
    """What the output said: the chapter in progress, timings, failures, fallbacks."""

    current: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)
    stalled: list[str] = field(default_factory=list)
    fallbacks: list[str] = field(default_factory=list)
    _started: dict[str, float] = field(default_factory=dict)

    def read(self, text: str, now: float) -> None:
        for match in CHAPTER.finditer(text):
            self.current = match.group(1)
        for name in EXECUTING.findall(text):  # several at once with execute_chapters.py
            self._started[name] = now
        for name, secs in EXECUTED.findall(text):
            self.seconds[name] = float(secs)  # the executor's own timing
            self._started.pop(name, None)
        for match in FAILED.finditer(text):
            name = match.group(1) or match.group(2)
            if name in self._started:
                self.seconds.setdefault(name, now - self._started.pop(name))
            if name not in self.failed:
                self.failed.append(name)
        self.fallbacks += FALLBACK.findall(text)

    def close(self, now: float) -> None:
        """Time the chapters that started but never said they finished (stalled, killed)."""
        for name, began in self._started.items():
            self.seconds.setdefault(name, now - began)
        self._started.clear()

    def summary(self) -> str:
        lines = []
        if self.seconds:
            lines.append("wall time per chapter:")
            lines += [f"  {name:40s} {secs:8.1f} s" + ("  (failed)" if name in self.failed
                                                        else "")
                      for name, secs in self.seconds.items()]
            lines.append(f"  {'total':40s} {sum(self.seconds.values()):8.1f} s")
        for label, names in [("STALLED (stopped by the watchdog)", self.stalled),
                             ("FAILED", self.failed), ("FALLBACK DATA used", self.fallbacks)]:
            if names:
                lines.append(f"{label}: " + ", ".join(dict.fromkeys(names)))
        return "\n".join(lines)


def activity(root: psutil.Process) -> dict[int, tuple[float, float]]:
    """{pid: (CPU seconds, bytes read + written)} of ``root`` and its descendants."""
    found = {}
    for proc in [root, *root.children(recursive=True)]:
        try:
            times = proc.cpu_times()
            io = 0.0
            counters = proc.io_counters() if hasattr(proc, "io_counters") else None
            if counters is not None:  # read_chars/write_chars include sockets (Linux)
                io = (getattr(counters, "read_chars", counters.read_bytes)
                      + getattr(counters, "write_chars", counters.write_bytes))
            found[proc.pid] = (times.user + times.system, io)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def work_between(first: dict, last: dict) -> tuple[float, float]:
    """(CPU seconds, bytes) the processes alive at ``last`` spent since ``first``; a process
    that started in between counts from zero, one that ended does not count (so a
    finished kernel's CPU time never cancels a new one's)."""
    cpu = io = 0.0
    for pid, (c, b) in last.items():
        c0, b0 = first.get(pid, (0.0, 0.0))
        cpu, io = cpu + max(0.0, c - c0), io + max(0.0, b - b0)
    return cpu, io


def kernels(root: psutil.Process) -> list[psutil.Process]:
    found = []
    for proc in root.children(recursive=True):
        try:
            if any(KERNEL in part for part in proc.cmdline()):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def say(message: str) -> None:
    print(f"\n[watchdog] {message}", file=sys.stderr, flush=True)


def run(command: list[str], stall: float) -> int:
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             start_new_session=True)
    report, last_output = Report(), [time.monotonic()]

    def pump() -> None:  # echo the output as it comes; chunks, since pytest -v ends lines late
        tail = ""
        while chunk := os.read(child.stdout.fileno(), 1 << 16):
            sys.stdout.buffer.write(chunk)
            sys.stdout.flush()
            last_output[0] = time.monotonic()
            text = tail + chunk.decode("utf-8", "replace")
            report.read(text, last_output[0])
            tail = text[-200:]  # a match split across two chunks is found in the next

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()

    def forward(signum, _frame):  # Ctrl-C or a CI cancel reaches the whole tree
        os.killpg(child.pid, signum)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, forward)

    root = psutil.Process(child.pid)
    samples: list[tuple[float, dict]] = []  # (time, activity) over the last window
    kernels_killed = False  # and nothing has happened since
    tick = min(TICK, stall / 4)
    while (code := child.poll()) is None:
        time.sleep(tick)
        now = time.monotonic()
        samples = [s for s in samples if s[0] >= now - stall - tick] + [(now, activity(root))]
        if now - samples[0][0] < stall:
            continue  # not a whole window of history yet
        cpu, io = work_between(samples[0][1], samples[-1][1])
        if now - last_output[0] < stall or cpu > IDLE_CPU * stall or io > IDLE_BYTES:
            kernels_killed = False
            continue
        chapter = report.current or "an unknown chapter"
        report.stalled.append(chapter)
        victims = kernels(root)
        if victims and not kernels_killed:
            say(f"{chapter} STALLED: no output, {cpu:.1f} s of CPU and {io / 1e3:.0f} kB of I/O "
                f"in {stall:.0f} s. Killing its Jupyter kernel(s) {[p.pid for p in victims]}, "
                "so that the executor fails the chapter.")
            for proc in victims:
                proc.kill()
            kernels_killed, samples = True, []
            continue
        say(f"{chapter} STALLED and the command did not recover: killing it.")
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
        code = 124
        break
    reader.join(timeout=5)
    report.close(time.monotonic())
    if summary := report.summary():
        print(f"\n{summary}", file=sys.stderr, flush=True)
    if report.stalled and code == 0:
        code = 1  # a stall is a failure even where the executor shrugged it off
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stall", type=float, default=240.0,
                        help="seconds of silence after which a chapter counts as stalled")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to run after --")
    if args.stall <= 0:
        parser.error(f"--stall must be positive, got {args.stall}")
    return run(command, args.stall)


if __name__ == "__main__":
    sys.exit(main())
