""".ci/check_html.py on the saved state of real widgets: a figure with knobs passes with
all of its frames, and fails when a frame, a link or the frames themselves are missing."""

import copy
import importlib.util
from pathlib import Path

import ipywidgets
import matplotlib
import pytest

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from lyaplib import widgets  # noqa: E402

CHECK = Path(__file__).resolve().parents[1] / ".ci" / "check_html.py"
if not CHECK.is_file():  # the sdist ships the library and its tests only
    pytest.skip(".ci/ is not part of this tree", allow_module_level=True)
if not hasattr(ipywidgets, "Stack"):
    pytest.skip("frames need ipywidgets 8", allow_module_level=True)

spec = importlib.util.spec_from_file_location("check_html", CHECK)
check_html = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check_html)


def _state(box) -> dict:
    """The widget state a notebook saves for ``box`` (every model it depends on, links
    included), as {model id: {"model_name", "state"}}."""
    from ipywidgets.embed import dependency_state
    from ipywidgets.widgets.widget import _instances
    from ipywidgets.widgets.widget_link import Link

    state = dependency_state([box])
    for link in (w for w in list(_instances.values()) if isinstance(w, Link)):
        if link.source[0].model_id in state:
            state[link.model_id] = {"model_name": "LinkModel",
                                    "state": link.get_state()}
    for model in state.values():
        model.setdefault("model_name", model["state"].get("_model_name"))
    # the saved state refers to other models as "IPY_MODEL_<id>", as the page does
    return {key: {"model_name": m["model_name"],
                  "state": {k: _refs(v) for k, v in m["state"].items()}}
            for key, m in state.items()}


def _refs(value):
    if isinstance(value, ipywidgets.Widget):
        return f"IPY_MODEL_{value.model_id}"
    if isinstance(value, list | tuple):
        return [_refs(v) for v in value]
    return value


@pytest.fixture(scope="module")
def saved():
    def draw(a, n):
        plt.subplots()[1].plot(range(n), [a] * n)

    box = widgets.interactive_figure(
        draw, a=widgets.slider(1.0, 0.0, 2.0, 0.1, "a", grid=[0.0, 1.0, 2.0]),
        n=widgets.choice([3, 5], 3, "n"))
    return _state(box)


def test_a_figure_with_all_its_frames_passes(saved):
    assert check_html.frame_problems(saved) == []


def test_a_missing_frame_fails(saved):
    models = copy.deepcopy(saved)
    stack = next(m for m in models.values() if m["model_name"] == "StackModel"
                 and any(models[c.removeprefix("IPY_MODEL_")]["model_name"] == "HTMLModel"
                         for c in m["state"]["children"]))
    stack["state"]["children"] = stack["state"]["children"][:-1]
    assert any("frames under a control with" in p for p in check_html.frame_problems(models))


def test_a_stack_no_control_selects_fails(saved):
    models = {k: m for k, m in copy.deepcopy(saved).items() if m["model_name"] != "LinkModel"}
    assert any("linked to 0 controls" in p for p in check_html.frame_problems(models))


def test_a_frame_without_alt_text_fails(saved):
    models = copy.deepcopy(saved)
    frame = next(m for m in models.values() if m["model_name"] == "HTMLModel"
                 and "<img" in m["state"]["value"])
    frame["state"]["value"] = frame["state"]["value"].replace('alt="', 'title="')
    assert "a frame that is not an image with alt text" in check_html.frame_problems(models)


def test_a_figure_saved_without_frames_fails():
    slider, out = ipywidgets.FloatSlider(), ipywidgets.Output()
    box = ipywidgets.VBox([ipywidgets.HBox([slider]), out])
    assert any("without frames" in p for p in check_html.frame_problems(_state(box)))


def test_a_widget_over_its_weight_fails(saved, monkeypatch):
    monkeypatch.setattr(check_html, "WIDGET_BYTES", 1000)
    assert any("MB >" in p for p in check_html.frame_problems(saved))
