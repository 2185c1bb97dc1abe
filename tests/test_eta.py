"""Time estimates: `sweep --dry-run` prints the wall time it expects; the sweep ETA follows run costs."""

from __future__ import annotations

import re
import time
from pathlib import Path

from actstudy import rundir
from actstudy.sweeps import PlannedRun, SweepPlan, SweepWatcher


def seconds(text: str) -> int:
    h = re.match(r"(\d+)h(\d+)m$", text)
    if h:
        return int(h[1]) * 3600 + int(h[2]) * 60
    m = re.match(r"(\d+)m(\d+)s$", text)
    return int(m[1]) * 60 + int(m[2]) if m else int(text.rstrip("s"))


def test_dry_run_estimates_each_run_and_the_whole_sweep(cli, tmp_path):
    result = cli("sweep", "model.hidden_size=32,256", "task.seq_len=50,400", "train.epochs=10",
                 f"hydra.sweep.dir={tmp_path / 's'}", "--dry-run")
    assert result.exit_code == 0, result.output
    total = seconds(re.search(r"estimated wall time (\S+)", result.output)[1])
    per_run = {(int(re.search(r"hidden_size=(\d+)", line)[1]), int(re.search(r"seq_len=(\d+)", line)[1])):
               seconds(re.search(r"~(\S+)$", line)[1])
               for line in result.output.splitlines() if line.strip().startswith("#")}
    assert len(per_run) == 4
    # longer sequences and wider cells cost more; the total is their sum
    assert per_run[32, 50] < per_run[32, 400] < per_run[256, 400]
    assert per_run[32, 50] < per_run[256, 50] < per_run[256, 400]
    assert abs(total - sum(per_run.values())) <= 4
    assert not (tmp_path / "s").exists()


def finish(run: PlannedRun, wall: float) -> None:
    run.run_dir.mkdir(parents=True)
    rundir.write_json(run.run_dir / rundir.SUMMARY, {"status": rundir.COMPLETED, "run_id": run.run_id,
                                                     "wall_seconds": wall})


def test_the_eta_weighs_the_runs_left_by_their_cost(tmp_path):
    runs = [PlannedRun([], tmp_path / name, name, "new", estimate) for name, estimate in
            [("cheap", 10.0), ("dear", 30.0), ("dearer", 60.0)]]
    lines: list[str] = []
    watcher = SweepWatcher(SweepPlan(tmp_path, runs), lines.append)
    watcher.started = time.time() - 20  # the cheap run took 20 s: twice its estimate
    finish(runs[0], 20)
    watcher.poll()
    eta = seconds(re.search(r"ETA (\S+)", lines[-1])[1])
    assert abs(eta - 2 * (30 + 60)) <= 2  # not 2 × 20 s (the average of the past runs)
    # a sweep started again calibrates from the runs finished before
    runs[0].state = rundir.COMPLETED
    again = SweepPlan(tmp_path, runs)
    assert abs(again.estimated_seconds() - 2 * 90) < 1e-6


def test_without_a_terminal_the_run_says_where_it_writes_then_prints_plain_epoch_lines(tmp_path):
    import subprocess
    import sys

    from conftest import TINY

    run_dir = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "actstudy", "run", *TINY, "train.epochs=3", f"hydra.run.dir={run_dir}"],
                          capture_output=True, text=True, cwd=tmp_path)  # stdout is a pipe, as in `... > log`
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    where = next(i for i, line in enumerate(lines) if line.startswith("run directory:"))
    epochs = [i for i, line in enumerate(lines) if re.search(r"epoch \d+/3", line)]
    assert str(run_dir) in lines[where] and where < epochs[0]
    # the first and last epochs; epoch 2 came less than 30 s after epoch 1, so it has no line
    assert [re.search(r"epoch (\d+)/3", lines[i])[1] for i in epochs] == ["1", "3"]
    assert not any("\x1b[" in line for line in lines)  # plain text, no terminal escapes
