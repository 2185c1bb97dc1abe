"""The CLI as a user touches it: commands, the files a run writes, bad input."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from conftest import TINY, read_csv_exact, read_run
from actstudy.rundir import METRIC_COLUMNS


def test_list_names_every_choice(cli):
    result = cli("list")
    assert result.exit_code == 0
    for name in ["lstm", "gru", "rnn", "hard_sigmoid", "leaky_relu", "softsign", "identity",
                 "adding", "copy", "mnist1d", "adam", "rmsprop", "sgd"]:
        assert name in result.output


def test_every_command_has_help_with_an_example(cli):
    for command in ["run", "sweep", "report", "list"]:
        result = cli(command, "--help")
        assert result.exit_code == 0
        assert "actstudy" in result.output and "Example" in result.output


def test_run_writes_a_complete_run_directory(cli, tmp_path):
    run_dir = tmp_path / "run"
    result = cli("run", *TINY, f"hydra.run.dir={run_dir}", "--quiet")
    assert result.exit_code == 0, result.output
    assert "completed" in result.output and "baseline" in result.output
    metrics, grads, summary = read_run(run_dir)
    assert list(metrics.columns) == list(METRIC_COLUMNS)
    assert list(metrics.epoch) == [1, 2]
    assert (metrics.gap_loss == metrics.val_loss - metrics.train_loss).all()
    assert (metrics.gap_metric == metrics.train_metric - metrics.val_metric).all()
    # the probe: before training, after the first and after the last epoch, at every one of T=10 steps
    assert sorted(grads.epoch.unique()) == [0, 1, 2]
    assert list(grads[grads.epoch == 2].t) == list(range(1, 11))
    assert (grads.grad_norm > 0).all()
    assert summary["status"] == "completed"
    assert summary["baseline"]["loss"] == pytest.approx(1 / 6)
    assert set(summary["test"]) == {"loss", "metric"}
    assert summary["params"] > 0 and summary["wall_seconds"] > 0
    assert summary["best_epoch"] in (1, 2)
    assert (run_dir / "config.yaml").is_file() and (run_dir / "actstudy.log").is_file()
    assert "model:" in (run_dir / "config.yaml").read_text()


def test_a_run_leaves_the_cycle_collector_as_it_found_it(cli, tmp_path):
    """Training freezes the objects made before its loop (runtime.freeze_long_lived_objects); the next run in
    the same process (a sweep's worker) must start with nothing frozen, or garbage from one run could pile up."""
    import gc

    assert gc.get_freeze_count() == 0
    result = cli("run", *TINY, f"hydra.run.dir={tmp_path / 'run'}", "-q")
    assert result.exit_code == 0, result.output
    assert gc.get_freeze_count() == 0 and gc.isenabled()


def test_same_config_and_seed_give_identical_metrics(cli, tmp_path):
    frames = []
    for name in ("a", "b"):
        result = cli("run", *TINY, "model.activation.candidate=relu", f"hydra.run.dir={tmp_path / name}", "-q")
        assert result.exit_code == 0, result.output
        frames.append(read_csv_exact(tmp_path / name / "metrics.csv").drop(columns="seconds"))
    # every measured column is bit-identical; only the wall-clock `seconds` differs between two runs
    pd.testing.assert_frame_equal(frames[0], frames[1], check_exact=True)
    assert (tmp_path / "a" / "grad_by_step.csv").read_text() == (tmp_path / "b" / "grad_by_step.csv").read_text()


def test_element_wise_clipping_bounds_every_gradient_entry(cli, tmp_path):
    """With plain SGD a step is lr x the gradient: clipping each entry to 1e-9 leaves the model where it
    started (train loss equal to 6 digits over both epochs), without clipping it moves; the logged gradient
    norm is the one before clipping either way."""
    losses, norms = {}, {}
    for name, extra in (("clipped", ["train.clip_value=1e-9"]), ("free", [])):
        result = cli("run", *TINY, "optim=sgd", "optim.lr=0.5", "train.clip_grad=null", *extra,
                     f"hydra.run.dir={tmp_path / name}", "-q")
        assert result.exit_code == 0, result.output
        metrics, _, summary = read_run(tmp_path / name)
        losses[name], norms[name] = metrics["train_loss"].to_numpy(), metrics["grad_norm"].to_numpy()
        assert summary["status"] == "completed"
    assert abs(losses["clipped"][0] - losses["clipped"][1]) < 1e-6 * losses["clipped"][0]
    assert abs(losses["free"][0] - losses["free"][1]) > 1e-4 * losses["free"][0]
    assert norms["clipped"][0] > 1e-6  # measured before clipping, not the clipped 1e-9 entries


def test_a_gradient_norm_that_overflows_is_divergence_even_while_the_loss_is_finite(cli, tmp_path):
    """An IRNN under RMSProp: the first step moves every weight by ~10x lr (the squared-gradient average
    starts at 0), the identity recurrence turns explosive, and the gradient's float32 norm overflows while
    the loss is still a finite 1e25. Before this was caught, clipping scaled the gradients by 1/inf = 0 and
    the run sat unchanged for its whole budget, reported as completed."""
    result = cli("run", "model=irnn", "optim=rmsprop", "task.seq_len=100", "task.train_size=null",
                 "task.val_size=100", "task.test_size=100", "model.hidden_size=128", "train.batch_size=20",
                 "train.max_updates=300", "train.eval_every=50", "threads=1", f"hydra.run.dir={tmp_path / 'irnn'}", "-q")
    assert result.exit_code == 0, result.output
    _, _, summary = read_run(tmp_path / "irnn")
    assert summary["status"] == "diverged" and summary["updates"] < 300
    assert "gradient norm became inf" in (tmp_path / "irnn" / "actstudy.log").read_text()


def test_another_seed_gives_other_numbers(cli, tmp_path):
    for seed in (0, 1):
        assert cli("run", *TINY, f"seed={seed}", f"hydra.run.dir={tmp_path / str(seed)}", "-q").exit_code == 0
    a, b = (pd.read_csv(tmp_path / s / "metrics.csv") for s in ("0", "1"))
    assert not a.train_loss.equals(b.train_loss)


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["model.activation.candidate=relux"], ["relux", "leaky_relu", "tanh"]),
        (["task=nope"], ["nope", "adding", "copy", "mnist1d"]),
        (["task.seq_len=-5"], ["task.seq_len", "-5"]),
        (["model=transformer"], ["transformer", "lstm", "gru", "rnn"]),
        (["optim=adamw"], ["adamw", "adam", "sgd"]),
        (["model.hidden_size=abc"], ["model.hidden_size", "abc"]),
        (["model.dropout=1.5"], ["model.dropout", "1.5"]),
        (["device=tpu"], ["tpu", "cpu", "cuda"]),
        (["optim.alpha=0.9"], ["optim.alpha=0.9", "RMSProp", "adam", "optim=rmsprop", "0.99"]),
        (["optim=sgd", "optim.square_avg_init=1e-3"], ["optim.square_avg_init=0.001", "sgd", "optim=rmsprop"]),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, overrides, expected):
    run_dir = tmp_path / "never"
    proc = subprocess.run(
        [sys.executable, "-m", "actstudy", "run", *overrides, f"hydra.run.dir={run_dir}"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    for word in expected:
        assert word in lines[0]
    assert not run_dir.exists()  # nothing is written for a config that cannot run


def test_bad_value_inside_a_sweep_is_caught_before_any_run(cli, tmp_path):
    result = cli("sweep", *TINY, "model.activation.candidate=tanh,relux", f"hydra.sweep.dir={tmp_path}/s")
    assert result.exit_code == 2
    assert "relux" in result.output
    assert not (tmp_path / "s").exists()


def test_report_on_missing_folder_is_one_line_and_exit_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "actstudy", "report", str(tmp_path / "nowhere")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "nowhere" in proc.stderr


def test_run_refuses_a_sweep(cli):
    result = cli("run", "seed=0,1")
    assert result.exit_code == 2 and "actstudy sweep" in result.output


def test_sweep_dry_run_lists_the_runs(cli, tmp_path):
    result = cli("sweep", "model=lstm,gru", "seed=range(3)", f"hydra.sweep.dir={tmp_path}/s", "--dry-run")
    assert result.exit_code == 0
    assert "6 runs" in result.output
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("task", ["copy", "mnist1d"])
def test_other_tasks_run_end_to_end(cli, tmp_path, task):
    extra = ["task.train_size=64", "task.val_size=32", "task.test_size=32"]
    if task == "copy":
        extra.append("task.seq_len=5")
    common = ["model.hidden_size=8", "train.epochs=1", "train.batch_size=32", "train.probe_size=8", "threads=1"]
    result = cli("run", f"task={task}", "model=gru", *common, *extra, f"hydra.run.dir={tmp_path}", "-q")
    assert result.exit_code == 0, result.output
    _, grads, summary = read_run(tmp_path)
    assert summary["status"] == "completed"
    assert summary["metric_name"] in ("recall_acc", "accuracy")
    assert grads.t.max() == (5 + 20 if task == "copy" else 40)


def test_a_diverging_run_is_recorded_and_the_sweep_completes(cli, tmp_path):
    sweep_dir = tmp_path / "s"
    result = cli(
        "sweep", *TINY, "model.activation.candidate=relu", "model.activation.output=relu",
        "train.clip_grad=null", "optim=sgd", "optim.lr=1e4,0.01", f"hydra.sweep.dir={sweep_dir}",
    )
    assert result.exit_code == 0, result.output
    statuses = sorted(read_run(d)[2]["status"] for d in sweep_dir.iterdir() if (d / "summary.json").exists())
    assert statuses == ["completed", "diverged"]
    diverged = next(d for d in sweep_dir.iterdir() if (d / "summary.json").exists()
                    and read_run(d)[2]["status"] == "diverged")
    summary = read_run(diverged)[2]
    assert summary["epochs_completed"] < 2


def test_summary_names_the_compiled_build_that_trained_the_custom_cells(cli, tmp_path, monkeypatch):
    # Two builds of the compiled loop (another instruction set, another version) round float32 differently, so
    # a run says which one trained it; torch's kernel and the Python loop leave it null.
    from actstudy import native

    def compiled_loop(name: str, *overrides: str) -> object:
        result = cli("run", *TINY, *overrides, f"hydra.run.dir={tmp_path / name}", "-q")
        assert result.exit_code == 0, result.output
        return read_run(tmp_path / name)[2]["compiled_loop"]

    assert compiled_loop("fused", "model.impl=auto") is None
    build = native.load()
    if build is None:
        pytest.skip(f"no compiled loop here ({native.unavailable_reason()})")
    assert compiled_loop("custom", "model.impl=custom") == build.__name__
    assert build.__name__.startswith("actstudy_recurrent_")
    monkeypatch.setattr(native, "_loaded", {})
    monkeypatch.setenv("ACTSTUDY_NATIVE", "0")
    assert compiled_loop("python", "model.impl=custom") is None


@pytest.mark.parametrize("model", ["lstm", "gru"])
def test_default_slots_run_fused_and_match_the_custom_path(cli, tmp_path, model):
    # impl=auto picks torch's kernel for the default slots; impl=custom (the hand-written backward through
    # time) must train the same model from the same seed to the same numbers, up to float rounding.
    frames = {}
    for impl in ("auto", "custom"):
        run_dir = tmp_path / impl
        result = cli("run", *TINY, f"model={model}", f"model.impl={impl}", f"hydra.run.dir={run_dir}", "-q")
        assert result.exit_code == 0, result.output
        metrics, grads, summary = read_run(run_dir)
        assert summary["impl"] == ("fused" if impl == "auto" else "custom")
        frames[impl] = (metrics.drop(columns="seconds"), grads, summary)
    (fused, fused_grads, fused_summary), (custom, custom_grads, custom_summary) = frames["auto"], frames["custom"]
    pd.testing.assert_frame_equal(fused, custom, check_exact=False, rtol=1e-4, atol=1e-6)
    pd.testing.assert_frame_equal(fused_grads, custom_grads, check_exact=False, rtol=1e-3, atol=1e-8)
    assert fused_summary["test"]["loss"] == pytest.approx(custom_summary["test"]["loss"], rel=1e-4)
