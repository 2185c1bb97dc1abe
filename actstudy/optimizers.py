"""The optimizer registry: the names `optim.name` (and `optim=NAME`) can take, and how each is built.

A new optimizer is one entry here and one YAML file in conf/optim/ holding what it changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class Optimizer:
    description: str
    build: Callable[[Any, Any], Any]  # (optim config, parameters) -> torch.optim.Optimizer


def _adam(cfg, params):
    import torch

    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _rmsprop(cfg, params):
    import torch

    return torch.optim.RMSprop(params, lr=cfg.lr, weight_decay=cfg.weight_decay, momentum=cfg.momentum)


def _sgd(cfg, params):
    import torch

    return torch.optim.SGD(params, lr=cfg.lr, weight_decay=cfg.weight_decay, momentum=cfg.momentum)


OPTIMIZERS = {
    "adam": Optimizer("Adam (Kingma & Ba 2015)", _adam),
    "rmsprop": Optimizer("RMSProp, as in Arjovsky et al. 2016 for the adding and copy tasks", _rmsprop),
    "sgd": Optimizer("stochastic gradient descent with optional momentum", _sgd),
}


def build_optimizer(optim_cfg, params):
    """The optimizer `optim_cfg.name` names, over `params`; an unknown name is a one-line ValueError."""
    entry = OPTIMIZERS.get(optim_cfg.name)
    if entry is None:
        raise ValueError(f"optim.name={optim_cfg.name!r} is not valid; choose one of: {', '.join(OPTIMIZERS)}")
    return entry.build(optim_cfg, params)
