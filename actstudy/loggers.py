"""Live curves in the tools researchers already watch: `logger=tensorboard` or `logger=mlflow`.

The run directory stays the record the report reads; a logger only copies the same numbers out as they
are made. train.py calls a logger at three points: after each epoch's row (`epoch`), after each gradient
probe (`probe`) and when the run ends (`finish`). Both libraries are optional extras
(pip install 'actstudy[tensorboard]' or 'actstudy[mlflow]'); config.validate refuses the choice when the
extra is missing, before anything trains.

- tensorboard: event files in <run dir>/tensorboard/ (`tensorboard --logdir outputs`): every metrics.csv
  column per epoch (loss/train, loss/val, metric/..., gap/..., grad_norm, seconds), and at each probe the
  gradient-by-step profile as an image (log10 ‖∂L/∂h_t‖ against t).
- mlflow: a local file store, outputs/mlruns, unless MLFLOW_TRACKING_URI says otherwise
  (`MLFLOW_ALLOW_FILE_STORE=true mlflow ui --backend-store-uri outputs/mlruns`); experiment "actstudy";
  params are the resolved config (flattened), metrics per epoch, the summary's values as tags, and the
  run directory's files (config, metrics, gradient profile, summary, model.pt) as artifacts.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from actstudy import rundir

MLFLOW_STORE = "outputs/mlruns"  # beside outputs/runs and outputs/sweeps, so one folder holds a study
MLFLOW_EXPERIMENT = "actstudy"

# metrics.csv column → the tag a logger files it under (grouped by kind, as TensorBoard shows tag prefixes)
SCALAR_TAGS = {
    "train_loss": "loss/train", "val_loss": "loss/val", "train_metric": "metric/train", "val_metric": "metric/val",
    "gap_loss": "gap/loss", "gap_metric": "gap/metric", "grad_norm": "grad_norm", "seconds": "seconds",
}


def flatten(tree: dict) -> dict[str, Any]:
    """{"a": {"b": 1}, "c": 2} → {"a.b": 1, "c": 2}, as the report flattens a config (imported only when a
    logger is on: the report's loader brings pandas)."""
    from actstudy.report.loading import flatten as report_flatten

    return report_flatten(tree)


class NoLogger:
    def epoch(self, row: dict) -> None: ...

    def probe(self, epoch: int, profile: list[float]) -> None: ...

    def finish(self, summary: dict) -> None: ...


class TensorBoardLogger(NoLogger):
    def __init__(self, run_dir: Path, config: dict):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(run_dir / rundir.TENSORBOARD))
        self.writer.add_text("config", "    " + "\n    ".join(f"{k}: {v}" for k, v in flatten(config).items()))

    def epoch(self, row: dict) -> None:
        for column, tag in SCALAR_TAGS.items():
            self.writer.add_scalar(tag, row[column], row["epoch"])
        self.writer.flush()  # so that a TensorBoard watching the folder sees every epoch as it ends

    def probe(self, epoch: int, profile: list[float]) -> None:
        self.writer.add_figure("grad_by_step", profile_figure(epoch, profile), epoch, close=True)
        self.writer.flush()

    def finish(self, summary: dict) -> None:
        self.writer.add_text("summary", "    " + "\n    ".join(f"{k}: {v}" for k, v in summary_tags(summary).items()))
        self.writer.close()


def profile_figure(epoch: int, profile: list[float]):
    """log10 ‖∂L/∂h_t‖ against t, as the report's gradient plot draws it."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5, 3), dpi=80)
    ax = figure.subplots()
    values = [math.log10(float(g)) if g > 0 else math.nan for g in profile]  # 0: underflowed, not drawn
    ax.plot(range(1, len(profile) + 1), values)
    ax.set(xlabel="step t", ylabel="log10 ‖∂L/∂h_t‖", title=f"epoch {epoch}")
    figure.tight_layout()
    return figure


class MlflowLogger(NoLogger):
    def __init__(self, run_dir: Path, config: dict):
        import mlflow

        self.mlflow, self.run_dir = mlflow, run_dir
        if not os.environ.get("MLFLOW_TRACKING_URI"):
            # A folder of plain files: nothing to install or start. MLflow 3 keeps this store working but
            # asks for an explicit opt-in; a database or server is one MLFLOW_TRACKING_URI away.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            mlflow.set_tracking_uri(Path(MLFLOW_STORE).resolve().as_uri())
        mlflow.set_experiment(MLFLOW_EXPERIMENT)
        self.run = mlflow.start_run(run_name=run_dir.name)
        params = {k: v for k, v in flatten(config).items() if k != rundir.CONTINUE_KEY or v}
        mlflow.log_params({k: "null" if v is None else v for k, v in params.items()})
        mlflow.set_tag("run_dir", str(run_dir))

    def epoch(self, row: dict) -> None:
        values = {tag.replace("/", "_"): float(row[column]) for column, tag in SCALAR_TAGS.items()}
        self.mlflow.log_metrics({k: v for k, v in values.items() if math.isfinite(v)}, step=int(row["epoch"]))

    def finish(self, summary: dict) -> None:
        self.mlflow.set_tags(summary_tags(summary))
        for name in (rundir.CONFIG, rundir.METRICS, rundir.GRAD_BY_STEP, rundir.ACTIVATION_STATS, rundir.SUMMARY,
                     rundir.MODEL):
            if (self.run_dir / name).is_file():
                self.mlflow.log_artifact(str(self.run_dir / name))
        status = "FINISHED" if summary.get("status") == rundir.COMPLETED else "FAILED"
        self.mlflow.end_run(status=status)


def summary_tags(summary: dict) -> dict[str, str]:
    """The summary's values as flat text tags (the run's own paths and the model shape left out)."""
    skip = ("run_dir", "model_shape")
    return {k: str(v) for k, v in flatten({k: v for k, v in summary.items() if k not in skip}).items()}


LOGGERS = {"none": NoLogger, "tensorboard": TensorBoardLogger, "mlflow": MlflowLogger}


def open_logger(name: str, run_dir: Path, config: dict) -> NoLogger:
    """The logger `logger=NAME` asks for; config.validate has checked that its extra is installed."""
    return NoLogger() if name == "none" else LOGGERS[name](run_dir, config)
