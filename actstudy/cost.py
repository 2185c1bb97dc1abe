"""What a run will cost: a wall-time estimate from its configuration, for sweep ETAs and `sweep --dry-run`.

Training time is dominated by the recurrent step, done for every sequence, step and epoch: three passes
over the training set (forward, backward, and the epoch-end evaluation) and one over validation. Each step
costs arithmetic (gates × hidden × (hidden + inputs) multiply-adds per sequence) plus a fixed overhead per
batch and step, which is small for torch's fused kernels and large for our own per-step loop:

    seconds ≈ epochs × T × layers × directions × (sequences × gates × H × (H + F) × SECONDS_PER_MAC
                                                    + batches × SECONDS_PER_STEP[impl])

The constants were fitted to runs on 2 cores at one thread per run; a sweep rescales them by the wall time of
its own finished runs (`Calibration`), so the estimate adapts to the machine and to parallel launchers.
For data files (npz, csv, ucr) the sizes are not known before reading them: a run's recorded
`model_shape` fills in T when one has finished, else DEFAULT_STEPS and DEFAULT_SEQUENCES stand.
"""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any, Iterable, NamedTuple, Optional

GATES = {"lstm": 4, "gru": 3, "rnn": 1}  # weight blocks per step: the step's arithmetic scales with them
# Fitted to the run times of conf/study/adding_lengths and copy_delays (hidden 64, T = 100-400, 2,000
# sequences, 2 joblib jobs x 1 thread on 2 cores: 9-167 s per run) and to the default run (26 s);
# runs timed on a machine loaded 5 deep took 4x as long, which is what the sweep's rescaling is for.
SECONDS_PER_MAC = 1.2e-10
SECONDS_PER_STEP = {"fused": 2e-5, "custom": 6e-5}  # per batch and time step, forward + backward
DEFAULT_STEPS, DEFAULT_SEQUENCES = 100, 1000  # a data file's size before any run of it has finished

# Per task: (T, training sequences, validation sequences) from its config; None where the task decides.
_COPY_RECALL = 20  # copy: the symbols to recall are shown before the delay and recalled after it (2 × 10)


def task_geometry(task: dict) -> tuple[int, Optional[int], int]:
    """(steps T, training sequences or None for fresh data, validation sequences) of a task config."""
    name = task.get("name")
    if name in ("adding", "copy"):
        train = None if task.get("train_size") is None else int(task["train_size"])
        recall = _COPY_RECALL if name == "copy" else 0
        return int(task["seq_len"]) + recall, train, int(task["val_size"])
    if name == "mnist1d":  # 40 steps; 4000 sequences of which val_size are carved for validation
        val = int(task.get("val_size") or 500)
        return 40, int(task.get("train_size") or 4000 - val), val
    if name == "digits":  # 1797 images of 8 rows; about 60 % train, 20 % validation
        return 8, 1078, 360
    return DEFAULT_STEPS, DEFAULT_SEQUENCES, DEFAULT_SEQUENCES // 4


# With fresh data and no train.eval_every: evaluate every 100 updates. At batch 50 that is 5,000 sequences,
# and 20,000 updates give 200 points on the learning curve; updates_to_solve is known to within 100.
FRESH_EVAL_EVERY = 100


class UpdatePlan(NamedTuple):
    """How many updates a run takes, how many make an epoch, and when it evaluates.

    Fixed data: an epoch is one pass (ceil(train_size / batch_size) updates). Fresh data has no passes: an
    epoch is one evaluation period, and train.max_updates is the only budget (train.epochs does not apply).
    """

    fresh: bool
    per_epoch: int  # updates per epoch
    eval_every: int  # updates between evaluations
    budget: int  # total updates

    @classmethod
    def of(cls, train_cfg, train_size: int, fresh: bool) -> "UpdatePlan":
        if fresh:
            if train_cfg.max_updates is None:
                raise ValueError("fresh training data (task.train_size=null) needs train.max_updates")
            every = train_cfg.eval_every or FRESH_EVAL_EVERY
            return cls(True, every, every, train_cfg.max_updates)
        per_epoch = math.ceil(train_size / train_cfg.batch_size)
        budget = train_cfg.epochs * per_epoch
        if train_cfg.max_updates is not None:
            budget = min(budget, train_cfg.max_updates)
        return cls(False, per_epoch, train_cfg.eval_every or per_epoch, budget)

    @property
    def epochs(self) -> int:
        return math.ceil(self.budget / self.per_epoch)

    def epoch_at(self, update: int) -> int | float:
        """Epochs done after `update` updates: a whole number at an epoch's end, else a fraction."""
        whole, part = divmod(update, self.per_epoch)
        return whole if part == 0 else round(update / self.per_epoch, 4)


def estimate_seconds(config: dict, impl: str, steps: Optional[int] = None) -> float:
    """The estimated wall time of one run (plain resolved config; impl = fused or custom, as built); with
    train.stop_when_solved, the time of the whole budget (an upper bound)."""
    model, train = config["model"], config["train"]
    t, n_train, n_val = task_geometry(config["task"])
    t = steps or t
    hidden, inputs = int(model["hidden_size"]), 8  # inputs: a typical feature count; H dominates anyway
    gates = GATES.get(model["cell"], 4)
    stacks = int(model["num_layers"]) * (2 if model.get("bidirectional") else 1)
    batch, eval_batch = int(train["batch_size"]), int(train["eval_batch_size"])
    if n_train is None and train.get("max_updates") is None:
        return 0.0  # fresh data without a budget: the pre-flight refuses it before anything runs
    budget = SimpleNamespace(**{k: train.get(k) for k in ("epochs", "batch_size", "max_updates", "eval_every")})
    plan = UpdatePlan.of(budget, n_train or 0, fresh=n_train is None)
    evaluations = math.ceil(plan.budget / plan.eval_every)
    train_eval = n_val if n_train is None else n_train  # fresh data: the training loss on a sample as large as val
    # Training: forward + backward (~2 passes) per update; evaluation: train sample and validation, forward only.
    sequences = 2 * plan.budget * batch + evaluations * (train_eval + n_val)
    batches = 3 * plan.budget + evaluations * math.ceil((train_eval + n_val) / eval_batch)
    per_step = sequences * gates * hidden * (hidden + inputs) * SECONDS_PER_MAC + batches * SECONDS_PER_STEP.get(impl, SECONDS_PER_STEP["custom"])
    return t * stacks * per_step


class Calibration:
    """Turns estimates into wall time: measured seconds per estimated second, from the runs that ended.

    Before any run has ended the ratio is 1 (the built-in constants). `observe(estimate, seconds)` adds a
    finished run; `scale` is the ratio of their totals, so long runs weigh more than short ones."""

    def __init__(self, finished: Iterable[tuple[float, float]] = ()):
        self.estimated, self.measured = 0.0, 0.0
        for estimate, seconds in finished:
            self.observe(estimate, seconds)

    def observe(self, estimate: float, seconds: float) -> None:
        if estimate > 0 and seconds is not None and math.isfinite(seconds) and seconds > 0:
            self.estimated += estimate
            self.measured += seconds

    @property
    def scale(self) -> float:
        return self.measured / self.estimated if self.estimated else 1.0


def describe(seconds: float) -> str:
    """A duration for people: 45s, 3m05s, 2h10m."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def impl_of(model_cfg: Any) -> str:
    """fused or custom: which path this model config trains on (as the built stack says)."""
    from actstudy.cells import build_stack

    return build_stack(model_cfg, input_size=1).impl_used
