"""`ember.ops`: tensor functions that work on real tensors and, while a functional model is
being defined, on symbolic ones (they record, and `save()` stores them by name).

Axes count the batch axis, as in Keras (`axis=-1` is the last). Python operators on symbolic
tensors (`x + y`, `x * 0.5`, `x[:, 0]`, `-x`, `x @ w`) record the function of the same name here.
"""
import builtins
import functools

import torch
import torch.nn.functional as F

from ember.define.symbolic import call_op, holds_symbolic, torch_dtype

OPS = {}  # name -> the function on real tensors. A model file names these, never Python code.


def _recordable(function, name=None):
    """Registers `function` in OPS; called on symbolic tensors, it records instead of running."""
    name = name or function.__name__
    OPS[name] = function

    @functools.wraps(function)
    def run_or_record(*args, **kwargs):
        # builtins.any: this module defines ember.ops.any
        if builtins.any(holds_symbolic(value) for value in (*args, *kwargs.values())):
            return call_op(name, *args, **kwargs)
        return function(*args, **kwargs)

    run_or_record.__name__ = run_or_record.__qualname__ = name
    return run_or_record


def _axes(axis):
    return tuple(axis) if isinstance(axis, (list, tuple)) else axis


# Element-wise functions, torch's own (Keras' names).
_ELEMENTWISE = {
    "add": torch.add, "subtract": torch.subtract, "multiply": torch.multiply, "divide": torch.divide,
    "power": torch.pow, "matmul": torch.matmul, "negative": torch.negative, "absolute": torch.abs,
    "exp": torch.exp, "log": torch.log, "sqrt": torch.sqrt, "square": torch.square, "tanh": torch.tanh,
    "sigmoid": torch.sigmoid, "relu": torch.relu, "gelu": F.gelu, "relu6": F.relu6, "silu": F.silu,
    "leaky_relu": F.leaky_relu, "hard_sigmoid": F.hardsigmoid, "hard_silu": F.hardswish,
    "logical_and": torch.logical_and, "logical_or": torch.logical_or, "logical_not": torch.logical_not,
}
for _name, _function in _ELEMENTWISE.items():
    globals()[_name] = _recordable(_function, _name)


def _tensor_like(value, other):
    return value if isinstance(value, torch.Tensor) else torch.as_tensor(value, dtype=other.dtype, device=other.device)


@_recordable
def maximum(x, y):
    """Element-wise; either side may be a Python number (torch's maximum takes tensors only)."""
    return torch.maximum(_tensor_like(x, y), _tensor_like(y, x))


@_recordable
def minimum(x, y):
    return torch.minimum(_tensor_like(x, y), _tensor_like(y, x))


@_recordable
def not_equal(x, y):
    """Element-wise `x != y`, booleans (Embedding(mask_zero=True)'s mask is `not_equal(ids, 0)`)."""
    return torch.ne(x, y)


@_recordable
def any(x, axis=None, keepdims=False):  # noqa: A001 (Keras' name)
    return torch.any(x) if axis is None else torch.any(x, dim=axis, keepdim=keepdims)


@_recordable
def all(x, axis=None, keepdims=False):  # noqa: A001 (Keras' name)
    return torch.all(x) if axis is None else torch.all(x, dim=axis, keepdim=keepdims)


@_recordable
def zeros_like(x, dtype=None):
    """Zeros of `x`'s shape; `dtype`: a name such as "bool" or "float32" (None: `x`'s)."""
    return torch.zeros_like(x, dtype=None if dtype is None else torch_dtype(dtype))


@_recordable
def convert_to_tensor(x, dtype=None):
    """`x` itself, or cast to `dtype` (Keras writes it around the masks attention layers pass on)."""
    return x if dtype is None else x.to(torch_dtype(dtype))


@_recordable
def ones_like(x, dtype=None):
    return torch.ones_like(x, dtype=None if dtype is None else torch_dtype(dtype))


@_recordable
def getitem(x, key):
    return x[key]


@_recordable
def concatenate(xs, axis=-1):
    return torch.cat(list(xs), dim=axis)


@_recordable
def stack(xs, axis=0):
    return torch.stack(list(xs), dim=axis)


@_recordable
def mean(x, axis=None, keepdims=False):
    """Over every axis (batch included, as Keras) when `axis` is None."""
    return torch.mean(x) if axis is None else torch.mean(x, dim=_axes(axis), keepdim=keepdims)


@_recordable
def sum(x, axis=None, keepdims=False):  # noqa: A001 (Keras' name)
    return torch.sum(x) if axis is None else torch.sum(x, dim=_axes(axis), keepdim=keepdims)


@_recordable
def max(x, axis=None, keepdims=False):  # noqa: A001
    return torch.amax(x) if axis is None else torch.amax(x, dim=_axes(axis), keepdim=keepdims)


@_recordable
def min(x, axis=None, keepdims=False):  # noqa: A001
    return torch.amin(x) if axis is None else torch.amin(x, dim=_axes(axis), keepdim=keepdims)


@_recordable
def reshape(x, new_shape):
    """`new_shape` includes the batch axis: (-1, 4, 4) (None reads as -1)."""
    return torch.reshape(x, tuple(-1 if d is None else d for d in new_shape))


@_recordable
def transpose(x, axes=None):
    return x.permute(*(axes if axes is not None else reversed(range(x.dim()))))


@_recordable
def expand_dims(x, axis):
    return torch.unsqueeze(x, axis)


@_recordable
def squeeze(x, axis=None):
    return torch.squeeze(x) if axis is None else torch.squeeze(x, axis)


@_recordable
def softmax(x, axis=-1):
    return torch.softmax(x, dim=axis)


@_recordable
def cast(x, dtype):
    """`dtype`: a name such as "float32" or "int64"."""
    return x.to(torch_dtype(dtype))


__all__ = sorted(name for name in OPS if name != "getitem")
