"""Figures with knobs that respond on the static page and recompute with a kernel.

A knob (:func:`slider`, :func:`choice`) has a *grid*: the positions whose figures are
drawn when the chapter executes. :func:`interactive_figure` stores those figures as
frames in the widget's state and links each knob to an ``ipywidgets.Stack`` of them
in the browser (``jslink``), so the built book switches figures with no kernel. With a
kernel, a knob whose range is continuous also gets a slider for any value of its range,
shown once the kernel sees the reader turn a knob; the figure is then recomputed.
ipywidgets 7 (Colab's 7.7.1) has no ``Stack``: there every knob recomputes, as a plain
ipywidgets control above an Output area.
"""

from __future__ import annotations

import base64
import contextlib
import html
import io
import itertools
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import ipywidgets as W
import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from tqdm.auto import tqdm

# Most frames one widget may hold (the grids' product): about 2.5 MB of page at the
# frame size below.
MAX_FRAMES = 121
# Frames are WebP at this quality, at the figure's own resolution but never wider than
# the book's column (740 px at a 1280 px window), since the page would only scale them
# down: they show at the size of the book's other figures, in 10-25 kB each.
COLUMN_PX, FRAME_QUALITY = 740, 75
_STYLE = {"description_width": "initial"}
_CHOICE_STYLES = ("dropdown", "buttons", "slider")


@dataclass(frozen=True)
class Knob:
    """One control of an :func:`interactive_figure`.

    ``grid`` holds the values drawn as frames (the static page's positions) and
    ``labels`` how each is shown. A numeric knob (``low``, ``high``, ``step`` set)
    takes any value of its range with a kernel; a choice knob takes only its grid.
    """

    description: str
    grid: tuple
    labels: tuple[str, ...]
    value: Any
    style: str = "slider"
    low: float | None = None
    high: float | None = None
    step: float | None = None

    @property
    def index(self) -> int:
        """Position of ``value`` in ``grid``."""
        return self.grid.index(self.value)

    @property
    def numeric(self) -> bool:
        """Whether the knob takes any value of a range (with a kernel), not only its grid."""
        return self.step is not None

    def live_control(self) -> W.Widget:
        """The kernel-side control: a slider over the whole range, or the choice itself."""
        if self.numeric:
            ints = all(isinstance(v, int) for v in (self.value, self.low, self.high, self.step))
            cls = W.IntSlider if ints else W.FloatSlider
            return cls(value=self.value, min=self.low, max=self.high, step=self.step,
                       description=self.description, continuous_update=False, style=_STYLE)
        return self.grid_control()

    def grid_control(self) -> W.Widget:
        """A control over the grid whose ``index`` selects the frame."""
        options = list(zip(self.labels, self.grid, strict=True))
        if self.style == "dropdown":
            return W.Dropdown(options=options, index=self.index,
                              description=self.description, style=_STYLE)
        if self.style == "buttons":
            return W.ToggleButtons(options=options, index=self.index,
                                   description=self.description, style=_STYLE)
        return W.SelectionSlider(options=options, index=self.index,
                                 description=self.description, continuous_update=False,
                                 style=_STYLE)


def _label(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def slider(value: float, low: float, high: float, step: float, description: str, *,
           grid: Sequence[float]) -> Knob:
    """A numeric knob: any value in ``[low, high]`` in steps of ``step`` with a kernel,
    the values ``grid`` (which must hold ``value``) on the static page. All ints make an
    int slider."""
    grid = tuple(grid)
    if not grid or list(grid) != sorted(set(grid)):
        raise ValueError(f"grid of {description!r}: expected increasing distinct values, "
                         f"got {grid}")
    if grid[0] < low or grid[-1] > high:
        raise ValueError(f"grid of {description!r}: {grid} leaves the range [{low}, {high}]")
    if value not in grid:
        raise ValueError(f"value of {description!r}: {value} is not on the grid {grid}")
    return Knob(description, grid, tuple(_label(v) for v in grid), value,
                low=low, high=high, step=step)


def choice(options: Sequence[Any], value: Any, description: str, *,
           style: str = "dropdown") -> Knob:
    """A knob over ``options`` (values, or ``(label, value)`` pairs), each a frame, shown
    as a dropdown, toggle buttons or a slider (``style``)."""
    if style not in _CHOICE_STYLES:
        raise ValueError(f"style: expected one of {_CHOICE_STYLES}, got {style!r}")
    pairs = [o if isinstance(o, tuple) else (_label(o), o) for o in options]
    if not pairs:
        raise ValueError(f"options of {description!r}: expected at least one")
    labels, grid = (tuple(p) for p in zip(*pairs, strict=True))
    if len(set(labels)) != len(labels):
        raise ValueError(f"options of {description!r}: labels repeat: {labels}")
    if value not in grid:
        raise ValueError(f"value of {description!r}: {value!r} is not one of {grid}")
    return Knob(description, grid, labels, value, style=style)


def figure_output(figure: Figure) -> dict:
    """A ``display_data`` output holding ``figure`` as a PNG (what the inline backend shows)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    return {"output_type": "display_data", "metadata": {},
            "data": {"image/png": base64.b64encode(buffer.getvalue()).decode("ascii"),
                     "text/plain": repr(figure)}}


@dataclass(frozen=True)
class Drawing:
    """What one call of a draw function made: its figures (taken off pyplot's list) and
    the warnings it raised (``"Category: message"``), which belong under those figures."""

    figures: tuple[Figure, ...]
    warnings: tuple[str, ...]


def _drawn(draw: Callable[..., None], values: dict) -> Drawing:
    """Call ``draw(**values)``, keeping its figures and its warnings."""
    before = set(plt.get_fignums())
    with warnings.catch_warnings(record=True) as seen:
        draw(**values)
    figures = tuple(plt.figure(n) for n in plt.get_fignums() if n not in before)
    for f in figures:
        plt.close(f)
    return Drawing(figures, tuple(f"{w.category.__name__}: {w.message}" for w in seen))


def alt_text(knobs: dict[str, Knob], indices: Sequence[int]) -> str:
    """What a frame shows, by knob: ``"r = 3.9, steps = 2000"``."""
    return ", ".join(f"{k.description} = {k.labels[i]}"
                     for k, i in zip(knobs.values(), indices, strict=True))


def frame_html(drawing: Drawing, alt: str) -> str:
    """A drawing's figures as WebP images inline in HTML, with ``alt`` as their alt text,
    above its warnings."""
    images = []
    for f in drawing.figures:
        buffer = io.BytesIO()
        f.savefig(buffer, format="webp", dpi=min(f.dpi, COLUMN_PX / f.get_figwidth()),
                  bbox_inches="tight",
                  pil_kwargs={"quality": FRAME_QUALITY})
        data = base64.b64encode(buffer.getvalue()).decode("ascii")
        images.append(f'<img src="data:image/webp;base64,{data}" alt="{html.escape(alt)}" '
                      'style="max-width:100%;height:auto">')
    notes = "".join(f'<div class="frame-warning">{html.escape(w)}</div>'
                    for w in drawing.warnings)
    return "".join(images) + notes


def interactive_figure(draw: Callable[..., None], **knobs: Knob) -> W.Widget:
    """``draw(**values)`` (matplotlib figures, without ``plt.show()``) under knobs.

    With ipywidgets 8 every point of the knobs' grids is drawn now, as a frame the
    browser selects without a kernel; with ipywidgets 7 only the initial values are
    drawn, and every change recomputes. Returns the widget (a VBox).
    """
    for name, knob in knobs.items():
        if not isinstance(knob, Knob):
            raise TypeError(f"{name}: expected a widgets.slider or widgets.choice, "
                            f"got {type(knob).__name__}")
    if not knobs:
        raise ValueError("interactive_figure: expected at least one knob")
    if not hasattr(W, "Stack"):
        return _live_only(draw, knobs)
    frames = math.prod(len(k.grid) for k in knobs.values())
    if frames > MAX_FRAMES:
        raise ValueError(f"knobs: {frames} frames (the grids' product) > {MAX_FRAMES}; "
                         "coarsen a grid")
    return _FramedFigure(draw, knobs).box


def _write(out: W.Output, drawing: Drawing) -> None:
    """Put a drawing's figures, then its warnings (as stderr), into ``out``'s state
    directly (see ``_FramedFigure``)."""
    warned = ({"output_type": "stream", "name": "stderr",
               "text": "".join(w + "\n" for w in drawing.warnings)},) if drawing.warnings else ()
    out.outputs = tuple(figure_output(f) for f in drawing.figures) + warned


def _live_only(draw: Callable[..., None], knobs: dict[str, Knob]) -> W.Widget:
    """ipywidgets 7: one live control per knob above an Output area, redrawn on change."""
    controls = {name: k.live_control() for name, k in knobs.items()}
    out = W.Output()

    def redraw(_=None) -> None:
        _write(out, _drawn(draw, {n: c.value for n, c in controls.items()}))

    for c in controls.values():
        c.observe(redraw, names="value")
    redraw()
    return W.VBox([W.HBox(list(controls.values())), out])


class _FramedFigure:
    """The ipywidgets 8 widget: grid controls linked in the browser to nested stacks of
    frames, and with a kernel, sliders for any value that recompute into an Output.

    Live figures are written into the Output widget's state by the kernel itself, not
    captured with ``with out:``. A captured output makes the notebook executor (nbclient)
    send the widget's state back to the kernel on the shell channel while it waits for
    that channel's reply, which intermittently hangs execution (jupyter/nbclient#312).
    """

    def __init__(self, draw: Callable[..., None], knobs: dict[str, Knob]) -> None:
        self.draw, self.knobs = draw, knobs
        self.grid = {name: k.grid_control() for name, k in knobs.items()}
        points = list(itertools.product(*(range(len(k.grid)) for k in knobs.values())))
        self.frames = {}
        for point in tqdm(points, desc="frames", leave=False, disable=len(points) < 8):
            values = {n: k.grid[i] for (n, k), i in zip(knobs.items(), point, strict=True)}
            self.frames[point] = W.HTML(frame_html(_drawn(draw, values),
                                                   alt_text(knobs, point)))
        self.stack = self._stack(())
        self.fine = {n: k.live_control() for n, k in knobs.items() if k.numeric}
        self.out = W.Output(layout=W.Layout(display="none"))
        self.fine_row = W.HBox([W.Label("any value (recomputed by the kernel):"),
                                *self.fine.values()], layout=W.Layout(display="none"))
        self._syncing = False
        for c in self.grid.values():
            c.observe(self._on_grid, names="index")
        for c in self.fine.values():
            c.observe(self._on_fine, names="value")
        self.box = W.VBox([W.HBox(list(self.grid.values())), self.fine_row, self.stack,
                           self.out])

    def _stack(self, prefix: tuple[int, ...]) -> W.Widget:
        """The frames under ``prefix`` (grid indices of the first knobs): a frame, or a
        Stack over the next knob whose ``selected_index`` follows that knob in the browser."""
        if len(prefix) == len(self.knobs):
            return self.frames[prefix]
        name, knob = list(self.knobs.items())[len(prefix)]
        stack = W.Stack([self._stack((*prefix, i)) for i in range(len(knob.grid))],
                        selected_index=knob.index)
        W.jslink((self.grid[name], "index"), (stack, "selected_index"))
        return stack

    @contextlib.contextmanager
    def _sync(self):
        """Set one kind of control from the other without either observer reacting."""
        self._syncing = True
        try:
            yield
        finally:
            self._syncing = False

    def _show(self, live: bool) -> None:
        self.out.layout.display = None if live else "none"
        self.stack.layout.display = "none" if live else None

    def _on_grid(self, _=None) -> None:
        """A grid knob turned, so a kernel is running: offer the sliders for any value,
        at the grid's values (the browser has already shown the frame)."""
        if self._syncing:
            return
        with self._sync():
            for name, c in self.fine.items():
                c.value = self.grid[name].value
        self.fine_row.layout.display = None
        self._show(live=False)

    def _on_fine(self, _=None) -> None:
        """A slider for any value moved: show the frame if every value is on its grid,
        else recompute."""
        if self._syncing:
            return
        on_grid = {n: _nearest(self.knobs[n].grid, c.value) for n, c in self.fine.items()}
        if all(i is not None for i in on_grid.values()):
            with self._sync():
                for name, i in on_grid.items():
                    self.grid[name].index = i
            self._show(live=False)
            return
        values = {n: c.value for n, c in self.grid.items()}
        values.update({n: c.value for n, c in self.fine.items()})
        _write(self.out, _drawn(self.draw, values))
        self._show(live=True)


def _nearest(grid: tuple, value: float) -> int | None:
    """The index of ``value`` in ``grid`` up to rounding, or None."""
    for i, g in enumerate(grid):
        if math.isclose(g, value, rel_tol=1e-9, abs_tol=1e-12):
            return i
    return None
