"""Core layers: Dense, Activation (ReLU, LeakyReLU, ELU), PReLU, Softmax, Dropout, Flatten, Reshape,
Embedding, Masking."""
import functools
import math

import torch
import torch.nn.functional as F
from torch import nn

from ember.define import activations, ops
from ember.define.layers.base import Layer


class Dense(Layer):
    """`activation(x @ kernel + bias)` on the last axis; `in_features` is inferred."""

    supports_masking = True

    def __init__(self, units, activation=None, use_bias=True, *, input_shape=None, name=None):
        super().__init__(input_shape=input_shape, name=name)
        self.units = int(units)
        self.use_bias = use_bias
        self.activation = activations.get(activation)

    def check_input_shape(self, input_shape):
        if len(input_shape) < 1 or input_shape[-1] is None:
            raise self.shape_error("(batch, ..., features)", ("batch",) + tuple(input_shape))

    def build(self, input_shape):
        self.in_features = int(input_shape[-1])
        self.weight = nn.Parameter(torch.empty(self.units, self.in_features))
        nn.init.xavier_uniform_(self.weight)  # Keras' glorot_uniform
        self.bias = nn.Parameter(torch.zeros(self.units)) if self.use_bias else None

    def forward(self, x):
        if x.shape[-1] != self.in_features:
            raise self.shape_error(("batch", "...", self.in_features), tuple(x.shape))
        return self.activation(F.linear(x, self.weight, self.bias))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)


class Activation(Layer):
    supports_masking = True

    def __init__(self, activation, *, input_shape=None, name=None):
        super().__init__(input_shape=input_shape, name=name)
        self.activation = activations.get(activation)

    def forward(self, x):
        return self.activation(x)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)


class ReLU(Activation):
    def __init__(self, *, input_shape=None, name=None):
        super().__init__("relu", input_shape=input_shape, name=name)


class LeakyReLU(Activation):
    """`x` where positive, `negative_slope * x` elsewhere (Keras 3's default slope, 0.3)."""

    def __init__(self, negative_slope=0.3, *, input_shape=None, name=None):
        super().__init__(functools.partial(F.leaky_relu, negative_slope=float(negative_slope)),
                         input_shape=input_shape, name=name)


class ELU(Activation):
    """`x` where positive, `alpha * (exp(x) - 1)` elsewhere."""

    def __init__(self, alpha=1.0, *, input_shape=None, name=None):
        super().__init__(functools.partial(F.elu, alpha=float(alpha)), input_shape=input_shape, name=name)


class PReLU(Layer):
    """`x` where positive, `alpha * x` elsewhere, with `alpha` learned per element of the input (no batch
    axis) and shared along `shared_axes` (Keras' numbering: 1 is the first axis after the batch)."""

    supports_masking = True

    def __init__(self, shared_axes=None, *, input_shape=None, name=None):
        super().__init__(input_shape=input_shape, name=name)
        self.shared_axes = tuple(shared_axes or ())

    def build(self, input_shape):
        shape = [1 if axis in self.shared_axes else int(size) for axis, size in enumerate(input_shape, start=1)]
        self.alpha = nn.Parameter(torch.zeros(shape))  # Keras' default initializer

    def forward(self, x):
        return torch.where(x > 0, x, self.alpha * x)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)


class LayerScale(Layer):
    """`x * gamma`, a learned scale per feature of the last axis, started at `init_values` (ConvNeXt's)."""

    def __init__(self, init_values, projection_dim, *, input_shape=None, name=None):
        super().__init__(input_shape=input_shape, name=name)
        self.init_values, self.projection_dim = float(init_values), int(projection_dim)
        self.gamma = nn.Parameter(torch.full((self.projection_dim,), self.init_values))
        self.built = True

    def forward(self, x):
        if x.shape[-1] != self.projection_dim:
            raise self.shape_error(("batch", "...", self.projection_dim), tuple(x.shape))
        return x * self.gamma

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)


class Softmax(Layer):
    supports_masking = True

    def __init__(self, axis=-1, *, input_shape=None, name=None):
        super().__init__(input_shape=input_shape, name=name)
        self.axis = axis

    def forward(self, x):
        return F.softmax(x, dim=self.axis)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)


class Dropout(Layer):
    """Zeroes a `rate` share of the inputs while training and scales the rest by 1 / (1 - rate).
    `noise_shape` (with the batch axis, None for the input's size, as Keras) drops whole slices:
    (None, 1, 1, 1) keeps or drops each sample entirely (EfficientNet's stochastic depth)."""

    supports_masking = True

    def __init__(self, rate, noise_shape=None, *, input_shape=None, name=None):
        super().__init__(input_shape=input_shape, name=name)
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"Dropout rate must be in [0, 1), got {rate}")
        self.rate = float(rate)
        self.noise_shape = None if noise_shape is None else tuple(noise_shape)

    def forward(self, x):
        if self.noise_shape is None:
            return F.dropout(x, self.rate, self.training)
        if len(self.noise_shape) != x.dim():
            raise self.shape_error(f"{len(self.noise_shape)} axes, as noise_shape={self.noise_shape}", tuple(x.shape))
        if not self.training or self.rate == 0.0:
            return x
        shape = [size if wanted is None else wanted for size, wanted in zip(x.shape, self.noise_shape)]
        keep = torch.empty(shape, dtype=x.dtype, device=x.device).bernoulli_(1.0 - self.rate)
        return x * keep / (1.0 - self.rate)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)


class Flatten(Layer):
    """Flattens everything but the batch axis (in the order the tensor is laid out logically)."""

    def forward(self, x):
        return x.flatten(1)

    def compute_output_shape(self, input_shape):
        return (math.prod(input_shape),)


class Reshape(Layer):
    def __init__(self, target_shape, *, input_shape=None, name=None):
        super().__init__(input_shape=input_shape, name=name)
        self.target_shape = tuple(target_shape)

    def forward(self, x):
        return x.reshape((x.shape[0],) + self.target_shape)

    def compute_output_shape(self, input_shape):
        known = math.prod(d for d in self.target_shape if d != -1)
        return tuple(math.prod(input_shape) // known if d == -1 else d for d in self.target_shape)


class Embedding(Layer):
    """Integer ids of shape (batch, ...) to vectors of size `output_dim`. With `mask_zero=True`, id 0 is
    padding: the output carries the mask `ids != 0` to the layers after it (masking.py)."""

    def __init__(self, input_dim, output_dim, mask_zero=False, *, input_shape=None, name=None):
        super().__init__(input_shape=input_shape, name=name)
        self.input_dim, self.output_dim, self.mask_zero = int(input_dim), int(output_dim), bool(mask_zero)
        self.weight = nn.Parameter(torch.empty(self.input_dim, self.output_dim).uniform_(-0.05, 0.05))
        self.built = True

    def forward(self, x):
        if x.is_floating_point():
            raise self.shape_error("integer token ids", f"a {x.dtype} tensor")
        return F.embedding(x, self.weight)

    def compute_mask(self, inputs, mask):
        return ops.not_equal(inputs, 0) if self.mask_zero else None

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (self.output_dim,)


class Masking(Layer):
    """Steps whose features all equal `mask_value` are padding: zeroed, and masked for the layers after."""

    def __init__(self, mask_value=0.0, *, input_shape=None, name=None):
        super().__init__(input_shape=input_shape, name=name)
        self.mask_value = float(mask_value)
        self.built = True

    def forward(self, x):
        return torch.where(self.compute_mask(x, None).unsqueeze(-1), x, 0.0)

    def compute_mask(self, inputs, mask):
        return ops.any(ops.not_equal(inputs, self.mask_value), axis=-1)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)
