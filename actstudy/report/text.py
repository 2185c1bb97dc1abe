"""Tables as text: summary.md (markdown), the console (rich) and summary.tex (LaTeX).

One row of a table is the same list of cells everywhere (`table_cells`), so the markdown page, the console,
the HTML page (actstudy/report/html.py) and the paper's table show the same numbers.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from actstudy import rundir
from actstudy.report.grouping import BEST_MARK, TaskSection
from actstudy.slots import DEFAULT_ACTIVATIONS
from actstudy.probe import SATURATION_STATS
from actstudy.report.compare import CompareOptions
from actstudy.stats import ALPHA, ONSET_EVALUATIONS, ONSET_NOISE_SDS, PAIRED_TESTS, TESTS

if TYPE_CHECKING:
    from actstudy.report.plots import Plot


def fmt(value: float, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if math.isinf(value):
        return "−∞" if value < 0 else "∞"
    return f"{value:.{digits}g}"


ONE_SEED = "(one seed)"  # instead of a spread: a single run has no standard deviation


def fmt_mean_std(mean: float, std: float, n: int | None = None) -> str:
    if math.isnan(mean):
        return "—"
    if n == 1 or std is None or math.isnan(std):
        return f"{fmt(mean)} {ONE_SEED}" if n == 1 else fmt(mean)
    return f"{fmt(mean)} ± {fmt(std, 2)}"


def baseline_text(section: TaskSection) -> str:
    parts = []
    for loss, metric in section.baselines():
        metric_names = "/".join(section.metric_names)
        parts.append(f"loss {fmt(loss)}, {metric_names} {fmt(metric)}")
    return "; ".join(parts) if parts else "not recorded"


VS_REFERENCE = "vs reference: Δ, p (adjusted)"
SOLVED, MEDIAN_TO_SOLVE = "solved [95% CI]", "median updates to solve"
# A table row as text, shared by the markdown file and the console so that both show the same thing.
TABLE_HEADERS = [
    "model", "activations (gate,candidate,output)", "other", "metric", "test metric", "test loss",
    SOLVED, MEDIAN_TO_SOLVE, "n", rundir.DIVERGED, rundir.FAILED, "gap metric", "gap loss", "log10 ‖∂L/∂h₁‖/‖∂L/∂h_T‖", "s/epoch",
    "95% CI test metric", VS_REFERENCE, "overfit onset (epoch, runs)", "decay/step",
    "saturated gates", "dead cand. (change from epoch 0)", "mean |c| or |h|",
]
SIGNIFICANT_MARK = "*"  # beside a test metric that differs from its reference after the p-value adjustment
NOT_APPLICABLE = "not applicable"
FLOOR_NOTE = ("at the floor: the reference is not significantly above the baseline, so no difference here is "
              "starred")
# The comparisons of a section, one row per configuration that has a reference (actstudy/report/compare.py).
COMPARISON_HEADERS = [
    "configuration", "reference", "test (n)", "Δ [95% CI]", "Hedges' g", "min. detectable Δ (80%)",
    "p adj.", "diverged (p adj.)", SOLVED, MEDIAN_TO_SOLVE, "solved p adj.",
    "log-rank p adj.", "Δ gap loss [95% CI] (p adj.)",
]


def ci_text(row: pd.Series) -> str:
    mean, half = row.get("test_metric_mean", math.nan), row.get("test_metric_ci95", math.nan)
    if mean is None or half is None or math.isnan(mean) or math.isnan(half):
        return "—"
    return f"[{fmt(mean - half, 3)}, {fmt(mean + half, 3)}]"


def comparison_text(row: pd.Series) -> str:
    if not row.get("test"):
        return "reference" if row.get("label") and is_reference_row(row) else "—"
    if math.isnan(row["diff_vs_reference"]):
        return "no completed runs to compare"
    mark = SIGNIFICANT_MARK if row.get("significant") is True else ""
    return f"{fmt(row['diff_vs_reference'], 2)}, p={fmt(row['p_value_adjusted'], 2)}{mark}"


def is_reference_row(row: pd.Series) -> bool:
    """The classic activations in every slot the cell has (a slot it lacks reads "-")."""
    return all(row[slot] in ("-", default) for slot, default in DEFAULT_ACTIVATIONS.items())


def onset_text(row: pd.Series) -> str:
    runs = row.get("overfit_runs", 0)
    if not runs or (isinstance(runs, float) and math.isnan(runs)):
        return "none"
    return f"{fmt(row['onset_epoch_mean'], 3)} ({int(runs)}/{row['n_seeds']})"


def state_text(row: pd.Series) -> str:
    cell_state, hidden = row.get("mean_abs_cell_state", math.nan), row.get("mean_abs_hidden_state", math.nan)
    if cell_state is not None and not math.isnan(cell_state):
        return f"|c| {fmt(cell_state, 3)}"
    if hidden is not None and not math.isnan(hidden):
        return f"|h| {fmt(hidden, 3)}"
    return "—"


def vanishing_text(row: pd.Series, column: str = "vanishing_ratio") -> str:
    """The ratio at initialisation beside the final one ("−0.2 → −1.5"), or why there is none."""
    if row.get("vanishing_applicable") is False:
        return NOT_APPLICABLE
    init = row.get("vanishing_ratio_init", math.nan)
    final = fmt(row[column], 3)
    return final if init is None or math.isnan(init) else f"{fmt(init, 3)} → {final}"


def saturation_text(row: pd.Series) -> str:
    """Per gate ("i 0.9 f 0.1 o 0.2"); "n/a" when the gate activation is unbounded or the cell has no gate."""
    parts = []
    for stat in SATURATION_STATS.values():
        value = row.get(stat, math.nan)
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            parts.append(f"{stat.rsplit('_', 1)[-1]} {fmt(value, 2)}")
    return " ".join(parts) if parts else "n/a"


def dead_text(row: pd.Series) -> str:
    value, change = row.get("candidate_dead_fraction", math.nan), row.get("candidate_dead_change", math.nan)
    if change is None or math.isnan(change):
        return fmt(value, 2)
    return f"{fmt(value, 2)} ({'+' if change >= 0 else '−'}{fmt(abs(change), 2)})"


def table_cells(row: pd.Series) -> list[str]:
    mark = f" {SIGNIFICANT_MARK}" if row.get("significant") is True else ""
    mark += f" {BEST_MARK}" if row.get("best") == True else ""  # noqa: E712 (numpy bool)
    n = int(row["n_seeds"])
    return [
        str(row["model"]),
        f"{row['gate']},{row['candidate']},{row['output']}",
        str(row["other"]),
        str(row["metric"]),
        fmt_mean_std(row["test_metric_mean"], row["test_metric_std"], n) + mark,
        fmt_mean_std(row["test_loss_mean"], row["test_loss_std"], n),
        solved_text(row),
        median_to_solve_text(row),
        str(row["n_seeds"]) + (f" (+{row[rundir.RUNNING]} running)" if row[rundir.RUNNING] else ""),
        str(row[rundir.DIVERGED]),
        str(row[rundir.FAILED]),
        fmt(row["gap_metric"], 3),
        fmt(row["gap_loss"], 3),
        vanishing_text(row),
        fmt(row["seconds_per_epoch"], 3),
        ci_text(row),
        comparison_text(row),
        onset_text(row),
        fmt(row.get("decay_per_step_mean", math.nan), 3),
        saturation_text(row),
        dead_text(row),
        state_text(row),
    ]


def _interval(low: float, high: float, digits: int = 2) -> str:
    return "—" if math.isnan(low) else f"[{fmt(low, digits)}, {fmt(high, digits)}]"


def _has_criterion(row: pd.Series) -> bool:
    value = row.get("fraction_solved", math.nan)
    return value is not None and not math.isnan(value)


def solved_text(row: pd.Series) -> str:
    """Runs that reached the task's criterion, of those that finished, with the Wilson interval ("3/5 [0.23, 0.88]")."""
    if not _has_criterion(row):
        return "—"
    return (f"{int(row['runs_solved'])}/{int(row['runs_finished'])} "
            f"{_interval(row['fraction_solved_ci_low'], row['fraction_solved_ci_high'])}")


def median_to_solve_text(row: pd.Series) -> str:
    """Kaplan–Meier median of updates to solve; "> budget" when fewer than half the runs solved."""
    median = row.get("median_updates_to_solve", math.nan)
    if _has_criterion(row) and math.isnan(median):
        return f"> {fmt(row['update_budget'], 6)} (under half solved)"
    return fmt(median, 6)


def comparison_cells(row: pd.Series) -> list[str]:
    """One row of a section's comparisons table (a configuration that has a reference)."""
    mark = f" {SIGNIFICANT_MARK}" if row.get("significant") is True else ""
    power = " (underpowered)" if row.get("underpowered") is True else ""
    solved, median_text = solved_text(row), median_to_solve_text(row)
    return [
        str(row["label"].split(" / ", 1)[-1]),
        str(row["reference"]),
        f"{row['test']} ({row['n_compared']})",
        f"{fmt(row['diff_vs_reference'], 2)} {_interval(row['diff_ci_low'], row['diff_ci_high'])}{mark}",
        fmt(row["hedges_g"], 2),
        fmt(row["min_detectable_diff"], 2) + power,
        fmt(row["p_value_adjusted"], 2) + mark,
        f"{row[rundir.DIVERGED]} ({fmt(row['diverged_p_adjusted'], 2)})",
        solved,
        median_text,
        fmt(row.get("solved_p_adjusted", math.nan), 2),
        fmt(row.get("logrank_p_adjusted", math.nan), 2),
        gap_text(row),
    ]


def gap_text(row: pd.Series) -> str:
    """The last epoch's val − train loss gap minus the reference's: above 0, this one overfits more."""
    diff = row.get("gap_diff_vs_reference", math.nan)
    if diff is None or math.isnan(diff):
        return "—"
    low, high = row["gap_diff_ci_low"], row["gap_diff_ci_high"]
    return f"{fmt(diff, 3)} {_interval(low, high, 3)} ({fmt(row['gap_p_value_adjusted'], 2)})"


def compared_rows(rows: pd.DataFrame) -> pd.DataFrame:
    return rows[rows["reference"].fillna("") != ""]


def section_heading(section: TaskSection, at_the_floor: bool) -> str:
    return f"{section.title} — baseline: {baseline_text(section)}" + (f" — {FLOOR_NOTE}" if at_the_floor else "")


def section_rows(summary: pd.DataFrame, section: TaskSection) -> pd.DataFrame:
    labels = {g.label for g in section.groups}
    return summary[summary["label"].isin(labels)]


def statistics_note(options: CompareOptions) -> str:
    """What the statistics columns mean and which rules made them; shared by summary.md and index.html."""
    test = options.test
    reference = (" ".join(f"{k}={v}" for k, v in options.reference.items()) if options.reference
                 else "the same configuration with sigmoid gates and tanh candidate and output")
    adjustment = "Benjamini–Hochberg (false discovery rate)" if options.fdr else "Holm (family-wise error)"
    family = {"report": "every comparison in this report", "task": "the comparisons of each task section",
              "cell": "the comparisons of each task section and cell"}[options.family]
    return (
        f"95% CI: t interval of the mean test metric over seeds. vs reference: mean test metric minus that of "
        f"{reference}; paired ({PAIRED_TESTS[test]}) when both ran the same seeds, which share data, data "
        f"order and initialisation, else two-sided {TESTS[test]}; the difference has its 95% CI, Hedges' g "
        f"(pooled sd, small-sample corrected) and the smallest true difference these n detect with 80% power "
        f"(underpowered: the observed one is smaller). Every p-value (test metric, divergence rate by Fisher's "
        f"exact test, fraction solved by Fisher's exact test, time to solve by the log-rank test) is adjusted "
        f"by {adjustment} over {family}; {SIGNIFICANT_MARK} marks an adjusted p < {ALPHA}. A section whose "
        f"reference is not above the task's baseline (one-sided t, p ≥ {ALPHA}) is at the floor and nothing in "
        f"it is starred. Δ gap loss: validation − train loss at the last epoch minus the reference's (above "
        f"0: overfits more), paired or not as the test metric, its 95% CI, and its p-value adjusted the same "
        f"way over the gap comparisons alone (their own family, so they leave the other p-values as they "
        f"were); never starred. Diverged runs are "
        + ("scored at their best epoch before they diverged. " if options.diverged == "best"
           else "counted (and their rate compared), not scored. ")
        + "Solved: the validation metric reached the task's criterion (updates_to_solve); fraction with a "
        "Wilson interval; median updates to solve by Kaplan–Meier, unsolved and diverged runs censored at "
        "their budget. "
        f"Overfit onset: the epoch of validation loss's running minimum once validation loss has stayed more "
        f"than {ONSET_NOISE_SDS:g} noise scales above it for {ONSET_EVALUATIONS} evaluations in a row while "
        "training loss kept below its value there; the noise scale is 1.4826 · MAD of successive differences "
        "of validation loss / √2 (mean over the seeds where it happened). Gap relative: val loss / val floor − "
        "train loss / train floor, each split's floor being the baseline's loss on it (0 for a model at the "
        "floor). log10 ‖∂L/∂h₁‖/‖∂L/∂h_T‖ at initialisation → at the last probe, not applicable where a loss "
        "falls on more than the last step (per-step targets, readout=all). decay/step: slope of log10 "
        "‖∂L/∂h_t‖ against t in decades per step. Saturated gates: per gate (i, f, o; r, z), fraction of "
        "outputs within 1% of an end of the gate's range, only for bounded gate activations (a forget gate "
        "near 1 is how an LSTM remembers); dead cand.: fraction of candidate units that are 0 on the whole "
        "probe batch, with its change from epoch 0; mean |c| is the LSTM cell state, |h| the hidden state of "
        "cells without one (all on the probe batch at the last probe)."
        + (" Rank tests have a floor at small n: Mann–Whitney U cannot go below 2/C(2n, n) (0.1 at 3 seeds a "
           "side), Wilcoxon signed-rank below 2/2^n (0.25 at 3 pairs)." if test == "mannwhitney" else "")
    )


# The summary's columns in two tables that each fit a screen: what was reached, and why (summary.md and
# index.html alike; the console shows a part of the first).
RESULT_COLUMNS = ("model", "activations (gate,candidate,output)", "other", "metric", "test metric",
                  "95% CI test metric", VS_REFERENCE, "test loss", SOLVED, MEDIAN_TO_SOLVE, "n", rundir.DIVERGED,
                  rundir.FAILED)
MECHANISM_COLUMNS = ("model", "activations (gate,candidate,output)", "other", "gap metric", "gap loss",
                     "overfit onset (epoch, runs)", "log10 ‖∂L/∂h₁‖/‖∂L/∂h_T‖", "decay/step", "saturated gates",
                     "dead cand. (change from epoch 0)", "mean |c| or |h|", "s/epoch")
TABLES = (("Results", RESULT_COLUMNS), ("Overfitting, vanishing, activations, time", MECHANISM_COLUMNS))


def pick_columns(cells: list[list[str]], columns: tuple[str, ...]) -> tuple[list[str], list[list[str]]]:
    """The headers and cells of `columns` (names from TABLE_HEADERS); 'other' only when a row has a value, the
    learning-speed columns only when a task in it has a solve criterion."""
    keep = [TABLE_HEADERS.index(c) for c in columns]
    for optional, empty in (("other", ""), (SOLVED, "—"), (MEDIAN_TO_SOLVE, "—")):
        at = TABLE_HEADERS.index(optional)
        if at in keep and all(c[at] == empty for c in cells):
            keep.remove(at)
    return [TABLE_HEADERS[i] for i in keep], [[row[i] for i in keep] for row in cells]


def markdown_row(cells: list[str]) -> str:
    """One GitHub-flavoured table row: a '|' inside a cell is escaped, or it would split the cell."""
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def marks_note(cells: list[list[str]]) -> str:
    """What the marks in a section's cells mean, for the marks that appear there only."""
    text = " ".join(" ".join(row) for row in cells)
    notes = []
    if BEST_MARK in text:
        notes.append(f"{BEST_MARK} the highest mean test metric of this task.")
    if ONE_SEED in text:
        notes.append(f"{ONE_SEED}: n = 1, so no standard deviation or confidence interval is shown.")
    return " ".join(notes)


def nearest_published_line(section: TaskSection) -> str:
    """When no published result applies to any configuration of the section: which is nearest, what differs."""
    from actstudy.published import nearest_published

    lines = [nearest_published(section.task_name, section.seq_len, g.cell, g.runs[0].config) for g in section.groups]
    if any(line is None for line in lines):
        return ""  # some configuration has its published result (index.html lists them)
    reference = next((g for g in section.groups if all(a == d for a, d in zip(g.activations, DEFAULT_ACTIVATIONS.values()))),
                     section.groups[0])
    return f"Published results: {lines[section.groups.index(reference)]}"


# ---------------------------------------------------------------------------------------------- markdown


def write_markdown(path: Path, summary: pd.DataFrame, sections: list[TaskSection],
                   plots: dict[str, list[Plot]], skipped: list[tuple[Path, str]], options: CompareOptions,
                   floors: dict[str, bool], warnings: list[str] = ()) -> None:
    lines = [
        "# actstudy report",
        "",
        "Test metric and loss are taken at each run's best validation epoch; mean ± sample standard "
        "deviation (ddof=1) over the completed seeds (n). Diverged and failed runs are counted, not averaged. "
        "Gaps are at the last epoch (gap metric = train − val, gap loss = val − train). "
        f"log10 ‖∂L/∂h₁‖/‖∂L/∂h_T‖ is read from {rundir.GRAD_BY_STEP} at the last probed epoch "
        "(strongly negative: gradients vanish going back in time).",
        "",
        statistics_note(options),
        "",
        *[f"**Warning:** {w}" for w in warnings],
        "",
    ]
    for section in sections:
        rows = section_rows(summary, section)
        cells = [table_cells(row) for _, row in rows.iterrows()]
        lines += [f"## {section_heading(section, floors.get(section.slug, False))}", ""]
        for title, columns in TABLES:
            headers, kept = pick_columns(cells, columns)
            lines += [f"### {title}", "", markdown_row(headers), "|" + "|".join("---" for _ in headers) + "|"]
            lines += [markdown_row(row_cells) for row_cells in kept]
            lines.append("")
        compared = compared_rows(rows)
        if len(compared):
            lines += ["### Comparisons with the reference", "", markdown_row(COMPARISON_HEADERS),
                      "|" + "|".join("---" for _ in COMPARISON_HEADERS) + "|"]
            lines += [markdown_row(comparison_cells(row)) for _, row in compared.iterrows()]
            lines.append("")
        lines += [note for note in (marks_note(cells), nearest_published_line(section)) if note]
        lines.append("")
        for plot in plots.get(section.slug, []):
            lines.append(f"![{plot.path.stem}]({plot.path.name})")
        lines.append("")
    if skipped:
        lines += ["## Skipped run directories", ""]
        lines += [f"- `{path}`: {why}" for path, why in skipped]
        lines.append("")
    path.write_text("\n".join(lines))


# ----------------------------------------------------------------------------------------------- console

# The console has less room than a markdown page: the same columns under shorter names, and the metric's
# name moves into the header when a task has only one.
CONSOLE_HEADERS = [
    "model", "gate,cand,out", "other", "metric", "test metric", "test loss", "solved", "to solve",
    "n", "div", "fail", "gap metric", "gap loss", "log10 g₁/g_T", "s/epoch",
    "95% CI", "vs ref Δ, p", "onset", "decay/step", "sat", "dead", "|state|",
]
# The console shows the core columns only: a terminal has no room for all of them (summary.md has all).
CONSOLE_KEEP = 17
TEXT_COLUMNS = ("model", "gate,cand,out", "other", "metric")


def print_tables(console: Console, summary: pd.DataFrame, sections: list[TaskSection]) -> None:
    for section in sections:
        rows = section_rows(summary, section)
        headers = list(CONSOLE_HEADERS)
        cells = [table_cells(row) for _, row in rows.iterrows()]
        dropped = []
        for optional, empty in (("other", ""), ("solved", "—"), ("to solve", "—")):
            if all(c[headers.index(optional)] == empty for c in cells):
                dropped.append(headers.index(optional))
        if len(section.metric_names) == 1:
            metric = section.metric_names[0]
            headers[headers.index("test metric")] = f"test {metric}"
            dropped.append(headers.index("metric"))
        dropped += [headers.index("95% CI"), *range(CONSOLE_KEEP, len(headers))]  # summary.md has them all
        # Learning speed after n, div and fail: a narrow terminal drops it before the run counts.
        order = list(range(len(headers)))
        for name in ("to solve", "solved"):
            at = headers.index(name)
            order.remove(at)
            order.insert(order.index(headers.index("fail")) + 1, at)
        order = [i for i in order if i not in dropped]
        headers = [headers[i] for i in order]
        cells = [[row[i] for i in order] for row in cells]
        table = console_table(section, headers, cells)
        # A narrow terminal folds every cell into a column of fragments: drop columns from the right (the
        # least read first) until each value fits on its line; summary.md and index.html keep them all.
        while len(headers) > MIN_CONSOLE_COLUMNS and natural_width(console, console_table(section, headers, cells, caption=False)) > console.width:
            headers, cells = headers[:-1], [row[:-1] for row in cells]
            table = console_table(section, headers, cells)
        console.print(table)


MIN_CONSOLE_COLUMNS = 6  # model, slots, test metric, test loss, n, div


def natural_width(console: Console, table: Table) -> int:
    """Characters the table needs with no cell folded (measured as if the terminal were unbounded)."""
    from rich.measure import Measurement

    return Measurement.get(console, console.options.update(max_width=100_000), table).maximum


# What a console column needs said, said under the table only when the column is printed.
CONSOLE_NOTES = (
    (("test metric", "test loss"), "mean ± std over completed seeds"),
    (("gap metric", "gap loss"), "gaps at the last epoch (metric: train − val, loss: val − train)"),
    (("log10 g₁/g_T",), "g_t = ‖∂L/∂h_t‖ at the last probed epoch"),
    (("solved", "to solve"), "solved: runs that reached the task's criterion; to solve: median updates (Kaplan–Meier)"),
    (("vs ref Δ, p",), f"vs ref: Δ test metric against sigmoid/tanh/tanh, Holm-corrected p, {SIGNIFICANT_MARK} significant"),
)


def console_caption(headers: list[str], cells: list[list[str]]) -> str:
    notes = [note for columns, note in CONSOLE_NOTES
             if any(h in columns or (h.startswith("test ") and "test metric" in columns) for h in headers)]
    marks = marks_note(cells).rstrip(".")
    return "; ".join(notes + ([marks] if marks else []) + ["more columns in summary.md and index.html"])


def console_table(section: "TaskSection", headers: list[str], cells: list[list[str]], caption: bool = True) -> Table:
    table = Table(title=escape(f"{section.title} — baseline: {baseline_text(section)}") if caption else None,
                  title_justify="left",
                  caption=None if not caption else console_caption(headers, cells),
                  caption_justify="left", box=box.SIMPLE_HEAD, collapse_padding=True,
                  show_edge=False, pad_edge=False)  # every column counts on a terminal
    for header in headers:
        is_text = header in TEXT_COLUMNS
        # fold rather than cut: a narrow terminal must not hide part of a number or a label
        table.add_column(escape(header), justify="left" if is_text else "right", overflow="fold",
                         no_wrap=header == "model")
    for row_cells in cells:
        table.add_row(*(escape(c) for c in row_cells))
    return table


# ------------------------------------------------------------------------------------------- LaTeX


def tex(text) -> str:
    replacements = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\^{}", "±": r"$\pm$",
                    "−": "-", "—": "--", "‖": r"$\|$", "∂": r"$\partial$", "∞": r"$\infty$"}
    return "".join(replacements.get(ch, ch) for ch in str(text))


def write_latex(path: Path, summary: pd.DataFrame, sections: list[TaskSection], options: CompareOptions) -> Path:
    """One booktabs table per task: mean ± std, 95% CI, n, gap, vanishing, and the significance mark."""
    adjustment = "Benjamini-Hochberg" if options.fdr else "Holm"
    lines = [f"% written by actstudy report; needs \\usepackage{{booktabs}}. * = differs from the reference "
             f"at adjusted p < 0.05 ({adjustment} over the {options.family}), {options.test} test; nothing is "
             "starred in a section at the floor; star = the best mean test metric of the task."]
    for section in sections:
        rows = section_rows(summary, section)
        lines += [
            r"\begin{table}[t]", r"\centering", r"\small",
            r"\begin{tabular}{llrrrrr}", r"\toprule",
            r"model & gate, candidate, output & test " + tex("/".join(section.metric_names))
            + r" & 95\% CI & $n$ & gap (loss) & $\log_{10}\|\partial L/\partial h_1\|/\|\partial L/\partial h_T\|$ \\",
            r"\midrule",
        ]
        for _, row in rows.iterrows():
            mark = r"$^{*}$" if row.get("significant") is True else ""
            mark += r" $\star$" if row.get("best") == True else ""  # noqa: E712 (numpy bool)
            other = f" {row['other']}" if row["other"] else ""
            lines.append(" & ".join([
                tex(row["model"] + other), tex(f"{row['gate']}, {row['candidate']}, {row['output']}"),
                tex(fmt_mean_std(row["test_metric_mean"], row["test_metric_std"], int(row["n_seeds"]))) + mark,
                tex(ci_text(row)), str(row["n_seeds"]), tex(fmt(row["gap_loss"], 3)),
                tex(fmt(row["vanishing_ratio"], 3)),
            ]) + r" \\")
        baseline = baseline_text(section)
        lines += [r"\bottomrule", r"\end{tabular}",
                  rf"\caption{{{tex(section.title)}: mean $\pm$ std over seeds; baseline {tex(baseline)}.}}",
                  r"\end{table}", ""]
    path.write_text("\n".join(lines))
    return path

