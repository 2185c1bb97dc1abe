"""The hand-written backward through time (actstudy/bptt.py) against the cells' own per-step autograd loop.

The per-step cells are pinned to torch.nn and to their equations in test_cells.py / test_variants.py; here
the fast path must give the same outputs and the same gradient for every parameter and the input, for every
activation in every slot, in float64 so that a wrong term cannot hide in rounding.
"""

import copy

import pytest
import torch

from actstudy.activations import ACTIVATIONS
from actstudy.cells import RecurrentStack

B, T, I, H = 3, 7, 4, 5
TOL = dict(atol=1e-9, rtol=1e-6)  # far below any wrong term
# torch's own hardsigmoid backward multiplies by 1/6 rounded to float32 even in float64, so autograd's
# reference is off by ~3e-8 relative per step for it; the registry uses the exact 1/6.
LOOSE = dict(atol=1e-7, rtol=1e-5)


def both_paths(stack: RecurrentStack):
    """(hand-written, per-step autograd) copies of one stack with the same weights, in float64."""
    fast = copy.deepcopy(stack).double()
    slow = copy.deepcopy(stack).double()
    slow.bptt = False
    return fast, slow


def outputs_and_grads(stack: RecurrentStack, x: torch.Tensor, lengths=None):
    stack.zero_grad()
    x = x.clone().requires_grad_(True)
    out = stack(x, lengths=lengths)
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(3), dtype=out.dtype)
    (out * weights).sum().backward()  # uneven weights: every step and unit gets its own gradient
    return out.detach(), x.grad, {name: p.grad.clone() for name, p in stack.named_parameters()}


def assert_same(fast: RecurrentStack, slow: RecurrentStack, x: torch.Tensor, lengths=None, tol=TOL):
    out, x_grad, grads = outputs_and_grads(fast, x, lengths)
    ref_out, ref_x_grad, ref_grads = outputs_and_grads(slow, x, lengths)
    torch.testing.assert_close(out, ref_out, **TOL)
    torch.testing.assert_close(x_grad, ref_x_grad, **tol)
    assert grads.keys() == ref_grads.keys()
    for name in grads:
        torch.testing.assert_close(grads[name], ref_grads[name], **tol, msg=lambda m: f"{name}: {m}")


def inputs(seed=0, steps=T):
    return torch.randn(B, steps, I, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


SLOTS = [("lstm", "gate"), ("lstm", "candidate"), ("lstm", "output"), ("gru", "gate"), ("gru", "candidate"),
         ("rnn", "candidate")]


@pytest.mark.parametrize("activation", list(ACTIVATIONS))
@pytest.mark.parametrize("cell,slot", SLOTS)
def test_every_activation_in_every_slot_matches_autograd(cell, slot, activation):
    torch.manual_seed(0)
    stack = RecurrentStack(cell, I, H, **{slot: activation}, negative_slope=0.2, impl="custom")
    # Larger weights than the default init, so that relu-like slots see both signs and saturating ones saturate.
    with torch.no_grad():
        for parameter in stack.parameters():
            parameter.mul_(3.0)
    assert_same(*both_paths(stack), inputs(), tol=LOOSE if activation == "hard_sigmoid" else TOL)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_two_bidirectional_layers_with_padding_match_autograd(cell):
    torch.manual_seed(1)
    stack = RecurrentStack(cell, I, H, num_layers=2, candidate="relu", bidirectional=True, impl="custom")
    lengths = torch.tensor([T, 3, 5])
    assert_same(*both_paths(stack), inputs(1), lengths)


def test_forget_bias_and_orthogonal_init_ride_along():
    torch.manual_seed(2)
    stack = RecurrentStack("lstm", I, H, gate="hard_sigmoid", candidate="elu", forget_bias=1.0, init="orthogonal",
                           impl="custom")
    assert_same(*both_paths(stack), inputs(2, steps=20), tol=LOOSE)


def test_a_single_step_sequence():
    torch.manual_seed(3)
    for cell in ("lstm", "gru", "rnn"):
        assert_same(*both_paths(RecurrentStack(cell, I, H, candidate="softsign", impl="custom")), inputs(3, steps=1))


@pytest.mark.parametrize("variant", ["vanilla", "cifg", "nfg", "fgr"])
def test_variants_without_a_hand_written_backward_still_train_under_autograd(variant):
    # Peepholes, coupled or missing gates and gate recurrence have no bptt function: `sequence` says so.
    stack = RecurrentStack("lstm", I, H, variant=variant, impl="custom")
    assert stack.layers[0].cell.sequence(torch.zeros(T, B, stack.layers[0].cell.weight_ih.shape[0])) is None
    assert_same(*both_paths(stack), inputs(4))


def test_float32_matches_torch_nn_lstm_on_a_long_sequence():
    # 300 steps in float32: the hand-written path stays within float tolerance of the fused kernel.
    torch.manual_seed(5)
    reference = torch.nn.LSTM(I, H, batch_first=True)
    stack = RecurrentStack("lstm", I, H, impl="custom")
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(stack.layers[0].cell, name).copy_(getattr(reference, f"{name}_l0"))
    x = torch.randn(B, 300, I)
    out = stack(x)
    ref = reference(x)[0]
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    out[:, -1].sum().backward()
    ref[:, -1].sum().backward()
    torch.testing.assert_close(stack.layers[0].cell.weight_hh.grad, reference.weight_hh_l0.grad, atol=1e-5, rtol=1e-4)
