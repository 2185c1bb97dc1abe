"""The report against fake run directories whose numbers are known (see tests/report_fixtures.py)."""

from __future__ import annotations

import io
import math
from pathlib import Path

import pandas as pd
import pytest
from rich.console import Console

from actstudy.report import (
    ReportError,
    build_sections,
    find_run_dirs,
    group_runs,
    load_runs,
    summary_frame,
    write_report,
)
from report_fixtures import ADDING_BASELINE, run_config, write_fake_run

CLASSIC = ("sigmoid", "tanh", "tanh")
RELU = ("sigmoid", "relu", "relu")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def quiet_console() -> Console:
    # Narrower than the tmp paths, so a warning that wrapped would show up as two lines.
    return Console(file=io.StringIO(), width=60, color_system=None)


def summarise(root: Path) -> pd.DataFrame:
    runs, _ = load_runs(find_run_dirs([root]))
    return summary_frame(build_sections(group_runs(runs)))


def row_of(summary: pd.DataFrame, model: str, activations: tuple[str, str, str], task: str = "adding") -> pd.Series:
    from actstudy.slots import SLOTS

    # a slot the cell does not have reads "-" in every table, as in the configuration's label
    gate, candidate, output = (a if slot in SLOTS[model] else "-"
                               for slot, a in zip(("gate", "candidate", "output"), activations))
    match = summary[(summary.task == task) & (summary.model == model) & (summary.gate == gate)
                    & (summary.candidate == candidate) & (summary.output == output)]
    assert len(match) == 1, match
    return match.iloc[0]


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> dict:
    """One small study, reported once (plots take most of the time), shared by the tests below."""
    root = tmp_path_factory.mktemp("study")
    # lstm classic: two seeds with hand-checkable numbers; threads/device differ and must not split the group.
    for seed, metric, loss, gap_loss, gap_metric, top, seconds in (
        (0, 0.6, 0.1, 0.01, 0.05, 1e-3, 0.5),
        (1, 0.8, 0.3, 0.03, 0.07, 1e-2, 1.0),
    ):
        config = run_config(cell="lstm", activations=CLASSIC, seed=seed)
        config["threads"] = seed + 1
        write_fake_run(root / "adding" / f"lstm_{seed}", config, test_metric=metric, test_loss=loss,
                       gap_loss=gap_loss, gap_metric=gap_metric, seconds=seconds,
                       grad_profile=(top, 0.5, 1.0))
    for seed in (0, 1):
        write_fake_run(root / "adding" / f"gru_{seed}", run_config(cell="gru", activations=CLASSIC, seed=seed),
                       test_metric=0.9, test_loss=0.02)
    # relu candidate: one completed, one diverged (its test numbers must not count), one failed.
    write_fake_run(root / "adding" / "relu_0", run_config(activations=RELU, seed=0), test_metric=0.4)
    write_fake_run(root / "adding" / "relu_1", run_config(activations=RELU, seed=1), status="diverged",
                   test_metric=0.0, test_loss=5.0)
    write_fake_run(root / "adding" / "relu_2", run_config(activations=RELU, seed=2), status="failed")
    write_fake_run(root / "copy" / "lstm_0", run_config(task="copy", seq_len=100, seed=0), test_metric=0.3)

    # Three run directories that cannot be read.
    bad_json = write_fake_run(root / "broken" / "bad_json", run_config(seed=7))
    (bad_json / "summary.json").write_text("{ not json")
    no_metrics = write_fake_run(root / "broken" / "no_metrics", run_config(seed=8))
    (no_metrics / "metrics.csv").unlink()
    no_cell = write_fake_run(root / "broken" / "no_cell", run_config(seed=9))
    (no_cell / "config.yaml").write_text("task:\n  name: adding\nseed: 9\n")

    console = quiet_console()
    result = write_report([root], None, console)
    return {"root": root, "result": result, "output": console.file.getvalue(),
            "broken": [bad_json, no_metrics, no_cell]}


def test_seeds_form_one_row_per_configuration(study):
    summary = study["result"].summary
    assert len(summary) == 4  # adding: lstm classic, lstm relu, gru; copy: lstm
    lstm = row_of(summary, "lstm", CLASSIC)
    assert lstm.n_seeds == 2
    assert row_of(summary, "gru", CLASSIC).n_seeds == 2
    assert row_of(summary, "lstm", CLASSIC, task="copy").n_seeds == 1


def test_means_and_sample_std_over_seeds(study):
    lstm = row_of(study["result"].summary, "lstm", CLASSIC)
    assert lstm.test_metric_mean == pytest.approx(0.7)
    assert lstm.test_metric_std == pytest.approx(math.sqrt(0.02))  # ddof=1 over 0.6 and 0.8
    assert lstm.test_loss_mean == pytest.approx(0.2)
    assert lstm.test_loss_std == pytest.approx(math.sqrt(0.02))
    assert lstm.gap_loss == pytest.approx(0.02)
    assert lstm.gap_metric == pytest.approx(0.06)
    assert lstm.seconds_per_epoch == pytest.approx(0.75)
    assert lstm.metric == "acc@0.04"
    assert lstm.baseline_loss == pytest.approx(1 / 6)
    assert lstm.baseline_metric == pytest.approx(ADDING_BASELINE["metric"])
    copy = row_of(study["result"].summary, "lstm", CLASSIC, task="copy")
    assert math.isnan(copy.test_metric_std)  # a single seed has no spread: its std is undefined, not 0


def test_vanishing_ratio_comes_from_grad_by_step_at_the_last_probed_epoch(study):
    # Profiles end at 1.0 and start at 1e-3 and 1e-2: log10 ratios −3 and −2. summary.json claims 123,
    # and epoch 0 (all ones) would give 0.
    lstm = row_of(study["result"].summary, "lstm", CLASSIC)
    assert lstm.vanishing_ratio == pytest.approx(-2.5)
    assert lstm.vanishing_epoch == 5


def test_diverged_and_failed_runs_are_counted_not_averaged(study):
    relu = row_of(study["result"].summary, "lstm", RELU)
    assert (relu.n_seeds, relu.diverged, relu.failed) == (1, 1, 1)
    assert relu.test_metric_mean == pytest.approx(0.4)
    assert math.isnan(relu.test_metric_std)  # one completed seed: no spread


def test_unreadable_runs_are_warned_about_on_one_line_and_skipped(study):
    skipped = {path for path, _ in study["result"].skipped}
    assert skipped == {p.resolve() for p in study["broken"]}
    warnings = [line for line in study["output"].splitlines() if line.startswith("warning:")]
    assert len(warnings) == 3
    for broken in study["broken"]:
        assert sum(str(broken.resolve()) in line for line in warnings) == 1
    reasons = " ".join(warnings)
    assert "summary.json is not valid JSON" in reasons
    assert "metrics.csv is missing" in reasons
    assert "model.cell" in reasons


def test_rows_are_sorted_by_task_cell_and_activations(study):
    summary = study["result"].summary
    order = list(zip(summary.task, summary.model, summary.candidate))
    assert order == [("adding", "gru", "tanh"), ("adding", "lstm", "relu"), ("adding", "lstm", "tanh"),
                     ("copy", "lstm", "tanh")]


def test_writes_tables_and_the_four_kinds_of_plot(study):
    result, root = study["result"], study["root"]
    assert result.out_dir == root / "report"
    names = {p.name for p in result.files}
    for task in ("adding", "copy"):
        for kind in ("curves", "gap", "grad_by_step", "final"):
            assert f"{kind}_{task}.png" in names
    assert {"summary.csv", "summary.md"} <= names
    for path in result.files:
        assert path.exists()
        if path.suffix == ".png":
            data = path.read_bytes()
            assert data.startswith(PNG_SIGNATURE)
            assert len(data) > 20_000, path  # more than an empty canvas


def test_summary_files_hold_the_table_and_the_baseline(study):
    out_dir = study["result"].out_dir
    from_csv = pd.read_csv(out_dir / "summary.csv")
    assert len(from_csv) == 4
    assert from_csv.loc[from_csv.label == "adding T=50 / lstm / sigmoid,tanh,tanh", "n_seeds"].item() == 2
    markdown = (out_dir / "summary.md").read_text()
    assert "## adding T=50 — baseline: loss 0.1667, acc@0.04 0.0784" in markdown
    assert "## copy T=100 — baseline: loss 0.1733, recall_acc 0.125" in markdown
    assert "0.7 ± 0.14" in markdown
    assert "![curves_adding](curves_adding.png)" in markdown
    # The console shows the same table.
    assert "adding T=50 — baseline" in study["output"]


def test_report_folder_is_not_taken_for_runs(study):
    root = study["root"]
    stray = write_fake_run(root / "report" / "stray_run", run_config(seed=42))
    try:
        assert stray.resolve() not in find_run_dirs([root])
    finally:
        for file in stray.iterdir():
            file.unlink()
        stray.rmdir()


def test_labels_name_the_settings_that_differ_and_ignore_run_only_keys(tmp_path):
    for hidden in (32, 64):
        for seed in (0, 1):
            config = run_config(hidden_size=hidden, seed=seed)
            config["threads"] = 1 + seed  # how a run is executed, not what it computes (rundir.NOT_IDENTITY_KEYS)
            config["quiet"] = bool(seed)
            config["hydra"] = {"job": {"num": seed}}  # never part of a configuration
            write_fake_run(tmp_path / f"h{hidden}_s{seed}", config)
    sections = build_sections(group_runs(load_runs(find_run_dirs([tmp_path]))[0]))
    labels = [g.label for s in sections for g in s.groups]
    assert labels == ["adding T=50 / lstm / sigmoid,tanh,tanh hidden_size=32",
                      "adding T=50 / lstm / sigmoid,tanh,tanh hidden_size=64"]
    assert all(len(g.runs) == 2 for s in sections for g in s.groups)


def test_several_sequence_lengths_get_their_own_sections_and_files(tmp_path):
    for seq_len in (100, 50):
        write_fake_run(tmp_path / f"T{seq_len}", run_config(seq_len=seq_len))
    sections = build_sections(group_runs(load_runs(find_run_dirs([tmp_path]))[0]))
    assert [(s.title, s.slug) for s in sections] == [("adding T=50", "adding_T50"), ("adding T=100", "adding_T100")]


def test_empty_metrics_and_running_runs(tmp_path):
    empty = write_fake_run(tmp_path / "empty", run_config(seed=0))
    (empty / "metrics.csv").write_text("")
    running = write_fake_run(tmp_path / "running", run_config(seed=1))
    (running / "summary.json").write_text('{"status": "running", "run_dir": "x"}')
    only_failed = write_fake_run(tmp_path / "failed", run_config(cell="gru", seed=0), status="failed")
    runs, skipped = load_runs(find_run_dirs([tmp_path]))
    assert [(p, why) for p, why in skipped] == [(empty.resolve(), "metrics.csv is empty")]
    summary = summary_frame(build_sections(group_runs(runs)))
    lstm = row_of(summary, "lstm", CLASSIC)
    assert (lstm.n_seeds, lstm.running) == (0, 1)
    gru = row_of(summary, "gru", CLASSIC)
    assert (gru.n_seeds, gru.failed) == (0, 1)
    assert math.isnan(gru.test_metric_mean)
    assert only_failed.exists()


def test_missing_directory_raises_a_one_line_error(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(ReportError) as caught:
        write_report([missing], None, quiet_console())
    message = str(caught.value)
    assert str(missing) in message and "\n" not in message
    assert isinstance(caught.value, ValueError)


def test_no_runs_raises_naming_the_directories(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReportError, match="no run directories"):
        write_report([tmp_path / "empty"], tmp_path / "out", quiet_console())


def test_only_unreadable_runs_raises(tmp_path):
    broken = write_fake_run(tmp_path / "broken", run_config())
    (broken / "summary.json").write_text("[")
    console = quiet_console()
    with pytest.raises(ReportError, match="could be read"):
        write_report([tmp_path], None, console)
    assert "warning:" in console.file.getvalue()


@pytest.mark.parametrize("width", [80, 200])
def test_console_table_fits_the_terminal_without_folding_a_value(study, width):
    from actstudy.report import print_tables

    summary = study["result"].summary
    sections = build_sections(group_runs(load_runs(find_run_dirs([study["root"]]))[0]))
    console = Console(file=io.StringIO(), width=width, color_system=None)
    print_tables(console, summary, sections)
    lines = console.file.getvalue().splitlines()
    assert all(len(line) <= width for line in lines)
    rows = [line for line in lines if line.startswith(("lstm ", "gru "))]
    assert rows and all("±" in row or "(one seed)" in row for row in rows)  # each value whole on its model's line
    continuation = [line for line in lines if line.startswith("     ") and any(ch.isdigit() for ch in line)]
    assert continuation == []  # no number folded onto a second line
    header = next(line for line in lines if line.startswith("model"))
    assert ("log10 g₁/g_T" in header) == (width == 200)  # a wide terminal shows more columns
