"""Classifiers of good and bad networks, and their scores: the labels (a loss below a
threshold), one-number thresholds, ridge regression, AeLLE's orthant classifier, a
classifier by group (each group's majority, e.g. the architecture), and precision,
recall, F1 and the confusion counts of the "good" class."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor


def good_labels(losses: Tensor, threshold: float | None = None, *,
                among: Tensor | Sequence[int] | None = None) -> Tensor:
    """True where the loss is below ``threshold`` (default: the median of the losses of
    the networks ``among``, default all). A non-finite loss (a diverged network) counts
    as the worst, +inf: it is bad, and it moves the median as one bad network, never
    making every label False."""
    losses = torch.as_tensor(losses, dtype=torch.float64)
    if losses.ndim != 1 or not len(losses):
        raise ValueError(f"losses must be a non-empty (R,) vector, got shape "
                         f"{tuple(losses.shape)}")
    losses = torch.where(torch.isfinite(losses) | (losses == -math.inf), losses, math.inf)
    if threshold is None:
        threshold = (losses if among is None else losses[torch.as_tensor(among)]).median()
    elif among is not None:
        raise ValueError("pass threshold or among, not both")
    elif not math.isfinite(threshold):
        raise ValueError(f"threshold must be finite or None, got {threshold}")
    return losses < threshold


@dataclass(frozen=True)
class Threshold:
    """Predict good where ``sign * (feature - threshold) > 0``."""

    threshold: float
    sign: float

    def predict(self, feature: Tensor) -> Tensor:
        """Good (True) or bad for each network, from its feature (R,)."""
        return self.sign * (torch.as_tensor(feature, dtype=torch.float64) - self.threshold) > 0

    @classmethod
    def median(cls, feature: Tensor, good: Tensor) -> Threshold:
        """The median of the training feature, facing the side where good networks lie."""
        feature, good = _training_data(feature, good, "feature")
        m = float(feature.median())
        above = (good & (feature > m)).sum() - (good & (feature <= m)).sum()
        return cls(m, 1.0 if above >= 0 else -1.0)

    @classmethod
    def best(cls, feature: Tensor, good: Tensor) -> Threshold:
        """The threshold and direction with the highest F1 on (validation) data."""
        feature, good = _training_data(feature, good, "feature")
        values = feature.sort().values
        cuts = torch.cat([values[:1] - 1, (values[1:] + values[:-1]) / 2])
        best = max((f1_score(cls(float(c), s).predict(feature), good), float(c), s)
                    for c in cuts for s in (1.0, -1.0))
        return cls(best[1], best[2])


@dataclass(frozen=True)
class LinearClassifier:
    """Ridge regression of +-1 labels on standardised features (with a bias, not
    penalised); good where > 0.

    Not plain least squares: with more features than networks (an interpolated spectrum
    of 128 points, 38 networks) and features that are nearly collinear (neighbouring
    points of smooth spectra), the least-squares fit is underdetermined and its solution
    jumps with the rank LAPACK decides on, which rounding differences between processes
    (thread counts, memory alignment) move: the same inputs gave test F1 0.88 in one run
    and 0.65 in another. The ridge penalty ``ridge`` ||w||^2 on standardised features
    makes the fit unique and continuous in its inputs, so rounding moves it by rounding.
    """

    weights: Tensor

    @classmethod
    def fit(cls, features: Tensor, good: Tensor, ridge: float = 1.0) -> LinearClassifier:
        """Fit to features (R, F) and labels (R,) bool; ``ridge`` > 0 (1: a unit prior on
        the weights of features scaled to unit variance, fixed, not tuned)."""
        if not ridge > 0:
            raise ValueError(f"ridge must be > 0, got {ridge}")
        X = _with_bias(_training_data(features, good, "features")[0])[:, :-1]
        y = torch.where(torch.as_tensor(good), 1.0, -1.0).to(X)
        mean, scale = X.mean(0), X.std(0, correction=0)
        scale = torch.where(scale > 0, scale, 1.0)
        Z = (X - mean) / scale
        gram = Z.mT @ Z + ridge * torch.eye(Z.shape[1], dtype=Z.dtype, device=Z.device)
        w = torch.linalg.solve(gram, Z.mT @ (y - y.mean()))
        bias = y.mean() - (mean / scale) @ w
        return cls(torch.cat([w / scale, bias.unsqueeze(0)]))

    def predict(self, features: Tensor) -> Tensor:
        """Good (True) or bad for each network, from its features (R, F)."""
        return _with_bias(features) @ self.weights > 0


def _training_data(features, good, name: str) -> tuple[Tensor, Tensor]:
    """(features as float64, good as bool), refusing a non-finite feature (a median or
    a fit would pass it on in silence) and labels of another length, naming them."""
    features = torch.as_tensor(features, dtype=torch.float64)
    good = torch.as_tensor(good).bool()
    if good.shape != features.shape[:1]:
        raise ValueError(f"good must have one label per network ({features.shape[0]}), got "
                         f"shape {tuple(good.shape)}")
    bad = ~torch.isfinite(features.reshape(len(features), -1)).all(-1)
    if bool(bad.any()):
        raise ValueError(f"{name} of network {int(bad.nonzero()[0])} is not finite")
    return features, good


def _with_bias(features: Tensor) -> Tensor:
    X = torch.as_tensor(features, dtype=torch.float64)
    X = X.unsqueeze(-1) if X.ndim == 1 else X
    return torch.cat([X, X.new_ones(len(X), 1)], dim=1)


@dataclass(frozen=True)
class OrthantClassifier:
    """Table 4's classifier: the medians of d PCs cut the space into 2^d orthants; the
    orthants holding more good than bad training networks are predicted good."""

    medians: Tensor
    good_cells: frozenset

    @classmethod
    def fit(cls, pcs: Tensor, good: Tensor) -> OrthantClassifier:
        pcs, good = _training_data(pcs, good, "pcs")
        medians = pcs.median(0).values
        cells = _cells(pcs, medians)
        counts: dict[int, int] = {}
        for c, g in zip(cells.tolist(), good.tolist(), strict=True):
            counts[c] = counts.get(c, 0) + (1 if g else -1)
        return cls(medians, frozenset(c for c, n in counts.items() if n > 0))

    def predict(self, pcs: Tensor) -> Tensor:
        """Good (True) or bad for each network, from its leading PCs (R, d)."""
        cells = _cells(torch.as_tensor(pcs, dtype=torch.float64), self.medians)
        return torch.tensor([c in self.good_cells for c in cells.tolist()], device=cells.device)


def _cells(pcs: Tensor, medians: Tensor) -> Tensor:
    bits = (pcs > medians).long()
    return (bits * (2 ** torch.arange(pcs.shape[1], device=pcs.device))).sum(1)


def precision_recall_f1(predicted_good: Tensor, good: Tensor) -> tuple[float, float, float]:
    """Precision, recall and F1 of the "good" class (0 where undefined)."""
    predicted_good, good = predicted_good.bool(), good.bool()
    tp = int((predicted_good & good).sum())
    precision = tp / max(int(predicted_good.sum()), 1)
    recall = tp / max(int(good.sum()), 1)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def f1_score(predicted_good: Tensor, good: Tensor) -> float:
    """The F1 score of the "good" predictions (the third of :func:`precision_recall_f1`)."""
    return precision_recall_f1(predicted_good, good)[2]


@dataclass(frozen=True)
class GroupClassifier:
    """Predict for each network its group's majority label in the training networks
    (e.g. the architecture: the baseline a spectrum must beat where the architecture
    alone decides the accuracy). A group not seen in training is predicted bad."""

    good_groups: frozenset

    @classmethod
    def fit(cls, groups: Sequence, good: Tensor) -> GroupClassifier:
        counts: dict = {}
        for group, g in zip(groups, torch.as_tensor(good).tolist(), strict=True):
            counts[group] = counts.get(group, 0) + (1 if g else -1)
        return cls(frozenset(group for group, n in counts.items() if n > 0))

    def predict(self, groups: Sequence) -> Tensor:
        """Good (True) or bad for each network, from its group."""
        return torch.tensor([group in self.good_groups for group in groups], dtype=torch.bool)


def confusion(predicted_good: Tensor, good: Tensor) -> dict[str, int]:
    """The counts {"TP", "FP", "FN", "TN"} of the "good" class."""
    p, g = torch.as_tensor(predicted_good).bool(), torch.as_tensor(good).bool()
    return {"TP": int((p & g).sum()), "FP": int((p & ~g).sum()),
            "FN": int((~p & g).sum()), "TN": int((~p & ~g).sum())}
