"""Speed of the Lyapunov engine on a single-layer LSTM, measured in one run
(``benchmarks/engine.py`` is the command line; chapter 10 runs a small version).

For each configuration (N, k, jacobian convention, dtype), with B = 10 one-hot character
sequences of T = 100 steps (input size 82, as the CharRNN):

* ``reference``: the 2022 authors' approach, written here: dense (B, 4N, 4N)
  diagonal matrices from ``diag_embed`` times the gate weights to form J, then
  J @ Q and a Householder QR every step;
* ``default``: ``lyapunov_spectrum(cell, x, k=k)``;
* ``fast``: the fastest of the engine's settings (orthonormalisation method and
  interval) whose leading-8 error stays below 1e-3;
* the machine's limits, measured in the same run: GEMM throughput (GFLOP/s), the
  roofline time of the step's essential flops (J @ Q plus a QR of Q), and the
  "QR floor": the time of the same batched Householder QRs and J @ Q GEMMs alone;
* the time of one training step (forward + backward + Adam) of the same LSTM.

Runs shorter than a second are timed several times (the median of up to 5, see
:func:`median_call`), so that the small configurations' ratios are not one noisy call's.
Every engine result is checked against a float64 Householder run (the first two
sequences) and the max error of the leading 8 exponents is printed. Everything runs
on one ``device`` (default: :func:`lyaplib.scale.device`, the GPU when there is one),
and CUDA timings synchronise before the clock is read.
"""

from __future__ import annotations

import copy
import math
import statistics
import time
import warnings

import torch
from torch import nn

from . import cells
from .orthonormalize import get_method, householder, random_basis
from .scale import device as default_device
from .spectrum import LyapunovWarning, lyapunov_spectrum

B, T, VOCAB = 10, 100, 82
TOLERANCE = 1e-3  # max |error| of the leading 8 exponents against float64 Householder


def timed_call(run, device: torch.device | None = None) -> tuple[float, object]:
    """(seconds, result) of one call of ``run()``, its kernels on ``device`` finished
    (CUDA runs asynchronously)."""
    _synchronize(device)
    began = time.perf_counter()
    result = run()
    _synchronize(device)
    return time.perf_counter() - began, result


def median_call(run, device: torch.device | None = None, *, budget: float = 1.0,
                most: int = 5) -> tuple[float, object]:
    """(median seconds, result) of ``run()``, called once more for every previous call's
    time that fits in ``budget`` seconds, up to ``most`` calls: short runs, whose single
    timings are noisy, are timed several times; long ones once."""
    seconds, result = timed_call(run, device)
    times = [seconds]
    while len(times) < most and sum(times) + times[0] <= budget:
        times.append(timed_call(run, device)[0])
    return statistics.median(times), result


def timed(run, repeat: int = 1, device: torch.device | None = None) -> float:
    """Seconds per call of ``run()``, the best of ``repeat`` calls."""
    return min(timed_call(run, device)[0] for _ in range(repeat))


def _synchronize(device: torch.device | None) -> None:
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def gemm_gflops(dtype: torch.dtype, device: torch.device | None = None, n: int = 1536) -> float:
    """Measured GEMM throughput of an n x n product on ``device``."""
    a = torch.randn(n, n, dtype=dtype, device=device)
    b = torch.randn(n, n, dtype=dtype, device=device)
    a @ b
    return 2 * n ** 3 / timed(lambda: a @ b, repeat=5, device=device) / 1e9


@torch.no_grad()
def reference_spectrum(lstm: nn.LSTM, x: torch.Tensor, k: int, jacobian: str, steps: int):
    """The 2022 code's way: dense diagonal matrices, J formed by GEMMs, QR every step.
    Returns the exponents per sequence, (B, k)."""
    N = lstm.hidden_size
    w_ih, w_hh = lstm.weight_ih_l0, lstm.weight_hh_l0
    bias = lstm.bias_ih_l0 + lstm.bias_hh_l0
    h = x.new_zeros(x.shape[0], N)
    c = torch.zeros_like(h)
    D = N if jacobian == "hidden" else 2 * N
    # the 2022 code starts from the identity; here from the engine's default basis, so
    # that the two compute the same numbers (the start costs nothing either way)
    Q = random_basis(D, k, dtype=x.dtype, device=x.device).expand(x.shape[0], D, k)
    log_r = torch.zeros(x.shape[0], k, dtype=torch.float64, device=x.device)
    for t in range(steps):
        y = x[:, t] @ w_ih.T + h @ w_hh.T + bias
        y_i, y_f, y_g, y_o = y.chunk(4, dim=-1)
        i, f, g, o = y_i.sigmoid(), y_f.sigmoid(), y_g.tanh(), y_o.sigmoid()
        c_new = f * c + i * g
        b = o * (1 - c_new.tanh() ** 2)
        scales = torch.cat([i * (1 - i) * g, f * (1 - f) * c, i * (1 - g ** 2),
                            o * (1 - o) * c_new.tanh()], dim=-1)
        dy = torch.diag_embed(scales) @ w_hh  # (B, 4N, 4N) dense diagonal x (4N, N)
        d_i, d_f, d_g, d_o = dy.chunk(4, dim=1)
        dc_dh = d_i + d_f + d_g
        dh_dh = d_o + torch.diag_embed(b) @ dc_dh
        if jacobian == "hidden":
            J = dh_dh
        else:
            dc_dc = torch.diag_embed(f)
            J = torch.cat([torch.cat([dh_dh, torch.diag_embed(b) @ dc_dc], 2),
                           torch.cat([dc_dh, dc_dc], 2)], 1)
        Q, r = householder(J @ Q)
        log_r += r.double().log()
        h, c = o * c_new.tanh(), c_new
    return (log_r / steps).sort(dim=-1, descending=True).values  # as the engine


def qr_and_gemm_seconds(D: int, k: int, dtype: torch.dtype,
                        device: torch.device | None = None) -> tuple[float, float]:
    """Seconds of one batched Householder QR of (B, D, k), and of one J @ Q GEMM."""
    J = torch.randn(B, D, D, dtype=dtype, device=device) / math.sqrt(D)
    Q = torch.linalg.qr(torch.randn(B, D, k, dtype=dtype, device=device))[0]
    reps = max(2, min(20, int(2e8 / (B * D * D * k))))
    torch.linalg.qr(J @ Q)  # warm-up
    qr = timed(lambda: [torch.linalg.qr(Q) for _ in range(reps)], device=device) / reps
    gemm = timed(lambda: [J @ Q for _ in range(reps)], device=device) / reps
    return qr, gemm


def essential_gflop(D: int, k: int, qrs_per_step: float) -> float:
    """Flops of one step's essential work, all B sequences: J @ Q, and a QR of Q
    (Householder R and explicit Q, 4 D k^2 - 4/3 k^3) every 1 / qrs_per_step steps."""
    return B * (2 * D * D * k + qrs_per_step * (4 * D * k * k - 4 / 3 * k ** 3)) / 1e9


def training_step_seconds(lstm: nn.LSTM, x: torch.Tensor) -> float:
    """Seconds of one training step (forward, backward, Adam) of ``lstm`` on x (B, T, I)."""
    lstm = copy.deepcopy(lstm)  # the analysed network must not change
    readout = nn.Linear(lstm.hidden_size, VOCAB).to(x.device, x.dtype)
    params = [*lstm.parameters(), *readout.parameters()]
    optimizer = torch.optim.Adam(params, lr=1e-3)
    target = torch.randint(VOCAB, x.shape[:2], device=x.device)

    def step():
        optimizer.zero_grad()
        out, _ = lstm(x)
        loss = nn.functional.cross_entropy(readout(out).flatten(0, 1), target.flatten())
        loss.backward()
        optimizer.step()
    step()
    return timed(step, repeat=3, device=x.device)


def engine(cell, x, k, **settings):
    """(seconds, per-sequence exponents) of one engine run with ``settings``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LyapunovWarning)  # accuracy is measured as err8
        return lyapunov_spectrum(cell, x, k=k, **settings).per_sequence


def _problem(N: int, jacobian: str, dtype: torch.dtype, device: torch.device):
    """The benchmarked LSTM (seeded by N), its (B, T, VOCAB) one-hot inputs and its Cell."""
    torch.manual_seed(N)
    lstm = nn.LSTM(VOCAB, N, batch_first=True).to(device, dtype)
    chars = torch.randint(VOCAB, (B, T), generator=torch.Generator().manual_seed(0))
    x = nn.functional.one_hot(chars, VOCAB).to(device, dtype)
    return lstm, x, cells.LSTM(lstm, jacobian)


def benchmark(N: int, k_kind: str | int, jacobian: str, dtype: torch.dtype, gflops: float,
              ref_steps: int, device: torch.device | None = None) -> list[dict]:
    """Rows for the reference, default and fast implementations on one configuration:
    ``k_kind`` "full" (all D exponents), "top" (k = N / 8) or an int k."""
    device = torch.device(device or "cpu")
    lstm, x, cell = _problem(N, jacobian, dtype, device)
    D = cell.dim
    k = D if k_kind == "full" else N // 8 if k_kind == "top" else int(k_kind)
    truth = lyapunov_spectrum(cell, x[:2].double(), k=k, dtype=torch.float64).per_sequence

    def error(per_sequence):
        return float((per_sequence[:2, :8] - truth[:, :8]).abs().max())

    rows = []
    qr, gemm = qr_and_gemm_seconds(D, k, dtype, device)
    train = training_step_seconds(lstm, x)

    def row(name, seconds, err, settings=None):
        every = (settings or {}).get("ortho_every", 1)
        return dict(N=N, k=k, jacobian=jacobian, dtype=str(dtype).removeprefix("torch."),
                    device=device.type, implementation=name, settings=_describe(settings),
                    seconds=seconds,
                    max_error_leading8=err, qr_floor_seconds=T * (gemm + qr / every),
                    roofline_seconds=T * essential_gflop(D, k, 1 / every) / gflops,
                    training_step_seconds=train)

    seconds, ref = median_call(lambda: reference_spectrum(lstm, x, k, jacobian, ref_steps), device)
    ref_seconds = seconds * T / ref_steps
    rows.append(row("reference", ref_seconds, None if ref_steps < T else error(ref)))
    rows[-1]["settings"] = f"diag_embed, timed over {ref_steps} steps"
    candidates = {"default": {}}
    for method in ("householder", "cholesky_qr") if k < D else ("householder",):
        for every in (1, 2, 4):
            settings = {"method": method, "ortho_every": every}
            if settings != {"method": "householder", "ortho_every": 1}:
                candidates[_describe(settings)] = settings
    measured = {}
    for name, settings in candidates.items():
        seconds, out = median_call(lambda s=settings: engine(cell, x, k, **s), device)
        measured[name] = (seconds, error(out), settings)
    rows.append(row("default", measured["default"][0], measured["default"][1]))
    accurate = {n: m for n, m in measured.items() if m[1] < TOLERANCE}
    best = min(accurate or measured, key=lambda n: (accurate or measured)[n][0])
    rows.append(row("fast", *measured[best]))
    for r in rows:
        r["speedup_vs_reference"] = ref_seconds / r["seconds"]
        r["time_over_qr_floor"] = r["seconds"] / r["qr_floor_seconds"]
        r["fraction_of_gemm_roofline"] = r["roofline_seconds"] / r["seconds"]
        r["le_cost_in_training_steps"] = r["seconds"] / train
    return rows


def step_budget(N: int, k: int, jacobian: str = "hidden", dtype: torch.dtype = torch.float32,
                ortho_every: int = 1, method: str = "householder",
                device: torch.device | str | None = None, repeat: int = 5) -> dict:
    """Milliseconds per step of one engine run (B sequences, N = ``N``, k exponents), part
    by part: the forward step alone, the tangent map beyond it, one orthonormalisation
    (shared over ``ortho_every`` steps) and the rest (the engine's bookkeeping: sign fix,
    logarithms, finiteness checks); ``essential`` is the roofline time of J @ Q and the QR
    at the measured GEMM rate. Medians of ``repeat`` timings of T steps each."""
    device = torch.device(device or "cpu")
    _, x, cell = _problem(N, jacobian, dtype, device)
    state = x.new_zeros(B, cell.state_dim)
    Q = torch.linalg.qr(torch.randn(B, cell.dim, k, dtype=dtype, device=device))[0]
    ortho = get_method(method)

    def per_step(run) -> float:
        run()  # warm-up
        return 1e3 * statistics.median(
            timed_call(lambda: [run(t) for t in range(T)], device)[0] for _ in range(repeat)) / T

    with torch.no_grad():
        forward = per_step(lambda t=0: cell.step(state, x[:, t]))
        tangent = per_step(lambda t=0: cell.tangent(state, x[:, t], Q))
        M = cell.tangent(state, x[:, 0], Q)[1]
        qr = per_step(lambda t=0: ortho(M))
    total = 1e3 * statistics.median(
        timed_call(lambda: engine(cell, x, k, ortho_every=ortho_every, method=method),
                   device)[0]
        for _ in range(repeat)) / T
    essential = 1e3 * essential_gflop(cell.dim, k, 1 / ortho_every) / gemm_gflops(dtype, device)
    parts = {"forward": forward, "tangent beyond the forward step": tangent - forward,
             "orthonormalisation": qr / ortho_every}
    parts["engine bookkeeping"] = total - sum(parts.values())
    return dict(N=N, k=k, jacobian=jacobian, dtype=str(dtype).removeprefix("torch."),
                settings=_describe({"method": method, "ortho_every": ortho_every}),
                total_ms=total, essential_ms=essential, parts_ms=parts)


def _describe(settings: dict | None) -> str:
    return ", ".join(f"{k}={v}" for k, v in (settings or {}).items()) or "defaults"


def run(sizes=(64, 128, 256, 512), dtypes=(torch.float32, torch.float64), *,
        float64_up_to: int = 256, device: torch.device | str | None = None,
        report=print) -> list[dict]:
    """Every configuration for ``sizes`` on ``device`` (default: the GPU when there is
    one): rows of :func:`lyaplib.benchmark.benchmark`, each reported as it lands."""
    device = torch.device(device) if device is not None else default_device()
    gflops = {dt: gemm_gflops(dt, device) for dt in dtypes}
    where = (torch.cuda.get_device_name(device) if device.type == "cuda"
             else f"CPU, {torch.get_num_threads()} threads")
    report(f"torch {torch.__version__} on {where}; GEMM "
           + ", ".join(f"{str(dt)[6:]} {g:.0f} GFLOP/s" for dt, g in gflops.items()))
    report(HEADER)
    rows = []
    for N in sizes:
        for dtype in dtypes:
            if dtype == torch.float64 and N > float64_up_to:
                continue
            for jacobian in ("hidden", "full"):
                # "full": all D exponents; "top": k = N / 8; and k = 32 of 512 (a target)
                extra = (32,) if N == 512 and jacobian == "hidden" else ()
                for k_kind in ("full", "top", *extra):
                    ref_steps = T if N <= 128 else 20
                    for r in benchmark(N, k_kind, jacobian, dtype, gflops[dtype], ref_steps,
                                       device):
                        rows.append(r)
                        report(format_row(r))
    return rows


HEADER = (f"{'N':>4} {'k':>5} {'jacobian':8} {'dtype':7} {'impl':9} {'seconds':>8} "
          f"{'x ref':>6} {'/floor':>6} {'roofl.':>6} {'train':>6} {'err8':>8}  settings")
LEGEND = (f"seconds for T = {T} steps of B = {B} sequences; x ref = speed-up over the reference; "
          f"/floor = time over the QR floor; roofl. = fraction of the GEMM roofline; train = cost "
          f"in training steps; err8 = max |error| of the leading 8 exponents vs float64 "
          f"Householder (tolerance {TOLERANCE:g})")


def format_row(r: dict) -> str:
    """One row of :func:`run` as a line of the printed table."""
    return (f"{r['N']:>4} {r['k']:>5} {r['jacobian']:8} {r['dtype']:7} {r['implementation']:9} "
            f"{r['seconds']:8.3f} {r['speedup_vs_reference']:6.1f} {r['time_over_qr_floor']:6.2f} "
            f"{r['fraction_of_gemm_roofline']:6.2f} {r['le_cost_in_training_steps']:6.1f} "
            + (f"{r['max_error_leading8']:8.1e}" if r["max_error_leading8"] is not None
               else f"{'n/a':>8}") + f"  {r['settings']}")


def format_ms(ms: float) -> str:
    """A part of a :func:`step_budget` in ms; a negative remainder (a difference of medians
    within the timing noise) reads "≈ 0"."""
    return f"{ms:.2f}" if ms >= 0 else "≈ 0"


def format_budget(b: dict) -> str:
    """One :func:`step_budget` as a line: ms per step, part by part."""
    parts = ", ".join(f"{name} {format_ms(ms)}" for name, ms in b["parts_ms"].items())
    return (f"N = {b['N']}, k = {b['k']} ({b['jacobian']}, {b['dtype']}, {b['settings']}): "
            f"{b['total_ms']:.2f} ms per step = {parts}; roofline {b['essential_ms']:.2f} ms "
            f"({b['total_ms'] / b['essential_ms']:.1f}x)")
