"""Your own sequences from a NumPy .npz file (`task=npz task.path=FILE`).

Arrays (names are case-insensitive):
- `X`: (N, T, F) numbers, (N, T) for one feature or for token ids, or an object array of N sequences
  (T_i, F) — or (T_i,) — of different lengths; `y`: N class labels or regression targets, (N,) or (N, K);
- optional `lengths` (N,): the real steps of each row of a padded X (padding after them);
- an optional predefined split: `X_train`, `y_train`, `X_test`, `y_test` (and `X_val`, `y_val`,
  `lengths_<split>`) instead of X and y, or a `split` array of N values train/val/test (or 0/1/2).
A split the file does not define is carved from train (test with a fixed seed, val with the data seed).
Object arrays are stored pickled, so only load files you trust.
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
from actstudy.tasks._sequences import DataError, FileDataConfig, RawData, group_by_split, str_key

DESCRIPTION = "your sequences from an .npz file: task.path=FILE (X, y, optional lengths and split)"

SPLIT_CODES = {"train": "train", "val": "val", "test": "test", 0: "train", 1: "val", 2: "test"}


@dataclass
class NpzConfig(FileDataConfig):
    name: str = "npz"
    path: Optional[str] = str_key(None, "the path of an .npz file")
    input: str = str_key("features", "one of: features, tokens")
    vocab_size: Optional[int] = int_key(None, 2, nullable=True, null_means="largest token id + 1")
    embedding_size: int = int_key(16, 1)


def _as_sequences(source: str, what: str, x: np.ndarray, lengths: Optional[np.ndarray], tokens: bool):
    """One array X as a list of per-sequence arrays: (T_i, F) features or (T_i,) token ids."""
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


def read_npz(path: str, tokens: bool) -> RawData:
    source = path
    if not Path(path).is_file():
        raise DataError(f"{source}: no such file (task.path)")
    if not zipfile.is_zipfile(path):  # never hand anything but an .npz archive to np.load, which may unpickle
        raise DataError(f"{source}: not a readable .npz file (not a zip archive; save it with numpy.savez)")
    try:
        with np.load(path, allow_pickle=True) as archive:  # object arrays of variable-length sequences are pickled
            arrays = {name.lower(): archive[name] for name in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, pickle.UnpicklingError) as err:
        raise DataError(f"{source}: not a readable .npz file ({' '.join(str(err).split())[:120]})") from None
    known = {"x", "y", "lengths", "split"} | {f"{a}_{s}" for a in ("x", "y", "lengths") for s in SPLITS}
    unknown = sorted(set(arrays) - known)
    if unknown:
        raise DataError(f"{source}: unknown array {unknown[0]!r}; expected X, y, lengths, split, or "
                        "X_train, y_train, X_test, y_test (X_val, y_val, lengths_<split>)")
    per_split = [s for s in SPLITS if f"x_{s}" in arrays or f"y_{s}" in arrays]
    if per_split and ("x" in arrays or "y" in arrays):
        raise DataError(f"{source}: holds both X/y and X_{per_split[0]}/y_{per_split[0]}; use one layout")
    splits = {}
    if per_split:
        for split in per_split:
            for key in (f"x_{split}", f"y_{split}"):
                if key not in arrays:
                    raise DataError(f"{source}: has {per_split[0]} arrays but no {key.replace('x_', 'X_')}")
            xs = _as_sequences(source, f"X_{split}", arrays[f"x_{split}"], arrays.get(f"lengths_{split}"), tokens)
            splits[split] = (xs, arrays[f"y_{split}"])
        if "train" not in splits:
            raise DataError(f"{source}: a predefined split needs X_train and y_train")
        return RawData(source, splits, tokens=tokens)
    for key in ("x", "y"):
        if key not in arrays:
            raise DataError(f"{source}: no array {key.upper() if key == 'x' else key!r}; it needs X and y "
                            "(or X_train, y_train, ...)")
    xs = _as_sequences(source, "X", arrays["x"], arrays.get("lengths"), tokens)
    y = arrays["y"]
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
    raw = read_npz(config.path, config.input == "tokens")
    return _targets_per_step(raw) if config.per_step else raw


def check(task_cfg) -> NpzConfig:
    return check_file_task(NpzConfig, task_cfg, _read, ".npz")


def build(task_cfg, seed: int) -> Task:
    return build_file_task(check(task_cfg), seed, _read)
