"""Train one experiment and write its run directory.

The trainer knows tasks and models only through their contracts (docs/architecture.md): it never looks
inside a cell. Everything it measures lands in the run directory, which is all the report reads.
"""

from __future__ import annotations

import copy
import csv
import ctypes
import json
import logging
import math
import os
import time
import traceback
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from actstudy.config import plain
from actstudy.sweeps import CHECKPOINT, FINISHED, read_summary, run_id
from actstudy.model import SequenceModel, count_parameters
from actstudy.probe import activation_stats
from actstudy.runtime_threads import default_threads
from actstudy.tasks import build_task

log = logging.getLogger("actstudy")

METRIC_COLUMNS = [
    "epoch", "train_loss", "train_metric", "val_loss", "val_metric",
    "gap_loss", "gap_metric", "grad_norm", "seconds",
]


class Diverged(Exception):
    """The loss became NaN or infinite."""


# --------------------------------------------------------------------------------------------- files


def write_atomic(path: Path, text: str) -> None:
    """Write via a temporary file and a rename, so a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_csv(path: Path, columns: list[str], rows: list[dict]) -> None:
    lines = [",".join(columns)]
    for row in rows:
        lines.append(",".join(_fmt(row[c]) for c in columns))
    write_atomic(path, "\n".join(lines) + "\n")


def _fmt(value) -> str:
    if isinstance(value, float):
        return repr(value)  # shortest exact round-trip: identical runs give identical files
    return str(value)


def write_json(path: Path, data: dict) -> None:
    write_atomic(path, json.dumps(data, indent=2, default=_json_default) + "\n")


def _json_default(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    raise TypeError(f"not JSON serialisable: {value!r}")


def _finite_or_none(value):
    return value if value is None or math.isfinite(value) else None


# -------------------------------------------------------------------------------------------- set-up


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device=cuda but no CUDA device is available here; use device=cpu or device=auto")
    return torch.device(name)


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed blocks for reuse instead of handing them back to the OS.

    By default it returns every large freed block at once, so each training step faults the pages of
    its big tensors in anew; on the VMs measured here that cost up to 10 ms per 26 MB tensor, more than
    the arithmetic on it. Blocks up to 32 MB (the most glibc allows) then come from the heap, and the
    heap is trimmed only past 2 GB free. True when the settings took; a no-op elsewhere (macOS, musl).
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        mmap_threshold, trim_threshold = -3, -1  # M_MMAP_THRESHOLD, M_TRIM_THRESHOLD in <malloc.h>
        return bool(libc.mallopt(mmap_threshold, 1 << 25) and libc.mallopt(trim_threshold, 2**31 - 1))
    except (OSError, AttributeError):
        return False


def prepare_torch(cfg: DictConfig) -> int:
    """Fix threads, flush denormals and keep freed memory (reference.md §5: each is worth 2-80x here)."""
    threads = cfg.threads or default_threads()  # every core, idle threads sleeping (runtime_threads.py)
    torch.set_num_threads(threads)
    # Gradients that vanish through time become subnormal floats, and x86 arithmetic on them is very slow.
    torch.set_flush_denormal(True)
    keep_freed_memory()
    torch.manual_seed(cfg.seed)
    return threads


def build_optimizer(optim_cfg, params) -> torch.optim.Optimizer:
    name, lr, wd = optim_cfg.name, optim_cfg.lr, optim_cfg.weight_decay
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, weight_decay=wd, momentum=optim_cfg.momentum)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=wd, momentum=optim_cfg.momentum)
    raise ValueError(f"optim.name={name!r} is not valid; choose one of: adam, rmsprop, sgd")


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


def grad_norm_by_step(model, task, x: torch.Tensor, y: torch.Tensor, device,
                      lengths: torch.Tensor | None = None) -> list[float]:
    """‖∂L/∂h_t‖ for every step t of the last layer's hidden state, on a fixed probe batch.

    The steps come back from the model as the very tensors the recurrence consumes, so the gradient
    autograd gives for each is the total derivative through all later steps (Arjovsky et al. 2016).
    With `lengths`, step t = T means each sequence's own last real step and t = T - k the step k before
    it; at a t that only some sequences reach, the norm is scaled by sqrt(B / how many reach it), so a
    profile over sequences of one length is the plain norm.
    """
    model.eval()
    pred, steps = model(x.to(device), return_steps=True, lengths=lengths)
    loss = task.loss(pred.cpu(), y, lengths)
    grads = torch.autograd.grad(loss, steps, allow_unused=True)
    if lengths is None:
        return [0.0 if g is None else float(g.norm()) for g in grads]
    total = len(steps)
    grid = torch.stack([torch.zeros_like(s) if g is None else g for g, s in zip(grads, steps)], 1)  # (B, T, H)
    squares = grid.detach().cpu().pow(2).sum(-1)  # (B, T)
    shift = total - lengths  # move each sequence's last real step to position T - 1
    aligned = torch.arange(total).unsqueeze(0) - shift.unsqueeze(1)  # (B, T): source step, < 0 = none
    reach = aligned >= 0
    gathered = squares.gather(1, aligned.clamp_min(0)) * reach  # (B, T), right-aligned by each end
    count = reach.sum(0).clamp_min(1)  # (T,)
    return (gathered.sum(0) * len(lengths) / count).sqrt().tolist()


def vanishing_ratio(profile: list[float]) -> float | None:
    """log10(‖∂L/∂h_1‖ / ‖∂L/∂h_T‖): strongly negative when gradients vanish going back in time."""
    first, last = profile[0], profile[-1]
    if first > 0 and last > 0 and math.isfinite(first) and math.isfinite(last):
        return math.log10(first / last)
    return None


# ----------------------------------------------------------------------------------------- the run


class Progress:
    """A rich progress bar (epoch, loss, metric, ETA), or nothing when quiet."""

    def __init__(self, quiet: bool, epochs: int, title: str):
        self.bar = None
        if quiet:
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

    def close(self) -> None:
        if self.bar:
            self.bar.stop()


def run_experiment(cfg: DictConfig, run_dir: Path) -> dict:
    """Train, measure and write one run directory. Never raises: failures are recorded as status 'failed'.

    A directory that already holds this configuration's finished run is left as it is (the summary comes
    back with `skipped: true`); one with a checkpoint resumes from it (see `load_checkpoint`).
    """
    rid = run_id(cfg)
    done = finished_run(run_dir, rid)
    if done is not None:
        log.info("run %s already %s; skipped", rid, done["status"])
        return {**done, "skipped": True}
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = claim_run_dir(run_dir)
    if lock is None:  # another process (an orphaned worker of a killed sweep, a second sweep) trains it now
        log.warning("run %s is being trained by another process; left to it", rid)
        return {"status": "running", "run_id": rid, "run_dir": str(run_dir), "skipped": True,
                "error": "another process is training this run"}
    with lock:
        return _run_claimed(cfg, run_dir, rid)


def claim_run_dir(run_dir: Path):
    """An exclusive lock on run_dir/.lock, or None when another process holds it. The OS drops the lock
    when its holder dies, even by kill -9, so a stale lock never blocks a resume."""
    import fcntl

    handle = open(run_dir / ".lock", "a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return None
    return handle


def _run_claimed(cfg: DictConfig, run_dir: Path, rid: str) -> dict:
    done = finished_run(run_dir, rid)  # again: the last holder of the lock may have just finished it
    if done is not None:
        return {**done, "skipped": True}
    started = time.time()
    write_atomic(run_dir / "config.yaml", OmegaConf.to_yaml(OmegaConf.create(plain(cfg))))
    summary: dict = {"status": "running", "run_id": rid, "run_dir": str(run_dir)}
    write_json(run_dir / "summary.json", summary)
    try:
        summary = _train(cfg, run_dir, started)
    except Exception as err:  # a sweep must go on: record the failure where the report will find it
        write_atomic(run_dir / "error.txt", traceback.format_exc())
        log.error("run failed: %s", err)
        summary = {
            "status": "failed", "error": f"{type(err).__name__}: {err}".splitlines()[0],
            "wall_seconds": time.time() - started, "run_dir": str(run_dir),
        }
    summary["run_id"] = rid
    write_json(run_dir / "summary.json", summary)
    if summary["status"] in FINISHED:
        (run_dir / CHECKPOINT).unlink(missing_ok=True)  # the result is final; a failed run keeps its own
    return summary


# ------------------------------------------------------------------------------------- resume


def finished_run(run_dir: Path, rid: str) -> dict | None:
    """The summary of this configuration's finished (completed or diverged) run in `run_dir`, if any."""
    summary = read_summary(run_dir)
    if summary and summary.get("run_id") == rid and summary.get("status") in FINISHED:
        return summary
    return None


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
    path = run_dir / CHECKPOINT
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_checkpoint(run_dir: Path, rid: str, model, optimizer, order: torch.Generator) -> dict | None:
    """Restore model, optimizer and RNGs from run_dir's checkpoint of this configuration; return the rest
    of its state (epoch, metrics, grad_rows, stat_rows, best, seconds), or None to start from scratch."""
    path = run_dir / CHECKPOINT
    if not path.exists():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unreadable: starting again is always correct, only slower
        log.warning("checkpoint %s unreadable (%s); starting from scratch", path, err)
        return None
    if payload.get("run_id") != rid:
        log.warning("checkpoint %s belongs to run %s, not %s; starting from scratch", path, payload.get("run_id"), rid)
        return None
    model.load_state_dict(payload.pop("model"))
    optimizer.load_state_dict(payload.pop("optimizer"))
    torch.set_rng_state(payload.pop("torch_rng"))
    order.set_state(payload.pop("order_rng"))
    log.info("resumed from the checkpoint after epoch %d", payload["epoch"])
    return payload


def _train(cfg: DictConfig, run_dir: Path, started: float) -> dict:
    threads = prepare_torch(cfg)
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

    x_train, y_train = task.splits["train"]
    x_val, y_val = task.splits["val"]
    len_train, len_val, len_test = (task.split_lengths(split) for split in ("train", "val", "test"))
    probe_x, probe_y = x_val[: cfg.train.probe_size], y_val[: cfg.train.probe_size]
    probe_len = None if len_val is None else len_val[: cfg.train.probe_size]
    order = torch.Generator().manual_seed(cfg.seed)  # data order, independent of everything else
    epochs, batch_size = cfg.train.epochs, cfg.train.batch_size
    eval_bs = cfg.train.eval_batch_size

    clip = cfg.train.clip_grad if cfg.train.clip_grad is not None else math.inf  # inf: measure, don't clip
    metrics: list[dict] = []
    grad_rows: list[dict] = []
    stat_rows: list[dict] = []

    def probe(epoch: int) -> None:
        profile = grad_norm_by_step(model, task, probe_x, probe_y, device, probe_len)
        grad_rows.extend({"epoch": epoch, "t": t + 1, "grad_norm": g} for t, g in enumerate(profile))
        write_csv(run_dir / "grad_by_step.csv", ["epoch", "t", "grad_norm"], grad_rows)
        # saturated gates, dead candidate units, |c_t|: the mechanism behind the numbers (actstudy/probe.py)
        stats = activation_stats(model, probe_x.to(device))
        stat_rows.extend({"epoch": epoch, "stat": k, "value": v} for k, v in stats.items())
        write_csv(run_dir / "activation_stats.csv", ["epoch", "stat", "value"], stat_rows)

    rid = run_id(cfg)
    resumed = load_checkpoint(run_dir, rid, model, optimizer, order)
    if resumed:  # the rows come from the checkpoint: files written after it are rewritten to match it
        metrics, grad_rows, best = resumed["metrics"], resumed["grad_rows"], resumed["best"]
        stat_rows = resumed["stat_rows"]
        started -= resumed["seconds"]
        write_csv(run_dir / "grad_by_step.csv", ["epoch", "t", "grad_norm"], grad_rows)
        write_csv(run_dir / "activation_stats.csv", ["epoch", "stat", "value"], stat_rows)
    write_csv(run_dir / "metrics.csv", METRIC_COLUMNS, metrics)  # a run that diverges at once still has one
    if not resumed:
        probe(0)
        best = {"epoch": 0, "val_loss": math.inf, "state": copy.deepcopy(model.state_dict())}
    first_epoch = resumed["epoch"] + 1 if resumed else 1
    status = "completed"
    progress = Progress(cfg.quiet, epochs, f"{task.name} {cfg.model.cell}")
    try:
        for epoch in range(first_epoch, epochs + 1):
            tick = time.perf_counter()
            model.train()
            norms = []
            for idx in torch.randperm(len(x_train), generator=order).split(batch_size):
                xb, yb = x_train[idx].to(device), y_train[idx].to(device)
                lb = None if len_train is None else len_train[idx].to(device)
                loss = task.loss(model(xb, lengths=lb), yb, lb)
                if not torch.isfinite(loss):
                    raise Diverged(f"loss became {loss.item()} in epoch {epoch}")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                norms.append(float(torch.nn.utils.clip_grad_norm_(model.parameters(), clip)))
                optimizer.step()
            train_loss, train_metric = evaluate(model, task, x_train, y_train, eval_bs, device, len_train)
            val_loss, val_metric = evaluate(model, task, x_val, y_val, eval_bs, device, len_val)
            if not (math.isfinite(train_loss) and math.isfinite(val_loss)):
                raise Diverged(f"evaluation loss became non-finite in epoch {epoch}")
            seconds = time.perf_counter() - tick
            metrics.append({
                "epoch": epoch, "train_loss": train_loss, "train_metric": train_metric,
                "val_loss": val_loss, "val_metric": val_metric,
                "gap_loss": val_loss - train_loss, "gap_metric": train_metric - val_metric,
                "grad_norm": sum(norms) / len(norms), "seconds": seconds,
            })
            write_csv(run_dir / "metrics.csv", METRIC_COLUMNS, metrics)
            if epoch == 1 or epoch == epochs or epoch % cfg.train.probe_every == 0:
                probe(epoch)
            if val_loss < best["val_loss"]:
                best = {"epoch": epoch, "val_loss": val_loss, "state": copy.deepcopy(model.state_dict())}
            log.info("epoch %d: train loss %.5f, val loss %.5f, val %s %.4f, %.2fs",
                     epoch, train_loss, val_loss, task.metric_name, val_metric, seconds)
            progress.update(epoch, f"loss {train_loss:.4f}  val {task.metric_name} {val_metric:.3f}")
            save_checkpoint(run_dir, {"run_id": rid, "epoch": epoch, "metrics": metrics, "grad_rows": grad_rows,
                                      "stat_rows": stat_rows, "best": best, "seconds": time.time() - started}, model, optimizer, order)
    except Diverged as why:
        status = "diverged"
        log.warning("diverged: %s; keeping the metrics of the last good epoch", why)
    finally:
        progress.close()

    x_test, y_test = task.splits["test"]
    last = evaluate(model, task, x_test, y_test, eval_bs, device, len_test) if status == "completed" else (None, None)
    model.load_state_dict(best["state"])
    test = evaluate(model, task, x_test, y_test, eval_bs, device, len_test) if metrics else (None, None)
    last_profile = [r["grad_norm"] for r in grad_rows if r["epoch"] == grad_rows[-1]["epoch"]]
    summary = {
        "status": status,
        "test": {"loss": _finite_or_none(test[0]), "metric": _finite_or_none(test[1])},
        "test_last": {"loss": last[0], "metric": last[1]},
        "baseline": dict(task.baseline),
        "metric_name": task.metric_name,
        "best_epoch": best["epoch"] if metrics else None,
        "best_val_loss": _finite_or_none(best["val_loss"]) if metrics else None,  # what a tuner minimises
        "epochs_completed": len(metrics),
        "wall_seconds": time.time() - started,
        "params": params,
        "impl": model.impl_used,
        "threads": threads,
        "device": str(device),
        "vanishing_ratio": vanishing_ratio(last_profile),
        "run_dir": str(run_dir),
    }
    log.info("test (best epoch %s): loss %s, %s %s; baseline loss %.4f, %s %.4f",
             summary["best_epoch"], test[0], task.metric_name, test[1],
             task.baseline["loss"], task.metric_name, task.baseline["metric"])
    return summary
