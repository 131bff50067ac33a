"""The book's standard figures, one function each. Every function draws on ``ax``
(a new figure when None), labels its axes with units, and returns the axes."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes

from .spectrum import LyapunovResult

# The book's text column shows about 770 pixels: at 110 dpi a figure of up to 7 inches is
# shown at full size, and the chapters keep multi-panel figures at 8.5 inches or less, so
# that no figure is shrunk below ~80 % and 9-point tick labels stay legible.
BOOK_STYLE = {"figure.dpi": 110, "axes.grid": True, "grid.alpha": 0.3, "font.size": 10,
              "axes.titlesize": 10.5, "axes.labelsize": 10, "xtick.labelsize": 9,
              "ytick.labelsize": 9, "legend.fontsize": 8.5}


def use_book_style() -> None:
    """Apply the book's figure style (resolution, light grid) to matplotlib's defaults."""
    plt.rcParams.update(BOOK_STYLE)


def _axes(ax: Axes | None) -> Axes:
    return plt.subplots(figsize=(6, 3.6))[1] if ax is None else ax


def plot_spectrum(result: LyapunovResult, ax: Axes | None = None, *, label: str | None = None,
                  **style) -> Axes:
    """Exponent against index, with standard-error bars over sequences."""
    ax = _axes(ax)
    idx = np.arange(1, result.k + 1)
    err = result.stderr.cpu().numpy()
    ax.errorbar(idx, result.exponents.cpu().numpy(), yerr=None if np.isnan(err).all() else err,
                marker=style.pop("marker", "o"), ms=style.pop("ms", 3), capsize=2, label=label,
                **style)
    ax.axhline(0, color="0.6", lw=0.8)
    ax.set_xlabel("index i")
    ax.set_ylabel(f"$\\lambda_i$ ({result.unit} / step)")
    if label:
        ax.legend()
    return ax


def plot_convergence(result: LyapunovResult, ax: Axes | None = None, *, indices=(0,),
                     exact: torch.Tensor | None = None) -> Axes:
    """Running estimate of chosen exponents against accumulated steps (needs ``keep_trace``)."""
    if result.trace is None:
        raise ValueError("result has no trace: call lyapunov_spectrum(..., keep_trace=True)")
    ax = _axes(ax)
    steps = result.trace_steps.numpy()
    for i in indices:
        line, = ax.plot(steps, result.trace[:, i].cpu().numpy(), label=f"$\\lambda_{{{i + 1}}}$")
        if exact is not None:
            ax.axhline(float(exact[i]), ls="--", color=line.get_color(), lw=1)
    ax.set_xscale("log")
    ax.set_xlabel("accumulated steps T")
    ax.set_ylabel(f"running estimate ({result.unit} / step)")
    ax.legend()
    return ax


def plot_spectra_by(spectra, values, ax: Axes | None = None, *, label: str = "validation loss",
                    cmap: str = "viridis_r", unit: str = "nats") -> Axes:
    """Many spectra (one row each) against index, coloured by a per-spectrum value.

    ``spectra``: (R, k) array-like;  ``values``: (R,), e.g. each network's loss.
    """
    ax = _axes(ax)
    spectra, values = np.asarray(spectra, dtype=float), np.asarray(values, dtype=float)
    norm = plt.Normalize(values.min(), values.max())
    colours = plt.get_cmap(cmap)(norm(values))
    idx = np.arange(1, spectra.shape[1] + 1)
    for row in np.argsort(-values):  # best networks drawn last, on top
        ax.plot(idx, spectra[row], color=colours[row], lw=1)
    ax.figure.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label=label)
    ax.axhline(0, color="0.6", lw=0.8)
    ax.set_xlabel("index i")
    ax.set_ylabel(f"$\\lambda_i$ ({unit} / step)")
    return ax


def plot_correlation(x, y, ax: Axes | None = None, *, xlabel: str, ylabel: str,
                     r: float | None = None, **style) -> Axes:
    """Scatter of y against x with the least-squares line and Pearson r in the legend."""
    ax = _axes(ax)
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    r = np.corrcoef(x, y)[0, 1] if r is None else r
    ax.scatter(x, y, s=style.pop("s", 18), **style)
    slope, intercept = np.polyfit(x, y, 1)
    grid = np.linspace(x.min(), x.max(), 2)
    ax.plot(grid, slope * grid + intercept, color="0.3", lw=1, label=f"Pearson r = {r:.2f}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend()
    return ax


def plot_aelle_plane(embedding, values, ax: Axes | None = None, *, label: str,
                     boundary: float | None = None, categorical: bool = False,
                     names: dict | None = None) -> Axes:
    """Networks in the AeLLE plane (PC1, PC2) coloured by ``values``: good/bad, a
    hyperparameter (colour bar) or, with ``categorical``, a category (legend)."""
    ax = _axes(ax)
    emb = np.asarray(embedding, dtype=float)
    if categorical:
        for i, cat in enumerate(dict.fromkeys(values)):
            mask = np.array([v == cat for v in values])
            ax.scatter(emb[mask, 0], emb[mask, 1], s=10, color=f"C{i}",
                       label=(names or {}).get(cat, str(cat)))
        ax.legend(fontsize=7, ncol=2)
    else:
        points = ax.scatter(emb[:, 0], emb[:, 1], s=10, c=np.asarray(values, dtype=float),
                            cmap="viridis")
        ax.figure.colorbar(points, ax=ax, label=label)
    if boundary is not None:
        ax.axvline(boundary, color="k", lw=1)
    ax.set_xlabel("AeLLE PC1")
    ax.set_ylabel("AeLLE PC2")
    return ax


def plot_stacked_histogram(feature, good, ax: Axes | None = None, *, xlabel: str,
                           boundary: float | None = None, bins: int = 20) -> Axes:
    """Stacked histograms of a feature for good (green) and bad (red) networks."""
    ax = _axes(ax)
    feature, good = np.asarray(feature, dtype=float), np.asarray(good, dtype=bool)
    ax.hist([feature[good], feature[~good]], bins=bins, stacked=True,
            color=["tab:green", "tab:red"], label=["loss below median", "loss above median"])
    if boundary is not None:
        ax.axvline(boundary, color="k", lw=1)
    ax.set(xlabel=xlabel, ylabel="networks")
    ax.legend(fontsize=7)
    return ax
