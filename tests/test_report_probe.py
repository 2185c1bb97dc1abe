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
    assert stats["gate_saturated_fraction"] == pytest.approx(4 / 6)
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
        assert ("gate_saturated_fraction" in stats) == (cell == "gru")


def test_a_run_writes_activation_stats_at_every_probe(cli, tmp_path):
    run_dir = tmp_path / "run"
    result = cli("run", *TINY, "model.activation.candidate=relu", f"hydra.run.dir={run_dir}", "--quiet")
    assert result.exit_code == 0, result.output
    stats = pd.read_csv(run_dir / "activation_stats.csv")
    assert list(stats.columns) == ["epoch", "stat", "value"]
    assert sorted(stats.epoch.unique()) == [0, 1, 2]
    assert set(stats.stat) == {"gate_saturated_fraction", "candidate_dead_fraction", "mean_abs_cell_state"}
    fractions = stats[stats.stat != "mean_abs_cell_state"].value
    assert ((fractions >= 0) & (fractions <= 1)).all()
    assert (stats[stats.stat == "mean_abs_cell_state"].value > 0).all()
