"""Scale presets, figures and widgets used by the chapters."""

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

from lyaplib import cells, lyapunov_spectrum, plotting, scale, widgets  # noqa: E402


def test_scale_presets(monkeypatch):
    monkeypatch.setenv("LYAPLIB_SCALE", "ci")
    assert scale.current() == "ci" and scale.pick(1, 2, 3) == 1
    monkeypatch.setenv("LYAPLIB_SCALE", " Paper ")
    assert scale.pick(1, 2, 3) == 3
    monkeypatch.delenv("LYAPLIB_SCALE")
    assert scale.current() == "book"
    monkeypatch.setenv("LYAPLIB_SCALE", "huge")
    with pytest.raises(ValueError, match="LYAPLIB_SCALE must be one of"):
        scale.current()


def test_interactive_figure_draws_now_and_on_change():
    calls = []
    a = widgets.slider(1.0, 0.0, 2.0, 0.1, "a")
    n = widgets.slider(3, 1, 9, 1, "n")
    box = widgets.interactive_figure(lambda a, n: calls.append((a, n)), a=a, n=n)
    assert calls == [(1.0, 3)] and type(n).__name__ == "IntSlider"
    assert not a.continuous_update  # each change runs the engine: update on release
    n.value = 5
    assert calls[-1] == (1.0, 5)
    assert box.children[-1].outputs is not None


def test_plots_label_their_axes():
    henon = cells.Henon()
    res = lyapunov_spectrum(henon, 50, h0=henon.initial_state(4).double(), keep_trace=True)
    ax = plotting.plot_spectrum(res)
    assert ax.get_xlabel() == "index i" and "nats / step" in ax.get_ylabel()
    ax = plotting.plot_convergence(res, indices=(0, 1), exact=torch.tensor([0.42, -1.62]))
    assert len(ax.lines) == 4 and ax.get_xscale() == "log"
    with pytest.raises(ValueError, match="keep_trace"):
        plotting.plot_convergence(lyapunov_spectrum(henon, 5))
