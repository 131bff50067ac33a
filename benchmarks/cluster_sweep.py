"""A chapter-05 sweep in this process against the same sweep on a Dask LocalCluster.

The grid is chapter 05's at the ``ci`` preset: CharRNN LSTMs of 32 units on War and
Peace (or the bundled excerpt), 8 runs of 5 epochs of 60 batches of 32 x 100 characters,
learning rates and dropouts spread log-uniformly over the chapter's ranges, the
spectrum (both conventions) after every epoch. Both sweeps start from empty stores.
Reports the wall time of each, their ratio, and whether the rows are identical once the
timings (the fields ending in ``_seconds``) are left out. The serial sweep runs twice: on
one torch thread, as each Dask worker does (the rows must then be identical), and on
``--threads`` (the spectra then move in their last digits: float sums split over threads).
Timings come from one run on this machine.

    python benchmarks/cluster_sweep.py [--workers 2] [--threads 2] [--runs 8]
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from lyaplib import data, sweeps, tasks, training


def without_timings(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if not k.endswith("_seconds")} for row in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch threads, serial")
    parser.add_argument("--runs", type=int, default=8)
    args = parser.parse_args()
    import dask  # the cluster extra: pip install "lyaplib[cluster]"
    import distributed

    if args.threads:
        torch.set_num_threads(args.threads)
    corpus = data.war_and_peace()
    task = tasks.CharTask(corpus, seq_len=100)
    fractions = (np.arange(args.runs) + 0.5) / args.runs  # of each log-range
    configs = [training.RunConfig(hidden_size=32, batch_size=32, epochs=5, max_batches=60,
                                  val_batches=8, lr=float(10 ** (-3 + s)),
                                  dropout=float(10 ** (-2 + (np.log10(0.5) + 2) * t)),
                                  seed=i)
               for i, (s, t) in enumerate(zip(fractions, fractions[::-1], strict=True))]

    def run(config, checkpoint):
        return sweeps.train_and_measure(task, config, le_epochs=range(config.epochs + 1),
                                        jacobians=("hidden", "full"),
                                        checkpoint=checkpoint)

    threads = torch.get_num_threads()
    print(f"{corpus.source}; {len(configs)} runs: in this process on 1 and on {threads} "
          f"torch threads, then on {args.workers} Dask workers of 1 thread each")
    with tempfile.TemporaryDirectory() as folder:

        def timed(name, executor=None):
            start = time.perf_counter()
            rows = sweeps.run_sweep(configs, run, Path(folder) / name, executor=executor,
                                    desc=name)
            return rows, time.perf_counter() - start

        torch.set_num_threads(1)
        one, one_seconds = timed("serial-1-thread")
        torch.set_num_threads(threads)
        many, many_seconds = timed(f"serial-{threads}-threads")
        with dask.config.set(sweeps.DASK_CONFIG), \
                distributed.LocalCluster(n_workers=args.workers, threads_per_worker=1,
                                      processes=True, dashboard_address=None) as cluster, \
                distributed.Client(cluster) as client:
            spread, spread_seconds = timed("cluster", client.get_executor())
    print(f"wall time: serial on 1 thread {one_seconds:.1f} s, on {threads} threads "
          f"{many_seconds:.1f} s, LocalCluster({args.workers}) {spread_seconds:.1f} s; "
          f"ratios {one_seconds / spread_seconds:.2f} and {many_seconds / spread_seconds:.2f}")
    for name, rows in (("serial on 1 thread", one), (f"serial on {threads} threads", many)):
        gap = max(abs(a - b) for r, s in zip(rows, spread, strict=True)
                  for e in r["spectra"] for a, b in zip(r["spectra"][e], s["spectra"][e],
                                                        strict=True))
        same = without_timings(rows) == without_timings(spread)
        print(f"{name} vs cluster: rows identical without timings: {same}; largest "
              f"spectrum difference {gap:.3g}")


if __name__ == "__main__":
    main()
