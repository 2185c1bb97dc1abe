"""Fake run directories, written the way train.py writes them (docs/architecture.md, "Run directory").

The numbers are chosen by the caller so that tests can check the report against values worked out by hand.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

import yaml

ADDING_BASELINE = {"loss": 1.0 / 6.0, "metric": 1.0 - (1.0 - 0.04) ** 2}
COPY_BASELINE_T100 = {"loss": 10 * math.log(8) / 120, "metric": 1.0 / 8}
METRIC_NAMES = {"adding": "acc@0.04", "copy": "recall_acc"}
BASELINES = {"adding": ADDING_BASELINE, "copy": COPY_BASELINE_T100}


def run_config(task: str = "adding", seq_len: int = 50, cell: str = "lstm",
               activations: Sequence[str] = ("sigmoid", "tanh", "tanh"), seed: int = 0,
               hidden_size: int = 64, lr: float = 1e-3) -> dict:
    """A resolved run config shaped like conf/config.yaml after composition (no hydra key)."""
    gate, candidate, output = activations
    return {
        "model": {
            "cell": cell, "hidden_size": hidden_size, "num_layers": 1, "dropout": 0.0,
            "activation": {"gate": gate, "candidate": candidate, "output": output, "negative_slope": 0.01},
            "forget_bias": 1.0, "peephole": False, "coupled_gates": False, "init": "default", "impl": "auto",
        },
        "task": {"name": task, "seq_len": seq_len, "n_train": 1000, "n_val": 200, "n_test": 200},
        "optim": {"name": "adam", "lr": lr, "weight_decay": 0.0, "momentum": 0.0},
        "train": {"epochs": 5, "batch_size": 50, "clip_grad": 1.0, "probe_every": 5, "probe_size": 128,
                  "eval_batch_size": 1000},
        "seed": seed, "device": "cpu", "threads": 1, "quiet": True,
    }


def write_fake_run(run_dir: Path, config: dict, *, status: str = "completed",
                   train_loss: Sequence[float] = (0.20, 0.15, 0.10, 0.06, 0.04),
                   gap_loss: float = 0.01, train_metric: Sequence[float] | None = None, gap_metric: float = 0.05,
                   test_loss: float = 0.05, test_metric: float = 0.5, seconds: float = 0.5,
                   grad_profile: Sequence[float] = (1e-3, 1e-2, 1e-1, 1.0),
                   grad_profile_start: Sequence[float] | None = None,
                   activation_stats: dict[str, float] | None = None, val_loss: Sequence[float] | None = None,
                   overrides: Sequence[str] | None = None, summary_extra: dict | None = None) -> Path:
    """Write one run directory.

    Validation loss is train loss + gap_loss at every epoch (unless `val_loss` is given); validation metric is
    train metric − gap_metric. `activation_stats` (stat → value) is written for epoch 0 (halved) and the last
    epoch; `overrides` as Hydra's .hydra/overrides.yaml; `summary_extra` is merged into summary.json (e.g.
    updates_to_solve, update_budget, solve_at).
    grad_by_step.csv holds epoch 0 (grad_profile_start, default all ones) and the last epoch (grad_profile),
    so a report that used the wrong epoch would get a different vanishing ratio.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    task = config["task"]["name"]
    epochs = len(train_loss)
    if train_metric is None:
        train_metric = [0.1 * (e + 1) for e in range(epochs)]

    if status == "failed":
        summary = {"status": "failed", "error": "RuntimeError: made up for a test", "wall_seconds": 0.1,
                   "run_dir": str(run_dir)}
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        return run_dir

    val_loss_given = val_loss
    lines = ["epoch,train_loss,train_metric,val_loss,val_metric,gap_loss,gap_metric,grad_norm,seconds"]
    if overrides is not None:
        (run_dir / ".hydra").mkdir(exist_ok=True)
        (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(list(overrides)))
    if activation_stats:
        rows = [f"{epoch},{stat},{value * (0.5 if epoch == 0 else 1.0)!r}"
                for epoch in (0, epochs) for stat, value in activation_stats.items()]
        (run_dir / "activation_stats.csv").write_text("epoch,stat,value\n" + "\n".join(rows) + "\n")
    for e in range(epochs):
        val_loss = train_loss[e] + gap_loss if val_loss_given is None else val_loss_given[e]
        val_metric = train_metric[e] - gap_metric
        lines.append(",".join(repr(float(v)) if isinstance(v, float) else str(v) for v in (
            e + 1, float(train_loss[e]), float(train_metric[e]), float(val_loss), float(val_metric),
            float(val_loss - train_loss[e]), float(train_metric[e] - val_metric), 0.5, float(seconds))))
    (run_dir / "metrics.csv").write_text("\n".join(lines) + "\n")

    start = grad_profile_start if grad_profile_start is not None else [1.0] * len(grad_profile)
    grad_lines = ["epoch,t,grad_norm"]
    grad_lines += [f"0,{t + 1},{float(g)!r}" for t, g in enumerate(start)]
    grad_lines += [f"{epochs},{t + 1},{float(g)!r}" for t, g in enumerate(grad_profile)]
    (run_dir / "grad_by_step.csv").write_text("\n".join(grad_lines) + "\n")

    completed = status == "completed"
    summary = {
        "status": status,
        "test": {"loss": test_loss, "metric": test_metric},
        "test_last": {"loss": test_loss if completed else None, "metric": test_metric if completed else None},
        "baseline": BASELINES[task],
        "metric_name": METRIC_NAMES[task],
        "best_epoch": epochs,
        "epochs_completed": epochs,
        "wall_seconds": seconds * epochs + 1.0,
        "params": 17217,
        "impl": "fused",
        "threads": 1,
        "device": "cpu",
        # Deliberately wrong: the report must compute the ratio from grad_by_step.csv.
        "vanishing_ratio": 123.0,
        "run_dir": str(run_dir),
        **(summary_extra or {}),
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return run_dir


def write_example_study(root: Path, seeds: int = 3) -> list[Path]:
    """A small mixed study for eyeballing plots: two tasks, three configurations each, some trouble."""
    import numpy as np

    rng = np.random.default_rng(0)
    written = []
    configs = [
        ("lstm", ("sigmoid", "tanh", "tanh"), 0.9, 0.02, 0.7),
        ("lstm", ("sigmoid", "relu", "relu"), 0.8, 0.05, 0.55),
        ("gru", ("sigmoid", "tanh", "tanh"), 0.85, 0.01, 0.8),
        ("rnn", ("sigmoid", "tanh", "tanh"), 0.97, 0.0, 0.2),
        ("lstm", ("relu", "relu", "relu"), 0.9, 0.0, 0.1),  # every seed diverges
    ]
    for task in ("adding", "copy"):
        base = BASELINES[task]["loss"]
        for cell, acts, decay, gap, metric in configs:
            for seed in range(seeds):
                status = "completed"
                if acts[1] == "relu" and (seed == 0 or acts[0] == "relu"):
                    status = "diverged"
                if cell == "rnn" and task == "copy" and seed == 1:
                    status = "failed"
                epochs = 20
                noise = rng.normal(0, 0.03, epochs)
                train = [base * 1.3 * decay ** e * (1 + n) for e, n in enumerate(noise)]
                T = 50 if task == "adding" else 100
                slope = {"lstm": 0.01, "gru": 0.005, "rnn": 0.08}[cell] * (1 + 0.2 * rng.normal())
                profile = [10 ** (-slope * (T - t)) * 0.05 for t in range(1, T + 1)]
                cfg = run_config(task=task, seq_len=T, cell=cell, activations=acts, seed=seed)
                written.append(write_fake_run(
                    root / task / f"{cell}_{'-'.join(acts)}" / f"seed{seed}", cfg, status=status,
                    train_loss=train, gap_loss=gap * (1 + 0.3 * rng.normal()),
                    train_metric=[min(1.0, metric * (1 - decay ** (e + 1))) for e in range(epochs)],
                    test_loss=train[-1] + gap, test_metric=metric + 0.05 * rng.normal(),
                    seconds=0.4 + 0.1 * rng.random(), grad_profile=profile,
                    activation_stats={"gate_saturated_fraction": 0.1 + 0.2 * rng.random(),
                                      "candidate_dead_fraction": 0.3 * rng.random() if "relu" in acts else 0.0,
                                      ("mean_abs_cell_state" if cell == "lstm" else "mean_abs_hidden_state"):
                                          0.5 + rng.random()},
                    overrides=[f"model={cell}", f"task={task}", f"seed={seed}"]))
    return written
