"""LSTM / GRU / vanilla RNN cells with swappable activations, a layer that loops a cell
over time, and a stack of layers.

Three pieces, smallest first:

- a *cell* holds one layer's parameters (torch.nn's names and layout) and computes one
  time step. Its work is split in two so that a layer can batch the non-recurrent part:
  `project_inputs` (the input matmul, any leading shape) and `step` (everything that
  depends on the previous state). `forward(x_t, state)` does both for a single step.
- a *layer* projects the whole input sequence in one matmul, then loops `step` over time.
- a *stack* composes layers with dropout between them, and uses torch's fused kernels
  (`torch.lstm`, `torch.gru`, `torch.rnn_tanh`, `torch.rnn_relu`) on the very same
  parameter tensors whenever the configuration is exactly what those kernels compute.

Layout decisions others rely on:

- LSTM gates are stacked i, f, g, o; GRU r, z, n; RNN one block (as torch.nn).
- With `coupled_gates` (CIFG, f = 1 - i) the LSTM has no forget weights at all: its
  blocks are i, g, o (G = 3) and, with peepholes, `peephole` is (2, H) with rows i, o.
  Likewise a variant without an input, forget or output gate (NIG, NFG, NOG) has no
  block for it. Parameter counts therefore reflect the simplification. `cell.gate_names`
  and `cell.peephole_names` spell out the layout of any cell.
- A bidirectional stack has a second, independent layer per level that reads each
  sequence backwards (from its last real step when lengths are given); the two outputs
  are concatenated, forward first, as torch.nn does.
- Default init draws every parameter from U(-1/sqrt(H), 1/sqrt(H)) in torch.nn's order,
  so with the same seed a default stack starts from the same numbers as nn.LSTM/GRU/RNN.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from actstudy import bptt, native
from actstudy.activations import Activation, resolve_activation
from actstudy.schema import MODEL_DEFAULTS
from actstudy.slots import DEFAULT_ACTIVATIONS, DEFAULT_NEGATIVE_SLOPE, SLOTS

CELLS = {  # cell type -> what it is (`actstudy list`)
    "lstm": "long short-term memory: gates i, f, o; candidate g; output activation on c_t",
    "gru": "gated recurrent unit: gates r, z; candidate h~ (torch.nn.GRU form)",
    "rnn": "vanilla (Elman) RNN: h_t = candidate(W x_t + U h_t-1 + b); init=irnn gives the IRNN",
}
CELL_TYPES = tuple(CELLS)
INITS = ("default", "orthogonal", "glorot", "irnn")
IMPLS = ("auto", "fused", "custom")

# Greff et al. 2017's LSTM variants: each is their vanilla LSTM (with peepholes) changed in one respect.
VARIANTS = {
    "vanilla": "Greff et al.'s baseline: forget gate and peepholes",
    "nig": "no input gate: i = 1",
    "nfg": "no forget gate: f = 1, so c_t = c_t-1 + i*g",
    "nog": "no output gate: o = 1",
    "niaf": "no input activation: candidate = identity",
    "noaf": "no output activation: output = identity",
    "np": "no peepholes (the LSTM of torch.nn.LSTM)",
    "cifg": "coupled input and forget gate: f = 1 - i",
    "fgr": "full gate recurrence: i, f, o also see the previous i, f, o",
}


LSTMState = tuple[Tensor, ...]  # (h, c), each (B, H); FGR adds the previous i, f, o as (B, 3H)
State = Union[Tensor, LSTMState]


def _default(slot: str) -> Activation:
    return resolve_activation(DEFAULT_ACTIVATIONS[slot])


# --------------------------------------------------------------------------- cells


class RecurrentCell(nn.Module):
    """Shared parameters and init of the three cells; G = len(gate_names) blocks of H rows."""

    def __init__(self, input_size: int, hidden_size: int, gate_names: tuple[str, ...], init: str = "default"):
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.gate_names = gate_names
        self.init = init
        blocks = len(gate_names) * hidden_size
        # Registered in torch.nn's order so that default init consumes the RNG identically.
        self.weight_ih = nn.Parameter(torch.empty(blocks, input_size))
        self.weight_hh = nn.Parameter(torch.empty(blocks, hidden_size))
        self.bias_ih = nn.Parameter(torch.empty(blocks))
        self.bias_hh = nn.Parameter(torch.empty(blocks))

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.hidden_size)
        with torch.no_grad():
            for parameter in self.parameters():
                parameter.uniform_(-bound, bound)
            if self.init == "orthogonal":
                # Each gate's (H, H) recurrent block orthogonal on its own, not the whole (G*H, H).
                for block in self.weight_hh.chunk(len(self.gate_names), 0):
                    nn.init.orthogonal_(block)
            elif self.init == "glorot":
                # Arjovsky et al.'s LSTM: each gate's input and recurrent matrix Glorot-uniform on its own
                # (bound sqrt(6 / (fan_in + fan_out)) with fan_out = H, not G*H), every bias zero.
                for weight in (self.weight_ih, self.weight_hh):
                    for block in weight.chunk(len(self.gate_names), 0):
                        nn.init.xavier_uniform_(block)
                self.bias_ih.zero_()
                self.bias_hh.zero_()
            elif self.init == "irnn":
                # Le, Jaitly & Hinton 2015: identity recurrence, zero biases.
                self.weight_hh.copy_(torch.eye(self.hidden_size))
                self.bias_ih.zero_()
                self.bias_hh.zero_()

    def initial_state(self, batch_size: int, like: Tensor) -> State:
        return like.new_zeros(batch_size, self.hidden_size)

    def input_bias(self) -> Tensor:
        """(G*H,) the bias folded into the input projection: both biases (they are only ever added), leaving
        one addmm per step; the compiled loop, which projects the inputs itself, takes the same."""
        return self.bias_ih + self.bias_hh

    def project_inputs(self, x: Tensor) -> Tensor:
        """x (..., I) -> (..., G*H): the part of every pre-activation that needs no state."""
        return bptt.project(x, self.weight_ih, self.input_bias())

    def step(self, projected: Tensor, state: State) -> tuple[Tensor, State]:
        """One time step from the projected input (B, G*H); returns (h_t, new state)."""
        raise NotImplementedError

    def sequence(self, xs: Tensor, compiled: bool = True) -> Optional[Tensor]:
        """h_1..h_T (T, B, H) of the inputs xs (T, B, I) from zero state with a hand-written backward, or
        None when this cell's configuration has none and the layer must loop `step` under autograd.

        The compiled loop (actstudy/native) runs where it could be built and the tensors are on the CPU,
        unless `compiled` is False; otherwise the Python loop of actstudy/bptt.py.
        """
        return None

    def _compiled(self, xs: Tensor, compiled: bool, *slots: Activation) -> Optional[tuple[Any, list, list]]:
        """(module, codes, slopes) when the compiled loop can run this cell on `xs`, else None."""
        if not compiled or xs.device.type != "cpu" or xs.dtype not in (torch.float32, torch.float64):
            return None
        module = native.load()
        codes = native.slot_codes(*slots) if module is not None else None
        return None if codes is None else (module, *codes)

    def forward(self, x_t: Tensor, state: Optional[State] = None) -> tuple[Tensor, State]:
        """One time step from the raw input x_t (B, I); a zero state when none is given."""
        if state is None:
            state = self.initial_state(x_t.shape[0], x_t)
        return self.step(self.project_inputs(x_t), state)

    def _slots_repr(self) -> str:
        return ""

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}{self._slots_repr()}, init={self.init}"


class LSTMCell(RecurrentCell):
    """LSTM (with forget gate) and the simplifications and extensions of Greff et al. 2017.

        i = gate(W_i x + U_i h + b_i [+ p_i * c_prev] [+ R_i ifo_prev])   or i = 1 without an input gate
        f = gate(W_f x + U_f h + b_f [+ p_f * c_prev] [+ R_f ifo_prev])   or f = 1 - i when coupled,
                                                                            or f = 1 without a forget gate
        g = candidate(W_g x + U_g h + b_g)
        c = f * c_prev + i * g
        o = gate(W_o x + U_o h + b_o [+ p_o * c] [+ R_o ifo_prev])         or o = 1 without an output gate
        h = o * output(c)

    A gate that is removed (`missing_gate`) or coupled has no weights at all, so parameter counts
    reflect the simplification. With `gate_recurrence` (FGR) every gate also sees the previous step's
    i, f, o through a (3H, 3H) matrix, Greff et al.'s nine recurrent matrices in one; the state then
    carries those gate values as a third element.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        gate: Optional[Activation] = None,
        candidate: Optional[Activation] = None,
        output: Optional[Activation] = None,
        peephole: bool = False,
        coupled_gates: bool = False,
        init: str = "default",
        forget_bias: float = 0.0,
        missing_gate: Optional[str] = None,
        gate_recurrence: bool = False,
    ):
        gone = {missing_gate} | ({"f"} if coupled_gates else set())
        if missing_gate not in (None, "i", "f", "o"):
            raise ValueError(f"missing_gate must be i, f or o, got {missing_gate!r}")
        if coupled_gates and missing_gate is not None:
            raise ValueError("coupled gates need both the input and the forget gate")
        if gate_recurrence and gone != {None}:
            raise ValueError("full gate recurrence needs all three gates, uncoupled")
        gate_names = tuple(name for name in ("i", "f", "g", "o") if name not in gone)
        super().__init__(input_size, hidden_size, gate_names, init)
        self.gate = gate or _default("gate")
        self.candidate = candidate or _default("candidate")
        self.output = output or _default("output")
        self.coupled_gates = coupled_gates
        self.missing_gate = missing_gate
        self.forget_bias = forget_bias
        self.peephole_names: tuple[str, ...] = ()
        if peephole:
            self.peephole_names = tuple(name for name in ("i", "f", "o") if name in gate_names)
            # Diagonal peepholes: one weight vector per gate that looks at the cell state.
            self.peephole = nn.Parameter(torch.empty(len(self.peephole_names), hidden_size))
        else:
            self.register_parameter("peephole", None)
        if gate_recurrence:
            # Rows: the i, f, o pre-activations at t; columns: the i, f, o values at t-1.
            self.gate_recurrence = nn.Parameter(torch.empty(3 * hidden_size, 3 * hidden_size))
        else:
            self.register_parameter("gate_recurrence", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        # forget_bias == 0 keeps the init identical to torch.nn's.
        if self.forget_bias != 0 and "f" in self.gate_names:
            start = self.gate_names.index("f") * self.hidden_size
            forget = slice(start, start + self.hidden_size)
            with torch.no_grad():
                self.bias_ih[forget] = self.forget_bias
                self.bias_hh[forget] = 0.0

    def initial_state(self, batch_size: int, like: Tensor) -> LSTMState:
        zeros = like.new_zeros(batch_size, self.hidden_size)
        if self.gate_recurrence is not None:
            return zeros, zeros, like.new_zeros(batch_size, 3 * self.hidden_size)
        return zeros, zeros

    def step(self, projected: Tensor, state: LSTMState) -> tuple[Tensor, LSTMState]:
        h_prev, c_prev = state[0], state[1]
        # (B, G*H) -> G pre-activations of (B, H), in gate_names order.
        pre = dict(zip(self.gate_names, torch.addmm(projected, h_prev, self.weight_hh.t()).chunk(len(self.gate_names), 1)))
        if self.gate_recurrence is not None:
            from_gates = F.linear(state[2], self.gate_recurrence).chunk(3, 1)  # (B, 3H) -> 3 x (B, H)
            for name, extra in zip(("i", "f", "o"), from_gates):
                pre[name] = pre[name] + extra
        peep = dict(zip(self.peephole_names, self.peephole.unbind(0))) if self.peephole is not None else {}

        i = f = o = None  # None: the gate is absent, i.e. fixed at 1
        if "i" in pre:
            i = self.gate(pre["i"] + peep["i"] * c_prev if "i" in peep else pre["i"])
        if "f" in pre:
            f = self.gate(pre["f"] + peep["f"] * c_prev if "f" in peep else pre["f"])
        elif self.coupled_gates:
            f = 1.0 - i
        g = self.candidate(pre["g"])
        c = (c_prev if f is None else f * c_prev) + (g if i is None else i * g)
        if "o" in pre:
            o = self.gate(pre["o"] + peep["o"] * c if "o" in peep else pre["o"])  # o peeks at the *new* c
        h = self.output(c) if o is None else o * self.output(c)
        if self.gate_recurrence is not None:
            return h, (h, c, torch.cat((i, f, o), 1))
        return h, (h, c)

    def sequence(self, xs: Tensor, compiled: bool = True) -> Optional[Tensor]:
        found = self._compiled(xs, compiled, self.gate, self.candidate, self.output)
        if found is not None:  # every variant; the compiled loop projects the inputs itself
            module, codes, slopes = found
            blocks = [self.gate_names.index(name) if name in self.gate_names else -1 for name in "ifgo"]
            peeps = [self.peephole_names.index(name) if name in self.peephole_names else -1 for name in "ifo"]
            return bptt.CompiledLSTMFunction.apply(xs, self.weight_ih, self.input_bias(), self.weight_hh,
                                                   self.peephole, self.gate_recurrence, module,
                                                   (blocks, peeps, self.coupled_gates), codes, slopes)
        plain = (self.peephole is None and not self.coupled_gates and self.missing_gate is None
                 and self.gate_recurrence is None)
        if not plain:
            return None  # the Python loop has no peepholes, CIFG, NIG/NFG/NOG or FGR: loop under autograd
        return bptt.LSTMFunction.apply(self.project_inputs(xs), self.weight_hh, self.gate, self.candidate,
                                       self.output)

    def _slots_repr(self) -> str:
        extras = (", peephole=True" if self.peephole is not None else "") + (
            ", coupled_gates=True" if self.coupled_gates else ""
        ) + (f", missing_gate={self.missing_gate}" if self.missing_gate else "") + (
            ", gate_recurrence=True" if self.gate_recurrence is not None else "")
        return f", gate={self.gate.name}, candidate={self.candidate.name}, output={self.output.name}{extras}"


class GRUCell(RecurrentCell):
    """GRU in torch.nn.GRU's form: the reset gate scales (U_n h + b_hn), after the matmul.

        r = gate(W_r x + b_ir + U_r h + b_hr)
        z = gate(W_z x + b_iz + U_z h + b_hz)
        n = candidate(W_n x + b_in + r * (U_n h + b_hn))
        h = (1 - z) * n + z * h_prev
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        gate: Optional[Activation] = None,
        candidate: Optional[Activation] = None,
        init: str = "default",
    ):
        super().__init__(input_size, hidden_size, ("r", "z", "n"), init)
        self.gate = gate or _default("gate")
        self.candidate = candidate or _default("candidate")
        self.reset_parameters()

    def input_bias(self) -> Tensor:
        # b_hn sits inside r * (...), so only bias_ih can be folded into the projection.
        return self.bias_ih

    def step(self, projected: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        h_prev = state
        recurrent = F.linear(h_prev, self.weight_hh, self.bias_hh)  # (B, 3H)
        two_h = 2 * self.hidden_size
        # r and z share one activation call over their (B, 2H) block.
        r, z = self.gate(projected[:, :two_h] + recurrent[:, :two_h]).chunk(2, 1)
        n = self.candidate(projected[:, two_h:] + r * recurrent[:, two_h:])
        h = n + z * (h_prev - n)  # = (1 - z) * n + z * h_prev
        return h, h

    def sequence(self, xs: Tensor, compiled: bool = True) -> Optional[Tensor]:
        found = self._compiled(xs, compiled, self.gate, self.candidate)
        if found is not None:  # the compiled loop projects the inputs itself
            return bptt.CompiledGRUFunction.apply(xs, self.weight_ih, self.input_bias(), self.weight_hh, self.bias_hh,
                                                  *found)
        return bptt.GRUFunction.apply(self.project_inputs(xs), self.weight_hh, self.bias_hh, self.gate,
                                      self.candidate)

    def _slots_repr(self) -> str:
        return f", gate={self.gate.name}, candidate={self.candidate.name}"


class RNNCell(RecurrentCell):
    """Vanilla (Elman) RNN: h = candidate(W x + b_ih + U h_prev + b_hh)."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        candidate: Optional[Activation] = None,
        init: str = "default",
    ):
        super().__init__(input_size, hidden_size, ("h",), init)
        self.candidate = candidate or _default("candidate")
        self.reset_parameters()

    def step(self, projected: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        h = self.candidate(torch.addmm(projected, state, self.weight_hh.t()))
        return h, h

    def sequence(self, xs: Tensor, compiled: bool = True) -> Optional[Tensor]:
        found = self._compiled(xs, compiled, self.candidate)
        if found is not None:  # the compiled loop projects the inputs itself
            return bptt.CompiledRNNFunction.apply(xs, self.weight_ih, self.input_bias(), self.weight_hh,
                                                  *found)
        return bptt.RNNFunction.apply(self.project_inputs(xs), self.weight_hh, self.candidate)

    def _slots_repr(self) -> str:
        return f", candidate={self.candidate.name}"


# --------------------------------------------------------------------------- layer


class RecurrentLayer(nn.Module):
    """Loops a cell over time: one input matmul for all steps, then the recurrence."""

    def __init__(self, cell: RecurrentCell):
        super().__init__()
        self.cell = cell

    def forward(self, xs: Tensor, state: Optional[State] = None) -> tuple[list[Tensor], State]:
        """xs (T, B, I) -> (the T hidden states h_t (B, H), final state)."""
        projected = self.cell.project_inputs(xs)  # (T, B, I) -> (T, B, G*H)
        if state is None:
            state = self.cell.initial_state(xs.shape[1], xs)
        hs = []
        # unbind, not projected[t]: indexing's backward allocates a full-size gradient per step.
        for projected_t in projected.unbind(0):
            h, state = self.cell.step(projected_t, state)
            hs.append(h)
        return hs, state

    def sequence(self, xs: Tensor, per_step: bool = False, compiled: bool = True) -> Tensor:
        """xs (T, B, I) -> every step's hidden state (T, B, H), from zero state.

        Uses the cell's hand-written backward through time where it has one (much less autograd
        bookkeeping per step), unless `per_step` asks for the plain autograd loop over `step`;
        `compiled` False keeps it to the Python loop (actstudy/bptt.py) rather than the compiled one.
        """
        if not per_step:
            hs = self.cell.sequence(xs, compiled)
            if hs is not None:
                return hs
        hs, _ = self(xs)
        return torch.stack(hs, 0)  # T x (B, H) -> (T, B, H)


# --------------------------------------------------------------------------- stack


def _fail(message: str) -> None:
    raise ValueError(message)


def _choice(what: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        _fail(f"unknown {what} {value!r}; choose one of: {', '.join(choices)}")


def _positive_int(what: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        _fail(f"{what} must be a positive integer, got {value!r}")


def _flag(what: str, value: Any) -> None:
    if not isinstance(value, bool):
        _fail(f"{what} must be true or false, got {value!r}")


def _number(what: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        _fail(f"{what} must be a number, got {value!r}")


def _why_not_fusable(cell: str, slots: dict[str, str], peephole: bool = False, coupled_gates: bool = False,
                     missing_gate: Optional[str] = None, gate_recurrence: bool = False) -> Optional[str]:
    """None when torch's fused kernel computes exactly this configuration, else the reason."""
    if cell == "rnn":
        if slots["candidate"] not in ("tanh", "relu"):
            return f"the fused RNN kernels support candidate=tanh or relu only, not {slots['candidate']}"
        return None
    for slot in SLOTS[cell]:
        if slots[slot] != DEFAULT_ACTIVATIONS[slot]:
            return (
                f"the fused {cell.upper()} kernel hard-codes {slot}={DEFAULT_ACTIVATIONS[slot]}, "
                f"not {slot}={slots[slot]}"
            )
    if peephole:
        return "the fused LSTM kernel has no peephole connections"
    if coupled_gates:
        return "the fused LSTM kernel has no coupled input-forget gates"
    if missing_gate:
        return f"the fused LSTM kernel always has the {dict(i='input', f='forget', o='output')[missing_gate]} gate"
    if gate_recurrence:
        return "the fused LSTM kernel has no recurrence between gates"
    return None


def _variant_changes(variant: str) -> dict[str, Any]:
    """What a Greff et al. variant sets, as LSTMCell arguments and activation slots."""
    changes: dict[str, Any] = {"peephole": variant != "np"}
    if variant in ("nig", "nfg", "nog"):
        changes["missing_gate"] = variant[1]
    elif variant == "niaf":
        changes["candidate"] = "identity"
    elif variant == "noaf":
        changes["output"] = "identity"
    elif variant == "cifg":
        changes["coupled_gates"] = True
    elif variant == "fgr":
        changes["gate_recurrence"] = True
    return changes


class RecurrentStack(nn.Module):
    """`num_layers` recurrent layers with dropout between them, batch-first in and out.

    Activation slots left as None take the cell's defaults (sigmoid gate, tanh candidate
    and output). A slot the cell does not have must stay None or at its default.
    `variant` (LSTM only) applies one of Greff et al.'s variants on top of the other
    arguments; an argument that contradicts it is refused rather than silently overridden.
    """

    def __init__(
        self,
        cell: str,
        input_size: int,
        hidden_size: int,
        num_layers: int = MODEL_DEFAULTS.num_layers,
        dropout: float = MODEL_DEFAULTS.dropout,
        gate: Optional[str] = None,
        candidate: Optional[str] = None,
        output: Optional[str] = None,
        negative_slope: float = DEFAULT_NEGATIVE_SLOPE,
        forget_bias: float = MODEL_DEFAULTS.forget_bias,
        peephole: bool = MODEL_DEFAULTS.peephole,
        coupled_gates: bool = MODEL_DEFAULTS.coupled_gates,
        init: str = MODEL_DEFAULTS.init,
        impl: str = MODEL_DEFAULTS.impl,
        variant: Optional[str] = MODEL_DEFAULTS.variant,
        bidirectional: bool = MODEL_DEFAULTS.bidirectional,
    ):
        super().__init__()
        requested = {"gate": gate, "candidate": candidate, "output": output}
        _choice("cell", cell, CELL_TYPES)
        _positive_int("input_size", input_size)
        _positive_int("hidden_size", hidden_size)
        _positive_int("num_layers", num_layers)
        _number("dropout", dropout)
        if not 0.0 <= dropout < 1.0:
            _fail(f"dropout must be in [0, 1), got {dropout!r}")
        _number("negative_slope", negative_slope)
        _number("forget_bias", forget_bias)
        _flag("peephole", peephole)
        _flag("coupled_gates", coupled_gates)
        _flag("bidirectional", bidirectional)
        _choice("init", init, INITS)
        _choice("impl", impl, IMPLS)
        for slot, name in requested.items():
            if slot not in SLOTS[cell] and name not in (None, DEFAULT_ACTIVATIONS[slot]):
                _fail(
                    f"activation.{slot}={name} has no effect on a {cell} cell "
                    f"(its slots: {', '.join(SLOTS[cell])}); leave it at {DEFAULT_ACTIVATIONS[slot]}"
                )
        if cell != "lstm":
            for what, value in (("peephole", peephole), ("coupled_gates", coupled_gates)):
                if value:
                    _fail(f"{what}=true needs cell=lstm, got cell={cell}")
            if forget_bias != 0:
                _fail(f"forget_bias={forget_bias} needs cell=lstm (a {cell} has no forget gate); use 0")
            if variant is not None:
                _fail(f"variant={variant} needs cell=lstm, got cell={cell}; leave variant at null")
        if init == "irnn" and cell != "rnn":
            _fail(f"init=irnn needs cell=rnn, got cell={cell}; choose one of: default, orthogonal, glorot")

        lstm_extras: dict[str, Any] = {"peephole": peephole, "coupled_gates": coupled_gates}
        if variant is not None:
            _choice("variant", variant, tuple(VARIANTS))
            for key, value in _variant_changes(variant).items():
                if key in requested:
                    if requested[key] not in (None, DEFAULT_ACTIVATIONS[key], value):
                        _fail(f"variant={variant} fixes activation.{key}={value}, got {requested[key]}; "
                              f"leave it at {DEFAULT_ACTIVATIONS[key]}")
                    requested[key] = value
                elif key == "peephole" and peephole and not value:
                    _fail(f"variant={variant} has no peepholes, got peephole=true; use peephole=false")
                else:
                    lstm_extras[key] = value
            if coupled_gates and variant != "cifg":
                _fail(f"coupled_gates=true is variant=cifg, not variant={variant}; use coupled_gates=false")

        slots = {slot: requested[slot] or DEFAULT_ACTIVATIONS[slot] for slot in requested}
        activations = {slot: self._activation(slot, slots[slot], negative_slope) for slot in SLOTS[cell]}

        reason = _why_not_fusable(cell, slots, **lstm_extras)
        if impl == "fused" and reason is not None:
            _fail(f"impl=fused is not possible: {reason}; use impl=auto or impl=custom")
        self.impl_used = "fused" if reason is None and impl != "custom" else "custom"
        # The custom path trains with a hand-written backward through time: the compiled loop
        # (actstudy/native) where it could be built, else the Python one (actstudy/bptt.py). bptt=False
        # loops the cells' steps under autograd instead, compiled=False keeps to the Python loop (both for
        # comparison and tests).
        self.bptt = True
        self.compiled = True
        # The compiled loop's build (native.build_name()) once it has run this stack's steps outside the probe,
        # else None: summary.json records it, as builds differ at float32 rounding.
        self.compiled_build: Optional[str] = None

        self.cell_type = cell
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.dropout = float(dropout)
        self.variant = variant
        self.bidirectional = bidirectional
        self.directions = 2 if bidirectional else 1
        self.output_size = self.directions * hidden_size  # features per step of forward's output
        self.activation_names = {slot: slots[slot] for slot in SLOTS[cell]}

        def make_cell(layer_input: int) -> RecurrentCell:
            if cell == "lstm":
                return LSTMCell(layer_input, hidden_size, init=init, forget_bias=float(forget_bias),
                                **lstm_extras, **activations)
            if cell == "gru":
                return GRUCell(layer_input, hidden_size, init=init, **activations)
            return RNNCell(layer_input, hidden_size, init=init, **activations)

        # Built level by level, forward before backward, so that default init consumes the RNG in
        # torch.nn's order (l0, l0_reverse, l1, ...).
        layers, reverse_layers = [], []
        for index in range(num_layers):
            layer_input = input_size if index == 0 else self.output_size
            layers.append(RecurrentLayer(make_cell(layer_input)))
            if bidirectional:
                reverse_layers.append(RecurrentLayer(make_cell(layer_input)))
        # Registered backward first: modules() then ends with the forward direction's last cell, the one
        # whose h_t `return_steps` gives and whose slots the probe records (actstudy/probe.py).
        self.reverse_layers = nn.ModuleList(reverse_layers)
        self.layers = nn.ModuleList(layers)

    @staticmethod
    def _activation(slot: str, name: str, negative_slope: float) -> Activation:
        try:
            return resolve_activation(name, negative_slope)
        except ValueError as error:
            raise ValueError(f"activation.{slot}: {error}") from None

    @property
    def cells(self) -> list[RecurrentCell]:
        """Every cell in torch.nn's parameter order: layer 0 (then its reverse), layer 1, ..."""
        if not self.bidirectional:
            return [layer.cell for layer in self.layers]
        return [layer.cell for pair in zip(self.layers, self.reverse_layers) for layer in pair]

    def reset_parameters(self) -> None:
        for cell in self.cells:
            cell.reset_parameters()

    def forward(self, x: Tensor, return_steps: bool = False, lengths: Optional[Tensor] = None):
        """x (B, T, I) -> out (B, T, directions*H); with return_steps also the last layer's h_t list.

        The steps are the very tensors that feed the next time step, so
        `torch.autograd.grad(loss, steps)` gives the total dL/dh_t. They always come from
        the custom path (on the same parameters), since the fused kernels do not expose them;
        in a bidirectional stack they are the forward direction's.

        `lengths` (B,) marks right-padded sequences; only the backward direction needs them
        (it must start at each sequence's last real step). Outputs at padded steps are not
        meaningful and must be left out by the caller.
        """
        if x.dim() != 3 or x.shape[2] != self.input_size or x.shape[1] == 0:
            _fail(f"expected input (batch, time>0, {self.input_size}), got shape {tuple(x.shape)}")
        if not self.bidirectional:
            lengths = None  # padding after the real steps cannot reach them in one direction
        if return_steps or self.impl_used == "custom":
            out, steps = self._forward_custom(x, lengths, return_steps)
            return (out, steps) if return_steps else out
        return self._forward_fused(x, lengths)

    @staticmethod
    def _reverse_index(lengths: Optional[Tensor], steps: int, like: Tensor) -> Optional[Tensor]:
        """(T, B) time indices that reverse each sequence within its length, padding left in place."""
        if lengths is None:
            return None
        t = torch.arange(steps, device=like.device)[:, None]  # (T, 1)
        real = lengths.to(like.device)[None, :]  # (1, B)
        return torch.where(t < real, real - 1 - t, t)  # (T, B)

    @staticmethod
    def _reverse(seq: Tensor, index: Optional[Tensor]) -> Tensor:
        """seq (T, B, F) read backwards in time; with an index from `_reverse_index`, per sequence."""
        if index is None:
            return seq.flip(0)
        return seq.gather(0, index[:, :, None].expand_as(seq))

    def _forward_custom(self, x: Tensor, lengths: Optional[Tensor],
                        return_steps: bool = False) -> tuple[Tensor, Optional[list[Tensor]]]:
        """The custom cells; with return_steps the last forward layer loops `step` under autograd, so
        that its h_t exist as tensors (the others, and every layer otherwise, use `sequence`)."""
        seq = x.transpose(0, 1)  # (B, T, I) -> (T, B, I), time-major
        calls = sum(bptt.compiled_calls.values())
        index = self._reverse_index(lengths, seq.shape[0], seq) if self.bidirectional else None
        last = self.num_layers - 1
        per_step, compiled = not self.bptt, self.compiled
        steps = None
        for level, layer in enumerate(self.layers):
            if return_steps and level == last:
                steps, _ = layer(seq)
                out = torch.stack(steps, 0)  # T x (B, H) -> (T, B, H)
            else:
                out = layer.sequence(seq, per_step, compiled)
            if self.bidirectional:
                backward = self.reverse_layers[level].sequence(self._reverse(seq, index), per_step, compiled)
                out = torch.cat((out, self._reverse(backward, index)), 2)  # back in forward time order: (T, B, 2H)
            if level < last:
                seq = F.dropout(out, self.dropout, self.training)
        if not return_steps and sum(bptt.compiled_calls.values()) > calls:
            self.compiled_build = native.build_name()
        return out.transpose(0, 1), steps  # (T, B, D*H) -> (B, T, D*H)

    def fused_weights(self) -> list[Tensor]:
        """The parameters in the flat order torch's fused kernels take: per cell w_ih, w_hh, b_ih, b_hh."""
        return [p for cell in self.cells for p in (cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)]

    def _forward_fused(self, x: Tensor, lengths: Optional[Tensor]) -> Tensor:
        h0 = x.new_zeros(self.num_layers * self.directions, x.shape[0], self.hidden_size)
        # has_biases, num_layers, dropout, train, bidirectional
        flags = (True, self.num_layers, self.dropout, self.training, self.bidirectional)
        if lengths is None:
            return self._fused_call((x,), h0, flags + (True,))  # batch_first
        # A packed sequence makes the backward direction start at each sequence's last real step.
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        data = self._fused_call((packed.data, packed.batch_sizes), h0, flags)
        out, _ = nn.utils.rnn.pad_packed_sequence(
            nn.utils.rnn.PackedSequence(data, packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices),
            batch_first=True, total_length=x.shape[1])
        return out

    def _fused_call(self, inputs: tuple, h0: Tensor, flags: tuple) -> Tensor:
        """torch's fused kernel on `inputs` (padded x, or packed data and batch sizes); its output only."""
        if self.cell_type == "lstm":
            kernel, hx = torch.lstm, (h0, h0)  # h and c both start at zero
        elif self.cell_type == "gru":
            kernel, hx = torch.gru, h0
        else:
            kernel = torch.rnn_relu if self.activation_names["candidate"] == "relu" else torch.rnn_tanh
            hx = h0
        return kernel(*inputs, hx, self.fused_weights(), *flags)[0]

    def extra_repr(self) -> str:
        return f"cell={self.cell_type}, dropout={self.dropout}, impl_used={self.impl_used}"


# --------------------------------------------------------------------------- config


def build_stack(model_cfg: Any, input_size: int) -> RecurrentStack:
    """A RecurrentStack from `cfg.model` (DictConfig or dataclass, read by attribute).

    Keys other than `cell` and `hidden_size` may be absent and then take the schema's defaults
    (actstudy/schema.py); every bad value raises a one-line ValueError.
    """
    missing = object()

    def read(source: Any, key: str, default: Any = missing) -> Any:
        value = getattr(source, key, missing) if source is not None else missing
        return default if value is missing else value

    for key in ("cell", "hidden_size"):
        if read(model_cfg, key) is missing:
            _fail(f"model.{key} is missing")
    activation = read(model_cfg, "activation", None)
    slope = read(activation, "negative_slope", None)
    keys = ("num_layers", "dropout", "forget_bias", "peephole", "coupled_gates", "init", "impl", "variant",
            "bidirectional")
    return RecurrentStack(
        cell=model_cfg.cell,
        input_size=input_size,
        hidden_size=model_cfg.hidden_size,
        gate=read(activation, "gate", None),
        candidate=read(activation, "candidate", None),
        output=read(activation, "output", None),
        negative_slope=DEFAULT_NEGATIVE_SLOPE if slope is None else slope,
        **{key: read(model_cfg, key, getattr(MODEL_DEFAULTS, key)) for key in keys},
    )
