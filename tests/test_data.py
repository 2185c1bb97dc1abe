"""Bring-your-own data: task=npz and task=csv, variable lengths, token inputs, digits, ucr, bad data."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from actstudy.model import SequenceModel
from actstudy.tasks import TaskConfigError, build_task, check_task_config
from actstudy.tasks._sequences import DataError
from actstudy.probe import grad_norm_by_step
from actstudy.train import evaluate

from conftest import read_run

SMALL_RUN = ["model.hidden_size=8", "train.epochs=2", "train.batch_size=16", "train.probe_size=16", "threads=1", "-q"]


def variable_sequences(count=90, features=3, classes=3, seed=0):
    """Sequences of 4..15 steps whose class shifts feature 0, so a model can learn it."""
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for _ in range(count):
        label = int(rng.integers(classes))
        seq = rng.normal(size=(int(rng.integers(4, 16)), features)).astype(np.float32)
        seq[:, 0] += label
        xs.append(seq)
        ys.append(label)
    return xs, np.array(ys)


def ragged(xs):
    """Sequences of different lengths as plain arrays: concatenated along time, with each one's length."""
    return {"X": np.concatenate(xs), "lengths": np.array([len(seq) for seq in xs])}


def object_array(xs):
    out = np.empty(len(xs), dtype=object)
    out[:] = xs
    return out


def write_long_csv(path, xs, ys, split=None):
    rows = []
    for i, (seq, label) in enumerate(zip(xs, ys)):
        for t, step in enumerate(seq):
            row = {"id": f"seq{i}", "t": t, **{f"f{j}": float(v) for j, v in enumerate(step)}, "label": label}
            if split is not None:
                row["split"] = split[i]
            rows.append(row)
    pd.DataFrame(rows).to_csv(path, index=False)


def padded(xs, extra=0):
    total = max(len(s) for s in xs) + extra
    x = np.zeros((len(xs), total, xs[0].shape[1]), dtype=np.float32)
    for i, seq in enumerate(xs):
        x[i, : len(seq)] = seq
    return x, np.array([len(s) for s in xs])


# ---------------------------------------------------------------- npz layouts


@pytest.mark.parametrize("layout", ["lengths", "offsets", "pickled"])
def test_npz_variable_lengths_become_padded_tensors_with_lengths(tmp_path, layout):
    xs, ys = variable_sequences()
    cfg = {"name": "npz", "path": str(tmp_path / "d.npz")}
    if layout == "lengths":
        np.savez(tmp_path / "d.npz", **ragged(xs), y=ys)
    elif layout == "offsets":
        np.savez(tmp_path / "d.npz", X=np.concatenate(xs), offsets=np.cumsum([0] + [len(s) for s in xs]), y=ys)
    else:  # N arrays in an object array: pickled, so only by choice
        np.savez(tmp_path / "d.npz", X=object_array(xs), y=ys)
        with pytest.raises(DataError, match="task.allow_pickle=true"):
            build_task(cfg, seed=0)
        cfg["allow_pickle"] = True
    task = build_task(cfg, seed=0)
    total = max(len(s) for s in xs)
    assert (task.input_size, task.output_size, task.per_step, task.metric_name) == (3, 3, False, "accuracy")
    sizes = {split: len(task.splits[split][0]) for split in ("train", "val", "test")}
    assert sum(sizes.values()) == 90 and min(sizes.values()) > 0
    for split, (x, y) in task.splits.items():
        lengths = task.lengths[split]
        assert x.shape[1:] == (total, 3) and lengths.dtype == torch.int64 and len(lengths) == len(x)
        steps = torch.arange(total)
        padding = steps.unsqueeze(0) >= lengths.unsqueeze(1)  # (N, T)
        assert (x[padding] == 0).all()  # right-padded with zeros after the real steps
    assert any("class" in note for note in task.notes)  # the inferred target is reported


def test_standardisation_uses_training_statistics_only(tmp_path):
    xs, ys = variable_sequences()
    np.savez(tmp_path / "d.npz", **ragged(xs), y=ys)
    task = build_task({"name": "npz", "path": str(tmp_path / "d.npz")}, seed=0)
    x, _ = task.splits["train"]
    real = torch.arange(x.shape[1]).unsqueeze(0) < task.lengths["train"].unsqueeze(1)
    steps = x[real].double()  # (real steps, F)
    torch.testing.assert_close(steps.mean(0), torch.zeros(3, dtype=torch.float64), atol=1e-5, rtol=0)
    torch.testing.assert_close(steps.std(0, unbiased=False), torch.ones(3, dtype=torch.float64), atol=1e-5, rtol=0)
    raw = build_task({"name": "npz", "path": str(tmp_path / "d.npz"), "standardize": False}, seed=0)
    assert not torch.equal(raw.splits["test"][0], task.splits["test"][0])


def test_predefined_split_arrays_and_split_column_are_respected(tmp_path):
    xs, ys = variable_sequences(count=30)
    x, lengths = padded(xs)
    np.savez(tmp_path / "a.npz", X_train=x[:20], y_train=ys[:20], lengths_train=lengths[:20],
             X_test=x[20:], y_test=ys[20:], lengths_test=lengths[20:])
    task = build_task({"name": "npz", "path": str(tmp_path / "a.npz"), "standardize": False}, seed=0)
    assert len(task.splits["test"][0]) == 10
    torch.testing.assert_close(task.lengths["test"], torch.from_numpy(lengths[20:]).long())
    assert len(task.splits["train"][0]) + len(task.splits["val"][0]) == 20

    split = np.array(["train"] * 18 + ["val"] * 5 + ["test"] * 7)
    np.savez(tmp_path / "b.npz", X=x, y=ys, lengths=lengths, split=split)
    task = build_task({"name": "npz", "path": str(tmp_path / "b.npz"), "standardize": False}, seed=0)
    assert [len(task.splits[s][1]) for s in ("train", "val", "test")] == [18, 5, 7]
    torch.testing.assert_close(task.splits["val"][1], torch.from_numpy(ys[18:23]))


def test_regression_target_is_inferred_from_float_labels(tmp_path):
    xs, _ = variable_sequences(count=40)
    y = np.array([float(s[:, 1].sum()) for s in xs])
    np.savez(tmp_path / "r.npz", **ragged(xs), y=y)
    task = build_task({"name": "npz", "path": str(tmp_path / "r.npz")}, seed=0)
    assert (task.output_size, task.metric_name, task.loss_name) == (1, "r2", "MSE")
    assert task.splits["train"][1].shape[1:] == (1,)
    assert any("regression" in note for note in task.notes)
    assert task.baseline["metric"] < 0.05  # predicting the training mean explains nothing
    with pytest.raises(DataError, match="non-integer values"):
        build_task({"name": "npz", "path": str(tmp_path / "r.npz"), "target": "class"}, seed=0)


# ---------------------------------------------------------------- padding never changes the result


@pytest.mark.parametrize("cell, impl", [("lstm", "fused"), ("lstm", "custom"), ("gru", "fused"), ("gru", "custom"),
                                        ("rnn", "custom")])
def test_padding_does_not_change_loss_or_gradients(cell, impl):
    xs, ys = variable_sequences(count=12)
    model_cfg = OmegaConf.create({"cell": cell, "hidden_size": 8, "impl": impl})
    results = []
    for extra in (0, 50):
        torch.manual_seed(0)
        model = SequenceModel(model_cfg, 3, 3, per_step=False)
        x, lengths = padded(xs, extra)
        pred = model(torch.from_numpy(x), lengths=torch.from_numpy(lengths))
        loss = torch.nn.functional.cross_entropy(pred, torch.from_numpy(ys))
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in model.parameters()]))
    (loss0, grads0), (loss50, grads50) = results
    torch.testing.assert_close(loss0, loss50, rtol=1e-6, atol=1e-6)
    for g0, g50 in zip(grads0, grads50):
        torch.testing.assert_close(g0, g50, rtol=1e-5, atol=1e-6)
    # Each sequence alone, unpadded, gives the same prediction as inside the padded batch.
    torch.manual_seed(0)
    model = SequenceModel(model_cfg, 3, 3, per_step=False)
    x, lengths = padded(xs, 50)
    batch = model(torch.from_numpy(x), lengths=torch.from_numpy(lengths))
    alone = torch.cat([model(torch.from_numpy(seq)[None]) for seq in xs])
    torch.testing.assert_close(batch, alone, rtol=1e-5, atol=1e-6)


def per_step_data(count=30, seed=0):
    """Per-step classes: the sign of feature 0 at each step."""
    xs, _ = variable_sequences(count=count, seed=seed)
    return xs, [(seq[:, 0] > 0.5).astype(np.int64) for seq in xs]


def test_per_step_targets_from_npz_and_csv_are_the_same_task(tmp_path):
    xs, ys = per_step_data()
    np.savez(tmp_path / "p.npz", **ragged(xs), y=np.concatenate(ys))
    rows = [{"id": i, "t": t, "f0": float(step[0]), "f1": float(step[1]), "f2": float(step[2]), "label": int(ys[i][t])}
            for i, seq in enumerate(xs) for t, step in enumerate(seq)]
    pd.DataFrame(rows).to_csv(tmp_path / "p.csv", index=False)
    a = build_task({"name": "npz", "path": str(tmp_path / "p.npz"), "per_step": True}, seed=0)
    b = build_task({"name": "csv", "path": str(tmp_path / "p.csv"), "per_step": True}, seed=0)
    assert a.per_step and a.output_size == 2
    for split in ("train", "val", "test"):
        assert torch.equal(a.splits[split][0], b.splits[split][0]) and torch.equal(a.splits[split][1], b.splits[split][1])
        assert a.splits[split][1].shape == a.splits[split][0].shape[:2]  # (N, T) targets beside (N, T, F)
    # The padded layout (N, T) with lengths gives the same task as N arrays of their own lengths.
    x, lengths = padded(xs)
    y = np.zeros(x.shape[:2], dtype=np.int64)
    for i, labels in enumerate(ys):
        y[i, : len(labels)] = labels
    np.savez(tmp_path / "q.npz", X=x, y=y, lengths=lengths)
    c = build_task({"name": "npz", "path": str(tmp_path / "q.npz"), "per_step": True}, seed=0)
    assert all(torch.equal(a.splits[s][1], c.splits[s][1]) for s in ("train", "val", "test"))
    # N arrays in object arrays (pickled, by choice) give the same task again
    np.savez(tmp_path / "o.npz", X=object_array(xs), y=object_array(ys))
    d = build_task({"name": "npz", "path": str(tmp_path / "o.npz"), "per_step": True, "allow_pickle": True}, seed=0)
    assert all(torch.equal(a.splits[s][1], d.splits[s][1]) for s in ("train", "val", "test"))
    np.savez(tmp_path / "bad.npz", X=object_array(xs), y=object_array([labels[:-1] for labels in ys]))
    with pytest.raises(DataError, match="labels do not match the sequences: train sequence 0"):
        build_task({"name": "npz", "path": str(tmp_path / "bad.npz"), "per_step": True, "allow_pickle": True}, seed=0)


def test_padding_does_not_change_per_step_loss(tmp_path):
    """A per-step task's loss leaves padded steps out: 0 or 50 more padding steps give the same loss."""
    xs, ys = per_step_data()
    np.savez(tmp_path / "p.npz", **ragged(xs), y=np.concatenate(ys))
    task = build_task({"name": "npz", "path": str(tmp_path / "p.npz"), "per_step": True}, seed=0)
    x, y = task.splits["train"]
    lengths = task.lengths["train"]
    model_cfg = OmegaConf.create({"cell": "lstm", "hidden_size": 8})
    losses = []
    for extra in (0, 50):
        torch.manual_seed(0)
        model = SequenceModel(model_cfg, 3, 2, per_step=True)
        wider_x = torch.cat([x, torch.zeros(len(x), extra, 3)], 1)
        wider_y = torch.cat([y, torch.ones(len(y), extra, dtype=torch.int64)], 1)  # junk on padded steps
        pred = model(wider_x, lengths=lengths)
        losses.append((task.loss(pred, wider_y, lengths), task.metric(pred, wider_y, lengths)))
    torch.testing.assert_close(losses[0][0], losses[1][0], rtol=1e-6, atol=1e-6)
    assert losses[0][1] == losses[1][1]
    # ... and equals the mean over every real step of every sequence, computed sequence by sequence.
    torch.manual_seed(0)
    model = SequenceModel(model_cfg, 3, 2, per_step=True)
    total = sum(torch.nn.functional.cross_entropy(model(x[i:i + 1, :n])[0], y[i, :n], reduction="sum")
                for i, n in enumerate(lengths.tolist()))
    torch.testing.assert_close(losses[0][0], total / lengths.sum(), rtol=1e-5, atol=1e-6)


def test_per_step_run_through_the_cli(cli, tmp_path):
    xs, ys = per_step_data()
    np.savez(tmp_path / "p.npz", **ragged(xs), y=np.concatenate(ys))
    result = cli("run", "task=npz", f"task.path={tmp_path / 'p.npz'}", "task.per_step=true", *SMALL_RUN,
                 f"hydra.run.dir={tmp_path / 'run'}")
    assert result.exit_code == 0, result.output
    metrics, grads, summary = read_run(tmp_path / "run")
    assert summary["status"] == "completed" and len(metrics) == 2
    assert grads.t.max() == max(len(s) for s in xs)


def test_trainer_evaluation_and_gradient_profile_ignore_padding(tmp_path):
    xs, ys = variable_sequences(count=20)
    np.savez(tmp_path / "d.npz", **ragged(xs), y=ys)
    task = build_task({"name": "npz", "path": str(tmp_path / "d.npz")}, seed=0)
    model_cfg = OmegaConf.create({"cell": "lstm", "hidden_size": 8})
    torch.manual_seed(0)
    model = SequenceModel(model_cfg, 3, 3, per_step=False)
    x, y = task.splits["train"]
    lengths = task.lengths["train"]
    wider = torch.cat([x, torch.zeros(len(x), 50, 3)], 1)  # 50 more padding steps
    assert evaluate(model, task, x, y, 7, "cpu", lengths) == pytest.approx(
        evaluate(model, task, wider, y, 7, "cpu", lengths), rel=1e-6)
    narrow = grad_norm_by_step(model, task, x, y, "cpu", lengths)
    wide = grad_norm_by_step(model, task, wider, y, "cpu", lengths)
    assert len(wide) == len(narrow) + 50
    assert wide[:50] == [0.0] * 50  # no sequence reaches that far back from its end
    np.testing.assert_allclose(wide[50:], narrow, rtol=1e-5)
    assert narrow[-1] > 0 and all(g > 0 for g in narrow)


def test_gradient_profile_is_aligned_at_each_sequences_end():
    """Two sequences of different lengths: profile step T is each one's own last step."""
    model_cfg = OmegaConf.create({"cell": "rnn", "hidden_size": 4})
    torch.manual_seed(0)
    model = SequenceModel(model_cfg, 1, 1, per_step=False)

    class Mse:
        per_step = False

        @staticmethod
        def loss(pred, y, lengths=None):
            return torch.nn.functional.mse_loss(pred, y)

    x = torch.randn(2, 6, 1)
    x[1, 3:] = 0
    lengths = torch.tensor([6, 3])
    y = torch.zeros(2, 1)
    profile = grad_norm_by_step(model, Mse, x, y, "cpu", lengths)
    # By hand: gradients per sequence, placed so that both end at t = 6.
    pred, steps = model(x, return_steps=True, lengths=lengths)
    grads = torch.autograd.grad(Mse.loss(pred, y), steps)
    g = torch.stack(grads, 1)  # (2, 6, H)
    last = (g[0, 5].pow(2).sum() + g[1, 2].pow(2).sum()).sqrt()
    only_long = (g[0, 0].pow(2).sum() * 2).sqrt()  # one of two sequences reaches t = 1: scaled by sqrt(2/1)
    assert profile[-1] == pytest.approx(float(last), rel=1e-5)
    assert profile[0] == pytest.approx(float(only_long), rel=1e-5)


# ---------------------------------------------------------------- token inputs


def test_copy_task_with_token_inputs_trains_through_an_embedding(cli, tmp_path):
    task = build_task({"name": "copy", "seq_len": 5, "input": "tokens", "train_size": 8, "val_size": 4,
                       "test_size": 4}, seed=0)
    onehot = build_task({"name": "copy", "seq_len": 5, "train_size": 8, "val_size": 4, "test_size": 4}, seed=0)
    x, _ = task.splits["train"]
    assert x.dtype == torch.int64 and x.shape == (8, 25) and task.vocab_size == 10
    assert torch.equal(torch.nn.functional.one_hot(x, 10).float(), onehot.splits["train"][0])
    result = cli("run", "task=copy", "task.input=tokens", "task.seq_len=5", "task.train_size=64", "task.val_size=32",
                 "task.test_size=32", *SMALL_RUN, f"hydra.run.dir={tmp_path}")
    assert result.exit_code == 0, result.output
    _, _, summary = read_run(tmp_path)
    assert summary["status"] == "completed"
    # embedding 10x16, LSTM on 16 inputs with 8 units, head 8 -> 10
    assert summary["params"] == 10 * 16 + 4 * 8 * (16 + 8 + 2) + 8 * 10 + 10


def test_npz_token_sequences_of_different_lengths(tmp_path, cli):
    rng = np.random.default_rng(0)
    xs = [rng.integers(0, 5, size=int(rng.integers(3, 9))) for _ in range(60)]
    ys = np.array([int(s[0] > 2) for s in xs])
    np.savez(tmp_path / "tok.npz", **ragged(xs), y=ys)
    task = build_task({"name": "npz", "path": str(tmp_path / "tok.npz"), "input": "tokens"}, seed=0)
    assert task.vocab_size == 5 and task.input_size == 16 and task.splits["train"][0].dtype == torch.int64
    with pytest.raises(DataError, match="not below task.vocab_size=3"):
        build_task({"name": "npz", "path": str(tmp_path / "tok.npz"), "input": "tokens", "vocab_size": 3}, seed=0)
    result = cli("run", "task=npz", f"task.path={tmp_path / 'tok.npz'}", "task.input=tokens", *SMALL_RUN,
                 f"hydra.run.dir={tmp_path / 'run'}")
    assert result.exit_code == 0, result.output
    assert read_run(tmp_path / "run")[2]["status"] == "completed"


# ---------------------------------------------------------------- the CLI: npz and csv alike


def test_same_data_as_npz_and_csv_gives_identical_runs_and_a_report(cli, tmp_path):
    xs, ys = variable_sequences()
    np.savez(tmp_path / "d.npz", **ragged(xs), y=ys)
    write_long_csv(tmp_path / "d.csv", xs, ys)
    runs = {}
    for kind in ("npz", "csv"):
        for cell in ("lstm", "gru"):
            run_dir = tmp_path / f"{kind}-{cell}"
            result = cli("run", f"task={kind}", f"task.path={tmp_path / f'd.{kind}'}", f"model={cell}", *SMALL_RUN,
                         f"hydra.run.dir={run_dir}")
            assert result.exit_code == 0, result.output
            runs[kind, cell] = read_run(run_dir)
    for cell in ("lstm", "gru"):
        (m_npz, g_npz, s_npz), (m_csv, g_csv, s_csv) = runs["npz", cell], runs["csv", cell]
        assert s_npz["status"] == s_csv["status"] == "completed"
        pd.testing.assert_frame_equal(m_npz.drop(columns="seconds"), m_csv.drop(columns="seconds"))
        pd.testing.assert_frame_equal(g_npz, g_csv)
        assert s_npz["test"] == s_csv["test"] and s_npz["baseline"] == s_csv["baseline"]
        assert g_npz.t.max() == max(len(s) for s in xs)  # the profile spans the longest sequence
    result = cli("report", str(tmp_path), "--out", str(tmp_path / "report"))
    assert result.exit_code == 0, result.output
    summary = pd.read_csv(tmp_path / "report" / "summary.csv")
    assert {"npz", "csv"} <= set(summary.astype(str).to_numpy().ravel())


def test_fifty_padding_steps_in_the_file_change_no_result_through_the_cli(cli, tmp_path):
    """The user-facing promise. The loader also trims padding beyond the longest sequence, so the model
    itself meeting 50 padding steps is proven by the model- and trainer-level tests above."""
    xs, ys = variable_sequences(count=60)
    np.savez(tmp_path / "own.npz", **ragged(xs), y=ys)  # every sequence its own length
    x, lengths = padded(xs, extra=50)
    np.savez(tmp_path / "padded.npz", X=x, y=ys, lengths=lengths)  # (N, T_max + 50, F) zeros after each end
    runs = []
    for name in ("own", "padded"):
        result = cli("run", "task=npz", f"task.path={tmp_path / name}.npz", *SMALL_RUN, f"hydra.run.dir={tmp_path / name}")
        assert result.exit_code == 0, result.output
        runs.append(read_run(tmp_path / name))
    pd.testing.assert_frame_equal(runs[0][0].drop(columns="seconds"), runs[1][0].drop(columns="seconds"))
    pd.testing.assert_frame_equal(runs[0][1], runs[1][1])
    assert runs[0][2]["test"] == runs[1][2]["test"]


def test_csv_rows_in_any_order_within_a_sequence_and_named_columns(tmp_path):
    xs, ys = variable_sequences(count=30)
    write_long_csv(tmp_path / "d.csv", xs, ys)
    table = pd.read_csv(tmp_path / "d.csv")
    shuffled = table.iloc[::-1].rename(columns={"id": "who", "t": "when", "label": "kind"})
    shuffled.insert(0, "note", "x")  # a text column that is not a feature
    shuffled.to_csv(tmp_path / "e.csv", index=False)
    base = build_task({"name": "csv", "path": str(tmp_path / "d.csv"), "standardize": False}, seed=0)
    other = build_task({"name": "csv", "path": str(tmp_path / "e.csv"), "id_column": "who", "time_column": "when",
                        "label_column": "kind", "feature_columns": ["f0", "f1", "f2"], "standardize": False}, seed=0)
    # Reversed rows reverse the order of sequences, so compare as sets of (sequence, label) pairs.
    def pairs(task):
        x, y = torch.cat([task.splits[s][0] for s in ("train", "val", "test")]), \
            torch.cat([task.splits[s][1] for s in ("train", "val", "test")])
        return sorted((tuple(np.round(row.flatten().tolist(), 3)), int(label)) for row, label in zip(x, y))
    assert len(pairs(base)) == 30 and pairs(base) == pairs(other)
    total = max(len(seq) for seq in xs)
    original = sorted((tuple(np.round(np.pad(seq, ((0, total - len(seq)), (0, 0))).flatten().tolist(), 3)), int(label))
                      for seq, label in zip(xs, ys))
    assert pairs(base) == original  # steps come back in time order, whatever the row order


# ---------------------------------------------------------------- built-in real data sets


def test_digits_is_eight_steps_of_eight_pixels_with_a_fixed_stratified_split():
    task = build_task({"name": "digits"}, seed=0)
    again = build_task({"name": "digits"}, seed=5)
    sizes = [len(task.splits[s][1]) for s in ("train", "val", "test")]
    assert sum(sizes) == 1797 and task.splits["train"][0].shape[1:] == (8, 8)
    assert (task.input_size, task.output_size, task.lengths) == (8, 10, {})
    for split in ("train", "val", "test"):
        assert torch.equal(task.splits[split][1], again.splits[split][1])  # the run's seed does not move it
        counts = torch.bincount(task.splits[split][1], minlength=10).float()
        assert counts.min() / counts.max() > 0.85  # stratified: every class about equally present


def test_ucr_loads_a_shipped_variable_length_data_set_offline():
    pytest.importorskip("sktime")
    task = build_task({"name": "ucr", "dataset": "JapaneseVowels"}, seed=0)
    assert (task.input_size, task.output_size) == (12, 9)
    assert len(task.splits["test"][1]) == 370  # the canonical test split
    assert len(task.splits["train"][1]) + len(task.splits["val"][1]) == 270
    lengths = torch.cat(list(task.lengths.values()))
    assert (int(lengths.min()), int(lengths.max())) == (7, 29)
    with pytest.raises(TaskConfigError, match="task.dataset='Nope'.*GunPoint.*JapaneseVowels"):
        check_task_config({"name": "ucr", "dataset": "Nope"})


def test_ucr_without_sktime_names_the_extra(tmp_path):
    # A stand-in package directory that hides sktime from a fresh interpreter.
    (tmp_path / "sktime").mkdir()
    (tmp_path / "sktime" / "__init__.py").write_text("raise ImportError('hidden for this test')\n")
    proc = subprocess.run([sys.executable, "-m", "actstudy", "run", "task=ucr", f"hydra.run.dir={tmp_path}/never"],
                          capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ, "PYTHONPATH": str(tmp_path)})
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "actstudy[ucr]" in proc.stderr and "sktime" in proc.stderr
    assert not (tmp_path / "never").exists()


# ---------------------------------------------------------------- bad data: one line, exit 2, nothing written


def _bad_files(tmp_path):
    d = tmp_path
    np.savez(d / "nan.npz", X=np.array([[[1.0], [np.nan]], [[1.0], [2.0]]]), y=np.array([0, 1]))
    np.savez(d / "inf.npz", X=np.array([[[1.0], [np.inf]], [[1.0], [2.0]]]), y=np.array([0, 1]))
    np.savez(d / "count.npz", X=np.zeros((5, 3, 2)), y=np.array([0, 1, 0]))
    np.savez(d / "shape.npz", X=np.zeros((5,)), y=np.zeros(5, int))
    np.savez(d / "empty.npz", X_train=np.zeros((4, 3, 2)), y_train=np.array([0, 1, 0, 1]),
             X_test=np.zeros((0, 3, 2)), y_test=np.zeros(0, int))
    np.savez(d / "lengths.npz", X=np.zeros((2, 3, 1)), y=np.array([0, 1]), lengths=np.array([2, 9]))
    np.savez(d / "typo.npz", X=np.zeros((2, 3, 1)), Y_tset=np.array([0, 1]))
    (d / "junk.npz").write_text("not a zip")
    (d / "text.csv").write_text("id,t,f0,label\na,0,1.0,0\na,1,xyz,0\nb,0,1,1\n")
    (d / "labels.csv").write_text("id,t,f0,label\na,0,1.0,0\na,1,2,1\nb,0,1,1\n")
    (d / "nan.csv").write_text("id,t,f0,label\na,0,1.0,0\na,1,,0\nb,0,1,1\nc,0,2,1\n")
    (d / "twice.csv").write_text("id,t,f0,label\na,0,1.0,0\na,0,2,0\nb,0,1,1\n")
    (d / "empty.csv").write_text("id,t,f0,label\n")


BAD = [
    (["task=npz", "task.path={d}/missing.npz"], ["missing.npz", "no such file"]),
    (["task=npz", "task.path={d}/nan.npz"], ["nan.npz", "NaN"]),
    (["task=npz", "task.path={d}/inf.npz"], ["inf.npz", "infinite"]),
    (["task=npz", "task.path={d}/count.npz"], ["count.npz", "labels do not match", "3", "5"]),
    (["task=npz", "task.path={d}/shape.npz"], ["shape.npz", "shape (5,)"]),
    (["task=npz", "task.path={d}/empty.npz"], ["empty.npz", "test split is empty"]),
    (["task=npz", "task.path={d}/lengths.npz"], ["lengths.npz", "lengths", "1 to 3"]),
    (["task=npz", "task.path={d}/typo.npz"], ["typo.npz", "y_tset"]),
    (["task=npz", "task.path={d}/junk.npz"], ["junk.npz", "not a readable"]),
    (["task=npz"], ["task.path is missing"]),
    (["task=csv", "task.path={d}/text.csv"], ["text.csv", "'f0' is not numeric", "xyz"]),
    (["task=csv", "task.path={d}/labels.csv"], ["labels.csv", "labels do not match", "'a'"]),
    (["task=csv", "task.path={d}/nan.csv"], ["nan.csv", "NaN"]),
    (["task=csv", "task.path={d}/twice.csv"], ["twice.csv", "same time index"]),
    (["task=csv", "task.path={d}/empty.csv"], ["empty.csv", "no rows"]),
    (["task=csv", "task.path={d}/labels.csv", "task.label_column=kind"], ["labels.csv", "no column 'kind'", "label"]),
    (["task=csv", "task.path={d}/labels.csv", "task.feature_columns=[f0,f9]"], ["labels.csv", "'f9'"]),
    (["task=npz", "task.path={d}/nan.npz", "task.target=regr"], ["task.target='regr'", "class, regression"]),
    (["task=npz", "task.path={d}/nan.npz", "task.val_fraction=1.5"], ["task.val_fraction=1.5", "(0, 1)"]),
    (["task=copy", "task.input=words"], ["task.input='words'", "onehot, tokens"]),
]


def test_bad_data_gives_one_line_naming_file_and_problem_exit_2(tmp_path):
    """In one process per case would take a minute; the in-process CLI sees the same code path."""
    from typer.testing import CliRunner

    from actstudy.cli import app

    _bad_files(tmp_path)
    runner = CliRunner()
    for overrides, expected in BAD:
        args = [o.format(d=tmp_path) for o in overrides]
        result = runner.invoke(app, ["run", *args, f"hydra.run.dir={tmp_path}/never"], catch_exceptions=False)
        text = result.output.strip()
        assert result.exit_code == 2, (args, text)
        assert "Traceback" not in text and len(text.splitlines()) == 1, (args, text)
        for fragment in expected:
            assert fragment in text, (args, fragment, text)
        assert not (tmp_path / "never").exists()


def test_bad_file_as_a_subprocess_is_one_stderr_line_and_exit_2(tmp_path):
    _bad_files(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "actstudy", "run", "task=npz", f"task.path={tmp_path}/nan.npz",
                           f"hydra.run.dir={tmp_path}/never"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "nan.npz" in lines[0] and "NaN" in lines[0] and "Traceback" not in proc.stdout
    assert not (tmp_path / "never").exists()


@pytest.mark.slow
@pytest.mark.parametrize("task", [["task=digits"], ["task=ucr", "task.dataset=JapaneseVowels"]])
def test_real_data_sets_learn_with_default_settings(cli, tmp_path, task):
    """The README's figures: default model and training; about 5 s each on a quiet core."""
    if task[0] == "task=ucr":
        pytest.importorskip("sktime")
    for cell in ("lstm", "gru"):
        result = cli("run", *task, f"model={cell}", "threads=1", "-q", f"hydra.run.dir={tmp_path / cell}")
        assert result.exit_code == 0, result.output
        summary = read_run(tmp_path / cell)[2]
        assert summary["status"] == "completed" and summary["test"]["metric"] > 0.9, summary
