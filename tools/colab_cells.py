"""Keep every chapter ready for Colab: the install cell pins this release, the notebook
asks for a GPU.

    python tools/colab_cells.py chapters/*.md           # rewrite in place
    python tools/colab_cells.py --check chapters/*.md   # exit 1 if a chapter would change

The release is written once, as ``version`` in ``pyproject.toml``; the install cell
installs the tag ``v<version>`` of the repository, never a moving branch. Releasing is:
bump the version (and CHANGELOG.md), run this and ``make notebooks``, commit, tag
``v<version>``, push the tag (the book workflow then publishes it).

The install cell leaves Colab's own torch and ipywidgets alone: pip keeps an installed
package that satisfies a requirement, and lyaplib asks for ``torch>=2.1`` and
``ipywidgets>=7.7,<9`` (Colab ships ipywidgets 7.7 and does not support 8).
The front matter's ``accelerator: GPU`` and ``colab.gpuType`` go into the paired
notebook's metadata (jupytext), which is what makes Colab open it on a GPU runtime.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
REPOSITORY = "https://github.com/lyaplib/lyapunov-rnn-book"
INSTALL = re.compile(r'(%pip install -q "lyaplib @ git\+)[^"@]+(@[^"]*)?(")')
FRONT_MATTER = re.compile(r"\A---\n(.*?)\n---\n", re.S)
GPU_METADATA = "accelerator: GPU\ncolab:\n  gpuType: T4\n  provenance: []\n"


def release_tag() -> str:
    """``v<version>``, the version read from pyproject.toml."""
    with open(ROOT / "pyproject.toml", "rb") as f:
        return "v" + tomllib.load(f)["project"]["version"]


def with_colab_setup(text: str, tag: str, name: str) -> str:
    """The chapter with its install cell pinned to ``tag`` and the GPU metadata present."""
    if len(INSTALL.findall(text)) != 1:
        raise SystemExit(f"{name}: expected exactly one Colab install cell "
                         '(%pip install -q "lyaplib @ git+..."), found '
                         f"{len(INSTALL.findall(text))}")
    text = INSTALL.sub(lambda m: f"{m.group(1)}{REPOSITORY}@{tag}{m.group(3)}", text)
    front = FRONT_MATTER.match(text)
    if front is None:
        raise SystemExit(f"{name}: no YAML front matter (--- ... ---) at the top")
    header = re.sub(r"^accelerator:.*\n|^colab:\n(?:  .*\n)*", "", front.group(1) + "\n",
                    flags=re.M)
    header = header.replace("kernelspec:", GPU_METADATA + "kernelspec:", 1)
    if GPU_METADATA not in header:
        raise SystemExit(f"{name}: the front matter has no kernelspec to put the GPU "
                         "metadata before")
    return f"---\n{header}---\n" + text[front.end():]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("chapters", nargs="+", type=Path)
    parser.add_argument("--check", action="store_true", help="only report, change nothing")
    args = parser.parse_args()
    tag = release_tag()
    stale = []
    for path in args.chapters:
        text = path.read_text(encoding="utf-8")
        new = with_colab_setup(text, tag, str(path))
        if new != text:
            stale.append(path)
            if not args.check:
                path.write_text(new, encoding="utf-8")
    what = "out of date: run python tools/colab_cells.py" if args.check else "updated"
    for path in stale:
        print(f"{path}: Colab setup {what} (installs {tag}, asks for a GPU runtime)")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
