"""Cells, layers and stacks: against torch.nn, against the equations, and fused against custom."""

from dataclasses import dataclass, field

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from actstudy.activations import resolve_activation
from actstudy.cells import GRUCell, LSTMCell, RecurrentStack, RNNCell, build_stack

B, T, I, H = 3, 6, 4, 5
TOL = dict(atol=1e-5, rtol=1e-5)

# (cell, candidate) pairs that torch.nn implements; rnn comes in both of nn.RNN's flavours.
TORCH_CONFIGS = [("lstm", "tanh"), ("gru", "tanh"), ("rnn", "tanh"), ("rnn", "relu")]


def inputs(seed: int = 0, batch: int = B, steps: int = T, features: int = I) -> torch.Tensor:
    return torch.randn(batch, steps, features, generator=torch.Generator().manual_seed(seed))


def weighted_loss(out: torch.Tensor) -> torch.Tensor:
    # Fixed, uneven weights so that every output element gets a different gradient.
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    return (out * weights).sum()


def torch_module(cell: str, candidate: str, num_layers: int, dropout: float = 0.0,
                 bidirectional: bool = False) -> nn.Module:
    kwargs = dict(input_size=I, hidden_size=H, num_layers=num_layers, batch_first=True, dropout=dropout,
                  bidirectional=bidirectional)
    if cell == "lstm":
        return nn.LSTM(**kwargs)
    if cell == "gru":
        return nn.GRU(**kwargs)
    return nn.RNN(nonlinearity=candidate, **kwargs)


def copy_from_torch(stack: RecurrentStack, module: nn.Module) -> None:
    with torch.no_grad():
        for k, cell in enumerate(stack.cells):
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(cell, name).copy_(getattr(module, f"{name}_l{k}"))


def grads_of(module: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.grad.clone() for name, p in module.named_parameters()}


def run_with_grads(module: nn.Module, x: torch.Tensor):
    """Output, input gradient and parameter gradients of weighted_loss."""
    module.zero_grad()
    x = x.clone().requires_grad_(True)
    result = module(x)
    out = result[0] if isinstance(result, tuple) else result
    weighted_loss(out).backward()
    return out.detach(), x.grad, grads_of(module)


# ----------------------------------------------------------------------------- torch.nn parity


@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("cell,candidate", TORCH_CONFIGS)
def test_custom_path_matches_torch_nn(cell, candidate, num_layers):
    reference = torch_module(cell, candidate, num_layers)
    stack = RecurrentStack(cell, I, H, num_layers, candidate=candidate, impl="custom")
    copy_from_torch(stack, reference)
    assert stack.impl_used == "custom"
    x = inputs()

    out, x_grad, grads = run_with_grads(stack, x)
    ref_out, ref_x_grad, ref_grads = run_with_grads(reference, x)

    torch.testing.assert_close(out, ref_out, **TOL)
    # The last step's output is the final hidden state of the top layer.
    final_h = reference(x)[1]
    final_h = final_h[0] if cell == "lstm" else final_h
    torch.testing.assert_close(out[:, -1], final_h[-1].detach(), **TOL)
    torch.testing.assert_close(x_grad, ref_x_grad, **TOL)
    for k in range(num_layers):
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            torch.testing.assert_close(grads[f"layers.{k}.cell.{name}"], ref_grads[f"{name}_l{k}"], **TOL)


@pytest.mark.parametrize("cell,candidate", TORCH_CONFIGS)
def test_default_init_draws_the_same_numbers_as_torch_nn(cell, candidate):
    torch.manual_seed(7)
    stack = RecurrentStack(cell, I, H, 2, candidate=candidate)
    torch.manual_seed(7)
    reference = torch_module(cell, candidate, 2)
    for k, stack_cell in enumerate(stack.cells):
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            torch.testing.assert_close(getattr(stack_cell, name), getattr(reference, f"{name}_l{k}"), rtol=0, atol=0)


def test_parameter_names_and_shapes_follow_torch_nn():
    shapes = {name: tuple(p.shape) for name, p in RecurrentStack("lstm", I, H, 2).named_parameters()}
    assert shapes == {
        "layers.0.cell.weight_ih": (4 * H, I), "layers.0.cell.weight_hh": (4 * H, H),
        "layers.0.cell.bias_ih": (4 * H,), "layers.0.cell.bias_hh": (4 * H,),
        "layers.1.cell.weight_ih": (4 * H, H), "layers.1.cell.weight_hh": (4 * H, H),
        "layers.1.cell.bias_ih": (4 * H,), "layers.1.cell.bias_hh": (4 * H,),
    }
    assert RecurrentStack("gru", I, H).cells[0].weight_hh.shape == (3 * H, H)
    assert RecurrentStack("rnn", I, H).cells[0].weight_hh.shape == (H, H)


# ----------------------------------------------------------------------------- fused vs custom


@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("cell,candidate", TORCH_CONFIGS)
def test_fused_and_custom_paths_agree_on_the_same_weights(cell, candidate, num_layers):
    fused = RecurrentStack(cell, I, H, num_layers, candidate=candidate, forget_bias=1.0 if cell == "lstm" else 0.0)
    assert fused.impl_used == "fused"
    custom = RecurrentStack(cell, I, H, num_layers, candidate=candidate, impl="custom")
    custom.load_state_dict(fused.state_dict())  # one set of parameters, two ways to compute
    x = inputs()

    out, x_grad, grads = run_with_grads(fused, x)
    ref_out, ref_x_grad, ref_grads = run_with_grads(custom, x)

    torch.testing.assert_close(out, ref_out, **TOL)
    torch.testing.assert_close(x_grad, ref_x_grad, **TOL)
    assert grads.keys() == ref_grads.keys()
    for name in grads:
        torch.testing.assert_close(grads[name], ref_grads[name], **TOL)


@pytest.mark.parametrize(
    "config,expected",
    [
        (dict(cell="lstm"), "fused"),
        (dict(cell="lstm", forget_bias=1.0, init="orthogonal", dropout=0.2, num_layers=2), "fused"),
        (dict(cell="lstm", candidate="relu"), "custom"),
        (dict(cell="lstm", gate="hard_sigmoid"), "custom"),
        (dict(cell="lstm", output="identity"), "custom"),
        (dict(cell="lstm", peephole=True), "custom"),
        (dict(cell="lstm", coupled_gates=True), "custom"),
        (dict(cell="lstm", impl="custom"), "custom"),
        (dict(cell="gru"), "fused"),
        (dict(cell="gru", candidate="leaky_relu"), "custom"),
        (dict(cell="rnn", candidate="relu", init="irnn"), "fused"),
        (dict(cell="rnn", candidate="elu"), "custom"),
    ],
)
def test_auto_picks_fused_exactly_when_the_kernel_computes_the_config(config, expected):
    assert RecurrentStack(input_size=I, hidden_size=H, **config).impl_used == expected


@pytest.mark.parametrize(
    "config,reason",
    [
        (dict(cell="lstm", candidate="relu"), "hard-codes candidate=tanh, not candidate=relu"),
        (dict(cell="lstm", peephole=True), "no peephole"),
        (dict(cell="lstm", coupled_gates=True), "no coupled"),
        (dict(cell="gru", gate="hard_sigmoid"), "hard-codes gate=sigmoid"),
        (dict(cell="rnn", candidate="leaky_relu"), "tanh or relu only"),
    ],
)
def test_impl_fused_refuses_a_config_it_cannot_compute(config, reason):
    with pytest.raises(ValueError, match=reason) as caught:
        RecurrentStack(input_size=I, hidden_size=H, impl="fused", **config)
    assert "\n" not in str(caught.value) and "impl=fused" in str(caught.value)


# ----------------------------------------------------------------------------- the equations


def lstm_by_hand(cell: LSTMCell, x: torch.Tensor, gate, candidate, output) -> torch.Tensor:
    """Reference §1, written out gate by gate with explicit per-gate matrices."""
    blocks = dict(zip(cell.gate_names, range(len(cell.gate_names))))

    def pre(name, x_t, h):
        rows = slice(blocks[name] * H, (blocks[name] + 1) * H)
        return (x_t @ cell.weight_ih[rows].T + cell.bias_ih[rows]
                + h @ cell.weight_hh[rows].T + cell.bias_hh[rows])

    p = dict(zip(cell.peephole_names, cell.peephole)) if cell.peephole is not None else {}
    zero = torch.zeros(H)
    h, c, hs = torch.zeros(x.shape[0], H), torch.zeros(x.shape[0], H), []
    for t in range(x.shape[1]):
        x_t = x[:, t]
        i = gate(pre("i", x_t, h) + p.get("i", zero) * c)
        f = 1 - i if cell.coupled_gates else gate(pre("f", x_t, h) + p.get("f", zero) * c)
        g = candidate(pre("g", x_t, h))
        c = f * c + i * g
        o = gate(pre("o", x_t, h) + p.get("o", zero) * c)
        h = o * output(c)
        hs.append(h)
    return torch.stack(hs, 1)


def gru_by_hand(cell: GRUCell, x: torch.Tensor, gate, candidate) -> torch.Tensor:
    W_r, W_z, W_n = cell.weight_ih.chunk(3)
    U_r, U_z, U_n = cell.weight_hh.chunk(3)
    b_ir, b_iz, b_in = cell.bias_ih.chunk(3)
    b_hr, b_hz, b_hn = cell.bias_hh.chunk(3)
    h, hs = torch.zeros(x.shape[0], H), []
    for t in range(x.shape[1]):
        x_t = x[:, t]
        r = gate(x_t @ W_r.T + b_ir + h @ U_r.T + b_hr)
        z = gate(x_t @ W_z.T + b_iz + h @ U_z.T + b_hz)
        n = candidate(x_t @ W_n.T + b_in + r * (h @ U_n.T + b_hn))
        h = (1 - z) * n + z * h
        hs.append(h)
    return torch.stack(hs, 1)


@pytest.mark.parametrize("peephole", [False, True])
@pytest.mark.parametrize("coupled_gates", [False, True])
@pytest.mark.parametrize(
    "gate,candidate,output",
    [("sigmoid", "tanh", "tanh"), ("hard_sigmoid", "relu", "softsign"), ("sigmoid", "leaky_relu", "identity")],
)
def test_lstm_follows_its_equations(gate, candidate, output, peephole, coupled_gates):
    stack = RecurrentStack("lstm", I, H, gate=gate, candidate=candidate, output=output, negative_slope=0.2,
                           peephole=peephole, coupled_gates=coupled_gates, impl="custom")
    x = inputs()
    act = {slot: resolve_activation(name, 0.2) for slot, name in
           dict(gate=gate, candidate=candidate, output=output).items()}
    with torch.no_grad():
        expected = lstm_by_hand(stack.cells[0], x, act["gate"], act["candidate"], act["output"])
        torch.testing.assert_close(stack(x), expected, **TOL)


@pytest.mark.parametrize("gate,candidate", [("sigmoid", "tanh"), ("hard_sigmoid", "leaky_relu"), ("softsign", "relu")])
def test_gru_follows_its_equations(gate, candidate):
    stack = RecurrentStack("gru", I, H, gate=gate, candidate=candidate, negative_slope=0.2, impl="custom")
    x = inputs()
    with torch.no_grad():
        expected = gru_by_hand(stack.cells[0], x, resolve_activation(gate, 0.2), resolve_activation(candidate, 0.2))
        torch.testing.assert_close(stack(x), expected, **TOL)


def test_rnn_with_relu_candidate_by_hand():
    cell = RNNCell(2, 2, candidate=resolve_activation("relu"))
    with torch.no_grad():
        cell.weight_ih.copy_(torch.tensor([[1.0, -1.0], [0.5, 2.0]]))
        cell.weight_hh.copy_(torch.tensor([[1.0, 0.0], [-2.0, 1.0]]))
        cell.bias_ih.copy_(torch.tensor([0.1, -0.2]))
        cell.bias_hh.copy_(torch.tensor([0.0, 0.1]))
    x1, x2 = torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, 1.0]])
    with torch.no_grad():
        h1, state = cell(x1)
        # W x1 + b = [1 - 2 + 0.1, 0.5 + 4 - 0.1] = [-0.9, 4.4] -> relu -> [0, 4.4]
        torch.testing.assert_close(h1, torch.tensor([[0.0, 4.4]]))
        h2, _ = cell(x2, state)
        # W x2 + U h1 + b = [-1 + 0 + 0.1, 2 + 4.4 - 0.1] = [-0.9, 6.3] -> [0, 6.3]
        torch.testing.assert_close(h2, torch.tensor([[0.0, 6.3]]))


def _one_unit_lstm(peephole: bool, coupled_gates: bool, **biases: float) -> LSTMCell:
    """A 1-input, 1-unit LSTM with zero weights: only the biases (and peepholes) act."""
    cell = LSTMCell(1, 1, peephole=peephole, coupled_gates=coupled_gates)
    with torch.no_grad():
        for p in cell.parameters():
            p.zero_()
        for name, value in biases.items():
            cell.bias_ih[cell.gate_names.index(name)] = value
    return cell


def test_coupled_forget_gate_is_one_minus_input_gate_by_hand():
    cell = _one_unit_lstm(False, True, i=torch.log(torch.tensor(3.0)).item())  # i = sigmoid(ln 3) = 0.75
    assert cell.gate_names == ("i", "g", "o") and cell.weight_ih.shape == (3, 1)
    with torch.no_grad():
        cell.bias_ih[1] = 10.0  # g = tanh(10), close to 1
        h, (_, c) = cell(torch.zeros(1, 1), (torch.zeros(1, 1), torch.tensor([[2.0]])))
    g = torch.tanh(torch.tensor(10.0))
    # c = f*c_prev + i*g with f = 1 - i = 0.25
    torch.testing.assert_close(c, (0.25 * 2.0 + 0.75 * g).reshape(1, 1))
    torch.testing.assert_close(h, 0.5 * torch.tanh(c))  # o = sigmoid(0) = 0.5


def test_peepholes_by_hand():
    cell = _one_unit_lstm(True, False)
    assert cell.peephole.shape == (3, 1) and cell.peephole_names == ("i", "f", "o")
    ln3 = torch.log(torch.tensor(3.0)).item()
    with torch.no_grad():
        cell.bias_ih[2] = 10.0                                 # g = tanh(10)
        cell.peephole.copy_(torch.tensor([[ln3 / 2], [-ln3 / 2], [0.5]]))  # i, f see c_prev = 2; o sees c
        h, (_, c) = cell(torch.zeros(1, 1), (torch.zeros(1, 1), torch.tensor([[2.0]])))
    g = torch.tanh(torch.tensor(10.0))
    i, f = 0.75, 0.25  # sigmoid(+ln 3), sigmoid(-ln 3)
    expected_c = f * 2.0 + i * g
    torch.testing.assert_close(c, expected_c.reshape(1, 1))
    torch.testing.assert_close(h, (torch.sigmoid(0.5 * expected_c) * torch.tanh(expected_c)).reshape(1, 1))


def test_zero_peepholes_equal_the_plain_lstm():
    plain = RecurrentStack("lstm", I, H, 2)
    peep = RecurrentStack("lstm", I, H, 2, peephole=True)
    with torch.no_grad():
        for plain_cell, peep_cell in zip(plain.cells, peep.cells):
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(peep_cell, name).copy_(getattr(plain_cell, name))
            peep_cell.peephole.zero_()
        x = inputs()
        torch.testing.assert_close(peep(x), plain(x), **TOL)
        peep.cells[0].peephole.fill_(0.5)
        assert not torch.allclose(peep(x), plain(x), **TOL)


def test_coupled_gates_drop_the_forget_weights():
    plain = sum(p.numel() for p in RecurrentStack("lstm", I, H).parameters())
    cifg = sum(p.numel() for p in RecurrentStack("lstm", I, H, coupled_gates=True).parameters())
    assert plain - cifg == H * I + H * H + 2 * H
    cell = RecurrentStack("lstm", I, H, coupled_gates=True, peephole=True).cells[0]
    assert cell.peephole.shape == (2, H) and cell.peephole_names == ("i", "o")


SLOT_CASES = [("lstm", "gate"), ("lstm", "candidate"), ("lstm", "output"),
              ("gru", "gate"), ("gru", "candidate"), ("rnn", "candidate")]


@pytest.mark.parametrize("cell,slot", SLOT_CASES)
def test_every_slot_honours_its_activation(cell, slot):
    default = RecurrentStack(cell, I, H, impl="custom")
    swapped = RecurrentStack(cell, I, H, **{slot: "identity"})
    assert swapped.impl_used == "custom"
    swapped.load_state_dict(default.state_dict())
    with torch.no_grad():
        x = inputs()
        assert (swapped(x) - default(x)).abs().max() > 1e-3


# ----------------------------------------------------------------------------- return_steps


def total_step_grads_by_hand(stack: RecurrentStack, x: torch.Tensor, loss_fn) -> list[torch.Tensor]:
    """dL/dh_t of the top layer: add a zero leaf to every h_t where it feeds the next step."""
    seq, leaves = x.transpose(0, 1), []
    top = len(stack.cells) - 1
    for k, cell in enumerate(stack.cells):
        state, hs = None, []
        for x_t in seq.unbind(0):
            h, state = cell(x_t, state)
            if k == top:
                leaf = torch.zeros_like(h, requires_grad=True)
                leaves.append(leaf)
                h = h + leaf
                state = (h, state[1]) if isinstance(state, tuple) else h
            hs.append(h)
        seq = torch.stack(hs)
    out = seq.transpose(0, 1)
    return list(torch.autograd.grad(loss_fn(out), leaves))


@pytest.mark.parametrize(
    "config",
    [
        dict(cell="lstm"),                                   # fused config: steps come from the custom path
        dict(cell="lstm", peephole=True, candidate="relu"),
        dict(cell="gru", num_layers=2),
        dict(cell="rnn", candidate="relu", num_layers=2),
    ],
)
def test_return_steps_gives_the_total_gradient_wrt_each_hidden_state(config):
    stack = RecurrentStack(input_size=I, hidden_size=H, **config)
    impl_before = stack.impl_used
    x = inputs()

    def last_step_loss(out):
        return weighted_loss(out[:, -1])

    out, steps = stack(x, return_steps=True)
    assert stack.impl_used == impl_before
    assert len(steps) == T and all(s.shape == (B, H) for s in steps)
    torch.testing.assert_close(out, stack(x), **TOL)
    got = torch.autograd.grad(last_step_loss(out), steps)
    expected = total_step_grads_by_hand(stack, x, last_step_loss)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, **TOL)
    # The loss reads only the last step, so early gradients exist only through the recurrence.
    assert got[0].abs().sum() > 0


def test_return_steps_with_a_loss_on_every_step():
    stack = RecurrentStack("lstm", I, H, coupled_gates=True)
    x = inputs()
    out, steps = stack(x, return_steps=True)
    got = torch.autograd.grad(weighted_loss(out), steps)
    for g, e in zip(got, total_step_grads_by_hand(stack, x, weighted_loss)):
        torch.testing.assert_close(g, e, **TOL)


# ----------------------------------------------------------------------------- init


@pytest.mark.parametrize("cell,blocks", [("lstm", 4), ("gru", 3), ("rnn", 1)])
def test_orthogonal_init_makes_each_gate_block_orthogonal(cell, blocks):
    stack = RecurrentStack(cell, I, H, 2, init="orthogonal")
    for stack_cell in stack.cells:
        chunks = stack_cell.weight_hh.detach().chunk(blocks, 0)
        assert len(chunks) == blocks
        for block in chunks:
            torch.testing.assert_close(block @ block.T, torch.eye(H), **TOL)


def test_irnn_init_is_identity_recurrence_and_zero_bias():
    stack = RecurrentStack("rnn", I, H, 2, candidate="relu", init="irnn")
    for cell in stack.cells:
        torch.testing.assert_close(cell.weight_hh.detach(), torch.eye(H), rtol=0, atol=0)
        assert not cell.bias_ih.any() and not cell.bias_hh.any()
        assert cell.weight_ih.abs().sum() > 0


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_irnn_init_needs_an_rnn(cell):
    with pytest.raises(ValueError, match=f"init=irnn needs cell=rnn, got cell={cell}"):
        RecurrentStack(cell, I, H, init="irnn")


def test_forget_bias_sets_only_the_forget_chunk():
    torch.manual_seed(3)
    plain = RecurrentStack("lstm", I, H, 2)
    torch.manual_seed(3)
    biased = RecurrentStack("lstm", I, H, 2, forget_bias=1.0)
    forget = slice(H, 2 * H)
    for plain_cell, cell in zip(plain.cells, biased.cells):
        torch.testing.assert_close(cell.bias_ih[forget].detach(), torch.ones(H))
        torch.testing.assert_close(cell.bias_hh[forget].detach(), torch.zeros(H))
        others = torch.ones(4 * H, dtype=torch.bool)
        others[forget] = False
        torch.testing.assert_close(cell.bias_ih[others], plain_cell.bias_ih[others])
        torch.testing.assert_close(cell.weight_hh, plain_cell.weight_hh)
    # reset_parameters applies it again.
    with torch.no_grad():
        biased.cells[0].bias_ih.zero_()
    biased.reset_parameters()
    torch.testing.assert_close(biased.cells[0].bias_ih[forget].detach(), torch.ones(H))


# ----------------------------------------------------------------------------- dropout


@pytest.mark.parametrize("impl", ["fused", "custom"])
def test_dropout_between_layers_only_in_training(impl):
    stack = RecurrentStack("lstm", I, H, 2, dropout=0.5, impl=impl)
    no_dropout = RecurrentStack("lstm", I, H, 2, impl=impl)
    no_dropout.load_state_dict(stack.state_dict())
    x = inputs()
    with torch.no_grad():
        stack.train()
        first, second = stack(x), stack(x)
        assert not torch.allclose(first, second)
        # Never after the last layer: the output itself has no dropped (zeroed) units.
        assert (first != 0).all()
        stack.eval()
        torch.testing.assert_close(stack(x), no_dropout(x), **TOL)
        torch.testing.assert_close(stack(x), stack(x), rtol=0, atol=0)


@pytest.mark.parametrize("impl", ["fused", "custom"])
def test_single_layer_has_nothing_to_drop(impl):
    stack = RecurrentStack("gru", I, H, 1, dropout=0.5, impl=impl)
    x = inputs()
    with torch.no_grad():
        trained = stack.train()(x)
        torch.testing.assert_close(trained, stack.eval()(x), **TOL)


# ----------------------------------------------------------------------------- build_stack


@dataclass
class ActivationCfg:
    gate: str = "sigmoid"
    candidate: str = "tanh"
    output: str = "tanh"
    negative_slope: float = 0.01


@dataclass
class ModelCfg:
    cell: str = "lstm"
    hidden_size: int = H
    num_layers: int = 1
    dropout: float = 0.0
    activation: ActivationCfg = field(default_factory=ActivationCfg)
    forget_bias: float = 0.0
    peephole: bool = False
    coupled_gates: bool = False
    init: str = "default"
    impl: str = "auto"


def test_build_stack_reads_a_dataclass():
    cfg = ModelCfg(num_layers=2, dropout=0.1, peephole=True, forget_bias=1.0,
                   activation=ActivationCfg(candidate="leaky_relu", negative_slope=0.3))
    stack = build_stack(cfg, input_size=3)
    assert (stack.cell_type, stack.input_size, stack.hidden_size, stack.num_layers, stack.dropout) == ("lstm", 3, H, 2, 0.1)
    assert stack.impl_used == "custom"
    cell = stack.cells[0]
    assert cell.peephole is not None and cell.candidate.name == "leaky_relu"
    torch.testing.assert_close(cell.candidate(torch.tensor([-1.0])), torch.tensor([-0.3]))
    torch.testing.assert_close(cell.bias_ih[H:2 * H].detach(), torch.ones(H))


def test_build_stack_reads_a_dictconfig():
    cfg = OmegaConf.create({
        "cell": "rnn", "hidden_size": 7, "num_layers": 2, "dropout": 0.0,
        "activation": {"gate": "sigmoid", "candidate": "relu", "output": "tanh", "negative_slope": 0.01},
        "forget_bias": 0.0, "peephole": False, "coupled_gates": False, "init": "irnn", "impl": "fused",
    })
    stack = build_stack(cfg, input_size=2)
    assert stack.impl_used == "fused" and stack.hidden_size == 7 and stack.activation_names == {"candidate": "relu"}
    assert stack(torch.randn(2, 3, 2)).shape == (2, 3, 7)


def test_build_stack_defaults_absent_keys():
    stack = build_stack(OmegaConf.create({"cell": "gru", "hidden_size": 4}), input_size=1)
    assert stack.num_layers == 1 and stack.impl_used == "fused"


@pytest.mark.parametrize(
    "changes,message",
    [
        (dict(cell="lsmt"), "unknown cell 'lsmt'; choose one of: lstm, gru, rnn"),
        (dict(init="irnn"), "init=irnn needs cell=rnn, got cell=lstm"),
        (dict(init="xavier"), "unknown init 'xavier'; choose one of: default, orthogonal, glorot, irnn"),
        (dict(impl="fast"), "unknown impl 'fast'; choose one of: auto, fused, custom"),
        (dict(cell="gru", peephole=True), "peephole=true needs cell=lstm, got cell=gru"),
        (dict(cell="rnn", coupled_gates=True), "coupled_gates=true needs cell=lstm, got cell=rnn"),
        (dict(cell="gru", forget_bias=1.0), "forget_bias=1.0 needs cell=lstm"),
        (dict(activation=ActivationCfg(candidate="relux")),
         "activation.candidate: unknown activation 'relux'; choose one of: sigmoid, hard_sigmoid"),
        (dict(cell="gru", activation=ActivationCfg(output="relu")),
         "activation.output=relu has no effect on a gru cell (its slots: gate, candidate)"),
        (dict(cell="rnn", activation=ActivationCfg(gate="hard_sigmoid")), "activation.gate=hard_sigmoid has no effect"),
        (dict(impl="fused", activation=ActivationCfg(gate="hard_sigmoid")), "impl=fused is not possible"),
        (dict(hidden_size=0), "hidden_size must be a positive integer, got 0"),
        (dict(num_layers=1.5), "num_layers must be a positive integer, got 1.5"),
        (dict(dropout=1.0), "dropout must be in [0, 1), got 1.0"),
        (dict(peephole="yes"), "peephole must be true or false, got 'yes'"),
    ],
)
def test_build_stack_rejects_bad_values_in_one_line(changes, message):
    cfg = ModelCfg(**changes)
    with pytest.raises(ValueError) as caught:
        build_stack(cfg, input_size=2)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_build_stack_names_a_missing_key():
    with pytest.raises(ValueError, match="model.hidden_size is missing"):
        build_stack(OmegaConf.create({"cell": "lstm"}), input_size=1)


def test_forward_rejects_a_wrong_input_shape():
    stack = RecurrentStack("lstm", I, H)
    with pytest.raises(ValueError, match=r"expected input \(batch, time>0, 4\), got shape \(3, 6\)"):
        stack(torch.randn(3, 6))
