"""TaskSections → DataFrames: one row per configuration group, numbers at full precision.

`summary_frame` is the core of summary.csv; `statistics_frame` adds the spread over seeds of every quantity,
the overfitting onset and the activation statistics; `comparison_frame` tests each group against its
reference (the same configuration with the classic activations). All three are keyed by the group's label.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from actstudy import rundir
from actstudy.probe import STAT_DESCRIPTIONS
from actstudy.report.grouping import ACTIVATION_SLOTS, ConfigGroup, TaskSection
from actstudy.slots import DEFAULT_ACTIVATIONS, SLOTS
from actstudy.stats import ALPHA, holm, mean_of, mean_std, spread, two_sample_p

SUMMARY_COLUMNS = [
    "task", "seq_len", "model", "gate", "candidate", "output", "other", "label", "metric",
    "test_metric_mean", "test_metric_std", "test_loss_mean", "test_loss_std",
    "n_seeds", "best", rundir.DIVERGED, rundir.FAILED, rundir.RUNNING,  # best: grouping.mark_best
    "gap_metric", "gap_loss", "vanishing_ratio", "vanishing_epoch", "seconds_per_epoch",
    "baseline_loss", "baseline_metric",
]

# The statistics over seeds added to each row: quantity → how a run provides it. Each becomes three columns,
# <name>_mean, <name>_std and <name>_ci95 (half-width of the 95% t interval), over completed seeds.
SPREAD_QUANTITIES = {
    "test_metric": lambda r: r.test_metric,
    "best_val_metric": lambda r: r.best_val_metric,
    "gap_loss_end": lambda r: r.gap_loss,
    "gap_loss_at_best": lambda r: r.gap_at_best,
    "vanishing_ratio": lambda r: r.vanishing_ratio,
    "decay_per_step": lambda r: r.decay_per_step,
    "seconds_per_epoch": lambda r: r.seconds_per_epoch,
    "wall_seconds": lambda r: r.wall_seconds,
}
# activation_stats.csv at the last probe, as the probe names them; the state statistic is |c_t| for an LSTM
# and |h_t| otherwise
ACTIVATION_STAT_NAMES = tuple(STAT_DESCRIPTIONS)
COMPARISON_COLUMNS = ["reference", "diff_vs_reference", "p_value", "p_holm", "significant", "test"]


def summary_frame(sections: list[TaskSection]) -> pd.DataFrame:
    """One row per group, in section order; numbers at full precision (summary.csv)."""
    rows = []
    for section in sections:
        for group in section.groups:
            completed = group.completed
            metric_mean, metric_std = mean_std(group.test_metrics())
            loss_mean, loss_std = mean_std(group.test_losses())
            if len(completed) == 1:  # one seed has no spread: the std is undefined, not 0
                metric_std = loss_std = math.nan
            # a slot the cell does not have reads "-", as in the configuration's label
            slots = dict(zip(ACTIVATION_SLOTS, group.activations))
            shown = {slot: name if slot in SLOTS.get(group.cell, ACTIVATION_SLOTS) else "-" for slot, name in slots.items()}
            probed = {r.grad_epoch for r in completed if r.grad_epoch is not None}
            baseline = group.baseline
            if math.isnan(baseline[0]) and math.isnan(baseline[1]) and section.baselines():
                baseline = section.baselines()[0]  # only failed runs here; the task's baseline still holds
            rows.append({
                "task": group.task_name,
                "seq_len": group.seq_len,
                "model": group.cell,
                **shown,
                "other": " ".join(f"{k}={v}" for k, v in group.extras.items()),
                "label": group.label,
                "metric": group.metric_name,
                "test_metric_mean": metric_mean,
                "test_metric_std": metric_std,
                "test_loss_mean": loss_mean,
                "test_loss_std": loss_std,
                "n_seeds": len(completed),
                "best": group.best,
                **{status: group.count(status) for status in (rundir.DIVERGED, rundir.FAILED, rundir.RUNNING)},
                "gap_metric": mean_of(r.gap_metric for r in completed),
                "gap_loss": mean_of(r.gap_loss for r in completed),
                "vanishing_ratio": mean_of(r.vanishing_ratio for r in completed),
                # Runs of one group normally probe the same epochs; if not, the latest is named.
                "vanishing_epoch": max(probed) if probed else None,
                "seconds_per_epoch": mean_of(r.seconds_per_epoch for r in completed),
                "baseline_loss": baseline[0],
                "baseline_metric": baseline[1],
            })
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def statistics_frame(sections: list[TaskSection]) -> pd.DataFrame:
    """Spread over seeds (mean, std, 95% CI) of every quantity, onset of overfitting, activation statistics."""
    rows = []
    for section in sections:
        for group in section.groups:
            completed = group.completed
            row: dict[str, Any] = {"label": group.label}
            for name, read in SPREAD_QUANTITIES.items():
                s = spread([read(r) for r in completed])
                row.update({f"{name}_mean": s.mean, f"{name}_std": s.std, f"{name}_ci95": s.ci95})
            onsets = [r.onset_epoch for r in completed if not math.isnan(r.onset_epoch)]
            row["overfit_runs"] = len(onsets)  # seeds in which validation loss turned up
            row["onset_epoch_mean"] = mean_of(onsets)
            for stat in ACTIVATION_STAT_NAMES:
                row[stat] = mean_of(r.activation_stats.get(stat, math.nan) for r in completed)
            rows.append(row)
    return pd.DataFrame(rows)


def reference_key(group: ConfigGroup) -> tuple:
    """What a group and its reference share: everything but the activations (and leaky_relu's slope)."""
    return tuple((k, v) for k, v in group.identity if not k.startswith("model.activation."))


def is_reference(group: ConfigGroup) -> bool:
    return dict(zip(ACTIVATION_SLOTS, group.activations)) == DEFAULT_ACTIVATIONS


def comparison_frame(sections: list[TaskSection], test: str = "welch") -> pd.DataFrame:
    """Each group's test metric against its reference (the same config with sigmoid/tanh/tanh), two-sided,
    Holm-corrected over the comparisons of one task section and cell."""
    rows = []
    for section in sections:
        families: dict[tuple, list[ConfigGroup]] = {}
        for group in section.groups:
            families.setdefault((group.cell, group.metric_name), []).append(group)
        for members in families.values():
            references = {reference_key(g): g for g in members if is_reference(g)}
            family = []
            for group in members:
                reference = references.get(reference_key(group))
                row = {"label": group.label, "reference": "", "diff_vs_reference": math.nan,
                       "p_value": math.nan, "p_holm": math.nan, "significant": False, "test": ""}
                if reference is not None and reference is not group:
                    a, b = group.test_metrics(), reference.test_metrics()
                    row.update(reference=reference.config_label, test=test,
                               diff_vs_reference=spread(a).mean - spread(b).mean,
                               p_value=two_sample_p(a, b, test))
                    family.append(row)
                rows.append(row)
            for row, adjusted in zip(family, holm([r["p_value"] for r in family])):
                row["p_holm"] = adjusted
                row["significant"] = bool(adjusted < ALPHA)
    return pd.DataFrame(rows, columns=["label", *COMPARISON_COLUMNS])


def merge_frames(summary: pd.DataFrame, statistics: pd.DataFrame, comparison: pd.DataFrame) -> pd.DataFrame:
    """summary.csv: the summary's columns, then the statistics it lacks, then the comparison."""
    statistics = statistics[[c for c in statistics.columns if c == "label" or c not in summary.columns]]
    return summary.merge(statistics, on="label", how="left").merge(comparison, on="label", how="left")
