"""Conv1DTranspose, Conv2DTranspose and Conv3DTranspose (upsampling convolutions) with Keras' `padding`, `output_padding`,
`strides` and `dilation_rate`.

Keras' "same" padding with a stride can need more rows cut on one side than the other, which
torch's symmetric `padding` cannot say: as Keras' torch backend does, the full transposed
convolution is computed and then cut (or, where Keras pads, extended with zeros) to Keras' window;
the bias is added after, so padded rows hold it too. The weight is torch's (in, out, *kernel).
"""
import torch
import torch.nn.functional as F
from torch import nn

from ember.define.layers.conv import _Conv, _tuple


def transpose_crops(kernel, stride, dilation, padding, output_padding):
    """(cut before, cut after) of one axis of torch's full output to get Keras' output; negative: add zeros.
    Keras' own arithmetic (keras/src/backend/common/backend_utils.py), axis by axis."""
    effective = (kernel - 1) * dilation + 1
    if padding == "valid":
        output_padding = max(effective, stride) - effective if output_padding is None else output_padding
        before, after = effective - 1, effective - 1 + output_padding
    else:
        total = stride + effective - 2 if output_padding is None else effective + effective % 2 - 2 + output_padding
        before = min(total // 2 + total % 2, effective - 1)
        after = total - before
    return effective - 1 - before, effective - 1 - after


class _ConvTranspose(_Conv):
    def __init__(self, filters, kernel_size, strides=1, padding="valid", output_padding=None, dilation_rate=1,
                 activation=None, use_bias=True, *, data_format=None, input_shape=None, name=None):
        super().__init__(filters, kernel_size, strides, padding, dilation_rate, 1, activation, use_bias,
                         data_format=data_format, input_shape=input_shape, name=name)
        n = self.spatial_dims
        if self.padding == "causal":
            raise ValueError(f"padding must be 'same' or 'valid', got {padding!r}")
        self.output_padding = None if output_padding is None else _tuple(output_padding, n)
        if self.output_padding is not None and any(p >= s for p, s in zip(self.output_padding, self.strides)):
            raise ValueError(f"output_padding {self.output_padding} must be smaller than the strides {self.strides}")
        self.crops = [transpose_crops(k, s, d, self.padding, p)
                      for k, s, d, p in zip(self.kernel_size, self.strides, self.dilation_rate,
                                            self.output_padding or (None,) * n)]

    def build(self, input_shape):
        self.in_channels = int(self.channels(input_shape))
        self.weight = nn.Parameter(torch.empty(self.in_channels, self.filters, *self.kernel_size))
        nn.init.xavier_uniform_(self.weight)
        self.bias = nn.Parameter(torch.zeros(self.filters)) if self.use_bias else None

    def forward(self, x):
        if x.dim() != self.spatial_dims + 2 or x.shape[-1 if self.channels_last else 1] != self.in_channels:
            raise self.shape_error(f"a {self.spatial_dims + 2}-d batch with {self.in_channels} channels",
                                   tuple(x.shape))
        y = self.conv_transpose(self.to_channels_first(x), self.weight, None, self.strides, 0, 0, 1,
                                self.dilation_rate)
        for axis, (before, after) in enumerate(self.crops, start=2):
            y = y.narrow(axis, max(before, 0), y.shape[axis] - max(before, 0) - max(after, 0))
        zeros = [amount for before, after in reversed(self.crops) for amount in (max(-before, 0), max(-after, 0))]
        if any(zeros):
            y = F.pad(y, zeros)
        if self.bias is not None:
            y = y + self.bias.reshape((-1,) + (1,) * self.spatial_dims)
        return self.from_channels_first(self.activation(y))


class Conv1DTranspose(_ConvTranspose):
    spatial_dims = 1
    conv_transpose = staticmethod(F.conv_transpose1d)


class Conv2DTranspose(_ConvTranspose):
    spatial_dims = 2
    conv_transpose = staticmethod(F.conv_transpose2d)


class Conv3DTranspose(_ConvTranspose):
    spatial_dims = 3
    conv_transpose = staticmethod(F.conv_transpose3d)
