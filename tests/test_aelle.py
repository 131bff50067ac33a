"""AeLLE: interpolation, the autoencoder and the classifiers on data with a known answer."""

import math

import pytest
import torch

from lyaplib import aelle


def test_interpolation_is_exact_for_linear_spectra_and_the_identity_on_its_own_grid():
    k = 10
    x = (torch.arange(k, dtype=torch.float64) + 0.5) / k
    line = 1.0 - 3.0 * x
    assert torch.allclose(aelle.interpolate([line], points=k)[0], line, atol=1e-14)
    fine = aelle.interpolate([line], points=40)[0]
    grid = (torch.arange(40, dtype=torch.float64) + 0.5) / 40
    inside = (grid >= x[0]) & (grid <= x[-1])
    assert torch.allclose(fine[inside], 1.0 - 3.0 * grid[inside], atol=1e-14)
    assert (fine[grid < x[0]] == line[0]).all() and (fine[grid > x[-1]] == line[-1]).all()
    mixed = aelle.interpolate([torch.ones(4), torch.ones(64) * 2], points=16)
    assert mixed.shape == (2, 16) and torch.equal(mixed[1], torch.full((16,), 2.0,
                                                                      dtype=torch.float64))
    with pytest.raises(ValueError, match="points"):
        aelle.interpolate([line], points=1)


def test_precision_recall_f1():
    pred = torch.tensor([1, 1, 0, 0, 1], dtype=torch.bool)
    true = torch.tensor([1, 0, 1, 0, 1], dtype=torch.bool)
    p, r, f = aelle.precision_recall_f1(pred, true)
    assert (p, r) == (2 / 3, 2 / 3) and f == pytest.approx(2 / 3)
    assert aelle.precision_recall_f1(torch.zeros(3, dtype=torch.bool), true[:3]) == (0, 0, 0)


def test_thresholds_linear_and_orthant_classifiers():
    g = torch.Generator().manual_seed(0)
    feature = torch.randn(200, generator=g, dtype=torch.float64)
    good = feature < 0.3  # good networks have a small feature
    median = aelle.Threshold.median(feature, good)
    assert median.sign == -1.0 and median.threshold == pytest.approx(float(feature.median()))
    best = aelle.Threshold.best(feature, good)
    assert aelle.f1_score(best.predict(feature), good) == 1.0
    X = torch.randn(300, 2, generator=g, dtype=torch.float64)
    good2 = X[:, 0] + 2 * X[:, 1] > 0.5
    linear = aelle.LinearClassifier.fit(X, good2)
    assert aelle.f1_score(linear.predict(X), good2) > 0.9
    xor = (X[:, 0] > X[:, 0].median()) == (X[:, 1] > X[:, 1].median())
    assert aelle.f1_score(aelle.OrthantClassifier.fit(X, xor).predict(X), xor) == 1.0
    one_pc = aelle.OrthantClassifier.fit(X[:, :1], xor)
    assert aelle.f1_score(one_pc.predict(X[:, :1]), xor) < 0.75  # one PC cannot see XOR


def synthetic_population(n: int, seed: int):
    """Spectra of sizes 16-64 whose loss is set by a zero-mean wiggle s, on top of a larger
    nuisance offset o that moves the mean, the maximum and the first principal component
    of the raw spectra but says nothing about the loss."""
    g = torch.Generator().manual_seed(seed)
    spectra, losses = [], []
    for _ in range(n):
        s, o = 2 * torch.rand(2, generator=g, dtype=torch.float64) - 1
        k = int(torch.randint(16, 65, (), generator=g))
        x = (torch.arange(k, dtype=torch.float64) + 0.5) / k
        curve = -0.2 + o - 3 * x + 0.4 * s * torch.sin(2 * math.pi * x)
        spectra.append(curve + 0.03 * torch.randn(k, generator=g, dtype=torch.float64))
        losses.append(float(s) + 0.05 * float(torch.randn((), generator=g)))
    return aelle.interpolate(spectra, points=64), torch.tensor(losses)


def test_aelle_finds_the_feature_that_predicts_the_loss():
    train, y_train = synthetic_population(300, 0)
    val, y_val = synthetic_population(100, 1)
    test, y_test = synthetic_population(200, 2)
    config = aelle.AeConfig(latent=8, alphas=(1.0, 5.0, 20.0), epochs_per_stage=60, lr=3e-3,
                            patience=30, seed=0)
    model = aelle.fit_autoencoder(train, y_train, val, y_val, config, progress=False)
    good_train, good_test = aelle.good_labels(y_train), y_test < y_train.median()

    def f1(train_feature, test_feature):
        rule = aelle.Threshold.median(train_feature, good_train)
        return aelle.f1_score(rule.predict(test_feature), good_test)

    f1_aelle = f1(model.embed(train, 1)[:, 0], model.embed(test, 1)[:, 0])
    f1_mean = f1(train.mean(1), test.mean(1))
    f1_max = f1(train[:, 0], test[:, 0])
    mean, axes = aelle.pca(train)
    f1_raw_pc1 = f1((train - mean) @ axes[:, 0], (test - mean) @ axes[:, 0])
    # a pipeline that ignored the spectrum could not beat always answering "good" (F1 2/3)
    assert f1_aelle > 0.85, f1_aelle
    for name, value in [("mean", f1_mean), ("max", f1_max), ("raw PC1", f1_raw_pc1)]:
        assert value < f1_aelle - 0.15, (name, value, f1_aelle)
    # deterministic for a seed; predictions in the units of the targets
    again = aelle.fit_autoencoder(train, y_train, val, y_val, config, progress=False)
    assert torch.equal(again.latent(test), model.latent(test))
    corr = torch.corrcoef(torch.stack([model.predict(test).double(), y_test.double()]))[0, 1]
    assert corr > 0.8, corr


def test_compare_scores_every_classifier_on_the_test_split():
    train, y_train = synthetic_population(200, 3)
    raw = [row for row in train]  # already on one grid: compare interpolates again, harmlessly
    config = aelle.AeConfig(latent=8, alphas=(1.0, 5.0, 20.0), epochs_per_stage=40, lr=3e-3,
                            patience=20, seed=0)
    result = aelle.compare(raw, y_train, points=64, config=config, progress=False)
    train_idx, val_idx, test_idx = result.split
    assert len(train_idx) + len(val_idx) + len(test_idx) == 200
    assert set(result.scores) == {"AeLLE PC1", "LE mean", "LE max", "LE PC1"}
    assert result.scores["AeLLE PC1"][2] > 0.8
    assert result.scores["AeLLE PC1"][2] > result.scores["LE mean"][2]
    assert result.embedding.shape == (200, 2)
    with pytest.raises(ValueError, match="fractions"):
        aelle.split_indices(100, (0.5, 0.2, 0.2))


def test_early_stopping_leaves_a_finished_notebook_bar(monkeypatch):
    # a notebook bar whose widget max stays above its value is saved unfinished (and drawn
    # red on close): early stopping must move the widget's max, not only tqdm's total
    notebook = pytest.importorskip("tqdm.notebook")
    bars = []

    class Recorded(notebook.tqdm):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            bars.append(self)

    monkeypatch.setattr(aelle, "tqdm", Recorded)
    g = torch.Generator().manual_seed(0)
    spectra, losses = torch.randn(40, 8, generator=g), torch.rand(40, generator=g)
    # losses unrelated to the spectra: the validation loss soon stops improving
    config = aelle.AeConfig(latent=2, alphas=(1.0, 1.0), epochs_per_stage=30, patience=2,
                            lr=0.05)
    aelle.fit_autoencoder(spectra[:30], losses[:30], spectra[30:], losses[30:], config)
    (bar,) = bars
    widget = bar.container.children[1]
    assert bar.n < 60, "the fit did not stop early; the test needs a smaller patience"
    assert widget.value == widget.max == bar.n and widget.bar_style != "danger"


def test_the_linear_classifier_on_more_features_than_networks_is_stable_under_rounding():
    """Chapter 08's "linear on raw LEs": 38 networks, 128 points of smooth spectra, nearly
    collinear. Plain least squares gave test F1 0.88 in one run and 0.65 in another on the
    same inputs: its solution jumps with the rank LAPACK decides on. Here spectra built
    from 8 smooth shapes whose weights fall to 1e-12 are fitted again after perturbing
    them by 1e-15 (relative, what rounding differences between processes do); plain
    least squares flipped most test labels in 2 of these 10 perturbations."""
    g = torch.Generator().manual_seed(0)
    points = torch.linspace(0, 1, 128, dtype=torch.float64)
    shapes = torch.stack([torch.cos(torch.pi * i * points) for i in range(8)])
    weights = torch.logspace(0, -12, 8, dtype=torch.float64)

    def spectra(n):
        return (torch.randn(n, 8, generator=g, dtype=torch.float64) * weights) @ shapes

    X, X_test = spectra(38), spectra(114)
    good = torch.rand(38, generator=g) > 0.5
    reference = aelle.LinearClassifier.fit(X, good).predict(X_test)
    for _ in range(10):
        rounded = X * (1 + 1e-15 * torch.randn(X.shape, generator=g, dtype=torch.float64))
        assert torch.equal(aelle.LinearClassifier.fit(rounded, good).predict(X_test),
                           reference)
    with pytest.raises(ValueError, match="ridge must be > 0"):
        aelle.LinearClassifier.fit(X, good, ridge=0.0)
