"""Activation functions by their Keras names."""
import functools

import torch
import torch.nn.functional as F


def _hard_sigmoid(x):
    # Keras 3 definition: relu6(x + 3) / 6.
    return F.relu6(x + 3.0) / 6.0


def _sparsemax(x):
    # Euclidean projection onto the simplex along the last axis (Martins & Astudillo, 2016).
    z = x.sort(dim=-1, descending=True).values
    k = torch.arange(1, x.shape[-1] + 1, device=x.device, dtype=x.dtype)
    cumulative = z.cumsum(dim=-1)
    support = (1 + k * z > cumulative).to(x.dtype).sum(dim=-1, keepdim=True)
    tau = (cumulative.gather(-1, support.long() - 1) - 1) / support
    return F.relu(x - tau)


def _keras2_hard_sigmoid(x):
    # tf.keras 2's definition, kept for models saved by it.
    return (0.2 * x + 0.5).clamp(0.0, 1.0)


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
    "celu": F.celu,
    "glu": F.glu,
    "hard_shrink": F.hardshrink,
    "soft_shrink": F.softshrink,
    "hard_tanh": F.hardtanh,
    "tanh_shrink": F.tanhshrink,
    "log_sigmoid": F.logsigmoid,
    "sparse_plus": lambda x: torch.where(x <= -1, 0.0, torch.where(x >= 1, x, 0.25 * (x + 1) ** 2)),
    "sparse_sigmoid": lambda x: (0.5 * (x + 1)).clamp(0.0, 1.0),
    "squareplus": lambda x: 0.5 * (x + torch.sqrt(x * x + 4.0)),
    "sparsemax": _sparsemax,
    "keras2_hard_sigmoid": _keras2_hard_sigmoid,
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
