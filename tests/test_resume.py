"""Resume: kill -9 a sweep or a run at random moments, run the same command again, get the same numbers."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import TINY
from sweep_tools import outcome

ROOT = Path(__file__).resolve().parent.parent
# Long enough (a few seconds per run) that a kill lands inside training, short enough for the suite.
LONGER = [*TINY, "train.epochs=6", "task.train_size=256"]
SWEEP = ["sweep", *LONGER, "model=lstm,gru", "seed=0,1"]


def start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "actstudy", *args], cwd=ROOT, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def kill_during(args: list[str], top: Path, extra: float) -> bool:
    """Start the command; once its first checkpoint appears under `top`, wait `extra` seconds more and
    kill -9 it with everything it started. True when the kill landed before the command ended."""
    proc = start(args)
    deadline = time.time() + 120
    while proc.poll() is None and time.time() < deadline and not any(top.glob("*/checkpoint.pt")):
        time.sleep(0.02)
    try:
        proc.wait(timeout=extra)
        return False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return True


def run_dirs(top: Path) -> list[Path]:
    return sorted(d for d in top.iterdir() if d.is_dir() and not d.name.startswith("."))


def assert_same_results(a: Path, b: Path) -> None:
    """Two run directories of one configuration hold the same numbers (all but wall-clock seconds)."""
    ma, mb = (pd.read_csv(d / "metrics.csv").drop(columns="seconds") for d in (a, b))
    pd.testing.assert_frame_equal(ma, mb, check_exact=True)
    for name in ("grad_by_step.csv", "activation_stats.csv"):
        assert (a / name).read_text() == (b / name).read_text(), name
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (a, b))
    for key in ("status", "test", "test_last", "best_epoch", "epochs_completed", "run_id"):
        assert sa[key] == sb[key], key


def kill_and_finish(cli, args: list[str], top: Path, delays: list[float]) -> tuple[str, int]:
    """Kill the command at each moment (checking that a report can always be made), then finish it."""
    landed = 0
    for delay in delays:
        landed += kill_during(args, top, delay)
        # a half-written sweep never breaks the report: no exception; 0, or 2 when nothing is complete yet
        result = cli("report", str(top), "--out", str(top.parent / "report_check"))
        assert result.exit_code in (0, 2), result.output
    assert landed, "no kill landed before the command ended: the test would prove nothing"
    before = sum((json.loads((d / "summary.json").read_text()).get("status") == "completed")
                 for d in run_dirs(top) if (d / "summary.json").exists())
    final = cli(*args)
    assert final.exit_code == 0, final.output
    return final.output, before


def check_killed_sweep(cli, tmp_path: Path, delays: list[float]) -> None:
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    assert cli(*SWEEP, f"hydra.sweep.dir={reference}").exit_code == 0
    output, done_before = kill_and_finish(cli, [*SWEEP, f"hydra.sweep.dir={killed}"], killed, delays)
    counts = outcome(output)
    assert counts["skipped"] == done_before and counts["completed"] == 4 - done_before  # only unfinished ones trained
    assert [d.name for d in run_dirs(killed)] == [d.name for d in run_dirs(reference)]  # none twice, none lost
    for a, b in zip(run_dirs(reference), run_dirs(killed)):
        assert_same_results(a, b)
        assert not (b / "checkpoint.pt").exists()


def test_a_sweep_killed_mid_way_resumes_to_the_same_numbers(cli, tmp_path):
    check_killed_sweep(cli, tmp_path, delays=[1.5])


@pytest.mark.slow
def test_a_sweep_killed_at_random_moments_resumes_to_the_same_numbers(cli, tmp_path):
    rng = random.Random(4)
    check_killed_sweep(cli, tmp_path, delays=[rng.uniform(0.0, 3.0) for _ in range(5)])


def test_a_killed_run_resumes_from_its_checkpoint(cli, tmp_path):
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    args = ["run", *LONGER, "train.epochs=12", "-q"]
    assert cli(*args, f"hydra.run.dir={reference}").exit_code == 0
    assert kill_during([*args, f"hydra.run.dir={killed}"], tmp_path, 0.0)
    epochs_done = len(pd.read_csv(killed / "metrics.csv"))
    assert 0 < epochs_done < 12  # killed after a checkpoint, before the end
    result = cli(*args, f"hydra.run.dir={killed}")
    assert result.exit_code == 0, result.output
    assert "resuming" in result.output
    assert "resumed from the checkpoint" in (killed / "actstudy.log").read_text()
    assert_same_results(reference, killed)


def test_the_same_run_again_trains_nothing(cli, tmp_path):
    run_dir = tmp_path / "run"
    assert cli("run", *TINY, f"hydra.run.dir={run_dir}", "-q").exit_code == 0
    before = {p.name: p.stat().st_mtime_ns for p in run_dir.iterdir() if p.is_file()}
    result = cli("run", *TINY, f"hydra.run.dir={run_dir}", "-q")
    assert result.exit_code == 0 and "already done" in result.output
    assert {p.name: p.stat().st_mtime_ns for p in run_dir.iterdir() if p.is_file()} == before


def test_a_run_directory_of_another_configuration_is_refused(cli, tmp_path):
    run_dir = tmp_path / "run"
    assert cli("run", *TINY, f"hydra.run.dir={run_dir}", "-q").exit_code == 0
    metrics = (run_dir / "metrics.csv").read_text()
    result = cli("run", *TINY, "seed=5", f"hydra.run.dir={run_dir}", "-q")
    assert result.exit_code == 2 and "another configuration" in result.output
    assert (run_dir / "metrics.csv").read_text() == metrics


def test_a_run_another_process_is_training_is_left_to_it(cli, tmp_path):
    from actstudy.rundir import claim as claim_run_dir

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    held = claim_run_dir(run_dir)  # as a live worker of an earlier, killed sweep would hold it
    assert held is not None and claim_run_dir(run_dir) is None
    result = cli("run", *TINY, f"hydra.run.dir={run_dir}", "-q")
    assert result.exit_code == 1 and "locked" in result.output and "resuming" not in result.output
    assert "another process is training the run" in result.output
    assert not (run_dir / "metrics.csv").exists()
    held.close()  # the holder ends (a kill -9 drops the lock the same way): now it trains
    result = cli("run", *TINY, f"hydra.run.dir={run_dir}", "-q")
    assert result.exit_code == 0 and "completed" in result.output
