"""The activation registry: name -> function, usable in any slot of any cell.

Every entry carries its derivative too, because a hand-written backward-through-time
needs it. A derivative is written as a function of the activation's *output* where that
is exact and cheaper (sigmoid, tanh, ...: the backward pass then needs to keep only what
the forward pass already produced), otherwise of its *input*; `Activation.derivative_of`
says which. Adding an activation means adding one `Activation(...)` to `_ENTRIES`.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace
from typing import Callable, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from actstudy.slots import DEFAULT_NEGATIVE_SLOPE

# torch.nn.SELU's constants (Klambauer et al. 2017), needed again by the derivative.
_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


@dataclass(frozen=True)
class Activation:
    """One registry entry; calling it applies `fn`.

    `fn` and `derivative` take a tensor (and, when `takes_negative_slope`, a
    `negative_slope` keyword); `derivative` expects the activation's input or output
    according to `derivative_of`. Use `bind()` to fix the slope so both take one tensor.
    """

    name: str
    fn: Callable[..., Tensor]
    description: str
    derivative: Callable[..., Tensor]
    derivative_of: Literal["input", "output"]
    takes_negative_slope: bool = False

    def __call__(self, x: Tensor) -> Tensor:
        return self.fn(x)

    def bind(self, negative_slope: float = DEFAULT_NEGATIVE_SLOPE) -> "Activation":
        """This entry with `negative_slope` fixed, so `fn` and `derivative` take one tensor."""
        if not self.takes_negative_slope:
            return self
        return replace(
            self,
            fn=functools.partial(self.fn, negative_slope=negative_slope),
            derivative=functools.partial(self.derivative, negative_slope=negative_slope),
            takes_negative_slope=False,
        )

    def grad(self, x: Tensor | None = None, y: Tensor | None = None) -> Tensor:
        """d fn / d x at input `x` (output `y` = fn(x)); pass whichever is at hand.

        Only the one `derivative_of` names is needed; the other is computed if missing.
        """
        if self.derivative_of == "output":
            return self.derivative(y if y is not None else self.fn(x))
        if x is None:
            raise ValueError(f"the derivative of '{self.name}' is written in terms of its input; pass x")
        return self.derivative(x)


# Functions are module-level (no lambdas) so that models holding them can be pickled,
# e.g. to hand them to a parallel sweep worker.


def _as_mask(condition: Tensor, like: Tensor) -> Tensor:
    return condition.to(like.dtype)


def sigmoid(x: Tensor) -> Tensor:
    return torch.sigmoid(x)


def sigmoid_derivative(y: Tensor) -> Tensor:
    return y * (1.0 - y)


def hard_sigmoid(x: Tensor) -> Tensor:
    return F.hardsigmoid(x)


def hard_sigmoid_derivative(y: Tensor) -> Tensor:
    # The slope is 1/6 exactly where the output is strictly inside (0, 1), i.e. -3 < x < 3.
    return _as_mask((y > 0) & (y < 1), y) / 6.0


def tanh(x: Tensor) -> Tensor:
    return torch.tanh(x)


def tanh_derivative(y: Tensor) -> Tensor:
    return 1.0 - y * y


def hardtanh(x: Tensor) -> Tensor:
    return F.hardtanh(x)


def hardtanh_derivative(y: Tensor) -> Tensor:
    return _as_mask(y.abs() < 1, y)


def relu(x: Tensor) -> Tensor:
    return F.relu(x)


def relu_derivative(y: Tensor) -> Tensor:
    return _as_mask(y > 0, y)


def leaky_relu(x: Tensor, negative_slope: float = DEFAULT_NEGATIVE_SLOPE) -> Tensor:
    return F.leaky_relu(x, negative_slope)


def leaky_relu_derivative(x: Tensor, negative_slope: float = DEFAULT_NEGATIVE_SLOPE) -> Tensor:
    # In terms of the input: with a negative slope < 0 the output's sign no longer tells the branch.
    return torch.where(x > 0, torch.ones_like(x), torch.full_like(x, negative_slope))


def elu(x: Tensor) -> Tensor:
    return F.elu(x)


def elu_derivative(y: Tensor) -> Tensor:
    # For x <= 0, y = e^x - 1, so e^x = y + 1: no exp needed.
    return torch.where(y > 0, torch.ones_like(y), y + 1.0)


def selu(x: Tensor) -> Tensor:
    return F.selu(x)


def selu_derivative(y: Tensor) -> Tensor:
    # For x <= 0, y = scale*alpha*(e^x - 1), so the slope scale*alpha*e^x = y + scale*alpha.
    return torch.where(y > 0, torch.full_like(y, _SELU_SCALE), y + _SELU_SCALE * _SELU_ALPHA)


def gelu(x: Tensor) -> Tensor:
    return F.gelu(x)


def gelu_derivative(x: Tensor) -> Tensor:
    # d/dx [x * Phi(x)] = Phi(x) + x * phi(x), the exact erf form torch uses by default.
    cdf = 0.5 * (1.0 + torch.erf(x * _INV_SQRT_2))
    pdf = torch.exp(-0.5 * x * x) * _INV_SQRT_2PI
    return cdf + x * pdf


def silu(x: Tensor) -> Tensor:
    return F.silu(x)


def silu_derivative(x: Tensor) -> Tensor:
    s = torch.sigmoid(x)
    return s * (1.0 + x * (1.0 - s))


def softsign(x: Tensor) -> Tensor:
    return F.softsign(x)


def softsign_derivative(y: Tensor) -> Tensor:
    # 1 - |y| = 1 / (1 + |x|), and the slope is 1 / (1 + |x|)^2.
    return (1.0 - y.abs()).square()


def softplus(x: Tensor) -> Tensor:
    return F.softplus(x)


_SOFTPLUS_THRESHOLD = 20.0  # torch's default: above it softplus is exactly x


def softplus_derivative(x: Tensor) -> Tensor:
    # sigmoid(x) from the input; 1 - exp(-y) from the output would lose precision for large x.
    return torch.where(x > _SOFTPLUS_THRESHOLD, torch.ones_like(x), torch.sigmoid(x))


def identity(x: Tensor) -> Tensor:
    return x


def identity_derivative(x: Tensor) -> Tensor:
    return torch.ones_like(x)


_ENTRIES = [
    Activation("sigmoid", sigmoid, "logistic 1/(1+e^-x), range (0, 1); the usual gate",
               sigmoid_derivative, "output"),
    Activation("hard_sigmoid", hard_sigmoid, "piecewise-linear sigmoid clamp(x/6 + 1/2, 0, 1) (torch's form)",
               hard_sigmoid_derivative, "output"),
    Activation("tanh", tanh, "hyperbolic tangent, range (-1, 1); the usual candidate and output",
               tanh_derivative, "output"),
    Activation("hardtanh", hardtanh, "piecewise-linear tanh clamp(x, -1, 1)",
               hardtanh_derivative, "output"),
    Activation("relu", relu, "max(0, x), unbounded above, zero slope below 0",
               relu_derivative, "output"),
    Activation("leaky_relu", leaky_relu, "x for x > 0, else negative_slope*x (default 0.01)",
               leaky_relu_derivative, "input", takes_negative_slope=True),
    Activation("elu", elu, "x for x > 0, else e^x - 1; range (-1, inf)",
               elu_derivative, "output"),
    Activation("selu", selu, "scaled ELU, self-normalising (scale 1.0507, alpha 1.6733)",
               selu_derivative, "output"),
    Activation("gelu", gelu, "x*Phi(x), Gaussian error linear unit (exact erf form)",
               gelu_derivative, "input"),
    Activation("silu", silu, "x*sigmoid(x), a.k.a. swish",
               silu_derivative, "input"),
    Activation("softsign", softsign, "x/(1+|x|), range (-1, 1), polynomial tails",
               softsign_derivative, "output"),
    Activation("softplus", softplus, "log(1+e^x), a smooth relu, range (0, inf)",
               softplus_derivative, "input"),
    Activation("identity", identity, "no nonlinearity, f(x) = x",
               identity_derivative, "input"),
]

ACTIVATIONS: dict[str, Activation] = {entry.name: entry for entry in _ENTRIES}


def activation_names() -> list[str]:
    """Registered names, in registry order."""
    return list(ACTIVATIONS)


def resolve_activation(name: str, negative_slope: float = DEFAULT_NEGATIVE_SLOPE) -> Activation:
    """The registry entry for `name` with `negative_slope` bound (where it applies)."""
    try:
        entry = ACTIVATIONS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown activation {name!r}; choose one of: {', '.join(ACTIVATIONS)}"
        ) from None
    return entry.bind(negative_slope)


def get_activation(name: str, negative_slope: float = DEFAULT_NEGATIVE_SLOPE) -> Callable[[Tensor], Tensor]:
    """The function registered as `name`; `negative_slope` is used by leaky_relu only."""
    return resolve_activation(name, negative_slope).fn
