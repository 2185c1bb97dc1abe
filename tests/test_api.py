"""The Python API: a finished run back in a notebook, and every run of a sweep as one frame."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import actstudy
from conftest import TINY


def test_importing_actstudy_stays_light():
    code = "import sys, actstudy; print(sorted(m for m in ('torch', 'pandas', 'hydra') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_load_run_gives_config_metrics_summary_and_the_trained_model(cli, tmp_path):
    run_dir = tmp_path / "run"
    assert cli("run", *TINY, f"hydra.run.dir={run_dir}").exit_code == 0
    run = actstudy.load_run(run_dir)
    assert run.status == "completed" and run.config["model"]["hidden_size"] == 8
    assert list(run.metrics["epoch"]) == [1, 2]
    assert set(run.grad_by_step.columns) == {"epoch", "t", "grad_norm"}
    # the ready model reproduces the recorded test numbers on the run's own test split
    task = run.task()
    x, y = task.splits["test"]
    with torch.no_grad():
        loss = float(task.loss(run.model(x), y, None))
    assert loss == pytest.approx(run.summary["test"]["loss"], rel=1e-5)
    final = run.final_model()
    same = all(torch.equal(a, b) for a, b in zip(final.state_dict().values(), run.model.state_dict().values()))
    assert same == (run.summary["best_epoch"] == 2)  # model.pt is the best epoch's, last.pt the last one's


def test_load_runs_is_one_tidy_frame_with_the_report_labels(cli, tmp_path):
    sweep = tmp_path / "sweep"
    assert cli("sweep", *TINY, "model=lstm,gru", "seed=0,1", f"hydra.sweep.dir={sweep}").exit_code == 0
    frame = actstudy.load_runs(sweep)
    assert len(frame) == 4
    assert {"run_dir", "configuration", "test_metric", "model.cell", "seed"} <= set(frame.columns)
    by_config = frame.groupby("configuration")["seed"].apply(sorted).to_dict()
    assert by_config == {"gru / sigmoid,tanh,-": [0, 1], "lstm / sigmoid,tanh,tanh": [0, 1]}
    result = cli("report", str(sweep), "--out", str(tmp_path / "rep"))
    assert result.exit_code == 0
    table = (tmp_path / "rep" / "summary.csv").read_text()
    assert all(label in table for label in by_config)


def test_load_run_on_a_folder_that_is_no_run_says_so(tmp_path):
    with pytest.raises(actstudy.RunLoadError, match="not a run directory"):
        actstudy.load_run(tmp_path)
