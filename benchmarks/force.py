"""Batched FORCE: a population's recursive least squares in one tensor against a Python loop.

Both train the same R networks of N units (same matrices, target and initial states)
for the same number of steps; the loop calls ``force.train_force`` once per network.
Reports microseconds per step and network, and the memory the population holds (the
inverse correlation matrices P_i and the recurrent matrices, R N^2 numbers each).
Timings come from one run on this machine; the ratio is what matters.

    python benchmarks/force.py [--networks 32] [--hidden 512] [--steps 400] [--threads 2]
"""

import argparse
import time

import torch

from lyaplib import cells, force


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--steps", type=int, default=400, help="training steps (+ 100 free)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    R, N, T = args.networks, args.hidden, args.steps

    def fresh() -> list[cells.ForceRNN]:
        return [cells.ForceRNN(0, N, g=1.5, generator=torch.Generator().manual_seed(i))
                for i in range(R)]

    target = force.four_sines(T + 100, generator=torch.Generator().manual_seed(0))
    x0 = 0.5 * torch.randn(R, N, generator=torch.Generator().manual_seed(0))

    nets = fresh()
    start = time.perf_counter()
    looped = [force.train_force(net, target, T, x0=x0[i]) for i, net in enumerate(nets)]
    loop = time.perf_counter() - start

    nets = fresh()
    start = time.perf_counter()
    batched = force.train_force_population(nets, target.expand(R, -1).contiguous(), T,
                                           x0=x0, progress=False)
    population = time.perf_counter() - start

    errors = batched.test_error.tolist()
    gap = max(abs(a.test_error - b) for a, b in zip(looped, errors, strict=True))
    per_step = lambda seconds: 1e6 * seconds / (R * (T + 100))  # noqa: E731
    mib = 2 * R * N * N * torch.get_default_dtype().itemsize / 2**20
    print(f"{R} FORCE networks, N = {N}, {T} RLS steps + 100 free, "
          f"{torch.get_num_threads()} threads, {torch.__version__}")
    print(f"python loop : {loop:7.2f} s  {per_step(loop):7.1f} us / step / network")
    print(f"population  : {population:7.2f} s  {per_step(population):7.1f} us / step / network")
    print(f"speed-up    : {loop / population:.2f}x;  P_i and matrices held: {mib:.0f} MiB;  "
          f"largest test-error difference {gap:.1e}")


if __name__ == "__main__":
    main()
