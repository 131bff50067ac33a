"""War and Peace for character-level language modelling (Karpathy's CharRNN task)."""

from __future__ import annotations

import gzip
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from . import _files
from ._files import DataError, announce_fallback, project_cache, search_roots, verify

FILENAME = "war_and_peace.txt"
SIZE = 3_202_320
SHA256 = "eaecfcb30408e2bc35ffe69b297127e3a6ca75548c033df4d2e703b5ff711f8d"
GUTENBERG_URL = "https://www.gutenberg.org/cache/epub/2600/pg2600.txt"
GUTENBERG_FILENAME = "war_and_peace_gutenberg.txt"
EXCERPT = Path(__file__).with_name("war_and_peace_excerpt.txt.gz")
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Corpus:
    """A text as integer ids over its sorted character vocabulary, split 0.8/0.1/0.1.

    Attributes:
        text: the whole text.  vocab: its sorted symbols.  source: where it came from.
        train, val, test: (n,) int64 ids, contiguous parts of the text in that order.
        is_fallback: True when a substitute stands in for the real dataset.
    """

    text: str
    vocab: list[str]
    source: str
    is_fallback: bool = False
    train: Tensor = field(init=False, repr=False)
    val: Tensor = field(init=False, repr=False)
    test: Tensor = field(init=False, repr=False)

    def __post_init__(self):
        ids = self.encode(self.text)
        n_train, n_val = int(0.8 * len(ids)), int(0.1 * len(ids))
        parts = ids[:n_train], ids[n_train:n_train + n_val], ids[n_train + n_val:]
        for name, part in zip(SPLITS, parts, strict=True):
            object.__setattr__(self, name, part)

    def __repr__(self) -> str:
        return (f"Corpus({len(self.text):,} characters, {len(self.vocab)} symbols, "
                f"train/val/test {len(self.train):,}/{len(self.val):,}/{len(self.test):,}; "
                f"source: {self.source})")

    def __reduce__(self):
        # Pickled as its text, not its ids (8 bytes a character, three times over in the
        # splits and their views): a sweep on an executor sends its task to every run.
        return (type(self), (self.text, self.vocab, self.source, self.is_fallback))

    def encode(self, text: str) -> Tensor:
        """Character ids of ``text``, (L,); a character outside the vocabulary is an error."""
        unknown = set(text) - set(self.vocab)
        if unknown:
            raise ValueError(f"text has symbols outside the vocabulary: {sorted(unknown)!r}")
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        symbols = np.array([ord(c) for c in self.vocab], dtype=np.uint32)
        order = np.argsort(symbols)
        ids = order[np.searchsorted(symbols[order], codes)]
        return torch.from_numpy(ids.astype(np.int64))

    def decode(self, ids: Tensor) -> str:
        """The text of character ids (L,)."""
        return "".join(self.vocab[i] for i in ids.tolist())

    def split(self, name: str) -> Tensor:
        """The ids of split ``name`` ("train", "val" or "test"), (L,)."""
        if name not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {name!r}")
        return getattr(self, name)

    def one_hot(self, ids: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
        """(..., L) ids -> (..., L, V) one-hot inputs."""
        return torch.nn.functional.one_hot(ids, len(self.vocab)).to(dtype)

    def batches(self, split: str = "train", seq_len: int = 100, batch_size: int = 128, *,
                shuffle: bool = True, generator: torch.Generator | None = None,
                max_batches: int | None = None) -> Iterator[tuple[Tensor, Tensor]]:
        """Yield (inputs, targets), each (B, seq_len) ids, targets shifted by one character.

        The split is cut into consecutive non-overlapping windows (the final
        ``< seq_len`` characters are left out); ``shuffle`` permutes the windows.
        ``max_batches`` stops early (for small presets).
        """
        data = self.split(split)
        starts = windows(len(data) - 1, seq_len, "seq_len")
        if shuffle:
            starts = starts[torch.randperm(len(starts), generator=generator)]
        if max_batches is not None:
            starts = starts[: max_batches * batch_size]
        offsets = torch.arange(seq_len)
        for chunk in starts.split(batch_size):
            idx = chunk[:, None] + offsets
            yield data[idx], data[idx + 1]

    def sequences(self, split: str, count: int, length: int) -> Tensor:
        """(count, length) ids: windows spread evenly over ``split`` (held-out LE inputs)."""
        data = self.split(split)
        if count < 1 or length < 1 or count * length > len(data):
            raise ValueError(f"count x length must be positive and fit in the {split} split "
                             f"({len(data):,} characters), got {count} x {length}")
        starts = torch.linspace(0, len(data) - length, count).long()
        return data[starts[:, None] + torch.arange(length)]


def windows(n: int, length: int, name: str) -> Tensor:
    """Start indices of the consecutive windows of ``length`` that fit in ``n`` items."""
    if length < 1:
        raise ValueError(f"{name} must be >= 1, got {length}")
    if n < length:
        raise ValueError(f"{name}={length} is longer than the data ({n} items)")
    return torch.arange(0, n - length + 1, length)


def strip_gutenberg(raw: str) -> str:
    """The text between Project Gutenberg's START and END markers, with \\n line ends."""
    raw = raw.lstrip("\ufeff").replace("\r\n", "\n")
    start = re.search(r"^\*\*\* ?START OF (THE|THIS) PROJECT GUTENBERG.*$", raw, re.M)
    end = re.search(r"^\*\*\* ?END OF (THE|THIS) PROJECT GUTENBERG.*$", raw, re.M)
    if start is None or end is None or end.start() <= start.end():
        raise DataError("not a Project Gutenberg text: START/END markers not found")
    return raw[start.end():end.start()].strip() + "\n"


def _check_gutenberg(path: Path) -> None:
    text = strip_gutenberg(path.read_text(encoding="utf-8"))
    if not 3_000_000 < len(text) < 3_400_000 or "Anna Pavlovna" not in text:
        raise DataError(f"{path}: does not look like War and Peace ({len(text):,} characters "
                        "between the Gutenberg markers; expected about 3.2 million)")


def war_and_peace(root: str | os.PathLike | None = None, download: bool = False) -> Corpus:
    """Tolstoy's War and Peace as a character corpus (the 2022 paper's CharRNN data).

    Resolution order: ``root`` (the file ``war_and_peace.txt`` there, else an
    error), ``$LYAPLIB_DATA``, the project's ``data/`` cache, the Project
    Gutenberg eBook #2600 when ``download=True`` (licence header and footer
    stripped; it differs slightly from the authors' file, e.g. it keeps the
    title pages, so the vocabulary may differ), and last a loudly announced
    fallback: the first 400,000 characters of the novel, shipped with lyaplib.

    The authors' file (3,202,320 bytes, 82 symbols) is verified by sha256; a
    corrupt or truncated copy raises :class:`DataError` naming the file.
    """
    searched = []
    for folder, how in search_roots(root):
        path = folder / FILENAME
        if path.is_file():
            verify(path, size=SIZE, sha256_hex=SHA256)
            return _corpus(path.read_text(encoding="utf-8"),
                           f"{_files.shown(path, folder, how)} (sha256 verified)")
        cached = folder / GUTENBERG_FILENAME
        if cached.is_file() and root is None:
            _check_gutenberg(cached)
            return _corpus(strip_gutenberg(cached.read_text(encoding="utf-8")),
                           f"{_files.shown(cached, folder, how)} (Project Gutenberg #2600, "
                           "downloaded earlier)")
        if root is not None:
            raise DataError(f"{path} not found (root={str(root)!r}); expected the authors' file "
                            f"{FILENAME}, {SIZE:,} bytes, sha256 {SHA256}")
        searched.append(_files.shown(path, folder, how))
    dest = project_cache() / GUTENBERG_FILENAME
    if download and _files.download_all([(GUTENBERG_URL, dest, _check_gutenberg)], searched):
        return _corpus(strip_gutenberg(dest.read_text(encoding="utf-8")),
                       f"{GUTENBERG_URL} -> the project's data cache/{dest.name} "
                       "(Project Gutenberg #2600; differs slightly from the authors' file)")
    announce_fallback("War and Peace", searched,
                      "the first 400,000 characters of the novel shipped with lyaplib")
    with gzip.open(EXCERPT, "rt", encoding="utf-8") as f:
        return _corpus(f.read(), f"FALLBACK: {EXCERPT.name} (first 400,000 characters)",
                       is_fallback=True)


def _corpus(text: str, source: str, is_fallback: bool = False) -> Corpus:
    return Corpus(text=text, vocab=sorted(set(text)), source=source, is_fallback=is_fallback)
