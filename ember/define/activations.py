"""Activation functions by their Keras names."""
import functools

import torch
import torch.nn.functional as F


def _hard_sigmoid(x):
    # Keras 3 definition: relu6(x + 3) / 6.
    return F.relu6(x + 3.0) / 6.0


ACTIVATIONS = {
    "linear": lambda x: x,
    "relu": F.relu,
    "relu6": F.relu6,
    "gelu": F.gelu,
    "elu": F.elu,
    "selu": F.selu,
    "sigmoid": torch.sigmoid,
    "hard_sigmoid": _hard_sigmoid,
    "tanh": torch.tanh,
    "softmax": functools.partial(F.softmax, dim=-1),
    "log_softmax": functools.partial(F.log_softmax, dim=-1),
    "softplus": F.softplus,
    "softsign": F.softsign,
    "silu": F.silu,
    "swish": F.silu,
    "hard_silu": F.hardswish,
    "hard_swish": F.hardswish,
    "mish": F.mish,
    "leaky_relu": functools.partial(F.leaky_relu, negative_slope=0.2),  # Keras' default slope
    "exponential": torch.exp,
}


def get(activation):
    """Return the function for a name, a callable, or None (identity)."""
    if activation is None:
        return ACTIVATIONS["linear"]
    if callable(activation):
        return activation
    try:
        return ACTIVATIONS[str(activation).lower()]
    except KeyError:
        raise ValueError(
            f"unknown activation {activation!r}; known: {', '.join(sorted(ACTIVATIONS))}"
        ) from None
