"""Activation statistics on the probe batch (actstudy/probe.py): a hand-checked LSTM, and a real run."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from conftest import TINY
from actstudy.cells import RecurrentStack
from actstudy.probe import activation_stats, last_cell


def hand_set_lstm() -> RecurrentStack:
    """Input and recurrent weights zero, so every pre-activation is its bias and the numbers follow by hand.

    Two units. Gates i, f, o: biases 10, 0, −10 → i ≈ 1 and o ≈ 0 saturate, f = 0.5 does not: 4 of the 6
    gate outputs per step are saturated. Candidate relu with biases +1, −1: unit 1 always outputs 0 (dead).
    Cell state: c₁ = i·g = (1, 0), c₂ = f·c₁ + i·g = (1.5, 0): mean |c_t| = (1 + 0 + 1.5 + 0) / 4.
    """
    stack = RecurrentStack("lstm", input_size=1, hidden_size=2, gate="sigmoid", candidate="relu", output="tanh",
                           impl="custom")
    cell = last_cell(stack)
    with torch.no_grad():
        cell.weight_ih.zero_()
        cell.weight_hh.zero_()
        cell.bias_hh.zero_()
        # torch.nn.LSTM's layout: blocks i, f, g, o of hidden_size rows each
        cell.bias_ih.copy_(torch.tensor([10.0, 10.0, 0.0, 0.0, 1.0, -1.0, -10.0, -10.0]))
    return stack


def test_statistics_of_a_hand_set_lstm():
    stack = hand_set_lstm()
    stats = activation_stats(stack, torch.randn(3, 2, 1))
    # per gate: i ≈ 1 and o ≈ 0 saturated everywhere, f = 0.5 nowhere (a pooled figure would say 4/6)
    assert (stats["gate_saturated_fraction_i"], stats["gate_saturated_fraction_f"],
            stats["gate_saturated_fraction_o"]) == (1.0, 0.0, 1.0)
    assert stats["candidate_dead_fraction"] == pytest.approx(0.5)
    i = 1 / (1 + math.exp(-10))
    assert stats["mean_abs_cell_state"] == pytest.approx((i + 0.5 * i + i) / 4, rel=1e-5)
    assert "mean_abs_hidden_state" not in stats


def test_probe_puts_the_activations_back_even_when_the_forward_fails():
    stack = hand_set_lstm()
    cell = last_cell(stack)
    before = {slot: getattr(cell, slot) for slot in ("gate", "candidate", "output")}
    activation_stats(stack, torch.randn(2, 3, 1))
    with pytest.raises(ValueError):
        activation_stats(stack, torch.randn(2, 3, 5))  # wrong feature size
    assert {slot: getattr(cell, slot) for slot in before} == before
    assert stack.training  # the probe switches to eval mode only while it runs


def test_cells_without_a_cell_state_report_the_hidden_state():
    torch.manual_seed(0)
    for cell in ("gru", "rnn"):
        stack = RecurrentStack(cell, input_size=1, hidden_size=4)
        x = torch.randn(5, 6, 1)
        stats = activation_stats(stack, x)
        _, steps = stack(x, return_steps=True)
        assert stats["mean_abs_hidden_state"] == pytest.approx(float(torch.stack(steps).detach().abs().mean()))
        assert "mean_abs_cell_state" not in stats
        assert stats["candidate_dead_fraction"] == 0.0  # tanh is never exactly 0 here
        assert ("gate_saturated_fraction_r" in stats and "gate_saturated_fraction_z" in stats) == (cell == "gru")


def test_a_run_writes_activation_stats_at_every_probe(cli, tmp_path):
    run_dir = tmp_path / "run"
    result = cli("run", *TINY, "model.activation.candidate=relu", f"hydra.run.dir={run_dir}", "--quiet")
    assert result.exit_code == 0, result.output
    stats = pd.read_csv(run_dir / "activation_stats.csv")
    assert list(stats.columns) == ["epoch", "stat", "value"]
    assert sorted(stats.epoch.unique()) == [0, 1, 2]
    assert set(stats.stat) == {"gate_saturated_fraction_i", "gate_saturated_fraction_f", "gate_saturated_fraction_o",
                               "candidate_dead_fraction", "mean_abs_cell_state"}
    fractions = stats[stats.stat != "mean_abs_cell_state"].value
    assert ((fractions >= 0) & (fractions <= 1)).all()
    assert (stats[stats.stat == "mean_abs_cell_state"].value > 0).all()


def test_saturation_is_not_written_for_an_unbounded_gate_activation():
    stack = RecurrentStack("lstm", input_size=1, hidden_size=3, gate="relu", impl="custom")
    stats = activation_stats(stack, torch.randn(2, 4, 1))
    assert not any(k.startswith("gate_saturated") for k in stats)
    tanh_gates = activation_stats(RecurrentStack("gru", input_size=1, hidden_size=3, gate="tanh"), torch.randn(2, 4, 1))
    assert set(k for k in tanh_gates if k.startswith("gate_saturated")) == {"gate_saturated_fraction_r",
                                                                             "gate_saturated_fraction_z"}


def test_a_variant_without_a_gate_reports_the_gates_it_has():
    stack = RecurrentStack("lstm", input_size=1, hidden_size=2, variant="nfg", impl="custom")
    stats = activation_stats(stack, torch.randn(2, 3, 1))
    assert {k for k in stats if k.startswith("gate_saturated")} == {"gate_saturated_fraction_i",
                                                                    "gate_saturated_fraction_o"}


def test_cell_state_gradient_of_a_hand_set_lstm():
    """One unit, zero weights: i = f = o = σ(0) = 1/2 and g = tanh(0) = 0 at every step, so c_t = 0 and
    h_t = o·tanh(c_t) = 0. Loss L = h_T (a sequence-level readout of weight 1, bias 0, MSE against
    target −1/2 gives dL/dh_T = 2·(h_T + 1/2) = 1). Then ∂L/∂c_T = o·(1 − tanh² c_T) = 1/2 and each step
    back multiplies by f = 1/2: ∂L/∂c_t = 2^−(T−t+1). ∂L/∂h_t is 0 before T (no weight carries h onward)."""
    from actstudy.model import SequenceModel
    from actstudy.probe import grad_profiles
    from actstudy.schema import ModelConfig
    from actstudy.tasks import build_task

    task = build_task({"name": "adding", "seq_len": 4, "train_size": 2, "val_size": 2, "test_size": 2}, 0)
    model = SequenceModel(ModelConfig(cell="lstm", hidden_size=1, impl="custom"), 1, 1, False, seq_len=4)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.head.weight.fill_(1.0)
    x, y = torch.zeros(1, 4, 1), torch.full((1, 1), -0.5)
    h, c = grad_profiles(model, task, x, y, "cpu")
    assert c == pytest.approx([1 / 16, 1 / 8, 1 / 4, 1 / 2])
    assert h == pytest.approx([0.0, 0.0, 0.0, 1.0])
    gru = SequenceModel(ModelConfig(cell="gru", hidden_size=2), 1, 1, False, seq_len=4)
    assert grad_profiles(gru, task, x, y, "cpu")[1] is None


def test_a_run_writes_the_cell_state_gradient_for_an_lstm_only(cli, tmp_path):
    for cell in ("lstm", "gru"):
        run_dir = tmp_path / cell
        assert cli("run", *TINY, f"model={cell}", f"hydra.run.dir={run_dir}", "--quiet").exit_code == 0
        grads = pd.read_csv(run_dir / "grad_by_step.csv")
        assert list(grads.columns) == ["epoch", "t", "grad_norm", "cell_grad_norm"]
        assert grads["cell_grad_norm"].notna().all() if cell == "lstm" else grads["cell_grad_norm"].isna().all()
