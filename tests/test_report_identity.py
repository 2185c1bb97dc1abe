"""What the report counts as one configuration, and that its vanishing ratio is the one training records.

Through `actstudy report` and the files it writes, over run directories written the way train.py writes them.
"""

from __future__ import annotations

import math

import pandas as pd
import pytest

from actstudy import rundir
from actstudy.probe import vanishing_ratio
from report_fixtures import run_config, write_fake_run

UNDERFLOWED = (0.0, 1e-3, 1e-1, 1.0)  # ‖∂L/∂h_1‖ underflowed to exactly 0 on its way back


@pytest.fixture(scope="module")
def reported(tmp_path_factory):
    from typer.testing import CliRunner

    from actstudy.cli import app

    root = tmp_path_factory.mktemp("identity")
    for device in ("cpu", "cuda"):
        for seed in (0, 1):
            config = run_config(seed=seed)
            config["device"] = device
            write_fake_run(root / f"{device}_s{seed}", config, test_metric=0.4 if device == "cpu" else 0.6)
    # Another configuration whose first-step gradient underflowed; its summary says what train.py would.
    underflowed = write_fake_run(root / "underflowed", run_config(hidden_size=32), grad_profile=UNDERFLOWED)
    summary = rundir.load_summary(underflowed)
    summary["vanishing_ratio"] = vanishing_ratio(UNDERFLOWED)
    rundir.write_json(underflowed / rundir.SUMMARY, summary)

    out = root / "out"
    result = CliRunner().invoke(app, ["report", str(root), "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return underflowed, out, pd.read_csv(out / "summary.csv")


def test_cpu_and_gpu_runs_of_one_configuration_are_two_groups(reported):
    _, _, summary = reported
    by_device = summary[summary["other"].str.endswith("hidden_size=64")].set_index("other")
    assert sorted(by_device.index) == ["device=cpu hidden_size=64", "device=cuda hidden_size=64"]
    # each group holds its own two seeds, with its own numbers: nothing pooled across devices
    assert by_device["n_seeds"].tolist() == [2, 2]
    assert by_device.loc["device=cpu hidden_size=64", "test_metric_mean"] == pytest.approx(0.4)
    assert by_device.loc["device=cuda hidden_size=64", "test_metric_mean"] == pytest.approx(0.6)
    assert len(summary) == 3


def test_report_and_summary_agree_on_the_vanishing_ratio_when_the_first_step_underflowed(reported):
    run_dir, out, summary = reported
    recorded = rundir.load_summary(run_dir)["vanishing_ratio"]
    assert recorded == -math.inf
    row = summary[summary["other"] == "device=cpu hidden_size=32"].iloc[0]
    assert row["vanishing_ratio"] == recorded  # summary.csv keeps -inf, not NaN (a missing value)
    assert row["vanishing_ratio_mean"] == recorded
    markdown = (out / "summary.md").read_text()
    # the row of this configuration in the diagnostics table, where the ratio is
    lines = [line for line in markdown.splitlines() if "hidden_size=32" in line and line.startswith("|")]
    assert any("−∞" in [cell.strip() for cell in line.split("|")] for line in lines)  # the table cell of the ratio
