"""Check what a reader sees on the built chapter pages.

    python .ci/check_html.py _build/html

Fails (exit 1, one line per problem) when a page
* saves an Output widget without its initial figure (the static book would show nothing);
* saves a figure with knobs (lyaplib.widgets.interactive_figure) without all of its
  frames: each stack of frames linked in the browser to one control with as many
  positions, each frame an image with alt text; or heavier than ``WIDGET_BYTES``;
* weighs more than ``PAGE_BYTES``;
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
WIDGET_BYTES, PAGE_BYTES = 2_500_000, 10_000_000
FRAME = re.compile(r'^(<img src="data:image/[a-z]+;base64,[^"]+" alt="[^"]+"[^>]*>)+'
                   r'(<div class="frame-warning">[^<]*</div>)*$')


def _ref(value: str) -> str:
    return value.removeprefix("IPY_MODEL_")


def frame_problems(models: dict) -> list[str]:
    """Every figure with knobs (a VBox holding an Output) has a complete tree of frames."""
    linked: dict[str, list[str]] = {}  # stack -> the controls that select its frame
    for model in models.values():
        if model["model_name"] == "LinkModel":
            source, target = model["state"]["source"], model["state"]["target"]
            if target[1] == "selected_index":
                linked.setdefault(_ref(target[0]), []).append(_ref(source[0]))

    def walk(key: str) -> tuple[int, int, list[str]]:  # frames, bytes, problems
        model = models[key]
        if model["model_name"] == "HTMLModel":
            value = model["state"].get("value", "")
            ok = FRAME.match(value)
            return 1, len(value), [] if ok else ["a frame that is not an image with alt text"]
        if model["model_name"] != "StackModel":
            return 0, 0, [f"a {model['model_name']} among the frames"]
        children = [_ref(c) for c in model["state"]["children"]]
        controls = linked.get(key, [])
        problems = []
        if len(controls) != 1:
            problems.append(f"a stack of frames linked to {len(controls)} controls, not 1")
        elif len(models[controls[0]]["state"].get("_options_labels", [])) != len(children):
            problems.append(f"a stack of {len(children)} frames under a control with "
                            f"{len(models[controls[0]]['state'].get('_options_labels', []))}"
                            " positions")
        frames = size = 0
        for child in children:
            f, b, p = walk(child)
            frames, size, problems = frames + f, size + b, problems + p
        return frames, size, problems

    problems = []
    for model in models.values():
        if model["model_name"] != "VBoxModel":
            continue
        kinds = {_ref(c): models[_ref(c)]["model_name"] for c in model["state"]["children"]}
        if "OutputModel" not in kinds.values():
            continue
        stacks = [k for k, name in kinds.items() if name == "StackModel"]
        if not stacks:
            problems.append("a figure with knobs saved without frames: it cannot change "
                            "without a kernel")
        for stack in stacks:
            frames, size, found = walk(stack)
            problems += sorted(set(found))
            if size > WIDGET_BYTES:
                problems.append(f"a widget of {frames} frames weighs {size / 1e6:.2f} MB > "
                                f"{WIDGET_BYTES / 1e6:g} MB")
    return problems


def widget_problems(html: str) -> list[str]:
    match = STATE.search(html)
    if match is None:
        return []
    models = json.loads(match.group(1))["state"]
    problems = frame_problems(models)
    for model in models.values():
        name, state = model["model_name"], model["state"]
        layout = models.get(_ref(state.get("layout", "")), {}).get("state", {})
        # a hidden Output is the live figure of a widget with frames, empty until a kernel
        if name == "OutputModel" and not state.get("outputs") and layout.get("display") != "none":
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
    if (size := page.stat().st_size) > PAGE_BYTES:
        problems.append(f"the page weighs {size / 1e6:.2f} MB > {PAGE_BYTES / 1e6:g} MB")
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
