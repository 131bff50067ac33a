"""Format the code cells of the MyST chapters with ruff, so that every line fits the page.

    python tools/format_chapters.py chapters/*.md           # rewrite in place
    python tools/format_chapters.py --check chapters/*.md   # exit 1 if a cell would change

Either way it lists the code lines that stay wider than the column (long strings and
comments, which ruff leaves alone) and exits 1 if there are any.

The book's column shows 88 characters of code; a longer line is cut behind a scroll bar
and lost on paper. Cells with IPython magics (``%pip``) are left as they are: ruff
cannot parse them, and they are the hidden Colab install cells.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

WIDTH = 88
CELL = re.compile(r"(```\{code-cell\}[^\n]*\n(?::[^\n]*\n)*)(.*?)(^```)", re.S | re.M)


def format_source(code: str, ruff: str) -> str:
    """``code`` formatted by ``ruff format`` (unchanged when it holds a magic)."""
    if re.search(r"^\s*[%!]", code, re.M):
        return code
    done = subprocess.run([ruff, "format", f"--line-length={WIDTH}", "--stdin-filename",
                           "cell.py", "-"], input=code, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"ruff could not format a cell:\n{code}\n{done.stderr}")
    return done.stdout


def format_chapter(text: str, ruff: str) -> str:
    """The chapter with every code cell formatted."""
    return CELL.sub(lambda m: m.group(1) + format_source(m.group(2), ruff) + m.group(3), text)


def long_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) of every code-cell line wider than the column: ruff does not
    split strings and comments, so these need a hand."""
    found = []
    for cell in CELL.finditer(text):
        first = text.count("\n", 0, cell.start(2)) + 1
        for i, line in enumerate(cell.group(2).splitlines()):
            if len(line) > WIDTH:
                found.append((first + i, line))
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("chapters", nargs="+", type=Path)
    parser.add_argument("--check", action="store_true", help="only report, change nothing")
    parser.add_argument("--ruff", default=str(Path(sys.executable).with_name("ruff")))
    args = parser.parse_args()
    changed = []
    for path in args.chapters:
        text = path.read_text(encoding="utf-8")
        new = format_chapter(text, args.ruff)
        if new != text:
            changed.append(path)
            if not args.check:
                path.write_text(new, encoding="utf-8")
    for path in changed:
        print(f"{path}: {'would be reformatted' if args.check else 'reformatted'}")
    too_long = [(path, n, line) for path in args.chapters
                for n, line in long_lines(path.read_text(encoding="utf-8"))]
    for path, n, line in too_long:
        print(f"{path}:{n}: {len(line)} > {WIDTH} characters: {line.strip()[:60]}...")
    return 1 if (args.check and changed) or too_long else 0


if __name__ == "__main__":
    sys.exit(main())
