"""Tests for actstudy.tasks: data layout, determinism, baselines, config validation."""

import dataclasses
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from actstudy.config import compose
from actstudy.tasks import TASKS, Task, TaskConfigError, build_task
from actstudy.tasks.adding import AddingConfig, make_adding_data
from actstudy.tasks.copy import CopyConfig
from actstudy.tasks.csv import CsvConfig
from actstudy.tasks.digits import DigitsConfig
from actstudy.tasks.mnist1d import Mnist1dConfig, load_mnist1d_arrays
from actstudy.tasks.npz import NpzConfig
from actstudy.tasks.ucr import UcrConfig

CONF_TASK_DIR = Path(__file__).resolve().parents[1] / "conf" / "task"
SCHEMAS = {"adding": AddingConfig, "copy": CopyConfig, "mnist1d": Mnist1dConfig, "npz": NpzConfig,
           "csv": CsvConfig, "digits": DigitsConfig, "ucr": UcrConfig}
NEEDS_A_FILE = ("npz", "csv")  # their YAML has path: null, so they cannot build as they stand
SMALL = {"train_size": 64, "val_size": 32, "test_size": 16}


def small_task(name, seed=0, **overrides):
    sizes = {} if name == "mnist1d" else SMALL
    return build_task({"name": name, **sizes, **overrides}, seed)


# ---------------------------------------------------------------- shapes and dtypes


@pytest.mark.parametrize(
    "name, overrides, x_shape, y_shape, y_dtype",
    [
        ("adding", {"seq_len": 30}, (30, 2), (1,), torch.float32),
        ("copy", {"seq_len": 7}, (27, 10), (27,), torch.int64),
        ("mnist1d", {}, (40, 1), (), torch.int64),
    ],
)
def test_split_shapes_and_dtypes(name, overrides, x_shape, y_shape, y_dtype):
    task = small_task(name, **overrides)
    assert isinstance(task, Task) and task.name == name
    expected_sizes = {"train": 3500, "val": 500, "test": 1000} if name == "mnist1d" else SMALL
    for split, (x, y) in task.splits.items():
        count = expected_sizes[split if name == "mnist1d" else f"{split}_size"]
        assert x.shape == (count, *x_shape) and x.dtype == torch.float32
        assert y.shape == (count, *y_shape) and y.dtype == y_dtype
    assert task.input_size == x_shape[-1]
    assert set(task.splits) == {"train", "val", "test"}
    assert "\n" not in task.describe() and task.label in task.describe()


def test_task_attributes():
    adding, copy, mnist = small_task("adding"), small_task("copy"), small_task("mnist1d")
    assert (adding.output_size, adding.per_step, adding.metric_name) == (1, False, "acc@0.04")
    assert (copy.output_size, copy.per_step, copy.metric_name) == (10, True, "recall_acc")
    assert (mnist.output_size, mnist.per_step, mnist.metric_name) == (10, False, "accuracy")


# ---------------------------------------------------------------- adding layout


@pytest.mark.parametrize("seq_len", [2, 7, 50])
def test_adding_two_markers_one_per_half_and_target_is_their_sum(seq_len):
    x, y = make_adding_data(500, seq_len, np.random.default_rng(3))
    values, markers = x[..., 0], x[..., 1]
    assert ((values >= 0) & (values < 1)).all()
    assert set(markers.unique().tolist()) <= {0.0, 1.0}
    half = seq_len // 2
    assert (markers[:, :half].sum(dim=1) == 1).all()
    assert (markers[:, half:].sum(dim=1) == 1).all()
    torch.testing.assert_close(y[:, 0], (values * markers).sum(dim=1))


# ---------------------------------------------------------------- copy layout


@pytest.mark.parametrize("delay", [1, 5, 20])
def test_copy_layout(delay):
    task = small_task("copy", seq_len=delay)
    x, y = task.splits["train"]
    length = delay + 20
    assert (x.sum(dim=-1) == 1).all(), "inputs are one-hot"
    symbols = x.argmax(dim=-1)  # (N, T+20) one-hot -> symbol ids
    delimiter_at = 10 + delay - 1
    assert ((symbols[:, :10] >= 1) & (symbols[:, :10] <= 8)).all()
    assert (symbols[:, delimiter_at] == 9).all()
    others = torch.ones(length, dtype=torch.bool)
    others[:10] = False
    others[delimiter_at] = False
    assert (symbols[:, others] == 0).all(), "blanks everywhere but the symbols and the delimiter"
    assert torch.equal(y[:, -10:], symbols[:, :10])
    assert (y[:, :-10] == 0).all()


# ---------------------------------------------------------------- determinism and split independence


@pytest.mark.parametrize("name", ["adding", "copy"])
def test_same_data_seed_same_data_different_seed_different_data(name):
    first, again, other = small_task(name, seed=5), small_task(name, seed=5), small_task(name, seed=6)
    for split in ("train", "val", "test"):
        assert torch.equal(first.splits[split][0], again.splits[split][0])
        assert torch.equal(first.splits[split][1], again.splits[split][1])
        assert not torch.equal(first.splits[split][0], other.splits[split][0])


@pytest.mark.parametrize("name", ["adding", "copy", "mnist1d"])
def test_data_seed_overrides_run_seed(name):
    one, two = small_task(name, seed=1, data_seed=9), small_task(name, seed=2, data_seed=9)
    assert one.data_seed == two.data_seed == 9
    for split in ("train", "val", "test"):
        assert torch.equal(one.splits[split][0], two.splits[split][0])


def test_mnist1d_carve_depends_on_seed_and_test_set_does_not():
    one, two = small_task("mnist1d", seed=1), small_task("mnist1d", seed=2)
    assert not torch.equal(one.splits["val"][0], two.splits["val"][0])
    assert torch.equal(one.splits["test"][0], two.splits["test"][0])


@pytest.mark.parametrize(
    "name, sizes",
    [("adding", (64, 200)), ("copy", (64, 200)), ("mnist1d", (100, None))],
)
def test_val_and_test_do_not_change_with_train_size(name, sizes):
    small, large = (small_task(name, seed=4, train_size=size) for size in sizes)
    assert len(small.splits["train"][0]) < len(large.splits["train"][0])
    for split in ("val", "test"):
        assert torch.equal(small.splits[split][0], large.splits[split][0])
        assert torch.equal(small.splits[split][1], large.splits[split][1])
    # The smaller training set is the head of the larger one.
    head = len(small.splits["train"][0])
    assert torch.equal(small.splits["train"][0], large.splits["train"][0][:head])


def test_mnist1d_splits_partition_the_package_training_set():
    task = small_task("mnist1d", seed=3)
    arrays = load_mnist1d_arrays()
    package_rows = {row.tobytes() for row in arrays["x"]}
    train_rows = {row.tobytes() for row in task.splits["train"][0][..., 0].numpy()}
    val_rows = {row.tobytes() for row in task.splits["val"][0][..., 0].numpy()}
    assert not train_rows & val_rows
    assert train_rows | val_rows == package_rows
    assert np.array_equal(task.splits["test"][0][..., 0].numpy(), arrays["x_test"])


def test_mnist1d_generation_leaves_global_rng_untouched():
    numpy_before = np.random.get_state()[1].copy()
    load_mnist1d_arrays.__wrapped__()  # bypass the cache to really regenerate
    assert np.array_equal(np.random.get_state()[1], numpy_before)


# ---------------------------------------------------------------- baselines


def test_adding_always_one_predictor_matches_baseline():
    task = small_task("adding")
    # The baseline does not depend on T, so a short T keeps this large set cheap.
    _, y = make_adding_data(200_000, 4, np.random.default_rng(11))
    always_one = torch.ones_like(y)
    assert task.loss(always_one, y).item() == pytest.approx(1 / 6, abs=3e-3)
    assert task.metric(always_one, y) == pytest.approx(task.baseline["metric"], abs=3e-3)
    assert task.baseline["loss"] == pytest.approx(1 / 6)
    assert task.baseline["metric"] == pytest.approx(1 - 0.96**2)


def test_copy_memoryless_predictor_matches_baseline():
    task = small_task("copy", seq_len=12, train_size=2000)
    _, y = task.splits["train"]
    # Certain of a blank before the recall window, uniform over 1..8 inside it.
    blank_logits = torch.full((10,), -1e4)
    blank_logits[0] = 0.0
    recall_logits = torch.full((10,), -1e4)
    recall_logits[1:9] = 0.0
    pred = blank_logits.expand(*y.shape, 10).clone()  # (N, T+20, 10)
    pred[:, -10:] = recall_logits
    assert task.loss(pred, y).item() == pytest.approx(10 * math.log(8) / 32, rel=1e-5)
    assert task.baseline["loss"] == pytest.approx(10 * math.log(8) / 32)
    assert task.metric(pred, y) == pytest.approx(task.baseline["metric"], abs=0.03)


def test_mnist1d_baseline_is_the_constant_prior_predictor():
    task = small_task("mnist1d")
    train_y = task.splits["train"][1]
    test_x, test_y = task.splits["test"]
    prior = torch.bincount(train_y, minlength=10).float() / len(train_y)
    pred = prior.log().expand(len(test_y), 10)
    assert task.baseline["loss"] == pytest.approx(task.loss(pred, test_y).item(), rel=1e-5)
    assert task.baseline["metric"] == pytest.approx(task.metric(pred, test_y))
    assert task.baseline["loss"] == pytest.approx(math.log(10), abs=0.02)
    assert 0.05 < task.baseline["metric"] < 0.15


def perfect_prediction(task, y):
    if task.name == "adding":
        return y.clone()
    return 10.0 * F.one_hot(y, 10).float()  # (N,) or (N, L) -> (..., 10) confident logits


@pytest.mark.parametrize("name", ["adding", "copy", "mnist1d"])
def test_perfect_predictor_scores_one(name):
    task = small_task(name)
    _, y = task.splits["val"]
    pred = perfect_prediction(task, y).requires_grad_()
    assert task.metric(pred, y) == 1.0
    loss = task.loss(pred, y)
    assert loss.dim() == 0 and loss.item() < 1e-3
    loss.backward()  # the loss is differentiable with respect to the prediction


def test_mis_shaped_prediction_is_rejected():
    task = small_task("adding")
    _, y = task.splits["val"]
    with pytest.raises(ValueError, match="shape"):
        task.loss(y[:, 0], y)  # (N,) would silently broadcast against (N, 1)


# ---------------------------------------------------------------- validation errors


@pytest.mark.parametrize(
    "cfg, expected",
    [
        ({"name": "adding", "seq_len": -5}, ["task.seq_len=-5", "integer >= 2"]),
        ({"name": "adding", "seq_len": "abc"}, ["task.seq_len='abc'", "integer >= 2"]),
        ({"name": "adding", "seq_len": 1.5}, ["task.seq_len=1.5", "integer >= 2"]),
        ({"name": "adding", "train_size": 0}, ["task.train_size=0", "integer >= 1"]),
        ({"name": "adding", "val_size": None}, ["task.val_size=null", "integer >= 1"]),
        ({"name": "adding", "data_seed": -1}, ["task.data_seed=-1", "integer >= 0 or null"]),
        ({"name": "copy", "seq_len": 0}, ["task.seq_len=0", "integer >= 1"]),
        ({"name": "copy", "test_size": True}, ["task.test_size=True", "integer >= 1"]),
        ({"name": "adding", "foo": 1}, ["task.foo", "valid keys", "seq_len", "data_seed"]),
        ({"name": "mnist1d", "seq_len": 40}, ["task.seq_len", "valid keys", "val_size"]),
        ({"name": "mnist1d", "val_size": 4000}, ["task.val_size=4000", "1 to 3999"]),
        ({"name": "mnist1d", "train_size": 3600}, ["task.train_size=3600", "1 to 3500"]),
        ({"name": "mnist1d", "test_size": 1001}, ["task.test_size=1001", "1 to 1000"]),
        ({"name": "nope"}, ["'nope'", "adding, copy, csv, digits, mnist1d, npz, ucr"]),
        ({"name": ["adding"]}, ["['adding']", "adding, copy, csv, digits, mnist1d, npz, ucr"]),
        ({"seq_len": 3}, ["task.name", "adding, copy, csv, digits, mnist1d, npz, ucr"]),
    ],
)
def test_bad_config_gives_one_line_error_naming_value_and_choices(cfg, expected):
    with pytest.raises(TaskConfigError) as caught:
        build_task(cfg, seed=0)
    message = str(caught.value)
    assert isinstance(caught.value, ValueError)
    assert "\n" not in message
    for fragment in expected:
        assert fragment in message, f"{fragment!r} not in {message!r}"


def test_negative_run_seed_without_data_seed_is_rejected():
    with pytest.raises(TaskConfigError, match=r"seed=-1 .*integer >= 0"):
        build_task({"name": "adding", **SMALL}, seed=-1)


# ---------------------------------------------------------------- registry and YAML


def test_registry_lists_every_task_with_a_one_line_description():
    assert list(TASKS) == ["adding", "copy", "csv", "digits", "mnist1d", "npz", "ucr"]
    for entry in TASKS.values():
        assert entry.description and "\n" not in entry.description


def test_every_task_has_a_yaml_and_every_yaml_a_task():
    assert sorted(path.stem for path in CONF_TASK_DIR.glob("*.yaml")) == sorted(TASKS)


@pytest.mark.parametrize("name", list(SCHEMAS))
def test_yaml_loads_builds_and_matches_schema_defaults(name):
    path = CONF_TASK_DIR / f"{name}.yaml"
    cfg = compose([f"task={name}"]).task  # through Hydra: a task file may extend the shared ones in base/
    assert cfg.name == name
    schema_defaults = dataclasses.asdict(SCHEMAS[name]())
    assert OmegaConf.to_container(cfg) == schema_defaults
    # Every default carries a reason beside it, in the task's file and in the files it extends.
    for file in (path, *sorted(CONF_TASK_DIR.glob("base/*.yaml"))):
        for line in file.read_text().splitlines():
            if re.match(r"^\w+:", line):
                assert "#" in line, f"{file.name}: no reason given for {line!r}"
    # Hydra hands over a read-only struct config; building must not need to modify it.
    OmegaConf.set_struct(cfg, True)
    OmegaConf.set_readonly(cfg, True)
    if name in NEEDS_A_FILE:
        with pytest.raises(TaskConfigError, match="task.path is missing"):
            build_task(cfg, seed=0)
        return
    if name == "ucr":
        pytest.importorskip("sktime")
    task = build_task(cfg, seed=0)
    assert task.name == name
    assert task.config["data_seed"] == 0
