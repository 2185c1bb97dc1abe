"""The run directory: the one contract between training, sweeps and the report.

This module is the only place that knows what a run directory holds: its file names, the columns of its
CSV files, the statuses a run can have, how files are written (atomically), how the summary is read back,
and how a run is identified (`run_id`, the directory name). train.py writes through it, sweeps.py and
cli.py plan with it, the report reads through it. It imports neither torch nor Hydra, so the report stays
fast to start.

    <run dir>/config.yaml            the resolved run config (no `hydra` key)
              metrics.csv            one row per epoch (METRIC_COLUMNS)
              grad_by_step.csv       ‖∂L/∂h_t‖ per probed epoch and step (GRAD_COLUMNS)
              activation_stats.csv   activation statistics per probed epoch (STAT_COLUMNS)
              summary.json           status and results (STATUSES)
              actstudy.log           the run's log (Hydra's job log: `hydra.job.name` in conf/config.yaml)
              error.txt              the traceback of a failed run
              checkpoint.pt          while training: the state after the last finished epoch
              checkpoint.pt.unusable a checkpoint that loaded but could not be restored (the run restarted)
              .lock                  held (flock) while a process trains the run
              .hydra/overrides.yaml  Hydra's record of the command line that made the run
    <sweep dir>/multirun.yaml        Hydra's record of the sweep as started
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
UNUSABLE_CHECKPOINT = "checkpoint.pt.unusable"  # a checkpoint that loaded but could not be restored, set aside
LOCK = ".lock"
HYDRA_DIR = ".hydra"
OVERRIDES = "overrides.yaml"  # inside HYDRA_DIR
MULTIRUN = "multirun.yaml"  # at the top of a sweep directory

METRIC_COLUMNS = (
    "epoch", "train_loss", "train_metric", "val_loss", "val_metric",
    "gap_loss", "gap_metric", "grad_norm", "seconds",
)
GRAD_COLUMNS = ("epoch", "t", "grad_norm")
STAT_COLUMNS = ("epoch", "stat", "value")

# ------------------------------------------------------------------------------------------- statuses

RUNNING = "running"  # in progress, or killed before it could say otherwise
COMPLETED = "completed"
DIVERGED = "diverged"  # the loss became NaN or infinite; the metrics of the last good epoch stand
FAILED = "failed"  # raised; its traceback is in error.txt and the next invocation retries it
STATUSES = (COMPLETED, DIVERGED, FAILED, RUNNING)
FINISHED = (COMPLETED, DIVERGED)  # a result: the next invocation skips it

# ------------------------------------------------------------------------------------------- identity

# Keys that say how a run is executed, not what it computes: `quiet` only hides a progress bar, and
# `threads` only splits the same arithmetic over more cores (a parallel launcher sets it per job, so a run
# started sequentially can be finished by a joblib sweep). `device` is part of the identity: CPU and GPU
# kernels give other numbers, so their runs are different experiments, in a sweep and in the report.
NOT_IDENTITY_KEYS = ("quiet", "threads")
# What the report pools over: runs that differ only in these keys are repetitions of one configuration.
REPETITION_KEYS = ("seed",)


def identity_tree(config: dict) -> dict:
    """The part of a resolved config (plain containers) that identifies the run."""
    return {k: v for k, v in config.items() if k != "hydra" and k not in NOT_IDENTITY_KEYS}


def run_id(config: dict) -> str:
    """A stable 16-hex-digit hash of the run's identity: key order and YAML layout do not matter."""
    text = json.dumps(identity_tree(config), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def run_dir_name(config: dict) -> str:
    """`<task>-<cell>-s<seed>-<run id>`: readable in a listing, unique by the hash."""
    return f"{config['task']['name']}-{config['model']['cell']}-s{config['seed']}-{run_id(config)}"


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
