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

    from actstudy.schema import OPTIM_DEFAULTS

    # configs written before these keys existed lack them
    alpha = getattr(cfg, "alpha", OPTIM_DEFAULTS.alpha)
    square_avg_init = getattr(cfg, "square_avg_init", OPTIM_DEFAULTS.square_avg_init)
    optimizer = torch.optim.RMSprop(params, lr=cfg.lr, weight_decay=cfg.weight_decay, momentum=cfg.momentum,
                                    alpha=alpha)
    if square_avg_init:
        # torch starts the running mean of g^2 at 0 when a parameter first gets a gradient, so with alpha 0.99
        # the first step divides by 0.1|g| (10x lr). Arjovsky et al.'s RMSProp started it at 1e-3: the state
        # torch would create, made now with that value (an empty state is what torch fills lazily).
        for group in optimizer.param_groups:
            for p in group["params"]:
                state = optimizer.state[p]
                state["step"] = torch.zeros((), dtype=torch.get_default_dtype())
                state["square_avg"] = torch.full_like(p, square_avg_init, memory_format=torch.preserve_format)
                if group["momentum"] > 0:
                    state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                if group["centered"]:
                    state["grad_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
    return optimizer


def _sgd(cfg, params):
    import torch

    return torch.optim.SGD(params, lr=cfg.lr, weight_decay=cfg.weight_decay, momentum=cfg.momentum)


OPTIMIZERS = {
    "adam": Optimizer("Adam (Kingma & Ba 2015)", _adam),
    "rmsprop": Optimizer("RMSProp (torch's; optim.alpha=0.9 optim.square_avg_init=1e-3 give Arjovsky et al. 2016's)",
                         _rmsprop),
    "sgd": Optimizer("stochastic gradient descent with optional momentum", _sgd),
}


def build_optimizer(optim_cfg, params):
    """The optimizer `optim_cfg.name` names, over `params`; an unknown name is a one-line ValueError."""
    entry = OPTIMIZERS.get(optim_cfg.name)
    if entry is None:
        raise ValueError(f"optim.name={optim_cfg.name!r} is not valid; choose one of: {', '.join(OPTIMIZERS)}")
    return entry.build(optim_cfg, params)
