"""AeLLE: an autoencoder on Lyapunov spectra whose latent space predicts accuracy.

The pipeline of Vogt et al. (AeLLE):

1. ``interpolate`` spectra of any size onto one grid over the normalised index;
2. ``fit_autoencoder``: encoder -> latent -> decoder reconstructs the spectrum,
   and a linear predictor reads the (scaled) loss from the latent; the weight
   of the prediction loss is raised in stages;
3. ``PCA`` of the latent codes (the "AeLLE plane");
4. simple classifiers of good/bad networks (good = loss below the median of
   the training set) on AeLLE PC1 and on LE statistics, scored by
   ``precision_recall_f1`` on held-out networks (the classifiers live in
   :mod:`lyaplib.classify`).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .classify import (  # noqa: F401 - the classifiers, importable from here as before
    GroupClassifier,
    LinearClassifier,
    OrthantClassifier,
    Threshold,
    confusion,
    f1_score,
    good_labels,
    precision_recall_f1,
)

# ----------------------------------------------------------------------------- spectra


def interpolate(spectra: Sequence[Sequence[float]] | Tensor, points: int = 256) -> Tensor:
    """Spectra of any lengths -> (R, points), piecewise linear over the normalised index.

    Exponent i of a spectrum of length k sits at x = (i + 1/2) / k in (0, 1);
    the result samples each curve at x = (j + 1/2) / points, holding the end
    values flat beyond the first and last exponent. (The authors doubled by
    midpoints up to 1,024 points, which is linear interpolation too but only
    for sizes that divide 1,024; this works for every size.)
    """
    if points < 2:
        raise ValueError(f"points must be >= 2, got {points}")
    grid = (torch.arange(points, dtype=torch.float64) + 0.5) / points
    rows = []
    for i, spectrum in enumerate(spectra):
        y = torch.as_tensor(spectrum, dtype=torch.float64).flatten()
        if len(y) < 2:
            raise ValueError(f"spectra[{i}]: every spectrum needs at least 2 exponents")
        if not bool(torch.isfinite(y).all()):
            raise ValueError(f"spectra[{i}] is not finite: a network whose spectrum could "
                             "not be computed has no place on the AeLLE grid")
        grid = grid.to(y.device)  # moved once; a no-op after that
        pos = grid * len(y) - 0.5  # fractional index into y
        lo = pos.floor().clamp(0, len(y) - 2).long()
        w = (pos - lo).clamp(0, 1)
        rows.append(y[lo] * (1 - w) + y[lo + 1] * w)
    return torch.stack(rows)


# ----------------------------------------------------------------------------- autoencoder

class AutoEncoder(nn.Module):
    """in -> in/4 -> latent (tanh, dropout), mirrored decoder, linear predictor (sigmoid)."""

    def __init__(self, size: int, latent: int = 32, dropout: float = 0.1):
        super().__init__()
        hidden = max(size // 4, latent)
        self.encoder = nn.Sequential(nn.Linear(size, hidden), nn.Tanh(), nn.Dropout(dropout),
                                     nn.Linear(hidden, latent), nn.Tanh())
        self.decoder = nn.Sequential(nn.Linear(latent, hidden), nn.Tanh(), nn.Dropout(dropout),
                                     nn.Linear(hidden, size))
        self.predictor = nn.Sequential(nn.Linear(latent, 1), nn.Sigmoid())

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """z (R, size) -> (reconstruction (R, size), prediction (R,), latent (R, latent))."""
        latent = self.encoder(z)
        return self.decoder(latent), self.predictor(latent).squeeze(-1), latent


@dataclass(frozen=True)
class AeConfig:
    """Training of the autoencoder: Adam, and alpha raised stage by stage."""

    latent: int = 32
    alphas: tuple[float, ...] = (5.0, 5.0, 10.0, 20.0)
    epochs_per_stage: int = 100
    lr: float = 1e-3
    batch_size: int = 64
    patience: int = 50   # epochs without a better validation prediction loss (last stage)
    seed: int = 0


@dataclass
class AeLLE:
    """A fitted AeLLE: the autoencoder, the input scaling, and the PCA of the latent codes."""

    model: AutoEncoder
    mean: Tensor            # (size,) spectrum mean of the training set
    scale: Tensor           # () spectrum scale of the training set
    target_range: tuple[float, float]
    pca_mean: Tensor = field(default=None)
    pca_axes: Tensor = field(default=None)  # (latent, latent), principal axes as columns
    history: dict = field(default_factory=dict)

    def _scaled(self, spectra: Tensor) -> Tensor:
        return (torch.as_tensor(spectra).to(self.mean) - self.mean) / self.scale

    @torch.no_grad()
    def latent(self, spectra: Tensor) -> Tensor:
        """(R, size) spectra -> (R, latent) codes."""
        self.model.eval()
        return self.model(self._scaled(spectra))[2]

    @torch.no_grad()
    def predict(self, spectra: Tensor) -> Tensor:
        """Predicted loss (in the units of the training targets), (R,)."""
        self.model.eval()
        low, high = self.target_range
        return low + (high - low) * self.model(self._scaled(spectra))[1]

    def embed(self, spectra: Tensor, components: int = 2) -> Tensor:
        """(R, components) coordinates in the AeLLE plane (PCs of the latent codes)."""
        return (self.latent(spectra) - self.pca_mean) @ self.pca_axes[:, :components]


def fit_autoencoder(spectra: Tensor, targets: Tensor, val_spectra: Tensor, val_targets: Tensor,
                    config: AeConfig = AeConfig(), *, progress: bool = True) -> AeLLE:
    """Train AeLLE on (R, size) interpolated spectra and their (R,) losses.

    Loss = ``mean |Z - Z_hat|`` + alpha * mean (T - T_hat)^2, with targets scaled
    to [0, 1] by the training range and alpha following ``config.alphas``
    (one stage of ``epochs_per_stage`` each). The returned model is the one
    with the lowest validation prediction loss during the last stage (early
    stopping after ``patience`` epochs without improvement). Deterministic
    for a given ``config.seed``.
    """
    for name, t in (("targets", targets), ("val_targets", val_targets)):
        bad = ~torch.isfinite(torch.as_tensor(t))
        if bool(bad.any()):
            raise ValueError(f"{name}[{int(bad.nonzero()[0])}] is not finite: a diverged "
                             "network has no loss to regress on (drop it)")
    spectra, val_spectra = spectra.float(), val_spectra.float()
    targets, val_targets = targets.float(), val_targets.float()
    if len(spectra) != len(targets) or len(val_spectra) != len(val_targets):
        raise ValueError("spectra and targets must have the same number of rows")
    mean, scale = spectra.mean(0), spectra.std().clamp_min(1e-12)
    low, high = float(targets.min()), float(targets.max())
    span = max(high - low, 1e-12)
    norm = lambda z: (z - mean) / scale  # noqa: E731
    t_train, t_val = (targets - low) / span, (val_targets - low) / span
    g = torch.Generator().manual_seed(config.seed)
    with torch.random.fork_rng():
        torch.manual_seed(config.seed)
        # built on the CPU from the seed, then moved: the same weights on every device
        model = AutoEncoder(spectra.shape[1], config.latent).to(spectra.device)
        opt = torch.optim.Adam(model.parameters(), lr=config.lr)
        history = {"train": [], "val_prediction": [], "alpha": []}
        best, best_loss, since = None, float("inf"), 0
        last_stage = len(config.alphas) - 1
        total = len(config.alphas) * config.epochs_per_stage
        bar = tqdm(total=total, desc="AeLLE", disable=not progress, leave=False)
        for stage, alpha in enumerate(config.alphas):
            for _ in range(config.epochs_per_stage):
                model.train()
                running = 0.0
                for idx in torch.randperm(len(spectra), generator=g).split(config.batch_size):
                    recon, pred, _ = model(norm(spectra[idx]))
                    loss = ((recon - norm(spectra[idx])).abs().mean()
                            + alpha * (pred - t_train[idx]).pow(2).mean())
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    running += loss.item() * len(idx)
                model.eval()
                with torch.no_grad():
                    val = (model(norm(val_spectra))[1] - t_val).pow(2).mean().item()
                history["train"].append(running / len(spectra))
                history["val_prediction"].append(val)
                history["alpha"].append(alpha)
                bar.update()
                if stage == last_stage:
                    if val < best_loss:
                        best, best_loss, since = copy.deepcopy(model.state_dict()), val, 0
                    else:
                        since += 1
                        if since >= config.patience:
                            # stopped early: the bar ends at what was done, as finished
                            # (an unfinished bar is drawn red, as if it had failed);
                            # reset() is what moves a notebook widget's max as well
                            done = bar.n
                            bar.reset(total=done)
                            bar.update(done)
                            bar.set_postfix_str("stopped early")
                            break
        bar.close()
    model.load_state_dict(best)
    fitted = AeLLE(model, mean, scale, (low, high), history=history)
    fitted.pca_mean, fitted.pca_axes = pca(fitted.latent(spectra))
    return fitted


def pca(x: Tensor) -> tuple[Tensor, Tensor]:
    """(mean (d,), axes (d, d)) of the rows of x; axes as columns, by decreasing variance,
    each oriented so that its largest-magnitude loading is positive (a stable sign)."""
    mean = x.mean(0)
    _, _, vh = torch.linalg.svd(x - mean, full_matrices=True)
    axes = vh.T
    signs = torch.sign(axes.gather(0, axes.abs().argmax(0, keepdim=True)))
    return mean, axes * signs


# ----------------------------------------------------------------------------- experiments

def split_indices(n: int, fractions=(0.7, 0.1, 0.2), seed: int = 0) -> tuple[Tensor, ...]:
    """Random train / validation / test index sets in the given proportions."""
    if abs(sum(fractions) - 1) > 1e-9 or n < 10:
        raise ValueError(f"fractions must sum to 1 and n >= 10, got {fractions} and n={n}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    cut1, cut2 = round(fractions[0] * n), round((fractions[0] + fractions[1]) * n)
    return order[:cut1], order[cut1:cut2], order[cut2:]


@dataclass
class Comparison:
    """AeLLE against the simple statistics on one data set (see :func:`compare`)."""

    model: AeLLE
    scores: dict[str, tuple[float, float, float]]  # name -> (precision, recall, F1) on test
    good: Tensor            # (R,) True for loss below the training median
    embedding: Tensor       # (R, 2) AeLLE plane
    raw_pc1: Tensor         # (R,) first PC of the interpolated raw spectra
    split: tuple[Tensor, Tensor, Tensor]
    threshold: float        # the loss that separates good from bad


def compare(spectra: Sequence, losses, *, points: int = 128, config: AeConfig = AeConfig(),
            split: tuple[Tensor, Tensor, Tensor] | None = None, seed: int = 0,
            progress: bool = True) -> Comparison:
    """Fit AeLLE on the training part and score median-threshold classifiers on the test part.

    ``spectra``: R spectra (any lengths, raw exponents, descending); ``losses``:
    (R,) validation losses (lower is better). Classifiers (each a median
    threshold on the training set, facing the good side): "AeLLE PC1", "LE
    mean", "LE max" and "LE PC1" (first PC of the interpolated raw spectra).
    """
    Z = interpolate(spectra, points)
    losses = torch.as_tensor(losses, dtype=torch.float64, device=Z.device)
    bad = ~torch.isfinite(losses)
    if bool(bad.any()):
        raise ValueError(f"losses[{int(bad.nonzero()[0])}] is not finite: AeLLE regresses "
                         "on the loss, which a diverged network does not have (drop it)")
    train, val, test = split or split_indices(len(Z), seed=seed)
    model = fit_autoencoder(Z[train], losses[train], Z[val], losses[val], config,
                            progress=progress)
    threshold = float(losses[train].median())
    good = losses < threshold
    embedding = model.embed(Z, 2).double()
    raw_mean, raw_axes = pca(Z[train])
    raw_pc1 = (Z - raw_mean) @ raw_axes[:, 0]
    summary = [(float(torch.as_tensor(s).mean()), float(torch.as_tensor(s).max()))
               for s in spectra]
    features = {"AeLLE PC1": embedding[:, 0],
                "LE mean": torch.tensor([m for m, _ in summary], device=Z.device),
                "LE max": torch.tensor([m for _, m in summary], device=Z.device),
                "LE PC1": raw_pc1}
    scores = {}
    for name, feature in features.items():
        rule = Threshold.median(feature[train], good[train])
        scores[name] = precision_recall_f1(rule.predict(feature[test]), good[test])
    return Comparison(model, scores, good, embedding, raw_pc1, (train, val, test), threshold)
