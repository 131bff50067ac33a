"""ipywidgets front ends for the chapters.

Every widget draws its initial state immediately, so the static book (which has
no kernel) shows a meaningful figure, and recomputes only when a slider is
released (``continuous_update=False``), since each update runs the QR engine.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable

import ipywidgets as W
import matplotlib.pyplot as plt
from matplotlib.figure import Figure


def slider(value: float, low: float, high: float, step: float, description: str) -> W.Widget:
    """A float (or int, when all arguments are ints) slider that updates on release."""
    cls = W.IntSlider if all(isinstance(v, int) for v in (value, low, high, step)) else \
        W.FloatSlider
    return cls(value=value, min=low, max=high, step=step, description=description,
               continuous_update=False, style={"description_width": "initial"})


def figure_output(figure: Figure) -> dict:
    """A ``display_data`` output holding ``figure`` as a PNG (what the inline backend shows)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    return {"output_type": "display_data", "metadata": {},
            "data": {"image/png": base64.b64encode(buffer.getvalue()).decode("ascii"),
                     "text/plain": repr(figure)}}


def interactive_figure(draw: Callable[..., None], **controls: W.Widget) -> W.Widget:
    """Call ``draw(**values)`` (which makes matplotlib figures, without ``plt.show()``) now
    and on every change; returns a VBox of the controls above an Output area.

    The figures are written into the Output widget's state by the kernel itself, not
    captured with ``with out:``. A captured output makes the notebook executor (nbclient,
    which mimics the front end) send the widget's state back to the kernel on the shell
    channel while it waits for that channel's reply; that traffic is what intermittently
    hangs notebook execution (jupyter/nbclient#312). Here nothing flows back, and the
    saved widget state still holds the figure for the static book.
    """
    out = W.Output()

    def redraw(_=None) -> None:
        before = set(plt.get_fignums())
        draw(**{name: c.value for name, c in controls.items()})
        figures = [plt.figure(n) for n in plt.get_fignums() if n not in before]
        out.outputs = tuple(figure_output(f) for f in figures)
        for f in figures:
            plt.close(f)

    for c in controls.values():
        c.observe(redraw, names="value")
    redraw()
    return W.VBox([W.HBox(list(controls.values())), out])
