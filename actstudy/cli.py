"""The `actstudy` command: run, sweep, report, list.

`run` and `sweep` check every configuration they mean with Hydra's compose API first (so a typo costs a
second, not a half-finished sweep), then hand the overrides verbatim to a `@hydra.main` function, which
gives users every standard Hydra override, launchers and sweep directories included.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import List, Optional

import typer
from omegaconf import ListConfig
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

from actstudy.config import PRIMARY_CONFIG, ConfigError, check_buildable, compose, config_dir, expand_overrides
from actstudy.config import compose_many, hydra_settings, one_line as config_one_line, plain
from actstudy.rundir import COMPLETED, ERROR, FAILED, LOG, RUNNING

INTERRUPTED = "interrupted: run the same command to resume"
# Click's exception classes, from whichever Click this Typer uses (recent Typers carry their own copy).
_CLICK_ERROR = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")
_NO_ARGS_IS_HELP = getattr(sys.modules[_CLICK_ERROR.__module__], "NoArgsIsHelpError", ())


class OneLineErrors(TyperGroup):
    """Click's usage errors (unknown option, missing argument, unknown command) in one line, exit 2;
    Ctrl-C as one line and exit 130, whatever the command was doing."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except _NO_ARGS_IS_HELP as err:  # bare `actstudy`: the help is the answer
            err.show()
            code = err.exit_code
        except _CLICK_ERROR as err:
            where = f"{err.ctx.command_path}: " if getattr(err, "ctx", None) else ""
            text = " ".join(err.format_message().split()).rstrip(".")
            if getattr(err, "ctx", None) and isinstance(err.ctx.command, TyperGroup) and "command" in text:
                text += f" (commands: {', '.join(err.ctx.command.list_commands(err.ctx))})"
            err_console.print(f"[bold red]error:[/] {_escape(where + text)}; see --help", highlight=False,
                              soft_wrap=True)
            code = err.exit_code
        except typer.Abort:  # Ctrl-C or end of input outside a command
            err_console.print(INTERRUPTED, highlight=False, soft_wrap=True)
            code = 130
        code = code if isinstance(code, int) else 0
        if standalone_mode:
            sys.exit(code)
        return code

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:  # what was written is consistent (atomic files, checkpoints): say how to go on
            err_console.print(INTERRUPTED, highlight=False, soft_wrap=True)
            raise typer.Exit(130) from None


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


app = typer.Typer(
    cls=OneLineErrors,
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode="rich",
    help="Activation-function studies on recurrent networks: train, sweep and report.",
)
console = Console()
err_console = Console(stderr=True)

_results: list[dict] = []  # summaries of the runs trained in this process (sequential launcher)

OVERRIDES_HELP = "Hydra overrides, e.g. model=gru model.activation.candidate=relu task.seq_len=100 seed=1"


def fail(message: str) -> None:
    """Bad input: one line, exit code 2, no traceback."""
    err_console.print(f"[bold red]error:[/] {_escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def check_output_dir(key: str, value: Optional[str], writable: bool = True) -> None:
    """A directory to write into must be a directory, or makeable: not empty, not a file, not below one,
    and (`writable`, for a command that will write) on a filesystem that lets us write."""
    if value is None or not str(value).strip():
        fail(f"{key} is empty; give a directory to write into")
    path = Path(value)
    if path.exists() and not path.is_dir():
        fail(f"{key}={value} is a file, not a directory; give a directory")
    for above in [path.absolute(), *path.absolute().parents]:
        if above.exists():
            if not above.is_dir():
                fail(f"{key}={value} cannot be made: {above} is a file")
            if writable and not os.access(above, os.W_OK | os.X_OK):  # a read-only filesystem says no even to root
                fail(f"{key}={value}: {above} is not writable; give a directory you can write to")
            break


def _dir_value(overrides: list[str], key: str) -> Optional[str]:
    """The value the last `key=...` override gives, unquoted as Hydra reads it; None when absent."""
    from actstudy.config import parse_overrides

    try:
        found = [ov for ov in parse_overrides(overrides) if ov.get_key_element() == key]
    except ConfigError as err:
        fail(str(err))
    if not found:
        return None
    value = found[-1].value()
    return "" if value is None else str(value)


# ------------------------------------------------------------------------------------------ hydra


def _hydra_main():
    import hydra
    from hydra.core.hydra_config import HydraConfig

    from actstudy.train import run_experiment

    @hydra.main(version_base="1.3", config_path=config_dir(), config_name=PRIMARY_CONFIG)
    def main(cfg) -> float:
        run_dir = Path(HydraConfig.get().runtime.output_dir)
        summary = run_experiment(cfg, run_dir)
        _results.append(summary)
        # An optimizing sweeper (hydra/sweeper=optuna) minimises this: the validation loss of the best
        # epoch, never a test number; a failed or diverged run is the worst possible trial.
        best = summary.get("best_val_loss") if summary.get("status") == COMPLETED else None
        return float("inf") if best is None else float(best)

    return main


def _launch(overrides: list[str], multirun: bool) -> None:
    import logging

    from hydra._internal.core_plugins import basic_launcher

    from actstudy.config import register_configs
    from actstudy.sweeps import register_resolver

    register_configs()
    register_resolver()
    argv, hydra_run_job, log_errors = sys.argv, basic_launcher.run_job, logging.raiseExceptions
    sys.argv = ["actstudy", *overrides, *(["--multirun"] if multirun else [])]
    basic_launcher.run_job = _job_that_fails_alone(hydra_run_job)
    logging.raiseExceptions = False  # a log line that cannot be written (full disk) is dropped, not a traceback
    try:
        _hydra_main()()
    finally:
        sys.argv, basic_launcher.run_job, logging.raiseExceptions = argv, hydra_run_job, log_errors


def _job_that_fails_alone(run_job):
    """Hydra's sequential launcher stops the whole sweep when setting up one job raises (it writes the
    job's .hydra/ files and opens its log before our code runs): a full disk or a read-only run directory
    would end the sweep there. Such a job is recorded as a failed run instead and the sweep goes on."""

    def run_job_or_record_failure(**kwargs):
        from hydra.core.utils import JobReturn, JobStatus
        from omegaconf import OmegaConf

        from actstudy import rundir
        from actstudy.sweeps import run_id

        try:
            return run_job(**kwargs)
        except OSError as err:
            config = kwargs["config"]
            where = Path(str(OmegaConf.select(config, kwargs["job_dir_key"])))
            if kwargs.get("job_subdir_key"):
                where = where / str(OmegaConf.select(config, kwargs["job_subdir_key"]))
            summary = {"status": FAILED, "run_id": run_id(config), "run_dir": str(where),
                       "error": " ".join(f"{type(err).__name__}: {err}".split())}
            if where.is_dir() and not rundir.is_locked(where):
                rundir.remove_temporary_files(where)
                rundir.write_summary_anyhow(where, summary)
            _results.append(summary)
            done = JobReturn(cfg=config, overrides=list(config.hydra.overrides.task))
            done.status, done.return_value = JobStatus.COMPLETED, float("inf")  # a failed trial, as in main()
            return done

    return run_job_or_record_failure


def _preflight(overrides: list[str], quiet: bool, dir_key: str) -> tuple[list[list[str]], list[str]]:
    """Compose and check every run the overrides mean; pin the output directory so we know where it is."""
    try:
        jobs = list(expand_overrides(overrides))
        for job in jobs:
            check_buildable(compose(job))
        if not any(o.startswith(f"{dir_key}=") for o in overrides):
            hydra_cfg = compose(jobs[0], with_hydra=True).hydra
            where = hydra_cfg.run.dir if dir_key == "hydra.run.dir" else hydra_cfg.sweep.dir
            overrides = [*overrides, f"{dir_key}={where}"]
    except ConfigError as err:
        fail(str(err))
    if quiet:
        overrides = [*overrides, "quiet=true"]
    return jobs, overrides


def _expand(overrides: list[str]) -> tuple[list[list[str]], list[str]]:
    """Every job the overrides mean, a study's axes (`hydra.sweeper.params`) included; and those axes."""
    from actstudy.sweeps import missing_plugin, sweep_arguments

    problem = missing_plugin(overrides)
    if problem:
        fail(problem)
    try:
        first = next(expand_overrides(overrides))
        params = hydra_settings(first).sweeper.get("params") or {}
        return sweep_arguments(overrides, dict(params)), list(params)
    except ConfigError as err:
        fail(str(err))


def _key(override: str) -> str:
    """The key an override sets, without Hydra's +/~ prefix: `+remedy=sgd` -> `remedy`."""
    return override.split("=", 1)[0].lstrip("+~")


def _extra_parts(overrides: list[str], study_axes: list[str], cfg) -> list[list[str]]:
    """The override lists of a study's `extra_runs`, each to be swept like the command itself: none when the
    command line names one of the study's axes (it asked for a slice of the grid, not the whole study)."""
    from actstudy.config import parse_overrides

    extras = list(cfg.get("extra_runs") or [])
    if not extras:
        return []
    given = {_key(ov.get_key_element()) for ov in parse_overrides(overrides)}
    narrowed = given & {_key(axis) for axis in study_axes}
    if narrowed:
        console.print(f"the study's {len(extras)} extra run specification(s) are left out: the command narrows "
                      f"its axes ({', '.join(sorted(narrowed))})", highlight=False)
        return []
    parts = []
    for index, extra in enumerate(extras):
        if not isinstance(extra, (list, ListConfig)) or not extra or not all(isinstance(o, str) and "=" in o
                                                                            for o in extra):
            fail(f"extra_runs[{index}]: {extra!r} is not a list of overrides (key=value); "
                 "e.g. [model=gru, optim.lr=3e-1]")
        for override in extra:
            key = _key(override)
            if key.startswith("hydra") or key in ("study", "extra_runs"):
                fail(f"extra_runs[{index}]: {override!r} sets {key}, which an extra run cannot change: it trains "
                     "in the study's own sweep, launcher and directory (give those on the command line)")
        # a key the command line sets keeps the command line's value
        parts.append([o for o in extra if _key(o) not in given])
    return parts


def _plan_sweep(overrides: list[str], quiet: bool, dry_run: bool = False):
    """Compose and check every job, a study's extra runs included; decide the sweep directory and each run's
    directory and state; split the cores between a parallel launcher's jobs. Returns the plan and one
    (overrides for Hydra, names of the run directories they make) per launch: the command's own grid, then
    each extra run specification, all into the same sweep directory."""
    from actstudy.runtime import usable_cores
    from actstudy.sweeps import (default_sweep_dir, launcher_overrides, plan, run_dir_name, runs_elsewhere,
                                 threads_per_job)

    jobs, study_axes = _expand(overrides)
    try:
        hydra_cfg = hydra_settings(jobs[0])  # the launcher's settings
        here = not runs_elsewhere(hydra_cfg.get("launcher"))
        cfgs = compose_many(jobs)
        parts = [([], {run_dir_name(cfg) for cfg in cfgs})]
        for extra in _extra_parts(overrides, study_axes, cfgs[0]):
            extra_jobs, _ = _expand([*overrides, *extra])
            extra_cfgs = compose_many(extra_jobs)
            parts.append((extra, {run_dir_name(cfg) for cfg in extra_cfgs}))
            jobs, cfgs = jobs + extra_jobs, cfgs + extra_cfgs
        for cfg in cfgs:
            check_buildable(cfg, here)
    except ConfigError as err:
        fail(str(err))
    if not any(o.startswith("hydra.sweep.dir=") for o in overrides):
        study = next((o.split("=", 1)[1] for o in overrides if o.lstrip("+").startswith("study=")), None)
        overrides = [*overrides, f"hydra.sweep.dir={default_sweep_dir(overrides, study, tuple(study_axes))}"]
    check_output_dir("hydra.sweep.dir", _dir_value(overrides, "hydra.sweep.dir"), writable=not dry_run)
    threads, warning = threads_per_job(hydra_cfg.get("launcher"), usable_cores())
    if warning:
        err_console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    if threads is not None and not any(o.startswith("threads=") for o in overrides):
        overrides = [*overrides, f"threads={threads}"]  # not part of a run's identity (rundir.NOT_IDENTITY_KEYS)
    overrides = [*overrides, *launcher_overrides(hydra_cfg.get("launcher"), overrides)]
    if quiet:
        overrides = [*overrides, "quiet=true"]
    sweep_plan = plan(list(zip(jobs, cfgs)), Path(_dir_value(overrides, "hydra.sweep.dir")))
    # an extra's key that the final command line sets (threads, quiet, ... added above) keeps that value
    final_keys = {_key(o) for o in overrides}
    return sweep_plan, [([*overrides, *(o for o in extra if _key(o) not in final_keys)], names)
                        for extra, names in parts]


def _fmt(value, digits: int = 4) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


# ------------------------------------------------------------------------------------------ commands


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    epilog="Examples:  actstudy run  ·  actstudy run model=gru model.activation.candidate=relu  ·  "
    "actstudy run task=mnist1d model=gru train.epochs=40 --quiet",
)
def run(
    overrides: Optional[List[str]] = typer.Argument(None, help=OVERRIDES_HELP, show_default=False),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar (same as quiet=true)."),
    force: bool = typer.Option(False, "--force", help="Train again even when this configuration's run is "
                               "finished; the old run directory is kept beside it as <name>.old-<n>."),
    continue_: bool = typer.Option(False, "--continue", help="With a raised train.epochs: train on from the "
                                   "final weights of the completed run with fewer epochs (same folder), as a "
                                   "new run that records its parent."),
) -> None:
    """Train one experiment and write its run directory (config, metrics.csv, grad_by_step.csv, summary.json, model.pt, last.pt).

    With no overrides it trains the default experiment: an LSTM with sigmoid gates and tanh candidate and output on the adding problem (T=50), in under a minute on 2 CPU cores. A run's identity is its resolved config plus a content hash of each data file it reads: the same command again shows the finished result; after the data changes it trains a new run.
    """
    from actstudy.rundir import FINISHED, LOCKED, claim, continuable_parent, read_summary, retire, run_state
    from actstudy.sweeps import run_dir_name, run_id

    overrides = list(overrides or [])
    jobs, _ = _expand(overrides)
    if len(jobs) > 1:
        fail(f"these overrides mean {len(jobs)} runs; use `actstudy sweep` for a sweep: {' '.join(overrides)}")
    if force and continue_:
        fail("--force and --continue exclude each other: --continue trains on from a finished run, --force from scratch")
    try:
        cfg = compose(jobs[0])
    except ConfigError as err:
        fail(str(err))
    given_dir = next((o.split("=", 1)[1] for o in reversed(overrides) if o.startswith("hydra.run.dir=")), None)
    if continue_:
        if any(o.startswith("continue_from=") for o in overrides):
            fail("give either --continue or continue_from=DIR, not both")
        folder = Path(given_dir).parent if given_dir else Path("outputs/runs")
        parent = continuable_parent(plain(cfg), folder)
        if parent is None:
            fail(f"--continue: no completed run of this configuration with fewer than train.epochs="
                 f"{cfg.train.epochs} epochs in {folder}/; raise train.epochs above a finished run's, or drop --continue")
        jobs[0] = [*jobs[0], f"continue_from={parent}"]
        overrides = [*overrides, f"continue_from={parent}"]
        cfg = compose(jobs[0])
    if given_dir is None:
        overrides = [*overrides, f"hydra.run.dir=outputs/runs/{run_dir_name(cfg)}"]
    _, overrides = _preflight(overrides, quiet, "hydra.run.dir")
    check_output_dir("hydra.run.dir", _dir_value(overrides, "hydra.run.dir"))
    run_dir = Path(_dir_value(overrides, "hydra.run.dir"))
    state = run_state(run_dir, run_id(cfg))
    if state == "other":
        fail(f"hydra.run.dir={run_dir} holds a run of another configuration; choose another directory")
    if state == LOCKED:  # not bad input: the same run, being trained now by another process
        err_console.print(f"[bold yellow]locked:[/] another process is training the run in {run_dir}; "
                          "wait for it to end (or stop it), then run the same command", highlight=False,
                          soft_wrap=True)
        raise typer.Exit(1)
    if state in FINISHED and force:
        lock = claim(run_dir)
        if lock is None:
            fail(f"{run_dir} is being trained by another process; --force waits for nothing: try again later")
        with lock:
            kept = retire(run_dir)
        console.print(f"--force: the finished run is kept as {kept}; training it again", highlight=False)
        state = "new"
    if state in FINISHED:  # the same command again: nothing to train, show what it gave
        console.print(f"already done (run id {run_id(cfg)}); not trained again (--force trains it again)",
                      highlight=False)
        summary = read_summary(run_dir)
    else:
        if state == "interrupted":
            console.print(f"resuming the interrupted run in {run_dir}", highlight=False)
        if continue_:
            console.print(f"continuing {parent} to train.epochs={cfg.train.epochs}", highlight=False)
        # said before training, so a second terminal can `tail -f` the log while it trains
        console.print(f"run directory: {run_dir}  (log: {run_dir / LOG})", highlight=False, soft_wrap=True)
        _launch(overrides, multirun=False)
        if not _results:
            raise typer.Exit(1)
        summary = _results[-1]
    if summary["status"] == RUNNING:
        err_console.print(f"[yellow]not trained:[/] {summary.get('error')} ({run_dir})", highlight=False)
        raise typer.Exit(1)
    _print_run(summary)
    if summary["status"] == FAILED:
        raise typer.Exit(1)


def _print_run(s: dict) -> None:
    where = s.get("run_dir", "?")
    if s["status"] == FAILED:
        err_console.print(f"[bold red]failed:[/] {s.get('error')}  (traceback in {where}/{ERROR})")
        return
    name = s["metric_name"]
    colour = "green" if s["status"] == COMPLETED else "yellow"
    console.print(
        f"[bold {colour}]{s['status']}[/]  test loss {_fmt(s['test']['loss'])} (baseline {_fmt(s['baseline']['loss'])})"
        f"  test {name} {_fmt(s['test']['metric'])} (baseline {_fmt(s['baseline']['metric'])})"
        f"  best epoch {s['best_epoch']}  {s['wall_seconds']:.0f}s  \\[{s['impl']} path]\n  run directory: {where}",
        highlight=False, soft_wrap=True,
    )


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    epilog="Examples:  actstudy sweep model=lstm,gru model.activation.candidate=tanh,relu seed=0,1,2  ·  "
    "actstudy sweep study=activation_grid hydra/launcher=joblib --dry-run  ·  then  actstudy report DIR",
)
def sweep(
    overrides: Optional[List[str]] = typer.Argument(None, help=OVERRIDES_HELP + "; comma lists and range() sweep",
                                                    show_default=False),
    quiet: bool = typer.Option(True, "--quiet/--progress", help="Hide (default) or show each run's progress bar."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only print the runs this sweep means, which are already done, and the estimated wall time."),
    force: bool = typer.Option(False, "--force", help="Train finished runs again too; each old run directory "
                               "is kept beside it as <name>.old-<n> (the report skips those)."),
) -> None:
    """Run a Hydra multirun: every combination of the comma-separated values, one run directory each.

    Each run lives in <sweep dir>/<task>-<cell>-s<seed>-<config hash>; the sweep dir defaults to outputs/sweeps/<study or sweep>-<hash of the command's shape>, or hydra.sweep.dir=.... Running a command again skips finished runs, resumes interrupted ones from their checkpoint and starts the rest. study=NAME runs a named sweep (actstudy list) and the runs its file adds beyond the grid (extra_runs), all into one directory. Launchers are Hydra's: hydra/launcher=joblib (cores split between workers), submitit_local, submitit_slurm (pip install 'actstudy\\[cluster]'; threads = cpus_per_task), ray (actstudy\\[ray]; threads = hydra.launcher.ray.remote.num_cpus). A run that fails or diverges is recorded and the sweep goes on; the exit code is 1 when any failed.
    """
    from actstudy.rundir import FINISHED, read_summary
    from actstudy.cost import describe
    from actstudy.sweeps import SweepWatcher, outcome_counts

    overrides = list(overrides or [])
    if any(o.startswith("hydra/sweeper=") and not o.endswith("=basic") for o in overrides):
        return _tune(overrides, quiet, dry_run)
    sweep_plan, launches = _plan_sweep(overrides, quiet, dry_run)
    sweep_dir, runs = sweep_plan.sweep_dir, sweep_plan.runs
    if force and not dry_run:
        _retire_finished(sweep_plan)
    done = sweep_plan.count(*FINISHED)
    resumable = sweep_plan.count("interrupted", FAILED)
    console.print(f"{len(runs)} runs into {sweep_dir}: {done} already done, {resumable} to resume or retry, "
                  f"{len(runs) - done - resumable} new; estimated wall time {describe(sweep_plan.estimated_seconds())}"
                  " (one run at a time)", highlight=False, soft_wrap=True)
    if dry_run:
        shared = set.intersection(*(set(r.overrides) for r in runs)) if runs else set()
        scale = sweep_plan.calibration().scale
        for i, r in enumerate(runs):  # the overrides every job shares are left out: the rest tell them apart
            varying = " ".join(o for o in r.overrides if o not in shared)
            console.print(f"  #{i} ({r.state}) {r.run_dir.name}: {varying}  ~{describe(scale * r.estimate)}",
                          highlight=False, soft_wrap=True)
        return
    _results.clear()  # this sweep's runs only (in-process callers may invoke several commands)
    if sweep_plan.to_train:
        with SweepWatcher(sweep_plan, lambda line: console.print(line, highlight=False)):
            try:
                # the command's own grid, then each of the study's extra runs, into the same directory; a
                # launch whose runs are all finished is left out
                to_train = {r.run_dir.name for r in sweep_plan.to_train}
                for launch, names in launches:
                    if names & to_train:
                        _launch(launch, multirun=True)
            except Exception as err:  # a launcher or scheduler error: say so, then count what got done
                err_console.print(f"[bold red]launcher failed:[/] {config_one_line(err)}", highlight=False)
            except SystemExit:  # Hydra has printed the launcher's error already
                err_console.print("[bold red]launcher failed[/] (its error is above)", highlight=False)
    # what each run's summary says; for a run whose summary could not be written (a full disk), what
    # this process saw happen to it
    known = {s.get("run_id"): s for s in _results}
    counts = outcome_counts(sweep_plan, known)
    table = Table(title=f"sweep {sweep_dir}")
    for status in counts:
        table.add_column(status)
    table.add_row(*(str(n) for n in counts.values()))
    console.print(table)
    for r in runs:
        if r.state in FINISHED:
            continue
        summary = read_summary(r.run_dir) or {}
        if summary.get("run_id") != r.run_id or summary.get("status") == RUNNING:
            summary = known.get(r.run_id, summary)
        if summary.get("status") == FAILED:
            err_console.print(f"[bold red]failed:[/] {r.run_dir.name}: {summary.get('error')}", highlight=False,
                              soft_wrap=True)
        elif summary.get("skipped") and summary.get("status") == RUNNING:
            err_console.print(f"[bold yellow]locked:[/] {r.run_dir.name}: {summary.get('error')}", highlight=False,
                              soft_wrap=True)
    console.print(f"report it with: actstudy report {sweep_dir}", highlight=False)
    if counts[FAILED] or counts["unfinished"]:
        raise typer.Exit(1)


def _retire_finished(sweep_plan) -> None:
    """--force: set each finished run of the plan aside as <name>.old-<n>, so that the sweep trains it anew."""
    from actstudy.rundir import FINISHED, claim, retire

    for r in sweep_plan.runs:
        if r.state in FINISHED:
            lock = claim(r.run_dir)
            if lock is None:
                fail(f"{r.run_dir} is being trained by another process; --force waits for nothing: try again later")
            with lock:
                retire(r.run_dir)
            r.state = "new"
    console.print("--force: finished runs are kept as <name>.old-<n> and trained again", highlight=False)


def _tune(overrides: list[str], quiet: bool, dry_run: bool) -> None:
    """An optimizing sweeper (hydra/sweeper=optuna) picks its trials as it goes: check the fixed part of
    the config, pin the sweep directory, let Hydra run it. Trials are ordinary runs (skipped when a
    trial repeats a finished configuration); the sweeper writes optimization_results.yaml."""
    from actstudy.config import parse_overrides
    from actstudy.rundir import CONFIG, read_summary
    from actstudy.sweeps import default_sweep_dir, missing_plugin

    problem = missing_plugin(overrides)
    if problem:
        fail(problem)
    try:
        parsed = parse_overrides(overrides)
        fixed = [ov.input_line for ov in parsed if not ov.is_sweep_override()]
        check_buildable(compose(fixed))
    except ConfigError as err:
        fail(str(err))
    if not any(o.startswith("hydra.sweep.dir=") for o in overrides):
        study = next((o.split("=", 1)[1] for o in overrides if o.lstrip("+").startswith("study=")), None)
        overrides = [*overrides, f"hydra.sweep.dir={default_sweep_dir(overrides, study)}"]
    check_output_dir("hydra.sweep.dir", _dir_value(overrides, "hydra.sweep.dir"), writable=not dry_run)
    sweep_dir = Path(_dir_value(overrides, "hydra.sweep.dir"))
    console.print(f"tuning into {sweep_dir} (the sweeper chooses the trials)", highlight=False)
    if dry_run:
        return
    _launch([*overrides, *(["quiet=true"] if quiet else [])], multirun=True)
    statuses = [(read_summary(d) or {}).get("status", "unfinished") for d in sorted(sweep_dir.iterdir())
                if d.is_dir() and (d / CONFIG).exists()]
    console.print(f"{len(statuses)} trial runs: " + ", ".join(
        f"{statuses.count(s)} {s}" for s in sorted(set(statuses))), highlight=False)
    console.print(f"best values: {sweep_dir / 'optimization_results.yaml'}", highlight=False)


@app.command(epilog="Examples:  actstudy report outputs/sweeps/activation_grid-1a2b3c4d  ·  "
             "actstudy report outputs/runs --out paper/figures  (the sweep directory is the one `actstudy sweep` printed)")
def report(
    dirs: List[Path] = typer.Argument(..., help="Run or sweep directories; every run below them is read."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Where to write (default: FIRST_DIR/report)."),
    test: str = typer.Option("welch", "--test", help="welch: t-tests (paired t when two configurations ran the "
                             "same seeds, else Welch's); mannwhitney: rank tests (Wilcoxon signed-rank, else "
                             "Mann–Whitney U)."),
    reference: Optional[List[str]] = typer.Option(None, "--reference", help="KEY=VALUE: compare each "
                                                  "configuration with the one that has this value (repeatable), "
                                                  "e.g. --reference model.variant=vanilla; default: the classic "
                                                  "activations sigmoid/tanh/tanh."),
    family: str = typer.Option("report", "--family", help="Which p-values are adjusted together: report (every "
                               "comparison), task (each task section) or cell (each section and cell)."),
    fdr: bool = typer.Option(False, "--fdr", help="Benjamini–Hochberg (false discovery rate) instead of Holm."),
    diverged: str = typer.Option("exclude", "--diverged", help="exclude: a diverged run is counted and its rate "
                                 "compared, not scored; best: also scored at its best epoch before it diverged."),
    select: Optional[List[str]] = typer.Option(None, "--select", help="KEY: for each configuration keep the value "
                                               "of this swept key that is best on validation (where the task has a solved "
                                               "criterion: most seeds solved, then fewest updates; else the best mean "
                                               "validation metric; repeatable), e.g. --select optim.lr; test numbers "
                                               "only at that value."),
) -> None:
    """Tables and plots over every run below DIRS: accuracy, learning speed, overfitting, gradient vanishing.

    Runs that differ only in `seed` are grouped: mean ± std and 95% CI over seeds, beside the task's baseline and published results; each configuration is compared with its reference (difference with 95% CI, Hedges' g, minimum detectable difference, fraction solved, time to solve), every p-value adjusted over the report. Writes index.html (one self-contained page), summary.csv/.md/.tex, and every plot as PNG and SVG.

    Tuning and references: actstudy report DIR --select optim.lr --reference model.variant=vanilla
    """
    from actstudy.report import CompareOptions, OptionError, ReportError, parse_reference, write_report

    if out is not None:
        check_output_dir("--out", str(out))
    try:
        options = CompareOptions(test=test, family=family, fdr=fdr, reference=parse_reference(reference or []),
                                 diverged=diverged, select=tuple(select or ()))
        result = write_report(list(dirs), out, console, options=options)
    except (ReportError, OptionError) as err:
        fail(str(err))
    except OSError as err:  # a fault, not bad input: the previous report (if any) is left as it was
        err_console.print(f"[bold red]report not written:[/] {_escape(' '.join(str(err).split()))}",
                          highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    console.print(f"report written to {result.out_dir}", highlight=False)


@app.command(name="list")
def list_choices() -> None:
    """List the cells, activations, tasks and optimizers that configs can name.

    Example:  actstudy list
    """
    from actstudy.activations import ACTIVATIONS
    from actstudy.cells import CELLS, VARIANTS
    from actstudy.optimizers import OPTIMIZERS
    from actstudy.tasks import TASKS

    sections = [
        ("cells (model=...)", {**CELLS, "irnn": "the rnn with candidate=relu and init=irnn (Le et al. 2015)"}),
        ("LSTM variants of Greff et al. 2017 (model.variant=...)", VARIANTS),
        ("activations (model.activation.gate|candidate|output=...)",
         {name: a.description for name, a in ACTIVATIONS.items()}),
        ("tasks (task=...)", {name: _describe(entry) for name, entry in TASKS.items()}),
        ("optimizers (optim=...)", {name: entry.description for name, entry in OPTIMIZERS.items()}),
        ("studies (actstudy sweep study=...)", _studies()),
    ]
    for title, entries in sections:
        table = Table(title=title, title_justify="left", show_header=False, box=None, pad_edge=False)
        table.add_column(style="bold cyan")
        table.add_column()
        for name, text in entries.items():
            table.add_row(name, text)
        console.print(table)
        console.print()


def _studies() -> dict[str, str]:
    """conf/study/NAME.yaml → its opening comment, up to the line that ends its first sentence."""
    found = {}
    for path in sorted(Path(config_dir(), "study").glob("*.yaml")):
        comments = [line.lstrip("# ").strip() for line in path.read_text().splitlines()
                    if line.startswith("#") and "@package" not in line]
        ends = next((k for k, line in enumerate(comments) if line.endswith(".") or "Run:" in line), 0)
        found[path.stem] = " ".join(comments[: ends + 1]).split(" Run:")[0].strip()
    return found


def _describe(entry) -> str:
    return entry if isinstance(entry, str) else getattr(entry, "description", str(entry))
