"""Draw images/spectrum.png for the README: spectra of random tanh RNNs at three gains."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from lyaplib import AutogradCell, lyapunov_spectrum, plotting  # noqa: E402

N, B, T = 64, 8, 600
gen = torch.Generator().manual_seed(0)
W0 = torch.randn(N, N, generator=gen, dtype=torch.float64) / N**0.5
U = torch.randn(N, 1, generator=gen, dtype=torch.float64)
inputs = 0.1 * torch.randn(B, T, 1, generator=gen, dtype=torch.float64)

fig, ax = plt.subplots(figsize=(6, 3.4))
for gain in (0.8, 1.5, 3.0):
    cell = AutogradCell(lambda h, x, W=gain * W0: torch.tanh(h @ W.T + x @ U.T), N)
    h0 = 0.5 * torch.randn(B, N, generator=gen, dtype=torch.float64)
    result = lyapunov_spectrum(cell, inputs, h0=h0, warmup=100)
    plotting.plot_spectrum(result, ax, label=f"gain g = {gain}")
ax.set_title("Lyapunov spectra of random tanh RNNs, N = 64")
fig.tight_layout()
out = Path(__file__).resolve().parents[1] / "images" / "spectrum.png"
fig.savefig(out, dpi=120)
print(f"wrote {out}")
