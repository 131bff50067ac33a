"""Check what a reader sees on the built chapter pages.

    python .ci/check_html.py _build/html

Fails (exit 1, one line per problem) when a page
* saves an Output widget without its initial figure (the static book would show nothing);
* saves a progress bar that is unfinished or red (it reads as a failure);
* shows this machine's paths in an output: the checkout, the home folder, a
  site-packages folder or the kernel's temporary files (``ipykernel_...``);
* shows a warning on stderr that is not expected (``EXPECTED_WARNINGS``);
* shows a line of code wider than the column (``WIDTH`` characters).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from bs4 import BeautifulSoup

WIDTH = 88
STATE = re.compile(
    r'<script type="application/vnd.jupyter.widget-state\+json">(.*?)</script>', re.S)
# offline builds substitute data loudly; that warning is the point
EXPECTED_WARNINGS = ("DataFallbackWarning",)
PROGRESS = {"FloatProgressModel", "IntProgressModel"}


def widget_problems(html: str) -> list[str]:
    match = STATE.search(html)
    if match is None:
        return []
    problems = []
    for model in json.loads(match.group(1))["state"].values():
        name, state = model["model_name"], model["state"]
        if name == "OutputModel" and not state.get("outputs"):
            problems.append("an Output widget was saved without its initial figure")
        if name in PROGRESS:
            if state.get("bar_style") == "danger":
                problems.append(f"a red progress bar ({state.get('value')}/{state.get('max')})")
            elif state.get("value", 0) < state.get("max", 0):
                problems.append(f"an unfinished progress bar ({state.get('value')}/"
                                f"{state.get('max')})")
    return problems


def local_paths() -> re.Pattern:
    here, home = str(Path.cwd().resolve()), str(Path.home())
    parts = [re.escape(here), r"site-packages", r"ipykernel_\d+", r"/tmp/"]
    if home not in ("/", ""):
        parts.append(re.escape(home) + "/")
    return re.compile("|".join(parts))


def page_problems(page: Path, paths: re.Pattern) -> list[str]:
    html = page.read_text(encoding="utf-8")
    problems = widget_problems(html)
    soup = BeautifulSoup(html, "html.parser")
    for output in soup.select("div.cell_output"):
        text = output.get_text()
        if found := paths.search(text):
            context = text[max(0, found.start() - 40):found.end() + 40]
            problems.append(f"a local path in an output: ...{context!r}")
    for stderr in soup.select("div.cell_output .stderr"):
        text = stderr.get_text()
        if "Warning" in text and not any(w in text for w in EXPECTED_WARNINGS):
            problems.append(f"a warning on stderr: {text.strip()[:160]!r}")
    for code in soup.select("div.cell_input pre"):
        for line in code.get_text().splitlines():
            if len(line) > WIDTH:
                problems.append(f"a code line of {len(line)} > {WIDTH} characters: "
                                f"{line[:60]!r}...")
    return problems


def main(build: Path) -> int:
    pages = sorted(build.glob("chapters/*.html"))
    paths = local_paths()
    bad = 0
    if not any(STATE.search(p.read_text(encoding="utf-8")) for p in pages):
        print("no chapter page saved its widgets' state", file=sys.stderr)
        bad += 1
    for page in pages:
        for problem in page_problems(page, paths):
            print(f"{page.name}: {problem}", file=sys.stderr)
            bad += 1
    print(f"{len(pages)} chapter pages checked, {bad} problems")
    return 1 if bad or not pages else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "_build/html")))
