"""The hand-written backward through time against the cells' own per-step autograd loop.

Two implementations carry it: the compiled loop (actstudy/native/recurrent.cpp), which runs wherever it
can be built, and the Python loop (actstudy/bptt.py), the fallback. The per-step cells are pinned to
torch.nn and to their equations in test_cells.py / test_variants.py; here each fast path must give the
same outputs and the same gradient for every parameter and the input, for every activation in every slot
(and, compiled, in every Greff variant), in float64 so that a wrong term cannot hide in rounding.
"""

import copy
import logging
import os
import shutil

import pytest
import torch

from actstudy import bptt, native
from actstudy.activations import ACTIVATIONS
from actstudy.cells import VARIANTS, RecurrentStack

B, T, I, H = 3, 7, 4, 5
TOL = dict(atol=1e-9, rtol=1e-6)  # far below any wrong term
# torch's own hardsigmoid backward multiplies by 1/6 rounded to float32 even in float64, so autograd's
# reference is off by ~3e-8 relative per step for it; the registry uses the exact 1/6.
LOOSE = dict(atol=1e-7, rtol=1e-5)

COMPILER = (shutil.which(os.environ.get("CXX", "c++")) is not None and shutil.which("ninja") is not None
            and os.environ.get("ACTSTUDY_NATIVE") != "0")
PATHS = ["compiled", "python"]


def test_the_compiled_loop_builds_wherever_a_compiler_is_present():
    # Without this, a broken build would silently leave every test below on the Python loop.
    if not COMPILER:
        pytest.skip("no C++ compiler or ninja (or ACTSTUDY_NATIVE=0): the Python loop is the one that runs")
    assert native.load() is not None, native.unavailable_reason()


def _needs(path: str) -> None:
    if path == "compiled" and native.load() is None:
        pytest.skip(f"the compiled loop is unavailable here: {native.unavailable_reason()}")


def both_paths(stack: RecurrentStack, path: str = "compiled"):
    """(fast path, per-step autograd) copies of one stack with the same weights, in float64."""
    _needs(path)
    fast = copy.deepcopy(stack).double()
    fast.compiled = path == "compiled"
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
    calls = sum(bptt.compiled_calls.values())
    out, x_grad, grads = outputs_and_grads(fast, x, lengths)
    # The compiled path must really have run (once per layer and direction), and the Python one must not.
    ran = sum(bptt.compiled_calls.values()) - calls
    assert ran == (fast.num_layers * fast.directions if fast.compiled else 0)
    ref_out, ref_x_grad, ref_grads = outputs_and_grads(slow, x, lengths)
    assert torch.isfinite(ref_out).all() and torch.isfinite(ref_x_grad).all()  # else nothing is compared
    torch.testing.assert_close(out, ref_out, **TOL)
    torch.testing.assert_close(x_grad, ref_x_grad, **tol)
    assert grads.keys() == ref_grads.keys()
    for name in grads:
        torch.testing.assert_close(grads[name], ref_grads[name], **tol, msg=lambda m: f"{name}: {m}")


def inputs(seed=0, steps=T):
    return torch.randn(B, steps, I, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def enlarge(stack: RecurrentStack, factor: float = 3.0) -> RecurrentStack:
    # Larger weights than the default init, so that relu-like slots see both signs and saturating ones saturate.
    with torch.no_grad():
        for parameter in stack.parameters():
            parameter.mul_(factor)
    return stack


SLOTS = [("lstm", "gate"), ("lstm", "candidate"), ("lstm", "output"), ("gru", "gate"), ("gru", "candidate"),
         ("rnn", "candidate")]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("activation", list(ACTIVATIONS))
@pytest.mark.parametrize("cell,slot", SLOTS)
def test_every_activation_in_every_slot_matches_autograd(cell, slot, activation, path):
    torch.manual_seed(0)
    stack = enlarge(RecurrentStack(cell, I, H, **{slot: activation}, negative_slope=0.2, impl="custom"))
    assert_same(*both_paths(stack, path), inputs(), tol=LOOSE if activation == "hard_sigmoid" else TOL)


@pytest.mark.parametrize("negative_slope", [0.0, -0.5])
@pytest.mark.parametrize("cell,slot", SLOTS)
def test_leaky_relu_with_a_slope_that_is_not_positive_matches_autograd(cell, slot, negative_slope):
    # With a positive slope the compiled loop reads leaky_relu's derivative from the output's sign; at zero or
    # below that sign says nothing, and it must keep the pre-activations instead.
    torch.manual_seed(1)
    stack = enlarge(RecurrentStack(cell, I, H, **{slot: "leaky_relu"}, negative_slope=negative_slope, impl="custom"))
    assert_same(*both_paths(stack, "compiled"), inputs(1))


@pytest.mark.parametrize("features", [1, 2, 10, 40])
def test_the_input_projection_matches_linear_in_value_and_every_gradient(features):
    # bptt.project reorders dL/dW's matmul for skinny inputs: the numbers must be F.linear's.
    g = torch.Generator().manual_seed(features)
    x, weight, bias = (torch.randn(*shape, generator=g, dtype=torch.float64, requires_grad=True)
                       for shape in ((7, 5, features), (12, features), (12,)))
    torch.autograd.gradcheck(bptt.project, (x, weight, bias))
    out = bptt.project(x, weight, bias)
    torch.testing.assert_close(out, torch.nn.functional.linear(x, weight, bias))
    upstream = torch.randn(out.shape, generator=g, dtype=torch.float64)
    ours = torch.autograd.grad(out, (x, weight, bias), upstream)
    theirs = torch.autograd.grad(torch.nn.functional.linear(x, weight, bias), (x, weight, bias), upstream)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b)


NAMES = list(ACTIVATIONS)


@pytest.mark.parametrize("shift", range(len(NAMES)))
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_variant_with_every_activation_in_every_slot_matches_autograd(variant, shift):
    # Over the shifts each activation visits each slot once: gate, candidate and output take three
    # different ones at a time. A slot the variant fixes (NIAF's candidate, NOAF's output) keeps it.
    slots = {slot: NAMES[(shift + k) % len(NAMES)] for k, slot in enumerate(("gate", "candidate", "output"))}
    fixed = {"niaf": "candidate", "noaf": "output"}.get(variant)
    if fixed:
        del slots[fixed]
    torch.manual_seed(shift)
    # Default init, not enlarged: unbounded gates (relu, elu, ...) times peepholes would overflow the cell state.
    stack = enlarge(RecurrentStack("lstm", I, H, variant=variant, negative_slope=0.2, impl="custom", **slots), 1.0)
    tol = LOOSE if "hard_sigmoid" in slots.values() else TOL
    assert_same(*both_paths(stack), inputs(shift), tol=tol)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_two_bidirectional_layers_with_padding_match_autograd(cell, path):
    torch.manual_seed(1)
    stack = RecurrentStack(cell, I, H, num_layers=2, candidate="relu", bidirectional=True, impl="custom")
    lengths = torch.tensor([T, 3, 5])
    assert_same(*both_paths(stack, path), inputs(1), lengths)


@pytest.mark.parametrize("variant", ["vanilla", "cifg", "nig", "fgr"])
def test_bidirectional_variants_with_padding_match_autograd(variant):
    torch.manual_seed(6)
    stack = RecurrentStack("lstm", I, H, num_layers=2, variant=variant, bidirectional=True, impl="custom")
    assert_same(*both_paths(stack), inputs(6), torch.tensor([2, T, 4]))


@pytest.mark.parametrize("path", PATHS)
def test_forget_bias_and_orthogonal_init_ride_along(path):
    torch.manual_seed(2)
    stack = RecurrentStack("lstm", I, H, gate="hard_sigmoid", candidate="elu", forget_bias=1.0, init="orthogonal",
                           impl="custom")
    assert_same(*both_paths(stack, path), inputs(2, steps=20), tol=LOOSE)


@pytest.mark.parametrize("path", PATHS)
def test_a_single_step_sequence(path):
    torch.manual_seed(3)
    for cell in ("lstm", "gru", "rnn"):
        stack = RecurrentStack(cell, I, H, candidate="softsign", impl="custom")
        assert_same(*both_paths(stack, path), inputs(3, steps=1))
    for variant in ("vanilla", "fgr"):
        stack = RecurrentStack("lstm", I, H, variant=variant, impl="custom")
        assert_same(*both_paths(stack), inputs(3, steps=1))


def test_the_python_loop_leaves_greff_variants_to_autograd():
    # The Python loop has no peepholes, coupled or missing gates and gate recurrence: `sequence` says so.
    for variant in ("vanilla", "cifg", "nfg", "fgr"):
        cell = RecurrentStack("lstm", I, H, variant=variant, impl="custom").layers[0].cell
        assert cell.sequence(torch.zeros(T, B, I), compiled=False) is None
        stack = RecurrentStack("lstm", I, H, variant=variant, impl="custom")
        assert_same(*both_paths(stack, "python"), inputs(4))


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_each_compiled_activation_and_derivative_is_the_registry_s(name):
    _needs("compiled")
    module = native.load()
    entry = ACTIVATIONS[name].bind(0.2)
    codes, slopes = native.slot_codes(entry)
    # Both signs, the kinks at 0 and +-3 (hard_sigmoid), and softplus's switch to x above 20.
    x = torch.cat((torch.linspace(-25, 25, 501, dtype=torch.float64), torch.tensor([0.0, 3.0, -3.0, 20.0, 1e-9])))
    y, slope = module.activation(x, codes[0], slopes[0])
    torch.testing.assert_close(y, entry.fn(x), atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(slope, entry.grad(x), atol=1e-12, rtol=1e-12)


def test_compiled_float32_tanh_is_within_a_few_ulps_of_the_true_value():
    # In float32 the compiled loop computes tanh from one exp (and a series near 0), not Sleef's tanh.
    _needs("compiled")
    module = native.load()
    codes, slopes = native.slot_codes(ACTIVATIONS["tanh"])
    torch.manual_seed(0)
    x = torch.cat((torch.linspace(-12, 12, 200_001), torch.logspace(-30, 1.5, 20_001), -torch.logspace(-30, 1.5, 20_001),
                   torch.randn(100_001) * 3, torch.tensor([0.25, -0.25, 0.2499999, 0.0, 100.0, -100.0])))
    y, slope = module.activation(x, codes[0], slopes[0])
    true = torch.tanh(x.double())
    error = (y.double() - true).abs()
    assert error.max() < 1.2e-7  # torch's own float32 tanh: ~3e-8
    assert (error / true.abs())[x != 0].max() < 1e-6  # ~8 float32 ulps, however small x is
    torch.testing.assert_close(slope, 1 - y * y, atol=1.2e-7, rtol=0)  # the slope from the output, as before
    ends, _ = module.activation(torch.tensor([float("inf"), -float("inf"), float("nan")]), codes[0], slopes[0])
    assert ends[0] == 1 and ends[1] == -1 and ends[2].isnan()


@pytest.mark.parametrize("cell,candidate", [("lstm", "tanh"), ("gru", "tanh"), ("rnn", "tanh"), ("rnn", "relu")])
def test_float32_matches_torch_nn_on_a_long_sequence(cell, candidate):
    # 300 steps in float32: the custom path stays within float tolerance of torch's fused kernels.
    _needs("compiled")
    torch.manual_seed(5)
    if cell == "rnn":
        reference = torch.nn.RNN(I, H, nonlinearity=candidate, batch_first=True)
    else:
        reference = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell](I, H, batch_first=True)
    stack = RecurrentStack(cell, I, H, candidate=candidate, impl="custom")
    layer = stack.layers[0].cell
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(layer, name).copy_(getattr(reference, f"{name}_l0"))
    x = torch.randn(B, 300, I)
    calls = sum(bptt.compiled_calls.values())
    out = stack(x)
    assert sum(bptt.compiled_calls.values()) == calls + 1
    ref = reference(x)[0]
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    (out[:, -1].sum() + out[:, 150].sum()).backward()
    (ref[:, -1].sum() + ref[:, 150].sum()).backward()
    for name in ("weight_hh", "weight_ih", "bias_hh"):
        torch.testing.assert_close(getattr(layer, name).grad, getattr(reference, f"{name}_l0").grad,
                                   atol=1e-5, rtol=1e-4, msg=lambda m: f"{name}: {m}")


def test_without_the_compiled_loop_the_python_loop_runs_and_says_so_once(monkeypatch, caplog):
    monkeypatch.setattr(native, "_loaded", {})
    monkeypatch.setenv("ACTSTUDY_NATIVE", "0")
    torch.manual_seed(7)
    stack = RecurrentStack("gru", I, H, candidate="gelu", impl="custom")
    fast, slow = copy.deepcopy(stack).double(), copy.deepcopy(stack).double()
    slow.bptt = False
    with caplog.at_level(logging.INFO, logger="actstudy"):
        calls = sum(bptt.compiled_calls.values())
        for _ in range(2):
            out = fast(inputs(7))
        assert sum(bptt.compiled_calls.values()) == calls
    notes = [r.getMessage() for r in caplog.records if "compiled sequence loop" in r.getMessage()]
    assert notes == ["custom cells: the compiled sequence loop is unavailable (ACTSTUDY_NATIVE=0); "
                     "using the Python loop"]
    torch.testing.assert_close(out, slow(inputs(7)), **TOL)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (the compiled loop is CPU-only)")
def test_on_cuda_the_custom_cells_match_autograd():
    torch.manual_seed(8)
    stack = RecurrentStack("lstm", I, H, candidate="relu", impl="custom").cuda()
    fast, slow = copy.deepcopy(stack).double(), copy.deepcopy(stack).double()
    slow.bptt = False
    calls = sum(bptt.compiled_calls.values())
    out, x_grad, grads = outputs_and_grads(fast, inputs(8).cuda())
    assert sum(bptt.compiled_calls.values()) == calls  # CUDA tensors take the Python loop
    ref_out, ref_x_grad, ref_grads = outputs_and_grads(slow, inputs(8).cuda())
    torch.testing.assert_close(out, ref_out, **TOL)
    torch.testing.assert_close(x_grad, ref_x_grad, **TOL)
