"""Optimizer settings a paper's setting needs: RMSProp's smoothing and the start of its running mean."""

from __future__ import annotations

import math

import pytest
import torch
import yaml
from omegaconf import OmegaConf

from conftest import TINY, read_run

from actstudy import rundir
from actstudy.config import compose, plain
from actstudy.optimizers import build_optimizer


def one_step(**optim) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(start, gradient, after one step) of a 3-entry parameter under RMSProp with these settings."""
    cfg = OmegaConf.create({"name": "rmsprop", "lr": 0.01, "weight_decay": 0.0, "momentum": 0.0, **optim})
    param = torch.nn.Parameter(torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64))
    start = param.detach().clone()
    optimizer = build_optimizer(cfg, [param])
    param.grad = torch.tensor([0.3, -0.02, 1.0], dtype=torch.float64)
    optimizer.step()
    return start, param.grad, param.detach()


def test_rmsprop_defaults_are_torchs_and_take_the_tenfold_first_step():
    start, g, after = one_step()
    # v1 = (1 - 0.99) g^2, so the step is lr g / (0.1 |g| + eps): ten times lr, whatever g is
    torch.testing.assert_close(after, start - 0.01 * g / (0.1 * g.abs() + 1e-8))


def test_rmsprop_with_a_started_running_mean_takes_arjovskys_first_step():
    start, g, after = one_step(alpha=0.9, square_avg_init=1e-3)
    expected = start - 0.01 * g / ((0.9 * 1e-3 + 0.1 * g**2).sqrt() + 1e-8)
    torch.testing.assert_close(after, expected)
    # a small gradient now moves its weight by less than lr, where torch's default moves it by 10x lr
    assert abs(after[1] - start[1]) < 0.01


def test_the_started_mean_survives_a_checkpoint():
    cfg = OmegaConf.create({"name": "rmsprop", "lr": 0.01, "weight_decay": 0.0, "momentum": 0.5,
                            "alpha": 0.9, "square_avg_init": 1e-3})
    param = torch.nn.Parameter(torch.ones(2))
    optimizer = build_optimizer(cfg, [param])
    state = optimizer.state_dict()["state"][0]
    assert torch.equal(state["square_avg"], torch.full((2,), 1e-3)) and "momentum_buffer" in state
    restored = build_optimizer(OmegaConf.create({**cfg, "square_avg_init": 0.0}), [torch.nn.Parameter(torch.ones(2))])
    restored.load_state_dict(optimizer.state_dict())
    assert torch.equal(restored.state_dict()["state"][0]["square_avg"], state["square_avg"])


def test_the_new_keys_at_their_defaults_keep_every_run_id():
    base = plain(compose([*TINY, "optim=rmsprop"]))
    explicit = plain(compose([*TINY, "optim=rmsprop", "optim.alpha=0.99", "optim.square_avg_init=0"]))
    assert rundir.run_id(explicit) == rundir.run_id(base)
    assert "alpha" not in rundir.identity_tree(base)["optim"]
    for override in ("optim.alpha=0.9", "optim.square_avg_init=0.001"):
        assert rundir.run_id(plain(compose([*TINY, "optim=rmsprop", override]))) != rundir.run_id(base), override


def test_a_run_in_arjovskys_setting_trains_and_records_it(cli, tmp_path):
    """RMSProp as Arjovsky et al. ran it, element-wise clipping, Glorot init: the run completes, its config
    holds every setting, and the first update is small where torch's default RMSProp jumps by ~10x lr."""
    first_loss = {}
    for name, extra in (("paper", ["optim.alpha=0.9", "optim.square_avg_init=1e-3", "model.init=glorot"]),
                        ("torch", ["model.init=glorot"])):
        result = cli("run", *TINY, "optim=rmsprop", "optim.lr=0.05", "train.clip_grad=null", "train.clip_value=1",
                     "train.max_updates=1", "train.eval_every=1", *extra, f"hydra.run.dir={tmp_path / name}", "-q")
        assert result.exit_code == 0, result.output
        metrics, _, summary = read_run(tmp_path / name)
        assert summary["status"] == "completed" and summary["updates"] == 1
        first_loss[name] = metrics["val_loss"].iloc[0]
    config = yaml.safe_load((tmp_path / "paper" / "config.yaml").read_text())
    assert config["optim"]["alpha"] == 0.9 and config["optim"]["square_avg_init"] == 1e-3
    assert config["model"]["init"] == "glorot"
    assert math.isfinite(first_loss["paper"]) and first_loss["paper"] != first_loss["torch"]


@pytest.mark.parametrize("cell,gates", [("lstm", 4), ("gru", 3), ("rnn", 1)])
def test_glorot_init_bounds_each_gate_block_by_its_own_fans_and_zeroes_the_biases(cell, gates):
    from actstudy.cells import RecurrentStack

    inputs, hidden = 3, 40
    stack = RecurrentStack(cell, inputs, hidden, 2, init="glorot", forget_bias=1.0 if cell == "lstm" else 0.0)
    for layer, stack_cell in enumerate(stack.cells):
        fan_in = inputs if layer == 0 else hidden
        for weight, fan in ((stack_cell.weight_ih, fan_in), (stack_cell.weight_hh, hidden)):
            bound = math.sqrt(6 / (fan + hidden))
            for block in weight.detach().chunk(gates, 0):
                assert block.abs().max() <= bound
                assert block.abs().max() > 0.9 * bound  # drawn up to the bound, not a narrower default
        bias = (stack_cell.bias_ih + stack_cell.bias_hh).detach()
        expected = torch.zeros_like(bias)
        if cell == "lstm":  # the forget gate's block (i, f, g, o order) keeps model.forget_bias
            expected[hidden:2 * hidden] = 1.0
        assert torch.equal(bias, expected)
