"""Activation statistics on the probe batch: how saturated the gates are, how many candidate units are dead,
how large the cell state grows.

These are the mechanism behind accuracy and vanishing numbers, so they are recorded during training, on the
same fixed probe batch as ‖∂L/∂h_t‖. The probe knows nothing of a cell's equations: every cell applies its
activations through the attributes `gate`, `candidate` and `output` inside its per-step `step`, and the
stack's `forward(x, return_steps=True)` always runs that per-step path. So the probe swaps those attributes
of the last layer's cell for recorders that call the real activation and keep what went in and came out,
runs the batch once without gradients, and puts the originals back.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor, nn

SLOTS = ("gate", "candidate", "output")
SATURATION_LOW, SATURATION_HIGH = 0.01, 0.99  # a gate output this close to 0 or 1 passes almost no gradient

# The statistics, as named in activation_stats.csv. The state statistic has two names because it measures
# two different things: an LSTM's cell state c_t (the input of its output slot), or, for a cell without an
# output slot (GRU, vanilla RNN), its hidden state h_t, which is the only state such a cell has.
STAT_DESCRIPTIONS = {
    "gate_saturated_fraction": f"fraction of gate outputs < {SATURATION_LOW} or > {SATURATION_HIGH}",
    "candidate_dead_fraction": "fraction of candidate units that output exactly 0 for every sequence at every step",
    "mean_abs_cell_state": "mean |c_t| over sequences, steps and units (LSTM cell state)",
    "mean_abs_hidden_state": "mean |h_t| over sequences, steps and units (cells without a cell state)",
}


class _Recorder:
    """Stands in for one activation: applies it and keeps (input, output) of every call."""

    def __init__(self, activation: Callable[[Tensor], Tensor]):
        self.activation = activation
        self.name = getattr(activation, "name", "?")  # cells print their activations' names
        self.calls: list[tuple[Tensor, Tensor]] = []

    def __call__(self, x: Tensor) -> Tensor:
        y = self.activation(x)
        self.calls.append((x.detach(), y.detach()))
        return y


def last_cell(model: nn.Module) -> nn.Module:
    """The last submodule that has a candidate slot: the cell of the last recurrent layer."""
    found = None
    for module in model.modules():
        if callable(getattr(module, "candidate", None)) and hasattr(module, "step"):
            found = module
    if found is None:
        raise ValueError("the model has no recurrent cell with a 'candidate' activation slot to probe")
    return found


@torch.no_grad()
def activation_stats(model: nn.Module, x: Tensor) -> dict[str, float]:
    """Run `x` (B, T, F) through `model` once and summarise what the last cell's activations did."""
    cell = last_cell(model)
    originals: dict[str, Any] = {slot: getattr(cell, slot) for slot in SLOTS if callable(getattr(cell, slot, None))}
    recorders = {slot: _Recorder(fn) for slot, fn in originals.items()}
    was_training = model.training
    model.eval()
    try:
        for slot, recorder in recorders.items():
            setattr(cell, slot, recorder)
        _, steps = model(x, return_steps=True)  # the per-step path, where the slots are called
    finally:
        for slot, fn in originals.items():
            setattr(cell, slot, fn)
        model.train(was_training)
    return _summarise(recorders, steps)


def _summarise(recorders: dict[str, _Recorder], steps: list[Tensor]) -> dict[str, float]:
    stats: dict[str, float] = {}
    gate = recorders.get("gate")
    if gate is not None and gate.calls:
        outputs = torch.cat([y.reshape(-1) for _, y in gate.calls])
        saturated = (outputs < SATURATION_LOW) | (outputs > SATURATION_HIGH)
        stats["gate_saturated_fraction"] = float(saturated.float().mean())
    candidate = recorders.get("candidate")
    if candidate is not None and candidate.calls:
        # each call is one step: (B, H); stacked (T, B, H) → a unit is dead when it is 0 on every (t, b)
        outputs = torch.stack([y for _, y in candidate.calls])
        alive = (outputs != 0).flatten(0, -2).any(0)  # (T·B, H) → (H,)
        stats["candidate_dead_fraction"] = float(1.0 - alive.float().mean())
    output = recorders.get("output")
    if output is not None and output.calls:
        # the output slot of an LSTM is applied to c_t: its inputs are the cell states
        stats["mean_abs_cell_state"] = float(torch.cat([x.abs().reshape(-1) for x, _ in output.calls]).mean())
    else:
        stats["mean_abs_hidden_state"] = float(torch.stack(steps).abs().mean())
    return stats
