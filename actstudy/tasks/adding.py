"""The adding problem in the form of Arjovsky, Shah & Bengio (2016).

Each step carries a value drawn from U[0, 1] and a marker; exactly two steps are
marked, one in each half of the sequence. The target is the sum of the two
marked values, predicted once per sequence from the last step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from actstudy.tasks._base import (
    SPLITS,
    CommonConfig,
    Task,
    check_shape,
    int_key,
    resolve_data_seed,
    split_rng,
    validate_config,
)

DESCRIPTION = "adding problem: sum the two marked values of a length-T sequence (MSE, acc@0.04)"

# Hochreiter & Schmidhuber (1997) count a sequence as solved when |error| < 0.04.
TOLERANCE = 0.04


@dataclass
class AddingConfig(CommonConfig):
    name: str = "adding"
    seq_len: int = int_key(50, 2)  # 2 is the shortest sequence with one step per half


def make_adding_data(num_sequences: int, seq_len: int, rng: np.random.Generator):
    """Generate x (N, T, 2) float32 = [value, marker] and y (N, 1) float32 = sum of marked values."""
    # One draw of T + 2 uniforms per sequence, filled row by row, so the first n
    # sequences are the same whatever num_sequences is: a larger train_size
    # extends a smaller one instead of replacing it.
    uniforms = rng.random((num_sequences, seq_len + 2))  # (N, T + 2)
    values = uniforms[:, :seq_len]  # (N, T), U[0, 1)
    first_half = seq_len // 2
    first_mark = (uniforms[:, seq_len] * first_half).astype(np.int64)  # in [0, T//2)
    second_half = seq_len - first_half
    second_mark = first_half + (uniforms[:, seq_len + 1] * second_half).astype(np.int64)  # in [T//2, T)
    markers = np.zeros((num_sequences, seq_len))
    rows = np.arange(num_sequences)
    markers[rows, first_mark] = 1.0
    markers[rows, second_mark] = 1.0
    target = values[rows, first_mark] + values[rows, second_mark]
    x = np.stack([values, markers], axis=-1)  # (N, T, 2)
    return (
        torch.tensor(x, dtype=torch.float32),
        torch.tensor(target, dtype=torch.float32).unsqueeze(1),  # (N,) -> (N, 1)
    )


def adding_loss(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    check_shape(pred, y.shape, "adding prediction")
    return F.mse_loss(pred, y)


def adding_accuracy(pred: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of sequences whose prediction is within TOLERANCE of the target."""
    check_shape(pred, y.shape, "adding prediction")
    return ((pred - y).abs() < TOLERANCE).float().mean().item()


def check(task_cfg) -> AddingConfig:
    return validate_config(AddingConfig, task_cfg)


def build(task_cfg, seed: int) -> Task:
    config = check(task_cfg)
    data_seed = resolve_data_seed(config, seed)
    sizes = {"train": config.train_size, "val": config.val_size, "test": config.test_size}
    splits = {
        split: make_adding_data(sizes[split], config.seq_len, split_rng(data_seed, split))
        for split in SPLITS
    }
    # Always predicting 1 (the mean of U1 + U2) gives MSE = Var(U1 + U2) = 2 * 1/12 = 1/6.
    # U1 + U2 is triangular on [0, 2] with its peak at 1, so
    # P(|U1 + U2 - 1| < d) = 1 - (1 - d)^2.
    baseline = {"loss": 1.0 / 6.0, "metric": 1.0 - (1.0 - TOLERANCE) ** 2}
    return Task.from_config(
        config, data_seed, label=f"adding T={config.seq_len}", input_size=2, output_size=1,
        splits=splits, baseline=baseline, loss=("MSE", adding_loss), metric=(f"acc@{TOLERANCE}", adding_accuracy),
    )
