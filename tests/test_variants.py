"""Greff et al.'s LSTM variants, bidirectional stacks and the `all` readout: equations, torch.nn parity, CLI."""

import json

import pytest
import torch

from actstudy.cells import VARIANTS, LSTMCell, RecurrentLayer, RecurrentStack
from tests.conftest import TINY
from tests.test_cells import TOL, inputs, torch_module, weighted_loss

B, T, I, H = 3, 6, 4, 5


def sig(x):
    return 1.0 / (1.0 + torch.exp(-x))


# ----------------------------------------------------------------------------- variants by their equations


def lstm_by_hand(cell: LSTMCell, x: torch.Tensor, variant: str):
    """Greff et al.'s equations for `variant`, written out gate by gate from the cell's parameters.

    Independent of LSTMCell.step: plain matrix products per gate, no chunking of fused blocks.
    Returns every step's (i, f, g, o, c, h) with absent gates as tensors of ones.
    """
    names = cell.gate_names
    W = dict(zip(names, cell.weight_ih.detach().chunk(len(names))))
    U = dict(zip(names, cell.weight_hh.detach().chunk(len(names))))
    b = dict(zip(names, (cell.bias_ih + cell.bias_hh).detach().chunk(len(names))))
    p = dict(zip(cell.peephole_names, cell.peephole.detach())) if cell.peephole is not None else {}
    R = cell.gate_recurrence.detach() if cell.gate_recurrence is not None else None
    g_act = (lambda v: v) if variant == "niaf" else torch.tanh
    out_act = (lambda v: v) if variant == "noaf" else torch.tanh
    h = c = torch.zeros(x.shape[0], H, dtype=x.dtype)
    previous = torch.zeros(x.shape[0], 3 * H, dtype=x.dtype)
    ones = torch.ones_like(h)
    history = []
    for t in range(x.shape[1]):
        xt = x[:, t]

        def pre(name, state):
            value = xt @ W[name].T + h @ U[name].T + b[name]
            if name in p:
                value = value + p[name] * state
            if R is not None:
                row = {"i": 0, "f": 1, "o": 2}[name]
                value = value + previous @ R[row * H:(row + 1) * H].T
            return value

        i = sig(pre("i", c)) if "i" in names else ones
        if variant == "cifg":
            f = 1 - i
        else:
            f = sig(pre("f", c)) if "f" in names else ones
        g = g_act(xt @ W["g"].T + h @ U["g"].T + b["g"])
        c = f * c + i * g
        o = sig(pre("o", c)) if "o" in names else ones
        h = o * out_act(c)
        previous = torch.cat((i, f, o), 1)
        history.append((i, f, g, o, c, h))
    return history


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_each_variant_follows_its_equations(variant):
    torch.manual_seed(3)
    stack = RecurrentStack("lstm", I, H, variant=variant, impl="custom")
    cell = stack.cells[0]
    x = inputs()
    expected = lstm_by_hand(cell, x, variant)
    torch.testing.assert_close(stack(x), torch.stack([step[5] for step in expected], 1), **TOL)


@pytest.mark.parametrize(
    "variant,gate_names,peepholes,extra",
    [
        ("vanilla", "ifgo", "ifo", 0),
        ("nig", "fgo", "fo", 0),
        ("nfg", "igo", "io", 0),
        ("nog", "ifg", "if", 0),
        ("niaf", "ifgo", "ifo", 0),
        ("noaf", "ifgo", "ifo", 0),
        ("np", "ifgo", "", 0),
        ("cifg", "igo", "io", 0),
        ("fgr", "ifgo", "ifo", 9 * H * H),  # Greff et al.'s nine H x H gate-to-gate matrices
    ],
)
def test_a_variant_has_exactly_the_weights_it_uses(variant, gate_names, peepholes, extra):
    cell = RecurrentStack("lstm", I, H, variant=variant).cells[0]
    assert "".join(cell.gate_names) == gate_names and "".join(cell.peephole_names) == peepholes
    blocks = len(gate_names)
    expected = blocks * H * (I + H + 2) + len(peepholes) * H + extra
    assert sum(p.numel() for p in cell.parameters()) == expected


def run_cell_steps(cell: LSTMCell, x: torch.Tensor):
    state = cell.initial_state(x.shape[0], x)
    states = [state]
    for xt in x.unbind(1):
        _, state = cell(xt, state)
        states.append(state)
    return states


def test_nfg_cell_state_only_accumulates():
    # No forget gate: c_t = c_{t-1} + i * g, so every step adds a term bounded by |i * g| < 1.
    torch.manual_seed(0)
    cell = RecurrentStack("lstm", I, H, variant="nfg").cells[0]
    x = inputs()
    states = run_cell_steps(cell, x)
    for (h_prev, c_prev), (_, c), xt in zip(states[:-1], states[1:], x.unbind(1)):
        pre = dict(zip(cell.gate_names, (xt @ cell.weight_ih.T + cell.bias_ih + cell.bias_hh
                                         + h_prev @ cell.weight_hh.T).chunk(3, 1)))
        i = torch.sigmoid(pre["i"] + cell.peephole[0] * c_prev)
        torch.testing.assert_close(c - c_prev, i * torch.tanh(pre["g"]), **TOL)


def test_cifg_forget_gate_is_one_minus_input_gate():
    torch.manual_seed(0)
    stack = RecurrentStack("lstm", I, H, variant="cifg")
    history = lstm_by_hand(stack.cells[0], inputs(), "cifg")
    states = run_cell_steps(stack.cells[0], inputs())
    for (i, f, g, _, c, _), (_, c_prev), (_, c_now) in zip(history, states[:-1], states[1:]):
        torch.testing.assert_close(f, 1 - i)
        torch.testing.assert_close(c_now, (1 - i) * c_prev + i * g, **TOL)


def test_nog_and_noaf_read_out_the_cell_state_directly():
    torch.manual_seed(0)
    for variant, read in (("nog", torch.tanh), ("noaf", None)):
        cell = RecurrentStack("lstm", I, H, variant=variant).cells[0]
        for h, c in run_cell_steps(cell, inputs())[1:]:
            if read is not None:
                torch.testing.assert_close(h, read(c), **TOL)  # o = 1
        if variant == "noaf":
            history = lstm_by_hand(cell, inputs(), "noaf")
            for i, f, g, o, c, h in history:
                torch.testing.assert_close(h, o * c, **TOL)


def test_fgr_with_zero_gate_recurrence_is_vanilla():
    torch.manual_seed(0)
    fgr = RecurrentStack("lstm", I, H, variant="fgr")
    vanilla = RecurrentStack("lstm", I, H, variant="vanilla")
    with torch.no_grad():
        for name, p in vanilla.cells[0].named_parameters():
            p.copy_(getattr(fgr.cells[0], name))
        fgr.cells[0].gate_recurrence.zero_()
    x = inputs()
    torch.testing.assert_close(fgr(x), vanilla(x), **TOL)
    fgr.cells[0].gate_recurrence.data.normal_()
    assert not torch.allclose(fgr(x), vanilla(x))


def test_fgr_state_carries_the_previous_gates():
    torch.manual_seed(0)
    cell = RecurrentStack("lstm", I, H, variant="fgr").cells[0]
    x = inputs()
    history = lstm_by_hand(cell, x, "fgr")
    for (i, f, _, o, _, _), state in zip(history, run_cell_steps(cell, x)[1:]):
        torch.testing.assert_close(state[2], torch.cat((i, f, o), 1), **TOL)


def test_np_is_torch_nn_lstm_and_runs_fused():
    stack = RecurrentStack("lstm", I, H, variant="np")
    assert stack.impl_used == "fused"
    assert all(RecurrentStack("lstm", I, H, variant=v).impl_used == "custom" for v in VARIANTS if v != "np")


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(variant="niaf", candidate="relu"), "variant=niaf fixes activation.candidate=identity"),
        (dict(variant="noaf", output="softsign"), "variant=noaf fixes activation.output=identity"),
        (dict(variant="np", peephole=True), "variant=np has no peepholes"),
        (dict(variant="nig", coupled_gates=True), "coupled_gates=true is variant=cifg"),
        (dict(variant="lstm2"), "unknown variant 'lstm2'; choose one of: vanilla, nig"),
        (dict(cell="gru", variant="cifg", candidate=None), "variant=cifg needs cell=lstm"),
    ],
)
def test_contradictions_are_refused_in_one_line(kwargs, message):
    kwargs = {"cell": "lstm", **kwargs}
    with pytest.raises(ValueError) as caught:
        RecurrentStack(input_size=I, hidden_size=H, **kwargs)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_variant_composes_with_the_activation_slots():
    torch.manual_seed(0)
    stack = RecurrentStack("lstm", I, H, variant="cifg", candidate="relu", gate="hard_sigmoid")
    cell = stack.cells[0]
    assert (cell.candidate.name, cell.gate.name, cell.coupled_gates) == ("relu", "hard_sigmoid", True)
    # NIAF with the identity asked for explicitly is the same experiment as NIAF alone.
    assert RecurrentStack("lstm", I, H, variant="niaf", candidate="identity").activation_names["candidate"] == "identity"


def test_forget_bias_lands_on_the_forget_gate_wherever_it_sits():
    cell = RecurrentStack("lstm", I, H, variant="nig", forget_bias=1.0).cells[0]  # blocks f, g, o
    torch.testing.assert_close(cell.bias_ih[:H], torch.ones(H))
    torch.testing.assert_close(cell.bias_hh[:H], torch.zeros(H))
    cifg = RecurrentStack("lstm", I, H, variant="cifg", forget_bias=1.0).cells[0]  # nothing to bias
    assert cifg.bias_ih.abs().max() <= 1 / H ** 0.5


# ----------------------------------------------------------------------------- bidirectional vs torch.nn


def torch_names(stack: RecurrentStack) -> list[str]:
    """torch.nn's parameter suffix for each cell of the stack, in the stack's cell order."""
    return [f"l{k}{suffix}" for k in range(stack.num_layers) for suffix in ("", "_reverse")[: stack.directions]]


def copy_from_torch(stack, module):
    with torch.no_grad():
        for cell, suffix in zip(stack.cells, torch_names(stack)):
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(cell, name).copy_(getattr(module, f"{name}_{suffix}"))


@pytest.mark.parametrize("impl", ["custom", "fused"])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("cell,candidate", [("lstm", "tanh"), ("gru", "tanh"), ("rnn", "tanh"), ("rnn", "relu")])
def test_stack_matches_torch_nn_outputs_final_states_and_every_gradient(cell, candidate, num_layers,
                                                                        bidirectional, impl):
    torch.manual_seed(0)
    module = torch_module(cell, candidate, num_layers, bidirectional=bidirectional)
    stack = RecurrentStack(cell, I, H, num_layers, candidate=candidate, bidirectional=bidirectional, impl=impl)
    assert stack.impl_used == impl
    copy_from_torch(stack, module)
    x = inputs()
    results = []
    for net in (module, stack):
        net.zero_grad()
        xg = x.clone().requires_grad_(True)
        out = net(xg)
        out = out[0] if isinstance(out, tuple) else out
        weighted_loss(out).backward()
        results.append((out, xg.grad))
    (expected, expected_dx), (got, got_dx) = results
    torch.testing.assert_close(got, expected, **TOL)
    torch.testing.assert_close(got_dx, expected_dx, **TOL)
    for c, suffix in zip(stack.cells, torch_names(stack)):
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            torch.testing.assert_close(getattr(c, name).grad, getattr(module, f"{name}_{suffix}").grad, **TOL)
    # Final states of the top level: the forward direction ends at step T-1, the backward one at step 0.
    h_n = module(x)[1]
    h_n = h_n[0] if cell == "lstm" else h_n
    torch.testing.assert_close(got[:, -1, :H].detach(), h_n[(num_layers - 1) * stack.directions].detach(), **TOL)
    if bidirectional:
        torch.testing.assert_close(got[:, 0, H:].detach(), h_n[-1].detach(), **TOL)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_layer_final_state_and_its_gradient_match_torch_nn(cell):
    torch.manual_seed(0)
    module = torch_module(cell, "tanh", 1)
    stack = RecurrentStack(cell, I, H, impl="custom")
    copy_from_torch(stack, module)
    layer: RecurrentLayer = stack.layers[0]
    x = inputs()
    _, final = layer(x.transpose(0, 1))
    _, expected = module(x)
    final = final if cell == "lstm" else (final,)
    expected = expected if cell == "lstm" else (expected,)
    loss = sum(weighted_loss(s) for s in final)
    loss_nn = sum(weighted_loss(s[0]) for s in expected)
    for s, e in zip(final, expected):
        torch.testing.assert_close(s, e[0], **TOL)
    grads = torch.autograd.grad(loss, list(layer.cell.parameters()))
    grads_nn = torch.autograd.grad(loss_nn, [module.weight_ih_l0, module.weight_hh_l0, module.bias_ih_l0,
                                             module.bias_hh_l0])
    for g, e in zip(grads, grads_nn):
        torch.testing.assert_close(g, e, **TOL)


@pytest.mark.parametrize("impl", ["custom", "fused"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_bidirectional_with_lengths_equals_each_sequence_alone(cell, impl):
    torch.manual_seed(0)
    stack = RecurrentStack(cell, I, H, 2, bidirectional=True, impl=impl).eval()
    x = inputs(batch=4, steps=7)
    lengths = torch.tensor([7, 3, 5, 1])
    padded = x.clone()
    for b, n in enumerate(lengths):
        padded[b, n:] = 99.0  # garbage after the real steps must not reach them
    out = stack(padded, lengths=lengths)
    for b, n in enumerate(lengths):
        alone = stack(x[b:b + 1, :n])
        torch.testing.assert_close(out[b:b + 1, :n], alone, **TOL)


def test_bidirectional_steps_are_the_forward_directions():
    torch.manual_seed(0)
    stack = RecurrentStack("gru", I, H, bidirectional=True)
    out, steps = stack(inputs(), return_steps=True)
    assert out.shape == (B, T, 2 * H) and len(steps) == T
    torch.testing.assert_close(torch.stack(steps, 1), out[..., :H])


# ----------------------------------------------------------------------------- through the CLI


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_variant_runs_end_to_end(cli, tmp_path, variant):
    result = cli("run", *TINY, f"model.variant={variant}", f"hydra.run.dir={tmp_path}")
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert summary["impl"] == ("fused" if variant == "np" else "custom")
    config = (tmp_path / "config.yaml").read_text()
    assert f"variant: {variant}" in config


def test_cifg_with_a_relu_candidate_is_one_experiment(cli, tmp_path):
    result = cli("run", *TINY, "model.variant=cifg", "model.activation.candidate=relu", f"hydra.run.dir={tmp_path}")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "completed"


def test_a_bad_variant_is_one_line_and_exit_2(cli, tmp_path):
    result = cli("run", *TINY, "model.variant=peephole", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.exit_code == 2
    assert "model.variant='peephole' is not valid; choose one of: vanilla, nig, nfg" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "run").exists()


def test_readout_all_on_a_per_step_task_is_refused(cli, tmp_path):
    result = cli("run", *TINY, "task=copy", "model.readout=all", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.exit_code == 2 and "model.readout=all needs one target per sequence" in result.output


def test_bidirectional_gru_with_readout_all_has_the_published_parameter_count(cli, tmp_path):
    # Greydanus & Kobak's MNIST-1D GRU: hidden 6, bidirectional, one linear layer over 40 steps: 5,134.
    result = cli("run", "model=gru", "task=mnist1d", "model.hidden_size=6", "model.bidirectional=true",
                 "model.readout=all", "task.train_size=200", "task.val_size=100", "task.test_size=100",
                 "train.epochs=1", "threads=1", f"hydra.run.dir={tmp_path}")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "summary.json").read_text())["params"] == 5134


def test_auto_runs_fused_and_matches_custom_on_the_same_seed(cli, tmp_path):
    summaries = {}
    for impl in ("auto", "custom"):
        result = cli("run", *TINY, f"model.impl={impl}", "seed=3", f"hydra.run.dir={tmp_path / impl}")
        assert result.exit_code == 0, result.output
        summaries[impl] = json.loads((tmp_path / impl / "summary.json").read_text())
    assert summaries["auto"]["impl"] == "fused" and summaries["custom"]["impl"] == "custom"
    for key in ("test", "test_last"):
        for value in ("loss", "metric"):
            assert summaries["auto"][key][value] == pytest.approx(summaries["custom"][key][value], rel=1e-4, abs=1e-6)
    assert summaries["auto"]["best_val_loss"] == pytest.approx(summaries["custom"]["best_val_loss"], rel=1e-4)


def test_the_probe_reads_the_forward_direction_of_the_last_level():
    from actstudy.probe import last_cell

    stack = RecurrentStack("gru", I, H, 2, bidirectional=True)
    assert last_cell(stack) is stack.layers[-1].cell
