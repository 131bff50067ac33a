"""Scale presets and figures used by the chapters (the widgets: test_widgets.py)."""

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

from lyaplib import cells, lyapunov_spectrum, plotting, scale  # noqa: E402


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


def test_plots_label_their_axes():
    henon = cells.Henon()
    res = lyapunov_spectrum(henon, 50, h0=henon.initial_state(4).double(), keep_trace=True)
    ax = plotting.plot_spectrum(res)
    assert ax.get_xlabel() == "index i" and "nats / step" in ax.get_ylabel()
    ax = plotting.plot_convergence(res, indices=(0, 1), exact=torch.tensor([0.42, -1.62]))
    assert len(ax.lines) == 4 and ax.get_xscale() == "log"
    with pytest.raises(ValueError, match="keep_trace"):
        plotting.plot_convergence(lyapunov_spectrum(henon, 5))


def test_spectra_and_correlation_plots():
    ax = plotting.plot_spectra_by([[0.1, -1.0], [-0.2, -2.0], [-0.5, -3.0]], [1.5, 2.0, 2.5])
    assert len(ax.lines) == 4 and ax.get_xlabel() == "index i"  # 3 spectra + the zero line
    assert ax.figure.axes[-1].get_ylabel() == "validation loss"  # the colour bar
    ax = plotting.plot_correlation([0, 1, 2, 3], [1, 3, 5, 7], xlabel="x (nats)", ylabel="y")
    assert "r = 1.00" in ax.get_legend().get_texts()[0].get_text()


def test_pearson_agrees_with_numpy_and_its_p_value_is_calibrated():
    from lyaplib import stats
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, generator=g, dtype=torch.float64)
    y = 0.5 * x + torch.randn(40, generator=g, dtype=torch.float64)
    r, p = stats.pearson(x, y, permutations=2000)
    assert r == pytest.approx(float(torch.corrcoef(torch.stack([x, y]))[0, 1]), abs=1e-12)
    assert p < 0.01
    r, p = stats.pearson(x, -2 * x + 1, permutations=200)
    assert r == pytest.approx(-1.0) and p == pytest.approx(1 / 201)
    # under independence the p-value is uniform: about 10 % of samples fall below 0.1
    hits = sum(stats.pearson(torch.randn(12, generator=g), torch.randn(12, generator=g),
                             permutations=300, seed=s)[1] < 0.1 for s in range(200))
    assert 8 <= hits <= 35
    with pytest.raises(ValueError, match="same length"):
        stats.pearson([1, 2, 3], [1, 2])


def test_ranks_and_spearman():
    from lyaplib import stats
    assert stats.ranks([3.0, 1.0, 2.0]).tolist() == [3.0, 1.0, 2.0]
    assert stats.ranks([1.0, 2.0, 2.0, 5.0]).tolist() == [1.0, 2.5, 2.5, 4.0]  # ties: average
    x = [0.25, 0.5, 1.0, 2.0, 4.0, 8.0]
    assert stats.spearman([v ** 3 for v in x], x, permutations=100)[0] == pytest.approx(1.0)
    assert stats.spearman([-v for v in x], x, permutations=100)[0] == pytest.approx(-1.0)
    # one swapped neighbour pair of six: 1 - 6 * 2 / (6 * 35)
    r, _ = stats.spearman([1, 2, 4, 3, 5, 6], range(6), permutations=100)
    assert r == pytest.approx(1 - 12 / 210)
