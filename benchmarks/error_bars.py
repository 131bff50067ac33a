"""What the within-trajectory error bars cost: the engine with its blocks (the default,
``blocks=64``) against the same run keeping none (``blocks=0``), interleaved, in one run.

    python benchmarks/error_bars.py [--repeat 7] [--steps 200] [--threads 2]

Prints, per configuration, the median seconds of each and their ratio, with the ratio's
spread over the repeats (min-max of the paired ratios); since that spread is wider than the
cost, also the bookkeeping alone (the engine's block recorder fed T sums, which bounds the
overhead far more precisely) as a fraction of a run; and the time of the analysis that
turns the blocks into error bars and a convergence report.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from lyaplib import cells, lyapunov_spectrum
from lyaplib.benchmark import VOCAB, B, timed_call
from lyaplib.spectrum import _Record


def bookkeeping_seconds(log_r: torch.Tensor, steps: int) -> float:
    """Seconds the block recorder spends on a run of ``steps`` steps (median of 5)."""
    def run():
        record = _Record(keep_trace=False, blocks=64, ortho_every=1)
        for t in range(1, steps + 1):
            record(log_r + 0.0, t, final=t == steps)  # the engine hands over a new tensor too
        return record.fields()

    def baseline():  # the same new tensors without the recorder
        for _ in range(1, steps + 1):
            log_r + 0.0
    times = [timed_call(run)[0] - timed_call(baseline)[0] for _ in range(5)]
    return max(statistics.median(times), 0.0)


def paired_runs(cell, x: torch.Tensor, k: int, repeat: int):
    """Interleaved runs without and with blocks: (seconds without, seconds with, their
    paired ratios, the last result)."""
    without, with_blocks, ratios = [], [], []
    for _ in range(repeat):
        a = timed_call(lambda: lyapunov_spectrum(cell, x, k=k, blocks=0))[0]
        b, result = timed_call(lambda: lyapunov_spectrum(cell, x, k=k))
        without.append(a)
        with_blocks.append(b)
        ratios.append(b / a)
    return without, with_blocks, ratios, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7, help="interleaved pairs per size")
    parser.add_argument("--steps", type=int, default=200, help="steps T per run")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; LSTM, hidden "
          f"Jacobian, float32, B = {B} one-hot sequences of T = {args.steps} steps")
    print(f"{'N':>4} {'k':>4} {'blocks=0 s':>10} {'blocks=64 s':>11} {'ratio':>6} "
          f"{'spread':>13} {'bookkeeping':>11} {'analysis s':>10}")
    for N, k in ((512, 512), (512, 32), (32, 32)):
        torch.manual_seed(N)
        lstm = nn.LSTM(VOCAB, N, batch_first=True)
        chars = torch.randint(VOCAB, (B, args.steps), generator=torch.Generator().manual_seed(0))
        x = nn.functional.one_hot(chars, VOCAB).float()
        cell = cells.LSTM(lstm, "hidden")
        lyapunov_spectrum(cell, x[:, :10], k=k)  # warm the allocator and kernels
        without, with_blocks, ratios, result = paired_runs(cell, x, k, args.repeat)
        began = time.perf_counter()
        result.stderr_within, result.convergence(0.01)
        analysis = time.perf_counter() - began
        bookkeeping = bookkeeping_seconds(result.per_sequence, args.steps)
        print(f"{N:>4} {k:>4} {statistics.median(without):>10.3f} "
              f"{statistics.median(with_blocks):>11.3f} "
              f"{statistics.median(with_blocks) / statistics.median(without):>6.3f} "
              f"{min(ratios):>6.3f}-{max(ratios):<6.3f} "
              f"{bookkeeping / statistics.median(without):>11.1e} {analysis:>10.4f}")


if __name__ == "__main__":
    main()
