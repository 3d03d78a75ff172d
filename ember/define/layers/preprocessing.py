"""Preprocessing inside the model: Rescaling (`x * scale + offset`) and Normalization (standardising
with a mean and variance given or learned by `adapt(data)`), as Keras computes them."""
import math

import numpy as np
import torch
from torch import nn

from ember.config import normalize_data_format
from ember.define.layers.base import Layer

# Keras' backend.epsilon(): the smallest standard deviation Normalization divides by.
KERAS_EPSILON = 1e-7


class Rescaling(Layer):
    """`x * scale + offset`. A list `scale` or `offset` holds one value per channel: the last axis
    with data_format "channels_last", axis 1 with "channels_first" (Keras reshapes it so)."""

    supports_masking = True

    def __init__(self, scale, offset=0.0, *, data_format=None, input_shape=None, name=None):
        super().__init__(input_shape=input_shape, name=name)
        self.scale, self.offset, self.data_format = scale, offset, normalize_data_format(data_format)

    def _per_channel(self, value, x):
        if not isinstance(value, (list, tuple)):
            return value
        value = x.new_tensor(value)
        return value.reshape(value.shape + (1,) * (x.dim() - 2)) if self.data_format == "channels_first" else value

    def forward(self, x):
        return x * self._per_channel(self.scale, x) + self._per_channel(self.offset, x)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "data_format": self.data_format}


def broadcast_statistic(value, kept_shape):
    """A mean or variance as Keras' Normalization takes it (a scalar, or an array whose axes line
    up with the last kept axes) -> a float32 tensor of `kept_shape`, one value per kept position.
    Made on the default device: on the meta device (from_keras) it allocates nothing."""
    value = torch.as_tensor(value, dtype=torch.float32)
    leading = len(kept_shape) - value.dim()
    if leading < 0:
        raise ValueError(f"a statistic of shape {tuple(value.shape)} has more axes than the kept axes {kept_shape}")
    return value.reshape((1,) * leading + tuple(value.shape)).expand(kept_shape).clone()


class Normalization(Layer):
    """`(x - mean) / max(sqrt(variance), 1e-7)` (Keras' formula), with one mean and variance per
    position of the kept `axis` (counted with the batch axis, as Keras: -1 is the last; None
    keeps none: one scalar for everything). `invert=True` undoes it: `mean + x * max(sqrt(var), 1e-7)`.

    Give `mean` and `variance`, or call `adapt(data)` once built, which sets them from the data
    (Keras' biased variance, combined batch by batch for an iterable of batches).
    """

    supports_masking = True

    def __init__(self, axis=-1, mean=None, variance=None, invert=False, *, input_shape=None, name=None):
        super().__init__(input_shape=input_shape, name=name)
        if (mean is None) != (variance is None):
            raise ValueError(f"give both mean and variance, or neither; got mean={mean!r}, variance={variance!r}")
        self.axis = () if axis is None else (int(axis),) if isinstance(axis, int) else tuple(int(a) for a in axis)
        self.given_mean, self.given_variance, self.invert = mean, variance, bool(invert)

    def build(self, input_shape):
        rank = len(input_shape) + 1
        if any(not -rank <= a < rank for a in self.axis) or any(a % rank == 0 for a in self.axis):
            raise self.shape_error(f"axes {self.axis} within 1..{rank - 1} (not the batch axis)",
                                   ("batch",) + tuple(input_shape))
        self.kept_axes = tuple(sorted(a % rank for a in self.axis))
        kept_shape = tuple(int(input_shape[a - 1]) for a in self.kept_axes)
        self.broadcast_shape = tuple(input_shape[a - 1] if a in self.kept_axes else 1 for a in range(1, rank))
        if self.given_mean is None:
            mean, variance = torch.zeros(kept_shape), torch.ones(kept_shape)
        else:
            mean = broadcast_statistic(self.given_mean, kept_shape)
            variance = broadcast_statistic(self.given_variance, kept_shape)
        self.register_buffer("mean", mean)
        self.register_buffer("variance", variance)

    def forward(self, x):
        if tuple(x.shape[a] for a in self.kept_axes) != tuple(self.mean.shape):
            raise self.shape_error(f"sizes {tuple(self.mean.shape)} on axes {self.kept_axes}", tuple(x.shape))
        mean = self.mean.reshape(self.broadcast_shape)
        scale = self.variance.reshape(self.broadcast_shape).sqrt().clamp_min(KERAS_EPSILON)
        return mean + x * scale if self.invert else (x - mean) / scale

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    @torch.no_grad()
    def adapt(self, data):
        """Set mean and variance from `data`: one array or tensor (batch first), or an iterable of
        batches (each an array, a tensor, or a tuple whose first item is the inputs)."""
        if self.given_mean is not None:
            raise ValueError("this Normalization was given its mean and variance; adapt() would overwrite them")
        batches = [data] if isinstance(data, (np.ndarray, torch.Tensor)) else data
        total_mean = total_variance = None
        total_count = 0
        for batch in batches:
            batch = batch[0] if isinstance(batch, (tuple, list)) else batch
            batch = torch.as_tensor(batch, dtype=torch.float32)
            if not self.built:
                self.build_for(tuple(batch.shape[1:]))
            if tuple(batch.shape[a] for a in self.kept_axes) != tuple(self.mean.shape):
                raise self.shape_error(f"sizes {tuple(self.mean.shape)} on axes {self.kept_axes}",
                                       tuple(batch.shape))
            reduced = tuple(a for a in range(batch.dim()) if a not in self.kept_axes)
            batch_mean = batch.mean(dim=reduced)
            batch_variance = batch.var(dim=reduced, unbiased=False)
            count = math.prod(batch.shape[a] for a in reduced)
            if total_mean is None:
                total_mean, total_variance, total_count = batch_mean, batch_variance, count
                continue
            # Chan et al.'s parallel combination, as Keras' adapt does it for batches.
            total_count += count
            weight = count / total_count
            new_mean = total_mean * (1 - weight) + batch_mean * weight
            total_variance = ((total_variance + (total_mean - new_mean) ** 2) * (1 - weight)
                              + (batch_variance + (batch_mean - new_mean) ** 2) * weight)
            total_mean = new_mean
        if total_mean is None:
            raise ValueError("adapt() got no batches")
        self.mean.copy_(total_mean)
        self.variance.copy_(total_variance)
