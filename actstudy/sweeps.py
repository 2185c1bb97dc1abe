"""Sweep bookkeeping: which run a configuration is, where it lives, whether it is already done.

A run is identified by its resolved configuration, not by its job number: `run_id` hashes every key that
can change what the run computes. Runs live in directories named after that hash (`run_dir_name`), so the
same command — or a larger one that adds a seed or an activation — finds the runs it already made:
finished runs are skipped, interrupted ones resume from their checkpoint (train.py), the rest start.
"""

from __future__ import annotations

import hashlib
import importlib.util
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from omegaconf import DictConfig, OmegaConf

from actstudy import rundir
from actstudy.config import ConfigError, plain
from actstudy.cost import Calibration, describe, estimate_seconds, impl_of
from actstudy.rundir import FINISHED, NOT_IDENTITY_KEYS

RESOLVER = "actstudy_run_dir"

# Launcher and sweeper plugins, by the name a `hydra/launcher=` or `hydra/sweeper=` override uses:
# (the module that provides it, the extra of this package that installs it).
PLUGINS = {
    "hydra/launcher": {
        "joblib": ("hydra_plugins.hydra_joblib_launcher", "cluster"),
        "submitit_local": ("hydra_plugins.hydra_submitit_launcher", "cluster"),
        "submitit_slurm": ("hydra_plugins.hydra_submitit_launcher", "cluster"),
        "ray": ("hydra_plugins.hydra_ray_launcher", "ray"),
    },
    "hydra/sweeper": {"optuna": ("hydra_plugins.hydra_optuna_sweeper", "optuna")},
}


# ------------------------------------------------------------------------------------------ identity


def run_id(cfg: DictConfig | dict) -> str:
    """rundir.run_id of a composed config."""
    return rundir.run_id(plain(cfg))


def run_dir_name(cfg: DictConfig | dict) -> str:
    """rundir.run_dir_name of a composed config."""
    return rundir.run_dir_name(plain(cfg))


def _resolve_run_dir_name(*, _root_: DictConfig) -> str:
    return run_dir_name(_root_)


def register_resolver() -> None:
    """`${actstudy_run_dir:}` in conf/config.yaml names each sweep job's directory after its run id."""
    if not OmegaConf.has_resolver(RESOLVER):
        OmegaConf.register_new_resolver(RESOLVER, _resolve_run_dir_name)


register_resolver()  # at import: parallel launchers' workers import this module with the trainer


# ------------------------------------------------------------------------------------------ planning


def sweep_arguments(overrides: list[str], sweeper_params: dict) -> list[list[str]]:
    """One override list per job, combining a study's `hydra.sweeper.params` with the command line as
    Hydra's basic sweeper does: study axes first, a key given on the command line replaces the study's."""
    from actstudy.config import parse_overrides, sweep_values

    lines = [f"{k}={v}" for k, v in sweeper_params.items()] + list(overrides)
    axes: dict[str, list[str]] = {}
    for ov in parse_overrides(lines):
        key = ov.get_key_element()
        if ov.is_sweep_override():
            axes[key] = [f"{key}={v}" for v in sweep_values(ov)]
        else:
            axes[key] = [ov.input_line]
    import itertools

    return [list(combo) for combo in itertools.product(*axes.values())]


def missing_plugin(overrides: list[str]) -> Optional[str]:
    """A one-line message when an override names a launcher or sweeper whose plugin is not installed."""
    for override in overrides:
        group, _, name = override.partition("=")
        plugin = PLUGINS.get(group.lstrip("+"), {}).get(name)
        if plugin and importlib.util.find_spec(plugin[0]) is None:
            return (f"{group}={name} needs a Hydra plugin that is not installed; "
                    f"install it with: pip install 'actstudy[{plugin[1]}]'")
    return None


def default_sweep_dir(overrides: list[str], study: Optional[str], study_axes: tuple[str, ...] = ()) -> str:
    """outputs/sweeps/<study or 'sweep'>-<hash of the command's shape>.

    The shape is the command's fixed overrides and the *keys* it sweeps, not their values: running the
    same command again, or adding a seed or an activation to it, lands in the same directory and so finds
    every run already made. A key the study sweeps counts as swept even when the command fixes it
    (`study=activation_grid seed=0` shares the study's directory). Hydra's own keys (launcher,
    directories) do not change the shape.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    shape = {f"{key}=<swept>" for key in study_axes}
    for ov in OverridesParser.create().parse_overrides(overrides):
        key = ov.get_key_element()
        if key.lstrip("+~").startswith("hydra") or key in NOT_IDENTITY_KEYS:
            continue
        swept = ov.is_sweep_override() or key in study_axes
        shape.add(f"{key}=<swept>" if swept else ov.input_line)
    digest = hashlib.sha256("\n".join(sorted(shape)).encode()).hexdigest()[:8]
    return f"outputs/sweeps/{study or 'sweep'}-{digest}"


@dataclass
class PlannedRun:
    overrides: list[str]
    run_dir: Path
    run_id: str
    state: str  # as run_state gives it, before the sweep starts
    estimate: float = 0.0  # cost.estimate_seconds: the run's wall time by the built-in constants


@dataclass
class SweepPlan:
    sweep_dir: Path
    runs: list[PlannedRun] = field(default_factory=list)

    def count(self, *states: str) -> int:
        return sum(r.state in states for r in self.runs)

    @property
    def to_train(self) -> list[PlannedRun]:
        return [r for r in self.runs if r.state not in FINISHED]

    def calibration(self) -> Calibration:
        """Measured against estimated seconds of this sweep's runs that finished before."""
        finished = [(r.estimate, (rundir.read_summary(r.run_dir) or {}).get("wall_seconds"))
                    for r in self.runs if r.state in FINISHED]
        return Calibration(finished)

    def estimated_seconds(self) -> float:
        """The wall time of the runs left to train, if trained one after another."""
        return self.calibration().scale * sum(r.estimate for r in self.to_train)


def plan(jobs: list[tuple[list[str], DictConfig]], sweep_dir: Path) -> SweepPlan:
    """Where each job's run lives and what state it is in now."""
    result = SweepPlan(sweep_dir)
    seen: set[str] = set()
    for overrides, cfg in jobs:
        name = run_dir_name(cfg)
        if name in seen:  # two spellings of one configuration: Hydra would train it twice into one place
            continue
        seen.add(name)
        rid = run_id(cfg)
        run_dir = sweep_dir / name
        estimate = estimate_seconds(plain(cfg), impl_of(cfg.model))
        result.runs.append(PlannedRun(overrides, run_dir, rid, rundir.run_state(run_dir, rid), estimate))
    return result


# ------------------------------------------------------------------------------------------ watching


class SweepWatcher:
    """Prints an overall progress line (runs done / total, ETA) whenever another run of the sweep ends.

    It reads the runs' summary.json files, so it sees runs finish whatever launcher trains them. The ETA is
    the estimated cost of the runs left (cost.estimate_seconds: bigger, longer configurations cost more),
    scaled by the wall time per estimated second the sweep has shown so far — which also accounts for a
    parallel launcher training several runs at once.
    """

    def __init__(self, sweep_plan: SweepPlan, emit: Callable[[str], None], every: float = 1.0):
        self.plan, self.emit, self.every = sweep_plan, emit, every
        self.pending = {r.run_id: r.run_dir for r in sweep_plan.to_train}
        self.estimates = {r.run_id: r.estimate for r in sweep_plan.to_train}
        self.prior = sweep_plan.calibration().scale
        self.ended_estimate = 0.0
        self.total = len(sweep_plan.runs)
        self.done = self.total - len(self.pending)
        self.ended = 0
        self.started = time.time()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> "SweepWatcher":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.poll()

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            self.poll()

    def poll(self) -> None:
        ended = [rid for rid, d in self.pending.items()
                 if rundir.run_outcome(d, rid) not in (None, rundir.RUNNING)]
        if not ended:
            return
        for rid in ended:
            del self.pending[rid]
            self.ended_estimate += self.estimates[rid]
        self.ended += len(ended)
        self.done += len(ended)
        elapsed = time.time() - self.started
        eta = f"ETA {describe(self.eta(elapsed))}" if self.pending else "all runs ended"
        self.emit(f"sweep progress: {self.done}/{self.total} runs done, {describe(elapsed)} elapsed, {eta}")

    def eta(self, elapsed: float) -> float:
        """Seconds left: the pending runs' estimates at the wall time per estimated second seen so far."""
        scale = elapsed / self.ended_estimate if self.ended_estimate > 0 else self.prior
        return scale * sum(self.estimates[rid] for rid in self.pending)


def outcome_counts(sweep_plan: SweepPlan, known: Optional[dict] = None) -> dict[str, int]:
    """completed / diverged / failed / skipped (finished before this invocation) / unfinished.

    `known`: summaries by run id that this process saw, for runs whose own summary could not be written.
    """
    ended = (rundir.COMPLETED, rundir.DIVERGED, rundir.FAILED)
    counts = {**dict.fromkeys(ended, 0), "skipped": 0, "unfinished": 0}
    for r in sweep_plan.runs:
        if r.state in FINISHED:
            counts["skipped"] += 1
            continue
        status = rundir.run_outcome(r.run_dir, r.run_id)
        if status in (None, rundir.RUNNING) and known and r.run_id in known:
            status = known[r.run_id].get("status")
        counts[status if status in ended else "unfinished"] += 1
    return counts


# ------------------------------------------------------------------------------------------ launchers


def runs_elsewhere(launcher_cfg: Any) -> bool:
    """Whether the launcher trains on other machines (Slurm, Ray on a cluster): then this machine's
    devices, cores and memory say nothing about the jobs', and the pre-flight leaves them unchecked."""
    target = str(launcher_cfg.get("_target_", "")) if launcher_cfg is not None else ""
    return "Slurm" in target or "AWS" in target


def threads_per_job(launcher_cfg: Any, cores: int) -> tuple[Optional[int], Optional[str]]:
    """The torch threads each job of a parallel launcher should use so that jobs × threads ≤ cores,
    and a warning when the launcher itself asks for more parallel jobs than there are cores.

    joblib: cores // n_jobs (n_jobs -1 = one job per core). submitit: the cpus each task is given.
    The sequential launcher returns None: the run's own `threads` (null = 1, or OMP_NUM_THREADS) stands.
    """
    target = str(launcher_cfg.get("_target_", "")) if launcher_cfg is not None else ""
    if "Joblib" in target:
        n_jobs = launcher_cfg.get("n_jobs") or -1
        workers = cores if n_jobs < 0 else n_jobs
        if n_jobs < 0:
            workers = max(1, cores + 1 + n_jobs)  # joblib: -1 all cores, -2 all but one, ...
        warning = None
        if workers > cores:
            warning = (f"hydra.launcher.n_jobs={n_jobs} runs more jobs than the {cores} cores here; "
                       "each gets 1 thread but they will compete for cores")
        return max(1, cores // workers), warning
    if "Submitit" in target or "submitit" in target:
        cpus = launcher_cfg.get("cpus_per_task")
        return (int(cpus) if cpus else 1), None
    if "RayLauncher" in target:  # Ray gives each task num_cpus CPUs, 1 unless hydra.launcher.ray.remote says
        cpus = OmegaConf.select(launcher_cfg, "ray.remote.num_cpus")
        return (max(1, int(cpus)) if cpus else 1), None
    return None, None


def launcher_overrides(launcher_cfg: Any, overrides: list[str]) -> list[str]:
    """Overrides a launcher needs to work at all with this package's pinned plugins.

    hydra-ray-launcher always passes ray.init an object_store_memory size, and Ray refuses any size when
    it joins a running cluster (hydra.launcher.ray.init.address set): a null size lets it join.
    """
    target = str(launcher_cfg.get("_target_", "")) if launcher_cfg is not None else ""
    if "RayLauncher" not in target or not OmegaConf.select(launcher_cfg, "ray.init.address"):
        return []
    if any(o.lstrip("+").startswith("hydra.launcher.ray.init.object_store_memory=") for o in overrides):
        return []
    return ["+hydra.launcher.ray.init.object_store_memory=null"]
