"""Keras' weight and activity regularizers (L1, L2, L1L2): penalties added to the training loss.

`layer.regularize("weight", L2(1e-4))` adds `0.0001 * sum(weight ** 2)` to the loss of every step (Keras'
`kernel_regularizer`); `layer.activity_regularizer = L1(1e-5)` adds the penalty of each output the layer
computes in a training step, divided by its batch size, as Keras 3 does. fit adds them to the compiled
loss (ember/train/regularization.py), so the logged loss includes them, as Keras' does.
"""
from dataclasses import dataclass


@dataclass(frozen=True)
class L1L2:
    l1: float = 0.0
    l2: float = 0.0

    def __post_init__(self):
        for name in ("l1", "l2"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < float("inf"):
                raise ValueError(f"a regularizer's {name} must be a number >= 0, got {value!r}")
            object.__setattr__(self, name, float(value))

    def __call__(self, x):
        penalty = 0.0
        if self.l1:
            penalty = penalty + self.l1 * x.abs().sum()
        if self.l2:
            penalty = penalty + self.l2 * x.square().sum()
        return penalty

    def get_config(self) -> dict:
        return {"l1": self.l1, "l2": self.l2}


def L1(l1=0.01):  # noqa: N802 (Keras' names)
    return L1L2(l1=l1)


def L2(l2=0.01):  # noqa: N802
    return L1L2(l2=l2)


def get(value):
    """An L1L2 from one, from its config {"l1": ..., "l2": ...}, or None."""
    if value is None or isinstance(value, L1L2):
        return value
    if isinstance(value, dict) and set(value) <= {"l1", "l2"}:
        return L1L2(**value)
    raise ValueError(f"a regularizer must be ember.regularizers.L1L2 (L1, L2) or its config, got {value!r}")

