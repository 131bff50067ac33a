"""lyaplib.widgets, under whichever ipywidgets is installed: 8 here, and 7.7 (Colab's; it
does not support 8) by .ci/check_widgets.sh, which sets LYAPLIB_IPYWIDGETS_MAJOR to the
major version it installed, so that the run cannot test another one by mistake."""

import os

import ipywidgets
import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402

from lyaplib import widgets  # noqa: E402


def test_the_expected_ipywidgets_is_the_one_tested():
    expected = os.environ.get("LYAPLIB_IPYWIDGETS_MAJOR")
    if expected is None:
        pytest.skip("LYAPLIB_IPYWIDGETS_MAJOR not set (set by .ci/check_widgets.sh)")
    assert ipywidgets.__version__.split(".")[0] == expected, ipywidgets.__version__


def test_interactive_figure_draws_now_and_on_change():
    import base64

    import matplotlib.pyplot as plt

    calls, open_before = [], plt.get_fignums()  # other tests may leave figures open

    def draw(a, n):
        calls.append((a, n))
        plt.subplots()[1].plot(range(n), [a] * n)

    a = widgets.slider(1.0, 0.0, 2.0, 0.1, "a")
    n = widgets.slider(3, 1, 9, 1, "n")
    box = widgets.interactive_figure(draw, a=a, n=n)
    out = box.children[-1]
    assert calls == [(1.0, 3)] and type(n).__name__ == "IntSlider"
    assert not a.continuous_update  # each change runs the engine: update on release
    first = out.outputs
    assert len(first) == 1 and first[0]["output_type"] == "display_data"
    assert base64.b64decode(first[0]["data"]["image/png"])[:4] == b"\x89PNG"
    n.value = 5
    assert calls[-1] == (1.0, 5) and len(out.outputs) == 1 and out.outputs != first
    assert plt.get_fignums() == open_before  # drawn figures are closed
    # The kernel writes the figure into the widget's state itself: the Output widget never
    # captures (msg_id stays empty), so a notebook executor has nothing to send back.
    assert out.msg_id == ""
