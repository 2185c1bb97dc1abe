"""Budgets in updates, evaluation every k updates, fresh training data, and when a run is solved."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import TINY, read_csv_exact
from test_resume import assert_same_results, kill_during

from actstudy import rundir
from actstudy.config import compose, plain
from actstudy.tasks import build_task

FRESH = [*TINY, "task.train_size=null", "train.max_updates=24", "train.eval_every=8"]


def run(cli, tmp_path: Path, *args: str, name: str = "run"):
    result = cli("run", *args, f"hydra.run.dir={tmp_path / name}", "-q")
    assert result.exit_code == 0, result.output
    directory = tmp_path / name
    return read_csv_exact(directory / "metrics.csv"), json.loads((directory / "summary.json").read_text())


def test_new_keys_at_their_defaults_keep_every_run_id():
    base = plain(compose(TINY))
    assert "eval_every" in base["train"]  # in the config, with its default...
    assert "eval_every" not in rundir.identity_tree(base)["train"]  # ...but not in the identity
    explicit = plain(compose([*TINY, "train.eval_every=null", "train.stop_when_solved=false"]))
    assert rundir.run_id(explicit) == rundir.run_id(base)
    for override in ("train.eval_every=2", "train.max_updates=3", "train.solve_at=0.5", "train.stop_when_solved=true"):
        assert rundir.run_id(plain(compose([*TINY, override]))) != rundir.run_id(base), override


def test_eval_every_evaluates_between_epoch_ends(cli, tmp_path):
    # 64 sequences in batches of 16: 4 updates an epoch, 8 in 2 epochs; evaluated at 3, 6 and the last, 8
    metrics, summary = run(cli, tmp_path, *TINY, "train.eval_every=3")
    assert list(metrics["updates"]) == [3, 6, 8]
    assert list(metrics["epoch"]) == [0.75, 1.5, 2]
    assert summary["updates"] == 8 and summary["epochs_completed"] == 3


def test_per_epoch_evaluation_is_unchanged_by_default(cli, tmp_path):
    metrics, summary = run(cli, tmp_path, *TINY)
    assert list(metrics["epoch"]) == [1, 2] and list(metrics["updates"]) == [4, 8]
    assert summary["update_budget"] == 8


def test_max_updates_ends_before_the_epochs_do(cli, tmp_path):
    metrics, summary = run(cli, tmp_path, *TINY, "train.max_updates=5")
    assert list(metrics["updates"]) == [4, 5]  # epoch 1's end, then the budget
    assert list(metrics["epoch"]) == [1, 1.25]
    assert summary["updates"] == 5 and summary["update_budget"] == 5


def test_a_run_solved_at_once_stops_and_records_when(cli, tmp_path):
    metrics, summary = run(cli, tmp_path, *TINY, "train.solve_at=0", "train.stop_when_solved=true")
    assert list(metrics["updates"]) == [4] and list(metrics["updates_to_solve"]) == [4]
    assert summary["updates_to_solve"] == 4 and summary["solve_at"] == 0 and summary["status"] == "completed"


def test_an_unsolved_run_is_censored_at_its_budget(cli, tmp_path):
    metrics, summary = run(cli, tmp_path, *TINY, "train.solve_at=2")  # accuracy never reaches 2
    assert metrics["updates_to_solve"].isna().all()  # written as empty cells
    assert summary["updates_to_solve"] is None and summary["updates"] == summary["update_budget"] == 8


def test_solved_is_the_first_evaluation_at_or_above_the_criterion(cli, tmp_path):
    metrics, _ = run(cli, tmp_path, *FRESH, name="free")
    level = float(metrics["val_metric"].iloc[1])  # reached at the second evaluation (update 16), maybe before
    first = int(metrics.loc[metrics["val_metric"] >= level, "updates"].iloc[0])
    solved, summary = run(cli, tmp_path, *FRESH, f"train.solve_at={level!r}", name="solved")
    assert summary["updates_to_solve"] == first
    assert list(solved["updates_to_solve"].dropna()) == [first] * int((solved["updates"] >= first).sum())
    assert solved["updates_to_solve"][solved["updates"] < first].isna().all()


def test_each_task_says_when_it_is_solved():
    adding = build_task({"name": "adding", "seq_len": 4, "train_size": 8, "val_size": 8, "test_size": 8}, 0)
    copy = build_task({"name": "copy", "seq_len": 4, "train_size": 8, "val_size": 8, "test_size": 8}, 0)
    digits = build_task({"name": "digits"}, 0)
    assert (adding.solved_at, copy.solved_at, digits.solved_at) == (0.95, 0.99, None)


@pytest.mark.parametrize("name", ["adding", "copy"])
def test_fresh_batches_are_new_each_update_and_the_same_for_the_same_seed(name):
    cfg = {"name": name, "seq_len": 6, "train_size": None, "val_size": 8, "test_size": 8}
    task, again = build_task(cfg, 3), build_task(cfg, 3)
    x0, y0 = task.fresh_batch(0, 5)
    x1, _ = task.fresh_batch(1, 5)
    assert not torch.equal(x0, x1)
    assert torch.equal(x0, again.fresh_batch(0, 5)[0]) and torch.equal(y0, again.fresh_batch(0, 5)[1])
    assert not torch.equal(x0, build_task(cfg, 4).fresh_batch(0, 5)[0])
    assert x0.shape[1:] == task.splits["val"][0].shape[1:]
    assert len(task.splits["train"][0]) == 8  # the fixed sample the training loss is measured on
    assert build_task({**cfg, "train_size": 8}, 3).fresh_batch is None


def test_fresh_data_trains_for_max_updates(cli, tmp_path):
    metrics, summary = run(cli, tmp_path, *FRESH)
    assert list(metrics["updates"]) == [8, 16, 24] and list(metrics["epoch"]) == [1, 2, 3]
    assert summary["updates"] == 24


def test_fresh_data_without_a_budget_is_refused(cli, tmp_path):
    result = cli("run", *TINY, "task.train_size=null", f"hydra.run.dir={tmp_path / 'run'}", "-q")
    assert result.exit_code == 2
    assert "train.max_updates" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("args, named", [
    ([*TINY, "train.eval_every=0"], "train.eval_every=0"),
    ([*TINY, "train.max_updates=-1"], "train.max_updates=-1"),
    ([*TINY, "train.solve_at=nan"], "train.solve_at=nan"),
])
def test_bad_budget_values_are_refused(cli, tmp_path, args, named):
    result = cli("run", *args, f"hydra.run.dir={tmp_path / 'run'}", "-q")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert named in result.output and len(result.output.strip().splitlines()) == 1


def test_a_killed_fresh_data_run_records_the_same_updates_to_solve(cli, tmp_path):
    longer = [*TINY, "task.seq_len=20", "task.val_size=128", "task.train_size=null", "train.max_updates=1200",
              "train.eval_every=20"]
    free, _ = run(cli, tmp_path, *longer, name="free")
    # a criterion first met well after the first checkpoint: the first new best at or after evaluation 6
    values = list(free["val_metric"])
    index = next(i for i in range(6, len(values)) if values[i] > max(values[:i]))
    args = ["run", *longer, f"train.solve_at={values[index]!r}", "train.stop_when_solved=true", "-q"]
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    assert cli(*args, f"hydra.run.dir={reference}").exit_code == 0
    expected = json.loads((reference / "summary.json").read_text())["updates_to_solve"]
    assert expected == int(free["updates"][index])
    # killed as soon as its first checkpoint exists: on an idle machine 0.3 s more let it run ten evaluations,
    # past the criterion, and the kill tested nothing
    assert kill_during([*args, f"hydra.run.dir={killed}"], tmp_path, 0.0)
    assert 0 < len(read_csv_exact(killed / "metrics.csv")) <= index
    assert cli(*args, f"hydra.run.dir={killed}").exit_code == 0
    assert "resumed from the checkpoint" in (killed / "actstudy.log").read_text()
    assert_same_results(reference, killed)
    assert json.loads((killed / "summary.json").read_text())["updates_to_solve"] == expected


@pytest.mark.parametrize("cfg", [
    {"name": "adding", "seq_len": 5, "train_size": 400, "val_size": 300, "test_size": 3000},
    {"name": "copy", "seq_len": 5, "train_size": 20, "val_size": 20, "test_size": 20},
    {"name": "digits"},
])
def test_each_split_has_its_own_floor_and_the_test_floor_is_the_baseline(cfg):
    from actstudy.train import split_floors

    task = build_task(cfg, 0)
    floors = split_floors(task)
    assert floors["test"] == pytest.approx(task.baseline["loss"], rel=0.1 if cfg["name"] == "adding" else 1e-5)  # adding: 1/6 in expectation
    if cfg["name"] == "adding":  # each split's own label variance: mean (y − 1)² of its targets
        y = task.splits["val"][1]
        assert floors["val"] == pytest.approx(float(((y - 1) ** 2).mean()), rel=1e-6)


def test_the_relative_gap_of_a_model_at_the_floor_is_zero():
    from actstudy.train import relative_gap

    floors = {"train": 0.155, "val": 0.159}
    assert relative_gap(0.155, 0.159, floors) == pytest.approx(0.0)  # the raw gap would be +0.004
    assert relative_gap(0.0775, 0.159, floors) == pytest.approx(0.5)
    assert relative_gap(0.1, 0.1, None) is None


def test_runs_made_before_the_new_keys_group_with_runs_at_their_defaults(cli, tmp_path):
    import yaml

    for seed in (0, 1):
        assert cli("run", *TINY, f"seed={seed}", f"hydra.run.dir={tmp_path / f's{seed}'}", "-q").exit_code == 0
    old = tmp_path / "s0" / "config.yaml"  # as a run made before train.eval_every & co existed
    config = yaml.safe_load(old.read_text())
    for key in ("eval_every", "max_updates", "solve_at", "stop_when_solved"):
        del config["train"][key]
    old.write_text(yaml.safe_dump(config))
    result = cli("report", str(tmp_path), "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    import pandas as pd

    assert len(pd.read_csv(tmp_path / "out" / "summary.csv")) == 1  # one configuration, two seeds
