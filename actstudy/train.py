"""Train one experiment and write its run directory.

The trainer knows tasks and models only through their contracts (docs/architecture.md): it never looks
inside a cell. Everything it measures lands in the run directory, which is all the report reads.
"""

from __future__ import annotations

import copy
import errno
import logging
import math
import os
import sys
import time
import traceback
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from actstudy import rundir
from actstudy.config import plain
from actstudy.cost import UpdatePlan
from actstudy.loggers import NoLogger, open_logger
from actstudy.model import SequenceModel, count_parameters
from actstudy.optimizers import build_optimizer
from actstudy.probe import activation_stats, grad_profiles, vanishing_ratio
from actstudy.rundir import CHECKPOINT, FINISHED, finite_or_none, write_csv, write_json
from actstudy.runtime import (freeze_long_lived_objects, huge_pages_in_use, huge_pages_problem, pick_device,
                              prepare_torch, thaw_long_lived_objects)
from actstudy.tasks import build_task

log = logging.getLogger("actstudy")


class Diverged(Exception):
    """The loss, or the gradient's norm, became NaN or infinite."""


class UnusableCheckpoint(Exception):
    """A checkpoint of this run that loads but cannot be restored (another shape, missing state)."""

    def __init__(self, path: Path, why: str):
        super().__init__(why)
        self.path = path


# ------------------------------------------------------------------------------------------ measuring


@torch.no_grad()
def evaluate(model, task, x: torch.Tensor, y: torch.Tensor, batch_size: int, device,
             lengths: torch.Tensor | None = None) -> tuple[float, float]:
    """Loss and metric over a whole split, in eval mode (no dropout); `lengths` for padded sequences."""
    model.eval()
    parts = lengths.split(batch_size) if lengths is not None else [None] * len(x.split(batch_size))
    preds = [model(xb.to(device), lengths=lb).cpu() for xb, lb in zip(x.split(batch_size), parts)]
    pred = torch.cat(preds)
    return float(task.loss(pred, y, lengths)), float(task.metric(pred, y, lengths))


# ----------------------------------------------------------------------------------------- the run


class Progress:
    """A rich progress bar (epoch, loss, metric, ETA) on a terminal; without one (`actstudy run > log`, a
    batch job), one plain line per epoch, at most one every PLAIN_EVERY seconds (the first and last epochs
    always); nothing when quiet."""

    PLAIN_EVERY = 30.0  # seconds: a log stays readable for runs with many short epochs

    def __init__(self, quiet: bool, epochs: int, title: str):
        self.bar = None
        self.plain = not quiet and not sys.stdout.isatty()
        self.epochs, self.title, self.last_line = epochs, title, -math.inf
        if quiet or self.plain:
            return
        from rich.progress import BarColumn, Progress as RichProgress, TextColumn, TimeRemainingColumn

        self.bar = RichProgress(
            TextColumn("[bold]{task.description}"), BarColumn(bar_width=20),
            TextColumn("epoch {task.completed}/{task.total}"), TextColumn("{task.fields[stats]}"),
            TextColumn("ETA"), TimeRemainingColumn(),
            transient=False,
        )
        self.task = self.bar.add_task(title, total=epochs, stats="")
        self.bar.start()

    def update(self, epoch: int, stats: str) -> None:
        if self.bar:
            self.bar.update(self.task, completed=epoch, stats=stats)
        elif self.plain:
            now = time.monotonic()
            if epoch in (1, self.epochs) or now - self.last_line >= self.PLAIN_EVERY:
                print(f"{self.title}: epoch {epoch}/{self.epochs}  {stats}", flush=True)
                self.last_line = now

    def close(self) -> None:
        if self.bar:
            self.bar.stop()


def run_experiment(cfg: DictConfig, run_dir: Path) -> dict:
    """Train, measure and write one run directory. Never raises: failures are recorded as status 'failed'.

    A directory that already holds this configuration's finished run is left as it is (the summary comes
    back with `skipped: true`); one with a checkpoint resumes from it (see `load_checkpoint`).
    """
    rid = rundir.run_id(plain(cfg))
    done = rundir.finished_run(run_dir, rid)
    if done is not None:
        log.info("run %s already %s; skipped", rid, done["status"])
        return {**done, "skipped": True}
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = rundir.claim(run_dir)
    if lock is None:  # another process (an orphaned worker of a killed sweep, a second sweep) trains it now
        log.warning("run %s is being trained by another process; left to it", rid)
        return {"status": rundir.RUNNING, "run_id": rid, "run_dir": str(run_dir), "skipped": True,
                "error": "another process is training this run"}
    with lock:
        return _run_claimed(cfg, run_dir, rid)


def _run_claimed(cfg: DictConfig, run_dir: Path, rid: str) -> dict:
    done = rundir.finished_run(run_dir, rid)  # again: the last holder of the lock may have just finished it
    if done is not None:
        return {**done, "skipped": True}
    started = time.time()
    logger = NoLogger()
    try:
        # the summary first: once it exists, a failure (a full disk) can always be recorded over it
        write_json(run_dir / rundir.SUMMARY, {"status": rundir.RUNNING, "run_id": rid, "run_dir": str(run_dir)})
        rundir.write_text(run_dir / rundir.CONFIG, OmegaConf.to_yaml(OmegaConf.create(plain(cfg))))
        logger = open_logger(cfg.logger, run_dir, plain(cfg))
        try:
            summary = _train(cfg, run_dir, rid, started, logger)
        except UnusableCheckpoint as why:  # retrying would fail the same way: set it aside and start afresh, once
            if why.path != run_dir / CHECKPOINT:  # another run's state (continue_from): not ours to move
                raise RuntimeError(f"{why.path} cannot be used: {why}") from None
            (run_dir / CHECKPOINT).replace(run_dir / rundir.UNUSABLE_CHECKPOINT)
            log.warning("%s cannot be used (%s); moved to %s, training from scratch",
                        CHECKPOINT, why, rundir.UNUSABLE_CHECKPOINT)
            summary = _train(cfg, run_dir, rid, started, logger)
    except Exception as err:  # a sweep must go on: record the failure where the report will find it
        rundir.remove_temporary_files(run_dir)  # e.g. the half-written file of a full disk
        try:
            rundir.write_text(run_dir / rundir.ERROR, traceback.format_exc())
        except OSError:
            pass  # the one-line reason below is what matters
        log.error("run failed: %s", err)
        summary = {
            "status": rundir.FAILED, "error": f"{type(err).__name__}: {err}".splitlines()[0],
            "wall_seconds": time.time() - started, "run_dir": str(run_dir),
        }
    summary["run_id"] = rid
    if not rundir.write_summary_anyhow(run_dir, summary):
        log.error("the summary of run %s could not be written", rid)
    if summary["status"] in FINISHED and (run_dir / CHECKPOINT).exists():
        # the result is final: the last state is kept as LAST (final weights, for --continue and analysis);
        # a failed run keeps its checkpoint to resume from
        (run_dir / CHECKPOINT).replace(run_dir / rundir.LAST)
    try:
        logger.finish(summary)
    except Exception as err:  # the run's own files are complete: a logger's trouble costs only its copy
        log.warning("logger=%s could not record the end of the run: %s", cfg.logger, err)
    return summary


# ------------------------------------------------------------------------------------- resume


def save_checkpoint(run_dir: Path, state: dict, model, optimizer, order: torch.Generator) -> None:
    """Everything an epoch boundary needs to continue bit for bit: weights, optimizer, both RNGs, the
    rows written so far and the best epoch. Written to a temporary file and renamed, so a kill leaves the
    previous checkpoint or this one, never half of one."""
    payload = {
        **state,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "order_rng": order.get_state(),
    }
    def write(tmp: Path) -> None:
        try:
            torch.save(payload, tmp)
        except RuntimeError as err:  # torch's writer reports a short write as a RuntimeError: say what it was
            space = os.statvfs(tmp.parent)
            if space.f_bavail * space.f_frsize < 1 << 20:
                raise OSError(errno.ENOSPC, f"No space left on device (writing {CHECKPOINT})") from None
            raise OSError(errno.EIO, f"{CHECKPOINT} could not be written: {' '.join(str(err).split())[:120]}") from None

    rundir.replace_atomically(run_dir / CHECKPOINT, write)


def load_checkpoint(run_dir: Path, rid: str, model, optimizer, order: torch.Generator,
                    name: str = CHECKPOINT) -> dict | None:
    """Restore model, optimizer and RNGs from run_dir's checkpoint of this configuration (or, with
    name=rundir.LAST, a finished run's last state); return the rest of its state (epoch, metrics,
    grad_rows, stat_rows, best, seconds), or None to start from scratch."""
    path = run_dir / name
    if not path.exists():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unreadable: starting again is always correct, only slower
        log.warning("checkpoint %s unreadable (%s); starting from scratch", path, err)
        return None
    if not isinstance(payload, dict):
        raise UnusableCheckpoint(path, f"it holds a {type(payload).__name__}, not a checkpoint")
    if payload.get("run_id") != rid:
        log.warning("checkpoint %s belongs to run %s, not %s; starting from scratch", path, payload.get("run_id"), rid)
        return None
    try:
        _check_checkpoint_rows(payload)
        shapes = {k: v.shape for k, v in model.state_dict().items()}
        if {k: getattr(v, "shape", None) for k, v in payload["best"]["state"].items()} != shapes:
            raise ValueError("its best epoch's weights have other shapes than this model's")
        model.load_state_dict(payload.pop("model"))
        optimizer.load_state_dict(payload.pop("optimizer"))
        torch.set_rng_state(payload.pop("torch_rng"))
        order.set_state(payload.pop("order_rng"))
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError, IndexError) as err:
        raise UnusableCheckpoint(path, " ".join(f"{type(err).__name__}: {err}".split())[:200]) from None
    log.info("resumed from the checkpoint after epoch %d", payload["epoch"])
    return payload


def _check_checkpoint_rows(payload: dict) -> None:
    """The bookkeeping a resume rewrites the run's files from: present, with every column."""
    if not isinstance(payload["epoch"], int) or not isinstance(payload["seconds"], (int, float)):
        raise TypeError("epoch or seconds is not a number")
    for key, columns in (("metrics", rundir.METRIC_COLUMNS), ("grad_rows", rundir.GRAD_COLUMNS),
                         ("stat_rows", rundir.STAT_COLUMNS)):
        if not isinstance(payload[key], list) or any(not isinstance(r, dict) or set(columns) - set(r)
                                                      for r in payload[key]):
            raise ValueError(f"its {key} lack columns")
    if not isinstance(payload["best"], dict) or not {"epoch", "val_loss", "state"} <= set(payload["best"]):
        raise ValueError("its best epoch is incomplete")


def _train(cfg: DictConfig, run_dir: Path, rid: str, started: float, logger: NoLogger) -> dict:
    threads = prepare_torch(cfg.threads, cfg.seed)
    device = pick_device(cfg.device)
    data_seed = cfg.task.get("data_seed")
    task = build_task(cfg.task, cfg.seed if data_seed is None else data_seed)
    torch.manual_seed(cfg.seed)  # the model's initialisation does not depend on how the data was made
    model = SequenceModel(cfg.model, task.input_size, task.output_size, task.per_step,
                          vocab_size=task.vocab_size, seq_len=task.splits["train"][0].shape[1]).to(device)
    optimizer = build_optimizer(cfg.optim, model.parameters())
    params = count_parameters(model)
    log.info("task: %s", task.describe())
    for note in task.notes:  # what was inferred from the user's data: worth seeing before training starts
        log.info("task: %s", note)
        if not cfg.quiet:
            print(f"task: {note}", flush=True)
    log.info("model: %s, %d parameters, %s path, %d threads, %s", cfg.model.cell, params, model.impl_used, threads, device)
    log.info("memory: %s", "big blocks on huge pages" if huge_pages_in_use() else
             f"4 KB pages ({huge_pages_problem() or 'not started through the actstudy command, or ACTSTUDY_HUGE_PAGES=0'})")

    x_train, y_train = task.splits["train"]
    x_val, y_val = task.splits["val"]
    len_train, len_val, len_test = (task.split_lengths(split) for split in ("train", "val", "test"))
    probe_x, probe_y = x_val[: cfg.train.probe_size], y_val[: cfg.train.probe_size]
    probe_len = None if len_val is None else len_val[: cfg.train.probe_size]
    order = torch.Generator().manual_seed(cfg.seed)  # data order, independent of everything else
    batch_size = cfg.train.batch_size
    eval_bs = cfg.train.eval_batch_size
    plan = UpdatePlan.of(cfg.train, len(x_train), fresh=task.fresh_batch is not None)
    floors = split_floors(task)
    solve_at = cfg.train.solve_at if cfg.train.solve_at is not None else task.solved_at

    clip = cfg.train.clip_grad if cfg.train.clip_grad is not None else math.inf  # inf: measure, don't clip
    clip_value = cfg.train.get("clip_value")
    metrics: list[dict] = []
    grad_rows: list[dict] = []
    stat_rows: list[dict] = []

    def probe(epoch) -> None:
        profile, cell_profile = grad_profiles(model, task, probe_x, probe_y, device, probe_len)
        cell_profile = cell_profile or [None] * len(profile)  # no cell state: the column stays empty
        grad_rows.extend({"epoch": epoch, "t": t + 1, "grad_norm": g, "cell_grad_norm": c}
                         for t, (g, c) in enumerate(zip(profile, cell_profile)))
        write_csv(run_dir / rundir.GRAD_BY_STEP, rundir.GRAD_COLUMNS, grad_rows)
        logger.probe(epoch, profile)
        # saturated gates, dead candidate units, |c_t|: the mechanism behind the numbers (actstudy/probe.py)
        stats = activation_stats(model, probe_x.to(device))
        stat_rows.extend({"epoch": epoch, "stat": k, "value": v} for k, v in stats.items())
        write_csv(run_dir / rundir.ACTIVATION_STATS, rundir.STAT_COLUMNS, stat_rows)

    resumed = load_checkpoint(run_dir, rid, model, optimizer, order)
    parent = _parent(cfg)
    if not resumed and parent:  # --continue: train on from the parent's last epoch, its rows included
        resumed = load_checkpoint(Path(cfg.continue_from), parent["run_id"], model, optimizer, order, rundir.LAST)
        if not resumed:
            raise RuntimeError(f"cannot continue from {cfg.continue_from}: its {rundir.LAST} is missing or unusable")
    if resumed:  # the rows come from the checkpoint: files written after it are rewritten to match it
        metrics, grad_rows, best = resumed["metrics"], resumed["grad_rows"], resumed["best"]
        stat_rows = resumed["stat_rows"]
        started -= resumed["seconds"]
        write_csv(run_dir / rundir.GRAD_BY_STEP, rundir.GRAD_COLUMNS, grad_rows)
        write_csv(run_dir / rundir.ACTIVATION_STATS, rundir.STAT_COLUMNS, stat_rows)
    write_csv(run_dir / rundir.METRICS, rundir.METRIC_COLUMNS, metrics)  # a run that diverges at once still has one
    if not resumed:
        probe(0)
        best = {"epoch": 0, "val_loss": math.inf, "state": copy.deepcopy(model.state_dict())}
    # where the checkpoint left off: updates done, the first update at which the run was solved, and the
    # gradient norms of the updates since the last evaluation (a checkpoint may fall between evaluations)
    update = resumed.get("updates", resumed["epoch"] * plan.per_epoch) if resumed else 0
    solved = resumed.get("updates_to_solve") if resumed else None
    norms = list(resumed.get("norms", [])) if resumed else []
    status = rundir.COMPLETED
    progress = Progress(cfg.quiet, plan.epochs, f"{task.name} {cfg.model.cell}")
    tick = time.perf_counter()
    stop = False
    freeze_long_lived_objects()  # undone in the finally below, so that a sweep worker's next run starts clean
    try:
        while update < plan.budget and not stop:
            model.train()
            if plan.fresh:  # one epoch of fresh data: eval_every batches, batch k drawn for update k
                batches = (task.fresh_batch(k, batch_size) for k in range(update, min(update + plan.per_epoch, plan.budget)))
            else:
                batches = ((x_train[idx], y_train[idx], idx) for idx in torch.randperm(len(x_train), generator=order).split(batch_size))
            for batch in batches:
                if update >= plan.budget:  # max_updates ends this epoch early
                    break
                xb, yb = batch[0].to(device), batch[1].to(device)
                lb = None if len_train is None or plan.fresh else len_train[batch[2]].to(device)
                loss = task.loss(model(xb, lengths=lb), yb, lb)
                if not torch.isfinite(loss):
                    raise Diverged(f"loss became {loss.item()} at update {update + 1}")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), clip))  # the norm before clipping
                if not math.isfinite(norm):
                    # Entries ~1e20 overflow the float32 sum of squares: clipping then scales every gradient by
                    # 1/inf = 0 and the model stops changing for good while its loss stays finite (an IRNN at
                    # RMSProp 1e-3 on the adding problem: loss 1e25 for 19,800 updates). It has diverged.
                    raise Diverged(f"gradient norm became {norm} at update {update + 1}")
                norms.append(norm)
                if clip_value is not None:  # then each entry, as Arjovsky et al. clipped their LSTM's gradients
                    torch.nn.utils.clip_grad_value_(model.parameters(), clip_value)
                optimizer.step()
                update += 1
                if update % plan.eval_every and update != plan.budget:
                    continue
                # ---- an evaluation: one row of metrics.csv
                epoch = plan.epoch_at(update)
                train_loss, train_metric = evaluate(model, task, x_train, y_train, eval_bs, device, len_train)
                val_loss, val_metric = evaluate(model, task, x_val, y_val, eval_bs, device, len_val)
                model.train()
                if not (math.isfinite(train_loss) and math.isfinite(val_loss)):
                    raise Diverged(f"evaluation loss became non-finite at update {update}")
                if solved is None and solve_at is not None and val_metric >= solve_at:
                    solved = update
                    stop = cfg.train.stop_when_solved
                seconds = time.perf_counter() - tick
                metrics.append({
                    "epoch": epoch, "train_loss": train_loss, "train_metric": train_metric,
                    "val_loss": val_loss, "val_metric": val_metric,
                    "gap_loss": val_loss - train_loss, "gap_metric": train_metric - val_metric,
                    "gap_relative": relative_gap(train_loss, val_loss, floors),
                    "grad_norm": sum(norms) / len(norms), "seconds": seconds,
                    "updates": update, "updates_to_solve": solved,
                })
                norms = []
                write_csv(run_dir / rundir.METRICS, rundir.METRIC_COLUMNS, metrics)
                logger.epoch(metrics[-1])
                if len(metrics) == 1 or update == plan.budget or stop or len(metrics) % cfg.train.probe_every == 0:
                    probe(epoch)
                if val_loss < best["val_loss"]:
                    best = {"epoch": epoch, "val_loss": val_loss, "state": copy.deepcopy(model.state_dict())}
                log.info("epoch %s (update %d): train loss %.5f, val loss %.5f, val %s %.4f, %.2fs",
                         epoch, update, train_loss, val_loss, task.metric_name, val_metric, seconds)
                progress.update(epoch, f"loss {train_loss:.4f}  val {task.metric_name} {val_metric:.3f}")
                tick = time.perf_counter()
                if stop:
                    log.info("solved at update %d (val %s >= %s); stopped", solved, task.metric_name, solve_at)
                    break
            # at each epoch's end, and at the end of the run (its final state is kept as rundir.LAST)
            save_checkpoint(run_dir, {"run_id": rid, "epoch": update // plan.per_epoch, "updates": update,
                                      "updates_to_solve": solved, "norms": norms, "metrics": metrics,
                                      "grad_rows": grad_rows, "stat_rows": stat_rows, "best": best,
                                      "seconds": time.time() - started}, model, optimizer, order)
            if stop or update >= plan.budget:
                break
    except Diverged as why:
        status = rundir.DIVERGED
        log.warning("diverged: %s; keeping the metrics of the last good epoch", why)
    finally:
        progress.close()
        thaw_long_lived_objects()

    x_test, y_test = task.splits["test"]
    last = evaluate(model, task, x_test, y_test, eval_bs, device, len_test) if status == rundir.COMPLETED else (None, None)
    model.load_state_dict(best["state"])
    # the weights the test numbers below are measured with
    rundir.replace_atomically(run_dir / rundir.MODEL, lambda tmp: torch.save(best["state"], tmp))
    test = evaluate(model, task, x_test, y_test, eval_bs, device, len_test) if metrics else (None, None)
    last_profile = [r["grad_norm"] for r in grad_rows if r["epoch"] == grad_rows[-1]["epoch"]]
    summary = {
        "status": status,
        "test": {"loss": finite_or_none(test[0]), "metric": finite_or_none(test[1])},
        "test_last": {"loss": last[0], "metric": last[1]},
        "baseline": dict(task.baseline),
        "baseline_loss_by_split": floors,  # the memoryless predictor's loss on each split (null: unknown)
        "metric_name": task.metric_name,
        "best_epoch": best["epoch"] if metrics else None,
        "best_val_loss": finite_or_none(best["val_loss"]) if metrics else None,  # what a tuner minimises
        "epochs_completed": len(metrics),  # evaluations: epochs, or eval_every periods
        "updates": update,  # optimizer steps taken
        "update_budget": plan.budget,  # where an unsolved run is censored
        "train_sequences": None if plan.fresh else len(x_train),  # null: fresh sequences for every batch
        "solve_at": solve_at,  # the validation metric that counts as solved (null: no criterion)
        "updates_to_solve": solved,  # the first evaluation at or above solve_at; null: not solved (censored)
        "wall_seconds": time.time() - started,
        "params": params,
        "impl": model.impl_used,
        # the compiled loop's build that ran the custom cells (instruction set and source digest: builds round
        # float32 differently); null where torch's kernels, the Python loop or autograd ran them
        "compiled_loop": model.compiled_build,
        "threads": threads,
        "huge_pages": huge_pages_in_use(),  # speed only: big tensors faulted in 2 MB at a time (runtime.py)
        "device": str(device),
        "vanishing_ratio": _ratio_or_none(vanishing_ratio(last_profile)),
        # the ratio compares the first step's gradient with the last's as the path back from one loss at the
        # end; where a loss falls on every step (per-step targets, readout=all) no step is that far from it
        "vanishing_applicable": not task.per_step and cfg.model.readout != "all",
        "run_dir": str(run_dir),
        # what actstudy.load_run needs to rebuild the model from config.yaml without making the data
        "model_shape": {"input_size": task.input_size, "output_size": task.output_size,
                        "per_step": task.per_step, "vocab_size": task.vocab_size,
                        "seq_len": task.splits["train"][0].shape[1]},
    }
    digests = rundir.data_digests(plain(cfg))
    if digests:
        summary["data_sha256"] = digests
    if parent:
        summary["parent"] = parent
    log.info("test (best epoch %s): loss %s, %s %s; baseline loss %.4f, %s %.4f; %.1fs",
             summary["best_epoch"], _rounded(test[0]), task.metric_name, _rounded(test[1]),
             task.baseline["loss"], task.metric_name, task.baseline["metric"], summary["wall_seconds"])
    return summary


def split_floors(task) -> dict[str, float] | None:
    """The baseline's loss on each split: splits differ in their targets' spread (the adding problem's label
    variance, a class prior), so each split has its own floor. None when the task has no baseline predictor."""
    if task.memoryless is None:
        return None
    floors = {}
    for split, (_, y) in task.splits.items():
        with torch.no_grad():
            floors[split] = float(task.loss(task.memoryless(y), y, task.split_lengths(split)))
    return floors


def relative_gap(train_loss: float, val_loss: float, floors: dict[str, float] | None) -> float | None:
    """val − train loss, each as a fraction of its split's floor: 0 for a model at the floor of both splits,
    where the raw gap is only the difference between the floors."""
    if not floors or not (floors["train"] > 0 and floors["val"] > 0):
        return None
    return val_loss / floors["val"] - train_loss / floors["train"]


def _parent(cfg: DictConfig) -> dict | None:
    """The run this one continues (`continue_from`): its run id, directory and epochs."""
    if not cfg.get("continue_from"):
        return None
    summary = rundir.read_summary(Path(cfg.continue_from))
    if not summary or summary.get("status") != rundir.COMPLETED:
        raise RuntimeError(f"continue_from={cfg.continue_from} is not a completed run")
    return {"run_id": summary["run_id"], "run_dir": str(cfg.continue_from), "epochs": summary.get("epochs_completed")}


def _rounded(value: float | None) -> str:
    """A number for the log: 5 significant digits (summary.json keeps every digit)."""
    return "none" if value is None else f"{value:.5g}"


def _ratio_or_none(ratio: float) -> float | None:
    """NaN (a profile that says nothing) is stored as null; -inf (underflow) is kept, as the report reads it."""
    return None if math.isnan(ratio) else ratio
