"""Fractional derivatives by FFT on periodic signals with known answers."""

import math

import pytest
import torch

from lyaplib.fractional import fit_order, fractional_derivative, order_profile

F64 = torch.float64
N, DT = 1024, 0.01
T = torch.arange(N, dtype=F64) * DT
W = 2 * math.pi * 3 / (N * DT)  # three periods in the window: exactly periodic


def test_order_one_is_the_derivative_and_order_minus_one_the_integral():
    torch.testing.assert_close(fractional_derivative(torch.sin(W * T), 1.0, DT),
                               W * torch.cos(W * T), rtol=0, atol=1e-10)
    torch.testing.assert_close(fractional_derivative(torch.cos(W * T), -1.0, DT),
                               torch.sin(W * T) / W, rtol=0, atol=1e-10)


def test_order_zero_removes_the_mean_only():
    x = torch.randn(N, dtype=F64)
    torch.testing.assert_close(fractional_derivative(x, 0.0, DT), x - x.mean())


def test_half_derivative_of_a_sine():
    expected = math.sqrt(W) * torch.sin(W * T + math.pi / 4)
    torch.testing.assert_close(fractional_derivative(torch.sin(W * T), 0.5, DT), expected,
                               rtol=0, atol=1e-10)


def test_semigroup_on_band_limited_signals():
    freqs = torch.fft.rfftfreq(N, DT)
    coef = torch.zeros(len(freqs), dtype=torch.complex128)
    coef[1:40] = torch.randn(39, dtype=F64) + 1j * torch.randn(39, dtype=F64)
    x = torch.fft.irfft(coef, n=N)  # no Nyquist content
    once = fractional_derivative(fractional_derivative(x, 0.3, DT), 0.45, DT)
    torch.testing.assert_close(once, fractional_derivative(x, 0.75, DT), rtol=0, atol=1e-9)


def test_fit_order_recovers_a_known_order():
    g = torch.Generator().manual_seed(0)
    drive = torch.cumsum(torch.randn(N, generator=g, dtype=F64), 0)
    drive = drive - torch.linspace(0, 1, N, dtype=F64) * drive[-1]  # periodic ends
    response = 2.5 * fractional_derivative(drive, 0.4, DT)
    response = response + 0.01 * response.std() * torch.randn(N, generator=g, dtype=F64)
    alpha, scale, residual = fit_order(drive, response, DT)
    assert alpha == pytest.approx(0.4, abs=0.011) and scale == pytest.approx(2.5, rel=0.05)
    assert residual < 0.05
    # the profile: the misfit grows on both sides of the true order, and a step drive
    # fits itself (order 0) exactly
    alphas = torch.tensor([0.0, 0.2, 0.4, 0.6, 0.8], dtype=F64)
    residuals, scales = order_profile(drive, response, alphas, DT)
    assert int(residuals.argmin()) == 2 and (residuals[[0, 1, 3, 4]] > 0.1).all()
    step = (torch.arange(N) >= N // 3).to(F64)
    residuals, scales = order_profile(step, 3 * step, alphas, DT)
    assert float(residuals[0]) < 1e-12 and float(scales[0]) == pytest.approx(3)
    with pytest.raises(ValueError, match="dt"):
        fractional_derivative(drive, 0.5, 0.0)
    with pytest.raises(ValueError, match="drive and response"):
        order_profile(drive, response[:-1], alphas)
