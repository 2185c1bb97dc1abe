"""Run directories → summary tables and plots.

The report reads nothing but what `train.py` leaves in a run directory (docs/architecture.md, "Run
directory"): config.yaml, metrics.csv, grad_by_step.csv and summary.json. It never imports torch, so that
reporting on a thousand runs takes seconds rather than waiting for a heavy import.

The work is split into stages that a later extension (statistical tests, an HTML page) can reuse:

    find_run_dirs → load_run (one RunRecord each) → group_runs (ConfigGroup per configuration)
    → build_sections (TaskSection per task) → summary_frame → tables and plots.

Runs that differ only in their seed form one group. Means and standard deviations are taken over the
completed runs of a group; diverged and failed runs are counted but contribute no numbers, because a run
that stopped early has no comparable final state.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd
import yaml
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from actstudy.slots import DEFAULT_ACTIVATIONS, SLOTS
from actstudy.stats import ALPHA, TESTS, decay_per_step, holm, overfitting, spread, two_sample_p
from actstudy.rundir import is_retired

try:  # libyaml's parser is several times faster, which matters with a thousand config files
    from yaml import CSafeLoader as _YamlLoader
except ImportError:  # pragma: no cover - depends on how PyYAML was built
    from yaml import SafeLoader as _YamlLoader


class ReportError(ValueError):
    """The report cannot be made at all; the message is one line for the user."""


# Keys that change between repetitions of one experiment without changing the experiment itself.
# They are matched against the last part of a dotted key ("seed" also catches e.g. "train.seed").
RUN_ONLY_KEYS = frozenset({"seed", "quiet", "threads", "device", "run_dir", "output_dir", "out_dir", "logger",
                           "continue_from"})  # a continued run pools with fresh runs of its epochs
# The keys every run's config must have: they make up the configuration label.
REQUIRED_CONFIG_KEYS = (
    "task.name",
    "model.cell",
    "model.activation.gate",
    "model.activation.candidate",
    "model.activation.output",
)
ACTIVATION_SLOTS = tuple(DEFAULT_ACTIVATIONS)  # gate, candidate, output
REQUIRED_METRIC_COLUMNS = ("epoch", "train_loss", "val_loss")
KNOWN_STATUSES = ("completed", "diverged", "failed", "running")
REPORT_DIR_NAME = "report"
PLOT_DPI = 150
# The band drawn around every mean curve; named in the plots' titles.
BAND_DESCRIPTION = "band = min–max over seeds"


# ------------------------------------------------------------------------------------------- records


@dataclass
class RunRecord:
    """What the report needs from one run directory."""

    path: Path
    config: dict[str, Any]  # flattened: "model.activation.gate" → "sigmoid"
    status: str  # completed | diverged | failed | running (a run still in progress or killed)
    metric_name: str | None
    test_loss: float
    test_metric: float
    baseline_loss: float
    baseline_metric: float
    curves: dict[str, np.ndarray] | None = None  # metrics.csv by column, for completed runs
    grad_epoch: int | None = None  # the last epoch at which ‖∂L/∂h_t‖ was probed
    grad_steps: np.ndarray | None = None  # t = 1..T at that epoch
    grad_norms: np.ndarray | None = None  # ‖∂L/∂h_t‖ at that epoch
    gap_loss: float = math.nan  # val_loss − train_loss at the last epoch
    gap_metric: float = math.nan  # train_metric − val_metric at the last epoch
    vanishing_ratio: float = math.nan  # log10(‖∂L/∂h_1‖ / ‖∂L/∂h_T‖) at the last probed epoch
    seconds_per_epoch: float = math.nan
    wall_seconds: float = math.nan
    best_val_metric: float = math.nan  # the highest validation metric of any epoch
    onset_epoch: float = math.nan  # overfitting onset (stats.overfitting); NaN when none was seen
    gap_at_best: float = math.nan  # val − train loss at the epoch of lowest validation loss
    decay_per_step: float = math.nan  # slope of log10 ‖∂L/∂h_t‖ against t at the last probed epoch
    grad_table: dict[str, np.ndarray] | None = None  # all of grad_by_step.csv (epoch, t, grad_norm)
    activation_stats: dict[str, float] = field(default_factory=dict)  # activation_stats.csv, last epoch
    activation_curves: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # stat → (epochs, values)
    overrides: list[str] | None = None  # .hydra/overrides.yaml: the command line that made this run

    @property
    def seed(self) -> Any:
        return self.config.get("seed")


@dataclass
class ConfigGroup:
    """Runs that share every config value except the seed (and the other run-only keys)."""

    identity: tuple[tuple[str, str], ...]  # the config minus run-only keys, as comparable pairs
    task_name: str
    seq_len: Any  # task.seq_len, or None for tasks without one
    cell: str
    activations: tuple[str, str, str]  # gate, candidate, output
    runs: list[RunRecord]
    extras: dict[str, str] = field(default_factory=dict)  # short key → value, where groups differ
    metric_name: str = "metric"  # the task's metric, as summary.json names it
    task_title: str = ""  # e.g. "adding T=100"
    config_label: str = ""  # the label within its task, e.g. "lstm / sigmoid,tanh,tanh hidden_size=32"

    @property
    def label(self) -> str:
        return f"{self.task_title} / {self.config_label}"

    @property
    def completed(self) -> list[RunRecord]:
        return [r for r in self.runs if r.status == "completed"]

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.runs)

    @property
    def baseline(self) -> tuple[float, float]:
        """(loss, metric) of the task's memoryless baseline, from the first run that recorded it."""
        return _recorded_baseline(self.runs)

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
            if not any(_same_number(value[0], s[0]) and _same_number(value[1], s[1]) for s in seen):
                seen.append(value)
        return seen


@dataclass
class ReportResult:
    out_dir: Path
    files: list[Path]  # every file written, tables first
    summary: pd.DataFrame  # one row per configuration group (summary.csv)
    sections: list[TaskSection]
    skipped: list[tuple[Path, str]]  # unreadable run directories and why

    @property
    def groups(self) -> list[ConfigGroup]:
        return [g for s in self.sections for g in s.groups]


# ------------------------------------------------------------------------------------- finding runs


def is_run_dir(file_names: Iterable[str]) -> bool:
    names = set(file_names)
    return "summary.json" in names or {"config.yaml", "metrics.csv"} <= names


def find_run_dirs(dirs: list[Path]) -> list[Path]:
    """Every run directory at or below `dirs`, sorted, each once; report output folders are skipped."""
    found: set[Path] = set()
    for top in dirs:
        for here, subdirs, files in os.walk(top):
            if is_run_dir(files):
                found.add(Path(here).resolve())
                subdirs[:] = []  # a run's own subfolders (.hydra, checkpoints) hold no further runs
                continue
            # Hidden folders are Hydra's bookkeeping; report folders hold our own output.
            subdirs[:] = sorted(d for d in subdirs if d != REPORT_DIR_NAME and not d.startswith(".")
                                and not is_retired(Path(d)))  # runs `--force` set aside are history
    return sorted(found)


# -------------------------------------------------------------------------------------- reading runs


class UnreadableRun(Exception):
    """One run directory cannot be used; the message says why in a few words."""


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings → {"a.b.c": value}; lists stay as values."""
    flat: dict[str, Any] = {}
    if isinstance(tree, dict):
        for key, value in tree.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(value, dict) and value:
                flat.update(flatten(value, name))
            else:
                flat[name] = value
    return flat


def _number(value: Any) -> float:
    """A JSON number (or null / missing) as a float, NaN when absent."""
    if value is None or isinstance(value, bool):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _read_csv(path: Path, required: tuple[str, ...]) -> dict[str, np.ndarray]:
    """A CSV of numbers as {column: float array}; pandas parses, numpy carries the values on.

    Plain arrays rather than DataFrames: with a thousand runs, per-frame pandas overhead would dominate.
    """
    try:
        frame = pd.read_csv(path)
    except FileNotFoundError:
        raise UnreadableRun(f"{path.name} is missing") from None
    except pd.errors.EmptyDataError:
        raise UnreadableRun(f"{path.name} is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError) as err:
        raise UnreadableRun(f"{path.name} cannot be parsed ({str(err).splitlines()[0]})") from None
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise UnreadableRun(f"{path.name} lacks column(s) {', '.join(missing)}")
    if frame.empty:
        raise UnreadableRun(f"{path.name} has no rows")
    if any(dtype.kind not in "iuf" for dtype in frame.dtypes):
        frame = frame.apply(pd.to_numeric, errors="coerce")  # stray text in a number column becomes NaN
    values = frame.to_numpy(dtype=float)
    return {column: values[:, i] for i, column in enumerate(frame.columns)}


def _read_config(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "config.yaml"
    try:
        tree = yaml.load(path.read_text(), Loader=_YamlLoader)
    except FileNotFoundError:
        raise UnreadableRun("config.yaml is missing") from None
    except (yaml.YAMLError, UnicodeDecodeError, OSError) as err:
        raise UnreadableRun(f"config.yaml cannot be parsed ({str(err).splitlines()[0]})") from None
    if not isinstance(tree, dict):
        raise UnreadableRun("config.yaml is not a mapping")
    tree.pop("hydra", None)
    config = flatten(tree)
    missing = [k for k in REQUIRED_CONFIG_KEYS if config.get(k) in (None, "")]
    if missing:
        raise UnreadableRun(f"config.yaml lacks {', '.join(missing)}")
    return config


def _read_summary(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "summary.json"
    if not path.exists():
        # config.yaml and metrics.csv without a summary: a run that was killed before it could write one.
        return {"status": "running"}
    try:
        summary = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as err:
        raise UnreadableRun(f"summary.json is not valid JSON ({str(err).splitlines()[0]})") from None
    if not isinstance(summary, dict):
        raise UnreadableRun("summary.json is not an object")
    if summary.get("status") not in KNOWN_STATUSES:
        raise UnreadableRun(f"summary.json has unknown status {summary.get('status')!r}")
    return summary


def vanishing_ratio(grad_norms: np.ndarray) -> float:
    """log10(‖∂L/∂h_1‖ / ‖∂L/∂h_T‖) from one probed epoch's profile (ordered by t).

    An exactly zero first-step norm means the gradient underflowed on its way back (denormals are
    flushed while training): the ratio is then −inf, which is what happened, not a missing value.
    """
    first, last = float(grad_norms[0]), float(grad_norms[-1])
    if not (math.isfinite(first) and math.isfinite(last)) or last <= 0 or first < 0:
        return math.nan
    if first == 0:
        return -math.inf
    return math.log10(first / last)


def _in_order(columns: dict[str, np.ndarray], key: str) -> dict[str, np.ndarray]:
    """The rows sorted by `key`; train.py already writes them in order, so usually nothing to do."""
    if np.all(np.diff(columns[key]) >= 0):
        return columns
    order = np.argsort(columns[key], kind="stable")
    return {name: values[order] for name, values in columns.items()}


def load_run(run_dir: Path) -> RunRecord:
    """Read one run directory; raises UnreadableRun when it cannot be used."""
    config = _read_config(run_dir)
    summary = _read_summary(run_dir)
    status = summary["status"]
    test = summary.get("test") if isinstance(summary.get("test"), dict) else {}
    baseline = summary.get("baseline") if isinstance(summary.get("baseline"), dict) else {}
    run = RunRecord(
        path=run_dir,
        config=config,
        status=status,
        metric_name=summary.get("metric_name") or None,
        test_loss=_number(test.get("loss")),
        test_metric=_number(test.get("metric")),
        baseline_loss=_number(baseline.get("loss")),
        baseline_metric=_number(baseline.get("metric")),
        wall_seconds=_number(summary.get("wall_seconds")),
        overrides=_read_overrides(run_dir),
    )
    if status != "completed":
        return run  # counted, never averaged: nothing else needs reading
    if "test" not in summary:
        raise UnreadableRun("summary.json of a completed run has no test result")

    curves = _in_order(_read_csv(run_dir / "metrics.csv", REQUIRED_METRIC_COLUMNS), "epoch")
    # Hand-made or older files may lack the gap columns; they follow from the others by definition.
    if "gap_loss" not in curves:
        curves["gap_loss"] = curves["val_loss"] - curves["train_loss"]
    if "gap_metric" not in curves and "train_metric" in curves and "val_metric" in curves:
        curves["gap_metric"] = curves["train_metric"] - curves["val_metric"]
    run.curves = curves
    run.gap_loss = float(curves["gap_loss"][-1])
    run.gap_metric = float(curves["gap_metric"][-1]) if "gap_metric" in curves else math.nan
    if "seconds" in curves:
        run.seconds_per_epoch = _mean(curves["seconds"])
    if "val_metric" in curves and np.isfinite(curves["val_metric"]).any():
        run.best_val_metric = float(np.nanmax(curves["val_metric"]))
    onset = overfitting(curves["epoch"], curves["train_loss"], curves["val_loss"], curves["gap_loss"])
    run.onset_epoch, run.gap_at_best = onset["onset_epoch"], onset["gap_at_best"]
    _read_activation_stats(run_dir, run)

    grad_path = run_dir / "grad_by_step.csv"
    if grad_path.exists():  # a run may have been made without gradient probes
        grads = _read_csv(grad_path, ("epoch", "t", "grad_norm"))
        last_epoch = np.nanmax(grads["epoch"])
        at_last = grads["epoch"] == last_epoch
        profile = _in_order({"t": grads["t"][at_last], "grad_norm": grads["grad_norm"][at_last]}, "t")
        run.grad_epoch = int(last_epoch)
        run.grad_steps = profile["t"]
        run.grad_norms = profile["grad_norm"]
        run.vanishing_ratio = vanishing_ratio(profile["grad_norm"])
        run.decay_per_step = decay_per_step(profile["t"], profile["grad_norm"])
        run.grad_table = grads
    return run


def _read_overrides(run_dir: Path) -> list[str] | None:
    """Hydra's record of the overrides a run was started with, or None when there is none."""
    path = run_dir / ".hydra" / "overrides.yaml"
    try:
        overrides = yaml.load(path.read_text(), Loader=_YamlLoader)
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return None
    return [str(o) for o in overrides] if isinstance(overrides, list) else None


def _read_activation_stats(run_dir: Path, run: RunRecord) -> None:
    """activation_stats.csv (epoch, stat, value), written by the probe; older runs lack it.

    Parsed by hand: a small long-format file, where pandas' per-file overhead would triple the loading time.
    """
    try:
        lines = (run_dir / "activation_stats.csv").read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        return  # absent (older runs) or unreadable: it costs the statistics, not the run
    if not lines or lines[0].strip() != "epoch,stat,value":
        return
    collected: dict[str, list[tuple[float, float]]] = {}
    for line in lines[1:]:
        parts = line.split(",")
        if len(parts) != 3:
            continue
        try:
            collected.setdefault(parts[1], []).append((float(parts[0]), float(parts[2])))
        except ValueError:
            continue
    for stat, pairs in collected.items():
        pairs.sort(key=lambda pair: pair[0])
        epochs, values = np.array(pairs, dtype=float).T
        run.activation_curves[stat] = (epochs, values)
        run.activation_stats[stat] = float(values[-1])


def load_runs(run_dirs: list[Path]) -> tuple[list[RunRecord], list[tuple[Path, str]]]:
    runs, skipped = [], []
    for run_dir in run_dirs:
        try:
            runs.append(load_run(run_dir))
        except UnreadableRun as why:
            skipped.append((run_dir, str(why)))
    return runs, skipped


# ------------------------------------------------------------------------------------------ grouping


def _is_run_only(key: str) -> bool:
    parts = key.split(".")
    return parts[-1] in RUN_ONLY_KEYS or "hydra" in parts


def _comparable(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _sort_value(value: Any) -> tuple:
    """Sort numbers by value (32 before 128) and everything else by its text."""
    if isinstance(value, bool) or value is None:
        return (1, str(value))
    if isinstance(value, (int, float)):
        return (0, float(value), "")
    return (1, str(value))


def _show_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "null"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_show_value(v) for v in value) + "]"
    return str(value)


def _short_keys(keys: list[str], all_keys: set[str]) -> dict[str, str]:
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


def group_runs(runs: list[RunRecord]) -> list[ConfigGroup]:
    """One group per distinct configuration, seeds (and other run-only keys) ignored."""
    by_identity: dict[tuple, ConfigGroup] = {}
    for run in runs:
        identity = tuple(sorted((k, _comparable(v)) for k, v in run.config.items() if not _is_run_only(k)))
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
        by_task.setdefault((group.task_name, _comparable(group.seq_len)), []).append(group)
    lengths_per_task: dict[str, int] = {}
    for name, _ in by_task:
        lengths_per_task[name] = lengths_per_task.get(name, 0) + 1

    sections = []
    for (name, _), members in by_task.items():
        seq_len = members[0].seq_len
        title = name if seq_len is None else f"{name} T={_show_value(seq_len)}"
        slug = name if lengths_per_task[name] == 1 else f"{name}_T{_show_value(seq_len)}"
        _label_groups(members, title)
        _name_metrics(members)
        members.sort(key=_group_sort_key)
        sections.append(TaskSection(name, seq_len, title, _file_safe(slug), members))
    sections.sort(key=lambda s: (s.task_name, _sort_value(s.seq_len)))
    return sections


def _label_groups(members: list[ConfigGroup], task_title: str) -> None:
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
    missing = _comparable("—")
    differing = sorted(
        key for key in all_keys - labelled_keys
        if any(len({c.get(key, missing) for c in configs}) > 1 for configs in configs_by_cell.values())
    )
    short = _short_keys(differing, all_keys)
    for group in members:
        config = group.runs[0].config
        group.extras = {short[k]: _show_value(config.get(k, "—")) for k in differing}
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


def _group_sort_key(group: ConfigGroup) -> tuple:
    config = group.runs[0].config
    other_values = tuple(_sort_value(value) for key, value in sorted(config.items()) if not _is_run_only(key))
    return (group.cell, group.activations, other_values)


def _recorded_baseline(runs: list[RunRecord]) -> tuple[float, float]:
    for run in runs:
        if not (math.isnan(run.baseline_loss) and math.isnan(run.baseline_metric)):
            return run.baseline_loss, run.baseline_metric
    return math.nan, math.nan


def _name_metrics(members: list[ConfigGroup]) -> None:
    """Each group's metric name; a group of failed runs only (no name recorded) takes its task's."""
    task_names = [r.metric_name for g in members for r in g.runs if r.metric_name]
    fallback = max(set(task_names), key=task_names.count) if task_names else "metric"
    for group in members:
        names = [r.metric_name for r in group.runs if r.metric_name]
        group.metric_name = names[0] if names else fallback


def _file_safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "task"


def _same_number(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


# ------------------------------------------------------------------------------------------- numbers


def _mean(values: Iterable[float]) -> float:
    array = np.asarray([v for v in values if not math.isnan(v)], dtype=float)
    return float(array.mean()) if array.size else math.nan


def _mean_std(values: np.ndarray) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for a single seed, NaN for none)."""
    values = values[~np.isnan(values)]
    if values.size == 0:
        return math.nan, math.nan
    if values.size == 1:
        return float(values[0]), 0.0
    return float(values.mean()), float(values.std(ddof=1))


SUMMARY_COLUMNS = [
    "task", "seq_len", "model", "gate", "candidate", "output", "other", "label", "metric",
    "test_metric_mean", "test_metric_std", "test_loss_mean", "test_loss_std",
    "n_seeds", "diverged", "failed", "running",
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
# activation_stats.csv at the last probe; the state statistic is |c_t| for an LSTM and |h_t| otherwise
ACTIVATION_STATS = ("gate_saturated_fraction", "candidate_dead_fraction", "mean_abs_cell_state",
                    "mean_abs_hidden_state")
COMPARISON_COLUMNS = ["reference", "diff_vs_reference", "p_value", "p_holm", "significant", "test"]


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
            row["onset_epoch_mean"] = _mean(onsets)
            for stat in ACTIVATION_STATS:
                row[stat] = _mean(r.activation_stats.get(stat, math.nan) for r in completed)
            rows.append(row)
    return pd.DataFrame(rows)


def _reference_key(group: ConfigGroup) -> tuple:
    """What a group and its reference share: everything but the activations (and leaky_relu's slope)."""
    return tuple((k, v) for k, v in group.identity if not k.startswith("model.activation."))


def comparison_frame(sections: list[TaskSection], test: str = "welch") -> pd.DataFrame:
    """Each group's test metric against its reference (the same config with sigmoid/tanh/tanh), two-sided,
    Holm-corrected over the comparisons of one task section and cell."""
    rows = []
    for section in sections:
        families: dict[tuple, list[ConfigGroup]] = {}
        for group in section.groups:
            families.setdefault((group.cell, group.metric_name), []).append(group)
        for members in families.values():
            references = {_reference_key(g): g for g in members
                          if dict(zip(ACTIVATION_SLOTS, g.activations)) == DEFAULT_ACTIVATIONS}
            family = []
            for group in members:
                reference = references.get(_reference_key(group))
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


def summary_frame(sections: list[TaskSection]) -> pd.DataFrame:
    """One row per group, in section order; numbers at full precision (summary.csv)."""
    rows = []
    for section in sections:
        for group in section.groups:
            completed = group.completed
            metric_mean, metric_std = _mean_std(group.test_metrics())
            loss_mean, loss_std = _mean_std(group.test_losses())
            probed = {r.grad_epoch for r in completed if r.grad_epoch is not None}
            baseline = group.baseline
            if math.isnan(baseline[0]) and math.isnan(baseline[1]) and section.baselines():
                baseline = section.baselines()[0]  # only failed runs here; the task's baseline still holds
            rows.append({
                "task": group.task_name,
                "seq_len": group.seq_len,
                "model": group.cell,
                "gate": group.activations[0],
                "candidate": group.activations[1],
                "output": group.activations[2],
                "other": " ".join(f"{k}={v}" for k, v in group.extras.items()),
                "label": group.label,
                "metric": group.metric_name,
                "test_metric_mean": metric_mean,
                "test_metric_std": metric_std,
                "test_loss_mean": loss_mean,
                "test_loss_std": loss_std,
                "n_seeds": len(completed),
                "diverged": group.count("diverged"),
                "failed": group.count("failed"),
                "running": group.count("running"),
                "gap_metric": _mean(r.gap_metric for r in completed),
                "gap_loss": _mean(r.gap_loss for r in completed),
                "vanishing_ratio": _mean(r.vanishing_ratio for r in completed),
                # Runs of one group normally probe the same epochs; if not, the latest is named.
                "vanishing_epoch": max(probed) if probed else None,
                "seconds_per_epoch": _mean(r.seconds_per_epoch for r in completed),
                "baseline_loss": baseline[0],
                "baseline_metric": baseline[1],
            })
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def _fmt(value: float, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if math.isinf(value):
        return "−∞" if value < 0 else "∞"
    return f"{value:.{digits}g}"


def _fmt_mean_std(mean: float, std: float) -> str:
    if math.isnan(mean):
        return "—"
    return f"{_fmt(mean)} ± {_fmt(std, 2)}"


def _baseline_text(section: TaskSection) -> str:
    parts = []
    for loss, metric in section.baselines():
        metric_names = "/".join(section.metric_names)
        parts.append(f"loss {_fmt(loss)}, {metric_names} {_fmt(metric)}")
    return "; ".join(parts) if parts else "not recorded"


# A table row as text, shared by the markdown file and the console so that both show the same thing.
TABLE_HEADERS = [
    "model", "activations (gate,candidate,output)", "other", "metric", "test metric", "test loss",
    "n", "diverged", "failed", "gap metric", "gap loss", "log10 ‖∂L/∂h₁‖/‖∂L/∂h_T‖", "s/epoch",
    "95% CI test metric", "vs reference: Δ, p (Holm)", "overfit onset (epoch, runs)", "decay/step",
    "saturated gates", "dead cand.", "mean |c| or |h|",
]
SIGNIFICANT_MARK = "*"  # beside a test metric that differs from its reference after Holm correction


def _ci_text(row: pd.Series) -> str:
    mean, half = row.get("test_metric_mean", math.nan), row.get("test_metric_ci95", math.nan)
    if mean is None or half is None or math.isnan(mean) or math.isnan(half):
        return "—"
    return f"[{_fmt(mean - half, 3)}, {_fmt(mean + half, 3)}]"


def _comparison_text(row: pd.Series) -> str:
    if not row.get("test"):
        return "reference" if row.get("label") and _is_reference_row(row) else "—"
    if math.isnan(row["diff_vs_reference"]):
        return "no completed runs to compare"
    mark = SIGNIFICANT_MARK if row.get("significant") else ""
    return f"{_fmt(row['diff_vs_reference'], 2)}, p={_fmt(row['p_holm'], 2)}{mark}"


def _is_reference_row(row: pd.Series) -> bool:
    return (row["gate"], row["candidate"], row["output"]) == tuple(DEFAULT_ACTIVATIONS.values())


def _onset_text(row: pd.Series) -> str:
    runs = row.get("overfit_runs", 0)
    if not runs or (isinstance(runs, float) and math.isnan(runs)):
        return "none"
    return f"{_fmt(row['onset_epoch_mean'], 3)} ({int(runs)}/{row['n_seeds']})"


def _state_text(row: pd.Series) -> str:
    cell_state, hidden = row.get("mean_abs_cell_state", math.nan), row.get("mean_abs_hidden_state", math.nan)
    if cell_state is not None and not math.isnan(cell_state):
        return f"|c| {_fmt(cell_state, 3)}"
    if hidden is not None and not math.isnan(hidden):
        return f"|h| {_fmt(hidden, 3)}"
    return "—"


def _table_cells(row: pd.Series) -> list[str]:
    mark = f" {SIGNIFICANT_MARK}" if row.get("significant") is True else ""
    return [
        str(row["model"]),
        f"{row['gate']},{row['candidate']},{row['output']}",
        str(row["other"]),
        str(row["metric"]),
        _fmt_mean_std(row["test_metric_mean"], row["test_metric_std"]) + mark,
        _fmt_mean_std(row["test_loss_mean"], row["test_loss_std"]),
        str(row["n_seeds"]) + (f" (+{row['running']} running)" if row["running"] else ""),
        str(row["diverged"]),
        str(row["failed"]),
        _fmt(row["gap_metric"], 3),
        _fmt(row["gap_loss"], 3),
        _fmt(row["vanishing_ratio"], 3),
        _fmt(row["seconds_per_epoch"], 3),
        _ci_text(row),
        _comparison_text(row),
        _onset_text(row),
        _fmt(row.get("decay_per_step_mean", math.nan), 3),
        _fmt(row.get("gate_saturated_fraction", math.nan), 2),
        _fmt(row.get("candidate_dead_fraction", math.nan), 2),
        _state_text(row),
    ]


def _section_rows(summary: pd.DataFrame, section: TaskSection) -> pd.DataFrame:
    labels = {g.label for g in section.groups}
    return summary[summary["label"].isin(labels)]


def statistics_note(test: str) -> str:
    """What the statistics columns mean; shared by summary.md and index.html."""
    return (
        "95% CI: t interval of the mean test metric over seeds. vs reference: mean test metric minus that of "
        f"the same configuration with sigmoid gates and tanh candidate and output; two-sided {TESTS[test]}, "
        f"p-values Holm-corrected within each task and cell; {SIGNIFICANT_MARK} marks p_Holm < {ALPHA}. "
        "Overfit onset: epoch of lowest validation loss where validation loss then rose (>1%) while training "
        "loss kept falling (mean over the seeds where it happened). decay/step: slope of log10 ‖∂L/∂h_t‖ "
        "against t in decades per step (positive: the gradient shrinks going back in time). Saturated gates: "
        "fraction of gate outputs < 0.01 or > 0.99; dead cand.: fraction of candidate units that are 0 on the "
        "whole probe batch; mean |c| is the LSTM cell state, |h| the hidden state of cells without one "
        "(all on the probe batch at the last probe)."
        + (" With 3 seeds a side, Mann–Whitney U cannot reach p < 0.05 (smallest p = 0.1)." if test == "mannwhitney"
           else "")
    )


def write_markdown(path: Path, summary: pd.DataFrame, sections: list[TaskSection],
                   plots: dict[str, list[Path]], skipped: list[tuple[Path, str]], test: str = "welch") -> None:
    lines = [
        "# actstudy report",
        "",
        "Test metric and loss are taken at each run's best validation epoch; mean ± sample standard "
        "deviation (ddof=1) over the completed seeds (n). Diverged and failed runs are counted, not averaged. "
        "Gaps are at the last epoch (gap metric = train − val, gap loss = val − train). "
        "log10 ‖∂L/∂h₁‖/‖∂L/∂h_T‖ is read from grad_by_step.csv at the last probed epoch "
        "(strongly negative: gradients vanish going back in time).",
        "",
        statistics_note(test),
        "",
    ]
    for section in sections:
        rows = _section_rows(summary, section)
        headers = list(TABLE_HEADERS)
        cells = [_table_cells(row) for _, row in rows.iterrows()]
        if not any(c[2] for c in cells):  # no extra settings in this task: drop the empty column
            headers.pop(2)
            cells = [c[:2] + c[3:] for c in cells]
        lines += [f"## {section.title} — baseline: {_baseline_text(section)}", ""]
        lines.append("| " + " | ".join(headers) + " |")
        lines.append("|" + "|".join("---" for _ in headers) + "|")
        for row_cells in cells:
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in row_cells) + " |")
        lines.append("")
        for plot in plots.get(section.slug, []):
            lines.append(f"![{plot.stem}]({plot.name})")
        lines.append("")
    if skipped:
        lines += ["## Skipped run directories", ""]
        lines += [f"- `{path}`: {why}" for path, why in skipped]
        lines.append("")
    path.write_text("\n".join(lines))


# The console has less room than a markdown page: the same columns under shorter names, and the metric's
# name moves into the header when a task has only one.
CONSOLE_HEADERS = [
    "model", "gate,cand,out", "other", "metric", "test metric", "test loss",
    "n", "div", "fail", "gap metric", "gap loss", "log10 g₁/g_T", "s/epoch",
    "95% CI", "vs ref Δ, p", "onset", "decay/step", "sat", "dead", "|state|",
]
# The console shows the core columns only: a terminal has no room for all of them (summary.md has all).
CONSOLE_KEEP = 15
TEXT_COLUMNS = ("model", "gate,cand,out", "other", "metric")


def print_tables(console: Console, summary: pd.DataFrame, sections: list[TaskSection]) -> None:
    for section in sections:
        rows = _section_rows(summary, section)
        headers = list(CONSOLE_HEADERS)
        cells = [_table_cells(row) for _, row in rows.iterrows()]
        dropped = []
        if not any(c[headers.index("other")] for c in cells):
            dropped.append(headers.index("other"))
        if len(section.metric_names) == 1:
            metric = section.metric_names[0]
            headers[headers.index("test metric")] = f"test {metric}"
            dropped.append(headers.index("metric"))
        dropped += [headers.index("95% CI"), *range(CONSOLE_KEEP, len(headers))]  # summary.md has them all
        headers = [h for i, h in enumerate(headers) if i not in dropped]
        cells = [[c for i, c in enumerate(row) if i not in dropped] for row in cells]
        table = _console_table(section, headers, cells)
        # A narrow terminal folds every cell into a column of fragments: drop columns from the right (the
        # least read first) until each value fits on its line; summary.md and index.html keep them all.
        while len(headers) > MIN_CONSOLE_COLUMNS and _natural_width(console, _console_table(section, headers, cells, caption=False)) > console.width:
            headers, cells = headers[:-1], [row[:-1] for row in cells]
            table = _console_table(section, headers, cells)
        console.print(table)


MIN_CONSOLE_COLUMNS = 6  # model, slots, test metric, test loss, n, div


def _natural_width(console: Console, table: Table) -> int:
    """Characters the table needs with no cell folded (measured as if the terminal were unbounded)."""
    from rich.measure import Measurement

    return Measurement.get(console, console.options.update(max_width=100_000), table).maximum


def _console_table(section: "TaskSection", headers: list[str], cells: list[list[str]], caption: bool = True) -> Table:
    table = Table(title=escape(f"{section.title} — baseline: {_baseline_text(section)}") if caption else None,
                  title_justify="left",
                  caption=None if not caption else "mean ± std over completed seeds; gaps at the last epoch (metric: train − val, "
                          "loss: val − train); g_t = ‖∂L/∂h_t‖ at the last probed epoch; more columns in "
                          "summary.md and index.html",
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


# --------------------------------------------------------------------------------------------- plots


def colour_map(sections: list[TaskSection]) -> dict[str, Any]:
    """One colour per configuration label, the same in every plot of the report."""
    from matplotlib import colormaps

    labels = sorted({g.config_label for s in sections for g in s.groups})
    if len(labels) <= 10:
        palette = [colormaps["tab10"](i) for i in range(10)]
    elif len(labels) <= 20:
        palette = [colormaps["tab20"](i) for i in range(20)]
    else:  # beyond 20 no palette keeps colours apart; spread them over a wide colour map
        palette = [colormaps["turbo"](x) for x in np.linspace(0.03, 0.97, len(labels))]
    return {label: palette[i] for i, label in enumerate(labels)}


def _new_figure(width: float, height: float):
    # A bare Figure renders with Agg and leaves pyplot's global state (and backend) alone.
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=PLOT_DPI)
    return figure, figure.add_subplot()


def _save(figure, path: Path) -> Path:
    # Light compression: encoding is a third of the time of a plot at level 6, for files barely smaller.
    figure.savefig(path, dpi=PLOT_DPI, bbox_inches="tight", pil_kwargs={"compress_level": 1})
    # The same figure as SVG, for papers: vector lines scale to any column width. Text stays text (not glyph
    # outlines): editable, smaller, and 12% faster to write over a report.
    from matplotlib import rc_context

    with rc_context({"svg.fonttype": "none"}):
        figure.savefig(path.with_suffix(".svg"), bbox_inches="tight")
    return path


# Beyond this many configurations a section's colours are explained once, in legend_<task>.png, rather than
# beside every plot: a 50-entry legend repeated on each plot hides the plots and is most of the drawing time.
LEGEND_INLINE_MAX = 12
SHARED_LEGEND_NOTE = "colours: one per configuration,\nsee legend_{slug}"


def _shared_legend_handle(slug: str):
    from matplotlib.patches import Patch

    return Patch(facecolor="none", edgecolor="none", label=SHARED_LEGEND_NOTE.format(slug=slug))


def _legend(ax, handles: list, n_configs: int, slug: str = "") -> None:
    if n_configs > LEGEND_INLINE_MAX:
        handles = [_shared_legend_handle(slug)] + handles[n_configs:]
        n_configs = 0
    columns = max(1, math.ceil(n_configs / 25))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small",
              frameon=False, ncols=columns)


def plot_legend(section: TaskSection, colours: dict[str, Any], path: Path) -> Path | None:
    """The section's colours, once, when there are too many configurations to repeat them beside every plot."""
    from matplotlib.figure import Figure

    if len(section.groups) <= LEGEND_INLINE_MAX:
        return None
    columns = min(3, math.ceil(len(section.groups) / 20))
    rows = math.ceil(len(section.groups) / columns)
    figure = Figure(figsize=(4.6 * columns, 0.22 * rows + 0.6), dpi=PLOT_DPI)
    figure.legend(handles=_config_handles(section.groups, colours), loc="center", ncols=columns,
                  fontsize="small", frameon=False, title=f"{section.title}: one colour per configuration")
    return _save(figure, path)


def _config_handles(groups: list[ConfigGroup], colours: dict[str, Any]) -> list:
    from matplotlib.lines import Line2D

    return [Line2D([], [], color=colours[g.config_label], lw=2, label=_legend_label(g)) for g in groups]


def _legend_label(group: ConfigGroup) -> str:
    n = len(group.completed)
    note = f"n={n}"
    if group.count("diverged"):
        note += f", {group.count('diverged')} diverged"
    if group.count("failed"):
        note += f", {group.count('failed')} failed"
    return f"{group.config_label} ({note})"


def _band_handle():
    from matplotlib.patches import Patch

    return Patch(facecolor="grey", alpha=0.25, label=BAND_DESCRIPTION.replace("band = ", "band: "))


@dataclass
class Band:
    """One group's curve: the mean over its seeds at every x, and the min and max around it."""

    x: np.ndarray
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray


def _bands(pieces: list[tuple[int, np.ndarray, np.ndarray]], geometric: bool = False) -> dict[int, Band]:
    """Aggregate (group index, x, y) pieces, one per run, into a Band per group, in one groupby.

    Runs of a group may stop at different epochs; each x is averaged over the runs that reached it.
    `geometric` averages log10(y) instead: on a log axis the arithmetic mean hugs the largest seed.
    """
    if not pieces:
        return {}
    y = np.concatenate([y for _, _, y in pieces])
    if geometric:
        with np.errstate(divide="ignore", invalid="ignore"):  # a zero norm is −inf in log space
            y = np.log10(y)
    frame = pd.DataFrame({
        "group": np.concatenate([np.full(len(x), index) for index, x, _ in pieces]),
        "x": np.concatenate([x for _, x, _ in pieces]),
        "y": y,
    })
    stats = frame.groupby(["group", "x"], sort=True)["y"].agg(["mean", "min", "max"])
    group_of_row = stats.index.get_level_values(0).to_numpy()
    x_of_row = stats.index.get_level_values(1).to_numpy()
    columns = {name: stats[name].to_numpy() for name in ("mean", "min", "max")}
    starts = np.flatnonzero(np.r_[True, group_of_row[1:] != group_of_row[:-1]])
    ends = np.r_[starts[1:], len(group_of_row)]
    if geometric:
        columns = {name: 10.0 ** values for name, values in columns.items()}
    return {
        int(group_of_row[a]): Band(x_of_row[a:b], columns["mean"][a:b], columns["min"][a:b], columns["max"][a:b])
        for a, b in zip(starts, ends)
    }


def _curve_bands(section: TaskSection, column: str) -> dict[int, Band]:
    pieces = [(index, run.curves["epoch"], run.curves[column])
              for index, group in enumerate(section.groups) for run in group.completed]
    return _bands(pieces)


def _integer_ticks(axis) -> None:
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True))  # epochs and time steps are whole numbers


def _draw_bands(ax, bands: dict[int, Band], groups: list[ConfigGroup], colours: dict[str, Any],
                linestyle: str = "-", positive_only: bool = False) -> None:
    """Mean lines, plus every band as one polygon collection (one fill_between per band is slow)."""
    from matplotlib.collections import PolyCollection

    polygons, fill_colours = [], []
    for index, band in bands.items():
        colour = colours[groups[index].config_label]
        ax.plot(band.x, band.mean, color=colour, linestyle=linestyle, lw=1.6)
        keep = np.isfinite(band.low) & np.isfinite(band.high)
        if positive_only:  # a log axis cannot draw a polygon corner at zero
            keep &= (band.low > 0) & (band.high > 0)
        if keep.sum() < 2:
            continue
        x, low, high = band.x[keep], band.low[keep], band.high[keep]
        polygons.append(np.column_stack([np.r_[x, x[::-1]], np.r_[low, high[::-1]]]))
        fill_colours.append(colour)
    if polygons:
        ax.add_collection(PolyCollection(polygons, facecolors=fill_colours, alpha=0.18, linewidths=0),
                          autolim=True)
        ax.autoscale_view()


def _drawn_groups(section: TaskSection, *band_sets: dict[int, Band]) -> list[ConfigGroup]:
    indices = sorted(set().union(*(bands.keys() for bands in band_sets)))
    return [section.groups[i] for i in indices]


def plot_curves(section: TaskSection, colours: dict[str, Any], path: Path) -> Path:
    from matplotlib.lines import Line2D

    train = _curve_bands(section, "train_loss")
    val = _curve_bands(section, "val_loss")
    baselines = [b[0] for b in section.baselines() if not math.isnan(b[0])]
    values = np.concatenate([np.asarray(baselines, dtype=float)] + [
        np.r_[band.low, band.high] for bands in (train, val) for band in bands.values()])
    values = values[np.isfinite(values)]
    # Losses that fall by orders of magnitude are unreadable on a linear axis.
    log_scale = bool(values.size) and values.min() > 0 and values.max() / values.min() > 30

    figure, ax = _new_figure(9, 5.5)
    if log_scale:
        ax.set_yscale("log")
    _draw_bands(ax, train, section.groups, colours, "--", positive_only=log_scale)
    _draw_bands(ax, val, section.groups, colours, "-", positive_only=log_scale)
    for loss in baselines:
        ax.axhline(loss, color="grey", lw=1.2, zorder=0)
    ax.set_xlabel("epoch")
    _integer_ticks(ax.xaxis)
    ax.set_ylabel("loss" + (" (log scale)" if log_scale else ""))
    ax.set_title(f"{section.title}: learning curves (mean over seeds, {BAND_DESCRIPTION})")
    ax.grid(alpha=0.3)
    drawn = _drawn_groups(section, train, val)
    handles = _config_handles(drawn, colours) + [
        Line2D([], [], color="black", ls="--", label="train loss"),
        Line2D([], [], color="black", ls="-", label="validation loss"),
        _band_handle(),
    ]
    if baselines:
        handles.append(Line2D([], [], color="grey", lw=1.2, label="baseline loss (memoryless)"))
    _legend(ax, handles, len(drawn), section.slug)
    return _save(figure, path)


def plot_gap(section: TaskSection, colours: dict[str, Any], path: Path) -> Path:
    from matplotlib.lines import Line2D

    gaps = _curve_bands(section, "gap_loss")
    figure, ax = _new_figure(9, 5.5)
    _draw_bands(ax, gaps, section.groups, colours)
    ax.axhline(0.0, color="black", lw=0.8, zorder=0)
    ax.set_xlabel("epoch")
    _integer_ticks(ax.xaxis)
    ax.set_ylabel("generalization gap: validation loss − train loss")
    ax.set_title(f"{section.title}: generalization gap (above 0 = overfitting; mean over seeds, {BAND_DESCRIPTION})")
    ax.grid(alpha=0.3)
    drawn = _drawn_groups(section, gaps)
    handles = _config_handles(drawn, colours) + [_band_handle(), Line2D([], [], color="black", lw=0.8, label="no gap")]
    _legend(ax, handles, len(drawn), section.slug)
    return _save(figure, path)


def plot_grad_by_step(section: TaskSection, colours: dict[str, Any], path: Path) -> Path:
    pieces, epochs = [], set()
    for index, group in enumerate(section.groups):
        for run in group.completed:
            if run.grad_norms is not None:
                pieces.append((index, run.grad_steps, run.grad_norms))
                epochs.add(run.grad_epoch)
    norms = _bands(pieces, geometric=True)
    figure, ax = _new_figure(9, 5.5)
    ax.set_yscale("log")
    _draw_bands(ax, norms, section.groups, colours, positive_only=True)
    ax.set_xlabel("time step t (1 = first input)")
    _integer_ticks(ax.xaxis)
    ax.set_ylabel("‖∂L/∂h_t‖ (log scale)")
    when = f"epoch {epochs.pop()}" if len(epochs) == 1 else "each run's last probed epoch"
    ax.set_title(f"{section.title}: gradient norm through time at {when}\n"
                 f"(geometric mean over seeds, {BAND_DESCRIPTION})")
    ax.grid(alpha=0.3, which="major")
    ax.grid(alpha=0.1, which="minor", axis="y")
    drawn = _drawn_groups(section, norms)
    _legend(ax, _config_handles(drawn, colours) + [_band_handle()], len(drawn), section.slug)
    return _save(figure, path)


def plot_final(section: TaskSection, metric_name: str, colours: dict[str, Any], path: Path) -> Path:
    from matplotlib.lines import Line2D
    from matplotlib.transforms import blended_transform_factory

    groups = [g for g in section.groups if g.metric_name == metric_name]
    figure, ax = _new_figure(min(24.0, max(6.0, 0.6 * len(groups) + 3.0)), 5.5)
    below_axis = blended_transform_factory(ax.transData, ax.transAxes)
    for x, group in enumerate(groups):
        colour = colours[group.config_label]
        seeds = group.test_metrics()
        seeds = seeds[~np.isnan(seeds)]
        if seeds.size == 0:
            ax.text(x, 0.03, "no completed run", rotation=90, ha="center", va="bottom", transform=below_axis,
                    fontsize="small", color="dimgrey", bbox={"facecolor": "white", "edgecolor": "none", "pad": 1})
            continue
        mean, std = _mean_std(seeds)
        # Spread the seed dots a little sideways so that equal values stay visible.
        offsets = np.linspace(-0.15, 0.15, seeds.size) if seeds.size > 1 else np.zeros(1)
        ax.scatter(x + offsets, seeds, color=colour, s=14, alpha=0.6, zorder=2, edgecolors="none")
        ax.errorbar(x, mean, yerr=std, fmt="D", color=colour, markersize=7, capsize=5, lw=1.6, zorder=3,
                    markeredgecolor="black", markeredgewidth=0.6)
    baselines = [b[1] for g in groups for b in [g.baseline] if not math.isnan(b[1])]
    for value in sorted(set(baselines)):
        ax.axhline(value, color="grey", ls="--", lw=1.2, zorder=0)
    published_lines = {}
    if section.task_name == "mnist1d" and metric_name == "accuracy":
        from actstudy.published import MNIST1D_REFERENCE_LINES as published_lines
    for model_name, value in published_lines.items():  # other models' published test accuracy, as lines
        ax.axhline(value, color="dimgrey", ls=":", lw=1.0, zorder=0)
        ax.text(1.0, value, f" {model_name} {value:.0%}", transform=blended_transform_factory(ax.transAxes, ax.transData),
                va="center", ha="left", fontsize="x-small", color="dimgrey")
    ax.set_xticks(range(len(groups)))
    # Two-line labels read well upright or slightly turned; steeply turned, one line reads better.
    tick_labels = [_legend_label(g) if len(groups) > 12 else _legend_label(g).replace(" (", "\n(") for g in groups]
    ax.set_xticklabels(tick_labels,
                       rotation=0 if len(groups) <= 3 else (30 if len(groups) <= 12 else 60),
                       ha="center" if len(groups) <= 3 else "right", rotation_mode="anchor",
                       fontsize="small")
    ax.set_xlim(-0.6, len(groups) - 0.4)
    ax.set_xlabel("configuration (cell / gate,candidate,output activations)")
    ax.set_ylabel(f"test {metric_name} (at best validation epoch)")
    ax.set_title(f"{section.title}: final test {metric_name} (mean ± std over seeds, dots = seeds)")
    ax.grid(alpha=0.3, axis="y")
    handles = [
        Line2D([], [], color="black", marker="D", ls="-", label="mean ± std"),
        Line2D([], [], color="black", marker="o", ls="", alpha=0.6, markersize=4, label="one seed"),
    ]
    if baselines:
        handles.append(Line2D([], [], color="grey", ls="--", lw=1.2, label=f"baseline {metric_name} (memoryless)"))
    if published_lines:
        handles.append(Line2D([], [], color="dimgrey", ls=":", lw=1.0,
                              label="published test accuracy\n(Greydanus & Kobak 2024)"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.12 if published_lines else 1.01, 1.0),
              fontsize="small", frameon=False)
    return _save(figure, path)


HEATMAP_MAX_GROUPS = 12  # beyond this the panels become too small to read (and slow to draw); the rest are counted


def plot_grad_heatmap(section: TaskSection, path: Path) -> Path | None:
    """‖∂L/∂h_t‖ over epochs × t, one panel per configuration, geometric mean over seeds, shared colour scale."""
    panels, hidden = [], 0
    for group in section.groups:
        tables = [r.grad_table for r in group.completed if r.grad_table is not None]
        if not tables:
            continue
        if len(panels) == HEATMAP_MAX_GROUPS:
            hidden += 1
            continue
        frame = pd.DataFrame({
            "epoch": np.concatenate([t["epoch"] for t in tables]),
            "t": np.concatenate([t["t"] for t in tables]),
            "g": np.concatenate([t["grad_norm"] for t in tables]),
        })
        with np.errstate(divide="ignore", invalid="ignore"):
            frame["g"] = np.log10(frame["g"].where(frame["g"] > 0))
        grid = frame.groupby(["epoch", "t"])["g"].mean().unstack("t")  # (epochs, T)
        panels.append((group, grid))
    if not panels:
        return None
    shown = panels
    values = np.concatenate([grid.to_numpy().ravel() for _, grid in shown])
    values = values[np.isfinite(values)]
    low, high = (float(values.min()), float(values.max())) if values.size else (-1.0, 0.0)
    columns = min(3, len(shown))
    rows = math.ceil(len(shown) / columns)
    from matplotlib.figure import Figure

    # Fixed spacing rather than a constrained layout: with a dozen panels the layout solver was half the time.
    figure = Figure(figsize=(4.2 * columns + 1.2, 3.0 * rows + 0.8), dpi=PLOT_DPI)
    axes = figure.subplots(rows, columns, squeeze=False)
    height = 3.0 * rows + 0.8
    figure.subplots_adjust(hspace=0.55, wspace=0.35, top=1 - 0.9 / height)  # room for the two title lines
    image = None
    for ax, (group, grid) in zip(axes.ravel(), shown):
        epochs, steps = grid.index.to_numpy(), grid.columns.to_numpy()
        # one row per probed epoch, evenly spaced: probes are not always equally far apart
        image = ax.imshow(grid.to_numpy(), aspect="auto", origin="lower", cmap="viridis", vmin=low, vmax=high,
                          extent=(steps.min() - 0.5, steps.max() + 0.5, -0.5, len(epochs) - 0.5),
                          interpolation="nearest")
        ax.set_yticks(range(len(epochs)), [str(int(e)) for e in epochs], fontsize="x-small")
        ax.set_title(_legend_label(group), fontsize="small")
        ax.set_xlabel("time step t")
        ax.set_ylabel("epoch (probed)")
    for ax in axes.ravel()[len(shown):]:
        ax.set_visible(False)
    if image is not None:
        figure.colorbar(image, ax=axes, label="log10 ‖∂L/∂h_t‖ (geometric mean over seeds)", shrink=0.8)
    more = f"; {hidden} more configurations not shown" if hidden > 0 else ""
    figure.suptitle(f"{section.title}: gradient norm over epochs × time steps{more}", y=1 - 0.2 / height)
    return _save(figure, path)


ACTIVATION_PANELS = (
    ("gate_saturated_fraction", "saturated gate outputs\n(fraction < 0.01 or > 0.99)"),
    ("candidate_dead_fraction", "dead candidate units\n(fraction, 0 on the whole probe batch)"),
    ("mean_abs_state", "mean |c_t| (LSTM) or |h_t|\n(other cells), state units"),
)


def plot_activation_stats(section: TaskSection, colours: dict[str, Any], path: Path) -> Path | None:
    """The probe's activation statistics over epochs, mean over seeds, one colour per configuration."""
    from matplotlib.figure import Figure

    if not any(r.activation_curves for g in section.groups for r in g.completed):
        return None
    figure = Figure(figsize=(14, 4.2), dpi=PLOT_DPI, layout="constrained")
    axes = figure.subplots(1, len(ACTIVATION_PANELS))
    drawn = []
    for ax, (stat, title) in zip(axes, ACTIVATION_PANELS):
        pieces = []
        for index, group in enumerate(section.groups):
            for run in group.completed:
                curve = run.activation_curves.get(stat)
                if stat == "mean_abs_state":
                    curve = run.activation_curves.get("mean_abs_cell_state") or run.activation_curves.get(
                        "mean_abs_hidden_state")
                if curve is not None:
                    pieces.append((index, curve[0], curve[1]))
        bands = _bands(pieces)  # one groupby for every configuration at once
        positive = np.concatenate([b.high for b in bands.values()] + [np.empty(0)])
        positive = positive[np.isfinite(positive) & (positive > 0)]
        log_scale = stat == "mean_abs_state" and positive.size and positive.max() / positive.min() > 100
        if log_scale:  # an exploding state (relu) would flatten every other curve on a linear axis
            ax.set_yscale("log")
        _draw_bands(ax, bands, section.groups, colours, positive_only=bool(log_scale))
        drawn += [g for g in _drawn_groups(section, bands) if g not in drawn]
        ax.set_title(title, fontsize="small")
        ax.set_xlabel("epoch")
        _integer_ticks(ax.xaxis)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("fraction of units (0–1)")
    axes[2].set_ylabel("mean absolute value" + (" (log scale)" if axes[2].get_yscale() == "log" else ""))
    handles = _config_handles(drawn, colours) + [_band_handle()]
    if len(drawn) > LEGEND_INLINE_MAX:
        handles = [_shared_legend_handle(section.slug), _band_handle()]
    figure.legend(handles=handles, loc="outside lower center", fontsize="small", frameon=False,
                  ncols=min(4, len(handles)))
    figure.suptitle(f"{section.title}: activation statistics on the probe batch (mean over seeds, {BAND_DESCRIPTION})")
    return _save(figure, path)


# What the plot workers read: set before the pool forks, so the runs are shared, not pickled.
_PLOT_INPUT: tuple[list[TaskSection], dict[str, Any]] | None = None


def _draw_one(job: tuple[str, int, str, Path]) -> Path | None:
    kind, index, metric_name, path = job
    sections, colours = _PLOT_INPUT
    section = sections[index]
    if kind == "curves":
        return plot_curves(section, colours, path)
    if kind == "gap":
        return plot_gap(section, colours, path)
    if kind == "grad_by_step":
        return plot_grad_by_step(section, colours, path)
    if kind == "grad_heatmap":
        return plot_grad_heatmap(section, path)
    if kind == "activations":
        return plot_activation_stats(section, colours, path)
    if kind == "legend":
        return plot_legend(section, colours, path)
    return plot_final(section, metric_name, colours, path)


def _plot_workers(n_jobs: int) -> int:
    """Processes for drawing: matplotlib is single-threaded, and plots are most of a report's time."""
    import multiprocessing

    if n_jobs < 4 or "fork" not in multiprocessing.get_all_start_methods():
        return 1
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return max(1, min(cores, 4, n_jobs))


def write_plots(sections: list[TaskSection], out_dir: Path) -> dict[str, list[Path]]:
    """Six kinds of plot per task (the final one per metric where a task has several); by section slug.

    Drawn in parallel processes where there are cores to spare; the result does not depend on it.
    """
    global _PLOT_INPUT
    jobs: list[tuple[str, int, str, Path]] = []
    for index, section in enumerate(sections):
        slug = section.slug
        for kind in ("legend", "curves", "gap", "grad_by_step", "grad_heatmap", "activations"):
            jobs.append((kind, index, "", out_dir / f"{kind}_{slug}.png"))
        metric_names = section.metric_names
        for metric_name in metric_names:
            suffix = "" if len(metric_names) == 1 else f"_{_file_safe(metric_name)}"
            jobs.append(("final", index, metric_name, out_dir / f"final_{slug}{suffix}.png"))
    _PLOT_INPUT = (sections, colour_map(sections))
    try:
        workers = _plot_workers(len(jobs))
        if workers == 1:
            results = [_draw_one(job) for job in jobs]
        else:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
                results = list(pool.map(_draw_one, jobs))
    finally:
        _PLOT_INPUT = None
    written: dict[str, list[Path]] = {s.slug: [] for s in sections}
    for (_, index, _, _), path in zip(jobs, results):
        if path is not None:  # a heatmap or activation plot with nothing to show is not drawn
            written[sections[index].slug].append(path)
    return written


# ------------------------------------------------------------------------------------------ the report


def write_report(dirs: list[Path], out: Path | None, console: Console, test: str = "welch") -> ReportResult:
    """Report every run directory below `dirs` into `out` (default: the first dir's `report/` folder).

    Raises ReportError when a dir does not exist or no readable run is found; an unreadable run directory
    only costs a one-line warning.
    """
    dirs = [Path(d) for d in dirs]
    if test not in TESTS:
        raise ReportError(f"--test {test!r} is not valid; choose one of: {', '.join(TESTS)}")
    if not dirs:
        raise ReportError("no directory given to report on")
    for directory in dirs:
        if not directory.exists():
            raise ReportError(f"{directory}: no such directory")
        if not directory.is_dir():
            raise ReportError(f"{directory}: not a directory (give a run or sweep directory)")
    run_dirs = find_run_dirs(dirs)
    where = ", ".join(str(d) for d in dirs)
    if not run_dirs:
        raise ReportError(f"no run directories (summary.json, or config.yaml with metrics.csv) below {where}")

    runs, skipped = load_runs(run_dirs)
    for path, why in skipped:
        # soft_wrap keeps each warning on one line however long the path is.
        console.print(f"[yellow]warning:[/yellow] skipping {escape(str(path))}: {escape(why)}", soft_wrap=True)
    if not runs:
        raise ReportError(f"none of the {len(run_dirs)} run directories below {where} could be read")

    sections = build_sections(group_runs(runs))
    summary = summary_frame(sections)
    extra = statistics_frame(sections)
    extra = extra[[c for c in extra.columns if c == "label" or c not in summary.columns]]  # mean/std known
    summary = summary.merge(extra, on="label", how="left")
    summary = summary.merge(comparison_frame(sections, test), on="label", how="left")

    out_dir = Path(out) if out is not None else dirs[0] / REPORT_DIR_NAME
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = out_dir / "summary.csv"
    summary.to_csv(csv_path, index=False)
    plots = write_plots(sections, out_dir)
    md_path = out_dir / "summary.md"
    write_markdown(md_path, summary, sections, plots, skipped, test)
    from actstudy.html_report import write_html, write_latex  # the page and the paper's table

    tex_path = write_latex(out_dir / "summary.tex", summary, sections, test)
    html_path = write_html(out_dir / "index.html", summary, sections, plots, skipped, dirs, test)

    print_tables(console, summary, sections)
    plot_files = [p for paths in plots.values() for p in paths]
    files = [csv_path, md_path, tex_path, html_path] + plot_files + [p.with_suffix(".svg") for p in plot_files]
    skipped_note = f", {len(skipped)} run directories skipped" if skipped else ""
    console.print(f"{len(runs)} runs in {len(summary)} configurations{skipped_note}; {len(files)} files written",
                  soft_wrap=True)
    return ReportResult(out_dir=out_dir, files=files, summary=summary, sections=sections, skipped=skipped)
