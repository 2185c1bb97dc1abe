"""The Python API: finished runs in a notebook.

    import actstudy
    run = actstudy.load_run("outputs/runs/adding-lstm-s0-1a2b3c4d5e6f7a8b")
    run.metrics.plot(x="epoch", y=["train_loss", "val_loss"])    # metrics.csv as a DataFrame
    run.model(x)                                                   # the best-validation weights, ready
    runs = actstudy.load_runs(["outputs/sweeps/activation_grid-1234abcd"])   # one row per run

`load_runs` gives the frame the report is made from: the report's own loader reads the runs, and each
row carries the configuration label the report's tables and plots use.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from actstudy import rundir


class RunLoadError(ValueError):
    """A directory that is not a usable run; the message is one line naming it and why."""


@dataclass
class Run:
    """One run directory, read back."""

    path: Path
    config: dict  # config.yaml, nested as written
    summary: dict  # summary.json
    metrics: pd.DataFrame  # metrics.csv: one row per epoch (rundir.METRIC_COLUMNS)
    grad_by_step: pd.DataFrame  # grad_by_step.csv: ‖∂L/∂h_t‖ per probed epoch and step
    model: Any  # a SequenceModel in eval mode with the best-validation weights (model.pt); None if not kept

    @property
    def status(self) -> str:
        return self.summary["status"]

    def final_model(self):
        """The model with the weights after the last epoch (last.pt), in eval mode."""
        import torch

        path = self.path / rundir.LAST
        if not path.is_file():
            raise RunLoadError(f"{self.path}: no {rundir.LAST} (the run is unfinished, failed, or older than kept models)")
        model = _build_model(self.config, self.summary)
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True)["model"])
        return model.eval()

    def task(self):
        """The run's task with its data, made (or read) exactly as training made it."""
        from actstudy.tasks import build_task

        data_seed = self.config["task"].get("data_seed")
        return build_task(self.config["task"], self.config["seed"] if data_seed is None else data_seed)


def load_run(path: str | Path) -> Run:
    """Read one run directory: config, summary, metrics, gradient profile and a ready model.

    Raises RunLoadError with a one-line message for a directory that is not a run. Loading the model
    unpickles nothing: model.pt is a plain state dict read with `weights_only=True`."""
    import torch
    import yaml

    path = Path(path)
    if not (path / rundir.CONFIG).is_file():
        raise RunLoadError(f"{path}: not a run directory (no {rundir.CONFIG})")
    try:
        config = yaml.safe_load((path / rundir.CONFIG).read_text())
        summary = rundir.load_summary(path)
    except (rundir.RunFileError, yaml.YAMLError, OSError) as err:
        raise RunLoadError(f"{path}: {str(err).splitlines()[0]}") from None
    metrics = _read_frame(path / rundir.METRICS, rundir.METRIC_COLUMNS)
    grads = _read_frame(path / rundir.GRAD_BY_STEP, rundir.GRAD_COLUMNS)
    model = None
    if (path / rundir.MODEL).is_file():
        model = _build_model(config, summary)
        model.load_state_dict(torch.load(path / rundir.MODEL, map_location="cpu", weights_only=True))
        model.eval()
    return Run(path, config, summary, metrics, grads, model)


def _read_frame(path: Path, columns: Iterable[str]) -> pd.DataFrame:
    return pd.read_csv(path) if path.is_file() else pd.DataFrame(columns=list(columns))


def _build_model(config: dict, summary: dict):
    """The run's model, built from its config.yaml; the input and output sizes come from summary.json
    (older runs, which lack them, make the task's data once to learn them)."""
    from omegaconf import OmegaConf

    from actstudy.model import SequenceModel

    shape = summary.get("model_shape")
    if shape is None:
        from actstudy.tasks import build_task

        data_seed = config["task"].get("data_seed")
        task = build_task(config["task"], config["seed"] if data_seed is None else data_seed)
        shape = {"input_size": task.input_size, "output_size": task.output_size, "per_step": task.per_step,
                 "vocab_size": task.vocab_size, "seq_len": task.splits["train"][0].shape[1]}
    return SequenceModel(OmegaConf.create(config["model"]), shape["input_size"], shape["output_size"],
                         shape["per_step"], vocab_size=shape["vocab_size"], seq_len=shape["seq_len"])


# Per-run numbers the frame carries, as the report reads them (RunRecord attributes).
RUN_COLUMNS = (
    "status", "metric_name", "test_loss", "test_metric", "baseline_loss", "baseline_metric", "best_val_metric",
    "gap_loss", "gap_metric", "onset_epoch", "gap_at_best", "vanishing_ratio", "decay_per_step",
    "seconds_per_epoch", "wall_seconds",
)


def load_runs(dirs: str | Path | Iterable[str | Path]) -> pd.DataFrame:
    """Every run at or below `dirs` as one tidy DataFrame: one row per run, with `run_dir`, `task`
    (e.g. "adding T=50"), `configuration` (the report's label for its group: runs that differ only in
    seed share it), the numbers the report reads (RUN_COLUMNS), and every config key flattened
    ("model.activation.gate"). Unreadable run directories are left out, as the report leaves them out."""
    from actstudy.report import build_sections, find_run_dirs, group_runs, load_runs as read_records

    tops = [Path(dirs)] if isinstance(dirs, (str, Path)) else [Path(d) for d in dirs]
    missing = [str(d) for d in tops if not d.exists()]
    if missing:
        raise RunLoadError(f"no such directory: {', '.join(missing)}")
    records, _ = read_records(find_run_dirs(tops))
    labels: dict[Path, tuple[str, str]] = {}
    for section in build_sections(group_runs(records)):
        for group in section.groups:
            for record in group.runs:
                labels[record.path] = (section.title, group.config_label)
    rows = []
    for record in records:
        task, label = labels.get(record.path, (None, None))
        row = {"run_dir": str(record.path), "task": task, "configuration": label}
        row.update({name: getattr(record, name) for name in RUN_COLUMNS})
        row.update(record.config)
        rows.append(row)
    return pd.DataFrame(rows, columns=None if rows else ["run_dir", "task", "configuration", *RUN_COLUMNS])
