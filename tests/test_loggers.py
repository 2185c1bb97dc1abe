"""logger=tensorboard and logger=mlflow: what they wrote, read back with each library's own reader."""

from __future__ import annotations

import sys

import pandas as pd
import pytest

from conftest import TINY


def test_tensorboard_event_files_hold_every_epoch_and_each_probe(cli, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = tmp_path / "run"
    result = cli("run", *TINY, "logger=tensorboard", f"hydra.run.dir={run_dir}")
    assert result.exit_code == 0, result.output
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    metrics = pd.read_csv(run_dir / "metrics.csv")
    for column, tag in [("train_loss", "loss/train"), ("val_metric", "metric/val"), ("grad_norm", "grad_norm")]:
        written = events.Scalars(tag)
        assert [e.step for e in written] == list(metrics["epoch"])
        assert [e.value for e in written] == pytest.approx(list(metrics[column]), rel=1e-6)
    probed = sorted(pd.read_csv(run_dir / "grad_by_step.csv")["epoch"].unique())
    images = events.Images("grad_by_step")
    assert [i.step for i in images] == probed  # epochs 0, 1 and 2
    assert all(i.encoded_image_string[:8] == b"\x89PNG\r\n\x1a\n" and i.width > 100 for i in images)


def test_mlflow_file_store_holds_params_metrics_tags_and_files(cli, tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    run_dir = tmp_path / "run"
    result = cli("run", *TINY, "logger=mlflow", f"hydra.run.dir={run_dir}")
    assert result.exit_code == 0, result.output
    store = tmp_path / "outputs" / "mlruns"
    assert store.is_dir()  # the local file store by default
    client = MlflowClient(tracking_uri=store.as_uri())
    experiment = client.get_experiment_by_name("actstudy")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.data.params["model.hidden_size"] == "8" and run.data.params["task.name"] == "adding"
    history = client.get_metric_history(run.info.run_id, "loss_train")
    metrics = pd.read_csv(run_dir / "metrics.csv")
    assert [m.step for m in history] == list(metrics["epoch"])
    assert [m.value for m in history] == pytest.approx(list(metrics["train_loss"]))
    assert run.data.tags["status"] == "completed" and run.info.status == "FINISHED"
    assert float(run.data.tags["test.loss"]) == pytest.approx(pd.read_json(run_dir / "summary.json", typ="series")["test"]["loss"])
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"metrics.csv", "summary.json", "config.yaml", "model.pt"} <= artifacts


@pytest.mark.parametrize("name, extra", [("tensorboard", "tensorboard"), ("mlflow", "mlflow")])
def test_a_missing_extra_is_one_line_naming_it(cli, tmp_path, monkeypatch, name, extra):
    monkeypatch.setitem(sys.modules, name, None)  # as if the package were not installed
    result = cli("run", *TINY, f"logger={name}", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.exit_code == 2
    assert f"pip install 'actstudy[{extra}]'" in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_an_unknown_logger_names_the_choices(cli):
    result = cli("run", *TINY, "logger=wandb")
    assert result.exit_code == 2 and "none, tensorboard, mlflow" in result.output
