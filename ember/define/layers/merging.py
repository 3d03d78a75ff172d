"""Merge layers: Add, Subtract, Multiply, ScaledAdd, Average, Maximum, Minimum, Concatenate, Dot.

Called like Keras' with a list of tensors: `Add()([a, b])`. They hold no parameters. The
elementwise ones broadcast as Keras' do: shapes without the batch axis line up from the last
axis, a shorter one gains axes of size 1 after the batch axis, and sizes must be equal or 1
(EfficientNet's squeeze-and-excitation multiplies (N, H, W, C) by (N, 1, 1, C)).

Masks merge as in Keras: the elementwise layers keep a step real where any input's step is (no
mask when one input has none); Concatenate joins its inputs' masks along its axis (an input
without one counts as all real). They are computed with `ember.ops`, so a functional model records them.
"""
import functools

import torch

from ember.define import ops
from ember.define.layers.base import Layer


class _Merge(Layer):
    def __init__(self, *, input_shape=None, name=None):
        super().__init__(input_shape=input_shape, name=name)
        self.built = True

    def forward(self, inputs):
        if not isinstance(inputs, (list, tuple)) or len(inputs) < 2:
            raise self.shape_error("a list of at least 2 tensors", type(inputs).__name__)
        # Compared without the batch axis, which is symbolic when the model is exported.
        self.broadcast_shape([tuple(x.shape[1:]) for x in inputs])
        rank = max(x.dim() for x in inputs)
        return self.merge([x.reshape(x.shape[:1] + (1,) * (rank - x.dim()) + x.shape[1:]) for x in inputs])

    def broadcast_shape(self, shapes):
        """The shape (no batch axis) the inputs broadcast to, or a ShapeError naming them all."""
        rank = max(len(shape) for shape in shapes)
        out = []
        for sizes in zip(*[(1,) * (rank - len(shape)) + tuple(shape) for shape in shapes]):
            wanted = [size for size in sizes if size != 1]  # a list: symbolic sizes (export) cannot be hashed
            if any(size != wanted[0] for size in wanted[1:]):
                raise self.shape_error("shapes that broadcast: from the last axis, sizes equal or 1",
                                       [("batch",) + tuple(shape) for shape in shapes])
            out.append(wanted[0] if wanted else 1)
        return tuple(out)

    def build_for(self, input_shapes):
        self.output_shape = self.compute_output_shape(input_shapes)
        return self.output_shape

    def compute_output_shape(self, input_shapes):
        return self.broadcast_shape(input_shapes)

    def compute_mask(self, inputs, mask):
        if mask is None or any(m is None for m in mask):
            return None
        return functools.reduce(ops.logical_or, mask)


class Add(_Merge):
    def merge(self, inputs):
        return functools.reduce(torch.add, inputs)


class Subtract(_Merge):
    def merge(self, inputs):
        if len(inputs) != 2:
            raise self.shape_error("exactly 2 tensors", f"{len(inputs)} tensors")
        return inputs[0] - inputs[1]


class Multiply(_Merge):
    def merge(self, inputs):
        return functools.reduce(torch.mul, inputs)


class ScaledAdd(_Merge):
    """`inputs[0] + inputs[1] * scale`: a residual branch scaled before it joins the shortcut
    (InceptionResNetV2's CustomScaleLayer)."""

    def __init__(self, scale, *, input_shape=None, name=None):
        super().__init__(input_shape=input_shape, name=name)
        self.scale = float(scale)

    def merge(self, inputs):
        if len(inputs) != 2:
            raise self.shape_error("exactly 2 tensors: the shortcut and the branch to scale", f"{len(inputs)} tensors")
        return inputs[0] + inputs[1] * self.scale


class Average(_Merge):
    def merge(self, inputs):
        return functools.reduce(torch.add, inputs) / len(inputs)


class Maximum(_Merge):
    def merge(self, inputs):
        return functools.reduce(torch.maximum, inputs)


class Minimum(_Merge):
    def merge(self, inputs):
        return functools.reduce(torch.minimum, inputs)


class Concatenate(_Merge):
    """Joins tensors along `axis` (counted with the batch axis, as in Keras: -1 is the last)."""

    def __init__(self, axis=-1, *, input_shape=None, name=None):
        super().__init__(input_shape=input_shape, name=name)
        self.axis = int(axis)

    def forward(self, inputs):
        if not isinstance(inputs, (list, tuple)) or len(inputs) < 2:
            raise self.shape_error("a list of at least 2 tensors", type(inputs).__name__)
        rank = inputs[0].dim()
        axis = self.axis % rank
        if axis == 0:
            raise self.shape_error("an axis other than the batch axis", self.axis)
        others = [tuple(s for i, s in enumerate(x.shape) if i not in (0, axis)) for x in inputs]
        if any(x.dim() != rank for x in inputs) or any(o != others[0] for o in others):
            raise self.shape_error(f"tensors equal in every axis but {self.axis}", [tuple(x.shape) for x in inputs])
        return torch.cat(list(inputs), dim=axis)

    def compute_mask(self, inputs, mask):
        if mask is None or all(m is None for m in mask):
            return None
        # Each mask broadcast to its input's shape (all real where there is none), joined, then real
        # where any feature is: Keras' own steps, recorded as they run.
        full = [ops.ones_like(x, dtype="bool") if m is None
                else ops.logical_or(ops.expand_dims(m, -1), ops.zeros_like(x, dtype="bool")) if m.ndim < x.ndim else m
                for x, m in zip(inputs, mask)]
        return ops.any(ops.concatenate(full, axis=self.axis), axis=-1)

    def compute_output_shape(self, input_shapes):
        rank = len(input_shapes[0]) + 1
        axis = self.axis % rank - 1  # shapes here have no batch axis
        shape = list(input_shapes[0])
        shape[axis] = sum(s[axis] for s in input_shapes)
        return tuple(shape)


class Dot(Layer):
    """The dot product of two tensors along `axes` (one axis for both, or one each; counted with the batch
    axis, as in Keras), sample by sample: Keras' `batch_dot`. The output holds the first input's other
    axes, then the second's; two vectors give (batch, 1). `normalize`: L2-normalize both along their axis
    first (the cosine similarity)."""

    def __init__(self, axes, normalize=False, *, input_shape=None, name=None):
        super().__init__(input_shape=input_shape, name=name)
        axes = [axes, axes] if isinstance(axes, int) else list(axes)
        if len(axes) != 2 or not all(isinstance(a, int) and not isinstance(a, bool) for a in axes):
            raise ValueError(f"Dot's axes must be an integer or two, got {axes!r}")
        self.axes, self.normalize = axes, bool(normalize)

    def _axes(self, ranks):
        axes = [axis % rank for axis, rank in zip(self.axes, ranks)]
        if 0 in axes:
            raise self.shape_error("axes other than the batch axis", self.axes)
        return axes

    def check_input_shape(self, input_shape):
        shapes = list(input_shape)
        if len(shapes) != 2 or not all(isinstance(s, (list, tuple)) for s in shapes):
            raise self.shape_error("a list of 2 tensors", shapes)
        first, second = self._axes([len(s) + 1 for s in shapes])
        if shapes[0][first - 1] != shapes[1][second - 1]:
            raise self.shape_error(f"equal sizes on axes {self.axes}", [("batch", *s) for s in shapes])

    def build_for(self, input_shape):
        self.check_input_shape(input_shape)
        self.built = True
        self.output_shape = self.compute_output_shape(input_shape)
        return self.output_shape

    def compute_output_shape(self, input_shape):
        first, second = self._axes([len(s) + 1 for s in input_shape])
        shape = [d for i, d in enumerate(input_shape[0]) if i != first - 1] + \
            [d for i, d in enumerate(input_shape[1]) if i != second - 1]
        return tuple(shape) or (1,)

    def forward(self, inputs):
        if not isinstance(inputs, (list, tuple)) or len(inputs) != 2:
            raise self.shape_error("a list of 2 tensors", type(inputs).__name__)
        x, y = inputs
        first, second = self._axes([x.dim(), y.dim()])
        if self.normalize:  # Keras' l2 normalize: x * rsqrt(max(sum of squares, epsilon ** 2)), epsilon 1e-7
            x = x * torch.rsqrt(torch.clamp((x * x).sum(first, keepdim=True), min=1e-14))
            y = y * torch.rsqrt(torch.clamp((y * y).sum(second, keepdim=True), min=1e-14))
        letters = "bcdefghijklmnopqrstuvwxyz"
        x_axes = "a" + letters[:x.dim() - 1]
        y_axes = "a" + letters[x.dim() - 1:x.dim() + y.dim() - 2]
        y_axes = y_axes[:second] + x_axes[first] + y_axes[second + 1:]
        out_axes = "a" + "".join(c for c in x_axes[1:] + y_axes[1:] if c != x_axes[first])
        out = torch.einsum(f"{x_axes},{y_axes}->{out_axes}", x, y)
        return out.unsqueeze(-1) if out.dim() == 1 else out


# Keras' functional forms: `layers.add([a, b])` is `layers.Add()([a, b])`.
def add(inputs, **kwargs):
    return Add(**kwargs)(inputs)


def subtract(inputs, **kwargs):
    return Subtract(**kwargs)(inputs)


def multiply(inputs, **kwargs):
    return Multiply(**kwargs)(inputs)


def average(inputs, **kwargs):
    return Average(**kwargs)(inputs)


def maximum(inputs, **kwargs):
    return Maximum(**kwargs)(inputs)


def minimum(inputs, **kwargs):
    return Minimum(**kwargs)(inputs)


def concatenate(inputs, axis=-1, **kwargs):
    return Concatenate(axis=axis, **kwargs)(inputs)
