"""The copying-memory task in the form of Arjovsky, Shah & Bengio (2016).

Input of length T + 20: ten symbols from 1..8, T - 1 blanks (0), the delimiter (9),
ten blanks. Target: T + 10 blanks, then the ten symbols. The model predicts a
symbol at every step; T is the delay between seeing a symbol and recalling it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from actstudy.tasks._base import (
    SPLITS,
    CommonConfig,
    Task,
    TaskConfigError,
    check_shape,
    int_key,
    resolve_data_seed,
    split_rng,
    validate_config,
)

DESCRIPTION = "copy task: recall 10 symbols after a delay of T steps (CE, recall_acc)"

BLANK = 0
DELIMITER = 9
NUM_SYMBOLS = 8  # symbols to remember are 1..8
NUM_CLASSES = 10  # blank, 8 symbols, delimiter
RECALL_LENGTH = 10  # how many symbols are shown and must be recalled


@dataclass
class CopyConfig(CommonConfig):
    name: str = "copy"
    seq_len: int = int_key(20, 1)  # the delay T; 1 puts the delimiter right after the symbols
    input: str = field(default="onehot", metadata={"valid": "one of: onehot, tokens"})
    embedding_size: int = int_key(16, 1)  # input=tokens: features per embedded symbol
    per_step: ClassVar[bool] = True  # a target at every step, whatever the keys say


INPUTS = ("onehot", "tokens")


def make_copy_data(num_sequences: int, delay: int, rng: np.random.Generator, tokens: bool = False):
    """Generate x (N, T+20, 10) one-hot float32 — or (N, T+20) int64 symbol ids when `tokens` — and
    y (N, T+20) int64 symbol targets."""
    length = delay + 2 * RECALL_LENGTH
    # Drawn row by row, so a larger train_size extends a smaller one rather than replacing it.
    symbols = rng.integers(1, NUM_SYMBOLS + 1, size=(num_sequences, RECALL_LENGTH))  # (N, 10)
    inputs = np.full((num_sequences, length), BLANK, dtype=np.int64)
    inputs[:, :RECALL_LENGTH] = symbols
    # After the symbols come T - 1 blanks, so the delimiter sits at index 10 + T - 1.
    inputs[:, RECALL_LENGTH + delay - 1] = DELIMITER
    targets = np.full((num_sequences, length), BLANK, dtype=np.int64)
    targets[:, -RECALL_LENGTH:] = symbols
    inputs_t = torch.from_numpy(inputs)
    if tokens:
        return inputs_t, torch.from_numpy(targets)
    x = F.one_hot(inputs_t, NUM_CLASSES).to(torch.float32)  # (N, T+20) -> (N, T+20, 10)
    return x, torch.from_numpy(targets)


def copy_loss(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy averaged over every step of every sequence."""
    check_shape(pred, (*y.shape, NUM_CLASSES), "copy prediction")
    return F.cross_entropy(pred.reshape(-1, NUM_CLASSES), y.reshape(-1))  # (N*L, 10) vs (N*L,)


def copy_recall_accuracy(pred: torch.Tensor, y: torch.Tensor) -> float:
    """Accuracy over the ten recall steps only; the blanks elsewhere are trivially right."""
    check_shape(pred, (*y.shape, NUM_CLASSES), "copy prediction")
    recalled = pred[:, -RECALL_LENGTH:].argmax(dim=-1)  # (N, 10)
    return (recalled == y[:, -RECALL_LENGTH:]).float().mean().item()


def check(task_cfg) -> CopyConfig:
    config = validate_config(CopyConfig, task_cfg)
    if config.input not in INPUTS:
        raise TaskConfigError(f"task.input={config.input!r} is not valid; choose one of: {', '.join(INPUTS)}")
    return config


def build(task_cfg, seed: int) -> Task:
    config = check(task_cfg)
    data_seed = resolve_data_seed(config, seed)
    sizes = {"train": config.train_size, "val": config.val_size, "test": config.test_size}
    tokens = config.input == "tokens"
    splits = {
        split: make_copy_data(sizes[split], config.seq_len, split_rng(data_seed, split), tokens)
        for split in SPLITS
    }
    # A memoryless predictor knows where the recall window is (from the step count)
    # but not what was shown: it is certain of the blanks and uniform over the
    # 8 symbols in the 10 recall steps, costing ln(8) each, averaged over T + 20 steps.
    length = config.seq_len + 2 * RECALL_LENGTH
    baseline = {"loss": RECALL_LENGTH * math.log(NUM_SYMBOLS) / length, "metric": 1.0 / NUM_SYMBOLS}
    return Task.from_config(
        config, data_seed, label=f"copy T={config.seq_len}",
        input_size=config.embedding_size if tokens else NUM_CLASSES, output_size=NUM_CLASSES,
        splits=splits, baseline=baseline, loss=("CE", copy_loss), metric=("recall_acc", copy_recall_accuracy),
        vocab_size=NUM_CLASSES if tokens else None,
    )
