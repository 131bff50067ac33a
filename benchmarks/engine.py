"""Speed of the Lyapunov engine on a single-layer LSTM against the 2022 reference approach and
the machine's GEMM limit, in one run (see ``lyaplib.benchmark`` for what is measured).

    python benchmarks/engine.py [--quick] [--json results.json] [--threads 2] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from lyaplib import benchmark
from lyaplib._io import atomic_write


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N in {64, 128} only")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    began = time.perf_counter()
    rows = benchmark.run((64, 128) if args.quick else (64, 128, 256, 512), device=args.device)
    print(f"columns: {benchmark.LEGEND}.")
    if not args.quick:  # where the time of the top-k spectrum goes, against the full one
        budgets = [benchmark.step_budget(512, 512, ortho_every=4, device=args.device),
                   benchmark.step_budget(512, 32, ortho_every=4, method="cholesky_qr",
                                         device=args.device)]
        print("per step, milliseconds (medians of 5 runs):")
        for b in budgets:
            print("  " + benchmark.format_budget(b))
        full, top = (b["total_ms"] for b in budgets)
        print(f"  top-32 is {full / top:.1f}x cheaper than the full spectrum; its forward "
              f"step alone bounds that at {full / budgets[1]['parts_ms']['forward']:.0f}x")
    print(f"total {time.perf_counter() - began:.0f} s")
    if args.json:
        atomic_write(args.json, lambda f: f.write(json.dumps(rows, indent=1).encode()))


if __name__ == "__main__":
    main()
