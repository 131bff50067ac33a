"""Properties of the QR engine that hold exactly or by construction."""

import math

import pytest
import torch

from lyaplib import AutogradCell, LyapunovError, cells, lyapunov_spectrum, random_basis, stats

from .helpers import RandomRNN

F64 = torch.float64


def driven_rnn(dim=6, gain=1.8, seed=0):
    return AutogradCell(RandomRNN(dim, 3, gain, seed), dim)


def rnn_inputs(B=4, T=300, seed=1, scale=0.5):
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(B, T, 3, generator=g, dtype=F64)


def test_sum_of_exponents_is_mean_log_det_jacobian():
    cell, xs = driven_rnn(), rnn_inputs()
    res = lyapunov_spectrum(cell, xs)
    h = cell.initial_state(xs.shape[0]).double()
    log_det = torch.zeros(xs.shape[0], dtype=F64)
    for t in range(xs.shape[1]):
        log_det += torch.linalg.slogdet(cell.jacobian(h, xs[:, t]))[1]
        h = cell.step(h, xs[:, t])
    assert torch.allclose(res.per_sequence.sum(-1), log_det / xs.shape[1], rtol=0, atol=1e-10)


def test_top_k_equals_leading_part_of_full_spectrum():
    cell, xs = driven_rnn(), rnn_inputs()
    full = lyapunov_spectrum(cell, xs)
    top = lyapunov_spectrum(cell, xs, k=3)
    assert top.k == 3
    assert torch.allclose(top.per_sequence, full.per_sequence[:, :3], rtol=0, atol=1e-10)


def test_ortho_every_is_exact_in_exact_arithmetic():
    # QR of J_2 J_1 Q equals the product of the per-step QRs (R = R_2 R_1), so
    # orthonormalising less often changes nothing while nothing is lost to rounding.
    # Hénon stretches by at most ~e^2.1 per step, so 7 steps lose nothing in float64.
    henon = cells.Henon()
    h0 = henon.initial_state(4).double()
    every = lyapunov_spectrum(henon, 200, h0=h0)
    sparse = lyapunov_spectrum(henon, 200, h0=h0, ortho_every=7)  # 200 is not a multiple of 7
    assert torch.allclose(sparse.per_sequence, every.per_sequence, rtol=0, atol=1e-10)


def test_result_does_not_depend_on_Q0_after_warmup():
    cell, xs = driven_rnn(), rnn_inputs(T=400)
    Q0 = torch.randn(6, 6, generator=torch.Generator().manual_seed(5), dtype=F64)
    a = lyapunov_spectrum(cell, xs, warmup=100)
    b = lyapunov_spectrum(cell, xs, warmup=100, Q0=Q0)
    assert torch.allclose(a.per_sequence, b.per_sequence, rtol=0, atol=1e-8)
    # Without warm-up the two still agree up to an O(1/T) transient.
    c = lyapunov_spectrum(cell, xs, Q0=Q0)
    assert (c.exponents - a.exponents).abs().max() < 0.05


class Recorder(AutogradCell):
    """Records every input it is stepped with."""

    def __init__(self):
        super().__init__(RandomRNN(4, 3, 0.5), 4)
        self.seen = []

    def tangent(self, state, x, Q):
        self.seen.append(x[:, 0].clone())
        return super().tangent(state, x, Q)


def test_warmup_consumes_inputs_once_and_is_not_accumulated():
    xs = rnn_inputs(B=2, T=50)
    rec = Recorder()
    res = lyapunov_spectrum(rec, xs, warmup=20)
    fed = torch.stack(rec.seen, dim=1)
    assert torch.equal(fed, xs[:, :, 0])  # each input exactly once, in order
    assert res.steps == 30
    # Warm-up then accumulate == accumulate from the warmed-up state and basis.
    warm = lyapunov_spectrum(rec, xs[:, :20])
    rest = lyapunov_spectrum(rec, xs[:, 20:], h0=warm.state, Q0=warm.Q)
    assert torch.allclose(res.per_sequence, rest.per_sequence, rtol=0, atol=1e-12)


def test_float32_and_float64_agree():
    # A driven contracting network: float32 and float64 trajectories stay together.
    cell, xs = driven_rnn(gain=0.9), rnn_inputs(T=300)
    r64 = lyapunov_spectrum(cell, xs, dtype=torch.float64)
    r32 = lyapunov_spectrum(cell, xs, dtype=torch.float32)
    assert r32.state.dtype == torch.float32 and r32.per_sequence.dtype == F64
    assert (r32.exponents - r64.exponents).abs().max() < 1e-4
    # Chaotic Hénon: trajectories diverge, the statistics still agree.
    henon = cells.Henon()
    h0 = henon.initial_state(128)
    a = lyapunov_spectrum(henon, 3000, h0=h0, dtype=torch.float32, warmup=100)
    b = lyapunov_spectrum(henon, 3000, h0=h0, dtype=torch.float64, warmup=100)
    assert (a.exponents - b.exponents).abs().max() < 5e-3


def test_dtype_cast_does_not_touch_the_users_cell():
    A = torch.tensor([[0.5, 1.0], [0.0, 0.2]], dtype=torch.float32)
    cell = cells.LinearMap(A)
    lyapunov_spectrum(cell, 10, dtype=torch.float64)
    assert cell.A.dtype == torch.float32


def test_stderr_trace_and_units():
    henon = cells.Henon()
    res = lyapunov_spectrum(henon, 200, h0=henon.initial_state(5).double(), keep_trace=True,
                            ortho_every=3)
    assert torch.allclose(res.stderr, res.per_sequence.std(0) / math.sqrt(5))
    assert res.trace_steps.tolist() == [*range(3, 200, 3), 200]
    assert torch.allclose(res.trace[-1], res.exponents)
    bits = res.in_bits()
    assert bits.unit == "bits"
    assert torch.allclose(bits.exponents * math.log(2), res.exponents)
    assert torch.allclose(bits.trace * math.log(2), res.trace)
    single = lyapunov_spectrum(henon, 20, h0=henon.initial_state(1).double())
    assert torch.isnan(single.stderr_between).all()
    assert torch.equal(single.stderr, single.stderr_within)  # tests/test_uncertainty.py


def test_broadcast_h0_and_Q0():
    henon = cells.Henon()
    xs = torch.zeros(3, 40, 2, dtype=F64)
    a = lyapunov_spectrum(henon, xs, h0=torch.tensor([0.1, 0.0], dtype=F64),
                          Q0=random_basis(2, 1))
    b = lyapunov_spectrum(henon, xs, h0=torch.tensor([[0.1, 0.0]] * 3, dtype=F64), k=1)
    assert a.k == 1 and torch.allclose(a.per_sequence, b.per_sequence)


# --- summary statistics from exact definitions --------------------------------------------

def test_kaplan_yorke_and_entropy_definitions():
    lam = torch.tensor([1.0, -0.5, -2.0], dtype=F64)
    assert stats.kaplan_yorke(lam) == pytest.approx(2 + 0.5 / 2)   # partial sums 1, .5, -1.5
    assert stats.kaplan_yorke(torch.tensor([-0.1, -1.0])) == 0      # a stable fixed point
    assert stats.kaplan_yorke(torch.tensor([0.3, 0.1])) == 2        # volume expanding, complete
    assert torch.isnan(stats.kaplan_yorke(torch.tensor([0.3, 0.1]), dim=5))  # unknown beyond k
    assert stats.entropy(lam) == 1.0
    assert stats.spectrum_variance(lam) == pytest.approx(torch.var(lam, correction=0).item())
    # Unsorted input is sorted first; batches reduce the last axis.
    batch = torch.stack([lam.flip(0), lam])
    assert torch.allclose(stats.kaplan_yorke(batch), torch.tensor([2.25, 2.25], dtype=F64))


# --- clear errors -------------------------------------------------------------------------

@pytest.mark.parametrize(("kwargs", "match"), [
    (dict(inputs=torch.zeros(10, 2)), r"inputs must have shape \(B, T, I\).*inputs\[None\]"),
    (dict(inputs=torch.zeros(2, 0, 2)), "T >= 1"),
    (dict(inputs=0), "inputs"),
    (dict(inputs=1.5), "inputs"),
    (dict(inputs=10, k=0), "k must be"),
    (dict(inputs=10, k=3), "k must be"),
    (dict(inputs=10, warmup=-1), "warmup"),
    (dict(inputs=10, warmup=10), "warmup must be smaller"),
    (dict(inputs=10, ortho_every=0), "ortho_every"),
    (dict(inputs=10, h0=torch.zeros(3, 3)), "h0 must have shape"),
    (dict(inputs=10, Q0=torch.zeros(3, 1)), "Q0 must have shape"),
    (dict(inputs=10, method="gram"), "method must be one of"),
    (dict(inputs=10, dtype=torch.int32), "dtype must be a floating"),
])
def test_bad_arguments_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        lyapunov_spectrum(cells.Henon(), **kwargs)


def test_non_finite_state_reports_step_and_sequence():
    # r = 5 throws points out of [0, 1]; from there x -> -inf in a few steps.
    h0 = torch.tensor([[0.3], [0.5], [0.31]], dtype=F64)
    with pytest.raises(LyapunovError, match=r"state became non-finite at step \d+ of sequence 1"):
        lyapunov_spectrum(cells.Logistic(5.0), 100, h0=h0)


def test_singular_tangent_reports_step_and_sequence():
    # x = 0.5 is the critical point of the logistic map: f'(0.5) = 0, so R_11 = 0.
    h0 = torch.tensor([[0.3], [0.3], [0.5]], dtype=F64)
    with pytest.raises(LyapunovError, match="tangent became singular.* at step 0 of sequence 2"):
        lyapunov_spectrum(cells.Logistic(4.0), 10, h0=h0)
