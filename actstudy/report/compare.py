"""TaskSections → the comparisons a reviewer accepts: learning speed, paired tests, effect sizes, power, families.

What each configuration is compared with, and how:

- **Its reference**: by default the same configuration with the classic activations; `--reference KEY=VALUE`
  names another (e.g. `model.variant=vanilla`): the reference of a configuration is the one that has those
  values and agrees with it on every other key (keys chosen by `--select` aside).
- **Paired or not**: when both have finished runs for the same seeds (same data, data order and
  initialisation), the per-seed differences are tested (paired t, or Wilcoxon signed-rank with
  `--test mannwhitney`); otherwise the two samples are (Welch's t, or Mann–Whitney U).
- **Effect and power**: the difference with its 95% CI, Hedges' g, and the minimum detectable difference at
  80% power for these n and this spread; a difference below it is flagged underpowered.
- **Never dropped silently**: diverged runs count in the divergence rate (Fisher exact against the
  reference); `--diverged best` also scores each at its best epoch before it diverged.
- **Learning speed**: the fraction of runs solved (Wilson CI) and the Kaplan–Meier median of updates to solve
  (unsolved runs censored at their budget), against the reference by Fisher's exact and the log-rank test.
- **One family**: every p-value the report computes (metric, divergence, solved, log-rank) is adjusted
  together, over the whole report by default (`--family task|cell` for narrower families), by Holm or, with
  `--fdr`, Benjamini–Hochberg.
- **Overfitting**: the generalization gap at the last epoch (validation − train loss) against the
  reference's, paired by seed as the test metric is, with its 95% CI and a p-value adjusted over the gap
  comparisons of the same family (a question of its own: adding it leaves the other adjusted p-values as
  they were).
- **The floor**: a reference whose test metric is not significantly above the task's baseline leaves every
  comparison with it at the floor, and nothing at the floor is starred.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

import numpy as np
import pandas as pd

from actstudy import rundir
from actstudy.report.grouping import ACTIVATION_SLOTS, ConfigGroup, TaskSection, comparable, show_value
from actstudy.report.loading import RunRecord
from actstudy.slots import DEFAULT_ACTIVATIONS
from actstudy.stats import (
    ALPHA,
    PAIRED_TESTS,
    TESTS,
    above_baseline_p,
    benjamini_hochberg,
    fisher_p,
    hedges_g,
    holm,
    km_median,
    logrank_p,
    mean_difference,
    min_detectable_difference,
    paired_p,
    two_sample_p,
    wilson_interval,
)

FAMILIES = ("report", "task", "cell")
DIVERGED_POLICIES = ("exclude", "best")
# Every p-value column a comparison row carries; each gets an adjusted twin "<name>_adjusted".
P_COLUMNS = ("p_value", "diverged_p", "solved_p", "logrank_p")
# The overfitting comparison: val − train loss at the last epoch against the reference's (its own family).
GAP_COLUMNS = ["gap_diff_vs_reference", "gap_diff_ci_low", "gap_diff_ci_high", "gap_p_value", "gap_p_value_adjusted"]
LEARNING_COLUMNS = [
    "solve_at", "runs_solved", "runs_finished", "fraction_solved", "fraction_solved_ci_low",
    "fraction_solved_ci_high", "median_updates_to_solve", "update_budget",
]
COMPARISON_COLUMNS = [
    "reference", "test", "paired", "n_compared", "diff_vs_reference", "diff_ci_low", "diff_ci_high", "hedges_g",
    "min_detectable_diff", "underpowered", *P_COLUMNS, *(f"{c}_adjusted" for c in P_COLUMNS), "adjustment",
    "family", "significant", "at_the_floor", "reference_above_baseline_p",
    *GAP_COLUMNS,
]


class OptionError(ValueError):
    """A report option names something the runs do not have; one line for the user."""


@dataclass
class CompareOptions:
    test: str = "welch"  # welch | mannwhitney: the parametric or the rank test, paired or not
    family: str = "report"  # report | task | cell: over which comparisons p-values are adjusted together
    fdr: bool = False  # Benjamini–Hochberg instead of Holm
    reference: dict[str, str] = field(default_factory=dict)  # KEY → VALUE; empty: the classic activations
    diverged: str = "exclude"  # exclude | best: whether a diverged run is scored at its best epoch
    select: tuple[str, ...] = ()  # keys tuned per configuration on validation (see `select_groups`)

    def check(self) -> None:
        if self.test not in TESTS:
            raise OptionError(f"--test {self.test!r} is not valid; choose one of: {', '.join(TESTS)}")
        if self.family not in FAMILIES:
            raise OptionError(f"--family {self.family!r} is not valid; choose one of: {', '.join(FAMILIES)}")
        if self.diverged not in DIVERGED_POLICIES:
            raise OptionError(f"--diverged {self.diverged!r} is not valid; choose one of: "
                              f"{', '.join(DIVERGED_POLICIES)}")


def parse_reference(pairs: list[str]) -> dict[str, str]:
    """`--reference KEY=VALUE ...` → {KEY: VALUE}; a pair without '=' is refused in one line."""
    reference = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise OptionError(f"--reference {pair!r} is not valid: give KEY=VALUE, e.g. model.variant=vanilla")
        reference[key.strip()] = value.strip()
    return reference


# ------------------------------------------------------------------------------------------- samples


def scored_runs(group: ConfigGroup, diverged: str) -> list[RunRecord]:
    """The runs whose test metric enters comparisons: completed ones, and diverged ones at their best epoch
    when `diverged` is "best" (the summary's test result is that of the best epoch before divergence)."""
    keep = (rundir.COMPLETED, rundir.DIVERGED) if diverged == "best" else (rundir.COMPLETED,)
    return [r for r in group.runs if r.status in keep and math.isfinite(r.test_metric)]


def by_seed(runs: list[RunRecord], value=attrgetter("test_metric")) -> dict[Any, float]:
    return {comparable(r.seed): v for r in runs if math.isfinite(v := value(r))}


def finished(group: ConfigGroup) -> list[RunRecord]:
    return [r for r in group.runs if r.status in rundir.FINISHED]


# ------------------------------------------------------------------------------------- learning speed


def solve_times(group: ConfigGroup) -> tuple[np.ndarray, np.ndarray] | None:
    """(updates, solved) per finished run, for Kaplan–Meier: a solved run at its updates_to_solve, an unsolved
    one censored at its budget (a diverged run never solves, so it too is unsolved at its budget). None when
    no run of the group had a criterion for being solved."""
    runs = [r for r in finished(group) if r.solve_at is not None]
    if not runs:
        return None
    solved = np.array([r.updates_to_solve is not None for r in runs])
    times = np.array([r.updates_to_solve if r.updates_to_solve is not None else r.update_budget for r in runs],
                     dtype=float)
    return times, solved


def learning_row(group: ConfigGroup) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(LEARNING_COLUMNS, math.nan)
    data = solve_times(group)
    if data is None:
        return row
    times, solved = data
    low, high = wilson_interval(int(solved.sum()), len(solved))
    criteria = {r.solve_at for r in finished(group) if r.solve_at is not None}
    row.update(
        solve_at=criteria.pop() if len(criteria) == 1 else math.nan,
        runs_solved=int(solved.sum()), runs_finished=len(solved), fraction_solved=float(solved.mean()),
        fraction_solved_ci_low=low, fraction_solved_ci_high=high, median_updates_to_solve=km_median(times, solved),
        update_budget=float(np.nanmax([r.update_budget for r in finished(group)])),
    )
    return row


def learning_frame(sections: list[TaskSection]) -> pd.DataFrame:
    rows = [{"label": g.label, **learning_row(g)} for s in sections for g in s.groups]
    return pd.DataFrame(rows, columns=["label", *LEARNING_COLUMNS])


# -------------------------------------------------------------------------------------------- references


def _matches(value: Any, wanted: str) -> bool:
    """A config value against a VALUE typed on the command line (text; numbers compare as numbers)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return float(wanted) == float(value)
        except ValueError:
            return False
    return show_value(value) == wanted


def reference_map(section: TaskSection, options: CompareOptions) -> dict[str, ConfigGroup]:
    """label → the group each group is compared with (a reference is not compared with itself)."""
    if options.reference:
        named = set(options.reference)

        def is_reference(g: ConfigGroup) -> bool:
            config = g.runs[0].config
            return all(k in config and _matches(config[k], v) for k, v in options.reference.items())
    else:
        named = {f"model.activation.{slot}" for slot in ACTIVATION_SLOTS} | {"model.activation.negative_slope"}

        def is_reference(g: ConfigGroup) -> bool:
            return dict(zip(ACTIVATION_SLOTS, g.activations)) == DEFAULT_ACTIVATIONS

    ignored = named | set(options.select)

    def key(g: ConfigGroup) -> tuple:
        return (g.metric_name, tuple((k, v) for k, v in g.identity if k not in ignored))

    references = {key(g): g for g in section.groups if is_reference(g)}
    return {g.label: references[key(g)] for g in section.groups
            if key(g) in references and references[key(g)] is not g}


def check_reference(sections: list[TaskSection], options: CompareOptions) -> None:
    """A --reference that no configuration matches is a mistake worth one line, not an empty column."""
    for key, value in options.reference.items():
        values = {show_value(r.config[key]) for s in sections for g in s.groups for r in g.runs if key in r.config}
        if not values:
            raise OptionError(f"--reference {key}={value}: no run has the key {key}")
        if not any(_matches(r.config[key], value) for s in sections for g in s.groups for r in g.runs
                   if key in r.config):
            raise OptionError(f"--reference {key}={value}: no run has that value; values present: "
                              f"{', '.join(sorted(values))}")


# ------------------------------------------------------------------------------------------ comparisons


def samples(a: dict[Any, float], b: dict[Any, float], options: CompareOptions):
    """(xa, xb, paired, p, test name): paired by seed when both have the same seeds, else two samples."""
    paired = len(a) >= 2 and set(a) == set(b)
    if paired:
        seeds = sorted(a)
        xa, xb = np.array([a[s] for s in seeds]), np.array([b[s] for s in seeds])
        return xa, xb, True, paired_p(xa, xb, options.test), PAIRED_TESTS[options.test]
    xa, xb = np.array(list(a.values())), np.array(list(b.values()))
    return xa, xb, False, two_sample_p(xa, xb, options.test), TESTS[options.test]


def gap_comparison(a_runs: list[RunRecord], b_runs: list[RunRecord], options: CompareOptions) -> dict[str, Any]:
    """The last epoch's gap (val − train loss) against the reference's: difference, 95% CI, raw p."""
    gap = attrgetter("gap_loss")
    a, b = by_seed(a_runs, gap), by_seed(b_runs, gap)
    if not a or not b:
        return {}
    xa, xb, paired, p, _ = samples(a, b, options)
    diff = mean_difference(xa, xb, paired=paired)
    return {"gap_diff_vs_reference": diff.diff, "gap_diff_ci_low": diff.low, "gap_diff_ci_high": diff.high,
            "gap_p_value": p}


def compare(group: ConfigGroup, reference: ConfigGroup, options: CompareOptions) -> dict[str, Any]:
    """One comparison row: the test metric (paired when the seeds match), its effect size and power, the
    divergence rate, fraction solved and time to solve against the reference's, and the overfitting gap."""
    a_runs, b_runs = scored_runs(group, options.diverged), scored_runs(reference, options.diverged)
    xa, xb, paired, p, test = samples(by_seed(a_runs), by_seed(b_runs), options)
    diff = mean_difference(xa, xb, paired=paired)
    mdd = min_detectable_difference(diff.se, diff.dof)
    row: dict[str, Any] = {
        "reference": reference.config_label, "test": test, "paired": paired, "n_compared": f"{len(xa)} vs {len(xb)}",
        "diff_vs_reference": diff.diff, "diff_ci_low": diff.low, "diff_ci_high": diff.high,
        "hedges_g": hedges_g(xa, xb), "min_detectable_diff": mdd,
        "underpowered": bool(math.isfinite(mdd) and abs(diff.diff) < mdd),
        "p_value": p,
    }
    fa, fb = finished(group), finished(reference)
    row["diverged_p"] = fisher_p(sum(r.status == rundir.DIVERGED for r in fa), len(fa),
                                 sum(r.status == rundir.DIVERGED for r in fb), len(fb))
    ta, tb = solve_times(group), solve_times(reference)
    if ta is not None and tb is not None:
        row["solved_p"] = fisher_p(int(ta[1].sum()), len(ta[1]), int(tb[1].sum()), len(tb[1]))
        row["logrank_p"] = logrank_p(ta[0], ta[1], tb[0], tb[1])
    row.update(gap_comparison(a_runs, b_runs, options))
    return row


def floor_p(reference: ConfigGroup, options: CompareOptions) -> float:
    """One-sided p that the reference's test metric is above the task's baseline metric."""
    return above_baseline_p([r.test_metric for r in scored_runs(reference, options.diverged)], reference.baseline[1])


def comparison_frame(sections: list[TaskSection], options: CompareOptions) -> pd.DataFrame:
    """Every group against its reference; p-values adjusted over the chosen family; nothing at the floor
    starred. A group without a reference (or a reference itself) has a row of empty comparison columns."""
    options.check()
    check_reference(sections, options)
    rows: list[dict[str, Any]] = []
    for section in sections:
        references = reference_map(section, options)
        floors = {id(ref): floor_p(ref, options) for ref in references.values()}
        for group in section.groups:
            row: dict[str, Any] = {"label": group.label, **dict.fromkeys(COMPARISON_COLUMNS, math.nan)}
            row.update(reference="", test="", paired=False, underpowered=False, significant=False,
                       at_the_floor=False, adjustment="", family="")
            reference = references.get(group.label)
            if reference is not None:
                row.update(compare(group, reference, options))
                p_floor = floors[id(reference)]
                row["reference_above_baseline_p"] = p_floor
                row["at_the_floor"] = not (p_floor < ALPHA)
                row["family"] = {"report": "report", "task": section.title,
                                 "cell": f"{section.title} / {group.cell}"}[options.family]
            rows.append(row)
    adjust(rows, options)
    return pd.DataFrame(rows, columns=["label", *COMPARISON_COLUMNS])


def adjust(rows: list[dict[str, Any]], options: CompareOptions) -> None:
    """Adjust every p-value of every comparison in a family together; star the metric comparisons that
    stay below ALPHA, unless at the floor."""
    method = benjamini_hochberg if options.fdr else holm
    families: dict[tuple[str, str], list[tuple[dict, str]]] = {}
    for row in rows:
        if row["family"]:
            for column in P_COLUMNS:
                families.setdefault((row["family"], "outcome"), []).append((row, column))
            families.setdefault((row["family"], "gap"), []).append((row, "gap_p_value"))
    for members in families.values():
        adjusted = method([row[column] for row, column in members])
        for (row, column), value in zip(members, adjusted):
            row[f"{column}_adjusted"] = value
    for row in rows:
        if row["family"]:
            row["adjustment"] = "Benjamini–Hochberg" if options.fdr else "Holm"
            row["significant"] = bool(row["p_value_adjusted"] < ALPHA) and not row["at_the_floor"]


def floor_sections(summary: pd.DataFrame, sections: list[TaskSection]) -> dict[str, bool]:
    """slug → whether the section is at the floor: every comparison in it is against a reference at the floor
    (a section with no comparison is not marked)."""
    marked = {}
    for section in sections:
        rows = summary[summary["label"].isin([g.label for g in section.groups]) & (summary["reference"] != "")]
        marked[section.slug] = bool(len(rows)) and bool(rows["at_the_floor"].all())
    return marked


# -------------------------------------------------------------------------------------------- selection


@dataclass
class Selection:
    """What `select_groups` chose for one configuration."""

    label: str  # the chosen group's label
    chosen: str  # e.g. "optim.lr=0.003"
    grid: str  # every value tried, e.g. "0.001, 0.003, 0.01"
    at_edge: bool  # the chosen value is the smallest or largest of a numeric grid


def selection_score(group: ConfigGroup) -> tuple[float, float, float]:
    """How good a group is on validation, larger is better. Where the task has a solved criterion (judged on
    validation), the fraction of seeds solved comes first and the updates they took second (`solve_times`: a
    seed that did not solve, diverged ones too, counts its whole budget): runs stopped once solved all end near
    the criterion, so their best validation metric alone would pick among solving rates by noise. Without a
    criterion, the fraction of seeds that did not diverge comes first: a value where most seeds blew up is not
    chosen for the metric of the one that survived. The mean best validation metric of the completed seeds
    decides the rest."""
    if not group.completed:
        return (-math.inf, -math.inf, -math.inf)
    metric = float(np.mean([r.best_val_metric for r in group.completed]))
    data = solve_times(group)
    if data is None:
        return (len(group.completed) / len(finished(group)), 0.0, metric)
    times, solved = data
    updates = float(np.mean(times))
    return (float(solved.mean()), -updates if np.isfinite(updates) else 0.0, metric)


def select_groups(sections: list[TaskSection], keys: tuple[str, ...]) -> tuple[list[TaskSection], list[Selection]]:
    """Keep, for each configuration, only the value of `keys` that is best on validation (`selection_score`:
    fraction solved and updates to solve where the task has a criterion, then the mean of each completed run's
    best validation metric); test numbers are never looked at. Groups whose runs all failed cannot be chosen.
    Returns the sections with the chosen groups only, and what was chosen."""
    present = {k for s in sections for g in s.groups for r in g.runs for k in r.config}
    for key in keys:
        if key not in present:
            raise OptionError(f"--select {key}: no run has the key {key}")
    chosen_sections, selections = [], []
    for section in sections:
        buckets: dict[tuple, list[ConfigGroup]] = {}
        for group in section.groups:
            bucket = (group.metric_name, tuple((k, v) for k, v in group.identity if k not in keys))
            buckets.setdefault(bucket, []).append(group)
        keep = []
        for members in buckets.values():
            best = max(members, key=selection_score)  # the first of equals, as the sweep listed them
            keep.append(best)
            if len(members) > 1:
                selections.append(_selection(best, members, keys))
        section.groups = [g for g in section.groups if any(g is k for k in keep)]
        chosen_sections.append(section)
    return chosen_sections, selections


def _selection(best: ConfigGroup, members: list[ConfigGroup], keys: tuple[str, ...]) -> Selection:
    config = best.runs[0].config
    # where every run at every value diverged, no value was chosen on merit and none sits at an edge
    chose = any(g.completed for g in members)
    chosen = " ".join(f"{k}={show_value(config.get(k))}" for k in keys) if chose else "none: no value completed a run"
    at_edge = False
    grids = []
    for key in keys:
        values = sorted({comparable(g.runs[0].config.get(key)) for g in members})
        raw = [g.runs[0].config.get(key) for g in members]
        numeric = [v for v in raw if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if len(numeric) == len(raw) and len(set(numeric)) > 1:
            here = config.get(key)
            at_edge |= chose and here in (min(numeric), max(numeric))
            values = [show_value(v) for v in sorted(set(numeric))]
        grids.append(f"{key}: {', '.join(values)}")
    return Selection(best.label, chosen, "; ".join(grids), at_edge)


def selection_frame(selections: list[Selection]) -> pd.DataFrame:
    rows = [{"label": s.label, "selected": s.chosen, "selected_from": s.grid, "selected_at_edge": s.at_edge}
            for s in selections]
    return pd.DataFrame(rows, columns=["label", "selected", "selected_from", "selected_at_edge"])
