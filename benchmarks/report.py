"""How long `actstudy report` takes over 1,000 run directories (the README's figure; issue 5 asks < 10 s).

Writes synthetic run directories shaped like train.py's (tests/report_fixtures.py): 2 tasks × 2 cells ×
5 gate × 5 candidate activations = 100 configurations × 10 seeds, 30 epochs each, gradient profiles at
T=100 probed at 7 epochs, activation statistics. Then times the report in this process, as the CLI runs it
(everything: reading, statistics, plots as PNG and SVG, index.html), and prints the time by stage.

    python benchmarks/report.py [--runs-root DIR] [--keep]

The report is single-threaded Python and matplotlib; torch is not imported. The figure depends on how busy the
machine is: quote it with the load average printed beside it.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from report_fixtures import run_config, write_fake_run  # noqa: E402

GATES = ("sigmoid", "hard_sigmoid", "relu", "leaky_relu", "softsign")
CANDIDATES = ("tanh", "relu", "leaky_relu", "softsign", "identity")


def make_runs(root: Path, seeds: int = 10) -> int:
    rng = np.random.default_rng(0)
    count = 0
    epochs, T = 30, 100
    for task in ("adding", "copy"):
        for cell in ("lstm", "gru"):
            for gate in GATES:
                for candidate in CANDIDATES:
                    acts = (gate, candidate, "tanh")
                    for seed in range(seeds):
                        train = 0.2 * 0.9 ** np.arange(epochs) * (1 + 0.03 * rng.normal(size=epochs))
                        slope = 0.02 * (1 + rng.random())
                        cfg = run_config(task=task, seq_len=T, cell=cell, activations=acts, seed=seed)
                        run_dir = root / task / f"{cell}_{gate}_{candidate}" / f"seed{seed}"
                        write_fake_run(run_dir, cfg, train_loss=list(train), gap_loss=0.01 * rng.random(),
                                       train_metric=list(np.linspace(0.1, 0.9, epochs)),
                                       test_metric=0.7 + 0.05 * rng.normal(), test_loss=float(train[-1]),
                                       grad_profile=list(10.0 ** (-slope * (T - np.arange(1, T + 1)))),
                                       activation_stats={"gate_saturated_fraction": rng.random() * 0.3,
                                                         "candidate_dead_fraction": rng.random() * 0.1,
                                                         "mean_abs_cell_state": 1 + rng.random()},
                                       overrides=[f"model={cell}", f"task={task}", f"seed={seed}"])
                        count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs-root", type=Path, default=None, help="where to write the fake runs (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the fake runs and the report")
    args = parser.parse_args()
    root = args.runs_root or Path(tempfile.mkdtemp(prefix="actstudy_bench_"))
    tick = time.perf_counter()
    n = make_runs(root)
    print(f"wrote {n} synthetic run directories in {time.perf_counter() - tick:.1f} s under {root}")

    from rich.console import Console

    import actstudy.report as report
    from actstudy.report.plots import plot_workers

    # time each stage by wrapping the stage functions the report calls
    stages: dict[str, float] = {}

    def timed(name, fn):
        def wrapper(*a, **k):
            start = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                stages[name] = stages.get(name, 0.0) + time.perf_counter() - start
        return wrapper

    for name in ("find_run_dirs", "load_runs", "statistics_frame", "comparison_frame", "write_plots",
                 "write_markdown"):
        setattr(report, name, timed(name, getattr(report, name)))
    import resource

    def cpu() -> float:  # this process and its finished children (the plot workers)
        own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime

    cpu_start, start = cpu(), time.perf_counter()
    result = report.write_report([root], root / "report", Console(file=io.StringIO(), width=120))
    total = time.perf_counter() - start
    cpu_total = cpu() - cpu_start
    load = os.getloadavg()
    print(f"actstudy report over {n} runs ({len(result.summary)} configurations, {len(result.files)} files): "
          f"{total:.2f} s  (load average {load[0]:.2f} on {os.cpu_count()} cores; 1 thread, torch not imported)")
    for name, seconds in stages.items():
        print(f"  {name:18s} {seconds:6.2f} s")
    print(f"  {'other (html, tex)':18s} {total - sum(stages.values()):6.2f} s")
    print(f"CPU time, all processes: {cpu_total:.2f} s (wall time on a busy machine overstates what a quiet one takes; "
          f"plots are drawn in up to {plot_workers(99)} processes)")
    print("PASS: under 10 s" if total < 10 else "FAIL: 10 s or more")
    if not args.keep:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
