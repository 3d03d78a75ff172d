"""Convolutions: Conv1D, Conv2D, Conv3D, with Keras' `padding="same"|"valid"` (and "causal" for Conv1D) and
`data_format`."""
import math

import torch
import torch.nn.functional as F
from torch import nn

from ember.define import activations
from ember.define.layers.base import ImageLayer


def _tuple(value, n):
    return tuple(value) if isinstance(value, (tuple, list)) else (int(value),) * n


def same_padding(size, kernel, stride, dilation):
    """TensorFlow's "same" padding for one axis: (before, after); after gets the odd pixel."""
    effective = (kernel - 1) * dilation + 1
    total = max((math.ceil(size / stride) - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


def same_pads(spatial_sizes, kernels, strides, dilations):
    """`F.pad`'s argument for TensorFlow's "same" padding: last axis first, (before, after) each."""
    pads = []
    for size, k, s, d in reversed(list(zip(spatial_sizes, kernels, strides, dilations))):
        pads.extend(same_padding(size, k, s, d))
    return pads


class _Conv(ImageLayer):
    def __init__(self, filters, kernel_size, strides=1, padding="valid", dilation_rate=1, groups=1,
                 activation=None, use_bias=True, *, data_format=None, input_shape=None, name=None):
        super().__init__(data_format=data_format, input_shape=input_shape, name=name)
        n = self.spatial_dims
        self.filters = int(filters)
        self.kernel_size = _tuple(kernel_size, n)
        self.strides = _tuple(strides, n)
        self.dilation_rate = _tuple(dilation_rate, n)
        self.groups = int(groups)
        self.padding = str(padding).lower()
        if self.padding not in ("same", "valid") and not (self.padding == "causal" and n == 1):
            raise ValueError(f"padding must be 'same' or 'valid' (or 'causal' for Conv1D), got {padding!r}")
        self.activation = activations.get(activation)
        self.use_bias = use_bias
        # Symmetric "same" padding can be done by the convolution itself; otherwise
        # (stride > 1 or an even kernel) TensorFlow pads more after than before.
        self.static_padding = 0
        if self.padding == "same" and all(s == 1 and (k - 1) * d % 2 == 0 for k, s, d in
                                          zip(self.kernel_size, self.strides, self.dilation_rate)):
            self.static_padding = tuple((k - 1) * d // 2 for k, d in zip(self.kernel_size, self.dilation_rate))

    def build(self, input_shape):
        self.in_channels = int(self.channels(input_shape))
        if self.in_channels % self.groups or self.filters % self.groups:
            raise self.shape_error(f"channels divisible by groups={self.groups}", input_shape)
        self.weight = nn.Parameter(torch.empty(self.filters, self.in_channels // self.groups, *self.kernel_size))
        nn.init.xavier_uniform_(self.weight)
        self.bias = nn.Parameter(torch.zeros(self.filters)) if self.use_bias else None

    def forward(self, x):
        expected_rank = self.spatial_dims + 2
        if x.dim() != expected_rank or x.shape[-1 if self.channels_last else 1] != self.in_channels:
            spatial = self.spatial_names()
            expected = ("batch",) + (spatial + (self.in_channels,) if self.channels_last
                                     else (self.in_channels,) + spatial)
            raise self.shape_error(expected, tuple(x.shape))
        x = self.to_channels_first(x)
        if self.padding == "same" and not self.static_padding:
            x = F.pad(x, same_pads(x.shape[2:], self.kernel_size, self.strides, self.dilation_rate))
        elif self.padding == "causal":  # output t sees inputs up to t only: pad the past side
            x = F.pad(x, ((self.kernel_size[0] - 1) * self.dilation_rate[0], 0))
        y = self.conv(x, self.weight, self.bias, self.strides, self.static_padding, self.dilation_rate, self.groups)
        return self.from_channels_first(self.activation(y))


class Conv1D(_Conv):
    spatial_dims = 1
    conv = staticmethod(F.conv1d)


class Conv2D(_Conv):
    spatial_dims = 2
    conv = staticmethod(F.conv2d)
    prefers_channels_last = True  # compile(channels_last="auto") turns it on for models with one


class Conv3D(_Conv):
    spatial_dims = 3
    conv = staticmethod(F.conv3d)
