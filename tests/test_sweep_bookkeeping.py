"""Sweep bookkeeping as a user meets it: run identity, skip and reuse, failures, dry runs, plugins."""

from __future__ import annotations

import json

import pytest
from omegaconf import OmegaConf

from conftest import TINY, read_run
from sweep_tools import outcome
from actstudy.config import compose
from actstudy.sweeps import default_sweep_dir, run_dir_name, run_id, sweep_arguments


# ------------------------------------------------------------------------------------------ identity


def test_run_id_ignores_how_a_run_is_executed_but_not_what_it_computes():
    base = compose(TINY)
    assert run_id(base) == run_id(compose([*TINY, "quiet=true", "threads=2"]))
    assert run_id(base) != run_id(compose([*TINY, "seed=1"]))
    assert run_id(base) != run_id(compose([*TINY, "model.activation.candidate=relu"]))
    assert run_id(base) != run_id(compose([*TINY, "device=cpu"]))  # device: other kernels, other numbers


def test_run_id_does_not_depend_on_key_order():
    cfg = compose(TINY)
    tree = OmegaConf.to_container(cfg, resolve=True)
    reordered = {k: tree[k] for k in reversed(list(tree))}
    assert run_id(cfg) == run_id(reordered)
    assert run_dir_name(cfg).startswith("adding-lstm-s0-") and run_dir_name(cfg).endswith(run_id(cfg))


def test_the_default_sweep_dir_stays_when_a_seed_or_a_value_is_added():
    a = default_sweep_dir(["model=lstm,gru", "seed=0,1", "task=adding"], None)
    assert a == default_sweep_dir(["task=adding", "model=lstm,gru", "seed=0,1,2", "hydra/launcher=joblib"], None)
    assert a != default_sweep_dir(["model=lstm,gru", "seed=0,1", "task=copy"], None)
    assert default_sweep_dir(["study=activation_grid"], "activation_grid").startswith("outputs/sweeps/activation_grid-")


def test_a_command_line_axis_replaces_the_studys():
    jobs = sweep_arguments(["seed=7", "task=copy"], {"model": "lstm,gru", "seed": "0,1,2"})
    assert jobs == [["model=lstm", "seed=7", "task=copy"], ["model=gru", "seed=7", "task=copy"]]


# ------------------------------------------------------------------------------------------ sweeps


def test_adding_a_seed_trains_only_the_new_runs(cli, tmp_path):
    sweep_dir = tmp_path / "sweep"
    args = ["sweep", *TINY, "model=lstm,gru", f"hydra.sweep.dir={sweep_dir}"]
    first = cli(*args, "seed=0,1")
    assert first.exit_code == 0, first.output
    assert outcome(first.output)["completed"] == 4
    stamps = {d.name: (d / "metrics.csv").stat().st_mtime_ns for d in sweep_dir.iterdir() if d.is_dir()}

    dry = cli(*args, "seed=0,1,2", "--dry-run")
    assert "6 runs" in dry.output and "4 already done" in dry.output and "2 new" in dry.output
    assert dry.output.count("(completed)") == 4 and dry.output.count("(new)") == 2

    second = cli(*args, "seed=0,1,2")
    assert second.exit_code == 0, second.output
    assert outcome(second.output) == {"completed": 2, "diverged": 0, "failed": 0, "skipped": 4, "unfinished": 0}
    for name, stamp in stamps.items():  # the finished runs were not touched
        assert (sweep_dir / name / "metrics.csv").stat().st_mtime_ns == stamp
    assert len([d for d in sweep_dir.iterdir() if d.is_dir() and not d.name.startswith(".")]) == 6


def test_a_sweep_with_a_failing_and_a_diverging_run_finishes_the_rest_and_exits_non_zero(cli, tmp_path, monkeypatch):
    import actstudy.train

    def prepare_or_fail(threads, seed):  # seed 1 cannot start here, as a run whose node lacks what it needs
        if seed == 1:
            raise RuntimeError("injected: seed 1 cannot start on this machine")
        return prepare_torch(threads, seed)

    prepare_torch = actstudy.train.prepare_torch
    monkeypatch.setattr(actstudy.train, "prepare_torch", prepare_or_fail)
    sweep_dir = tmp_path / "sweep"
    # lr=1e6 with unbounded activations and no clipping blows up at once.
    result = cli("sweep", *TINY, "model.activation.candidate=relu", "model.activation.output=relu",
                 "train.clip_grad=null", "seed=0,1", "optim.lr=0.001,1e6", f"hydra.sweep.dir={sweep_dir}")
    assert result.exit_code == 1
    assert outcome(result.output) == {"completed": 1, "diverged": 1, "failed": 2, "skipped": 0, "unfinished": 0}
    assert "injected: seed 1 cannot start" in result.output
    statuses = {}
    for run in sweep_dir.iterdir():
        if run.is_dir():
            summary = read_run(run)[2] if (run / "metrics.csv").exists() else json.loads((run / "summary.json").read_text())
            statuses.setdefault(summary["status"], []).append(run)
    assert {k: len(v) for k, v in statuses.items()} == {"completed": 1, "diverged": 1, "failed": 2}
    assert all("Traceback" in (run / "error.txt").read_text() for run in statuses["failed"])
    report = cli("report", str(sweep_dir))
    assert report.exit_code == 0, report.output

    # the same command again: the finished runs are skipped, the failed ones are retried (and fail again)
    again = cli("sweep", *TINY, "model.activation.candidate=relu", "model.activation.output=relu",
                "train.clip_grad=null", "seed=0,1", "optim.lr=0.001,1e6", f"hydra.sweep.dir={sweep_dir}")
    assert again.exit_code == 1
    assert outcome(again.output) == {"completed": 0, "diverged": 0, "failed": 2, "skipped": 2, "unfinished": 0}


def test_a_missing_launcher_plugin_names_the_extra_to_install(cli, tmp_path):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    try:
        import hydra_plugins.hydra_ray_launcher  # noqa: F401
        pytest.skip("the ray launcher is installed here")
    except ImportError:
        pass
    result = cli("sweep", *TINY, "seed=0,1", "hydra/launcher=ray", f"hydra.sweep.dir={tmp_path / 's'}")
    assert result.exit_code == 2
    assert "pip install 'actstudy[ray]'" in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "s").exists()


def test_composing_a_sweep_at_once_gives_the_configs_one_by_one_composition_gives():
    from actstudy.config import compose_many

    jobs = sweep_arguments(["study=activation_grid", *TINY],
                           {"model": "lstm,gru", "model.activation.candidate": "tanh,elu", "task": "adding,copy"})
    for job, cfg in zip(jobs, compose_many(jobs)):
        assert OmegaConf.to_container(cfg, resolve=True) == OmegaConf.to_container(compose(job), resolve=True)
