"""Honest reruns: a run's identity covers the data it reads; --force retrains; --continue trains on."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import TINY

NPZ_TINY = ["model.hidden_size=8", "train.epochs=2", "train.batch_size=16", "train.probe_size=8", "threads=1"]


def write_npz(path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(60, 6, 2)).astype(np.float32)
    np.savez(path, X=x, y=(x[:, :, 0].sum(1) > 0).astype(np.int64))


def run_dirs(folder: Path) -> list[Path]:
    return sorted(d for d in folder.iterdir() if d.is_dir())


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def test_changing_the_data_file_trains_a_new_run(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "mine.npz"
    write_npz(data, seed=0)
    args = ["run", "task=npz", f"task.path={data}", *NPZ_TINY]
    first = cli(*args)
    assert first.exit_code == 0, first.output
    again = cli(*args)
    assert "already done" in again.output
    write_npz(data, seed=1)  # other sequences, same name
    changed = cli(*args)
    assert changed.exit_code == 0, changed.output
    assert "already done" not in changed.output
    runs = run_dirs(tmp_path / "outputs" / "runs")
    assert len(runs) == 2
    hashes = {summary(d)["data_sha256"]["task.path"] for d in runs}
    assert len(hashes) == 2
    # the same bytes written again (a new mtime) are the same data: the run is found, not retrained
    os.utime(data, ns=(1, 1))
    assert "already done" in cli(*args).output


def test_force_retrains_and_keeps_the_old_run_aside(cli, tmp_path):
    run_dir = tmp_path / "run"
    args = ["run", *TINY, f"hydra.run.dir={run_dir}"]
    assert cli(*args).exit_code == 0
    before = summary(run_dir)
    forced = cli(*args, "--force")
    assert forced.exit_code == 0, forced.output
    assert "kept as" in forced.output and "already done" not in forced.output
    old = tmp_path / "run.old-1"
    assert summary(old) == before
    after = summary(run_dir)
    assert after["run_id"] == before["run_id"] and after["test"] == before["test"]  # deterministic
    assert cli(*args, "--force").exit_code == 0
    assert (tmp_path / "run.old-2").is_dir()
    # the report reads the current run only, not the ones set aside
    result = cli("report", str(tmp_path), "--out", str(tmp_path / "rep"))
    assert result.exit_code == 0, result.output
    assert "1 runs in 1 configurations" in " ".join(result.output.split())


def test_a_run_keeps_its_best_and_final_weights(cli, tmp_path):
    run_dir = tmp_path / "run"
    assert cli("run", *TINY, f"hydra.run.dir={run_dir}").exit_code == 0
    best = torch.load(run_dir / "model.pt", weights_only=True)
    last = torch.load(run_dir / "last.pt", weights_only=True)
    assert not (run_dir / "checkpoint.pt").exists()
    assert set(best) == set(last["model"]) and all(isinstance(v, torch.Tensor) for v in best.values())
    assert last["epoch"] == 2


def test_continue_trains_on_from_the_final_weights_as_a_new_run(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    refused = cli("run", *TINY, "train.epochs=4", "--continue")
    assert refused.exit_code == 2 and "no completed run" in refused.output
    assert cli("run", *TINY).exit_code == 0  # 2 epochs
    (parent,) = run_dirs(tmp_path / "outputs" / "runs")
    cont = cli("run", *TINY, "train.epochs=4", "--continue")
    assert cont.exit_code == 0, cont.output
    child = next(d for d in run_dirs(tmp_path / "outputs" / "runs") if d != parent)
    s = summary(child)
    assert s["parent"]["run_id"] == summary(parent)["run_id"] and s["epochs_completed"] == 4
    assert s["run_id"] != summary(parent)["run_id"]
    head = pd.read_csv(child / "metrics.csv").head(2).drop(columns="seconds")
    pd.testing.assert_frame_equal(head, pd.read_csv(parent / "metrics.csv").drop(columns="seconds"))
    # training on from the kept state is training for 4 epochs in one go, number for number
    fresh = tmp_path / "fresh"
    assert cli("run", *TINY, "train.epochs=4", f"hydra.run.dir={fresh}").exit_code == 0
    pd.testing.assert_frame_equal(pd.read_csv(child / "metrics.csv").drop(columns="seconds"),
                                  pd.read_csv(fresh / "metrics.csv").drop(columns="seconds"))
    assert s["test"] == summary(fresh)["test"]
    assert "already done" in cli("run", *TINY, "train.epochs=4", "--continue").output


def test_force_and_continue_together_are_refused(cli):
    result = cli("run", *TINY, "--force", "--continue")
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1
