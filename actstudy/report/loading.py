"""Run directories → RunRecords: the report's only reader of files that training wrote.

Every file name, column and status comes from actstudy/rundir.py, and summary.json is read by its one reader
(`rundir.load_summary`). Beside the run's own files this reads Hydra's record of the command line
(`rundir.overrides_path`), shown on the HTML page. Nothing here imports torch.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from actstudy import rundir
from actstudy.probe import vanishing_ratio
from actstudy.stats import decay_per_step, mean_of, overfitting

try:  # libyaml's parser is several times faster, which matters with a thousand config files
    from yaml import CSafeLoader as YamlLoader
except ImportError:  # pragma: no cover - depends on how PyYAML was built
    from yaml import SafeLoader as YamlLoader

# The keys every run's config must have: they make up the configuration label.
REQUIRED_CONFIG_KEYS = (
    "task.name",
    "model.cell",
    "model.activation.gate",
    "model.activation.candidate",
    "model.activation.output",
)
REQUIRED_METRIC_COLUMNS = ("epoch", "train_loss", "val_loss")  # older or hand-made files may lack the rest
REPORT_DIR_NAME = "report"  # the report's default output folder, inside the first directory reported on


@dataclass
class RunRecord:
    """What the report needs from one run directory."""

    path: Path
    config: dict[str, Any]  # flattened: "model.activation.gate" → "sigmoid"
    status: str  # one of rundir.STATUSES; running = still in progress, or killed
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
    vanishing_ratio: float = math.nan  # probe.vanishing_ratio of the last probed epoch's profile
    seconds_per_epoch: float = math.nan
    wall_seconds: float = math.nan
    best_val_metric: float = math.nan  # the highest validation metric of any epoch
    onset_epoch: float = math.nan  # overfitting onset (stats.overfitting); NaN when none was seen
    gap_at_best: float = math.nan  # val − train loss at the epoch of lowest validation loss
    decay_per_step: float = math.nan  # slope of log10 ‖∂L/∂h_t‖ against t at the last probed epoch
    grad_table: dict[str, np.ndarray] | None = None  # all of grad_by_step.csv (epoch, t, grad_norm)
    activation_stats: dict[str, float] = field(default_factory=dict)  # activation_stats.csv, last epoch
    activation_curves: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # stat → (epochs, values)
    overrides: list[str] | None = None  # Hydra's overrides.yaml: the command line that made this run

    @property
    def seed(self) -> Any:
        return self.config.get("seed")


class UnreadableRun(Exception):
    """One run directory cannot be used; the message says why in a few words."""


# ------------------------------------------------------------------------------------- finding runs


def find_run_dirs(dirs: list[Path]) -> list[Path]:
    """Every run directory at or below `dirs`, sorted, each once; report output folders are skipped."""
    found: set[Path] = set()
    for top in dirs:
        for here, subdirs, files in os.walk(top):
            if rundir.is_run_dir(files):
                found.add(Path(here).resolve())
                subdirs[:] = []  # a run's own subfolders (.hydra, checkpoints) hold no further runs
                continue
            # Hidden folders are Hydra's bookkeeping; report folders hold our own output.
            subdirs[:] = sorted(d for d in subdirs if d != REPORT_DIR_NAME and not d.startswith(".")
                                and not rundir.is_retired(Path(d)))  # runs `--force` set aside are history
    return sorted(found)


# -------------------------------------------------------------------------------------- reading runs


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


def as_number(value: Any) -> float:
    """A JSON number (or null / missing) as a float, NaN when absent."""
    if value is None or isinstance(value, bool):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def read_csv(path: Path, required: tuple[str, ...]) -> dict[str, np.ndarray]:
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


def read_config(run_dir: Path) -> dict[str, Any]:
    """config.yaml, flattened, without Hydra's own settings; every REQUIRED_CONFIG_KEYS present."""
    try:
        tree = yaml.load((run_dir / rundir.CONFIG).read_text(), Loader=YamlLoader)
    except FileNotFoundError:
        raise UnreadableRun(f"{rundir.CONFIG} is missing") from None
    except (yaml.YAMLError, UnicodeDecodeError, OSError) as err:
        raise UnreadableRun(f"{rundir.CONFIG} cannot be parsed ({str(err).splitlines()[0]})") from None
    if not isinstance(tree, dict):
        raise UnreadableRun(f"{rundir.CONFIG} is not a mapping")
    tree.pop("hydra", None)
    config = flatten(tree)
    missing = [k for k in REQUIRED_CONFIG_KEYS if config.get(k) in (None, "")]
    if missing:
        raise UnreadableRun(f"{rundir.CONFIG} lacks {', '.join(missing)}")
    return config


def in_order(columns: dict[str, np.ndarray], key: str) -> dict[str, np.ndarray]:
    """The rows sorted by `key`; train.py already writes them in order, so usually nothing to do."""
    if np.all(np.diff(columns[key]) >= 0):
        return columns
    order = np.argsort(columns[key], kind="stable")
    return {name: values[order] for name, values in columns.items()}


def load_run(run_dir: Path) -> RunRecord:
    """Read one run directory; raises UnreadableRun when it cannot be used."""
    config = read_config(run_dir)
    try:
        summary = rundir.load_summary(run_dir)
    except rundir.RunFileError as why:
        raise UnreadableRun(str(why)) from None
    status = summary["status"]
    test = summary.get("test") if isinstance(summary.get("test"), dict) else {}
    baseline = summary.get("baseline") if isinstance(summary.get("baseline"), dict) else {}
    run = RunRecord(
        path=run_dir,
        config=config,
        status=status,
        metric_name=summary.get("metric_name") or None,
        test_loss=as_number(test.get("loss")),
        test_metric=as_number(test.get("metric")),
        baseline_loss=as_number(baseline.get("loss")),
        baseline_metric=as_number(baseline.get("metric")),
        wall_seconds=as_number(summary.get("wall_seconds")),
        overrides=read_overrides(run_dir),
    )
    if status != rundir.COMPLETED:
        return run  # counted, never averaged: nothing else needs reading
    if "test" not in summary:
        raise UnreadableRun(f"{rundir.SUMMARY} of a completed run has no test result")

    curves = in_order(read_csv(run_dir / rundir.METRICS, REQUIRED_METRIC_COLUMNS), "epoch")
    # Hand-made or older files may lack the gap columns; they follow from the others by definition.
    if "gap_loss" not in curves:
        curves["gap_loss"] = curves["val_loss"] - curves["train_loss"]
    if "gap_metric" not in curves and "train_metric" in curves and "val_metric" in curves:
        curves["gap_metric"] = curves["train_metric"] - curves["val_metric"]
    run.curves = curves
    run.gap_loss = float(curves["gap_loss"][-1])
    run.gap_metric = float(curves["gap_metric"][-1]) if "gap_metric" in curves else math.nan
    if "seconds" in curves:
        run.seconds_per_epoch = mean_of(curves["seconds"])
    if "val_metric" in curves and np.isfinite(curves["val_metric"]).any():
        run.best_val_metric = float(np.nanmax(curves["val_metric"]))
    onset = overfitting(curves["epoch"], curves["train_loss"], curves["val_loss"], curves["gap_loss"])
    run.onset_epoch, run.gap_at_best = onset["onset_epoch"], onset["gap_at_best"]
    read_activation_stats(run_dir, run)

    grad_path = run_dir / rundir.GRAD_BY_STEP
    if grad_path.exists():  # a run may have been made without gradient probes
        grads = read_csv(grad_path, rundir.GRAD_COLUMNS)
        last_epoch = np.nanmax(grads["epoch"])
        at_last = grads["epoch"] == last_epoch
        profile = in_order({"t": grads["t"][at_last], "grad_norm": grads["grad_norm"][at_last]}, "t")
        run.grad_epoch = int(last_epoch)
        run.grad_steps = profile["t"]
        run.grad_norms = profile["grad_norm"]
        run.vanishing_ratio = vanishing_ratio(profile["grad_norm"])  # the number summary.json gives
        run.decay_per_step = decay_per_step(profile["t"], profile["grad_norm"])
        run.grad_table = grads
    return run


def read_overrides(run_dir: Path) -> list[str] | None:
    """Hydra's record of the overrides a run was started with, or None when there is none."""
    try:
        overrides = yaml.load(rundir.overrides_path(run_dir).read_text(), Loader=YamlLoader)
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return None
    return [str(o) for o in overrides] if isinstance(overrides, list) else None


def read_activation_stats(run_dir: Path, run: RunRecord) -> None:
    """activation_stats.csv (epoch, stat, value), written by the probe; older runs lack it.

    Parsed by hand: a small long-format file, where pandas' per-file overhead would triple the loading time.
    """
    try:
        lines = (run_dir / rundir.ACTIVATION_STATS).read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        return  # absent (older runs) or unreadable: it costs the statistics, not the run
    if not lines or lines[0].strip() != ",".join(rundir.STAT_COLUMNS):
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
    """Every readable run, and (directory, why) for each that is not."""
    runs, skipped = [], []
    for run_dir in run_dirs:
        try:
            runs.append(load_run(run_dir))
        except UnreadableRun as why:
            skipped.append((run_dir, str(why)))
    return runs, skipped
