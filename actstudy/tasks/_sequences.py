"""Turning a user's labelled sequences into a Task: checks, splits, labels, standardisation, padding.

The loaders (npz, csv, digits, ucr) only read their source into `RawData` — per split a list of
sequences, (T_i, F) float arrays or (T_i,) token ids, and their targets — and hand it here. Every problem
with the data becomes a one-line `DataError` naming the source and what is wrong, raised while the task
is checked, before any run directory exists.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from actstudy.tasks._base import (
    SPLITS,
    Task,
    TaskConfigError,
    check_shape,
    class_prior_baseline,
    class_prior_prediction,
    int_key,
    mean_prediction,
    split_rng,
)

TARGETS = ("auto", "class", "regression")
INPUTS = ("features", "tokens")


class DataError(TaskConfigError):
    """The data itself is unusable; the message is one line: '<source>: <problem>'."""


def fraction_key(default: float):
    return field(default=default, metadata={"valid": "a number in (0, 1)", "fraction": True})


def bool_key(default: bool):
    return field(default=default, metadata={"valid": "true or false"})


def str_key(default: str, valid: str):
    return field(default=default, metadata={"valid": valid})


@dataclass
class SequenceDataConfig:
    """Keys every task over stored sequences accepts (conf/task/base/sequence_data.yaml)."""

    name: str = ""
    standardize: bool = bool_key(True)
    val_fraction: float = fraction_key(0.2)
    data_seed: Optional[int] = int_key(None, 0, nullable=True, null_means="use the run's seed")


@dataclass
class FileDataConfig(SequenceDataConfig):
    """Keys a task over the user's own file adds (conf/task/base/file_data.yaml)."""

    target: str = str_key("auto", "one of: auto, class, regression")
    test_fraction: float = fraction_key(0.2)
    per_step: bool = bool_key(False)  # y holds a target for every step instead of one per sequence


def check_common(config) -> None:
    """Choices and ranges the dataclass types do not capture."""
    if getattr(config, "target", "auto") not in TARGETS:
        raise TaskConfigError(f"task.target={config.target!r} is not valid; choose one of: {', '.join(TARGETS)}")
    for spec in dataclasses.fields(config):
        if spec.metadata.get("fraction"):
            value = getattr(config, spec.name)
            if not 0.0 < value < 1.0:
                raise TaskConfigError(f"task.{spec.name}={value!r} is out of range: must be a number in (0, 1)")
    text_input = getattr(config, "input", "features")
    if text_input not in INPUTS:
        raise TaskConfigError(f"task.input={text_input!r} is not valid; choose one of: {', '.join(INPUTS)}")


@dataclass
class RawData:
    """What a loader read: per split (train always; val, test when the source defines them) the
    sequences and their targets, before any checking."""

    source: str  # the file or data set, for messages
    splits: dict[str, tuple[list[np.ndarray], np.ndarray]]
    tokens: bool = False
    per_step: bool = False  # y: one (T_i,) array of targets per sequence (an object array or a list)
    notes: list[str] = field(default_factory=list)


def group_by_split(source: str, xs: list[np.ndarray], y: np.ndarray, split_of: np.ndarray,
                   no_train: str) -> dict[str, tuple[list[np.ndarray], np.ndarray]]:
    """A loader's sequences and targets grouped by each sequence's split name (train, val or test), in
    file order within a split; `no_train` says, in the source's terms, why train would be empty."""
    splits = {}
    for name in SPLITS:
        index = np.flatnonzero(split_of == name)
        if len(index):
            splits[name] = ([xs[i] for i in index], y[index])
    if "train" not in splits:
        raise DataError(f"{source}: the train split is empty ({no_train})")
    return splits


@dataclass
class PreparedData:
    """Checked data, ready to become tensors: every split present, targets encoded."""

    source: str
    xs: dict[str, list[np.ndarray]]  # (T_i, F) float32 or (T_i,) int64
    ys: dict[str, np.ndarray]  # (N,) int64 class indices or (N, K) float32 targets; per step: N such arrays
    target: str  # class | regression
    classes: Optional[np.ndarray]  # the original label of each class index
    num_features: int
    vocab_size: Optional[int]
    notes: list[str]
    per_step: bool = False


# ---------------------------------------------------------------------------------------------- checks


def _fail(source: str, problem: str) -> None:
    raise DataError(f"{source}: {problem}")


def _check_sequences(raw: RawData, split: str, xs: list[np.ndarray], y) -> None:
    source = raw.source
    if len(xs) == 0:
        _fail(source, f"the {split} split is empty (0 sequences)")
    if len(y) != len(xs):
        _fail(source, f"labels do not match the sequences in the {split} split: {len(y)} targets for "
                      f"{len(xs)} sequences")
    want_dims = 1 if raw.tokens else 2
    for index, seq in enumerate(xs):
        if seq.ndim != want_dims:
            shape = "(steps,) token ids" if raw.tokens else "(steps, features)"
            _fail(source, f"{split} sequence {index} has shape {seq.shape}, expected {shape}")
        if seq.shape[0] == 0:
            _fail(source, f"{split} sequence {index} has no steps")
        if raw.tokens:
            if seq.dtype.kind not in "iu":
                _fail(source, f"{split} sequence {index} holds {seq.dtype} values; task.input=tokens needs integers")
            if seq.min() < 0:
                _fail(source, f"{split} sequence {index} has a negative token id {int(seq.min())}")
        else:
            if seq.dtype.kind not in "iufb":
                _fail(source, f"{split} sequence {index} holds {seq.dtype} values, not numbers")
            bad = ~np.isfinite(seq.astype(np.float64))
            if bad.any():
                step = int(np.argwhere(bad)[0][0])
                kind = "NaN" if np.isnan(seq.astype(np.float64)).any() else "infinite"
                _fail(source, f"{split} sequence {index} has {int(bad.sum())} NaN or infinite value(s) "
                              f"({kind} at step {step})")


def _infer_target(raw: RawData, ys: dict[str, np.ndarray], requested: str) -> tuple[str, Optional[str]]:
    """class or regression, and a note saying why when it was inferred."""
    kinds = {y.dtype.kind for y in ys.values()}
    textual = bool(kinds & set("OUSb"))
    integral = kinds <= set("iu")
    if requested == "regression" and textual:
        _fail(raw.source, "task.target=regression but y holds text or booleans, not numbers")
    if requested != "auto":
        return requested, None
    if textual or integral:
        return "class", "target inferred from y: class (y holds integers or text; set task.target=regression to change)"
    return "regression", "target inferred from y: regression (y holds floats; set task.target=class to change)"


def _encode_class(raw: RawData, ys: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    for split, y in ys.items():
        if y.ndim != 1:
            _fail(raw.source, f"class labels must be one per sequence, but {split} y has shape {y.shape}")
        if y.dtype.kind == "f":
            if not np.isfinite(y).all():
                _fail(raw.source, f"{split} y has NaN or infinite labels")
            if (y != np.round(y)).any():
                _fail(raw.source, f"task.target=class but {split} y holds non-integer values such as "
                                  f"{y[y != np.round(y)][0]!r}; set task.target=regression")
    merged = np.concatenate([y.astype(object) if y.dtype.kind in "OUS" else y for y in ys.values()])
    try:
        classes = np.unique(merged)
    except TypeError:  # labels of mixed types cannot be sorted
        _fail(raw.source, "y mixes labels of different types (e.g. numbers and text)")
    if len(classes) < 2:
        _fail(raw.source, f"y has a single class ({classes[0]!r}); a classifier needs at least 2")
    encoded = {split: np.searchsorted(classes, y).astype(np.int64) for split, y in ys.items()}
    return encoded, classes


def _encode_regression(raw: RawData, ys: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    encoded = {}
    for split, y in ys.items():
        y = y.astype(np.float64)
        if y.ndim == 1:
            y = y[:, None]  # (N,) -> (N, 1)
        if y.ndim != 2:
            _fail(raw.source, f"regression targets must be (N,) or (N, outputs), but {split} y has shape {y.shape}")
        if not np.isfinite(y).all():
            _fail(raw.source, f"{split} y has NaN or infinite targets")
        encoded[split] = y.astype(np.float32)
    widths = {y.shape[1] for y in encoded.values()}
    if len(widths) > 1:
        _fail(raw.source, f"the splits have different numbers of targets per sequence: {sorted(widths)}")
    return encoded


# ---------------------------------------------------------------------------------------------- splits


def carve(n: int, fraction: float, rng: np.random.Generator, labels: Optional[np.ndarray]):
    """Split indices 0..n-1 into (kept, carved); `fraction` of each class goes to `carved` (stratified)."""
    order = rng.permutation(n)
    if labels is None:
        carved = order[: int(round(fraction * n))]
    else:
        parts = []
        for label in np.unique(labels):
            members = order[labels[order] == label]
            parts.append(members[: int(round(fraction * len(members)))])
        carved = np.concatenate(parts)
    if len(carved) == 0:
        carved = order[:1]
    kept = np.setdiff1d(np.arange(n), carved)
    return kept, np.sort(carved)


def _step_targets(raw: RawData, split: str, xs: list[np.ndarray], y) -> np.ndarray:
    """Per-step targets, one (T_i,) array per sequence, checked and concatenated: (sum T_i,)."""
    pieces = []
    for index, (seq, item) in enumerate(zip(xs, y)):
        piece = np.asarray(item)
        if piece.ndim != 1 or len(piece) != len(seq):
            _fail(raw.source, f"labels do not match the sequences: {split} sequence {index} has {len(seq)} steps "
                              f"but targets of shape {piece.shape} (task.per_step=true needs one per step)")
        pieces.append(piece)
    return np.concatenate(pieces)


def _unflatten(flat: np.ndarray, xs: list[np.ndarray]) -> np.ndarray:
    """(sum T_i, ...) -> an object array of N pieces (T_i, ...), cut at the sequences' lengths."""
    out = np.empty(len(xs), dtype=object)
    out[:] = np.split(flat, np.cumsum([len(seq) for seq in xs])[:-1])
    return out


def _take(xs: list[np.ndarray], y: np.ndarray, index: np.ndarray):
    return [xs[i] for i in index], y[index]


def _fill_splits(raw: RawData, config, data_seed: int, stratify: bool) -> dict[str, tuple[list, np.ndarray]]:
    """Carve test (with a fixed seed, so every run tests on the same sequences) and val (with the data
    seed) out of train when the source does not define them."""
    splits = dict(raw.splits)
    for split, seed in (("test", 0), ("val", data_seed)):
        if split in splits:
            continue
        fraction = getattr(config, f"{split}_fraction")
        xs, y = splits["train"]
        labels = y if stratify and y.ndim == 1 else None
        kept, carved = carve(len(xs), fraction, split_rng(seed, split), labels)
        if len(kept) == 0:
            _fail(raw.source, f"too few sequences ({len(xs)}) to carve a {split} split from train")
        splits[split] = _take(xs, y, carved)
        splits["train"] = _take(xs, y, kept)
        raw.notes.append(f"{split} split: {len(carved)} sequences carved from train "
                         f"(task.{split}_fraction={fraction}{', stratified' if labels is not None else ''})")
    return {split: splits[split] for split in SPLITS}


def _check_classes_in_train(raw: RawData, ys: dict[str, np.ndarray], classes) -> None:
    """Refuse a split in which a class appears that training never shows: its accuracy would measure
    the split, not the activation (a split too small, or a file's own split that misses a class)."""
    def seen(y) -> set:
        labels = np.concatenate([np.asarray(r) for r in y]) if raw.per_step and len(y) else np.asarray(y)
        return set(np.unique(labels).tolist())

    trained = seen(ys["train"])
    for split in ("val", "test"):
        missing = sorted(seen(ys[split]) - trained)
        if missing:
            name = classes[missing[0]] if classes is not None and missing[0] < len(classes) else missing[0]
            name = name.item() if hasattr(name, "item") else name  # np.int64(2) -> 2
            _fail(raw.source, f"class {name!r} appears in the {split} split but never in train ({len(missing)} "
                              f"such class(es)); give train examples of it, or a larger file or split")


def prepare(raw: RawData, config, data_seed: int, vocab_size: Optional[int] = None) -> PreparedData:
    """Check the data, fill in missing splits, encode targets. Raises DataError naming the problem."""
    extra = set(raw.splits) - set(SPLITS)
    if extra or "train" not in raw.splits:
        _fail(raw.source, f"splits must be train, val, test (train required), got {sorted(raw.splits)}")
    for split, (xs, y) in raw.splits.items():
        _check_sequences(raw, split, xs, y)
    if raw.per_step:  # encode the steps' targets as one long array per split, then cut them back apart
        flat = {split: _step_targets(raw, split, xs, y) for split, (xs, y) in raw.splits.items()}
    else:
        flat = {split: np.asarray(y) for split, (_, y) in raw.splits.items()}
    target, note = _infer_target(raw, flat, getattr(config, "target", "auto"))
    notes = list(raw.notes) + ([note] if note and hasattr(config, "target") else [])

    classes = None
    if target == "class":
        flat, classes = _encode_class(raw, flat)
    else:
        flat = _encode_regression(raw, flat)
    ys_raw = {s: _unflatten(flat[s], raw.splits[s][0]) for s in flat} if raw.per_step else flat
    raw = dataclasses.replace(raw, splits={s: (raw.splits[s][0], ys_raw[s]) for s in raw.splits}, notes=notes)
    splits = _fill_splits(raw, config, data_seed, stratify=target == "class" and not raw.per_step)
    xs = {split: splits[split][0] for split in SPLITS}
    ys = {split: splits[split][1] for split in SPLITS}
    if target == "class":
        _check_classes_in_train(raw, ys, classes)

    if raw.tokens:
        top = max(int(seq.max()) for split in SPLITS for seq in xs[split])
        if vocab_size is None:
            vocab_size = top + 1
            notes.append(f"vocab_size inferred from the data: {vocab_size} (largest token id + 1)")
        elif top >= vocab_size:
            _fail(raw.source, f"token id {top} is not below task.vocab_size={vocab_size}")
        xs = {split: [seq.astype(np.int64) for seq in xs[split]] for split in SPLITS}
        num_features = 1
    else:
        widths = {seq.shape[1] for split in SPLITS for seq in xs[split]}
        if len(widths) > 1:
            _fail(raw.source, f"sequences have different numbers of features: {sorted(widths)}")
        num_features = widths.pop()
        # float32 first, so the same numbers read from NPZ or CSV give bit-identical tensors.
        xs = {split: [seq.astype(np.float32) for seq in xs[split]] for split in SPLITS}
        vocab_size = None
    for split in SPLITS:
        if len(xs[split]) == 0:
            _fail(raw.source, f"the {split} split is empty (0 sequences)")
    return PreparedData(raw.source, xs, ys, target, classes, num_features, vocab_size, notes, raw.per_step)


# --------------------------------------------------------------------------------------------- tensors


def standardize(data: PreparedData) -> None:
    """Scale each feature to zero mean, unit variance with the training split's real steps only."""
    steps = np.concatenate(data.xs["train"]).astype(np.float64)  # (sum T_i, F)
    mean, std = steps.mean(0), steps.std(0)
    std[std == 0] = 1.0  # a constant feature stays constant (zero) instead of dividing by zero
    for split in SPLITS:
        data.xs[split] = [((seq - mean) / std).astype(np.float32) for seq in data.xs[split]]


def pad(xs: list[np.ndarray], total: int) -> torch.Tensor:
    """Right-pad sequences with zeros to `total` steps: (N, total, F) floats or (N, total) token ids."""
    first = xs[0]
    out = np.zeros((len(xs), total, *first.shape[1:]), dtype=first.dtype)
    for row, seq in enumerate(xs):
        out[row, : len(seq)] = seq
    return torch.from_numpy(out)


def classification_loss(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    check_shape(pred, (len(y), pred.shape[-1]), "class prediction")
    return F.cross_entropy(pred, y)


def classification_accuracy(pred: torch.Tensor, y: torch.Tensor) -> float:
    return (pred.argmax(dim=-1) == y).float().mean().item()


def regression_loss(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    check_shape(pred, y.shape, "regression prediction")
    return F.mse_loss(pred, y)


def r2_score(pred: torch.Tensor, y: torch.Tensor) -> float:
    """1 − MSE / variance of the targets, averaged over outputs: 0 for predicting the mean, 1 when exact."""
    check_shape(pred, y.shape, "regression prediction")
    residual = (pred - y).pow(2).mean(0)
    spread = (y - y.mean(0)).pow(2).mean(0).clamp_min(1e-12)
    return (1.0 - residual / spread).mean().item()


def every_step(fn, width: int, target: str):
    """A sequence-level loss or metric applied to every step: (N, T, O) and (N, T[, 1]) -> (N*T, O), (N*T[, 1]).

    The task's loss has already kept only real steps when there is padding ((M, O), (M[, 1])); reshaping
    those changes nothing.
    """
    def flat(pred: torch.Tensor, y: torch.Tensor):
        return fn(pred.reshape(-1, width), y.reshape(-1) if target == "class" else y.reshape(-1, width))

    return flat


def make_task(label: str, data: PreparedData, config, data_seed: int) -> Task:
    """Tensors, loss, metric and the input-blind baseline for prepared data."""
    if getattr(config, "standardize", False) and data.vocab_size is None:
        standardize(data)
    lengths_np = {split: np.array([len(seq) for seq in data.xs[split]]) for split in SPLITS}
    total = max(int(n.max()) for n in lengths_np.values())
    same_length = all((n == total).all() for n in lengths_np.values())
    if data.per_step:  # targets padded like the inputs: (N, T) classes or (N, T, 1) values
        splits = {split: (pad(data.xs[split], total), pad(list(data.ys[split]), total)) for split in SPLITS}
        # The baseline sees every real step of a split as one long list of targets.
        train_y, test_y = (torch.from_numpy(np.concatenate(list(data.ys[s]))) for s in ("train", "test"))
    else:
        splits = {split: (pad(data.xs[split], total), torch.from_numpy(data.ys[split])) for split in SPLITS}
        train_y, test_y = splits["train"][1], splits["test"][1]
    lengths = {} if same_length else {split: torch.from_numpy(lengths_np[split]).long() for split in SPLITS}

    if data.target == "class":
        output_size = len(data.classes)
        baseline = class_prior_baseline(train_y, test_y, output_size)
        memoryless = class_prior_prediction(train_y, output_size)
        loss, metric = ("CE", classification_loss), ("accuracy", classification_accuracy)
    else:
        mean = train_y.mean(0, keepdim=True).expand_as(test_y)
        baseline = {"loss": F.mse_loss(mean, test_y).item(), "metric": r2_score(mean, test_y)}
        memoryless = mean_prediction(train_y)
        output_size = train_y.shape[1]
        loss, metric = ("MSE", regression_loss), ("r2", r2_score)

    if data.per_step:  # every step is one prediction: flatten (N, T, O) and the padded targets alike
        loss, metric = ((name, every_step(fn, output_size, data.target)) for name, fn in (loss, metric))
    span = f"T={total}" if same_length else f"T={min(int(n.min()) for n in lengths_np.values())}..{total}"
    kind = f"{output_size} classes" if data.target == "class" else f"regression, {output_size} output(s)"
    kind += " at every step" if data.per_step else ""
    features = f"tokens < {data.vocab_size}" if data.vocab_size else f"{data.num_features} features"
    # Token ids are embedded by the model into embedding_size features (a key of the tasks that read tokens).
    input_size = config.embedding_size if data.vocab_size else data.num_features
    return Task.from_config(
        config, data_seed, label=f"{label} {span}", input_size=input_size, output_size=output_size,
        splits=splits, baseline=baseline, loss=loss, metric=metric, lengths=lengths, vocab_size=data.vocab_size,
        notes=[f"{data.source}: {features}, {kind}, {span}"] + data.notes, memoryless=memoryless,
    )
