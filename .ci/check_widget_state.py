"""Fail when a built page's widgets would show nothing without a kernel.

Every page that embeds ipywidgets state must give each Output widget at least
one saved output (the figure drawn for the widget's initial state).
"""

import json
import re
import sys
from pathlib import Path

STATE = re.compile(
    r'<script type="application/vnd.jupyter.widget-state\+json">(.*?)</script>', re.S)


def empty_outputs(page: Path) -> list[str]:
    match = STATE.search(page.read_text(encoding="utf-8"))
    if match is None:
        return []
    models = json.loads(match.group(1))["state"].values()
    return [m["model_name"] for m in models
            if m["model_name"] == "OutputModel" and not m["state"].get("outputs")]


def main(build: Path) -> int:
    pages = sorted(build.glob("chapters/*.html"))
    with_widgets = [p for p in pages if STATE.search(p.read_text(encoding="utf-8"))]
    bad = {p.name: n for p in with_widgets if (n := len(empty_outputs(p)))}
    for name, n in bad.items():
        print(f"{name}: {n} Output widget(s) saved without their initial figure", file=sys.stderr)
    print(f"widget state checked on {len(with_widgets)} of {len(pages)} chapter pages")
    return 1 if bad or not with_widgets else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "_build/html")))
