"""A one-node Slurm cluster started by the tests: a sweep end to end, requeue, time limit, scancel.

Run with `python -m pytest -m cluster` (as root: the fixture installs slurm-wlm and munge when missing).
"""

from __future__ import annotations

import json

import pytest

from cluster_fixtures import slurm  # noqa: F401  (the fixture)
from cluster_tools import (LONG, LONG_EPOCHS, SMALL, assert_resumed_without_retraining, assert_same_metrics,
                           assert_same_reports, assert_same_run, finish, recipe, recipe_sweep_overrides, run_bash,
                           run_dirs, sweep_process, wait_for, with_places)
from sweep_tools import outcome

pytestmark = pytest.mark.cluster

ON_SLURM = ["hydra/launcher=submitit_slurm", "hydra.launcher.cpus_per_task=1", "hydra.launcher.timeout_min=10"]
# The time-limit test's job has a 1-minute limit and asks for Slurm's warning signal 10 s before it.
# slurmctld checks limits every 30 s and sends the warning at the first check that is less than 30 s
# before the warning time, so it comes 20-50 s into each start of the job: after submitit has set up its
# handler. The run must outlast 50 s on the fastest machine CI may get, or it can end before any warning:
# 800 epochs (~60 s on an idle AMD EPYC core) took 26 s on an Intel Xeon and failed CI that way. 2,400
# epochs train ~80 s on that Xeon (~3 min on the EPYC, each start of the job moving it >= 15 s on).
TIMED = [*SMALL, "task.train_size=256", "train.epochs=2400"]
TIMED_EPOCHS = 2400


def reference(cli, tmp_path_factory, overrides: list[str]):
    """The run trained here, in one go: what every interrupted copy must equal."""
    top = tmp_path_factory.mktemp("reference") / "sweep"
    result = cli("sweep", *overrides, "seed=0", "threads=1", f"hydra.sweep.dir={top}")
    assert result.exit_code == 0, result.output
    return run_dirs(top)[0]


@pytest.fixture(scope="module")
def long_reference(tmp_path_factory):
    from typer.testing import CliRunner

    from actstudy.cli import app

    return reference(lambda *a: CliRunner().invoke(app, list(a)), tmp_path_factory, LONG)


def test_the_readme_recipe_runs_a_sweep_on_slurm_equal_to_the_local_one(cli, tmp_path):
    block = recipe("slurm")
    cluster, on_slurm, local = tmp_path / "cluster", tmp_path / "on_slurm", tmp_path / "local"
    try:
        done = run_bash(with_places(block, cluster, on_slurm))
    finally:
        run_bash(f"bash tests/cluster/slurm.sh stop {cluster}")  # a no-op when the recipe stopped it
    assert done.returncode == 0, done.stdout + done.stderr
    assert outcome(done.stdout)["completed"] == 4
    overrides = recipe_sweep_overrides(block)
    cpus = int(next(w.split("=")[1] for w in block.split() if w.startswith("hydra.launcher.cpus_per_task=")))
    summaries = [json.loads((d / "summary.json").read_text()) for d in run_dirs(on_slurm)]
    assert [s["threads"] for s in summaries] == [cpus] * 4  # threads follow cpus_per_task
    assert all(s["status"] == "completed" for s in summaries)

    assert cli("sweep", *overrides, f"threads={cpus}", f"hydra.sweep.dir={local}").exit_code == 0
    assert cli("report", str(local)).exit_code == 0
    assert_same_metrics(local, on_slurm)
    assert_same_reports(local / "report", on_slurm / "report")


def test_a_requeued_job_resumes_from_its_checkpoint(slurm, long_reference, tmp_path):  # noqa: F811
    sweep_dir = tmp_path / "sweep"
    with sweep_process([*LONG, "seed=0", *ON_SLURM, "hydra.launcher.cpus_per_task=2",
                        f"hydra.sweep.dir={sweep_dir}"]) as proc:
        wait_for(lambda: list(sweep_dir.glob("*/checkpoint.pt")), 300, "the job's first checkpoint")
        [job] = slurm.jobs()
        slurm.run("scontrol", "requeue", job)  # what a preempting scheduler does
        output = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, output
    assert outcome(output)["completed"] == 1
    run = run_dirs(sweep_dir)[0]
    assert json.loads((run / "summary.json").read_text())["threads"] == 2  # its cpus_per_task
    assert assert_resumed_without_retraining(run, LONG_EPOCHS) >= 1
    assert_same_metrics(long_reference.parent, sweep_dir)  # the reference ran on 1 thread: same numbers
    slurm.wait_empty()


def test_a_job_at_its_time_limit_is_requeued_and_resumes(slurm, cli, tmp_path_factory, tmp_path):  # noqa: F811
    """timeout_min=1, signal_delay_s=10: Slurm warns the job 20-50 s after each start; submitit requeues it
    (up to max_num_timeout times) and each new start resumes from the checkpoint."""
    sweep_dir = tmp_path / "sweep"
    with sweep_process([*TIMED, "seed=0", "hydra/launcher=submitit_slurm", "hydra.launcher.cpus_per_task=1",
                        "hydra.launcher.timeout_min=1", "hydra.launcher.signal_delay_s=10",
                        "hydra.launcher.max_num_timeout=30", f"hydra.sweep.dir={sweep_dir}"]) as proc:
        uninterrupted = reference(cli, tmp_path_factory, TIMED)  # on the other core, while the job runs
        output = proc.communicate(timeout=900)[0]
    assert proc.returncode == 0, output
    assert outcome(output)["completed"] == 1
    logs = "".join(p.read_text() for p in sweep_dir.glob(".submitit/*/*.err"))
    assert "this job is timed-out" in logs, "no time limit was reached: the test would prove nothing"
    run = run_dirs(sweep_dir)[0]
    assert assert_resumed_without_retraining(run, TIMED_EPOCHS) >= 1
    assert_same_metrics(uninterrupted.parent, sweep_dir)
    slurm.wait_empty()


def test_a_cancelled_job_leaves_its_run_unfinished_and_the_same_command_completes_it(slurm, long_reference, tmp_path):  # noqa: F811,E501
    sweep_dir = tmp_path / "sweep"
    args = [*LONG, "seed=0,1", *ON_SLURM, f"hydra.sweep.dir={sweep_dir}"]
    with sweep_process(args) as proc:
        seed1 = wait_for(lambda: [p.parent for p in sweep_dir.glob("*-s1-*/checkpoint.pt")], 300,
                         "seed 1's first checkpoint")[0]
        slurm.run("scancel", next(j for j in slurm.jobs() if j.endswith("_1")))  # the array task of seed 1
        output = proc.communicate(timeout=300)[0]
    assert proc.returncode == 1, output
    assert outcome(output)["unfinished"] == 1 and outcome(output)["completed"] == 1
    assert json.loads((seed1 / "summary.json").read_text())["status"] == "running"
    slurm.wait_empty()

    code, output = finish(args, timeout=300)  # the same command: seed 0 is skipped, seed 1 resumes
    assert code == 0, output
    assert outcome(output)["skipped"] == 1 and outcome(output)["completed"] == 1
    assert assert_resumed_without_retraining(seed1, LONG_EPOCHS) >= 1
    assert [d.name for d in run_dirs(sweep_dir)] == sorted([long_reference.name, seed1.name])
    assert_same_run(long_reference, sweep_dir / long_reference.name)
