"""How much slower the default experiment runs beside busy cores, per thread setting.

Runs `actstudy run` (the default experiment, shortened to --epochs epochs) in a fresh directory for each
setting, first on the machine as it is ("idle": nothing of ours besides it), then beside one and beside
two busy processes (each a pure-Python busy loop that takes one core, started before and stopped after
the runs it flanks). Times are the runs' own training time (summary.json's wall_seconds), medians over
--reps runs; every ratio is to the first setting's first row (1 thread on the idle machine by default).

Settings:
    threads=1                one thread
    default                  no `threads`: what actstudy picks (actstudy/runtime.py): one thread (until
                             2026-12-05 every usable core with sleeping waits, now "every core, sleeping")
    every core, sleeping     threads=<usable cores>, sleeping waits: what a run with threads=N gets
    every core, short spin   the same with OpenMP threads spinning ~0.1 ms before they sleep
                             (GOMP_SPINCOUNT=10000; an explicit spin count wins over the wait policy)
    every core, spinning     the same with OpenMP threads spinning ~3 ms before they sleep (libgomp's own
                             default, GOMP_SPINCOUNT=300000): the setting actstudy had first

    python benchmarks/shared_cpu.py [OVERRIDE ...] [--epochs 4] [--reps 3] [--give-up 120] [--beside 0 1 2]
                                    [--settings threads=1 default ...]

--beside picks the rows (how many busy processes), --settings the columns (a name's last word is
enough: threads=1, default, sleeping, spin, spinning); OVERRIDE arguments (e.g. model.hidden_size=256) go to every run,
to see how the choice of threads depends on the model's size.

A run that takes longer than --give-up seconds is stopped and shown as "> N s" (the spinning setting
beside busy cores can take 25x or more).

The header gives the CPU model, the cores and the load average before the runs: other users of a
shared machine load it too, and the "idle" row is only as idle as they leave it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUSY_SECONDS = 1800  # a busy loop ends on its own after this, should the benchmark die without stopping it
SETTINGS = {
    "threads=1": (["threads=1"], {}),
    "default": ([], {}),
    "every core, sleeping": ([f"threads={len(os.sched_getaffinity(0))}"], {}),
    "every core, short spin": ([f"threads={len(os.sched_getaffinity(0))}"], {"GOMP_SPINCOUNT": "10000"}),
    "every core, spinning": ([f"threads={len(os.sched_getaffinity(0))}"], {"GOMP_SPINCOUNT": "300000"}),
}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def start_busy(count: int) -> list[subprocess.Popen]:
    loop = f"import time\nend = time.time() + {BUSY_SECONDS}\nwhile time.time() < end:\n    pass\n"
    return [subprocess.Popen([sys.executable, "-c", loop]) for _ in range(count)]


def stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        process.wait()


def run_once(overrides: list[str], env_extra: dict[str, str], epochs: int, give_up: float) -> float:
    """Training seconds of one default run (shortened to `epochs`) with `overrides`, in a fresh directory;
    infinity when it has not finished after `give_up` seconds."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "KMP_BLOCKTIME",
                                                            "GOMP_SPINCOUNT")}
    env.update(env_extra)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        args = [sys.executable, "-m", "actstudy", "run", f"train.epochs={epochs}", *overrides, "-q",
                f"hydra.run.dir={run_dir}"]
        try:
            subprocess.run(args, cwd=tmp, env=env, check=True, capture_output=True, text=True, timeout=give_up)
        except subprocess.TimeoutExpired:
            return float("inf")
        return float(json.loads((run_dir / "summary.json").read_text())["wall_seconds"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--give-up", type=float, default=120.0, help="seconds after which a run is stopped")
    parser.add_argument("--beside", type=int, nargs="+", choices=(0, 1, 2), default=[0, 1, 2],
                        help="busy processes beside the runs, one row each")
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), metavar="NAME",
                        help="columns: " + "; ".join(SETTINGS))
    parser.add_argument("overrides", nargs="*", metavar="OVERRIDE", help="config overrides for every run")
    args = parser.parse_args()
    settings = {}
    for wanted in args.settings:
        found = [name for name in SETTINGS if wanted in (name, name.split()[-1])]
        if len(found) != 1:
            hint = " (a config override goes before --settings, or after --)" if "=" in wanted else ""
            parser.error(f"unknown setting {wanted!r}{hint}; choose from: " + "; ".join(SETTINGS))
        settings[found[0]] = SETTINGS[found[0]]
    print(f"{cpu_model()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} before the runs; "
          f"default experiment (adding problem, LSTM{', ' + ' '.join(args.overrides) if args.overrides else ''}) "
          f"for {args.epochs} epochs; median of {args.reps} runs; ratios to the first column's first row\n")
    print("| beside | " + " | ".join(settings) + " |")
    print("|---|" + "---|" * len(settings))
    reference = None
    for busy in args.beside:
        busy_processes = start_busy(busy)
        try:
            time.sleep(0.5 if busy else 0)  # let the busy loops get going
            cells = []
            for name, (overrides, env_extra) in settings.items():
                seconds = statistics.median(run_once([*overrides, *args.overrides], env_extra, args.epochs,
                                                     args.give_up)
                                            for _ in range(args.reps))
                if reference is None:
                    reference = seconds
                if seconds == float("inf"):
                    cells.append(f"> {args.give_up:.0f} s (> {args.give_up / reference:.0f}x)")
                else:
                    cells.append(f"{seconds:.1f} s ({seconds / reference:.2f}x)")
        finally:
            stop(busy_processes)
        label = "nothing (idle)" if busy == 0 else f"{busy} busy core{'s' if busy > 1 else ''}"
        print(f"| {label} | " + " | ".join(cells) + " |", flush=True)
    print(f"\nload average {os.getloadavg()[0]:.1f} after the runs")


if __name__ == "__main__":
    main()
