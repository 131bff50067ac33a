"""Speed of the Lyapunov engine on a single-layer LSTM against the 2022 reference approach and
the machine's GEMM limit, in one run (see ``lyaplib.benchmark`` for what is measured).

    python benchmarks/engine.py [--quick] [--json results.json] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from lyaplib import benchmark


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N in {64, 128} only")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    began = time.perf_counter()
    rows = benchmark.run((64, 128) if args.quick else (64, 128, 256, 512))
    print(f"columns: {benchmark.LEGEND}.\ntotal {time.perf_counter() - began:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
