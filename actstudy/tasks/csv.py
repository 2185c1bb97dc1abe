"""Your own sequences from a long-format CSV table (`task=csv task.path=FILE`).

One row per time step: a sequence id, a time index, feature columns and the sequence's label (the same on
every row of a sequence); optionally a split column (train/val/test). Sequences keep the order in which
their ids first appear, steps are sorted by the time index, and the result is the same in-memory form as
task=npz: the same data as NPZ and as CSV train identically.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from actstudy.tasks._base import SPLITS, Task
from actstudy.tasks._files import build_file_task, check_file_task
from actstudy.tasks._sequences import DataError, FileDataConfig, RawData, group_by_split, str_key

DESCRIPTION = "your sequences from a long-format CSV (id, time, features, label): task.path=FILE"


@dataclass
class CsvConfig(FileDataConfig):
    name: str = "csv"
    path: Optional[str] = str_key(None, "the path of a .csv file")
    id_column: str = str_key("id", "a column name")
    time_column: str = str_key("t", "a column name")
    label_column: str = str_key("label", "a column name")
    feature_columns: Optional[list[str]] = field(
        default=None, metadata={"valid": "a list of column names, or null for every other column"})
    split_column: str = str_key("split", "a column name (used only when the file has it)")


def _read_exactly(pd, source: str):
    """Parse decimal text to the nearest float, as NumPy stores it, so NPZ and CSV give identical runs.

    Some pandas versions' default parser is off in the last bit; float_precision="round_trip" is exact.
    pandas 3.1 deprecates the option (its default is exact there); a pandas without it is read plainly.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            return pd.read_csv(source, float_precision="round_trip")
        except TypeError:
            return pd.read_csv(source)


def read_csv(config: CsvConfig) -> RawData:
    import pandas as pd

    source = config.path
    if not Path(source).is_file():
        raise DataError(f"{source}: no such file (task.path)")
    try:
        table = _read_exactly(pd, source)
    except (OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError) as err:
        raise DataError(f"{source}: not a readable CSV file ({' '.join(str(err).split())[:120]})") from None
    if table.empty:
        raise DataError(f"{source}: the table has no rows")
    columns = [str(c) for c in table.columns]
    for key in ("id_column", "time_column", "label_column"):
        name = getattr(config, key)
        if name not in columns:
            raise DataError(f"{source}: no column {name!r} (task.{key}); columns: {', '.join(columns)[:200]}")
    has_split = config.split_column in columns
    reserved = {config.id_column, config.time_column, config.label_column} | ({config.split_column} if has_split else set())
    features = list(config.feature_columns) if config.feature_columns is not None else [c for c in columns if c not in reserved]
    if not features:
        raise DataError(f"{source}: no feature columns (all columns are id, time, label or split)")
    for name in features:
        if name not in columns:
            raise DataError(f"{source}: no column {name!r} (task.feature_columns); columns: {', '.join(columns)[:200]}")
        if name in reserved:
            raise DataError(f"{source}: column {name!r} cannot be both a feature and the id, time, label or split")
        if not pd.api.types.is_numeric_dtype(table[name]):
            bad = pd.to_numeric(table[name], errors="coerce").isna() & table[name].notna()
            row = int(np.flatnonzero(bad.to_numpy())[0]) if bad.any() else 0
            raise DataError(f"{source}: column {name!r} is not numeric (row {row + 2}: {str(table[name].iloc[row])[:30]!r})")
    time = table[config.time_column]
    if not pd.api.types.is_numeric_dtype(time) or time.isna().any():
        raise DataError(f"{source}: time column {config.time_column!r} must hold numbers on every row")
    if table[config.id_column].isna().any() or table[config.label_column].isna().any():
        which = config.id_column if table[config.id_column].isna().any() else config.label_column
        raise DataError(f"{source}: column {which!r} has empty cells")

    # Order of first appearance of each id; within a sequence, by time (stable for equal times).
    ids = table[config.id_column]
    first_seen = {key: rank for rank, key in enumerate(ids.drop_duplicates())}
    table = table.assign(_rank=ids.map(first_seen)).sort_values(["_rank", config.time_column], kind="stable")
    groups = table.groupby("_rank", sort=True)
    xs, labels, split_of = [], [], []
    for _, rows in groups:
        seq_id = rows[config.id_column].iloc[0]
        if rows[config.time_column].duplicated().any():
            raise DataError(f"{source}: sequence {seq_id!r} has two rows at the same time index")
        label_values = rows[config.label_column].unique()
        if not config.per_step and len(label_values) != 1:
            raise DataError(f"{source}: labels do not match the sequences: sequence {seq_id!r} has "
                            f"{len(label_values)} different labels ({_plain(label_values[0])!r}, {_plain(label_values[1])!r})")
        xs.append(rows[features].to_numpy())
        # per_step: the target on each row, in time order; else the one label the sequence has.
        labels.append(rows[config.label_column].to_numpy() if config.per_step else label_values[0])
        if has_split:
            split_values = rows[config.split_column].unique()
            if len(split_values) != 1 or str(split_values[0]) not in SPLITS:
                raise DataError(f"{source}: sequence {seq_id!r} has split {list(split_values)[:2]!r}; each "
                                "sequence needs one of train, val, test on all its rows")
            split_of.append(str(split_values[0]))
    if config.per_step:
        y = np.empty(len(labels), dtype=object)
        y[:] = labels
    else:
        y = np.asarray(labels)  # integers, floats or text, as the column held them
    if not has_split:
        return RawData(source, {"train": (xs, y)}, per_step=config.per_step)
    splits = group_by_split(source, xs, y, np.array(split_of), "no sequence has split 'train'")
    return RawData(source, splits, per_step=config.per_step)


def _plain(value):
    """A NumPy scalar as the Python value it holds, so messages read 3 rather than np.int64(3)."""
    return value.item() if hasattr(value, "item") else value


def check(task_cfg) -> CsvConfig:
    return check_file_task(CsvConfig, task_cfg, read_csv, ".csv")


def build(task_cfg, seed: int) -> Task:
    return build_file_task(check(task_cfg), seed, read_csv)
