"""Regularisation by noise, active only while training (identity in eval mode, as Keras at inference):
SpatialDropout1D/2D/3D (whole channels dropped), GaussianNoise (added N(0, stddev)), GaussianDropout
(multiplied by N(1, rate / (1 - rate))), AlphaDropout (dropped values set to SELU's negative saturation,
then scaled and shifted to keep the mean and variance: for self-normalizing networks)."""
import math

import torch
import torch.nn.functional as F

from ember.define.layers.base import ImageLayer, Layer


class _SpatialDropout(ImageLayer):
    """Drops whole channels of each sample (one draw per sample and channel, shared along the spatial
    axes) and scales the kept ones by 1 / (1 - rate)."""

    supports_masking = True

    def __init__(self, rate, *, data_format=None, input_shape=None, name=None):
        super().__init__(data_format=data_format, input_shape=input_shape, name=name)
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"{type(self).__name__} rate must be in [0, 1), got {rate}")
        self.rate = float(rate)

    def forward(self, x):
        if x.dim() != self.spatial_dims + 2:
            raise self.shape_error(f"a {self.spatial_dims + 2}-d batch", tuple(x.shape))
        return self.from_channels_first(self.dropout(self.to_channels_first(x), self.rate, self.training))


class SpatialDropout1D(_SpatialDropout):
    spatial_dims = 1
    dropout = staticmethod(F.dropout1d)


class SpatialDropout2D(_SpatialDropout):
    spatial_dims = 2
    dropout = staticmethod(F.dropout2d)


class SpatialDropout3D(_SpatialDropout):
    spatial_dims = 3
    dropout = staticmethod(F.dropout3d)


class GaussianNoise(Layer):
    supports_masking = True

    def __init__(self, stddev, *, input_shape=None, name=None):
        super().__init__(input_shape=input_shape, name=name)
        self.stddev = float(stddev)

    def forward(self, x):
        if not self.training or self.stddev <= 0:
            return x
        return x + torch.randn_like(x) * self.stddev

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)


class _RateDropout(Layer):
    """A dropout of `rate` in [0, 1) that keeps the input's shape."""

    supports_masking = True

    def __init__(self, rate, *, input_shape=None, name=None):
        super().__init__(input_shape=input_shape, name=name)
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"{type(self).__name__} rate must be in [0, 1), got {rate}")
        self.rate = float(rate)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)


class GaussianDropout(_RateDropout):
    def forward(self, x):
        if not self.training or self.rate <= 0:
            return x
        return x * (1.0 + torch.randn_like(x) * math.sqrt(self.rate / (1.0 - self.rate)))


class AlphaDropout(_RateDropout):
    def forward(self, x):
        return F.alpha_dropout(x, self.rate, self.training)
