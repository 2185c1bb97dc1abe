"""scikit-learn's 8×8 handwritten digits as sequences: 8 steps (image rows) of 8 pixels, 10 classes.

1,797 images ship with scikit-learn, so nothing is downloaded. The split is fixed (stratified 60/20/20
with seed 0), so every run of every configuration trains, validates and tests on the same images.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

import numpy as np

from actstudy.tasks._base import Task, split_rng, validate_config
from actstudy.tasks._sequences import RawData, bool_key, carve, make_task, prepare

DESCRIPTION = "scikit-learn digits: 8 steps of 8 pixels, 10 classes, fixed 60/20/20 split (CE, accuracy)"

SPLIT_SEED = 0  # fixed: the split never follows the run's seed
FRACTION = 0.2  # of all images, for val and for test


@dataclass
class DigitsConfig:
    name: str = "digits"
    standardize: bool = bool_key(True)


@functools.lru_cache(maxsize=1)
def _digit_splits() -> RawData:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images, labels = bunch.images.astype(np.float32), bunch.target.astype(np.int64)  # (1797, 8, 8), (1797,)
    rest, test = carve(len(labels), FRACTION, split_rng(SPLIT_SEED, "test"), labels)
    # val is FRACTION of all images, so a larger share of what test leaves.
    keep, val = carve(len(rest), FRACTION / (1 - FRACTION), split_rng(SPLIT_SEED, "val"), labels[rest])
    train, val = rest[keep], rest[val]
    return RawData("sklearn digits", {
        split: (list(images[index]), labels[index])  # each image (8 rows, 8 pixels) is one sequence
        for split, index in (("train", train), ("val", val), ("test", test))
    })


def check(task_cfg) -> DigitsConfig:
    return validate_config(DigitsConfig, task_cfg)


def build(task_cfg, seed: int) -> Task:
    config = check(task_cfg)
    data = prepare(dataclasses.replace(_digit_splits(), notes=[]), config, SPLIT_SEED)
    return make_task("digits", data, config, SPLIT_SEED)
