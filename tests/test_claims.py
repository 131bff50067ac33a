"""Claims (lyaplib.claims), the seed offset (lyaplib.scale) and the claim audit's table."""

import json
import math

import numpy as np
import pytest
import torch

from lyaplib import scale
from lyaplib.claims import ClaimError, claim, margins


def test_margins_are_the_distance_inside_the_threshold():
    assert margins(0.1, "<", 0.15).item() == pytest.approx(0.05)
    assert margins(0.3, ">", 0.1).item() == pytest.approx(0.2)
    assert margins(2.0, "<=", 2.0).item() == 0.0
    assert margins(3, "==", 5).item() == -2.0
    np.testing.assert_allclose(margins(torch.tensor([1.0, 3.0]), "<", [2.0, 4.0]), [1.0, 1.0])


def test_a_claim_returns_its_worst_margin_and_checks_every_element():
    assert claim("all below one", torch.tensor([0.2, 0.7, 0.5]), "<", 1.0) == pytest.approx(0.3)
    with pytest.raises(ClaimError, match=r"all below one: 1\.5 < 1 is false \(worst of 3 "
                                         r"elements, index 1\); margin -0\.5"):
        claim("all below one", np.array([0.2, 1.5, 0.5]), "<", 1.0)
    assert issubclass(ClaimError, AssertionError)  # a failed claim fails nbval like an assert


def test_strict_and_non_strict_comparisons_and_nan():
    claim("equal counts", 70, "==", 70)
    claim("at most", 1.0, "<=", 1.0)
    with pytest.raises(ClaimError):
        claim("strictly below", 1.0, "<", 1.0)
    with pytest.raises(ClaimError, match="nan"):
        claim("a NaN never holds", [0.0, float("nan")], "<", 1.0)


@pytest.mark.parametrize("args, match", [
    (("", 1.0, "<", 2.0), "statement must be a non-empty string"),
    (("s", 1.0, "!=", 2.0), "op must be one of"),
    (("s", [], "<", 2.0), "value is empty"),
    (("s", [1.0, 2.0], "<", [1.0, 2.0, 3.0]), "shape mismatch"),
])
def test_bad_claims_are_named(args, match):
    with pytest.raises(ValueError, match=match):
        claim(*args)


def test_claims_are_recorded_when_asked(tmp_path, monkeypatch):
    records = tmp_path / "claims.jsonl"
    monkeypatch.setenv("LYAPLIB_CLAIMS", str(records))
    monkeypatch.setenv("LYAPLIB_CHAPTER", "01_test")
    monkeypatch.setenv("LYAPLIB_SEED", "2")
    monkeypatch.setenv("LYAPLIB_SCALE", "ci")
    claim("first", [0.1, 0.4], "<", 0.5)
    with pytest.raises(ClaimError):
        claim("second", -1.0, ">", 0.0)
    rows = [json.loads(line) for line in records.read_text().splitlines()]
    assert [(r["claim"], r["passed"]) for r in rows] == [("first", True), ("second", False)]
    first = rows[0]
    assert (first["chapter"], first["seed"], first["scale"], first["elements"]) == \
        ("01_test", 2, "ci", 2)
    assert first["value"] == 0.4 and first["threshold"] == 0.5
    assert first["margin"] == pytest.approx(0.1)
    assert first["threads"] == torch.get_num_threads()


def test_seed_offset_shifts_every_seed(monkeypatch):
    monkeypatch.delenv("LYAPLIB_SEED", raising=False)
    assert scale.seed_offset() == 0 and scale.seed(3) == 3 and scale.tag() == scale.current()
    monkeypatch.setenv("LYAPLIB_SEED", "5")
    monkeypatch.setenv("LYAPLIB_SCALE", "book")
    assert scale.seed(3) == 8 and scale.tag() == "book_seed5" and "seed offset 5" in \
        scale.describe()
    expected = torch.Generator().manual_seed(8)
    assert torch.equal(torch.rand(4, generator=scale.generator(3)),
                       torch.rand(4, generator=expected))
    monkeypatch.setenv("LYAPLIB_SEED", "two")
    with pytest.raises(ValueError, match="LYAPLIB_SEED must be an integer, got 'two'"):
        scale.seed(0)
    monkeypatch.setenv("LYAPLIB_SEED", "0")
    with pytest.raises(ValueError, match="seed must be a non-negative int"):
        scale.seed(-1)


def test_the_audit_table_finds_weak_and_failing_claims():
    import importlib.util

    from tests.test_tools import TOOLS  # skips where tools/ is absent (the sdist)
    spec = importlib.util.spec_from_file_location("claims_tool", TOOLS / "claims.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)

    def row(name, seed, margin, passed=True, threads=1):
        return dict(chapter="01", claim=name, op="<", value=1 - margin, threshold=1.0,
                    margin=margin, passed=passed, seed=seed, threads=threads)

    rows = [row("robust", 0, 0.9), row("robust", 1, 0.8),
            row("weak", 0, 0.5), row("weak", 1, 0.1),
            row("fails", 0, 0.2), row("fails", 1, -0.1, passed=False),
            row("exact", 0, math.inf), row("exact", 1, math.inf),
            # a claim recorded twice in one run (a loop): its worst margin counts
            row("looped", 0, 0.9), row("looped", 0, 0.85), row("looped", 1, 0.9)]
    text, bad = tool.table(rows)
    status = {line.split(" | ")[1]: line.split(" | ")[-1].rstrip(" |")
              for line in text.splitlines() if line.startswith("| 01")}
    assert status == {"robust": "ok", "weak": "WEAK", "fails": "FAILS", "exact": "ok",
                      "looped": "ok"}
    assert bad == 2
    looped = next(line for line in text.splitlines() if "| looped |" in line)
    assert "| 0.85 | 0.05 |" in looped  # min margin 0.85, spread 0.9 - 0.85


def test_log_claims_compare_decades():
    assert claim("a ratio far above one", 1e4, ">", 1.0, log=True) == pytest.approx(4.0)
    assert margins([1e-3, 1e-2], "<", 1.0, log=True).tolist() == pytest.approx([3.0, 2.0])
    with pytest.raises(ClaimError, match="margin -1 decades"):
        claim("below a tenth", 1.0, "<", 0.1, log=True)
    with pytest.raises(ClaimError):  # a non-positive value is never above a positive threshold
        claim("positive", 0.0, ">", 1e-10, log=True)
    with pytest.raises(ValueError, match="log=True needs a positive threshold"):
        claim("bad", 1.0, ">", 0.0, log=True)
