"""Named studies: conf/study/NAME.yaml sets a sweep's axes (hydra.sweeper.params) and its sizes."""

from __future__ import annotations

import pytest
import yaml

from conftest import TINY
from sweep_tools import outcome


def test_studies_are_listed(cli):
    result = cli("list")
    assert "activation_grid" in result.output and "600 runs" in result.output


def test_the_activation_grid_means_605_runs_and_dry_run_writes_nothing(cli, tmp_path):
    # 600 in its grid and 5 beyond it (its extra_runs: the relu GRU on adding at lr 0.3), all in one directory
    result = cli("sweep", "study=activation_grid", f"hydra.sweep.dir={tmp_path / 'grid'}", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "605 runs" in result.output and "605 new" in result.output
    for value in ["model=gru", "model.activation.candidate=softsign", "optim.lr=0.03", "task=mnist1d", "seed=4"]:
        assert value in result.output
    extra = [line for line in result.output.splitlines() if "optim.lr=3e-1 " in line]
    assert len(extra) == 5 and all("task=adding model=gru model.activation.candidate=relu" in line for line in extra)
    assert not (tmp_path / "grid").exists()


def test_a_command_that_narrows_a_study_axis_leaves_its_extra_runs_out(cli, tmp_path):
    result = cli("sweep", "study=activation_grid", "optim.lr=1e-2", f"hydra.sweep.dir={tmp_path / 'grid'}",
                 "--dry-run")
    assert result.exit_code == 0, result.output
    assert "120 runs" in result.output and "extra run specification(s) are left out" in result.output
    assert "optim.lr=3e-1 " not in result.output


def test_extra_runs_train_into_the_same_directory_and_count_as_done_next_time(cli, tmp_path):
    # extra_runs is a config key like any other: a study file sets it, and so can a command line.
    sweep_dir = tmp_path / "sweep"
    command = ["sweep", *TINY, "seed=0,1", 'extra_runs=[["model=gru"], ["model=rnn", "seed=5"]]',
               f"hydra.sweep.dir={sweep_dir}"]
    result = cli(*command)
    assert result.exit_code == 0, result.output
    assert "6 runs" in result.output and outcome(result.output)["completed"] == 6
    names = sorted(d.name.rsplit("-", 1)[0] for d in sweep_dir.iterdir() if (d / "summary.json").exists())
    # the grid (the default LSTM, seeds 0 and 1), the first extra (the GRU, at the command's seeds) and the
    # second, whose seed=5 gives way to the command line's seed=0,1: a key the command sets keeps its value
    assert names == ["adding-gru-s0", "adding-gru-s1", "adding-lstm-s0", "adding-lstm-s1", "adding-rnn-s0",
                     "adding-rnn-s1"]
    again = cli(*command)
    assert again.exit_code == 0 and "6 already done" in again.output and outcome(again.output)["completed"] == 0


@pytest.mark.parametrize("extra, message", [
    ("[model_gru]", "extra_runs[0]: 'model_gru' is not a list of overrides (key=value)"),
    ("[[]]", "extra_runs[0]: [] is not a list of overrides"),
    ('[["model=gru"], ["hydra.sweep.dir=elsewhere"]]',
     "extra_runs[1]: 'hydra.sweep.dir=elsewhere' sets hydra.sweep.dir"),
    ('[["hydra/launcher=joblib"]]', "extra_runs[0]: 'hydra/launcher=joblib' sets hydra/launcher"),
    ('[["study=claims"]]', "extra_runs[0]: 'study=claims' sets study, which an extra run cannot change"),
    ('[["model=nonexistent"]]', "unknown model 'nonexistent'; choose one of: gru, irnn, lstm, rnn"),
])
def test_a_bad_extra_run_is_refused_in_one_line_before_anything_is_written(cli, tmp_path, extra, message):
    result = cli("sweep", *TINY, "seed=0", f"extra_runs={extra}", f"hydra.sweep.dir={tmp_path / 's'}")
    assert result.exit_code == 2
    assert message in " ".join(result.output.split()) and "Traceback" not in result.output
    assert not (tmp_path / "s").exists()


def test_dry_run_of_a_fresh_data_study_estimates_its_budget_in_updates(cli, tmp_path):
    # Fresh data has no training-set size: the estimate counts train.max_updates instead (it once crashed here).
    def estimate(*overrides):
        result = cli("sweep", "study=adding_lengths", "task.seq_len=100", "seed=0", *overrides,
                     f"hydra.sweep.dir={tmp_path / 'adding'}", "--dry-run")
        assert result.exit_code == 0, result.output
        assert "1 new" in result.output and "Traceback" not in result.output
        return result.output.split("estimated wall time ")[1].split()[0]

    assert estimate() != estimate("train.max_updates=2000")  # the budget, not a size, sets the estimate
    assert not (tmp_path / "adding").exists()


def test_a_slice_of_the_study_trains_with_its_sizes_and_command_line_axes_win(cli, tmp_path):
    sweep_dir = tmp_path / "grid"
    slice_ = ["study=activation_grid", "seed=0", "model=gru", "task=adding", "model.activation.gate=hard_sigmoid",
              "model.activation.candidate=relu,elu", "optim.lr=3e-3", *TINY, f"hydra.sweep.dir={sweep_dir}"]
    result = cli("sweep", *slice_)
    assert result.exit_code == 0, result.output
    assert outcome(result.output)["completed"] == 2
    configs = [yaml.safe_load((d / "config.yaml").read_text()) for d in sweep_dir.iterdir() if d.is_dir()]
    assert sorted(c["model"]["activation"]["candidate"] for c in configs) == ["elu", "relu"]
    assert all(c["optim"]["lr"] == 0.003 and c["model"]["hidden_size"] == 8 and c["seed"] == 0 for c in configs)


def test_a_study_is_a_sweep_not_a_run(cli):
    result = cli("run", "study=activation_grid")
    assert result.exit_code == 2 and "600 runs" in result.output
