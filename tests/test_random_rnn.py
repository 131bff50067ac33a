"""Random tanh networks h <- tanh(W h + U x), W_ij ~ N(0, g^2 / N): known results."""

import torch

from lyaplib import cells, lyapunov_spectrum

F64 = torch.float64
# Dynamic mean-field theory (NOTES.md; Engelken, Wolf & Abbott 2023): per step.
MEAN_FIELD = {2.0: dict(lambda_1=0.1547, mean=-1.150), 3.0: dict(lambda_1=0.3103, mean=-2.274)}


def network(N, g, seed=0, input_size=0):
    gen = torch.Generator().manual_seed(seed)
    cell = cells.VanillaRNN.random(N, g, input_size, generator=gen, dtype=F64)
    return cell, gen


def test_mean_field_largest_exponent_and_mean_exponent():
    N = 500
    for g, expected in MEAN_FIELD.items():
        cell, gen = network(N, g, seed=1)
        h0 = torch.randn(4, N, generator=gen, dtype=F64)
        top = lyapunov_spectrum(cell, 1500, k=1, h0=h0, warmup=300)
        assert abs(top.max - expected["lambda_1"]) < 0.02, (g, top.max)
        # At N = 500 the mean exponent fluctuates slowly (by ~0.02 over 1000 steps) from
        # sequence to sequence, so average a few sequences.
        full = lyapunov_spectrum(cell, 400, h0=h0, warmup=100)
        assert abs(full.mean - expected["mean"]) < 0.02, (g, full.mean)
        assert abs(full.max - expected["lambda_1"]) < 0.02, (g, full.max)


def test_below_the_transition_the_spectrum_is_log_eigenvalue_moduli():
    # For g < 1 the origin attracts everything, J -> W there, so lambda_i -> ln|eig_i(W)|.
    N = 60
    cell, gen = network(N, 0.5)
    res = lyapunov_spectrum(cell, 3000, h0=torch.randn(1, N, generator=gen, dtype=F64))
    exact = torch.sort(torch.linalg.eigvals(cell.weight_hh.detach()).abs().log(), descending=True)
    assert (res.exponents - exact.values).abs().max() < 0.01


def test_strong_input_suppresses_chaos():
    N = 200
    cell, gen = network(N, 3.0, input_size=1)
    h0 = torch.randn(4, N, generator=gen, dtype=F64)
    lam = {}
    for sigma in (0.0, 8.0):
        drive = sigma * torch.randn(4, 800, 1, generator=gen, dtype=F64)
        res = lyapunov_spectrum(cell, drive, k=1, h0=h0, warmup=200)
        lam[sigma] = (res.max, float(res.stderr[0]))
    assert lam[0.0][0] > 0.2  # chaotic when autonomous
    assert lam[8.0][0] < -3 * lam[8.0][1], lam  # stable, beyond the error bar, when driven hard
