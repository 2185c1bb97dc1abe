"""Task registry: `build_task(task_cfg, seed)` picks a task module by `task_cfg.name`.

Every public module in this package is a task: it defines `DESCRIPTION` (one
line, shown by `actstudy list`), `check(task_cfg)` (validation only) and
`build(task_cfg, seed) -> Task`, and its
file name is the task's name. Adding a task therefore means adding one module
here plus its YAML file in conf/task/ (which may extend a shared file in
conf/task/base/, a folder Hydra does not offer as a task); nothing in this file changes.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType
from typing import Any, Mapping, NamedTuple

from omegaconf import DictConfig

from actstudy.tasks._base import SPLITS, Task, TaskConfigError, short_repr


class TaskEntry(NamedTuple):
    module: ModuleType
    description: str


def _discover_tasks() -> dict[str, TaskEntry]:
    entries = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda info: info.name):
        if info.name.startswith("_"):  # private helpers such as _base are not tasks
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        entries[info.name] = TaskEntry(module=module, description=module.DESCRIPTION)
    return entries


TASKS: dict[str, TaskEntry] = _discover_tasks()


def _task_module(task_cfg: DictConfig | Mapping[str, Any]) -> ModuleType:
    choices = ", ".join(TASKS)
    if not isinstance(task_cfg, Mapping):  # DictConfig is a Mapping too
        raise TaskConfigError(f"task config must be a mapping with a 'name' key; names: {choices}")
    name = task_cfg.get("name")
    if name is None:
        raise TaskConfigError(f"task.name is missing; choose one of: {choices}")
    if not isinstance(name, str) or name not in TASKS:
        # Task names are lower case; a capitalised one is most likely a UCR data set given as task.name.
        hint = f" (a UCR data set is chosen with task=ucr task.dataset={name})" if str(name)[:1].isupper() else ""
        raise TaskConfigError(f"unknown task {short_repr(name)}; choose one of: {choices}{hint}")
    return TASKS[name].module


def check_task_config(task_cfg: DictConfig | Mapping[str, Any]) -> Any:
    """Validate `task_cfg` against its task's schema without generating data; return the typed config.

    Raises TaskConfigError (a ValueError) with a one-line message for an unknown task or any invalid key.
    """
    return _task_module(task_cfg).check(task_cfg)


def build_task(task_cfg: DictConfig | Mapping[str, Any], seed: int) -> Task:
    """Validate `task_cfg` and generate the task's data.

    `seed` is the run's seed; the data is generated from it unless `task_cfg.data_seed` is set.
    """
    return _task_module(task_cfg).build(task_cfg, seed)


__all__ = ["SPLITS", "TASKS", "Task", "TaskConfigError", "TaskEntry", "build_task", "check_task_config"]
