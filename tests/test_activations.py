"""The activation registry: values against torch.nn.functional, derivatives against autograd."""

import pickle

import pytest
import torch
import torch.nn.functional as F

from actstudy.activations import (
    ACTIVATIONS,
    Activation,
    activation_names,
    get_activation,
    resolve_activation,
)

EXPECTED_NAMES = [
    "sigmoid", "hard_sigmoid", "tanh", "hardtanh", "relu", "leaky_relu", "elu",
    "selu", "gelu", "silu", "softsign", "softplus", "identity",
]

# The independent counterpart of every entry; the registry must agree with it.
TORCH_COUNTERPARTS = {
    "sigmoid": torch.sigmoid,
    "hard_sigmoid": F.hardsigmoid,
    "tanh": torch.tanh,
    "hardtanh": F.hardtanh,
    "relu": F.relu,
    "leaky_relu": F.leaky_relu,
    "elu": F.elu,
    "selu": F.selu,
    "gelu": F.gelu,
    "silu": F.silu,
    "softsign": F.softsign,
    "softplus": F.softplus,
    "identity": torch.nn.Identity(),
}

# Points where some derivative is not defined (kinks); samples keep away from them.
KINKS = (-3.0, -1.0, 0.0, 1.0, 3.0)


def sample_inputs(dtype=torch.float64) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(2000, generator=generator, dtype=dtype) * 4,
                   torch.linspace(-30, 30, 601, dtype=dtype)])
    far_from_kinks = torch.stack([(x - k).abs() > 1e-3 for k in KINKS]).all(0)
    return x[far_from_kinks]


def test_registry_holds_exactly_the_agreed_names_in_order():
    assert activation_names() == EXPECTED_NAMES
    assert set(TORCH_COUNTERPARTS) == set(ACTIVATIONS)


@pytest.mark.parametrize("name", EXPECTED_NAMES)
def test_entry_is_described_on_one_line(name):
    entry = ACTIVATIONS[name]
    assert isinstance(entry, Activation) and entry.name == name
    assert entry.description and "\n" not in entry.description
    assert entry.derivative_of in ("input", "output")


@pytest.mark.parametrize("name", EXPECTED_NAMES)
def test_matches_torch_functional(name):
    x = sample_inputs(torch.float32)
    torch.testing.assert_close(get_activation(name)(x), TORCH_COUNTERPARTS[name](x), rtol=0, atol=0)


def test_leaky_relu_slope_is_configurable_and_defaults_to_0_01():
    x = torch.tensor([-2.0, -0.5, 0.5, 2.0])
    torch.testing.assert_close(get_activation("leaky_relu")(x), torch.tensor([-0.02, -0.005, 0.5, 2.0]))
    torch.testing.assert_close(get_activation("leaky_relu", negative_slope=0.3)(x), F.leaky_relu(x, 0.3))
    # Other activations ignore the slope.
    torch.testing.assert_close(get_activation("relu", negative_slope=0.3)(x), F.relu(x))


def _autograd_derivative(fn, x):
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(fn(x).sum(), x)
    return grad


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("name", EXPECTED_NAMES)
def test_derivative_matches_autograd(name, dtype):
    entry = resolve_activation(name)
    x = sample_inputs(dtype)
    y = entry(x)
    at = x if entry.derivative_of == "input" else y
    # float64: torch's own hardsigmoid backward uses a float32 1/6, hence rtol 1e-7 rather than ~1e-15.
    tolerance = dict(rtol=1e-7, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(entry.derivative(at), _autograd_derivative(entry.fn, x), **tolerance)
    # grad() picks the right argument from whichever it is given.
    torch.testing.assert_close(entry.grad(x=x, y=y), entry.derivative(at))


@pytest.mark.parametrize("slope", [0.01, 0.3, -0.2])
def test_leaky_relu_derivative_honours_the_slope(slope):
    entry = resolve_activation("leaky_relu", negative_slope=slope)
    x = sample_inputs()
    torch.testing.assert_close(entry.derivative(x), _autograd_derivative(entry.fn, x))


def test_output_form_derivative_needs_no_input():
    entry = resolve_activation("tanh")
    x = torch.linspace(-2, 2, 9)
    torch.testing.assert_close(entry.grad(y=torch.tanh(x)), 1 - torch.tanh(x) ** 2)
    with pytest.raises(ValueError, match="pass x"):
        resolve_activation("gelu").grad(y=x)


def test_unknown_name_lists_every_choice_on_one_line():
    with pytest.raises(ValueError) as caught:
        get_activation("relux")
    message = str(caught.value)
    assert message.startswith("unknown activation 'relux'; choose one of: sigmoid, hard_sigmoid, ")
    assert all(name in message for name in EXPECTED_NAMES)
    assert "\n" not in message


def test_adding_an_activation_is_one_registry_entry(monkeypatch):
    def cube(x):
        return x ** 3

    def cube_derivative(x):
        return 3 * x ** 2

    monkeypatch.setitem(ACTIVATIONS, "cube", Activation("cube", cube, "x^3", cube_derivative, "input"))
    assert get_activation("cube")(torch.tensor(2.0)) == 8.0
    with pytest.raises(ValueError, match="identity, cube"):
        get_activation("nope")


def test_bound_activations_pickle():
    # Sweep workers may receive models by pickling; their activations must survive it.
    entry = resolve_activation("leaky_relu", negative_slope=0.2)
    restored = pickle.loads(pickle.dumps(entry))
    x = torch.tensor([-1.0, 1.0])
    torch.testing.assert_close(restored(x), entry(x))
