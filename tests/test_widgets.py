"""lyaplib.widgets, under whichever ipywidgets is installed: 8 here, and 7.7 (Colab's; it
does not support 8) by .ci/check_widgets.sh, which sets LYAPLIB_IPYWIDGETS_MAJOR to the
major version it installed, so that the run cannot test another one by mistake."""

import base64
import os
import re

import ipywidgets
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from lyaplib import widgets  # noqa: E402

FRAMED = hasattr(ipywidgets, "Stack")
if FRAMED:
    from ipywidgets.widgets.widget import _instances
    from ipywidgets.widgets.widget_link import Link  # ipywidgets 8: frames for the static page
IMG = re.compile(r'<img src="data:image/webp;base64,([^"]+)" alt="([^"]*)"')


def test_the_expected_ipywidgets_is_the_one_tested():
    expected = os.environ.get("LYAPLIB_IPYWIDGETS_MAJOR")
    if expected is None:
        pytest.skip("LYAPLIB_IPYWIDGETS_MAJOR not set (set by .ci/check_widgets.sh)")
    assert ipywidgets.__version__.split(".")[0] == expected, ipywidgets.__version__
    assert FRAMED == (expected == "8")


def _figure(calls):
    def draw(a, n):
        calls.append((a, n))
        plt.subplots()[1].plot(range(n), [a] * n)

    a = widgets.slider(1.0, 0.0, 2.0, 0.1, "a", grid=[0.0, 0.5, 1.0, 2.0])
    n = widgets.choice([3, 5, 9], 3, "n", style="buttons")
    return widgets.interactive_figure(draw, a=a, n=n)


def _png(out):
    (output,) = out.outputs
    assert output["output_type"] == "display_data"
    return base64.b64decode(output["data"]["image/png"])


def test_knobs_refuse_what_they_cannot_show():
    with pytest.raises(ValueError, match="value of 'a': 0.3 is not on the grid"):
        widgets.slider(0.3, 0.0, 1.0, 0.1, "a", grid=[0.0, 0.5])
    with pytest.raises(ValueError, match="grid of 'a'.*leaves the range"):
        widgets.slider(0.5, 0.0, 1.0, 0.1, "a", grid=[0.5, 2.0])
    with pytest.raises(ValueError, match="grid of 'a': expected increasing"):
        widgets.slider(0.5, 0.0, 1.0, 0.1, "a", grid=[0.5, 0.2])
    with pytest.raises(ValueError, match="value of 'k'"):
        widgets.choice([1, 2], 3, "k")
    with pytest.raises(ValueError, match="labels repeat"):
        widgets.choice([("x", 1), ("x", 2)], 1, "k")
    with pytest.raises(ValueError, match="style"):
        widgets.choice([1, 2], 1, "k", style="wheel")
    with pytest.raises(TypeError, match="a: expected a widgets.slider or widgets.choice"):
        widgets.interactive_figure(lambda a: None, a=ipywidgets.FloatSlider())


@pytest.mark.skipif(FRAMED, reason="ipywidgets 7 (Colab) only")
def test_ipywidgets_7_recomputes_at_any_value():
    calls, open_before = [], plt.get_fignums()
    box = _figure(calls)
    a, n = box.children[0].children
    out = box.children[-1]
    assert calls == [(1.0, 3)] and type(a).__name__ == "FloatSlider"
    assert not a.continuous_update  # each change runs the engine: update on release
    first = _png(out)
    assert first[:4] == b"\x89PNG"
    a.value = 1.3  # off the grid: recomputed
    assert calls[-1] == (1.3, 3) and _png(out) != first
    n.value = 9
    assert calls[-1] == (1.3, 9)
    assert plt.get_fignums() == open_before  # drawn figures are closed
    # The kernel writes the figure into the widget's state itself: the Output widget never
    # captures (msg_id stays empty), so a notebook executor has nothing to send back.
    assert out.msg_id == ""


def _frames(widget, path=()):
    """{stack indices: HTML frame} under a tree of nested stacks."""
    if isinstance(widget, ipywidgets.HTML):
        return {path: widget}
    return {k: v for i, child in enumerate(widget.children)
            for k, v in _frames(child, (*path, i)).items()}


@pytest.mark.skipif(not FRAMED, reason="ipywidgets 8 only")
def test_every_grid_point_is_a_frame_named_by_its_values():
    calls, open_before = [], plt.get_fignums()
    grid_row, fine_row, stack, out = _figure(calls).children
    assert sorted(calls) == sorted((a, n) for a in (0.0, 0.5, 1.0, 2.0) for n in (3, 5, 9))
    frames = _frames(stack)
    assert len(frames) == 12 and (stack.selected_index, stack.children[2].selected_index) \
        == (2, 0)  # the initial values, a = 1.0 and n = 3
    images = {}
    for (i, j), frame in frames.items():
        data, alt = IMG.search(frame.value).groups()
        assert alt == f"a = {('0', '0.5', '1', '2')[i]}, n = {(3, 5, 9)[j]}"
        images[i, j] = base64.b64decode(data)
        assert images[i, j][8:12] == b"WEBP"
    assert len(set(images.values())) == 12  # each frame its own figure
    assert plt.get_fignums() == open_before
    # The browser selects frames: each grid control's index is linked client-side to the
    # selected_index of every stack at its level (1 outer, 4 inner).
    links = [w for w in _instances.values() if isinstance(w, Link)]
    a_grid, n_grid = grid_row.children
    targets = {(link.source[0].model_id, link.target[1]) for link in links
               if link.source[0] in (a_grid, n_grid)}
    assert (a_grid.model_id, "selected_index") in targets
    assert sum(link.source[0] is n_grid for link in links) >= 4
    assert a_grid.keys and type(a_grid).__name__ == "SelectionSlider"
    assert fine_row.layout.display == "none" and out.layout.display == "none"


@pytest.mark.skipif(not FRAMED, reason="ipywidgets 8 only")
def test_with_a_kernel_any_value_recomputes_and_grid_values_show_frames():
    calls = []
    grid_row, fine_row, stack, out = _figure(calls).children
    a_grid, n_grid = grid_row.children
    (a_fine,) = fine_row.children[1:]
    a_grid.index = 3  # the reader turns a grid knob: the kernel offers any value
    assert fine_row.layout.display is None and a_fine.value == 2.0
    assert stack.layout.display is None and out.layout.display == "none"
    before = len(calls)
    a_fine.value = 1.3  # off the grid: recomputed into the Output
    assert calls[before:] == [(1.3, 3)] and _png(out)[:4] == b"\x89PNG"
    assert out.layout.display is None and stack.layout.display == "none"
    a_fine.value = 0.5  # on the grid: the frame, no recomputation
    assert len(calls) == before + 1 and a_grid.index == 1
    assert stack.layout.display is None and out.layout.display == "none"
    n_grid.index = 2
    assert a_fine.value == 0.5 and len(calls) == before + 1
    assert out.msg_id == ""  # written by the kernel, never captured (nbclient#312)


@pytest.mark.skipif(not FRAMED, reason="ipywidgets 8 only")
def test_too_many_frames_are_refused():
    grid = list(range(12))
    with pytest.raises(ValueError, match="144 frames"):
        widgets.interactive_figure(lambda a, b: None,
                                   a=widgets.choice(grid, 0, "a"),
                                   b=widgets.choice(grid, 0, "b"))


def test_warnings_raised_while_drawing_stay_with_their_figure():
    import warnings

    def draw(a):
        if a > 1:
            warnings.warn(f"a = {a} is large", UserWarning, stacklevel=2)
        plt.subplots()[1].plot([0, a])

    box = widgets.interactive_figure(
        draw, a=widgets.slider(1.0, 0.0, 3.0, 0.5, "a", grid=[1.0, 2.0]))
    if FRAMED:
        grid_row, fine_row, stack, out = box.children
        small, large = (frame.value for frame in _frames(stack).values())
        assert "frame-warning" not in small
        assert '<div class="frame-warning">UserWarning: a = 2.0 is large</div>' in large
        grid_row.children[0].index = 1
        fine_row.children[1].value = 2.5  # off the grid: the warning goes with the figure
    else:
        out = box.children[-1]
        box.children[0].children[0].value = 2.5
    assert out.outputs[-1] == {"output_type": "stream", "name": "stderr",
                               "text": "UserWarning: a = 2.5 is large\n"}
