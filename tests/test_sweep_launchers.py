"""Launchers end to end: joblib splits the cores, submitit runs jobs locally, Slurm gets the right request."""

from __future__ import annotations

import json
import os
import stat

import pytest

from conftest import TINY
from sweep_tools import outcome

NO_THREADS = [o for o in TINY if not o.startswith("threads=")]  # the launcher decides


def summaries(sweep_dir):
    return [json.loads((d / "summary.json").read_text()) for d in sorted(sweep_dir.iterdir())
            if (d / "summary.json").exists()]


def test_joblib_runs_the_sweep_in_two_workers_of_one_thread(cli, tmp_path):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    sweep_dir = tmp_path / "sweep"
    result = cli("sweep", *NO_THREADS, "model=lstm,gru", "seed=0,1", "hydra/launcher=joblib",
                 "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={sweep_dir}")
    assert result.exit_code == 0, result.output
    assert outcome(result.output)["completed"] == 4
    runs = summaries(sweep_dir)
    assert len(runs) == 4 and all(s["status"] == "completed" for s in runs)
    cores = len(os.sched_getaffinity(0))
    assert all(s["threads"] == max(1, cores // 2) for s in runs)  # 2 workers × threads ≤ cores
    assert "4/4 runs done" in result.output


@pytest.mark.slow
def test_submitit_local_runs_a_small_sweep(cli, tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    sweep_dir = tmp_path / "sweep"
    result = cli("sweep", *NO_THREADS, "seed=0,1", "hydra/launcher=submitit_local", "hydra.launcher.cpus_per_task=1",
                 "hydra.launcher.timeout_min=5", f"hydra.sweep.dir={sweep_dir}")
    assert result.exit_code == 0, result.output
    runs = summaries(sweep_dir)
    assert len(runs) == 2 and all(s["status"] == "completed" and s["threads"] == 1 for s in runs)
    # the same command again trains nothing
    again = cli("sweep", *NO_THREADS, "seed=0,1", "hydra/launcher=submitit_local", "hydra.launcher.cpus_per_task=1",
                "hydra.launcher.timeout_min=5", f"hydra.sweep.dir={sweep_dir}")
    assert outcome(again.output)["skipped"] == 2


def test_slurm_gets_the_partition_time_cpus_and_gpus_of_the_config(cli, tmp_path, monkeypatch):
    """No Slurm here: a stand-in `sbatch` keeps the submission script submitit writes, then refuses it."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    bin_dir, kept = tmp_path / "bin", tmp_path / "submitted.sh"
    bin_dir.mkdir()
    sbatch = bin_dir / "sbatch"
    sbatch.write_text(f'#!/bin/sh\ncp "$1" {kept}\necho "sbatch: error: no Slurm here" >&2\nexit 1\n')
    sbatch.chmod(sbatch.stat().st_mode | stat.S_IEXEC)
    srun = bin_dir / "srun"  # submitit only checks that it exists
    srun.write_text("#!/bin/sh\nexit 1\n")
    srun.chmod(srun.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")

    sweep_dir = tmp_path / "sweep"
    result = cli("sweep", *NO_THREADS, "seed=0,1,2", "hydra/launcher=submitit_slurm",
                 "hydra.launcher.partition=gpu", "hydra.launcher.timeout_min=90", "hydra.launcher.cpus_per_task=4",
                 "hydra.launcher.gpus_per_node=1", "hydra.launcher.max_num_timeout=3",
                 f"hydra.sweep.dir={sweep_dir}")
    assert result.exit_code == 1  # nothing ran: the launcher's failure is reported, not a traceback
    assert "launcher failed" in result.output and outcome(result.output)["unfinished"] == 3
    script = kept.read_text()
    for line in ["#SBATCH --partition=gpu", "#SBATCH --time=90", "#SBATCH --cpus-per-task=4",
                 "#SBATCH --gpus-per-node=1", "#SBATCH --array=0-2"]:
        assert line in script, line
