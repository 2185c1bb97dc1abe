"""A sweep and its report, end to end, as the README's three-line study does it."""

from __future__ import annotations

import pandas as pd

from conftest import TINY, read_run


def test_sweep_of_eight_runs_and_its_report(cli, tmp_path):
    sweep_dir = tmp_path / "sweep"
    result = cli("sweep", *TINY, "model=lstm,gru", "model.activation.candidate=tanh,relu", "task=adding",
                 "seed=0,1", f"hydra.sweep.dir={sweep_dir}")
    assert result.exit_code == 0, result.output
    runs = [d for d in sweep_dir.iterdir() if (d / "summary.json").exists()]
    assert len(runs) == 8
    assert all(read_run(d)[2]["status"] == "completed" for d in runs)

    result = cli("report", str(sweep_dir))
    assert result.exit_code == 0, result.output
    out = sweep_dir / "report"
    table = pd.read_csv(out / "summary.csv")
    assert len(table) == 4
    assert (table.filter(like="seeds").iloc[:, 0] == 2).all()
    assert (out / "summary.md").read_text().count("\n") > 4
    for kind in ("curves", "gap", "grad_by_step", "final"):
        assert (out / f"{kind}_adding.png").stat().st_size > 10_000, kind
