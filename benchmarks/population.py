"""Networks per minute: a vmapped Population against a Python loop over the same networks.

For each architecture both train the same P networks (same initialisations, learning
rates and batches) on row-wise sequential MNIST for the same number of Adam steps, then
compute each network's Lyapunov spectrum (float64, full state); the loop uses the
ordinary torch.nn forward (oneDNN's fused kernel for the LSTM and GRU) and one engine
call per network. The two parts are timed separately, loop and population alternating,
``--repeats`` times: the table gives medians and the range of the speed-up.

It also prints what bounds the speed-up on this machine: the loop's training throughput
against the measured float32 GEMM rate (work a population cannot remove, only do
faster), and the share of the spectra spent in the batched QR, whose LAPACK cost per
matrix is the same in a batch of P B matrices as in P batches of B; together the two give
an upper bound on the total speed-up. The population's spectra are checked against one
engine call per network (max |difference|).

    python benchmarks/population.py [--architectures lstm gru cornn] [--networks 16]
"""

from __future__ import annotations

import argparse
import statistics

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from lyaplib import benchmark, data, lyapunov_spectrum, models, population, tasks, training
from lyaplib.orthonormalize import householder


def _loop_training(configs, task, batches) -> list[nn.Module]:
    trained = []
    for config in configs:
        model = config.model(task)
        opt = torch.optim.Adam(model.parameters(), lr=config.lr)
        for x, y in batches:
            opt.zero_grad()
            nn.functional.cross_entropy(model(x)[0], y).backward()
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
        trained.append(model.eval())
    return trained


def _population_training(configs, task, batches) -> population.Population:
    pop = population.Population([c.model(task) for c in configs], [c.lr for c in configs],
                                forward_kwargs={"stepwise": True})
    for x, y in batches:
        pop.train_step(nn.functional.cross_entropy, x, y)
    return pop.eval()


def _training_gflop(config, task, x, y) -> float:
    """Flops of one network's training step (forward and backward GEMMs), in GFLOP."""
    model = config.model(task)
    with FlopCounterMode(display=False) as counter:
        nn.functional.cross_entropy(model(x, stepwise=True)[0], y).backward()
    return counter.get_total_flops() / 1e9


def compare(architecture: str, networks: int, hidden: int, steps: int, batch: int,
            repeats: int, gflops: float) -> dict:
    """Timings (medians over ``repeats``) and bounds for one architecture."""
    task = tasks.SequenceClassificationTask(data.mnist(), train_size=steps * batch,
                                            test_size=256)
    configs = [training.RunConfig(architecture=architecture, hidden_size=hidden,
                                  lr=10 ** (-3 + i / networks), init=0.1, seed=i,
                                  batch_size=batch, epochs=1)
               for i in range(networks)]
    batches = list(task.batches("train", batch, torch.Generator().manual_seed(0)))
    le_inputs = task.lyapunov_inputs(10, 112)
    make_cell = lambda m: m.cell("full")  # noqa: E731
    times = {key: [] for key in ("loop_train", "pop_train", "loop_spectra", "pop_spectra")}
    for _ in range(repeats):
        seconds, trained = benchmark.timed_call(lambda: _loop_training(configs, task, batches))
        times["loop_train"].append(seconds)
        seconds, pop = benchmark.timed_call(lambda: _population_training(configs, task, batches))
        times["pop_train"].append(seconds)
        seconds, _ = benchmark.timed_call(lambda nets=trained: [
            lyapunov_spectrum(make_cell(m), le_inputs, dtype=torch.float64) for m in nets])
        times["loop_spectra"].append(seconds)
        seconds, (spectra, result) = benchmark.timed_call(
            lambda p=pop: p.spectra(make_cell, le_inputs, dtype=torch.float64))
        times["pop_spectra"].append(seconds)
    one_by_one = torch.stack([lyapunov_spectrum(make_cell(pop.model(i)), le_inputs,
                                                dtype=torch.float64).exponents
                              for i in range(networks)])
    # the QR share: the engine's batched Householder QRs of the population's (P B, D, D)
    Q = result.Q.double()
    qr = benchmark.timed(lambda: householder(Q), repeat=5) * le_inputs.shape[1]
    x, y = batches[0]
    return dict(architecture=architecture, spectra_difference=float(
        (spectra - one_by_one).abs().max()), qr_seconds=qr,
        train_gflop=_training_gflop(configs[0], task, x, y) * networks * len(batches),
        gemm_gflops=gflops, **times)


def report(r: dict) -> None:
    median = {key: statistics.median(v) for key, v in r.items() if isinstance(v, list)}
    total = {who: median[f"{who}_train"] + median[f"{who}_spectra"] for who in ("loop", "pop")}
    ratios = [(lt + ls) / (pt + ps) for lt, pt, ls, ps in zip(
        r["loop_train"], r["pop_train"], r["loop_spectra"], r["pop_spectra"], strict=True)]
    print(f"\n{r['architecture']}: seconds (median of {len(ratios)})   loop  population  "
          f"speed-up")
    for part in ("train", "spectra"):
        loop, pop = median[f"loop_{part}"], median[f"pop_{part}"]
        print(f"  {part:8}{'':24}{loop:6.2f}  {pop:10.2f}  {loop / pop:7.2f}x")
    print(f"  {'total':8}{'':24}{total['loop']:6.2f}  {total['pop']:10.2f}  "
          f"{total['loop'] / total['pop']:7.2f}x (runs: {min(ratios):.2f}-{max(ratios):.2f}x)")
    floor = r["train_gflop"] / r["gemm_gflops"]
    print(f"  training: {r['train_gflop']:.1f} GFLOP; the loop runs it at "
          f"{r['train_gflop'] / median['loop_train']:.1f} GFLOP/s, the GEMM limit "
          f"{r['gemm_gflops']:.0f} GFLOP/s ({floor:.2f} s): at most "
          f"{median['loop_train'] / floor:.1f}x for any implementation")
    print(f"  spectra: the batched QRs alone take {r['qr_seconds']:.2f} s of the population's "
          f"{median['pop_spectra']:.2f} s; max |population - one engine call per network| = "
          f"{r['spectra_difference']:.1e}")
    bound = total["loop"] / (floor + r["qr_seconds"])
    print(f"  so at most {bound:.1f}x in total for any population that keeps the GEMM rate and "
          f"LAPACK's QR: the loop's {total['loop']:.2f} s over the training's GEMM time plus "
          f"the QRs")
    print(f"  networks / minute: loop {60 * r['networks'] / total['loop']:.0f}, population "
          f"{60 * r['networks'] / total['pop']:.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--architectures", nargs="+", default=["lstm", "gru", "cornn"],
                        choices=models.ARCHITECTURES)
    parser.add_argument("--networks", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20, help="Adam steps per network")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    gflops = benchmark.gemm_gflops(torch.float32)
    print(f"{args.networks} networks (N = {args.hidden}), {args.steps} Adam steps of "
          f"{args.batch} sequences + one float64 spectrum (10 sequences x 112 steps) each; "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}")
    for architecture in args.architectures:
        r = compare(architecture, args.networks, args.hidden, args.steps, args.batch,
                    args.repeats, gflops)
        report(r | {"networks": args.networks})


if __name__ == "__main__":
    main()
