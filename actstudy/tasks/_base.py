"""What every task shares: the Task object, config validation, seeded data streams.

A task module declares a config dataclass whose integer fields come from
`int_key(...)`; `validate_config` checks a user's task config against it and
turns every problem into a one-line `TaskConfigError`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException, ValidationError

SPLITS = ("train", "val", "test")

# Each split draws from its own random stream, keyed by (data_seed, split id),
# so resizing one split never shifts the samples of another.
_SPLIT_STREAM_ID = {"train": 0, "val": 1, "test": 2}


class TaskConfigError(ValueError):
    """A task config value is invalid; the message is one line naming key, value and what is valid."""


def int_key(default: Optional[int], minimum: int, nullable: bool = False, null_means: str = ""):
    """A dataclass field for an integer config key with a lower bound.

    The metadata lets `validate_config` check the range and phrase the error
    without each task repeating the same checks.
    """
    valid = f"an integer >= {minimum}"
    if nullable:
        valid += f" or null ({null_means})" if null_means else " or null"
    return field(default=default, metadata={"minimum": minimum, "nullable": nullable, "valid": valid})


@dataclass
class CommonConfig:
    """Keys every task accepts; task schemas subclass this and add their own."""

    name: str = ""
    train_size: Optional[int] = int_key(4000, 1)
    val_size: Optional[int] = int_key(1000, 1)
    test_size: Optional[int] = int_key(1000, 1)
    data_seed: Optional[int] = int_key(None, 0, nullable=True, null_means="use the run's seed")


def short_repr(value: Any) -> str:
    """repr of a user value, kept on one line and short enough for an error message."""
    text = repr(value).replace("\n", " ")
    return text if len(text) <= 60 else text[:57] + "..."


def validate_config(schema: type, task_cfg: Any) -> Any:
    """Check `task_cfg` against the dataclass `schema`; return the merged, typed config object.

    Raises TaskConfigError for unknown keys, values of the wrong type, and
    integers outside their declared range.
    """
    if isinstance(task_cfg, DictConfig):
        try:
            raw = OmegaConf.to_container(task_cfg, resolve=True)
        except OmegaConfBaseException as error:  # e.g. an interpolation that does not resolve
            first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise TaskConfigError(f"task config cannot be resolved: {first_line}") from None
    elif isinstance(task_cfg, Mapping):
        raw = dict(task_cfg)
    else:
        raise TaskConfigError(f"task config must be a mapping of keys to values, got {short_repr(task_cfg)}")

    fields = {f.name: f for f in dataclasses.fields(schema)}
    task_name = raw.get("name", "")
    unknown = [key for key in raw if key not in fields]
    if unknown:
        raise TaskConfigError(
            f"unknown key task.{unknown[0]} for task {task_name!r}; valid keys: {', '.join(fields)}"
        )

    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), raw)
    except ValidationError as error:
        key = str(error.key) if error.key is not None else "?"
        valid = fields[key].metadata.get("valid", "a value of the declared type") if key in fields else "?"
        raise TaskConfigError(
            f"task.{key}={short_repr(raw.get(key))} is not valid: must be {valid}"
        ) from None

    for key, spec in fields.items():
        if "minimum" not in spec.metadata:
            continue
        value = merged[key]
        if value is None:
            if not spec.metadata["nullable"]:
                raise TaskConfigError(f"task.{key}=null is not valid: must be {spec.metadata['valid']}")
            continue
        if value < spec.metadata["minimum"]:
            raise TaskConfigError(
                f"task.{key}={value!r} is out of range: must be {spec.metadata['valid']}"
            )
    return OmegaConf.to_object(merged)


def resolve_data_seed(config: Any, run_seed: int) -> int:
    """The seed the data is generated from: data_seed when given, else the run's seed."""
    seed = run_seed if config.data_seed is None else config.data_seed
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise TaskConfigError(
            f"seed={short_repr(seed)} cannot seed task data: must be an integer >= 0 "
            "(set task.data_seed to decouple data from the run seed)"
        )
    return int(seed)


def split_rng(data_seed: int, split: str) -> np.random.Generator:
    """An explicitly seeded generator for one split; never touches global RNG state."""
    return np.random.default_rng([data_seed, _SPLIT_STREAM_ID[split]])


def check_shape(tensor: torch.Tensor, expected: tuple, what: str) -> None:
    """Fail loudly instead of letting broadcasting hide a (N,) vs (N, 1) mix-up."""
    if tuple(tensor.shape) != tuple(expected):
        raise ValueError(f"{what} has shape {tuple(tensor.shape)}, expected {tuple(expected)}")


def real_steps(pred: torch.Tensor, y: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep only the real steps of right-padded per-step outputs: (B, T, O), (B, T) -> (M, O), (M,)."""
    steps = torch.arange(y.shape[1], device=lengths.device)
    mask = steps.unsqueeze(0) < lengths.unsqueeze(1)  # (B, T), True on real steps
    return pred[mask.to(pred.device)], y[mask.to(y.device)]


def class_prior_baseline(train_y: torch.Tensor, test_y: torch.Tensor, num_classes: int) -> dict[str, float]:
    """The best input-blind classifier, fitted on the training labels (their frequencies as
    probabilities, the majority class as the answer) and scored on the test labels."""
    prior = torch.bincount(train_y, minlength=num_classes).double() / len(train_y)
    prior_logits = prior.clamp_min(1e-12).log().expand(len(test_y), num_classes)  # (C,) -> (N_test, C)
    return {
        "loss": torch.nn.functional.cross_entropy(prior_logits, test_y).item(),
        "metric": (test_y == prior.argmax()).double().mean().item(),
    }


@dataclass
class Task:
    """Data, loss, metric and baseline of one task, as the trainer sees it."""

    name: str
    label: str  # short human name with the defining parameter, e.g. "adding T=50"
    input_size: int
    output_size: int
    per_step: bool  # True: a prediction at every step; False: one per sequence, from the last step
    metric_name: str
    loss_name: str  # what loss() computes, for logs ("MSE", "CE")
    splits: dict[str, tuple[torch.Tensor, torch.Tensor]]
    baseline: dict[str, float]  # {"loss", "metric"} of the best memoryless predictor
    data_seed: int
    config: dict  # the validated task config, with data_seed resolved
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    metric_fn: Callable[[torch.Tensor, torch.Tensor], float]
    # Per split, each sequence's real length (LongTensor (N,)), or None when every sequence fills all T
    # steps. Shorter sequences are right-padded: their steps come first, padding after.
    lengths: dict[str, Optional[torch.Tensor]] = field(default_factory=dict)
    # Not None: x is int64 (N, T) token ids below vocab_size, embedded into input_size features by the model.
    vocab_size: Optional[int] = None
    notes: list[str] = field(default_factory=list)  # facts inferred from the data, shown to the user

    @classmethod
    def from_config(cls, config: Any, data_seed: int, *, label: str, input_size: int, output_size: int,
                    splits: dict[str, tuple[torch.Tensor, torch.Tensor]], baseline: dict[str, float],
                    loss: tuple[str, Callable], metric: tuple[str, Callable], **optional: Any) -> "Task":
        """The one way a task module makes its Task: what every task records the same way comes from
        `config` (the validated config dataclass) — the name, per_step, and the config itself with
        data_seed resolved; `loss` and `metric` are (name, function) pairs; `optional` sets lengths,
        vocab_size or notes."""
        (loss_name, loss_fn), (metric_name, metric_fn) = loss, metric
        return cls(
            name=config.name,
            label=label,
            input_size=input_size,
            output_size=output_size,
            per_step=getattr(config, "per_step", False),  # a key of some tasks, a constant of copy's schema
            metric_name=metric_name,
            loss_name=loss_name,
            splits=splits,
            baseline=baseline,
            data_seed=data_seed,
            config={**dataclasses.asdict(config), "data_seed": data_seed},
            loss_fn=loss_fn,
            metric_fn=metric_fn,
            **optional,
        )

    def split_lengths(self, split: str) -> Optional[torch.Tensor]:
        return self.lengths.get(split)

    def loss(self, pred: torch.Tensor, y: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Mean loss over the batch, a scalar tensor that backpropagates.

        For a per-step task with `lengths`, padded steps are left out: the loss is the mean over real steps.
        """
        if lengths is not None and self.per_step:
            pred, y = real_steps(pred, y, lengths)
        return self.loss_fn(pred, y)

    def metric(self, pred: torch.Tensor, y: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> float:
        """The task's metric (higher is better) as a plain float."""
        with torch.no_grad():
            if lengths is not None and self.per_step:
                pred, y = real_steps(pred.detach(), y, lengths)
            return float(self.metric_fn(pred.detach(), y))

    def describe(self) -> str:
        sizes = "/".join(str(len(self.splits[split][0])) for split in SPLITS)
        return (
            f"{self.label}: {sizes} train/val/test sequences (data seed {self.data_seed}); "
            f"baseline {self.loss_name} {self.baseline['loss']:.4f}, "
            f"{self.metric_name} {self.baseline['metric']:.4f}"
        )
