"""Turn every knob of the built book in a real browser (headless Chromium), with no kernel.

    python .ci/check_browser.py _build/html [--chromium /usr/bin/chromium]
                                            [--chromedriver /usr/bin/chromedriver]

Serves the built pages on localhost and, on every chapter page at 1280 x 900:
* moves each knob of each widget to two other positions (sliders by the keyboard, lists
  and buttons as a reader would) and checks that the figure shown is the frame saved for
  the values the controls now show (its image data, found through its alt text);
* fails on any message the page writes to the browser's console at error level;
* fails on code or output that is wider than its column (it would scroll sideways).
Debian's chromium and chromium-driver (.ci/install_chromium.sh); nothing is downloaded.
Exit code 1 on a problem, one line each.
"""

from __future__ import annotations

import argparse
import functools
import html
import http.server
import json
import re
import sys
import threading
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait

ALT = re.compile(r'alt="([^"]*)"')
SRC = re.compile(r'src="([^"]*)"')
# The controls of one widget and the image it shows, read off the page in one go: the
# label each control shows, and the src of the frame in view.
READ = r"""
const box = arguments[0];
const labels = [...box.children[0].children].map(c => {
  const name = c.querySelector('.widget-label').textContent.trim();
  const select = c.querySelector('select');
  const on = c.querySelector('button.mod-active');
  const value = select ? select.options[select.selectedIndex].textContent
    : on ? on.textContent : c.querySelector('.widget-readout').textContent;
  return name + ' = ' + value.trim();
});
const img = [...box.querySelectorAll('img')].find(i => i.offsetParent !== null);
// the widgets show spaces in labels as no-break spaces
return [labels.join(', ').replace(/\s+/g, ' '), img ? img.getAttribute('src') : null];
"""
# Elements whose content would scroll sideways: code, outputs, tables.
OVERFLOW = """
return [...document.querySelectorAll('div.cell_input pre, div.cell_output pre, \
div.cell_output table, article table')]
  .filter(e => e.scrollWidth > e.clientWidth + 1 ||
               e.getBoundingClientRect().right > \
document.querySelector('article').getBoundingClientRect().right + 1)
  .map(e => e.tagName + ' ' + e.scrollWidth + ' > ' + e.clientWidth + ' px: ' +
            e.textContent.trim().slice(0, 60));
"""


def serve(root: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_port}"


def browser(chromium: str, chromedriver: str) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1280,900",
                 "--disable-dev-shm-usage"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options,
                            service=webdriver.ChromeService(executable_path=chromedriver))


def frames_by_alt(page_html: str) -> dict[str, str]:
    """{alt text: image src} of every frame in the page's saved widget state."""
    match = re.search(r'<script type="application/vnd.jupyter.widget-state\+json">(.*?)'
                      r'</script>', page_html, re.S)
    if match is None:
        return {}
    frames = {}
    for model in json.loads(match.group(1))["state"].values():
        if model["model_name"] == "HTMLModel":
            value = model["state"].get("value", "")
            if (alt := ALT.search(value)) and (src := SRC.search(value)):
                frames[html.unescape(alt.group(1))] = src.group(1)
    return frames


def knobs(box) -> list:
    """The controls of a widget box, in order."""
    return box.find_elements(By.CSS_SELECTOR, ":scope > .widget-hbox:first-child > *")


def turn(driver, knob, step: int) -> None:
    """Move ``knob`` by ``step`` positions (wrapping for lists and buttons)."""
    if selects := knob.find_elements(By.TAG_NAME, "select"):
        menu = Select(selects[0])
        n = len(menu.options)
        current = [o.get_attribute("index") for o in menu.options].index(
            menu.first_selected_option.get_attribute("index"))
        menu.select_by_index((current + step) % n)
    elif buttons := knob.find_elements(By.TAG_NAME, "button"):
        current = next(i for i, b in enumerate(buttons) if "mod-active" in b.get_attribute(
            "class"))
        buttons[(current + step) % len(buttons)].click()
    else:
        handle = knob.find_element(By.CSS_SELECTOR, ".noUi-handle")
        handle.send_keys((Keys.ARROW_RIGHT if step > 0 else Keys.ARROW_LEFT) * abs(step))


def positions(knob) -> int:
    """How many positions ``knob`` has."""
    if selects := knob.find_elements(By.TAG_NAME, "select"):
        return len(Select(selects[0]).options)
    if buttons := knob.find_elements(By.TAG_NAME, "button"):
        return len(buttons)
    handle = knob.find_element(By.CSS_SELECTOR, ".noUi-handle")
    return round(float(handle.get_attribute("aria-valuemax"))) + 1


def check_widget(driver, box, frames: dict[str, str], where: str) -> list[str]:
    """Turn each knob of ``box`` to two other positions and back; after every turn the
    figure shown must be the frame of the values the controls show."""

    def shows_its_frame(d) -> bool:
        labels, src = d.execute_script(READ, box)
        return src is not None and frames.get(labels) == src

    problems = []
    for k, knob in enumerate(knobs(box)):
        seen = {driver.execute_script(READ, box)[0]}
        for step in (1, 1, -2, -1):  # two other positions, back, and one more
            turn(driver, knob, step)
            try:
                WebDriverWait(driver, 10).until(shows_its_frame)
            except Exception:
                labels, src = driver.execute_script(READ, box)
                problems.append(
                    f"{where}: knob {k + 1} turned by {step:+d}: controls show {labels!r}, "
                    + ("no frame has these values" if labels not in frames else
                       "the figure shown is not their frame"))
                return problems
            seen.add(driver.execute_script(READ, box)[0])
        if len(seen) < min(3, positions(knob)):
            problems.append(f"{where}: knob {k + 1} did not move: it showed only {seen}")
    return problems


def check_page(driver, url: str, page: Path) -> tuple[list[str], int]:
    driver.get(url)
    WebDriverWait(driver, 30).until(
        lambda d: d.execute_script("return document.readyState") == "complete")
    frames = frames_by_alt(page.read_text(encoding="utf-8"))
    problems, turned = [], 0
    frameless = driver.execute_script(
        "return [...document.querySelectorAll('.cell_output .widget-vbox')].filter(b => "
        "b.querySelector('.widget-output') && !b.querySelector('img[alt]')).length")
    if frameless:
        problems.append(f"{page.name}: {frameless} figure(s) with knobs and no frames: "
                        "turning them changes nothing without a kernel")
    if frames:
        WebDriverWait(driver, 60).until(lambda d: d.find_elements(
            By.CSS_SELECTOR, ".cell_output .widget-vbox img"))
        # a figure with knobs: a VBox whose first row holds the controls, above its frames
        boxes = [b for b in driver.find_elements(By.CSS_SELECTOR, ".cell_output .widget-vbox")
                 if b.find_elements(By.CSS_SELECTOR, ".widget-html-content img[alt]")]
        for i, box in enumerate(boxes):
            driver.execute_script("arguments[0].scrollIntoView()", box)
            problems += check_widget(driver, box, frames, f"{page.name} widget {i + 1}")
            turned += 1
    problems += [f"{page.name}: scrolls sideways: {o}"
                 for o in driver.execute_script(OVERFLOW)]
    for entry in driver.get_log("browser"):
        if entry["level"] in ("SEVERE", "ERROR"):
            problems.append(f"{page.name}: console error: {entry['message'][:200]}")
    return problems, turned


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("build", type=Path)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--chromedriver", default="/usr/bin/chromedriver")
    args = parser.parse_args()
    for program in (args.chromium, args.chromedriver):
        if not Path(program).is_file():
            print(f"{program} not found: install Debian's chromium and chromium-driver "
                  "(.ci/install_chromium.sh)", file=sys.stderr)
            return 1
    pages = sorted(args.build.glob("chapters/*.html"))
    if not pages:
        print(f"no chapter pages under {args.build}/chapters", file=sys.stderr)
        return 1
    server, root = serve(args.build)
    driver = browser(args.chromium, args.chromedriver)
    problems, widgets = [], 0
    try:
        for page in pages:
            found, turned = check_page(driver, f"{root}/chapters/{page.name}", page)
            problems += found
            widgets += turned
    finally:
        driver.quit()
        server.shutdown()
    for p in problems:
        print(p)
    print(f"{len(pages)} pages, {widgets} widgets turned, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
