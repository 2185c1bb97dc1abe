"""The probes: what a model does on a fixed batch while it trains.

- `grad_profiles`: ‖∂L/∂h_t‖ at every step t (gradient vanishing) and, for an LSTM, ‖∂L/∂c_t‖ of its cell
  state, the path an LSTM keeps its memory on; `vanishing_ratio`, the one summary of such a profile that
  training (summary.json) and the report (summary.csv) both print.
- `activation_stats`: how saturated each gate is (i, f, o; r, z: only where the gate activation is bounded),
  how many candidate units are dead, how large the cell state grows.

These are the mechanism behind accuracy and vanishing numbers, so they are recorded during training, on the
same fixed probe batch as ‖∂L/∂h_t‖. The probe knows nothing of a cell's equations: every cell applies its
activations through the attributes `gate`, `candidate` and `output` inside its per-step `step`, and the
stack's `forward(x, return_steps=True)` always runs that per-step path. So the probe swaps those attributes
of the last layer's cell for recorders that call the real activation and keep what went in and came out,
runs the batch once without gradients, and puts the originals back.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

if TYPE_CHECKING:  # torch is imported where it is used, so that the report can use this module without it
    from torch import Tensor, nn

SLOTS = ("gate", "candidate", "output")
# A gate output within 1% of its range's width from either end passes almost no gradient through the gate:
# for sigmoid < 0.01 or > 0.99. Only bounded gate activations have ends to saturate at; for any other the
# statistic is not written (not applicable, rather than a misleading 0).
SATURATION_MARGIN = 0.01
BOUNDED_RANGES = {"sigmoid": (0.0, 1.0), "hard_sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0),
                  "hardtanh": (-1.0, 1.0), "softsign": (-1.0, 1.0)}
# The gates each cell applies the gate slot to, in the order it calls them within a step (an LSTM variant
# without a gate skips it); the GRU applies it once to r and z side by side.
LSTM_GATES = ("i", "f", "o")
GRU_GATES = ("r", "z")
SATURATION_STATS = {g: f"gate_saturated_fraction_{g}" for g in (*LSTM_GATES, *GRU_GATES)}

# The statistics, as named in activation_stats.csv. Saturation is per gate: a forget gate near 1 is how an
# LSTM remembers, which pooled with the other gates would read as saturation. The state statistic has two
# names because it measures two different things: an LSTM's cell state c_t (the input of its output slot),
# or, for a cell without an output slot (GRU, vanilla RNN), its hidden state h_t, its only state.
STAT_DESCRIPTIONS = {
    **{stat: f"fraction of {gate}-gate outputs within {SATURATION_MARGIN:.0%} of an end of the gate's range "
             "(bounded gate activations only)" for gate, stat in SATURATION_STATS.items()},
    "candidate_dead_fraction": "fraction of candidate units that output exactly 0 for every sequence at every step",
    "mean_abs_cell_state": "mean |c_t| over sequences, steps and units (LSTM cell state)",
    "mean_abs_hidden_state": "mean |h_t| over sequences, steps and units (cells without a cell state)",
}


class _Recorder:
    """Stands in for one activation: applies it and keeps (input, output) of every call; `in_graph` keeps the
    input attached to the autograd graph, so that the loss can be differentiated with respect to it."""

    def __init__(self, activation: Callable[[Tensor], Tensor], in_graph: bool = False):
        self.activation = activation
        self.name = getattr(activation, "name", "?")  # cells print their activations' names
        self.calls: list[tuple[Tensor, Tensor]] = []
        self.in_graph = in_graph

    def __call__(self, x: Tensor) -> Tensor:
        y = self.activation(x)
        self.calls.append((x if self.in_graph else x.detach(), y.detach()))
        return y


# ------------------------------------------------------------------------------------ gradient by step


def grad_norm_by_step(model, task, x: "Tensor", y: "Tensor", device, lengths: Optional["Tensor"] = None) -> list[float]:
    """‖∂L/∂h_t‖ for every step t of the last layer's hidden state (`grad_profiles`' first profile)."""
    return grad_profiles(model, task, x, y, device, lengths)[0]


def grad_profiles(model, task, x: "Tensor", y: "Tensor", device,
                  lengths: Optional["Tensor"] = None) -> tuple[list[float], Optional[list[float]]]:
    """‖∂L/∂h_t‖ for every step t of the last layer's hidden state, on a fixed probe batch, and for an LSTM
    ‖∂L/∂c_t‖ of that layer's cell state (None for cells without one).

    The steps come back from the model as the very tensors the recurrence consumes, so the gradient
    autograd gives for each is the total derivative through all later steps (Arjovsky et al. 2016). The cell
    states are the tensors the LSTM's output slot is applied to, recorded as they pass, so ∂L/∂c_t is
    likewise total: through h_t and through c_(t+1).
    With `lengths`, step t = T means each sequence's own last real step and t = T - k the step k before
    it; at a t that only some sequences reach, the norm is scaled by sqrt(B / how many reach it), so a
    profile over sequences of one length is the plain norm.
    """
    import torch

    model.eval()
    cell = last_cell(model)
    output_slot = getattr(cell, "output", None)
    keeper = _Recorder(output_slot, in_graph=True) if callable(output_slot) else None
    try:
        if keeper is not None:
            cell.output = keeper
        pred, steps = model(x.to(device), return_steps=True, lengths=lengths)
    finally:
        if keeper is not None:
            cell.output = output_slot
    states = [c for c, _ in keeper.calls] if keeper is not None and len(keeper.calls) == len(steps) else []
    loss = task.loss(pred.cpu(), y, lengths)
    grads = torch.autograd.grad(loss, [*steps, *states], allow_unused=True)
    h_profile = _norms_by_step(grads[: len(steps)], steps, lengths)
    c_profile = _norms_by_step(grads[len(steps):], states, lengths) if states else None
    return h_profile, c_profile


def _norms_by_step(grads, steps, lengths: Optional["Tensor"]) -> list[float]:
    import torch

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


def vanishing_ratio(profile: Sequence[float]) -> float:
    """log10(‖∂L/∂h_1‖ / ‖∂L/∂h_T‖) of one probed epoch's profile (ordered by t): strongly negative when
    gradients vanish going back in time.

    An exactly zero first-step norm means the gradient underflowed on its way back (denormals are
    flushed while training): the ratio is then -inf, which is what happened, not a missing value.
    NaN when the profile says nothing (no steps, a non-finite or negative norm, a zero last-step norm).
    """
    if len(profile) == 0:
        return math.nan
    first, last = float(profile[0]), float(profile[-1])
    if not (math.isfinite(first) and math.isfinite(last)) or last <= 0 or first < 0:
        return math.nan
    if first == 0:
        return -math.inf
    return math.log10(first / last)


# ------------------------------------------------------------------------------------ activation stats


def last_cell(model: "nn.Module") -> "nn.Module":
    """The last submodule that has a candidate slot: the cell of the last recurrent layer."""
    found = None
    for module in model.modules():
        if callable(getattr(module, "candidate", None)) and hasattr(module, "step"):
            found = module
    if found is None:
        raise ValueError("the model has no recurrent cell with a 'candidate' activation slot to probe")
    return found


def activation_stats(model: "nn.Module", x: "Tensor") -> dict[str, float]:
    """Run `x` (B, T, F) through `model` once and summarise what the last cell's activations did."""
    import torch

    with torch.no_grad():
        return _activation_stats(model, x)


def _activation_stats(model: "nn.Module", x: "Tensor") -> dict[str, float]:
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
    return _summarise(recorders, steps, tuple(getattr(cell, "gate_names", ())))


def _outputs_by_gate(calls: list[tuple["Tensor", "Tensor"]], gate_names: tuple[str, ...]) -> dict[str, "Tensor"]:
    """Every gate's outputs over the batch and the steps, flattened, keyed by the gate's name."""
    import torch

    if set(GRU_GATES) <= set(gate_names):  # one call per step on (B, 2H): r, then z
        halves = [y.chunk(2, -1) for _, y in calls]
        return {g: torch.cat([h[k].reshape(-1) for h in halves]) for k, g in enumerate(GRU_GATES)}
    present = [g for g in LSTM_GATES if g in gate_names]  # called in this order within each step
    return {g: torch.cat([y.reshape(-1) for _, y in calls[k::len(present)]]) for k, g in enumerate(present)}


def _summarise(recorders: dict[str, _Recorder], steps: list["Tensor"], gate_names: tuple[str, ...]) -> dict[str, float]:
    import torch

    stats: dict[str, float] = {}
    gate = recorders.get("gate")
    if gate is not None and gate.calls and gate.name in BOUNDED_RANGES:
        low, high = BOUNDED_RANGES[gate.name]
        margin = SATURATION_MARGIN * (high - low)
        for name, outputs in _outputs_by_gate(gate.calls, gate_names).items():
            saturated = (outputs < low + margin) | (outputs > high - margin)
            stats[SATURATION_STATS[name]] = float(saturated.float().mean())
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
