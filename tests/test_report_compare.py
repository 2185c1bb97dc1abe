"""The report's comparisons on a tiny hand-made sweep, each new column checked against numbers worked by hand:
learning speed (Wilson, Kaplan–Meier with a censored run, log-rank, Fisher), paired against unpaired p,
Hedges' g, minimum detectable difference, Holm over the whole report, a floor section that stars nothing, a
diverged run counted, selection on validation, and the options' errors."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from report_fixtures import run_config, write_fake_run
from typer.testing import CliRunner

from actstudy.cli import app
from actstudy.stats import holm, min_detectable_difference

CLASSIC = ("sigmoid", "tanh", "tanh")
RELU = ("sigmoid", "relu", "tanh")
SOFTSIGN = ("sigmoid", "softsign", "tanh")


def solve(updates, budget=400, solve_at=0.95) -> dict:
    return {"updates_to_solve": updates, "update_budget": budget, "updates": updates or budget, "solve_at": solve_at}


def fake(root: Path, task: str, acts, seed: int, metric: float, status: str = "completed", extra=None, **config):
    cfg = run_config(task=task, seq_len=50 if task == "adding" else 100, activations=acts, seed=seed, **config)
    name = f"{task}-{'-'.join(acts)}-{'-'.join(f'{k}{v}' for k, v in config.items())}-s{seed}"
    return write_fake_run(root / name, cfg, status=status, test_metric=metric, summary_extra=extra)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """adding T=50: the reference (seeds 0-2) solves at 100 and 300 updates and once not at all (censored at
    the budget of 400); relu (seeds 0-2, plus a seed 3 that diverged) never solves; softsign ran seeds 3-5,
    so it cannot be paired. copy T=100: the reference sits at the baseline (0.125): a floor section."""
    root = tmp_path_factory.mktemp("compare") / "sweep"
    for seed, metric, updates in zip((0, 1, 2), (0.90, 0.92, 0.94), (100, None, 300)):
        fake(root, "adding", CLASSIC, seed, metric, extra=solve(updates))
    for seed, metric in zip((0, 1, 2), (0.80, 0.83, 0.83)):
        fake(root, "adding", RELU, seed, metric, extra=solve(None))
    fake(root, "adding", RELU, 3, 0.5, status="diverged", extra={**solve(None), "updates": 120})
    for seed, metric in zip((3, 4, 5), (0.91, 0.95, 0.96)):
        fake(root, "adding", SOFTSIGN, seed, metric, extra=solve(None))
    for seed, metric in zip((0, 1, 2), (0.125, 0.126, 0.124)):
        fake(root, "copy", CLASSIC, seed, metric)
    for seed, metric in zip((0, 1, 2), (0.20, 0.21, 0.22)):
        fake(root, "copy", RELU, seed, metric)
    return root


def report(cli, root: Path, *options: str) -> pd.DataFrame:
    """summary.csv of `actstudy report ROOT OPTIONS`; made once per set of options (drawing plots is slow)."""
    out = root.parent / ("report" + "".join(o.replace("=", "_").replace(".", "_") for o in options))
    if (out / "summary.csv").exists():
        frame = pd.read_csv(out / "summary.csv")
        frame.attrs["out"], frame.attrs["output"] = out, (out / "output.txt").read_text()
        return frame
    result = cli("report", str(root), "--out", str(out), *options)
    assert result.exit_code == 0, result.output
    (out / "output.txt").write_text(result.output)
    frame = pd.read_csv(out / "summary.csv")
    frame.attrs["out"], frame.attrs["output"] = out, result.output
    return frame


def row(frame: pd.DataFrame, task: str, acts) -> pd.Series:
    found = frame[(frame["task"] == task) & (frame["candidate"] == acts[1])]
    assert len(found) == 1
    return found.iloc[0]


def test_learning_speed_columns_by_hand(cli, sweep):
    frame = report(cli, sweep)
    reference = row(frame, "adding", CLASSIC)
    # 2 of 3 solved. Wilson: centre (2/3 + z²/6)/(1 + z²/3) = 0.57307, half 1.96·√(2/27 + z²/36)/(1 + z²/3) = 0.36543
    assert reference["fraction_solved"] == pytest.approx(2 / 3)
    assert reference["fraction_solved_ci_low"] == pytest.approx(0.20765, abs=1e-4)
    assert reference["fraction_solved_ci_high"] == pytest.approx(0.93850, abs=1e-4)
    # Kaplan–Meier: S(100) = 2/3; the unsolved run stays at risk to 400; S(300) = 2/3 · 1/2 = 1/3: median 300
    # (dropping the censored run would give S(100) = 1/2 and a median of 100)
    assert reference["median_updates_to_solve"] == 300
    relu = row(frame, "adding", RELU)
    assert relu["fraction_solved"] == 0 and relu["runs_finished"] == 4  # the diverged run counts, unsolved
    assert math.isnan(relu["median_updates_to_solve"])  # never reached: beyond the budget
    # Fisher on solved 0/4 against 2/3: only the observed table is as extreme, P = C(3,2)/C(7,2) = 1/7
    assert relu["solved_p"] == pytest.approx(1 / 7)
    # log-rank: at 100, 7 at risk, E_ref = 3/7, V = 12/49; at 300, 6 at risk, E_ref = 1/3, V = 2/9;
    # (O − E)² / V = (2 − 0.76190)² / 0.46712 = 3.2816, p = 0.0700
    assert relu["logrank_p"] == pytest.approx(0.0700, abs=5e-4)
    # no criterion in the copy runs: no learning-speed numbers there
    assert math.isnan(row(frame, "copy", CLASSIC)["fraction_solved"])


def test_every_configuration_shows_its_learning_speed_in_the_results_table(cli, sweep):
    # The reference too (it has no comparison row): "2/3 [0.21, 0.94]" solved, median 300 updates.
    frame = report(cli, sweep)
    markdown = (frame.attrs["out"] / "summary.md").read_text()
    adding = markdown.split("## adding")[1].split("### Overfitting")[0]
    header = next(line for line in adding.splitlines() if line.startswith("| model"))
    assert "| solved [95% CI] | median updates to solve |" in header
    reference_line = next(line for line in adding.splitlines() if "sigmoid,tanh,tanh" in line)
    assert "| 2/3 [0.21, 0.94] | 300 |" in reference_line
    relu_line = next(line for line in adding.splitlines() if "sigmoid,relu,tanh" in line)
    assert "| 0/4 [0, 0.49] | > 400 (under half solved) |" in relu_line
    copy = markdown.split("## copy")[1].split("### Overfitting")[0]
    assert "solved [95% CI]" not in copy  # no criterion there: no empty learning-speed columns
    # The console shows it too where there is room; a narrow terminal keeps n, div and fail first.
    assert "to solve" not in frame.attrs["output"] and " div " in frame.attrs["output"]  # CliRunner: 80 columns
    wide = CliRunner(env={"COLUMNS": "220"}).invoke(app, ["report", str(sweep), "--out", str(sweep / "wide")])
    assert wide.exit_code == 0, wide.output
    assert "solved" in wide.output and "to solve" in wide.output and "2/3 [0.21, 0.94]" in wide.output


def test_paired_when_seeds_match_unpaired_otherwise(cli, sweep):
    frame = report(cli, sweep)
    relu = row(frame, "adding", RELU)
    assert bool(relu["paired"]) and "paired t" in relu["test"]
    # per-seed differences −0.10, −0.09, −0.11: mean −0.10, sd 0.01, t = −17.32 on 2 dof,
    # p = 1 − |t|/√(t² + 2) = 0.003315; the diverged seed 3 has no partner and is not scored
    t = 0.10 / (0.01 / math.sqrt(3))
    assert relu["p_value"] == pytest.approx(1 - t / math.sqrt(t * t + 2), rel=1e-3)
    assert relu["diff_vs_reference"] == pytest.approx(-0.10)
    half = 4.302653 * 0.01 / math.sqrt(3)  # t(0.975, 2) · se of the mean difference
    assert (relu["diff_ci_low"], relu["diff_ci_high"]) == (pytest.approx(-0.10 - half), pytest.approx(-0.10 + half))
    # Hedges' g: pooled sd √((2·0.0004 + 2·0.0003)/4) = 0.018708, d = −5.3452, J = 1 − 3/15 = 0.8
    assert relu["hedges_g"] == pytest.approx(-5.3452 * 0.8, rel=1e-4)
    assert relu["min_detectable_diff"] == pytest.approx(min_detectable_difference(0.01 / math.sqrt(3), 2))
    assert not relu["underpowered"]  # |−0.10| is above what these 3 pairs can detect
    softsign = row(frame, "adding", SOFTSIGN)
    assert not bool(softsign["paired"]) and "Welch" in softsign["test"]
    # Welch on 0.91, 0.95, 0.96 against 0.90, 0.92, 0.94
    assert softsign["p_value"] == pytest.approx(sps.ttest_ind([0.91, 0.95, 0.96], [0.90, 0.92, 0.94],
                                                              equal_var=False).pvalue)
    assert bool(softsign["underpowered"])  # Δ = 0.02 is well below the detectable difference at n = 3
    assert softsign["min_detectable_diff"] > abs(softsign["diff_vs_reference"])


def test_holm_spans_every_comparison_of_the_report(cli, sweep):
    frame = report(cli, sweep)
    compared = frame[frame["reference"].notna() & (frame["reference"] != "")]
    raw = np.concatenate([compared[c].to_numpy(dtype=float) for c in ("p_value", "diverged_p", "solved_p", "logrank_p")])
    adjusted = holm(raw)
    # the relu comparison's metric p is adjusted with all m p-values of both sections (here m = 10: three
    # comparisons' metric and divergence p, two with solved and log-rank p)
    m = int(np.sum(~np.isnan(raw)))
    assert m == 10
    relu = row(frame, "adding", RELU)
    assert relu["p_value_adjusted"] == pytest.approx(adjusted[list(compared["label"]).index(relu["label"])])
    assert relu["p_value_adjusted"] >= relu["p_value"] * 1 and relu["adjustment"] == "Holm"
    assert set(compared["family"]) == {"report"}
    # narrower families adjust fewer p-values together
    by_task = report(cli, sweep, "--family", "task")
    assert row(by_task, "adding", RELU)["p_value_adjusted"] <= relu["p_value_adjusted"]
    fdr = report(cli, sweep, "--fdr")
    assert row(fdr, "adding", RELU)["adjustment"] == "Benjamini–Hochberg"


def test_a_floor_section_stars_nothing(cli, sweep):
    frame = report(cli, sweep)
    copy_relu = row(frame, "copy", RELU)
    # 0.125, 0.126, 0.124 is not above the baseline 0.125 (one-sided p = 0.5), so nothing here is starred,
    # however small relu's own p
    assert copy_relu["at_the_floor"] and not copy_relu["significant"]
    assert copy_relu["reference_above_baseline_p"] == pytest.approx(0.5)
    assert copy_relu["p_value"] < 0.01
    assert row(frame, "adding", RELU)["significant"] and not row(frame, "adding", RELU)["at_the_floor"]
    markdown = (frame.attrs["out"] / "summary.md").read_text()
    copy_part = markdown[markdown.index("## copy"):]
    assert "at the floor" in copy_part.split("\n## ")[0]
    assert "*" not in "".join(line for line in copy_part.split("\n## ")[0].splitlines() if line.startswith("|"))


def test_a_diverged_run_is_counted_and_can_be_scored_at_its_best_epoch(cli, sweep):
    frame = report(cli, sweep)
    relu = row(frame, "adding", RELU)
    assert relu["diverged"] == 1
    # divergence 1/4 against 0/3: every table is as extreme or more, Fisher p = 1
    assert relu["diverged_p"] == pytest.approx(1.0)
    best = row(report(cli, sweep, "--diverged", "best"), "adding", RELU)
    # seed 3 now scores 0.5: seeds 0-3 against 0-2 no longer pair, and the mean falls
    assert not bool(best["paired"])
    assert best["diff_vs_reference"] == pytest.approx((0.80 + 0.83 + 0.83 + 0.5) / 4 - 0.92)


def test_the_overfitting_gap_is_compared_paired_with_its_own_holm_family(cli, tmp_path):
    """relu's last-epoch gap (val − train loss) exceeds the reference's by 0.20, 0.19, 0.21 in seeds 0-2."""
    root = tmp_path / "sweep"
    for seed, gap in zip((0, 1, 2), (0.10, 0.12, 0.14)):
        cfg = run_config(task="adding", seq_len=50, activations=CLASSIC, seed=seed)
        write_fake_run(root / f"classic-s{seed}", cfg, test_metric=0.80 + 0.01 * seed, gap_loss=gap)
    for seed, gap in zip((0, 1, 2), (0.30, 0.31, 0.35)):
        cfg = run_config(task="adding", seq_len=50, activations=RELU, seed=seed)
        write_fake_run(root / f"relu-s{seed}", cfg, test_metric=0.79 + 0.01 * seed, gap_loss=gap)
    frame = report(cli, root)
    relu = frame[frame["candidate"] == "relu"].iloc[0]
    assert relu["gap_diff_vs_reference"] == pytest.approx(0.20)
    t = 0.20 / (0.01 / math.sqrt(3))  # paired t on 2 dof, as the test metric's
    assert relu["gap_p_value"] == pytest.approx(1 - t / math.sqrt(t * t + 2), rel=1e-3)
    half = 4.302653 * 0.01 / math.sqrt(3)
    assert (relu["gap_diff_ci_low"], relu["gap_diff_ci_high"]) == (pytest.approx(0.20 - half),
                                                                   pytest.approx(0.20 + half))
    # the only gap comparison is a family of one; the metric's p is adjusted with divergence's alone
    assert relu["gap_p_value_adjusted"] == pytest.approx(relu["gap_p_value"])
    assert relu["p_value_adjusted"] == pytest.approx(min(1.0, 2 * relu["p_value"]))
    markdown = (frame.attrs["out"] / "summary.md").read_text()
    assert "Δ gap loss [95% CI] (p adj.)" in markdown and f"0.2 [{0.20 - half:.3f}, {0.20 + half:.3f}]" in markdown


def test_reference_can_be_any_configuration(cli, sweep):
    frame = report(cli, sweep, "--reference", "model.activation.candidate=relu")
    classic = row(frame, "adding", CLASSIC)
    assert classic["reference"].startswith("lstm / sigmoid,relu,tanh")
    assert classic["diff_vs_reference"] == pytest.approx(0.10)


@pytest.mark.parametrize("options, named", [
    (["--reference", "model.variant"], "KEY=VALUE"),
    (["--reference", "model.activation.candidate=relux"], "values present"),
    (["--reference", "nothing.here=1"], "no run has the key"),
    (["--family", "seed"], "choose one of: report, task, cell"),
    (["--diverged", "keep"], "choose one of: exclude, best"),
    (["--select", "optim.momentumm"], "no run has the key"),
])
def test_bad_options_are_refused_in_one_line(cli, sweep, options, named):
    result = cli("report", str(sweep), "--out", str(sweep.parent / "bad"), *options)
    assert result.exit_code == 2 and named in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (sweep.parent / "bad").exists()


def write_grid(root: Path) -> None:
    """relu at three learning rates: 3e-3 is best on validation, 1e-2 on test (selection must not see test);
    classic: 1e-2, the edge of the grid, is best on validation."""
    val = {RELU: {1e-3: 0.5, 3e-3: 0.8, 1e-2: 0.6}, CLASSIC: {1e-3: 0.5, 3e-3: 0.6, 1e-2: 0.9}}
    test = {RELU: {1e-3: 0.5, 3e-3: 0.7, 1e-2: 0.95}, CLASSIC: {1e-3: 0.5, 3e-3: 0.6, 1e-2: 0.85}}
    for acts in (RELU, CLASSIC):
        for lr in (1e-3, 3e-3, 1e-2):
            for seed in (0, 1):
                cfg = run_config(activations=acts, seed=seed, lr=lr)
                # validation metric = train metric − gap_metric: its best epoch is val[acts][lr] + seed noise
                last = val[acts][lr] + 0.01 * seed + 0.05
                write_fake_run(root / f"{acts[1]}-{lr}-s{seed}", cfg, test_metric=test[acts][lr] + 0.01 * seed,
                               train_metric=[0.1, 0.2, 0.3, 0.4, last], gap_metric=0.05)


def test_select_chooses_on_validation_and_warns_at_the_edge(cli, tmp_path):
    root = tmp_path / "grid"
    write_grid(root)
    frame = report(cli, root, "--select", "optim.lr")
    assert len(frame) == 2  # one configuration each, at its chosen learning rate
    relu, classic = row(frame, "adding", RELU), row(frame, "adding", CLASSIC)
    assert relu["selected"] == "optim.lr=0.003" and not relu["selected_at_edge"]
    assert relu["test_metric_mean"] == pytest.approx(0.705)  # test at the chosen value only
    assert classic["selected"] == "optim.lr=0.01" and classic["selected_at_edge"]
    assert relu["selected_from"] == "optim.lr: 0.001, 0.003, 0.01"
    assert "edge" in frame.attrs["output"]
    # compared at their chosen values: relu at 3e-3 against classic at 1e-2
    assert relu["diff_vs_reference"] == pytest.approx(0.705 - 0.855)


def test_selection_without_a_criterion_prefers_the_value_where_fewer_seeds_diverged(cli, tmp_path):
    # relu at 1e-2: four of five seeds diverged and the survivor validates best of all; at 1e-3 every seed
    # completed a little lower. Choosing 1e-2 on its one survivor would hide that the rate blows up.
    root = tmp_path / "grid"
    for lr, statuses, last in ((1e-3, ["completed"] * 5, 0.6), (1e-2, ["completed"] + ["diverged"] * 4, 0.9)):
        for seed, status in enumerate(statuses):
            write_fake_run(root / f"relu-{lr}-s{seed}", run_config(activations=RELU, seed=seed, lr=lr), status=status,
                           train_metric=[0.1, 0.2, 0.3, 0.4, last + 0.05], gap_metric=0.05, test_metric=last)
    frame = report(cli, root, "--select", "optim.lr")
    relu = row(frame, "adding", RELU)
    assert relu["selected"] == "optim.lr=0.001"
    assert relu["test_metric_mean"] == pytest.approx(0.6)


def test_selection_names_no_value_where_every_run_diverged(cli, tmp_path):
    # relu diverged at every learning rate: the report keeps one of its groups to show the divergence, but must
    # not claim a rate was chosen (nor flag an edge) where none was better than another
    root = tmp_path / "grid"
    for acts, status in ((RELU, "diverged"), (CLASSIC, "completed")):
        for lr in (1e-3, 1e-2):
            for seed in (0, 1):
                write_fake_run(root / f"{acts[1]}-{lr}-s{seed}", run_config(activations=acts, seed=seed, lr=lr),
                               status=status, test_metric=0.8 + 0.01 * seed + lr)
    frame = report(cli, root, "--select", "optim.lr")
    relu, classic = row(frame, "adding", RELU), row(frame, "adding", CLASSIC)
    assert relu["selected"] == "none: no value completed a run" and not relu["selected_at_edge"]
    assert relu["diverged"] == 2
    assert classic["selected"].startswith("optim.lr=")


def test_a_study_file_can_ask_for_selection(cli, tmp_path):
    root = tmp_path / "grid"
    write_grid(root)
    for config in root.glob("*/config.yaml"):  # as a study's `select: [optim.lr]` leaves it in every run
        config.write_text(config.read_text() + "select:\n- optim.lr\n")
    frame = report(cli, root)
    assert len(frame) == 2 and row(frame, "adding", RELU)["selected"] == "optim.lr=0.003"


def test_where_runs_stop_once_solved_selection_prefers_solving_then_solving_sooner(cli, tmp_path):
    # Runs stopped at the criterion all end near it, so their best validation metric says little: 1e-2 solves
    # every seed in 100 updates with a slightly lower best validation metric than 3e-3 (every seed at 300);
    # 1e-3 has the highest validation metric but solves only one seed of two; 3e-2 solved its one completed
    # seed soonest of all, but its other seed diverged: half solved, not all.
    root = tmp_path / "grid"
    plan = {1e-3: ([None, 200], 0.99), 3e-3: ([300, 300], 0.97), 1e-2: ([100, 100], 0.96), 3e-2: ([50, "x"], 0.9)}
    for lr, (updates, best_val) in plan.items():
        for seed, solved_after in enumerate(updates):
            diverged = solved_after == "x"
            write_fake_run(root / f"{lr}-s{seed}", run_config(activations=CLASSIC, seed=seed, lr=lr),
                           status="diverged" if diverged else "completed",
                           train_metric=[0.1, 0.2, 0.3, 0.5, best_val + 0.05], gap_metric=0.05,
                           summary_extra=solve(None if diverged else solved_after))
    adding = row(report(cli, root, "--select", "optim.lr"), "adding", CLASSIC)
    assert adding["selected"] == "optim.lr=0.01" and adding["median_updates_to_solve"] == 100
    # without a solved criterion the best validation metric decides, as before
    unsolved = tmp_path / "no-criterion" / "grid"
    shutil.copytree(root, unsolved)
    for summary in unsolved.glob("*/summary.json"):
        data = json.loads(summary.read_text())
        data.update(solve_at=None, updates_to_solve=None)
        summary.write_text(json.dumps(data))
    # (a diverged seed has no best validation metric to count: 3e-2's completed one reads 0.9)
    assert row(report(cli, unsolved, "--select", "optim.lr"), "adding", CLASSIC)["selected"] == "optim.lr=0.001"


def test_the_solved_plot_draws_kaplan_meier_by_hand(cli, sweep):
    from actstudy.report import build_sections, find_run_dirs, group_runs, load_runs
    from actstudy.report.plots import solved_curve

    runs, _ = load_runs(find_run_dirs([sweep]))
    adding = next(s for s in build_sections(group_runs(runs)) if s.task_name == "adding")
    reference = next(g for g in adding.groups if g.activations == CLASSIC)
    x, y = solved_curve(reference)
    # solved by 100: 1/3; by 300: 1 − S(300) = 2/3 (the censored run still at risk); flat to the budget, 400
    assert list(x) == [0, 100, 300, 400] and list(y) == pytest.approx([0, 1 / 3, 2 / 3, 2 / 3])
    relu = next(g for g in adding.groups if g.activations == RELU)
    assert list(solved_curve(relu)[1]) == [0, 0]  # nothing solved: a flat line at 0 up to the budget
    out = report(cli, sweep).attrs["out"]
    assert (out / "solved_adding.png").is_file() and (out / "solved_adding.svg").is_file()
    assert not (out / "solved_copy.png").exists()  # no criterion in the copy runs: no such plot


def test_a_real_sweep_records_and_reports_learning_speed(cli, tmp_path):
    from conftest import TINY

    top = tmp_path / "sweep"
    result = cli("sweep", *TINY, "seed=0,1", "train.solve_at=0", "train.stop_when_solved=true",
                 f"hydra.sweep.dir={top}")
    assert result.exit_code == 0, result.output
    frame = report(cli, top)
    row = frame.iloc[0]
    # accuracy >= 0 at the first evaluation (epoch 1: 64 sequences / 16 = 4 updates): both solved at 4
    assert (row["fraction_solved"], row["median_updates_to_solve"], row["runs_finished"]) == (1.0, 4, 2)


def test_vanishing_at_initialisation_and_where_it_does_not_apply(cli, sweep):
    frame = report(cli, sweep)
    adding = row(frame, "adding", CLASSIC)
    # the fake runs' profiles: all ones at epoch 0 (ratio 0), 1e-3 ... 1 at the last probe (ratio −3)
    assert adding["vanishing_ratio_init"] == 0 and adding["vanishing_ratio"] == pytest.approx(-3)
    assert adding["vanishing_trajectory"] == "0: 0, 5: -3"
    copy = row(frame, "copy", CLASSIC)  # a loss on every step: the ratio says nothing
    assert not copy["vanishing_applicable"] and math.isnan(copy["vanishing_ratio"])
    markdown = (frame.attrs["out"] / "summary.md").read_text()
    copy_part = markdown[markdown.index("## copy"):]
    assert "not applicable" in copy_part and "0 → -3" not in copy_part.replace("−", "-")
