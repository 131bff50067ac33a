"""The engine benchmark: its reference implementation is right, and its rows are complete."""

import pytest
import torch
from torch import nn

from lyaplib import benchmark, cells, lyapunov_spectrum

FIELDS = {"N", "k", "jacobian", "dtype", "seconds", "speedup_vs_reference", "time_over_qr_floor",
          "fraction_of_gemm_roofline", "max_error_leading8", "le_cost_in_training_steps"}


@pytest.mark.parametrize("jacobian", ["hidden", "full"])
def test_reference_implementation_computes_the_same_spectrum(jacobian):
    """The 2022-style dense-diagonal code and the engine are two routes to one answer."""
    torch.manual_seed(0)
    lstm = nn.LSTM(5, 6, batch_first=True).double()
    x = torch.randn(3, 40, 5, dtype=torch.float64)
    k = 6 if jacobian == "hidden" else 12
    reference = benchmark.reference_spectrum(lstm, x, k, jacobian, steps=40)
    engine = lyapunov_spectrum(cells.LSTM(lstm, jacobian), x, k=k).per_sequence
    torch.testing.assert_close(reference, engine, rtol=1e-10, atol=1e-12)


def test_rows_name_every_field_and_check_accuracy(monkeypatch):
    monkeypatch.setattr(benchmark, "T", 12)
    rows = benchmark.benchmark(8, "top", "hidden", torch.float64, gflops=10.0, ref_steps=12)
    assert [r["implementation"] for r in rows] == ["reference", "default", "fast"]
    for r in rows:
        assert FIELDS <= set(r) and r["k"] == 1 and r["seconds"] > 0
        assert r["max_error_leading8"] < 1e-10  # float64 against float64 Householder
    assert rows[0]["speedup_vs_reference"] == 1.0
    assert "n/a" not in benchmark.format_row(rows[0])


def test_run_reports_the_device_and_every_configuration(monkeypatch):
    monkeypatch.setattr(benchmark, "T", 12)
    lines = []
    rows = benchmark.run((8,), (torch.float64,), device="cpu", report=lines.append)
    assert lines[0].startswith(f"torch {torch.__version__} on CPU")
    # hidden and full state, each with the full spectrum and k = N / 8, three rows each
    assert len(rows) == 12 and {r["device"] for r in rows} == {"cpu"}
    assert {(r["jacobian"], r["k"]) for r in rows} == {("hidden", 8), ("hidden", 1),
                                                    ("full", 16), ("full", 1)}
    assert len(lines) == 2 + len(rows)


def test_step_budget_times_every_part_of_a_step(monkeypatch):
    monkeypatch.setattr(benchmark, "T", 12)
    b = benchmark.step_budget(8, 2, "full", torch.float64, ortho_every=2, repeat=2)
    assert list(b["parts_ms"]) == ["forward", "tangent beyond the forward step",
                                   "orthonormalisation", "engine bookkeeping"]
    assert b["parts_ms"]["forward"] > 0 and b["parts_ms"]["orthonormalisation"] > 0
    assert 0 < b["essential_ms"] < b["total_ms"]  # 8 x 2 work on a CPU is far from its roofline
    assert "N = 8, k = 2 (full, float64, method=householder, ortho_every=2)" in \
        benchmark.format_budget(b)


def test_median_call_times_short_runs_several_times_and_long_ones_once():
    calls = []
    seconds, result = benchmark.median_call(lambda: calls.append(1) or "done", budget=1.0)
    assert result == "done" and len(calls) == 5 and seconds >= 0
    calls.clear()
    benchmark.median_call(lambda: calls.append(1), budget=0.0)
    assert len(calls) == 1


def test_a_negative_remainder_of_a_budget_reads_as_zero_not_a_negative_time():
    assert benchmark.format_ms(1.234) == "1.23" and benchmark.format_ms(0.0) == "0.00"
    assert benchmark.format_ms(-1.38) == "≈ 0"
    b = {"N": 8, "k": 2, "jacobian": "full", "dtype": "float64", "settings": "defaults",
         "total_ms": 2.0, "essential_ms": 1.0, "parts_ms": {"a": 2.5, "engine bookkeeping": -0.5}}
    assert "engine bookkeeping ≈ 0" in benchmark.format_budget(b)
    assert "-0.5" not in benchmark.format_budget(b)
