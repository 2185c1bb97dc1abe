"""The experiment's configuration: its schema, how it is composed, and how it is checked.

The schema (dataclasses below) is registered with Hydra as `base_config`, so types are checked while Hydra
composes; `validate` then checks choices and ranges. Every problem becomes a `ConfigError` whose message is
one line naming the bad value and what would be valid: the CLI prints it and exits with code 2.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import importlib.util
import itertools
import math
import os
from pathlib import Path
from typing import Any, Iterator

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf, open_dict

from actstudy.schema import Config



def config_dir() -> str:
    """Where the Hydra config groups are: conf/ beside the package in a source checkout (editable
    install), else the copy a regular install ships inside the package as `actstudy.conf` (pyproject.toml).
    Reading the checkout's own conf/ first keeps a second checkout from using another one's configs."""
    beside = Path(__file__).resolve().parent.parent / "conf"
    if (beside / f"{PRIMARY_CONFIG}.yaml").is_file():
        return str(beside)
    return str(importlib.resources.files("actstudy.conf"))

PRIMARY_CONFIG = "config"  # conf/config.yaml, the config every run starts from


# logger=NAME → None, or (a module it needs, the extra of this package that installs it)
LOGGERS = {"none": None, "tensorboard": ("tensorboard", "tensorboard"), "mlflow": ("mlflow", "mlflow")}


class ConfigError(ValueError):
    """A bad configuration value; its message is one line for the user."""


def register_configs() -> None:
    ConfigStore.instance().store(name="base_config", node=Config)


# ---------------------------------------------------------------------------------------------- checks


def _choice(key: str, value: Any, choices) -> None:
    if value not in choices:
        raise ConfigError(f"{key}={value!r} is not valid; choose one of: {', '.join(choices)}")


def _at_least(key: str, value: Any, low: float, what: str = "") -> None:
    if value is None or value < low:
        raise ConfigError(f"{key}={value} is out of range: must be {what or '>= ' + str(low)}")


def validate(cfg: DictConfig, here: bool = True) -> None:
    """Check choices and ranges that types alone do not catch (the task checks its own keys).

    here=False (a launcher that runs the jobs on other machines, e.g. Slurm) skips what depends on this
    machine: whether CUDA exists and how many cores there are.
    """
    from actstudy.activations import ACTIVATIONS
    from actstudy.cells import CELLS, IMPLS, INITS, VARIANTS
    from actstudy.optimizers import OPTIMIZERS
    from actstudy.runtime import DEVICES
    from actstudy.schema import OPTIM_DEFAULTS

    m = cfg.model
    _choice("model.cell", m.cell, list(CELLS))
    for slot in ("gate", "candidate", "output"):
        _choice(f"model.activation.{slot}", m.activation[slot], list(ACTIVATIONS))
    _at_least("model.hidden_size", m.hidden_size, 1)
    _at_least("model.num_layers", m.num_layers, 1)
    if not 0.0 <= m.dropout < 1.0:
        raise ConfigError(f"model.dropout={m.dropout} is out of range: must be in [0, 1)")
    _choice("model.init", m.init, INITS)
    _choice("model.impl", m.impl, IMPLS)
    if m.variant is not None:
        _choice("model.variant", m.variant, list(VARIANTS))
    _choice("optim.name", cfg.optim.name, list(OPTIMIZERS))
    if not cfg.optim.lr > 0:
        raise ConfigError(f"optim.lr={cfg.optim.lr} is out of range: must be > 0")
    _at_least("optim.weight_decay", cfg.optim.weight_decay, 0)
    _at_least("optim.momentum", cfg.optim.momentum, 0)
    if not 0.0 <= cfg.optim.alpha < 1.0:
        raise ConfigError(f"optim.alpha={cfg.optim.alpha} is out of range: must be in [0, 1)")
    _at_least("optim.square_avg_init", cfg.optim.square_avg_init, 0)
    if cfg.optim.name != "rmsprop":
        for key in ("alpha", "square_avg_init"):
            unused = getattr(OPTIM_DEFAULTS, key)
            if cfg.optim[key] != unused:
                raise ConfigError(f"optim.{key}={cfg.optim[key]} is RMSProp's; optim.name={cfg.optim.name} "
                                  f"does not use it: choose optim=rmsprop or leave it at {unused}")
    t = cfg.train
    _at_least("train.epochs", t.epochs, 1)
    _at_least("train.batch_size", t.batch_size, 1)
    _at_least("train.probe_every", t.probe_every, 1)
    _at_least("train.probe_size", t.probe_size, 1)
    _at_least("train.eval_batch_size", t.eval_batch_size, 1)
    for key in ("eval_every", "max_updates"):
        if t[key] is not None:
            _at_least(f"train.{key}", t[key], 1, ">= 1, or null")
    if t.solve_at is not None and not math.isfinite(t.solve_at):
        raise ConfigError(f"train.solve_at={t.solve_at} is not valid: must be a finite metric value, or null")
    for key in ("clip_grad", "clip_value"):
        if t[key] is not None and not t[key] > 0:
            raise ConfigError(f"train.{key}={t[key]} is out of range: must be > 0, or null for no clipping")
    _choice("device", cfg.device, DEVICES)
    if cfg.device == "cuda" and here:
        from actstudy.runtime import device_problem

        problem = device_problem(cfg.device)
        if problem:
            raise ConfigError(problem)
    if cfg.threads is not None:
        from actstudy.runtime import usable_cores

        cores = usable_cores() if here else cfg.threads  # refused, not clamped: a run records its threads
        if not 1 <= cfg.threads <= cores:
            raise ConfigError(f"threads={cfg.threads} is out of range: this process may use {cores} cores; "
                              f"choose 1 to {cores}, or threads=null for one (or OMP_NUM_THREADS)")
    if not 0 <= cfg.seed <= MAX_SEED:
        raise ConfigError(f"seed={cfg.seed} is out of range: must be from 0 to 2**64-1 (torch's seed range)")
    _choice("logger", cfg.logger, list(LOGGERS))
    extra = LOGGERS[cfg.logger]
    if extra and importlib.util.find_spec(extra[0]) is None:
        raise ConfigError(f"logger={cfg.logger} needs an optional extra that is not installed; "
                          f"install it with: pip install 'actstudy[{extra[1]}]'")
    if cfg.continue_from is not None:
        _check_parent(cfg.continue_from)


def _check_parent(path: str) -> None:
    from actstudy import rundir

    summary = rundir.read_summary(Path(path))
    if not summary or summary.get("status") != rundir.COMPLETED or not (Path(path) / rundir.LAST).is_file():
        raise ConfigError(f"continue_from={path} is not a completed run directory with its {rundir.LAST}; "
                          "give one, or use `actstudy run --continue`, which finds it")


MAX_SEED = 2**64 - 1  # torch.manual_seed and torch.Generator.manual_seed take at most an unsigned 64-bit seed


def resolved(cfg: DictConfig) -> dict:
    """The run's config with every interpolation resolved; one that cannot resolve is a ConfigError."""
    try:
        if isinstance(cfg, DictConfig):  # resolved where the schema's types apply, so ${...} is type-checked
            for key in cfg:
                if key != "hydra":
                    node = cfg[key]
                    if OmegaConf.is_config(node):
                        OmegaConf.to_container(node, resolve=True)
        return plain(cfg)
    except Exception as err:  # OmegaConf raises several types; the user needs one line naming the key
        raise ConfigError(one_line(err)) from None


def check_known_keys(tree: dict, schema: Any = Config, where: str = "") -> None:
    """Refuse a key the schema does not have (Hydra lets `+model.extra=1` add one to any config); the
    task's keys are checked by the task module."""
    import dataclasses

    fields = {f.name: f for f in dataclasses.fields(schema)}
    for key, value in tree.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in fields:
            raise ConfigError(f"{path} is not a config key; keys{' of ' + where if where else ''}: "
                              f"{', '.join(fields)}{did_you_mean(path)}")
        inner = fields[key].default_factory if fields[key].default_factory is not dataclasses.MISSING else None
        if inner is not None and dataclasses.is_dataclass(inner) and isinstance(value, dict):
            check_known_keys(value, inner, path)


def check_finite(tree: Any, where: str = "") -> None:
    """Refuse NaN and infinity anywhere in a resolved config: no key means either (train.clip_grad=null
    is "no clipping"), and a non-finite learning rate would only be recorded later as a diverged run."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            check_finite(value, f"{where}.{key}" if where else str(key))
    elif isinstance(tree, (list, tuple)):
        for index, value in enumerate(tree):
            check_finite(value, f"{where}[{index}]")
    elif isinstance(tree, float) and not math.isfinite(tree):
        raise ConfigError(f"{where}={tree} is not a finite number; give a finite value")
    elif isinstance(tree, int) and not isinstance(tree, bool) and abs(tree) > MAX_INT and where != "seed":
        raise ConfigError(f"{where}={tree} is too large: torch takes integers up to 2**63-1")


MAX_INT = 2**63 - 1  # torch's int64: a size or count beyond it overflows where torch reads it


def check_buildable(cfg: DictConfig, here: bool = True) -> None:
    """Validate, then let the task and the model check their own keys without generating any data;
    `here`: the run will train on this machine (its memory, cores and devices count)."""
    from actstudy.cells import build_stack
    from actstudy.model import check_readout
    from actstudy.tasks import check_task_config
    from actstudy.tasks._base import fresh_data

    import torch

    tree = resolved(cfg)
    check_known_keys(tree)
    check_finite(tree)
    validate(cfg, here)
    try:
        task = check_task_config(cfg.task)
        check_readout(cfg.model.readout, getattr(task, "per_step", False), f"task={cfg.task.name}")
        if fresh_data(task) and cfg.train.max_updates is None:
            raise ConfigError("task.train_size=null (fresh data, no epochs) needs a budget: set train.max_updates, "
                              "e.g. train.max_updates=20000")
        if here:  # before building even on the meta device, whose size arithmetic overflows on huge models
            check_memory(cfg, _least_parameters(cfg.model), getattr(task, "seq_len", None))
        with torch.device("meta"):  # shapes only: no memory is allocated, however large the model
            stack = build_stack(cfg.model, input_size=1)
    except ConfigError:
        raise
    except ValueError as err:
        raise ConfigError(str(err).splitlines()[0]) from None
    if here:
        check_memory(cfg, sum(p.numel() for p in stack.parameters()), getattr(task, "seq_len", None))


def _least_parameters(m: DictConfig) -> int:
    """A lower bound on a stack's parameters: every layer's recurrent weights (gates x H x H per direction)."""
    gates = {"lstm": 4, "gru": 3}.get(m.cell, 1)
    return gates * m.hidden_size * m.hidden_size * m.num_layers * (2 if m.bidirectional else 1)


def check_memory(cfg: DictConfig, stack_params: int, seq_len: Any) -> None:
    """Refuse a run whose weights and training activations cannot fit in the memory free here.

    A lower bound, so that nothing that could fit is refused: float32 weights held four times (weights,
    gradients, two optimizer moments) plus a best-epoch copy, and per step of backpropagation through
    time each layer keeps its gates and states for the batch. Data and the readout are left out.
    """
    from actstudy.runtime import available_memory, pick_device

    try:
        on_cpu = pick_device(cfg.device).type == "cpu"
    except ValueError:
        return  # validate has said why already
    free = available_memory()
    if not on_cpu or free is None:
        return
    m = cfg.model
    gates = {"lstm": 4, "gru": 3}.get(m.cell, 1)
    steps = seq_len if isinstance(seq_len, int) and seq_len > 0 else 1
    directions = 2 if m.bidirectional else 1
    per_step = cfg.train.batch_size * m.num_layers * directions * (gates + 2) * m.hidden_size
    sizes = [cfg.task.get(f"{split}_size") for split in ("train", "val", "test")]
    sequences = sum(n for n in sizes if isinstance(n, int) and n > 0)  # generated tasks: at least one float a step
    need = 4 * (5 * stack_params + steps * per_step + sequences * steps)  # float32 bytes
    if need > free:
        raise ConfigError(f"model.hidden_size={m.hidden_size} with model.num_layers={m.num_layers}, "
                          f"train.batch_size={cfg.train.batch_size} and {sequences or 'the'} sequences needs at "
                          f"least {_gib(need)} of memory; {_gib(free)} is available here: choose a smaller "
                          "model, batch or data set")


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


# ------------------------------------------------------------------------------------ composing configs


def one_line(err: BaseException) -> str:
    """Turn a Hydra / OmegaConf composition error into one line naming the bad value and the choices."""
    from hydra.errors import MissingConfigException
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

    seen = err
    while seen is not None:
        if isinstance(seen, MissingConfigException) and seen.missing_cfg_file and seen.options:
            group, _, name = str(seen.missing_cfg_file).rpartition("/")
            return f"unknown {group or 'config'} {name!r}; choose one of: {', '.join(sorted(seen.options))}"
        if isinstance(seen, OmegaConfBaseException) and getattr(seen, "full_key", None):
            reason = str(seen).splitlines()[0]
            if isinstance(seen, (ConfigAttributeError, ConfigKeyError)):
                return f"{seen.full_key}: {reason}{did_you_mean(seen.full_key)}"
            return f"{seen.full_key}: {reason}"
        seen = seen.__cause__ or seen.__context__
    text = " ".join(str(err).split())
    return text or type(err).__name__


def parse_overrides(overrides: list[str]) -> list:
    """Hydra's parse of each override; one it cannot read is a ConfigError naming it."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    parsed = []
    for override in overrides:
        if override.startswith("-"):
            raise ConfigError(f"unknown option {override!r}; overrides look like key=value "
                              "(see --help for this command's options)")
        try:
            parsed.extend(parser.parse_overrides([override]))
        except (HydraException, ValueError) as err:
            reason = " ".join(str(err).split("See https")[0].split())
            raise ConfigError(f"cannot read the override {override!r}: {reason[:160]}; overrides look like "
                              "key=value, and a value with spaces or special characters goes in quotes") from None
    return parsed


def sweep_values(ov) -> list[str]:
    """The values a sweep override takes, as strings; an empty sweep is a ConfigError."""
    if ov.is_interval_sweep():
        raise ConfigError(f"{ov.input_line}: interval sweeps need an optimizing sweeper (hydra/sweeper=optuna)")
    try:
        values = list(ov.sweep_string_iterator())
    except Exception as err:  # e.g. range() with a zero step
        raise ConfigError(f"{ov.input_line}: {one_line(err)}") from None
    if not values:
        raise ConfigError(f"{ov.input_line} sweeps over no values; give at least one")
    return values


def valid_keys() -> dict[str, Any]:
    """Every dotted key a run config can set, with its default: the schema's (actstudy/schema.py) and each
    task's (conf/task/*.yaml)."""
    import dataclasses

    import yaml

    keys: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        for f in dataclasses.fields(node):
            value = getattr(node, f.name)
            if dataclasses.is_dataclass(value):
                walk(value, f"{prefix}{f.name}.")
            elif f.name != "task":
                keys[f"{prefix}{f.name}"] = value

    walk(Config(), "")
    for path in sorted(Path(config_dir(), "task").glob("**/*.yaml")):  # base/: keys tasks share
        for key, value in (yaml.safe_load(path.read_text()) or {}).items():
            if key != "defaults":
                keys.setdefault(f"task.{key}", value)
    return keys


def did_you_mean(bad_key: str) -> str:
    """'; did you mean train.epochs?' for a key that is not in the config, or '' when nothing is close.

    Nearest by the whole dotted key (a typo: model.hiden_size) and by its last part alone (the right name
    in the wrong place: epochs, lr)."""
    import difflib

    keys = list(valid_keys())
    leaf = bad_key.rsplit(".", 1)[-1]
    leaves: dict[str, list[str]] = {}
    for key in keys:
        leaves.setdefault(key.rsplit(".", 1)[-1], []).append(key)
    found = [k for k in keys if k.rsplit(".", 1)[-1] == leaf and k != bad_key]
    if len(leaf) >= 4:  # the start of a name: hidden → model.hidden_size
        found += [k for k in keys if k.rsplit(".", 1)[-1].startswith(leaf) and k != bad_key]
    found += difflib.get_close_matches(bad_key, keys, n=3, cutoff=0.8)
    for near in difflib.get_close_matches(leaf, list(leaves), n=2, cutoff=0.75):
        found += leaves[near]
    prefix = bad_key.rsplit(".", 1)[0] + "." if "." in bad_key else ""
    found = sorted(dict.fromkeys(found), key=lambda k: (not k.startswith(prefix), found.index(k)))[:3]
    return f"; did you mean {' or '.join(found)}?" if found else ""


def _refuse_list_option(ov, groups: set[str]) -> None:
    """`model=[lstm,gru]` would make Hydra merge the two options into one config: refuse it and say how
    to sweep. Also a list given for a key that holds one value (`seed=[0,1]`)."""
    value = ov.value() if not ov.is_sweep_override() else None
    if not isinstance(value, list):
        return
    key = ov.get_key_element().lstrip("+~")
    scalar = isinstance(valid_keys().get(key), (bool, int, float, str))  # a null default may take a list
    if key in groups or scalar:
        items = ",".join(str(v) for v in value)
        what = "a group option" if key in groups else "a single value"
        raise ConfigError(f"{ov.input_line}: {key} takes {what}, not a list; use {key}={items} to sweep")


def expand_overrides(overrides: list[str]) -> Iterator[list[str]]:
    """Yield one plain override list per job of a Hydra multirun (comma lists, range(), choice())."""
    parsed = parse_overrides(overrides)
    groups = {d.name for d in Path(config_dir()).iterdir() if d.is_dir()}
    axes = []
    for ov in parsed:
        _refuse_list_option(ov, groups)
        if ov.is_sweep_override():
            key = ov.get_key_element()
            axes.append([f"{key}={v}" for v in sweep_values(ov)])
        else:
            axes.append([ov.input_line])
    for combo in itertools.product(*axes):
        yield list(combo)


@contextlib.contextmanager
def _hydra_session():
    """Hydra's compose API, initialised on this package's configs; any error becomes one ConfigError line."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    register_configs()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
            yield
    except ConfigError:
        raise
    except Exception as err:  # Hydra and OmegaConf raise many types; the user needs one line
        raise ConfigError(one_line(err)) from None
    finally:
        GlobalHydra.instance().clear()


_COMPOSED: dict[tuple, DictConfig] = {}  # overrides -> config with its hydra node, this process


def compose(overrides: list[str], with_hydra: bool = False) -> DictConfig:
    """Compose one run's config with Hydra's compose API, raising ConfigError on any problem.

    Without the hydra node this is `compose_many` of one job. With it, each composition is kept for the
    process (a command asks for the same one several times, and Hydra takes ~0.3 s a time) and handed
    out as a copy.
    """
    import copy

    from hydra import compose as hydra_compose

    if not with_hydra:
        return compose_many([overrides])[0]
    key = tuple(overrides)  # hydra.runtime (cwd, output dir) is Hydra's to fill in when a run starts
    if key not in _COMPOSED:
        with _hydra_session():
            cfg = hydra_compose(PRIMARY_CONFIG, overrides=list(overrides), return_hydra_config=True)
        resolved(cfg)  # an interpolation that cannot resolve is refused now, not when a run reads it
        _remember(_COMPOSED, key, cfg)
    return copy.deepcopy(_COMPOSED[key])


def hydra_settings(overrides: list[str]) -> DictConfig:
    """The `hydra` node the overrides give (launcher, sweeper params, directories), composed from the
    group choices and `hydra.*` overrides only: the other values cannot change it."""
    choices, _, hydra_values = _split(parse_overrides(overrides))
    return compose([*choices, *hydra_values], with_hydra=True).hydra


def _remember(cache: dict, key: tuple, value) -> None:
    if len(cache) > 256:
        cache.clear()
    cache[key] = value


def _split(parsed: list) -> tuple[tuple[str, ...], list, list[str]]:
    """Overrides as (config group choices, value overrides, `hydra.*` value overrides)."""
    groups = {d.name for d in Path(config_dir()).iterdir() if d.is_dir()}
    key_of = [ov.get_key_element().lstrip("+~") for ov in parsed]
    chosen = tuple(ov.input_line for ov, key in zip(parsed, key_of)
                   if key.split("@")[0] in groups or key.startswith("hydra/"))
    values = [ov for ov, key in zip(parsed, key_of) if ov.input_line not in chosen and not key.startswith("hydra.")]
    hydra_values = [ov.input_line for ov, key in zip(parsed, key_of) if key.startswith("hydra.")]
    return chosen, values, hydra_values


def plain(cfg: DictConfig | dict) -> dict:
    """The run's resolved config as plain containers, without Hydra's own node.

    The `hydra` node is dropped before resolving: it may refer to this very run's directory name.
    """
    if not isinstance(cfg, DictConfig):
        return {k: v for k, v in cfg.items() if k != "hydra"}
    tree = OmegaConf.to_container(cfg, resolve=False)
    tree.pop("hydra", None)
    return OmegaConf.to_container(OmegaConf.create(tree), resolve=True)


_BASES: dict[tuple, DictConfig] = {}  # group choices -> composed config without values, this process


def compose_many(jobs: list[list[str]]) -> list[DictConfig]:
    """`compose` for every job of a sweep, fast: a 216-run study is checked in seconds, not minutes.

    Hydra composes the defaults list (the config groups) at ~0.2 s a time; most jobs of a sweep share
    their group choices and differ only in values. So each distinct set of group overrides is composed
    once (and kept for the process), and each job's value overrides are applied to a copy of it with
    Hydra's own override step, the one a full composition ends with. `hydra.*` values are left out: no
    run config contains them.
    """
    import copy

    from hydra import compose as hydra_compose
    from hydra._internal.config_loader_impl import ConfigLoaderImpl

    composed = []
    with _hydra_session():
        for job in jobs:
            chosen, values, _ = _split(parse_overrides(job))
            key = chosen  # without the hydra node, nothing in it depends on the working directory
            if key not in _BASES:
                _remember(_BASES, key, hydra_compose(PRIMARY_CONFIG, overrides=list(chosen)))
            cfg = copy.deepcopy(_BASES[key])
            ConfigLoaderImpl._apply_overrides_to_config(values, cfg)
            composed.append(cfg)
    for cfg in composed:
        resolved(cfg)
    return composed
