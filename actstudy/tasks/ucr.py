"""UCR/UEA time-series classification data sets that sktime ships (`task=ucr task.dataset=NAME`).

sktime is an optional extra (`pip install "actstudy[ucr]"`); it ships a few data sets with their
canonical train/test splits (GunPoint, ItalyPowerDemand, ArrowHead, OSULeaf, ACSF1, BasicMotions,
JapaneseVowels, PLAID), read from files inside the package: nothing is downloaded. Validation is carved
from the training split (stratified, with the data seed). The data set key is `task.dataset`, because
`task.name` already names the task module (ucr).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from actstudy.tasks._base import Task, TaskConfigError, resolve_data_seed, validate_config
from actstudy.tasks._sequences import RawData, SequenceDataConfig, check_common, make_task, prepare, str_key

DESCRIPTION = "UCR/UEA classification data shipped by sktime (optional extra): task.dataset=NAME"

EXTRA_HINT = 'task=ucr needs sktime, which is not installed: pip install "actstudy[ucr]"'


@dataclass
class UcrConfig(SequenceDataConfig):
    name: str = "ucr"
    dataset: str = str_key("JapaneseVowels", "a data set sktime ships")


def shipped_datasets() -> list[str]:
    """Names of the classification data sets whose train and test files are inside the sktime package."""
    try:
        import sktime
    except ImportError:
        raise TaskConfigError(EXTRA_HINT) from None
    folder = Path(sktime.__file__).parent / "datasets" / "data"
    return sorted(p.name for p in folder.iterdir() if (p / f"{p.name}_TRAIN.ts").is_file()
                  and (p / f"{p.name}_TEST.ts").is_file())


def _sequences(frame) -> list[np.ndarray]:
    """sktime's nested frame (one cell per sequence and dimension, each a series) -> (T_i, D) arrays."""
    return [np.stack([np.asarray(cell, dtype=np.float64) for cell in row], axis=1)  # D x (T_i,) -> (T_i, D)
            for row in frame.itertuples(index=False)]


@functools.lru_cache(maxsize=2)
def _read(dataset: str) -> RawData:
    from sktime.datasets import load_UCR_UEA_dataset

    splits = {}
    for split in ("train", "test"):
        frame, labels = load_UCR_UEA_dataset(dataset, split=split, return_X_y=True)
        splits[split] = (_sequences(frame), np.asarray(labels))
    return RawData(f"UCR {dataset}", splits)


def check(task_cfg) -> UcrConfig:
    config = validate_config(UcrConfig, task_cfg)
    check_common(config)
    names = shipped_datasets()
    if config.dataset not in names:
        raise TaskConfigError(f"task.dataset={config.dataset!r} is not shipped with sktime; choose one of: "
                              f"{', '.join(names)} (the data set key is task.dataset, not task.name)")
    return config


def build(task_cfg, seed: int) -> Task:
    config = check(task_cfg)
    data_seed = resolve_data_seed(config, seed)
    raw = _read(config.dataset)
    data = prepare(RawData(raw.source, dict(raw.splits)), config, data_seed)
    return make_task(config.dataset, data, config, data_seed)
