"""The report's statistics, significance marks, page and LaTeX table, through the CLI a user types."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest

from report_fixtures import run_config, write_fake_run

CLASSIC = ("sigmoid", "tanh", "tanh")
SHIFTED = ("sigmoid", "relu", "tanh")  # its seeds score 0.3 higher: a real difference
SAME = ("sigmoid", "leaky_relu", "tanh")  # drawn from the reference's distribution: no difference


@pytest.fixture(scope="module")
def reported(tmp_path_factory):
    from typer.testing import CliRunner

    from actstudy.cli import app

    root = tmp_path_factory.mktemp("stats")
    rng = np.random.default_rng(3)
    for acts, centre in ((CLASSIC, 0.5), (SHIFTED, 0.8), (SAME, 0.5)):
        for seed in range(6):
            overfit = acts == SHIFTED
            # lowest at epoch 3, then above it by more than the noise for the last three epochs
            val = [0.5, 0.3, 0.2, 0.21, 0.2, 0.45, 0.6, 0.7] if overfit else None
            train = [0.20, 0.15, 0.10, 0.06, 0.04, 0.03, 0.02, 0.015] if overfit else (0.20, 0.15, 0.10, 0.06, 0.04)
            write_fake_run(root / f"{acts[1]}_{seed}", run_config(seq_len=100, activations=acts, seed=seed),
                           test_metric=centre + rng.normal(0, 0.02), val_loss=val, train_loss=train,
                           activation_stats={"gate_saturated_fraction_f": 0.25, "candidate_dead_fraction": 0.5,
                                             "mean_abs_cell_state": 2.0},
                           overrides=["task.seq_len=100", f"model.activation.candidate={acts[1]}", f"seed={seed}"],
                           grad_profile=[10.0 ** (0.5 * t) for t in range(1, 5)])
    out = root / "out"
    result = CliRunner().invoke(app, ["report", str(root), "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    summary = pd.read_csv(out / "summary.csv").set_index("candidate")
    return root, out, summary


def test_a_known_difference_is_significant_and_none_is_not(reported):
    _, _, summary = reported
    assert bool(summary.loc["relu", "significant"]) and summary.loc["relu", "p_value_adjusted"] < 1e-3
    assert summary.loc["relu", "diff_vs_reference"] == pytest.approx(0.3, abs=0.05)
    assert not bool(summary.loc["leaky_relu", "significant"]) and summary.loc["leaky_relu", "p_value_adjusted"] > 0.05
    assert summary.loc["relu", "test"].startswith("paired t-test")  # the same six seeds on both sides
    assert math.isnan(summary.loc["tanh", "p_value"])  # the reference is not tested against itself
    # Holm over the report: two comparisons, each with its metric p and its divergence p (no run solves
    # anything here, so no learning-speed p): m = 4, and the smallest p is multiplied by 4
    assert summary.loc["relu", "p_value_adjusted"] == pytest.approx(4 * summary.loc["relu", "p_value"])


def test_spread_overfitting_vanishing_and_activation_columns(reported):
    _, _, summary = reported
    row = summary.loc["relu"]
    assert row["n_seeds"] == 6 and row["test_metric_ci95"] > 0
    assert row["overfit_runs"] == 6 and row["onset_epoch_mean"] == 3
    assert summary.loc["tanh", "overfit_runs"] == 0
    assert row["decay_per_step_mean"] == pytest.approx(0.5)
    assert row["gap_loss_at_best_mean"] == pytest.approx(0.2 - 0.10)
    assert row["gate_saturated_fraction_f"] == 0.25 and row["mean_abs_cell_state"] == 2.0
    assert row["candidate_dead_change"] == pytest.approx(0.25)  # 0.5 at the last probe, 0.25 at epoch 0
    assert row["best_val_metric_mean"] == pytest.approx(0.75)  # train metric 0.8 at the last epoch − 0.05


def test_markdown_and_latex_mark_the_significant_row(reported):
    _, out, _ = reported
    markdown = (out / "summary.md").read_text()
    relu_line = next(line for line in markdown.splitlines() if "sigmoid,relu,tanh" in line)
    assert " *" in relu_line and "paired t-test" in markdown
    tex = (out / "summary.tex").read_text()
    assert r"\begin{tabular}" in tex and tex.count(r"$^{*}$") == 1


def test_index_html_is_one_self_contained_page(reported):
    root, out, _ = reported
    page = (out / "index.html").read_text()
    pngs = sorted(out.glob("*.png"))
    assert len(pngs) >= 6 and all(p.with_suffix(".svg").is_file() for p in pngs)
    assert page.count('src="data:image/png;base64,') == len(pngs)
    assert not re.search(r'(src|href)="(?!data:|#)', page)  # nothing loaded from elsewhere
    assert "Arjovsky" in page  # adding T=100 with an LSTM has a published result
    assert "python -m actstudy run task.seq_len=100 model.activation.candidate=relu seed=&lt;0|1|2|3|4|5&gt;" in page
    assert "<table>" in page and "paired t-test" in page


def test_mann_whitney_is_chosen_from_the_cli_and_bad_tests_are_refused(reported, cli, tmp_path):
    root, _, _ = reported
    result = cli("report", str(root), "--out", str(tmp_path / "mw"), "--test", "mannwhitney")
    assert result.exit_code == 0, result.output
    summary = pd.read_csv(tmp_path / "mw" / "summary.csv").set_index("candidate")
    # paired seeds: Wilcoxon signed-rank; six differences of one sign give the smallest exact p, 2/2^6,
    # which Holm over four p-values takes to 0.125: not significant at six seeds
    assert summary.loc["relu", "test"].startswith("Wilcoxon signed-rank")
    assert summary.loc["relu", "p_value"] == pytest.approx(2 / 64)
    assert summary.loc["relu", "p_value_adjusted"] == pytest.approx(4 * 2 / 64) and not bool(summary.loc["relu", "significant"])
    result = cli("report", str(root), "--out", str(tmp_path / "bad"), "--test", "ttest")
    assert result.exit_code == 2 and "choose one of: welch, mannwhitney" in result.output


def test_many_configurations_share_one_legend(cli, tmp_path):
    candidates = ["tanh", "relu", "leaky_relu", "softsign", "identity", "hard_tanh", "elu"]
    for gate in ("sigmoid", "hard_sigmoid"):
        for candidate in candidates:
            write_fake_run(tmp_path / "runs" / f"{gate}_{candidate}",
                           run_config(activations=(gate, candidate, "tanh"), seed=0))
    result = cli("report", str(tmp_path / "runs"), "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "legend_adding.png").is_file()  # 14 configurations > 12: one shared legend
    assert (tmp_path / "out" / "index.html").read_text().count("legend_adding.png") == 1
