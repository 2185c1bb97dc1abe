"""Your own sequences from a NumPy .npz file (`task=npz task.path=FILE`).

Arrays (names are case-insensitive), all plain numeric arrays:
- `X`: (N, T, F) numbers, or (N, T) for one feature or for token ids; `y`: N class labels or regression
  targets, (N,) or (N, K);
- sequences of different lengths, either padded — X (N, T_max, ...) with `lengths` (N,), the real steps of
  each row (padding after them) — or concatenated along time — X (sum of T_i, F) or (sum of T_i,) with
  `lengths` (N,) or `offsets` (N + 1,), where sequence i is X[offsets[i]:offsets[i+1]]; per-step targets
  (task.per_step=true) then come padded, (N, T_max), or concatenated like X, (sum of T_i,);
- an optional predefined split: `X_train`, `y_train`, `X_test`, `y_test` (and `X_val`, `y_val`,
  `lengths_<split>`, `offsets_<split>`) instead of X and y, or a `split` array of N values train/val/test
  (or 0/1/2).
A split the file does not define is carved from train (test with a fixed seed, val with the data seed).

Arrays of Python objects (e.g. X as N arrays of different lengths) are stored pickled, and unpickling can
run any code: they are refused unless `task.allow_pickle=true`. The check reads every array's .npy header
inside the archive before np.load touches any array, so a refused file never unpickles anything.
"""

from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from actstudy.tasks._base import SPLITS, Task, int_key
from actstudy.tasks._files import build_file_task, check_file_task
from actstudy.tasks._sequences import DataError, FileDataConfig, RawData, bool_key, group_by_split, str_key

DESCRIPTION = "your sequences from an .npz file: task.path=FILE (X, y, optional lengths and split)"

SPLIT_CODES = {"train": "train", "val": "val", "test": "test", 0: "train", 1: "val", 2: "test"}


@dataclass
class NpzConfig(FileDataConfig):
    name: str = "npz"
    path: Optional[str] = str_key(None, "the path of an .npz file")
    input: str = str_key("features", "one of: features, tokens")
    vocab_size: Optional[int] = int_key(None, 2, nullable=True, null_means="largest token id + 1")
    embedding_size: int = int_key(16, 1)
    allow_pickle: bool = bool_key(False)  # object arrays are pickled and unpickling runs code: only by choice


def object_arrays(path: str) -> list[str]:
    """The names of the arrays in an .npz archive that hold Python objects (stored pickled), found from
    each member's .npy header alone: nothing is unpickled, whatever the file holds. Raises DataError for
    a member np.load would not read as a plain array."""
    found = []
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
                with archive.open(info) as member:
                    if member.read(len(np.lib.format.MAGIC_PREFIX)) != np.lib.format.MAGIC_PREFIX:
                        raise DataError(f"{path}: member {name!r} is not a NumPy array (save the file with "
                                        "numpy.savez)")
                    if _header_dtype(member, path, name).hasobject:
                        found.append(name)
    except (OSError, zipfile.BadZipFile, EOFError, NotImplementedError, RuntimeError) as err:
        raise DataError(f"{path}: not a readable .npz file ({' '.join(str(err).split())[:120]})") from None
    return found


def _header_dtype(member, path: str, name: str) -> np.dtype:
    """The dtype an .npy header declares; the header is a Python literal, parsed without evaluating code."""
    fmt = np.lib.format
    version = tuple(member.read(2))  # the two bytes after the magic string
    readers = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}
    try:
        if version in readers:
            _, _, dtype = readers[version](member)
        elif version == (3, 0) and hasattr(fmt, "_read_array_header"):  # 2.0 with UTF-8 field names
            _, _, dtype = fmt._read_array_header(member, version=version)
        else:
            raise ValueError(f"unsupported .npy format version {version}")
    except (ValueError, SyntaxError, TypeError) as err:
        raise DataError(f"{path}: array {name!r} has an unreadable header ({' '.join(str(err).split())[:100]})") from None
    return dtype


def _as_sequences(source: str, what: str, x: np.ndarray, lengths: Optional[np.ndarray], tokens: bool,
                  offsets: Optional[np.ndarray] = None):
    """One array X as a list of per-sequence arrays: (T_i, F) features or (T_i,) token ids."""
    if offsets is not None or (lengths is not None and x.dtype != object and np.ndim(lengths) == 1
                               and len(lengths) != len(x)):
        return _concatenated(source, what, x, lengths, offsets, tokens)
    if x.dtype == object:
        if x.ndim != 1:
            raise DataError(f"{source}: {what} is an object array of shape {x.shape}; expected one entry per sequence")
        if lengths is not None:
            raise DataError(f"{source}: lengths is only for a padded numeric {what}; sequences of an object array "
                            "carry their own lengths")
        seqs = []
        for index, item in enumerate(x):
            seq = np.asarray(item)
            if seq.dtype == object:
                raise DataError(f"{source}: {what}[{index}] is not a numeric array")
            if not tokens and seq.ndim == 1:
                seq = seq[:, None]  # (T_i,) -> (T_i, 1): one feature
            seqs.append(seq)
        return seqs
    if tokens:
        if x.ndim != 2:
            raise DataError(f"{source}: {what} has shape {x.shape}; token ids must be (N, T)")
    elif x.ndim == 2:
        x = x[:, :, None]  # (N, T) -> (N, T, 1): one feature
    elif x.ndim != 3:
        raise DataError(f"{source}: {what} has shape {x.shape}; expected (N, T, F), (N, T) or an object array")
    if lengths is None:
        return list(x)
    lengths = np.asarray(lengths)
    if lengths.shape != (len(x),):
        raise DataError(f"{source}: lengths for {what} has shape {lengths.shape}, expected ({len(x)},)")
    if lengths.dtype.kind not in "iu" or lengths.min(initial=1) < 1 or lengths.max(initial=1) > x.shape[1]:
        raise DataError(f"{source}: lengths for {what} must be integers from 1 to {x.shape[1]} (its steps)")
    return [row[:n] for row, n in zip(x, lengths)]


def _concatenated(source: str, what: str, x: np.ndarray, lengths, offsets, tokens: bool) -> list:
    """Sequences stored one after another along X's first axis, cut by `offsets` (N + 1 boundaries from
    0 to len(X)) or by `lengths` (N steps that add up to len(X))."""
    if lengths is not None and offsets is not None:
        raise DataError(f"{source}: {what} has both lengths and offsets; give one of them")
    if x.dtype == object or x.ndim not in ((1,) if tokens else (1, 2)):
        shape = "(steps,) token ids" if tokens else "(steps, F) or (steps,)"
        raise DataError(f"{source}: {what} has shape {x.shape}; sequences concatenated along time need {shape}")
    cuts = np.asarray(offsets if offsets is not None else lengths)
    name = "offsets" if offsets is not None else "lengths"
    if cuts.ndim != 1 or cuts.dtype.kind not in "iu" or len(cuts) < (2 if offsets is not None else 1):
        raise DataError(f"{source}: {name} for {what} must be a 1-D integer array, got {cuts.dtype} {cuts.shape}")
    if offsets is None:
        cuts = np.concatenate([[0], np.cumsum(cuts)]) if cuts.min() >= 1 else None
        if cuts is None:
            raise DataError(f"{source}: lengths for {what} must be integers >= 1")
    if cuts[0] != 0 or cuts[-1] != len(x) or (np.diff(cuts) < 1).any():
        raise DataError(f"{source}: {name} for {what} do not cut its {len(x)} steps into sequences: offsets must "
                        f"rise from 0 to {len(x)}, lengths must be >= 1 and add up to {len(x)} (for a padded "
                        f"{what}, lengths has one entry per row)")
    if not tokens and x.ndim == 1:
        x = x[:, None]  # (steps,) -> (steps, 1): one feature
    return [x[a:b] for a, b in zip(cuts[:-1], cuts[1:])]


def _targets_along_time(xs: list, y: np.ndarray, per_step: bool, concatenated: bool) -> np.ndarray:
    """Per-step targets concatenated along time like X, (sum of T_i,): one (T_i,) array per sequence."""
    steps = sum(len(seq) for seq in xs)
    if not (per_step and concatenated and y.dtype != object and y.ndim == 1 and len(y) == steps != len(xs)):
        return y
    ends = np.cumsum([len(seq) for seq in xs])
    pieces = np.empty(len(xs), dtype=object)  # in memory only: nothing here is pickled or unpickled
    pieces[:] = np.split(y, ends[:-1])
    return pieces


def read_npz(path: str, tokens: bool, allow_pickle: bool = False, per_step: bool = False) -> RawData:
    source = path
    if not Path(path).is_file():
        raise DataError(f"{source}: no such file (task.path)")
    if not zipfile.is_zipfile(path):  # never hand anything but an .npz archive to np.load, which may unpickle
        raise DataError(f"{source}: not a readable .npz file (not a zip archive; save it with numpy.savez)")
    pickled = object_arrays(path)  # from the headers alone, before np.load reads any array
    if pickled and not allow_pickle:
        raise DataError(f"{source}: array {pickled[0]!r} holds Python objects, which NumPy stores pickled and "
                        "loading could run code; store sequences of different lengths as plain arrays (X "
                        "concatenated along time with lengths or offsets), or set task.allow_pickle=true "
                        "for a file you trust")
    try:
        with np.load(path, allow_pickle=allow_pickle) as archive:
            arrays = {name.lower(): archive[name] for name in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, pickle.UnpicklingError) as err:
        raise DataError(f"{source}: not a readable .npz file ({' '.join(str(err).split())[:120]})") from None
    known = {"x", "y", "lengths", "offsets", "split"} | {
        f"{a}_{s}" for a in ("x", "y", "lengths", "offsets") for s in SPLITS}
    unknown = sorted(set(arrays) - known)
    if unknown:
        raise DataError(f"{source}: unknown array {unknown[0]!r}; expected X, y, lengths or offsets, split, or "
                        "X_train, y_train, X_test, y_test (X_val, y_val, lengths_<split>, offsets_<split>)")
    per_split = [s for s in SPLITS if f"x_{s}" in arrays or f"y_{s}" in arrays]
    if per_split and ("x" in arrays or "y" in arrays):
        raise DataError(f"{source}: holds both X/y and X_{per_split[0]}/y_{per_split[0]}; use one layout")
    splits = {}
    if per_split:
        for split in per_split:
            for key in (f"x_{split}", f"y_{split}"):
                if key not in arrays:
                    raise DataError(f"{source}: has {per_split[0]} arrays but no {key.replace('x_', 'X_')}")
            x = arrays[f"x_{split}"]
            xs = _as_sequences(source, f"X_{split}", x, arrays.get(f"lengths_{split}"), tokens,
                               arrays.get(f"offsets_{split}"))
            splits[split] = (xs, _targets_along_time(xs, arrays[f"y_{split}"], per_step, len(xs) != len(x)))
        if "train" not in splits:
            raise DataError(f"{source}: a predefined split needs X_train and y_train")
        return RawData(source, splits, tokens=tokens)
    for key in ("x", "y"):
        if key not in arrays:
            raise DataError(f"{source}: no array {key.upper() if key == 'x' else key!r}; it needs X and y "
                            "(or X_train, y_train, ...)")
    xs = _as_sequences(source, "X", arrays["x"], arrays.get("lengths"), tokens, arrays.get("offsets"))
    y = _targets_along_time(xs, arrays["y"], per_step, len(xs) != len(arrays["x"]))
    if len(y) != len(xs):
        raise DataError(f"{source}: labels do not match the sequences: y has {len(y)} entries, X {len(xs)} sequences")
    if "split" not in arrays:
        return RawData(source, {"train": (xs, y)}, tokens=tokens)
    split = arrays["split"]
    if split.shape != (len(xs),):
        raise DataError(f"{source}: split has shape {split.shape}, expected ({len(xs)},)")
    names = [SPLIT_CODES.get(v.item() if hasattr(v, "item") else v) for v in split]
    if None in names:
        bad = split[names.index(None)]
        raise DataError(f"{source}: split value {bad!r} is not valid; use train, val, test (or 0, 1, 2)")
    splits = group_by_split(source, xs, y, np.array(names), "no entry of split is 'train'")
    return RawData(source, splits, tokens=tokens)


def _targets_per_step(raw: RawData) -> RawData:
    """task.per_step: y is (N, T) beside a padded X — cut each row to its sequence — or N arrays (T_i,)."""
    splits = {}
    for split, (xs, y) in raw.splits.items():
        if y.dtype != object:
            if y.ndim != 2 or y.shape[1] < max(len(seq) for seq in xs):
                raise DataError(f"{raw.source}: task.per_step=true needs a target per step, (N, T) or N arrays "
                                f"(T_i,), but {split} y has shape {y.shape}")
            rows = np.empty(len(xs), dtype=object)
            rows[:] = [row[: len(seq)] for row, seq in zip(y, xs)]
            y = rows
        splits[split] = (xs, y)
    return RawData(raw.source, splits, tokens=raw.tokens, per_step=True, notes=raw.notes)


def _read(config: NpzConfig) -> RawData:
    raw = read_npz(config.path, config.input == "tokens", config.allow_pickle, config.per_step)
    return _targets_per_step(raw) if config.per_step else raw


def check(task_cfg) -> NpzConfig:
    return check_file_task(NpzConfig, task_cfg, _read, ".npz")


def build(task_cfg, seed: int) -> Task:
    return build_file_task(check(task_cfg), seed, _read)
