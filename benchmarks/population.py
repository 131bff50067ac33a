"""Networks per minute: a vmapped Population against a Python loop over the same networks.

Both train the same P networks (same initialisations, learning rates and
batches) on row-wise sequential MNIST for the same number of Adam steps,
then compute each network's Lyapunov spectrum; the loop uses the ordinary
fused torch.nn forward and one engine call per network. Timings come from
one run on this machine; the ratio is what matters.

    python benchmarks/population.py [--architecture lstm] [--networks 16] [--hidden 32]
"""

import argparse
import time

import torch
from torch import nn

from lyaplib import data, lyapunov_spectrum, models, population, tasks, training


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--architecture", default="lstm", choices=models.ARCHITECTURES)
    parser.add_argument("--networks", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20, help="Adam steps per network")
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()

    task = tasks.SequenceClassificationTask(data.mnist(), train_size=args.steps * args.batch,
                                            test_size=256)
    configs = [training.RunConfig(architecture=args.architecture, hidden_size=args.hidden,
                               lr=10 ** (-3 + i / args.networks), init=0.1, seed=i,
                               batch_size=args.batch, epochs=1)
               for i in range(args.networks)]
    batches = list(task.batches("train", args.batch, torch.Generator().manual_seed(0)))
    le_inputs = task.lyapunov_inputs(10, 112)

    start = time.perf_counter()
    for config in configs:
        model = config.model(task)
        opt = torch.optim.Adam(model.parameters(), lr=config.lr)
        for x, y in batches:
            opt.zero_grad()
            nn.functional.cross_entropy(model(x)[0], y).backward()
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
        lyapunov_spectrum(model.eval().cell("full"), le_inputs, dtype=torch.float64)
    loop = time.perf_counter() - start

    start = time.perf_counter()
    pop = population.Population([c.model(task) for c in configs], [c.lr for c in configs],
                                forward_kwargs={"stepwise": True})
    for x, y in batches:
        pop.train_step(nn.functional.cross_entropy, x, y)
    pop.spectra(lambda m: m.eval().cell("full"), le_inputs)
    vmapped = time.perf_counter() - start

    per_minute = lambda seconds: 60 * args.networks / seconds  # noqa: E731
    print(f"{args.networks} x {args.architecture} (N = {args.hidden}), {len(batches)} Adam "
          f"steps of {args.batch} sequences + one spectrum each, "
          f"{torch.get_num_threads()} threads, {torch.__version__}")
    print(f"python loop : {loop:7.2f} s  {per_minute(loop):8.1f} networks / minute")
    print(f"population  : {vmapped:7.2f} s  {per_minute(vmapped):8.1f} networks / minute")
    print(f"speed-up    : {loop / vmapped:.2f}x")


if __name__ == "__main__":
    main()
