"""The report reads right everywhere: valid Markdown tables, one label per configuration, no spread for one
seed, the best configuration marked, the final plot zoomed to the data, footnotes for printed columns only,
and a line naming the nearest published setting when none applies."""

from __future__ import annotations

import io
import math
import re

import pandas as pd
import pytest
from markdown_it import MarkdownIt
from rich.console import Console

from report_fixtures import run_config, write_fake_run

CLASSIC, RELU = ("sigmoid", "tanh", "tanh"), ("sigmoid", "relu", "tanh")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """adding T=50: an LSTM (2 seeds), a GRU (2 seeds, the best) and a one-seed relu LSTM; test metrics near 1,
    far above the memoryless baseline (0.078)."""
    from typer.testing import CliRunner

    from actstudy.cli import app

    root = tmp_path_factory.mktemp("reads_right")
    runs = [("lstm", CLASSIC, 0, 0.980), ("lstm", CLASSIC, 1, 0.984), ("gru", CLASSIC, 0, 0.997),
            ("gru", CLASSIC, 1, 0.998), ("lstm", RELU, 0, 0.985)]
    for cell, activations, seed, metric in runs:
        write_fake_run(root / "runs" / f"{cell}_{activations[1]}_{seed}",
                       run_config(cell=cell, activations=activations, seed=seed), test_metric=metric,
                       activation_stats={"mean_abs_cell_state": 0.3, "gate_saturated_fraction": 0.1,
                                         "candidate_dead_fraction": 0.0})
    result = CliRunner().invoke(app, ["report", str(root / "runs"), "--out", str(root / "out")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    out = root / "out"
    return {"out": out, "console": result.output, "md": (out / "summary.md").read_text(),
            "html": (out / "index.html").read_text(), "csv": pd.read_csv(out / "summary.csv")}


def tables(markdown: str) -> list[list[list[str]]]:
    """Every table a CommonMark parser with GitHub's table extension finds: rows of cell texts."""
    found, row, cell = [], None, None
    for token in MarkdownIt("commonmark").enable("table").parse(markdown):
        if token.type == "table_open":
            found.append([])
        elif token.type == "tr_open":
            row = []
            found[-1].append(row)
        elif token.type == "inline" and row is not None and cell:
            row.append(token.content)
        cell = token.type in ("th_open", "td_open")
        if token.type == "table_close":
            row = None
    return found


def test_summary_md_is_a_results_table_and_a_diagnostics_table_of_valid_markdown(report):
    md = report["md"]
    results, diagnostics, comparisons = tables(md)
    assert "### Results" in md and "### Overfitting, vanishing, activations, time" in md
    for table in (results, diagnostics):
        assert len(table) == 1 + 3  # header + one row per configuration
        assert all(len(row) == len(table[0]) for row in table)
    # the comparisons with a reference (actstudy/report/compare.py): one row per configuration that has one
    assert "### Comparisons with the reference" in md and all(len(row) == len(comparisons[0]) for row in comparisons)
    assert "test metric" in results[0] and "gap loss" not in results[0]
    assert "mean |c| or |h|" in diagnostics[0]  # the pipes of the header are escaped, not column breaks
    assert all(row[-2].startswith("|c|") for row in diagnostics[1:])  # and those of the cells
    assert len(diagnostics[0]) <= 12 and len(results[0]) <= 11  # each readable on a screen


def test_one_label_per_configuration_a_missing_slot_is_a_dash_everywhere(report):
    gru_rows = [row for table in tables(report["md"]) for row in table if row[0] == "gru"]
    assert gru_rows and all(row[1] == "sigmoid,tanh,-" for row in gru_rows)
    assert "sigmoid,tanh,-" in report["html"] and "sigmoid,tanh,-" in report["console"]
    csv = report["csv"]
    assert list(csv[csv.model == "gru"].output) == ["-"]
    assert "gru / sigmoid,tanh,tanh" not in report["html"]


def test_one_seed_shows_no_spread_and_says_so(report):
    (relu,) = [row for row in tables(report["md"])[0] if row[1] == "sigmoid,relu,tanh"]
    test_metric = relu[tables(report["md"])[0][0].index("test metric")]
    assert test_metric == "0.985 (one seed)" and "±" not in " ".join(relu)
    assert "n = 1, so no standard deviation" in report["md"]
    csv = report["csv"]
    assert math.isnan(csv[csv.candidate == "relu"].test_metric_std.iloc[0])


def test_the_best_configuration_is_marked_in_tables_and_plots(report):
    results = tables(report["md"])[0]
    marked = [row[0] for row in results[1:] if "★" in " ".join(row)]
    assert marked == ["gru"]
    assert "★ the highest mean test metric" in report["md"]
    assert 'class="best"' in report["html"] and "★" in report["console"]
    assert list(report["csv"].best) == [row[0] == "gru" for row in results[1:]]
    svg = (report["out"] / "final_adding.svg").read_text()
    assert "★ gru / sigmoid,tanh,-" in svg


def test_the_final_plot_zooms_to_the_data_and_points_to_an_off_scale_baseline(report):
    svg = (report["out"] / "final_adding.svg").read_text()
    ticks = [float(t.replace("−", "-")) for t in re.findall(r"<text[^>]*>\s*([−\-]?\d+\.\d+)\s*</text>", svg)]
    y_ticks = [t for t in ticks if 0.5 < t <= 1.05]
    assert y_ticks and max(y_ticks) - min(y_ticks) < 0.1  # 0.98 and 0.997 apart, not squeezed into 0-1
    assert not any(t < 0.5 for t in ticks)
    assert "baseline 0.0784 below" in svg  # the arrow's label: the baseline is far below the data


def test_the_console_footnotes_only_columns_it_printed(report):
    from actstudy.report import build_sections, find_run_dirs, group_runs, load_runs, print_tables

    sections = build_sections(group_runs(load_runs(find_run_dirs([report["out"].parent / "runs"]))[0]))
    for width, gaps_shown in ((300, True), (60, False)):
        console = Console(file=io.StringIO(), width=width, color_system=None)
        print_tables(console, report["csv"], sections)
        text = " ".join(console.file.getvalue().split())
        assert ("gap loss" in text) == gaps_shown
        assert ("gaps at the last epoch" in text) == gaps_shown


def test_a_line_names_the_nearest_published_setting_when_none_applies(report):
    line = next(line for line in report["md"].splitlines() if line.startswith("Published results:"))
    # the published results on the adding problem are at T >= 100: the nearest differs in T only
    assert "No published result matches; nearest: " in line
    assert re.search(r"ours differs in T=50 \(published [\d, ]+\)\.$", line)
    assert "No published result matches; nearest: " in report["html"]


def test_report_help_shows_a_directory_of_the_kind_the_tool_makes(cli):
    from actstudy.sweeps import default_sweep_dir

    example = re.search(r"actstudy report (outputs/sweeps/\S+)", " ".join(cli("report", "--help").output.split()))[1]
    made = default_sweep_dir(["model=lstm,gru"], "activation_grid")
    assert re.fullmatch(r"outputs/sweeps/activation_grid-[0-9a-f]{8}", made)
    assert re.fullmatch(r"outputs/sweeps/activation_grid-[0-9a-f]{8}", example)


def test_log_axes_are_labelled_in_plain_text_while_mathtext_is_off():
    """The plots draw with mathtext off (user labels stay literal); log-axis ticks must still read 10⁻³,
    not the raw `$\\mathdefault{10^{-3}}$` matplotlib's own log labels would print."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from actstudy.report import plots

    with matplotlib.rc_context({"text.parse_math": False}):
        for low, high, expected in ((1e-6, 1e-1, "10⁻³"), (2e-4, 1.5e-3, "5·10⁻⁴")):
            figure, ax = plt.subplots()
            plots._log_scale(ax)
            ax.plot([1, 2], [low, high])
            figure.canvas.draw()
            labels = [t.get_text() for t in ax.get_yticklabels(which="both") if t.get_text()]
            plt.close(figure)
            assert expected in labels and not any("$" in text for text in labels), labels


@pytest.mark.parametrize("eval_every", [None, 200])
def test_curves_are_drawn_against_updates_where_runs_evaluate_every_so_many_updates(cli, tmp_path, eval_every):
    """Fresh data has no epochs: a run with train.eval_every evaluates every 200 updates, and its plots count
    updates, not evaluation periods called epochs."""
    for seed in (0, 1):
        config = run_config(seed=seed)
        config["train"]["eval_every"] = eval_every
        run = write_fake_run(tmp_path / "runs" / f"s{seed}", config,
                             activation_stats={"mean_abs_cell_state": 0.3, "candidate_dead_fraction": 0.0})
        metrics = pd.read_csv(run / "metrics.csv")
        metrics["updates"] = metrics["epoch"] * (eval_every or 20)  # 20 batches of 50 per epoch otherwise
        metrics.to_csv(run / "metrics.csv", index=False)
    result = cli("report", str(tmp_path / "runs"), "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    svgs = {kind: (out / f"{kind}_adding.svg").read_text() for kind in ("curves", "gap", "grad_by_step", "activations")}
    by_updates = eval_every is not None
    for kind in ("curves", "gap", "activations"):
        assert ("updates (optimizer steps)" in svgs[kind]) is by_updates, kind
        assert (">epoch<" in svgs[kind].replace(" ", "")) is not by_updates, kind
    # five evaluations, the last probed at the fifth: update 1000, or epoch 5
    assert ("at update 1000" if by_updates else "at epoch 5") in svgs["grad_by_step"]


def test_the_published_table_gives_the_range_of_updates_when_runs_stopped_at_different_ones(tmp_path):
    """Runs stopped once solved took different numbers of updates: the table gives their range and the budget,
    not "ours not recorded"."""
    from typer.testing import CliRunner

    from actstudy.cli import app

    for seed, updates in ((0, 11600), (1, 17800), (2, 14200)):
        config = run_config(seq_len=100, seed=seed, hidden_size=128)
        config["task"]["train_size"] = None
        write_fake_run(tmp_path / "runs" / f"s{seed}", config,
                       summary_extra={"updates": updates, "update_budget": 50000, "updates_to_solve": updates})
    result = CliRunner().invoke(app, ["report", str(tmp_path / "runs"), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    page = (tmp_path / "out" / "index.html").read_text()
    assert "updates=11600-17800 of a budget of 50000 (published 20000)" in page
    assert "updates: ours not recorded" not in page
