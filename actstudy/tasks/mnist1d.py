"""MNIST-1D (Greydanus & Kobak): classify 40-step, 1-feature sequences into 10 digits.

The data set is generated offline by the `mnist1d` package with its published
arguments (4000 train / 1000 test, seed 42), which reproduces the published set.
`get_dataset` is never used: it downloads.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from actstudy.tasks._base import (
    CommonConfig,
    Task,
    TaskConfigError,
    check_shape,
    class_prior_baseline,
    int_key,
    resolve_data_seed,
    split_rng,
    validate_config,
)

DESCRIPTION = "MNIST-1D: classify 40-step 1-D digit sequences, 10 classes (CE, accuracy)"

NUM_CLASSES = 10
SEQ_LEN = 40
PACKAGE_TRAIN_SIZE = 4000  # the package's training split; validation is carved from it
PACKAGE_TEST_SIZE = 1000


@dataclass
class Mnist1dConfig(CommonConfig):
    name: str = "mnist1d"
    train_size: Optional[int] = int_key(None, 1, nullable=True, null_means="all left after val")
    val_size: Optional[int] = int_key(500, 1)
    test_size: Optional[int] = int_key(None, 1, nullable=True, null_means="all 1000")


@functools.lru_cache(maxsize=1)
def load_mnist1d_arrays() -> dict[str, np.ndarray]:
    """Generate the data set once per process (~2 s); arrays are read-only to protect the cache."""
    from mnist1d.data import get_dataset_args, make_dataset

    # make_dataset seeds Python's and NumPy's global RNGs; restore them so that
    # building this task does not change anyone else's random stream.
    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        data = make_dataset(get_dataset_args())
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
    arrays = {
        "x": np.asarray(data["x"], dtype=np.float32),
        "y": np.asarray(data["y"], dtype=np.int64),
        "x_test": np.asarray(data["x_test"], dtype=np.float32),
        "y_test": np.asarray(data["y_test"], dtype=np.int64),
    }
    for array in arrays.values():
        array.setflags(write=False)
    return arrays


def _as_tensors(x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    x_t = torch.tensor(x, dtype=torch.float32).unsqueeze(-1)  # (N, 40) -> (N, 40, 1)
    return x_t, torch.tensor(y, dtype=torch.int64)


def classification_loss(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    check_shape(pred, (len(y), NUM_CLASSES), "mnist1d prediction")
    return F.cross_entropy(pred, y)


def classification_accuracy(pred: torch.Tensor, y: torch.Tensor) -> float:
    check_shape(pred, (len(y), NUM_CLASSES), "mnist1d prediction")
    return (pred.argmax(dim=-1) == y).float().mean().item()


def _check_sizes(config: Mnist1dConfig) -> None:
    """Ranges that depend on the package's split sizes and on each other."""
    if config.val_size >= PACKAGE_TRAIN_SIZE:
        raise TaskConfigError(
            f"task.val_size={config.val_size} is out of range: must be an integer from 1 to "
            f"{PACKAGE_TRAIN_SIZE - 1} (validation is carved from the "
            f"{PACKAGE_TRAIN_SIZE} training sequences)"
        )
    available = PACKAGE_TRAIN_SIZE - config.val_size
    if config.train_size is not None and config.train_size > available:
        raise TaskConfigError(
            f"task.train_size={config.train_size} is out of range: must be an integer from 1 to "
            f"{available} (what val_size={config.val_size} leaves of {PACKAGE_TRAIN_SIZE}) or null"
        )
    if config.test_size is not None and config.test_size > PACKAGE_TEST_SIZE:
        raise TaskConfigError(
            f"task.test_size={config.test_size} is out of range: must be an integer from 1 to "
            f"{PACKAGE_TEST_SIZE} or null (all {PACKAGE_TEST_SIZE})"
        )


def check(task_cfg) -> Mnist1dConfig:
    config = validate_config(Mnist1dConfig, task_cfg)
    _check_sizes(config)
    return config


def build(task_cfg, seed: int) -> Task:
    config = check(task_cfg)
    data_seed = resolve_data_seed(config, seed)
    arrays = load_mnist1d_arrays()

    # One permutation of the package's training set: validation takes its head,
    # training the following sequences, so a smaller train_size leaves val unchanged.
    order = split_rng(data_seed, "train").permutation(PACKAGE_TRAIN_SIZE)
    val_index = order[: config.val_size]
    rest = order[config.val_size :]
    train_index = rest if config.train_size is None else rest[: config.train_size]
    # The test set is the package's own (already shuffled); test_size takes its head.
    test_count = PACKAGE_TEST_SIZE if config.test_size is None else config.test_size
    splits = {
        "train": _as_tensors(arrays["x"][train_index], arrays["y"][train_index]),
        "val": _as_tensors(arrays["x"][val_index], arrays["y"][val_index]),
        "test": _as_tensors(arrays["x_test"][:test_count], arrays["y_test"][:test_count]),
    }

    # Scored on the test split the run's results are reported on.
    baseline = class_prior_baseline(splits["train"][1], splits["test"][1], NUM_CLASSES)
    return Task.from_config(
        config, data_seed, label=f"mnist1d T={SEQ_LEN}", input_size=1, output_size=NUM_CLASSES,
        splits=splits, baseline=baseline, loss=("CE", classification_loss),
        metric=("accuracy", classification_accuracy),
    )
