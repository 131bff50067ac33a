"""The build tools in tools/: the chapter watchdog (and the claim audit's table)."""

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


def test_a_finished_process_does_not_cancel_the_work_of_a_new_one():
    import importlib.util
    spec = importlib.util.spec_from_file_location("lyaplib_watchdog", TOOLS / "watchdog.py")
    watchdog = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = watchdog  # dataclasses look their module up there
    spec.loader.exec_module(watchdog)
    first = {1: (10.0, 0.0), 2: (300.0, 5e6)}   # pid 2: a kernel that computed a lot, then ended
    last = {1: (10.5, 100.0), 3: (30.0, 2e3)}   # pid 3: the next kernel, busy since it started
    assert watchdog.work_between(first, last) == (30.5, 2100.0)
