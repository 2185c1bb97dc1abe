"""A local Ray cluster started by the tests: a sweep end to end, and a worker killed mid-run.

Run with `python -m pytest -m cluster` (needs `pip install 'actstudy[ray]'`).
"""

from __future__ import annotations

import json
import os
import signal

import pytest

from cluster_fixtures import ray_cluster  # noqa: F401  (the fixture)
from cluster_tools import (LONG, LONG_EPOCHS, assert_resumed_without_retraining, assert_same_metrics,
                           assert_same_reports, recipe, recipe_sweep_overrides, run_bash, run_dirs, sweep_process,
                           wait_for, with_places)
from sweep_tools import outcome

pytestmark = pytest.mark.cluster


def test_the_readme_recipe_runs_a_sweep_on_ray_equal_to_the_local_one(cli, tmp_path):
    pytest.importorskip("hydra_plugins.hydra_ray_launcher", reason="pip install 'actstudy[ray]'")
    block = recipe("ray")
    cluster, on_ray, local = tmp_path / "cluster", tmp_path / "on_ray", tmp_path / "local"
    try:
        done = run_bash(with_places(block, cluster, on_ray))
    finally:
        run_bash(f"bash tests/cluster/ray.sh stop {cluster}")  # a no-op when the recipe stopped it
    assert done.returncode == 0, done.stdout + done.stderr
    assert outcome(done.stdout)["completed"] == 4
    cpus = int(next(w.split("=")[1] for w in block.split() if w.startswith("+hydra.launcher.ray.remote.num_cpus=")))
    summaries = [json.loads((d / "summary.json").read_text()) for d in run_dirs(on_ray)]
    assert [s["threads"] for s in summaries] == [cpus] * 4  # threads follow num_cpus
    assert all(s["status"] == "completed" for s in summaries)

    overrides = recipe_sweep_overrides(block)
    assert cli("sweep", *overrides, f"threads={cpus}", f"hydra.sweep.dir={local}").exit_code == 0
    assert cli("report", str(local)).exit_code == 0
    assert_same_metrics(local, on_ray)
    assert_same_reports(local / "report", on_ray / "report")


def test_a_killed_ray_worker_is_retried_and_its_run_resumes(ray_cluster, cli, tmp_path):  # noqa: F811
    reference, sweep_dir = tmp_path / "reference", tmp_path / "sweep"
    assert cli("sweep", *LONG, "seed=0,1", "threads=1", f"hydra.sweep.dir={reference}").exit_code == 0
    on_ray = [*LONG, "seed=0,1", "hydra/launcher=ray", f"hydra.launcher.ray.init.address={ray_cluster.address}",
              "+hydra.launcher.ray.remote.num_cpus=2", f"hydra.sweep.dir={sweep_dir}"]
    with sweep_process(on_ray) as proc:
        wait_for(lambda: list(sweep_dir.glob("*/checkpoint.pt")), 300, "a run's first checkpoint")
        [worker] = wait_for(ray_cluster.workers_running, 30, "the worker running it")
        os.kill(worker, signal.SIGKILL)
        output = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, output
    assert outcome(output)["completed"] == 2
    runs = run_dirs(sweep_dir)
    assert sorted(json.loads((d / "summary.json").read_text())["threads"] for d in runs) == [2, 2]  # num_cpus
    resumes = sum(assert_resumed_without_retraining(d, LONG_EPOCHS) for d in runs)
    assert resumes == 1  # the killed run, once; the other never restarted
    assert_same_metrics(reference, sweep_dir)  # none lost, none twice, the same numbers
