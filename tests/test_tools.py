"""The build tools in tools/: the chapter watchdog, the parallel chapter executor (and the
claim audit's table)."""

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parents[1] / "tools"
if not (TOOLS / "watchdog.py").is_file():  # the sdist ships the library and its tests only
    pytest.skip("tools/ is not part of this tree", allow_module_level=True)

STALL = 3.0
FAKE_KERNEL = "import time; time.sleep(120)"  # idle, like a hung kernel


def watch(script: str, stall: float = STALL, timeout: float = 60) -> tuple[int, str, float]:
    """Run ``python -c script`` under the watchdog: (exit code, all output, seconds)."""
    began = time.monotonic()
    done = subprocess.run([sys.executable, str(TOOLS / "watchdog.py"), "--stall", str(stall),
                           "--", sys.executable, "-c", script],
                          capture_output=True, text=True, timeout=timeout)
    return done.returncode, done.stdout + done.stderr, time.monotonic() - began


def test_a_stalled_kernel_is_killed_and_its_chapter_named():
    # An executor that starts an idle "kernel" for a chapter and reports its death.
    script = f"""
import subprocess, sys
print("chapters/07_zoo.md: Executing notebook using local CWD [mystnb]", flush=True)
kernel = subprocess.Popen([sys.executable, "-c", {FAKE_KERNEL!r}, "ipykernel_launcher"])
kernel.wait()
print("chapters/07_zoo.md: WARNING: Executing notebook failed: DeadKernelError [mystnb.exec]")
print("chapters/08_aelle.md: Executed notebook in 1.50 seconds [mystnb]")
"""
    code, out, seconds = watch(script)
    assert code == 1  # the executor exited 0, but a stall is a failure
    assert "chapters/07_zoo STALLED" in out and "Killing its Jupyter kernel" in out
    assert "FAILED: chapters/07_zoo" in out and "chapters/08_aelle" in out  # carried on
    assert seconds < 4 * STALL + 10


def test_a_command_that_stays_stalled_is_killed():
    code, out, seconds = watch("import time; print('chapters/01_x.md', flush=True); "
                               "time.sleep(120)")
    assert code == 124 and "chapters/01_x STALLED and the command did not recover" in out
    assert seconds < 2 * STALL + 10


@pytest.mark.parametrize("script", [
    # busy on the CPU, silent
    f"import time\nend = time.monotonic() + 3 * {STALL}\nwhile time.monotonic() < end: pass",
    # idle on the CPU, but printing
    f"import time\nfor _ in range(int(6 * {STALL})): print('.', flush=True); time.sleep(0.5)",
])
def test_work_or_output_is_not_a_stall(script):
    code, out, _ = watch(script)
    assert code == 0 and "STALLED" not in out


def test_the_exit_code_and_the_timings_are_passed_on():
    code, out, _ = watch("import sys; print('chapters/02_qr.md: Executed notebook in 12.25 "
                         "seconds [mystnb]'); sys.exit(3)")
    assert code == 3 and "wall time per chapter" in out and "chapters/02_qr" in out
    assert "12.2 s" in out


def test_bad_arguments_are_named():
    code, out, _ = watch("pass", stall=-1)
    assert code == 2 and "--stall must be positive" in out


def load_tool(name: str):
    """Import tools/<name>.py as a module."""
    spec = importlib.util.spec_from_file_location(f"lyaplib_{name}", TOOLS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_a_finished_process_does_not_cancel_the_work_of_a_new_one():
    watchdog = load_tool("watchdog")
    first = {1: (10.0, 0.0), 2: (300.0, 5e6)}   # pid 2: a kernel that computed a lot, then ended
    last = {1: (10.5, 100.0), 3: (30.0, 2e3)}   # pid 3: the next kernel, busy since it started
    assert watchdog.work_between(first, last) == (30.5, 2100.0)


def test_overlapping_chapters_are_timed_each():
    report = load_tool("watchdog").Report()
    report.read("chapters/a.md: Executing notebook\nchapters/b.md: Executing notebook\n", 0.0)
    report.read("chapters/b.md: Executed notebook in 5.00 seconds\n", 5.0)
    report.read("chapters/a.md: Executing notebook failed:\nTraceback", 9.0)
    assert report.seconds == {"chapters/b": 5.0, "chapters/a": 9.0}
    assert report.failed == ["chapters/a"]


# tools/execute_chapters.py on a two-chapter book of its own
HEADER = """---
jupytext:
  text_representation: {extension: .md, format_name: myst}
kernelspec: {display_name: Python 3, language: python, name: python3}
---

"""


def tiny_book(root: Path, chapters: dict[str, str]) -> Path:
    """A book whose chapters each run one code cell (``chapters`` maps name to code)."""
    (root / "chapters").mkdir(parents=True)
    (root / "intro.md").write_text("# Intro\n")
    (root / "_toc.yml").write_text(
        "format: jb-book\nroot: intro\nparts:\n  - chapters:\n"
        + "".join(f"      - file: chapters/{n}\n" for n in chapters))
    (root / "_config.yml").write_text(
        "title: t\nonly_build_toc_files: true\nexecute:\n  execute_notebooks: cache\n"
        "parse:\n  myst_enable_extensions: [dollarmath]\n")
    for n, code in chapters.items():
        (root / "chapters" / f"{n}.md").write_text(
            f"{HEADER}# {n}\n\n```{{code-cell}} ipython3\n{code}\n```\n")
    return root


def execute_chapters(root: Path, *args: str, env: dict | None = None) -> tuple[int, str]:
    done = subprocess.run([sys.executable, str(TOOLS / "execute_chapters.py"), "--book",
                           str(root), *args], capture_output=True, text=True, timeout=300,
                          env={k: v for k, v in {**os.environ, **(env or {})}.items()
                               if v is not None})
    return done.returncode, done.stdout + done.stderr


def cached_output(root: Path, chapter: str) -> str | None:
    """The text the cached run of ``chapter`` printed; None if it is not cached."""
    import yaml
    from jupyter_cache import get_cache
    tool = load_tool("execute_chapters")
    md_config = tool.markdown_config(yaml.safe_load((root / "_config.yml").read_text()))
    notebook = tool.read_notebook(root / "chapters" / f"{chapter}.md", md_config)
    cache = get_cache(root / "_build" / ".jupyter_cache")
    try:
        record = cache.match_cache_notebook(notebook)
    except KeyError:
        return None
    cell = cache.get_cache_bundle(record.pk).nb.cells[0]
    return "".join(o.get("text", "") for o in cell.outputs)


STAMPED = ("import os, time; start = time.time(); time.sleep(2); "
           "print(start, time.time(), os.environ.get('OMP_WAIT_POLICY'))")


def test_chapters_run_side_by_side_into_the_cache_the_build_reads(tmp_path):
    pytest.importorskip("jupyter_book")
    root = tiny_book(tmp_path, {"a": STAMPED, "b": STAMPED})
    code, out = execute_chapters(root, "--jobs", "2", env={"OMP_WAIT_POLICY": None})
    assert code == 0, out
    assert "chapters/a.md: Executed notebook in" in out
    (a0, a1, policy_a), (b0, b1, policy_b) = (cached_output(root, c).split() for c in "ab")
    assert float(b0) < float(a1) and float(a0) < float(b1)  # the two kernels overlapped
    assert policy_a == policy_b == "PASSIVE"  # sleeping OpenMP threads when they share cores
    # The build finds both chapters in the cache and executes nothing.
    build = subprocess.run([str(Path(sys.executable).with_name("jupyter-book")), "build",
                            str(root)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stdout + build.stderr
    assert build.stdout.count("Using cached notebook") == 2, build.stdout
    assert "Executing notebook" not in build.stdout


def test_a_failing_chapter_is_named_and_not_shown_from_an_earlier_run(tmp_path):
    pytest.importorskip("jupyter_book")
    flaky = "import os; assert os.environ.get('LYAPLIB_TEST_PASS') == '1'; print('passed')"
    root = tiny_book(tmp_path, {"ok": "print('fine')", "flaky": flaky})
    code, out = execute_chapters(root, "--jobs", "1", env={"LYAPLIB_TEST_PASS": "1"})
    assert code == 0, out
    assert cached_output(root, "flaky") == "passed\n"
    code, out = execute_chapters(root, "--jobs", "1")  # same code, and now it fails
    assert code == 1
    assert "chapters/flaky.md: Executing notebook failed" in out and "AssertionError" in out
    assert "FAILED: chapters/flaky" in out
    assert cached_output(root, "flaky") is None  # the earlier run's outputs are gone
    assert cached_output(root, "ok") == "fine\n"


def test_the_longest_chapter_starts_first(tmp_path):
    pytest.importorskip("jupyter_book")
    # 8 s of work against a kernel start that took 1-4 s on a loaded machine (first start
    # slowest): the order must come from the work, not from the start-up noise
    root = tiny_book(tmp_path, {"short": "pass", "long": "import time; time.sleep(8)"})
    code, out = execute_chapters(root, "--jobs", "1", "--store-durations",
                                 env={"LYAPLIB_SCALE": "book"})
    assert code == 0, out
    assert out.index("chapters/short.md: Executing") < out.index("chapters/long.md: Executing")
    stored = json.loads((root / ".chapter_durations.json").read_text())["book"]
    assert stored["chapters/long"] > stored["chapters/short"] + 1
    code, out = execute_chapters(root, "--jobs", "1", env={"LYAPLIB_SCALE": "book"})
    assert code == 0, out
    assert out.index("chapters/long.md: Executing") < out.index("chapters/short.md: Executing")


@pytest.mark.parametrize("args, message", [
    (["--jobs", "0"], "--jobs must be at least 1, got 0"),
    (["--book", "/nonexistent"], "expected a folder with _toc.yml and _config.yml"),
    (["chapters/missing.md"], "no such chapter"),
])
def test_bad_executor_arguments_are_named(tmp_path, args, message):
    pytest.importorskip("jupyter_book")
    root = tiny_book(tmp_path, {"a": "pass"})
    if args[0] == "--book":  # the helper passes --book
        args, root = [], Path(args[1])
    code, out = execute_chapters(root, *args)
    assert code == 2 and message in out, out
