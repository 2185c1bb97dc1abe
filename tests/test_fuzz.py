"""Hostile input, as a user (or a stranger's data file) brings it: every bad value, command line, NPZ, CSV
and report folder gets exactly one line on stderr and exit code 2, no traceback, and nothing is written.
Faults (a full disk, an unusable checkpoint, Ctrl-C) fail one run, not the sweep, and leave nothing
half-done. The CLI runs in-process, so the whole file takes seconds, not minutes.
"""

from __future__ import annotations

import errno
import json
import pathlib
import zipfile

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import TINY
from actstudy.cli import app

FILE_TINY = [o for o in TINY if not o.startswith("task.")]  # the file tasks have no seq_len or sizes
RUNNER = CliRunner()  # stdout and stderr apart (result.stdout, result.stderr)
CASES = []  # (id, command line) of every refused input; its length is the size of this suite


def invoke(*args: str):
    return RUNNER.invoke(app, [str(a) for a in args])


def assert_one_line(result, code: int = 2) -> str:
    """exit `code`, exactly one line on stderr, no traceback anywhere; returns the line."""
    shown = f"exit {result.exit_code}\nstdout: {result.stdout}\nstderr: {result.stderr}\n{result.exception!r}"
    assert result.exit_code == code, shown
    assert result.exception is None or isinstance(result.exception, SystemExit), shown
    assert "Traceback" not in result.stdout + result.stderr, shown
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, shown
    return lines[0]


@pytest.fixture
def cwd(tmp_path, monkeypatch):
    """An empty working directory: whatever a command writes by default lands here, and must not."""
    where = tmp_path / "cwd"
    where.mkdir()
    monkeypatch.chdir(where)
    return where


def assert_nothing_written(cwd: pathlib.Path) -> None:
    assert not any(cwd.iterdir()), sorted(p.name for p in cwd.rglob("*"))


# ------------------------------------------------------------------------------------ config values

CONFIG = [  # (override, a word the one line must hold)
    ("optim.lr=inf", "optim.lr"), ("optim.lr=-inf", "optim.lr"), ("optim.lr=nan", "optim.lr"),
    ("optim.lr=0", "optim.lr"), ("optim.lr=-1", "optim.lr"), ("optim.lr=abc", "optim.lr"),
    ("optim.weight_decay=nan", "weight_decay"), ("optim.weight_decay=inf", "weight_decay"),
    ("optim.weight_decay=-1", "weight_decay"), ("optim.momentum=nan", "momentum"), ("optim.momentum=-0.5", "momentum"),
    ("optim.alpha=1", "alpha"), ("optim.alpha=-0.1", "alpha"), ("optim.alpha=nan", "alpha"),
    ("optim.square_avg_init=-1", "square_avg_init"), ("optim.square_avg_init=nan", "square_avg_init"),
    ("optim.square_avg_init=inf", "square_avg_init"),
    ("model.forget_bias=nan", "forget_bias"), ("model.forget_bias=inf", "forget_bias"),
    ("model.activation.negative_slope=nan", "negative_slope"), ("model.activation.negative_slope=-inf", "negative_slope"),
    ("model.dropout=nan", "dropout"), ("model.dropout=1.0", "dropout"), ("model.dropout=-0.1", "dropout"),
    ("train.clip_grad=inf", "clip_grad"), ("train.clip_grad=nan", "clip_grad"), ("train.clip_grad=-1", "clip_grad"),
    ("train.clip_value=0", "clip_value"), ("train.clip_value=-1", "clip_value"), ("train.clip_value=nan", "clip_value"),
    ("train.clip_value=abc", "clip_value"),
    ("seed=-1", "seed"), ("seed=18446744073709551616", "seed"), ("seed=99999999999999999999999999999", "seed"),
    ("seed=abc", "seed"), ("seed=1.5", "seed"), ("seed=null", "seed"), ("seed=", "seed"),
    ("threads=0", "threads"), ("threads=-3", "threads"), ("threads=100000", "threads"), ("threads=abc", "threads"),
    ("model.hidden_size=0", "hidden_size"), ("model.hidden_size=-1", "hidden_size"),
    ("model.hidden_size=100000", "GiB"), ("model.hidden_size=1000000000", "GiB"), ("model.hidden_size=1.5", "hidden_size"),
    ("model.hidden_size=abc", "hidden_size"), ("train.batch_size=100000000000", "GiB"),
    ("model.num_layers=0", "num_layers"), ("model.num_layers=-2", "num_layers"), ("train.epochs=0", "epochs"),
    ("train.epochs=true", "epochs"), ("train.batch_size=0", "batch_size"), ("train.probe_every=0", "probe_every"),
    ("train.probe_size=0", "probe_size"), ("train.eval_batch_size=-1", "eval_batch_size"),
    ("device=cuda", "cuda"), ("device=tpu", "tpu"), ("model.cell=transformer", "transformer"),
    ("model=transformer", "transformer"), ("task=nope", "nope"), ("optim=adamw", "adamw"),
    ("model.activation.gate=relux", "relux"), ("model.init=bogus", "bogus"), ("model.impl=bogus", "bogus"),
    ("model.variant=bogus", "bogus"), ("model.readout=bogus", "bogus"), ("model.bidirectional=maybe", "bidirectional"),
    ("model.hiden_size=8", "hiden_size"), ("+model.extra=1", "model.extra"), ("+extra=1", "extra"),
    ("+optim.beta=0.9", "optim.beta"), ("+task.extra=1", "extra"), ("task.seq_len=-5", "seq_len"),
    ("task.seq_len=abc", "seq_len"), ("seed=${oc.env:ACTSTUDY_SURELY_UNSET}", "ACTSTUDY_SURELY_UNSET"),
    ("train.eval_batch_size=99999999999999999999", "too large"), ("train.probe_size=9223372036854775808", "too large"),
    ("task.train_size=100000000000", "GiB"), ("task.seq_len=${nokey}", "nokey"), ("model.hidden_size=${oc.env:HOME}", "hidden_size"),
]
CASES += [(f"run {o}", ["run", o]) for o, _ in CONFIG]


@pytest.mark.parametrize("override, word", CONFIG, ids=[o for o, _ in CONFIG])
def test_a_bad_config_value_is_one_line_exit_2_and_writes_nothing(cwd, override, word):
    line = assert_one_line(invoke("run", *TINY, override))
    assert word in line
    assert_nothing_written(cwd)


# ------------------------------------------------------------------------------- command lines

COMMAND_LINES = [  # (arguments, a word the one line must hold)
    (["run", "--dry-run"], "--dry-run"), (["run", "--bogus"], "--bogus"), (["run", "-x"], "-x"),
    (["sweep", "--bogus"], "--bogus"), (["sweep", "--dry-run=3"], "--dry-run"), (["report", "--bogus", "x"], "--bogus"),
    (["report"], "dirs"), (["report", ".", "--out"], "--out"), (["report", ".", "--test", "bogus"], "bogus"),
    (["bogus"], "bogus"), (["list", "extra"], "extra"), (["run", "model.hidden_size=é"], "é"),
    (["run", "task.path=é.npz"], "é"), (["run", "model.hidden_size='abc"], "abc"),
    (["run", 'model.hidden_size="abc'], "abc"), (["run", "=5"], "=5"), (["run", "seed=[1,2"], "seed"),
    (["run", "model.hidden_size"], "model.hidden_size"), (["run", "seed=0,1"], "actstudy sweep"),
    (["run", "seed=range(0,0)"], "no values"), (["run", "hydra.run.dir="], "hydra.run.dir"),
    (["run", "hydra.run.dir=''"], "hydra.run.dir"), (["run", "hydra.run.dir=' '"], "hydra.run.dir"),
]
CASES += [(" ".join(a), a) for a, _ in COMMAND_LINES]


@pytest.mark.parametrize("args, word", COMMAND_LINES, ids=[" ".join(a) for a, _ in COMMAND_LINES])
def test_a_bad_command_line_is_one_line_exit_2(cwd, args, word):
    assert word in assert_one_line(invoke(*args))
    assert_nothing_written(cwd)


SWEEPS = [  # (overrides of `actstudy sweep --dry-run`, a word the one line must hold)
    (["seed=range(0,0)"], "no values"), (["seed=range(5,0)"], "no values"), (["seed=range(0,1,0)"], "seed"),
    (["seed=choice()"], "choice"), (["seed=interval(0,1)"], "optimizing sweeper"), (["seed=0,1,"], "seed"),
    (["model.activation.candidate=tanh,relux"], "relux"), (["optim.lr=0.1,inf"], "optim.lr"),
    (["seed=0,-1"], "seed"), (["hydra/launcher=nope"], "nope"), (["study=nope"], "nope"),
    (["seed=0,1", "task.seq_len=${nokey}"], "nokey"), (["seed=0,1", "threads=0"], "threads"),
]
CASES += [("sweep " + " ".join(a), ["sweep", *a]) for a, _ in SWEEPS]


@pytest.mark.parametrize("args, word", SWEEPS, ids=[" ".join(a) for a, _ in SWEEPS])
def test_a_bad_sweep_is_refused_before_any_run(cwd, args, word):
    for dry in ([], ["--dry-run"]):
        assert word in assert_one_line(invoke("sweep", *TINY, *args, *dry))
    assert_nothing_written(cwd)


@pytest.mark.parametrize("key", ["hydra.run.dir", "hydra.sweep.dir", "--out"])
@pytest.mark.parametrize("where", ["file", "below_file"])
def test_an_output_directory_that_is_a_file_is_refused(cwd, tmp_path, key, where):
    blocker = tmp_path / "a_file"
    blocker.write_text("mine\n")
    target = blocker if where == "file" else blocker / "sub"
    if key == "--out":
        args = ["report", str(tmp_path), "--out", str(target)]
    else:
        args = ["run" if key == "hydra.run.dir" else "sweep", *TINY, f"{key}={target}"]
    assert str(blocker) in assert_one_line(invoke(*args))
    assert blocker.read_text() == "mine\n"
    assert_nothing_written(cwd)


CASES += [(f"{k} {w}", None) for k in ("hydra.run.dir", "hydra.sweep.dir", "--out") for w in ("file", "below_file")]


# ---------------------------------------------------------------------------------------- NPZ files

X3 = np.random.default_rng(0).normal(size=(40, 6, 2))
Y3 = np.arange(40) % 2


def _zip_member(path, name, data: bytes) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(name, data)


NPZ = {  # name -> (writer of the file, a word the one line must hold)
    "missing": (lambda p: None, "no such file"),
    "empty": (lambda p: p.write_bytes(b""), "not"),
    "text": (lambda p: p.write_text("X,y\n1,2\n"), "not a readable .npz"),
    "a_directory": (lambda p: p.mkdir(), "no such file"),
    "empty_zip": (lambda p: zipfile.ZipFile(p, "w").close(), "X"),
    "not_an_array": (lambda p: _zip_member(p, "X.npy", b"hello"), "not a NumPy array"),
    "bad_header": (lambda p: _zip_member(p, "X.npy", b"\x93NUMPY\x01\x00\x10\x00{'descr': oops}  \n"), "header"),
    "bad_version": (lambda p: _zip_member(p, "X.npy", b"\x93NUMPY\x09\x00\x10\x00{}              \n"), "version"),
    "truncated": (lambda p: p.write_bytes(_npz_bytes(p, X=X3, y=Y3)[:200]), "not a readable .npz"),
    "no_y": (lambda p: np.savez(p, X=X3), "y"),
    "no_x": (lambda p: np.savez(p, y=Y3), "X"),
    "unknown_array": (lambda p: np.savez(p, X=X3, y=Y3, notes=np.zeros(3)), "notes"),
    "y_mismatch": (lambda p: np.savez(p, X=X3, y=Y3[:-1]), "do not match"),
    "x_4d": (lambda p: np.savez(p, X=X3[..., None], y=Y3), "shape"),
    "x_nan": (lambda p: np.savez(p, X=np.where(X3 > 2, np.nan, X3), y=Y3), "NaN"),
    "x_inf": (lambda p: np.savez(p, X=np.where(X3 > 2, np.inf, X3), y=Y3), "infinite"),
    "x_text": (lambda p: np.savez(p, X=np.full((40, 6), "a"), y=Y3), "not numbers"),
    "one_class": (lambda p: np.savez(p, X=X3, y=np.zeros(40, int)), "single class"),
    "lengths_too_long": (lambda p: np.savez(p, X=X3, y=Y3, lengths=np.full(40, 7)), "lengths"),
    "lengths_zero": (lambda p: np.savez(p, X=X3, y=Y3, lengths=np.zeros(40, int)), "lengths"),
    "lengths_float": (lambda p: np.savez(p, X=X3, y=Y3, lengths=np.full(40, 2.5)), "lengths"),
    "offsets_not_rising": (lambda p: np.savez(p, X=X3.reshape(240, 2), y=Y3, offsets=np.r_[0, np.arange(40)[::-1] * 6]),
                           "offsets"),
    "offsets_short": (lambda p: np.savez(p, X=X3.reshape(240, 2), y=Y3, offsets=np.arange(0, 240, 6)), "offsets"),
    "lengths_sum_wrong": (lambda p: np.savez(p, X=X3.reshape(240, 2), y=Y3[:30], lengths=np.full(30, 7)), "lengths"),
    "lengths_and_offsets": (lambda p: np.savez(p, X=X3.reshape(240, 2), y=Y3, lengths=np.full(40, 6),
                                               offsets=np.arange(0, 241, 6)), "both"),
    "split_bad_value": (lambda p: np.savez(p, X=X3, y=Y3, split=np.full(40, "dev")), "dev"),
    "split_both_layouts": (lambda p: np.savez(p, X=X3, y=Y3, X_train=X3, y_train=Y3), "one layout"),
    "split_no_train": (lambda p: np.savez(p, X_test=X3, y_test=Y3), "X_train"),
    "class_not_in_train": (lambda p: np.savez(p, X_train=X3, y_train=Y3, X_test=X3[:4], y_test=np.array([0, 1, 2, 1])),
                           "never in train"),
    "object_x": (lambda p: np.savez(p, X=_objects([np.zeros((3, 2)), np.zeros((4, 2))]), y=np.array([0, 1])),
                 "task.allow_pickle=true"),
    "object_unused": (lambda p: np.savez(p, X=X3, y=Y3, notes=_objects(["a", "b"])), "task.allow_pickle=true"),
}


def _objects(items) -> np.ndarray:
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out


def _npz_bytes(path, **arrays) -> bytes:
    np.savez(path, **arrays)
    return path.read_bytes()


CASES += [(f"npz {name}", None) for name in NPZ]


@pytest.mark.parametrize("name", list(NPZ))
def test_a_bad_npz_file_is_one_line_exit_2(cwd, tmp_path, name):
    write, word = NPZ[name]
    path = tmp_path / f"{name}.npz"
    write(path)
    line = assert_one_line(invoke("run", *FILE_TINY, "task=npz", f"task.path={path}"))
    assert word in line, line
    assert_nothing_written(cwd)


# ------------------------------------------------------------------------ a data file that runs code


class _Payload:
    """Unpickling this calls Path.touch(marker): the marker file exists if and only if the pickle ran."""

    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (self.marker,)


@pytest.mark.parametrize("array", ["X", "notes", "no_suffix"])
def test_a_crafted_npz_never_runs_its_payload(cwd, tmp_path, array):
    marker = tmp_path / "payload_ran"
    path = tmp_path / "crafted.npz"
    payload = _objects([_Payload(marker), _Payload(marker)])
    if array == "X":
        np.savez(path, X=payload, y=np.array([0, 1]))
    elif array == "notes":  # an array the task does not even use
        np.savez(path, X=X3, y=Y3, notes=payload)
    else:  # a member without the .npy suffix: np.load still reads it as an array
        np.savez(path, X=X3, y=Y3)
        with zipfile.ZipFile(path, "a") as archive, archive.open("notes", "w") as member:
            np.lib.format.write_array(member, payload, allow_pickle=True)
    base = [*FILE_TINY, "task=npz", f"task.path={path}"]
    for args in (["run", *base], ["sweep", *base, "seed=0,1"], ["sweep", *base, "seed=0,1", "--dry-run"]):
        line = assert_one_line(invoke(*args))
        assert "task.allow_pickle=true" in line
        assert not marker.exists(), f"the payload ran through {args[0]}"
    assert_nothing_written(cwd)
    # the payload is live: with the opt-in, reading the file runs it (so the assertions above can fail)
    from actstudy.tasks.npz import read_npz

    try:
        read_npz(str(path), tokens=False, allow_pickle=True)
    except Exception:
        pass  # the file may be refused after reading; the payload has run by then
    assert marker.exists()


CASES += [(f"crafted npz {a}", None) for a in ("X", "notes", "no_suffix")]


# ---------------------------------------------------------------------------------------- CSV files

GOOD_ROWS = [f"{i},{t},{(i * 7 + t) % 5 / 5},{i % 2}" for i in range(40) for t in range(5)]

CSV = {  # name -> (file text, extra overrides, a word the one line must hold)
    "empty": ("", [], "csv"),
    "header_only": ("id,t,f0,label\n", [], "no"),
    "no_label_column": ("id,t,f0\n" + "\n".join(r.rsplit(",", 1)[0] for r in GOOD_ROWS), [], "label"),
    "no_id_column": ("i,t,f0,label\n" + "\n".join(GOOD_ROWS), [], "id"),
    "text_feature": ("id,t,f0,label\n" + "\n".join(r.replace(",0.2,", ",abc,") for r in GOOD_ROWS), [], "f0"),
    "nan_feature": ("id,t,f0,label\n" + "\n".join(r.replace(",0.2,", ",nan,") for r in GOOD_ROWS), [], "NaN"),
    "inf_feature": ("id,t,f0,label\n" + "\n".join(r.replace(",0.2,", ",inf,") for r in GOOD_ROWS), [], "infinite"),
    "label_changes": ("id,t,f0,label\n" + "\n".join(GOOD_ROWS) + "\n0,5,0.1,1", [], "label"),
    "one_class": ("id,t,f0,label\n" + "\n".join(r.rsplit(",", 1)[0] + ",0" for r in GOOD_ROWS), [], "single class"),
    "bad_split": ("id,t,f0,label,split\n" + "\n".join(r + ",dev" for r in GOOD_ROWS), [], "dev"),
    "unknown_feature": ("id,t,f0,label\n" + "\n".join(GOOD_ROWS), ["task.feature_columns=[f9]"], "f9"),
    "binary": ("\x00\x01\x02\xff\xfe" * 20, [], "csv"),
    "class_not_in_train": ("id,t,f0,label,split\n" + "\n".join(  # sequence 0, in test, has a class of its own
        f"{i},{t},{t / 5},{7 if i == 0 else i % 2},{'test' if i < 4 else 'train'}" for i in range(40) for t in range(5)),
        [], "never in train"),
    "missing": (None, [], "no such file"),
}
CASES += [(f"csv {name}", None) for name in CSV]


@pytest.mark.parametrize("name", list(CSV))
def test_a_bad_csv_file_is_one_line_exit_2(cwd, tmp_path, name):
    text, extra, word = CSV[name]
    path = tmp_path / f"{name}.csv"
    if text is not None:
        path.write_bytes(text.encode("latin-1"))
    line = assert_one_line(invoke("run", *FILE_TINY, "task=csv", f"task.path={path}", *extra))
    assert word in line, line
    assert_nothing_written(cwd)


# ---------------------------------------------------------------------------------------- report

REPORTS = {  # name -> (what the folder holds: {relative path: text}, a word the one line must hold)
    "empty_folder": ({}, "no run directories"),
    "garbage_summary": ({"r/summary.json": "{not json"}, "could be read"),
    "summary_a_list": ({"r/summary.json": "[1, 2]"}, "could be read"),
    "summary_unknown_status": ({"r/summary.json": '{"status": "weird"}'}, "could be read"),
    "summary_binary": ({"r/summary.json": "\udcff\udcfe"}, "could be read"),
}
CASES += [(f"report {name}", None) for name in REPORTS] + [("report missing", None), ("report a file", None)]


@pytest.mark.parametrize("name", list(REPORTS))
def test_a_report_with_nothing_readable_is_one_line_exit_2(tmp_path, name):
    files, word = REPORTS[name]
    top = tmp_path / "sweep"
    top.mkdir()
    for relative, text in files.items():
        (top / relative).parent.mkdir(parents=True, exist_ok=True)
        (top / relative).write_bytes(text.encode("utf-8", "surrogateescape"))
    before = sorted(p.relative_to(top) for p in top.rglob("*"))
    line = assert_one_line(invoke("report", top))
    assert word in line
    assert sorted(p.relative_to(top) for p in top.rglob("*")) == before  # no report folder, no leftovers


def test_a_report_on_a_missing_folder_or_a_file_is_one_line_exit_2(tmp_path):
    assert "no such directory" in assert_one_line(invoke("report", tmp_path / "nowhere"))
    (tmp_path / "f").write_text("x")
    assert "not a directory" in assert_one_line(invoke("report", tmp_path / "f"))


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory):
    top = tmp_path_factory.mktemp("finished") / "sweep"
    result = invoke("sweep", *TINY, "train.epochs=1", "seed=0,1", f"hydra.sweep.dir={top}")
    assert result.exit_code == 0, result.stdout + result.stderr
    return top


LABELS = ["lstm$x_^\\%{$", "$\\frac{a_b^c 100% back\\slash $$"]  # mathtext would choke on each


def test_report_labels_are_drawn_literally_and_a_failed_report_leaves_the_last_one(finished_sweep, tmp_path,
                                                                                   monkeypatch):
    import shutil

    import actstudy.report

    top = tmp_path / "sweep"
    shutil.copytree(finished_sweep, top)
    for config, label in zip(sorted(top.glob("*/config.yaml")), LABELS):  # as hand-edited runs might hold
        config.write_text(config.read_text().replace("candidate: tanh", f"candidate: {json.dumps(label)}", 1))
    result = invoke("report", top)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert (top / "report" / "index.html").is_file() and len(list((top / "report").glob("*.png"))) > 3
    before = {p.name: p.read_bytes() for p in (top / "report").iterdir()}

    def fail_half_way(sections, out_dir):  # a plot written, then the disk fills up
        (out_dir / "curves_adding.png").write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(actstudy.report, "write_plots", fail_half_way)
    assert invoke("report", top).exit_code != 0
    assert {p.name: p.read_bytes() for p in (top / "report").iterdir()} == before
    assert [p.name for p in top.iterdir() if p.name.startswith(".")] == []  # the half-built folder is gone


def test_the_suite_has_at_least_120_bad_inputs():
    assert len(CASES) >= 120, len(CASES)


# ------------------------------------------------------------------------------------------ faults


def _statuses(top: pathlib.Path) -> dict[str, str]:
    return {d.name: json.loads((d / "summary.json").read_text())["status"]
            for d in top.iterdir() if (d / "summary.json").exists()}


def test_a_full_disk_in_one_run_fails_that_run_and_the_sweep_goes_on(tmp_path, monkeypatch):
    import actstudy.rundir
    import actstudy.train

    top = tmp_path / "sweep"
    args = ["sweep", *TINY, "seed=0,1,2", f"hydra.sweep.dir={top}"]
    write_csv = actstudy.rundir.write_csv

    def disk_full_for_seed_1(path, columns, rows):
        if "-s1-" in str(path) and rows:  # the run of seed 1 fills the disk once it has a row to write
            actstudy.rundir.temporary_path(path).write_text("half")
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        write_csv(path, columns, rows)

    monkeypatch.setattr(actstudy.train, "write_csv", disk_full_for_seed_1)
    first = invoke(*args)
    assert first.exit_code == 1, first.stdout + first.stderr
    failed = [line for line in first.stderr.splitlines() if line.startswith("failed:")]
    assert len(failed) == 1 and "-s1-" in failed[0] and "No space left on device" in failed[0]
    statuses = _statuses(top)
    assert sorted(statuses.values()) == ["completed", "completed", "failed"]
    assert not list(top.rglob("*.tmp"))

    monkeypatch.setattr(actstudy.train, "write_csv", write_csv)  # space is freed
    again = invoke(*args)
    assert again.exit_code == 0, again.stdout + again.stderr
    assert sorted(_statuses(top).values()) == ["completed"] * 3


def test_a_run_directory_hydra_cannot_write_fails_alone(tmp_path, monkeypatch):
    """Hydra writes a job's .hydra/ files before our code runs; an OSError there fails that run only."""
    import hydra.core.utils

    top = tmp_path / "sweep"
    save_config = hydra.core.utils._save_config

    def read_only_for_seed_1(cfg, filename, output_dir):
        if "-s1-" in str(output_dir):
            raise OSError(errno.EROFS, "Read-only file system", str(output_dir / filename))
        save_config(cfg, filename, output_dir)

    monkeypatch.setattr(hydra.core.utils, "_save_config", read_only_for_seed_1)
    result = invoke("sweep", *TINY, "seed=0,1,2", f"hydra.sweep.dir={top}")
    assert result.exit_code == 1, result.stdout + result.stderr
    failed = [line for line in result.stderr.splitlines() if line.startswith("failed:")]
    assert len(failed) == 1 and "Read-only file system" in failed[0]
    assert sorted(_statuses(top).values()) == ["completed", "completed", "failed"]


def test_an_unusable_checkpoint_is_set_aside_and_the_run_starts_afresh(tmp_path):
    import torch

    from actstudy.config import compose
    from actstudy.sweeps import run_id

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    rid = run_id(compose(list(TINY)))
    # it loads, and it is this run's, but its weights have another shape
    torch.save({"run_id": rid, "epoch": 1, "model": {"w": torch.zeros(3)}, "metrics": [], "grad_rows": [],
                "stat_rows": [], "best": {"epoch": 0, "val_loss": 1.0, "state": {}}, "seconds": 1.0},
               run_dir / "checkpoint.pt")
    result = invoke("run", *TINY, f"hydra.run.dir={run_dir}", "-q")
    assert result.exit_code == 0, result.stdout + result.stderr
    said = [line for line in (result.stdout + result.stderr).splitlines() if "checkpoint.pt.unusable" in line]
    assert len(said) == 1
    assert (run_dir / "checkpoint.pt.unusable").exists() and not (run_dir / "checkpoint.pt").exists()
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "completed"


def test_ctrl_c_is_one_line_exit_130_and_the_same_command_resumes(tmp_path, monkeypatch):
    import actstudy.train

    run_dir = tmp_path / "run"
    train = actstudy.train._train

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(actstudy.train, "_train", interrupted)
    line = assert_one_line(invoke("run", *TINY, f"hydra.run.dir={run_dir}", "-q"), code=130)
    assert line == "interrupted: run the same command to resume"
    monkeypatch.setattr(actstudy.train, "_train", train)
    result = invoke("run", *TINY, f"hydra.run.dir={run_dir}", "-q")
    assert result.exit_code == 0 and "completed" in result.stdout


@pytest.mark.slow
def test_a_sweep_on_a_real_filesystem_that_fills_up(tmp_path):
    """A 2 MiB tmpfs (root only) nearly full: runs fail one by one with one line each, nothing half-done
    stays, and once space is freed the same command completes every run."""
    import subprocess
    import sys

    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        filler = disk / "filler"
        filler.write_bytes(b"\0" * (2048 - 100) * 1024)  # about 100 KiB left: enough for a run or two
        args = [sys.executable, "-m", "actstudy", "sweep", *TINY, "seed=range(6)", f"hydra.sweep.dir={disk / 's'}"]
        first = subprocess.run(args, capture_output=True, text=True, timeout=600)
        assert first.returncode == 1, first.stdout + first.stderr
        assert "Traceback" not in first.stdout + first.stderr
        failed = [line for line in first.stderr.splitlines() if line.startswith("failed:")]
        assert failed and all("No space left on device" in line for line in failed)
        assert not list(disk.rglob("*.tmp"))
        statuses = [json.loads(p.read_text())["status"] for p in disk.glob("s/*/summary.json")]
        assert "running" not in statuses and len(failed) + statuses.count("completed") == 6
        filler.unlink()
        again = subprocess.run(args, capture_output=True, text=True, timeout=600)
        assert again.returncode == 0, again.stdout + again.stderr
        assert [json.loads(p.read_text())["status"] for p in disk.glob("s/*/summary.json")] == ["completed"] * 6
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)
