"""CMU motion capture as preprocessed by Li et al. (2018), for next-frame prediction."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from . import _files
from ._files import DataError, announce_fallback, project_cache, search_roots, verify

FOLDER = "cmu_mocap"
MANIFEST = Path(__file__).with_name("cmu_mocap_manifest.tsv")
URL = ("https://raw.githubusercontent.com/chaneyddtt/Convolutional-Sequence-to-Sequence-"
       "Model-for-Human-Dynamics/master/data/cmu_mocap/")
VALUES_PER_FRAME = 117  # root position + 38 joints x 3 exponential-map angles
MIN_STD = 1e-4          # dimensions quieter than this over the training frames are dropped


@dataclass(frozen=True)
class ManifestEntry:
    path: str                # e.g. "train/walking/walking_1.txt"
    git_sha1: str
    sha256: str | None       # None where the project's snapshot lacks the file

    @property
    def split(self) -> str:
        """The split the file belongs to ("train" or "test")."""
        return self.path.split("/")[0]

    @property
    def action(self) -> str:
        """The action recorded in the file (e.g. "walking")."""
        return self.path.split("/")[1]


def manifest() -> list[ManifestEntry]:
    """The 48 files of Li et al.'s CMU set with their checksums (shipped with lyaplib)."""
    with open(MANIFEST, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return [ManifestEntry(r["path"], r["git_blob_sha1"],
                          None if r["sha256"] == "-" else r["sha256"]) for r in rows]


@dataclass(frozen=True)
class MocapData:
    """Preprocessed motion: downsampled by 2, quiet dimensions dropped, normalised.

    Attributes:
        train: list of (frames, dims) float32 arrays, one per training recording.
        test: the same for the test recordings.
        train_actions: the action name of each training recording.
        test_actions: the action name of each test recording.
        mean: (117,) normalisation means over the full-rate training frames.
        std: (117,) normalisation standard deviations over the same frames.
        used: (dims,) indices of the kept dimensions among the 117.
        source: where the data came from.
        missing: manifest files that were not found.
        is_fallback: True for the synthetic substitute.
    """

    train: list[np.ndarray]
    test: list[np.ndarray]
    train_actions: list[str]
    test_actions: list[str]
    mean: np.ndarray
    std: np.ndarray
    used: np.ndarray
    source: str
    missing: tuple[str, ...] = ()
    is_fallback: bool = False

    @property
    def dims(self) -> int:
        """The number of values per frame that are used (70 for the CMU set)."""
        return len(self.used)

    def __repr__(self) -> str:
        frames = sum(len(a) for a in self.train), sum(len(a) for a in self.test)
        return (f"MocapData({len(self.train)} train / {len(self.test)} test recordings, "
                f"{frames[0]:,} / {frames[1]:,} frames, {self.dims} dims, "
                f"{len(self.missing)} files missing; source: {self.source})")

    def windows(self, split: str = "train", length: int = 25) -> Tensor:
        """(n, length + 1, dims) float32: every consecutive non-overlapping window.

        Inputs are ``w[:, :-1]`` and next-frame targets ``w[:, 1:]``. Recordings
        shorter than ``length + 1`` frames contribute nothing.
        """
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        if length < 1:
            raise ValueError(f"length must be >= 1, got {length}")
        span = length + 1
        chunks = [rec[i:i + span] for rec in getattr(self, split)
                  for i in range(0, len(rec) - span + 1, span)]
        if not chunks:
            raise ValueError(f"no {split} recording has {span} frames")
        return torch.from_numpy(np.stack(chunks))

    def sequences(self, split: str, count: int, length: int) -> Tensor:
        """(count, length, dims): windows spread evenly over the split (held-out LE inputs)."""
        all_windows = self.windows(split, length - 1)
        if count < 1 or count > len(all_windows):
            raise ValueError(f"count must be in 1..{len(all_windows)} for length {length}, "
                             f"got {count}")
        return all_windows[torch.linspace(0, len(all_windows) - 1, count).long()]


def preprocess(train: list[np.ndarray], test: list[np.ndarray]):
    """Li et al.'s recipe: statistics over full-rate training frames, drop quiet
    dimensions, normalise, downsample by 2. Returns (train, test, mean, std, used)."""
    frames = np.concatenate(train)
    mean, std = frames.mean(0), frames.std(0)
    used = np.flatnonzero(std >= MIN_STD)
    std = np.where(std >= MIN_STD, std, 1.0)

    def prep(rec):
        return ((rec[::2] - mean) / std)[:, used].astype(np.float32)

    return [prep(r) for r in train], [prep(r) for r in test], mean, std, used


def read_recording(path: Path) -> np.ndarray:
    """One recording: comma-separated, one frame of 117 values per line."""
    try:
        data = np.loadtxt(path, delimiter=",", ndmin=2)
    except ValueError as err:
        raise DataError(f"{path}: not a comma-separated table of numbers ({err})") from None
    if data.shape[1] != VALUES_PER_FRAME:
        raise DataError(f"{path}: expected {VALUES_PER_FRAME} values per frame, "
                        f"found {data.shape[1]}")
    return data


def _load(folder: Path, entries: list[ManifestEntry]):
    """Verify and read whatever manifest files exist under ``folder``."""
    found, missing = [], []
    for entry in entries:
        path = folder / entry.path
        if not path.is_file():
            missing.append(entry.path)
            continue
        if entry.sha256 is not None:
            verify(path, sha256_hex=entry.sha256)
        else:
            verify(path, git_sha1=entry.git_sha1)
        found.append((entry, read_recording(path)))
    return found, missing


def cmu_mocap(root: str | os.PathLike | None = None, download: bool = False) -> MocapData:
    """The CMU Mocap set of Li et al. (2018), preprocessed for next-frame prediction.

    Resolution order: ``root`` (its ``cmu_mocap/`` folder, else an error),
    ``$LYAPLIB_DATA``, the project's ``data/`` cache, a download of the raw
    files of Li et al.'s repository when ``download=True`` (each checked
    against the manifest shipped with lyaplib), and last a loudly announced
    synthetic fallback. Files of the manifest that are absent are skipped and
    listed in ``.missing``; a corrupt file raises :class:`DataError`.
    """
    entries = manifest()
    searched = []
    for folder, how in search_roots(root):
        found, missing = _load(folder / FOLDER, entries)
        if any(e.split == "train" for e, _ in found):
            return _assemble(found, missing, f"{_files.shown(folder / FOLDER, folder, how)} "
                             "(checksums verified)")
        if root is not None:
            raise DataError(f"{folder / FOLDER}: no training recordings of the CMU Mocap "
                            f"manifest found (root={str(root)!r})")
        searched.append(_files.shown(folder / FOLDER, folder, how))
    folder = project_cache() / FOLDER
    files = [(URL + e.path, folder / e.path, lambda p, e=e: verify(p, git_sha1=e.git_sha1))
             for e in entries]
    if download and _files.download_all(files, searched):
        found, missing = _load(folder, entries)
        return _assemble(found, missing, f"{URL} -> the project's data cache/{FOLDER} "
                         "(downloaded, checksums verified)")
    announce_fallback("CMU Mocap", searched, "synthetic multi-joint motion (lyaplib.data."
                      "synthetic_motion)")
    return synthetic_motion()


def _assemble(found, missing, source: str) -> MocapData:
    train = [(e.action, r) for e, r in found if e.split == "train"]
    test = [(e.action, r) for e, r in found if e.split == "test"]
    tr, te, mean, std, used = preprocess([r for _, r in train], [r for _, r in test])
    return MocapData(tr, te, [a for a, _ in train], [a for a, _ in test], mean, std, used,
                     source, tuple(missing))


def synthetic_motion(actions: int = 6, recordings: int = 4, frames: int = 600, dims: int = 117,
                     moving: int = 70, seed: int = 0) -> MocapData:
    """A stand-in for motion capture: joint angles driven by a few coupled oscillators.

    Each action has its own gait frequency and phase pattern; every channel is a
    fixed mix of the first harmonics of that gait plus slow drift and sensor
    noise; only ``moving`` of the ``dims`` channels move (70 of 117, as in
    the real data, where the constant ones are dropped). Deterministic for a given ``seed``.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(frames)[:, None]
    active = np.zeros(dims, dtype=bool)
    active[rng.choice(dims, size=moving, replace=False)] = True
    data = {}
    for split, count in (("train", recordings), ("test", max(1, recordings // 4))):
        for a in range(actions):
            freq = 2 * np.pi * (0.02 + 0.01 * a)
            mix = np.random.default_rng(seed + 100 + a).normal(size=(6, dims)) * active
            for _ in range(count):
                phase = rng.uniform(0, 2 * np.pi)
                f = freq * rng.uniform(0.9, 1.1)
                basis = np.concatenate([np.sin(h * (f * t + phase)) for h in (1, 2, 3)]
                                       + [np.cos(h * (f * t + phase)) for h in (1, 2, 3)], 1)
                drift = np.cumsum(rng.normal(scale=0.01, size=(frames, dims)), 0)
                noise = rng.normal(scale=0.05, size=(frames, dims))
                rec = (basis @ mix + drift + noise) * active
                data.setdefault(split, []).append((f"action_{a}", rec))
    tr, te, mean, std, used = preprocess([r for _, r in data["train"]],
                                         [r for _, r in data["test"]])
    return MocapData(tr, te, [a for a, _ in data["train"]], [a for a, _ in data["test"]],
                     mean, std, used, f"FALLBACK: synthetic_motion(seed={seed})",
                     is_fallback=True)
