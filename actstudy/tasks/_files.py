"""A user's data file (task=npz, task=csv), read and prepared once per process.

The file tasks differ only in how they read their file into `RawData`. What follows the reading is here:
the one cache (keyed by the file's path, modification time and size, so an edited file is read again),
the copy each caller gets, the checks that stop a bad file before any run directory exists, and the build.
"""

from __future__ import annotations

import functools
import os
from copy import deepcopy
from pathlib import Path
from typing import Any, Callable

from actstudy.tasks._base import Task, TaskConfigError, resolve_data_seed, validate_config
from actstudy.tasks._sequences import PreparedData, RawData, check_common, make_task, prepare

Reader = Callable[[Any], RawData]  # a file task's validated config -> what its file holds


def _stamp(path: str) -> tuple:
    """What tells an edited file from the cached one; empty when the file cannot be read (reading says why)."""
    try:
        info = os.stat(path)
        return (info.st_mtime_ns, info.st_size)
    except OSError:
        return ()


@functools.lru_cache(maxsize=8)  # the pre-flight check and the build of a few runs share one read
def _prepared(read: Reader, schema: type, stamp: tuple, config_items: tuple, data_seed: int) -> PreparedData:
    config = schema(**dict(config_items))
    return prepare(read(config), config, data_seed, getattr(config, "vocab_size", None))


def load_file(config: Any, data_seed: int, read: Reader) -> PreparedData:
    """The file at config.path, read by `read`, checked and prepared; a copy, since make_task scales it."""
    # A hashable cache key: list values (csv's feature_columns) become tuples.
    items = tuple(sorted((key, tuple(value) if isinstance(value, list) else value)
                         for key, value in vars(config).items()))
    return deepcopy(_prepared(read, type(config), (config.path, *_stamp(config.path)), items, data_seed))


def check_file_task(schema: type, task_cfg: Any, read: Reader, suffix: str) -> Any:
    """Validate a file task's config and read its file; return the typed config."""
    config = validate_config(schema, task_cfg)
    check_common(config)
    if not config.path:
        raise TaskConfigError(f"task.path is missing: set task.path=FILE{suffix}")
    # Reading is cheap next to training: a bad file stops the command here, before any run directory.
    load_file(config, config.data_seed or 0, read)
    return config


def build_file_task(config: Any, seed: int, read: Reader) -> Task:
    """The Task of a checked file task's config; `seed` is the run's seed."""
    data_seed = resolve_data_seed(config, seed)
    return make_task(f"{config.name} {Path(config.path).name}", load_file(config, data_seed, read), config, data_seed)
