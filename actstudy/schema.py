"""The typed configuration schema: every key a run config has, and its default, in one place.

Hydra composes conf/config.yaml on top of this schema (registered as `base_config` by actstudy/config.py),
so a key that is not here is refused, a value of the wrong type is refused, and a key the YAML files do not
mention takes the default below. The group files in conf/ (model/, task/, optim/) hold only what choosing
that option changes. The model and the trainer read these defaults too (`MODEL_DEFAULTS`), so a default
never has a second copy. Neither torch nor Hydra is imported here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from omegaconf import MISSING

from actstudy.slots import DEFAULT_ACTIVATIONS, DEFAULT_NEGATIVE_SLOPE


@dataclass
class ActivationConfig:
    gate: str = DEFAULT_ACTIVATIONS["gate"]  # sigmoid: the classic gate of LSTM and GRU
    candidate: str = DEFAULT_ACTIVATIONS["candidate"]  # tanh: the classic cell input / candidate state
    output: str = DEFAULT_ACTIVATIONS["output"]  # tanh: applied to an LSTM's c_t before the output gate
    negative_slope: float = DEFAULT_NEGATIVE_SLOPE  # leaky_relu's slope, in whichever slot it is used


@dataclass
class ModelConfig:
    cell: str = "lstm"  # the default experiment's cell; model=gru|rnn|irnn choose another
    hidden_size: int = 64  # small enough for CPU, large enough for the adding problem at T=50
    num_layers: int = 1
    dropout: float = 0.0  # between stacked layers only, as torch.nn's recurrent modules
    activation: ActivationConfig = field(default_factory=ActivationConfig)
    forget_bias: float = 0.0  # torch.nn's init; model=lstm sets 1.0 (Jozefowicz et al. 2015)
    peephole: bool = False  # LSTM only: gates also see the cell state (Gers & Schmidhuber 2000)
    coupled_gates: bool = False  # LSTM only: CIFG, f = 1 - i
    init: str = "default"  # default | orthogonal | glorot (per gate, zero biases) | irnn (rnn: identity recurrence, zero bias)
    impl: str = "auto"  # auto: torch's fused kernel whenever it computes exactly this configuration
    variant: Optional[str] = None  # LSTM only: one of Greff et al.'s variants, on top of the keys above
    bidirectional: bool = False  # true: a second layer per level reads each sequence backwards
    readout: str = "last"  # last: the final step feeds the head; all: one linear layer over every step


@dataclass
class OptimConfig:
    name: str = "adam"  # the default experiment's optimizer; optim=rmsprop|sgd choose another
    lr: float = 0.003  # a little above Adam's usual 1e-3: the default runs are short
    weight_decay: float = 0.0  # L2 penalty; 0 keeps overfitting visible
    momentum: float = 0.0  # RMSProp and SGD only; Adam has its own moment estimates
    alpha: float = 0.99  # RMSProp only: smoothing of its running mean of squared gradients (torch's default)
    square_avg_init: float = 0.0  # RMSProp only: that running mean's start; 0 (torch's) makes the first steps ~10x lr


@dataclass
class TrainConfig:
    epochs: int = 30
    batch_size: int = 50  # Arjovsky et al. 2016 used 20-50 on the adding and copy tasks
    clip_grad: Optional[float] = 1.0  # gradient-norm clipping (Pascanu et al. 2013); null = off
    clip_value: Optional[float] = None  # element-wise: each gradient entry into [-v, v] (Arjovsky et al.'s LSTM); null = off
    probe_every: int = 5  # measure the gradient-vanishing profile every k evaluations (epochs by default), first and last too
    probe_size: int = 128  # sequences in the fixed probe batch, taken from the validation set
    eval_batch_size: int = 1000  # evaluation only: larger is faster and changes no number
    # Budgets and learning speed. Keys added after runs existed: at the defaults below they are left out of a
    # run's identity (rundir.LATER_KEYS), so a run made before them keeps its directory name.
    eval_every: Optional[int] = None  # evaluate every k updates; null = once per epoch (fresh data: every 100)
    max_updates: Optional[int] = None  # stop after this many updates, or after train.epochs, whichever is first
    solve_at: Optional[float] = None  # validation metric that counts as solved; null = the task's own (adding, copy) or none
    stop_when_solved: bool = False  # false: train the whole budget, so solved runs still show what follows


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    task: Any = MISSING  # each task module checks its own keys (actstudy/tasks)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    seed: int = 0  # initialisation, data order and (unless task.data_seed is set) the data
    device: str = "auto"  # auto: cuda when available, else cpu
    threads: Optional[int] = None  # torch threads; null = 1 (or OMP_NUM_THREADS): robust on shared machines
    quiet: bool = False  # true: no progress bar (sweeps, CI)
    logger: str = "none"  # none | tensorboard | mlflow: live curves in a tool researchers use (optional extras)
    continue_from: Optional[str] = None  # a completed run's directory to train on from (set by run --continue)
    # Keys the report tunes per configuration on validation (`actstudy report --select`); a study file sets
    # it so that its report does so unasked. Not part of a run's identity: it changes no training.
    select: list[str] = field(default_factory=list)
    # Runs a study makes beyond its grid, each a list of overrides that replace the study's axes they name
    # (e.g. one configuration at one more learning rate): `actstudy sweep study=NAME` trains them into the
    # same sweep directory unless the command line narrows one of the study's axes. Not part of a run's
    # identity either.
    extra_runs: list[Any] = field(default_factory=list)


MODEL_DEFAULTS = ModelConfig()  # what build_stack gives a key a caller's config leaves out
OPTIM_DEFAULTS = OptimConfig()  # what an optimizer reads for a key a config written before it lacks
