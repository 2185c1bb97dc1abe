"""RunRecords → ConfigGroups (one per configuration) → TaskSections (one per task and sequence length).

Runs that differ only in the keys rundir.py names as not part of a run's identity (`NOT_IDENTITY_KEYS`) or
as what repetitions vary (`REPETITION_KEYS`: the seed) are one configuration. The device is part of the
identity: CPU and GPU runs of one configuration are two groups, as they are two runs in a sweep.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from actstudy import rundir
from actstudy.report.loading import RunRecord
from actstudy.slots import DEFAULT_ACTIVATIONS, SLOTS

ACTIVATION_SLOTS = tuple(DEFAULT_ACTIVATIONS)  # gate, candidate, output
# Keys that change between repetitions of one experiment without changing the experiment itself, matched
# against the last part of a dotted key ("seed" also catches e.g. "train.seed"). run_dir, output_dir and
# out_dir are where older versions recorded a run's own folder in its config: different for every run.
# A continued run (continue_from) pools with fresh runs of the same configuration: it computed the same thing.
POOLED_KEYS = frozenset(rundir.NOT_IDENTITY_KEYS + rundir.REPETITION_KEYS
                        + (rundir.CONTINUE_KEY, "run_dir", "output_dir", "out_dir"))


BEST_MARK = "★"  # beside the best configuration of a task, in every table and plot


@dataclass
class ConfigGroup:
    """Runs that share every config value except the pooled keys (the seed, and how a run was executed)."""

    identity: tuple[tuple[str, str], ...]  # the config minus pooled keys, as comparable pairs
    task_name: str
    seq_len: Any  # task.seq_len, or None for tasks without one
    cell: str
    activations: tuple[str, str, str]  # gate, candidate, output
    runs: list[RunRecord]
    extras: dict[str, str] = field(default_factory=dict)  # short key → value, where groups differ
    metric_name: str = "metric"  # the task's metric, as summary.json names it
    task_title: str = ""  # e.g. "adding T=100"
    config_label: str = ""  # the label within its task, e.g. "lstm / sigmoid,tanh,tanh hidden_size=32"
    best: bool = False  # the highest mean test metric of its task section (mark_best)

    @property
    def label(self) -> str:
        return f"{self.task_title} / {self.config_label}"

    @property
    def completed(self) -> list[RunRecord]:
        return [r for r in self.runs if r.status == rundir.COMPLETED]

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.runs)

    @property
    def baseline(self) -> tuple[float, float]:
        """(loss, metric) of the task's memoryless baseline, from the first run that recorded it."""
        for run in self.runs:
            if not (math.isnan(run.baseline_loss) and math.isnan(run.baseline_metric)):
                return run.baseline_loss, run.baseline_metric
        return math.nan, math.nan

    def test_metrics(self) -> np.ndarray:
        """One test metric per completed seed (at the best validation epoch): the sample that tables
        summarise and that statistical comparisons between groups start from."""
        return np.array([r.test_metric for r in self.completed], dtype=float)

    def test_losses(self) -> np.ndarray:
        return np.array([r.test_loss for r in self.completed], dtype=float)


@dataclass
class TaskSection:
    """All groups of one task (and sequence length): one markdown section and one file per plot kind."""

    task_name: str
    seq_len: Any
    title: str  # "adding T=100"
    slug: str  # used in file names: "adding", or "adding_T100" when several lengths were run
    groups: list[ConfigGroup]

    @property
    def metric_names(self) -> list[str]:
        return sorted({g.metric_name for g in self.groups})

    def baselines(self) -> list[tuple[float, float]]:
        seen: list[tuple[float, float]] = []
        for group in self.groups:
            value = group.baseline
            if math.isnan(value[0]) and math.isnan(value[1]):
                continue  # failed runs record no baseline
            if not any(same_number(value[0], s[0]) and same_number(value[1], s[1]) for s in seen):
                seen.append(value)
        return seen


# ------------------------------------------------------------------------------------------- values


def is_identity_key(key: str) -> bool:
    """Whether a flattened config key tells configurations apart (Hydra's own settings never do)."""
    parts = key.split(".")
    return parts[-1] not in POOLED_KEYS and "hydra" not in parts


def comparable(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def sort_value(value: Any) -> tuple:
    """Sort numbers by value (32 before 128) and everything else by its text."""
    if isinstance(value, bool) or value is None:
        return (1, str(value))
    if isinstance(value, (int, float)):
        return (0, float(value), "")
    return (1, str(value))


def show_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "null"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(show_value(v) for v in value) + "]"
    return str(value)


def file_safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "task"


def same_number(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def short_keys(keys: list[str], all_keys: set[str]) -> dict[str, str]:
    """The shortest dotted suffix of each key that no other config key ends with."""
    short = {}
    for key in keys:
        parts = key.split(".")
        for n in range(1, len(parts) + 1):
            suffix = ".".join(parts[-n:])
            clashes = [k for k in all_keys if k != key and (k == suffix or k.endswith("." + suffix))]
            if not clashes:
                short[key] = suffix
                break
        else:
            short[key] = key
    return short


# ----------------------------------------------------------------------------------------- grouping


def group_runs(runs: list[RunRecord]) -> list[ConfigGroup]:
    """One group per distinct configuration, pooled keys (the seed, how a run was executed) ignored."""
    by_identity: dict[tuple, ConfigGroup] = {}
    for run in runs:
        identity = tuple(sorted((k, comparable(v)) for k, v in run.config.items() if is_identity_key(k)))
        group = by_identity.get(identity)
        if group is None:
            c = run.config
            group = ConfigGroup(
                identity=identity,
                task_name=str(c["task.name"]),
                seq_len=c.get("task.seq_len"),
                cell=str(c["model.cell"]),
                activations=tuple(str(c[f"model.activation.{s}"]) for s in ACTIVATION_SLOTS),
                runs=[],
            )
            by_identity[identity] = group
        group.runs.append(run)
    return list(by_identity.values())


def build_sections(groups: list[ConfigGroup]) -> list[TaskSection]:
    """Split groups by task and sequence length, label them, and sort everything for the tables."""
    by_task: dict[tuple[str, str], list[ConfigGroup]] = {}
    for group in groups:
        by_task.setdefault((group.task_name, comparable(group.seq_len)), []).append(group)
    lengths_per_task: dict[str, int] = {}
    for name, _ in by_task:
        lengths_per_task[name] = lengths_per_task.get(name, 0) + 1

    sections = []
    for (name, _), members in by_task.items():
        seq_len = members[0].seq_len
        title = name if seq_len is None else f"{name} T={show_value(seq_len)}"
        slug = name if lengths_per_task[name] == 1 else f"{name}_T{show_value(seq_len)}"
        label_groups(members, title)
        name_metrics(members)
        members.sort(key=group_sort_key)
        mark_best(members)
        sections.append(TaskSection(name, seq_len, title, file_safe(slug), members))
    sections.sort(key=lambda s: (s.task_name, sort_value(s.seq_len)))
    return sections


def mark_best(members: list[ConfigGroup]) -> None:
    """Mark the configuration with the highest mean test metric of each metric in one task section (every
    metric a task reports is higher-is-better: accuracies, recall, R²); ties are all marked. A section of one
    configuration has no best to point out."""
    by_metric: dict[str, list[tuple[float, ConfigGroup]]] = {}
    for group in members:
        values = group.test_metrics()
        values = values[~np.isnan(values)]
        if values.size:
            by_metric.setdefault(group.metric_name, []).append((float(values.mean()), group))
    for scored in by_metric.values():
        if len(scored) < 2:
            continue
        top = max(score for score, _ in scored)
        for score, group in scored:
            group.best = score == top


def label_groups(members: list[ConfigGroup], task_title: str) -> None:
    """Give each group of one task a short label: cell / activations, plus the keys that tell them apart.

    A key joins the label when its value differs between groups of the same cell. Keys that differ only
    from one cell to another are the cells' own defaults (the LSTM's forget_bias beside the GRU's) and
    the cell name already tells those groups apart; naming them on every label would only add noise.
    """
    configs_by_cell: dict[str, list[dict[str, str]]] = {}
    for group in members:
        configs_by_cell.setdefault(group.cell, []).append(dict(group.identity))
    all_keys = set().union(*(c for configs in configs_by_cell.values() for c in configs))
    labelled_keys = {"task.name", "task.seq_len", "model.cell"} | {f"model.activation.{s}" for s in ACTIVATION_SLOTS}
    missing = comparable("—")
    differing = sorted(
        key for key in all_keys - labelled_keys
        if any(len({c.get(key, missing) for c in configs}) > 1 for configs in configs_by_cell.values())
    )
    short = short_keys(differing, all_keys)
    for group in members:
        config = group.runs[0].config
        group.extras = {short[k]: show_value(config.get(k, "—")) for k in differing}
        extras = " ".join(f"{k}={v}" for k, v in group.extras.items())
        group.task_title = task_title
        # A slot the cell does not have (the GRU's output, the RNN's gate and output) reads "-".
        slots = SLOTS.get(group.cell, ACTIVATION_SLOTS)
        named = [name if slot in slots else "-" for slot, name in zip(ACTIVATION_SLOTS, group.activations)]
        group.config_label = f"{group.cell} / {','.join(named)}" + (f" {extras}" if extras else "")
    # Different values can print alike (1 and 1.0); a label must still name one group only.
    seen: dict[str, int] = {}
    for group in members:
        if group.config_label in seen:
            seen[group.config_label] += 1
            group.config_label += f" #{seen[group.config_label]}"
        else:
            seen[group.config_label] = 1


def group_sort_key(group: ConfigGroup) -> tuple:
    config = group.runs[0].config
    other_values = tuple(sort_value(value) for key, value in sorted(config.items()) if is_identity_key(key))
    return (group.cell, group.activations, other_values)


def name_metrics(members: list[ConfigGroup]) -> None:
    """Each group's metric name; a group of failed runs only (no name recorded) takes its task's."""
    task_names = [r.metric_name for g in members for r in g.runs if r.metric_name]
    fallback = max(set(task_names), key=task_names.count) if task_names else "metric"
    for group in members:
        names = [r.metric_name for r in group.runs if r.metric_name]
        group.metric_name = names[0] if names else fallback


def legend_label(group: ConfigGroup) -> str:
    """The group's label with how many seeds completed and how many did not, as plots name it."""
    note = f"n={len(group.completed)}"
    if group.count(rundir.DIVERGED):
        note += f", {group.count(rundir.DIVERGED)} diverged"
    if group.count(rundir.FAILED):
        note += f", {group.count(rundir.FAILED)} failed"
    return f"{BEST_MARK} {group.config_label} ({note})" if group.best else f"{group.config_label} ({note})"
