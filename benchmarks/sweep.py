"""Wall time of one 12-run sweep: sequential (Hydra's basic launcher) vs joblib with 2 workers.

    python benchmarks/sweep.py [--epochs 20] [--keep DIR] [--all-cores]

Both sweeps are the same 12 runs (LSTM, GRU x tanh, relu, elu candidate x 2 seeds, adding problem, hidden
64, T=50, 2,000 sequences) started as a user would, with `python -m actstudy sweep`, each into a fresh directory, timed from start
to exit (process start-up, data, training, reports of each run). Threads are fixed, as every run fixes them
(actstudy.runtime.prepare_torch calls torch.set_num_threads and torch.set_flush_denormal(True)):
  - sequential: one run at a time with threads=1 (the default a user gets, and the parallel launcher's
    per-job setting, so the ratio shows what the second worker adds), and with --all-cores also at
    threads=<all cores> (the default until 2026-12-05);
  - joblib:     hydra.launcher.n_jobs=2, and actstudy gives each job threads = cores // 2.
The two sweeps run one after the other in this process's children; on a machine others share, the ratio
moves with their load: quote it with the load average this script prints.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Runs of several seconds each: a parallel launcher pays a fixed start-up (each worker imports torch),
# which runs of a second or two cannot repay.
RUNS = ["model=lstm,gru", "model.activation.candidate=tanh,relu,elu", "seed=0,1", "task=adding",
        "model.hidden_size=64", "task.seq_len=50", "task.train_size=2000", "task.val_size=500",
        "task.test_size=500", "train.probe_size=64"]


def timed_sweep(extra: list[str], sweep_dir: Path, epochs: int) -> float:
    command = [sys.executable, "-m", "actstudy", "sweep", *RUNS, f"train.epochs={epochs}",
               f"hydra.sweep.dir={sweep_dir}", *extra]
    tick = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - tick
    if done.returncode != 0:
        sys.exit(f"sweep failed ({' '.join(extra) or 'sequential'}):\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # 20 epochs: runs of ~14 s, the length of a study's runs; at 10 (~7 s) the workers' torch import weighs more.
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--keep", type=Path, help="write the sweeps here instead of a temporary folder")
    parser.add_argument("--all-cores", "--default-threads", dest="all_cores", action="store_true",
                        help="also time the sequential sweep at threads=<all cores>, the default until 2026-12-05 "
                             "(slow when others share the cores)")
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    top = args.keep or Path(tempfile.mkdtemp(prefix="actstudy-bench-"))
    print(f"12-run sweep, {args.epochs} epochs each, {cores} cores; every run sets torch.set_num_threads "
          f"and torch.set_flush_denormal(True); load average before: {os.getloadavg()[0]:.2f}")
    single = timed_sweep(["threads=1"], top / "sequential_1", args.epochs)
    parallel = timed_sweep(["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], top / "joblib", args.epochs)
    rows = [("basic (sequential)", f"1 x 1", single), ("joblib", f"2 x {max(1, cores // 2)}", parallel)]
    if args.all_cores:
        rows.insert(0, ("basic (sequential, every core)", f"1 x {cores}",
                        timed_sweep([f"threads={cores}"], top / "sequential", args.epochs)))
    print("| launcher | workers x threads | wall time (s) | joblib speed-up |\n|---|---|---|---|")
    for name, shape, seconds in rows:
        print(f"| {name} | {shape} | {seconds:.1f} | {seconds / parallel:.2f}x |")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
