"""The run directory: the one contract between training, sweeps and the report.

This module is the only place that knows what a run directory holds: its file names, the columns of its
CSV files, the statuses a run can have, how files are written (atomically), how the summary is read back,
and how a run is identified (`run_id`, the directory name). train.py writes through it, sweeps.py and
cli.py plan with it, the report reads through it. It imports neither torch nor Hydra, so the report stays
fast to start.

    <run dir>/config.yaml            the resolved run config (no `hydra` key)
              metrics.csv            one row per epoch (METRIC_COLUMNS)
              grad_by_step.csv       ‖∂L/∂h_t‖ (and an LSTM's ‖∂L/∂c_t‖) per probed epoch and step (GRAD_COLUMNS)
              activation_stats.csv   activation statistics per probed epoch (STAT_COLUMNS)
              summary.json           status and results (STATUSES)
              actstudy.log           the run's log (Hydra's job log: `hydra.job.name` in conf/config.yaml)
              error.txt              the traceback of a failed run
              model.pt               the weights of the best-validation epoch: a state dict (torch.load(...,
                                     weights_only=True)), the weights the test numbers were measured with
              last.pt                the state after the last epoch (final weights under "model", optimizer,
                                     RNGs, rows so far): what `actstudy run --continue` trains on from
              checkpoint.pt          while training: the state after the last finished epoch (becomes last.pt)
              checkpoint.pt.unusable a checkpoint that loaded but could not be restored (the run restarted)
              .lock                  held (flock) while a process trains the run
              .hydra/overrides.yaml  Hydra's record of the command line that made the run
              tensorboard/           event files, with logger=tensorboard
    <sweep dir>/multirun.yaml        Hydra's record of the sweep as started
    <name>.old-<n>/                  a finished run that `--force` retrained, kept as it was (never read by the
                                     report or by bookkeeping)
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

# ------------------------------------------------------------------------------------------ file names

CONFIG = "config.yaml"
METRICS = "metrics.csv"
GRAD_BY_STEP = "grad_by_step.csv"
ACTIVATION_STATS = "activation_stats.csv"
SUMMARY = "summary.json"
LOG = "actstudy.log"
ERROR = "error.txt"
CHECKPOINT = "checkpoint.pt"
MODEL = "model.pt"
LAST = "last.pt"
TENSORBOARD = "tensorboard"
UNUSABLE_CHECKPOINT = "checkpoint.pt.unusable"  # a checkpoint that loaded but could not be restored, set aside
LOCK = ".lock"
HYDRA_DIR = ".hydra"
OVERRIDES = "overrides.yaml"  # inside HYDRA_DIR
MULTIRUN = "multirun.yaml"  # at the top of a sweep directory

# One row per evaluation: once per epoch, or every train.eval_every updates. `epoch` is the number of epochs
# done at that moment (a fraction between epoch ends; with fresh data an epoch is one evaluation period);
# `updates` counts optimizer steps; `updates_to_solve` is empty until the run is solved, then the update of
# the first evaluation at which it was; `gap_relative` is val_loss / val floor − train_loss / train floor,
# each split's floor being the baseline's loss on it (summary.json: baseline_loss_by_split).
METRIC_COLUMNS = (
    "epoch", "train_loss", "train_metric", "val_loss", "val_metric",
    "gap_loss", "gap_metric", "grad_norm", "seconds", "updates", "updates_to_solve", "gap_relative",
)
# grad_norm: ‖∂L/∂h_t‖; cell_grad_norm: ‖∂L/∂c_t‖ of an LSTM's cell state (empty for cells without one)
GRAD_COLUMNS = ("epoch", "t", "grad_norm", "cell_grad_norm")
STAT_COLUMNS = ("epoch", "stat", "value")

# ------------------------------------------------------------------------------------------- statuses

RUNNING = "running"  # in progress, or killed before it could say otherwise
COMPLETED = "completed"
DIVERGED = "diverged"  # the loss became NaN or infinite; the metrics of the last good epoch stand
FAILED = "failed"  # raised; its traceback is in error.txt and the next invocation retries it
STATUSES = (COMPLETED, DIVERGED, FAILED, RUNNING)
FINISHED = (COMPLETED, DIVERGED)  # a result: the next invocation skips it

# ------------------------------------------------------------------------------------------- identity

# Keys that say how a run is executed, not what it computes: `quiet` only hides a progress bar, `logger`
# only copies the numbers to TensorBoard or MLflow, and
# `threads` only splits the same arithmetic over more cores (a parallel launcher sets it per job, so a run
# started sequentially can be finished by a joblib sweep). `device` is part of the identity: CPU and GPU
# kernels give other numbers, so their runs are different experiments, in a sweep and in the report.
# select: what the report tunes; extra_runs: which runs a study adds to its grid; neither is what a run computes
NOT_IDENTITY_KEYS = ("quiet", "threads", "logger", "select", "extra_runs")
# What the report pools over: runs that differ only in these keys are repetitions of one configuration.
REPETITION_KEYS = ("seed",)


# Keys added after runs had been made, with the value that reproduces what those runs did. A key at that value
# is left out of the identity, so adding it did not rename (and orphan) every existing run directory; set to
# anything else it is part of the identity like any other key.
LATER_KEYS = {
    ("train", "eval_every"): None,
    ("train", "max_updates"): None,
    ("train", "solve_at"): None,
    ("train", "stop_when_solved"): False,
    ("train", "clip_value"): None,
    ("optim", "alpha"): 0.99,
    ("optim", "square_avg_init"): 0.0,
}


# Task keys that name a file the run reads (task=npz, task=csv): the file's content is part of the
# identity, so overwriting the data and running the same command again trains a new run.
DATA_PATH_KEYS = ("path",)
# The config key of a run continued from a finished one (`actstudy run --continue`): a directory, which in
# the identity is replaced by that run's own id, so moving the parent does not change its child's id.
CONTINUE_KEY = "continue_from"


def identity_tree(config: dict) -> dict:
    """The part of a resolved config (plain containers) that identifies the run: every key but those in
    NOT_IDENTITY_KEYS and LATER_KEYS at their defaults, plus a content hash of each data file it reads
    (`data_sha256`), and the parent's run id in place of `continue_from`."""
    tree = without_later_defaults({k: v for k, v in config.items() if k != "hydra" and k not in NOT_IDENTITY_KEYS})
    digests = data_digests(config)
    if digests:  # absent for generated tasks, so their run ids do not depend on this feature
        tree["data_sha256"] = digests
    if tree.get(CONTINUE_KEY):
        parent = read_summary(Path(tree[CONTINUE_KEY])) or {}
        tree[CONTINUE_KEY] = parent.get("run_id") or str(tree[CONTINUE_KEY])
    else:  # a fresh run: no key, so run ids made before --continue existed stay the same
        tree.pop(CONTINUE_KEY, None)
    return tree


def without_later_defaults(tree: dict) -> dict:
    """`tree` without the LATER_KEYS that hold their defaults: as if those keys did not exist."""
    for (group, key), unchanged in LATER_KEYS.items():
        if isinstance(tree.get(group), dict) and key in tree[group] and tree[group][key] == unchanged:
            tree = {**tree, group: {k: v for k, v in tree[group].items() if k != key}}
    return tree


def at_later_default(dotted_key: str, value: Any) -> bool:
    """Whether a flattened key ("train.eval_every") is one of LATER_KEYS at the value that leaves it out of
    the identity: the report groups such runs with runs made before the key existed, as run_id does."""
    group, _, key = dotted_key.partition(".")
    return (group, key) in LATER_KEYS and value == LATER_KEYS[(group, key)]


def run_id(config: dict) -> str:
    """A stable 16-hex-digit hash of the run's identity: key order and YAML layout do not matter."""
    text = json.dumps(identity_tree(config), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def run_dir_name(config: dict) -> str:
    """`<task>-<cell>-s<seed>-<run id>`: readable in a listing, unique by the hash."""
    return f"{config['task']['name']}-{config['model']['cell']}-s{config['seed']}-{run_id(config)}"


# ------------------------------------------------------------------------------------------ data files

_digests: dict[tuple, Optional[str]] = {}


def file_digest(path: str | Path) -> Optional[str]:
    """The SHA-256 of a file's content (hex), or None when it cannot be read (the task reports that).

    Read in 1 MiB blocks (about 1 s per GB) and remembered for the life of the process, keyed by the file's
    real path, size and modification time: a sweep of hundreds of runs over one file reads it once per
    process (once per worker under a parallel launcher), and a file rewritten in place (new mtime) is read
    again. The hash is of the bytes, so touching a file without changing it keeps the run id."""
    try:
        real = Path(path).expanduser().resolve()
        info = real.stat()
    except OSError:
        return None
    key = (str(real), info.st_size, info.st_mtime_ns)
    if key not in _digests:
        digest = hashlib.sha256()
        try:
            with open(real, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
            _digests[key] = digest.hexdigest()
        except OSError:
            _digests[key] = None
    return _digests[key]


def data_digests(config: dict) -> dict[str, str]:
    """{"task.path": sha256} for each data file the run's config names (DATA_PATH_KEYS) that exists."""
    task = config.get("task")
    found = {}
    for key in DATA_PATH_KEYS:
        value = task.get(key) if isinstance(task, dict) else None
        if isinstance(value, str) and value:
            digest = file_digest(value)
            if digest is not None:
                found[f"task.{key}"] = digest
    return found


# ---------------------------------------------------------------------------------------------- writing


def temporary_path(path: Path) -> Path:
    """Where a file is written before it is renamed into place: hidden, beside it, same filesystem."""
    return path.with_name(f".{path.name}.tmp")


def replace_atomically(path: Path, write: Callable[[Path], Any]) -> None:
    """`write(tmp)` then rename onto `path`, so a reader (or a kill) never sees half a file; the
    temporary file is removed when writing fails."""
    tmp = temporary_path(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    replace_atomically(path, lambda tmp: tmp.write_text(text))


def write_csv(path: Path, columns: Iterable[str], rows: list[dict]) -> None:
    columns = list(columns)
    lines = [",".join(columns)]
    for row in rows:
        lines.append(",".join(_csv_value(row[c]) for c in columns))
    write_text(path, "\n".join(lines) + "\n")


def _csv_value(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)  # shortest exact round-trip: identical runs give identical files
    if value is None:
        return ""  # not known (yet): e.g. updates_to_solve before the run is solved
    return str(value)


def write_json(path: Path, data: dict) -> None:
    """JSON as Python writes it; a non-finite float (e.g. a vanishing ratio of -inf) is kept as
    -Infinity / NaN, which `read_summary` (and any Python or JavaScript JSON reader) reads back."""
    write_text(path, json.dumps(data, indent=2) + "\n")


def remove_temporary_files(run_dir: Path) -> None:
    """Remove what an interrupted `replace_atomically` left in run_dir (e.g. when the disk filled up)."""
    for leftover in run_dir.glob(".*.tmp"):
        try:
            leftover.unlink()
        except OSError:
            pass


def write_summary_anyhow(run_dir: Path, summary: dict) -> bool:
    """Write summary.json atomically or, when that fails (a full disk has no room for a second copy),
    over the old one in place, which needs no new space while the text fits where the old one was.
    When neither works, summary.json and metrics.csv are removed, so that no 'running' status and no
    half-written summary outlive the process (a checkpoint, if any, stays for the next attempt), and
    False is returned: the caller still knows the run's fate, the directory does not."""
    path = run_dir / SUMMARY
    try:
        write_json(path, summary)
        return True
    except OSError:
        remove_temporary_files(run_dir)
    try:
        if path.exists():
            with open(path, "r+") as handle:
                handle.write(json.dumps(summary, indent=2) + "\n")
                handle.truncate()
            return True
    except OSError:
        pass
    for name in (SUMMARY, METRICS):
        try:
            (run_dir / name).unlink(missing_ok=True)
        except OSError:
            pass
    return False


def finite_or_none(value: Optional[float]) -> Optional[float]:
    return value if value is None or math.isfinite(value) else None


# ---------------------------------------------------------------------------------------------- reading


class RunFileError(Exception):
    """A run file exists but cannot be used; the message says why in a few words."""


def load_summary(run_dir: Path) -> dict:
    """summary.json as a dict. No file means a run killed before it wrote one: status 'running'.
    Raises RunFileError for a file that is not a JSON object with a known status."""
    path = run_dir / SUMMARY
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {"status": RUNNING}
    except (OSError, UnicodeDecodeError) as err:
        raise RunFileError(f"{SUMMARY} cannot be read ({str(err).splitlines()[0]})") from None
    try:
        summary = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RunFileError(f"{SUMMARY} is not valid JSON ({str(err).splitlines()[0]})") from None
    if not isinstance(summary, dict):
        raise RunFileError(f"{SUMMARY} is not an object")
    if summary.get("status") not in STATUSES:
        raise RunFileError(f"{SUMMARY} has unknown status {summary.get('status')!r}")
    return summary


def read_summary(run_dir: Path) -> Optional[dict]:
    """`load_summary`, or None when there is no usable summary (bookkeeping treats both alike)."""
    if not (run_dir / SUMMARY).exists():
        return None
    try:
        return load_summary(run_dir)
    except RunFileError:
        return None


def is_run_dir(file_names: Iterable[str]) -> bool:
    """A folder holding a summary, or a config and metrics (a run killed before its summary)."""
    names = set(file_names)
    return SUMMARY in names or {CONFIG, METRICS} <= names


def overrides_path(run_dir: Path) -> Path:
    return run_dir / HYDRA_DIR / OVERRIDES


# ------------------------------------------------------------------------------------------- run state


def finished_run(run_dir: Path, rid: str) -> Optional[dict]:
    """The summary of this configuration's finished (completed or diverged) run in `run_dir`, if any."""
    summary = read_summary(run_dir)
    if summary and summary.get("run_id") == rid and summary.get("status") in FINISHED:
        return summary
    return None


LOCKED = "locked"  # a run state, not a status: another process holds the run directory's lock now


def run_state(run_dir: Path, rid: str) -> str:
    """new | completed | diverged | failed | interrupted (a checkpoint or a 'running' summary) | other
    | locked.

    'other' means the directory holds a run of a different configuration; 'locked' that another process
    is training this one now.
    """
    if is_locked(run_dir):
        return LOCKED
    summary = read_summary(run_dir)
    if summary is None and not (run_dir / CHECKPOINT).exists():
        return "new"
    if summary is not None and summary.get("run_id") not in (None, rid):
        return "other"
    if summary is not None and summary.get("status") in (*FINISHED, FAILED):
        return summary["status"]
    return "interrupted"


def run_outcome(run_dir: Path, rid: str) -> Optional[str]:
    """This run's status as its summary says now (None when the summary is another run's or absent)."""
    summary = read_summary(run_dir) or {}
    return summary.get("status") if summary.get("run_id") == rid else None


def is_locked(run_dir: Path) -> bool:
    """Whether another process holds the run directory's lock now. Creates nothing."""
    import fcntl

    try:
        fd = os.open(run_dir / LOCK, os.O_RDONLY)
    except OSError:  # no lock file (or unreadable): nobody has claimed it
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # closing drops the lock if we took it
    return False


def continuable_parent(config: dict, folder: Path) -> Optional[Path]:
    """The completed run in `folder` that `config` can continue (`actstudy run --continue`): the same
    identity but for fewer `train.epochs`, trained on the same data (its summary's `data_sha256`), with its
    LAST file kept. The one with the most epochs when there are several; None when there is none."""
    import yaml

    def comparable(tree: dict) -> str:
        tree = {k: v for k, v in tree.items() if k != CONTINUE_KEY}
        tree["train"] = {k: v for k, v in (tree.get("train") or {}).items() if k != "epochs"}
        return json.dumps(tree, sort_keys=True, default=str)

    want, epochs = comparable(identity_tree(config)), config["train"]["epochs"]
    found: list[tuple[int, Path]] = []
    for candidate in sorted(folder.iterdir()) if folder.is_dir() else ():
        summary = read_summary(candidate) if candidate.is_dir() and not is_retired(candidate) else None
        if not summary or summary.get("status") != COMPLETED or not (candidate / LAST).is_file():
            continue
        try:
            their = yaml.safe_load((candidate / CONFIG).read_text())
            their_epochs = int(their["train"]["epochs"])
        except Exception:  # an unreadable or foreign config is simply not a parent
            continue
        tree = without_later_defaults({k: v for k, v in their.items() if k != "hydra" and k not in NOT_IDENTITY_KEYS})
        if summary.get("data_sha256"):
            tree["data_sha256"] = summary["data_sha256"]
        if their_epochs < epochs and comparable(tree) == want:
            found.append((their_epochs, candidate))
    return max(found)[1] if found else None


def is_retired(path: Path) -> bool:
    """A run directory that `--force` set aside (`<name>.old-<n>`)."""
    name, _, n = Path(path).name.rpartition(".old-")
    return bool(name) and n.isdigit()


def retire(run_dir: Path) -> Path:
    """Rename a finished run's directory to `<name>.old-<n>` (the first n free) and return the new path, so
    that `--force` trains the configuration again without losing the earlier result."""
    n = 1
    while (target := run_dir.with_name(f"{run_dir.name}.old-{n}")).exists():
        n += 1
    os.rename(run_dir, target)
    return target


def claim(run_dir: Path):
    """An exclusive lock on the run directory, or None when another process holds it. The OS drops the
    lock when its holder dies, even by kill -9, so a stale lock never blocks a resume."""
    import fcntl

    handle = open(run_dir / LOCK, "a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return None
    return handle
