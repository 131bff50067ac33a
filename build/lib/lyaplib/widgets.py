"""ipywidgets front ends for the chapters.

Every widget draws its initial state immediately, so the static book (which has
no kernel) shows a meaningful figure, and recomputes only when a slider is
released (``continuous_update=False``), since each update runs the QR engine.
"""

from __future__ import annotations

from collections.abc import Callable

import ipywidgets as W
import matplotlib.pyplot as plt
from IPython.display import display


def slider(value: float, low: float, high: float, step: float, description: str) -> W.Widget:
    """A float (or int, when all arguments are ints) slider that updates on release."""
    cls = W.IntSlider if all(isinstance(v, int) for v in (value, low, high, step)) else \
        W.FloatSlider
    return cls(value=value, min=low, max=high, step=step, description=description,
               continuous_update=False, style={"description_width": "initial"})


def interactive_figure(draw: Callable[..., None], **controls: W.Widget) -> W.Widget:
    """Call ``draw(**values)`` (which makes a matplotlib figure) now and on every change.

    Returns a VBox of the controls above an Output area holding the figure.
    """
    out = W.Output()

    def redraw(_=None) -> None:
        with out:
            out.clear_output(wait=True)
            draw(**{name: c.value for name, c in controls.items()})
            # Display explicitly (whatever the matplotlib backend) and close, so the
            # figure lands in the Output widget, and so in the saved widget state.
            for number in plt.get_fignums():
                figure = plt.figure(number)
                display(figure)
                plt.close(figure)

    for c in controls.values():
        c.observe(redraw, names="value")
    redraw()
    return W.VBox([W.HBox(list(controls.values())), out])
