"""DepthwiseConv2D and SeparableConv2D, with Keras' arguments, padding and `data_format`.

A depthwise convolution is a grouped convolution with one group per input channel;
output channel `c * depth_multiplier + m` is filter `m` of input channel `c`, Keras' order.
"""
import torch
import torch.nn.functional as F
from torch import nn

from ember.define.layers.conv import Conv2D


class DepthwiseConv2D(Conv2D):
    def __init__(self, kernel_size, strides=1, padding="valid", depth_multiplier=1, dilation_rate=1,
                 activation=None, use_bias=True, *, data_format=None, input_shape=None, name=None):
        super().__init__(1, kernel_size, strides, padding, dilation_rate, 1, activation, use_bias,
                         data_format=data_format, input_shape=input_shape, name=name)
        self.depth_multiplier = int(depth_multiplier)

    def build(self, input_shape):
        self.in_channels = int(self.channels(input_shape))
        self.groups = self.in_channels
        self.filters = self.in_channels * self.depth_multiplier
        self.weight = nn.Parameter(torch.empty(self.filters, 1, *self.kernel_size))
        nn.init.xavier_uniform_(self.weight)
        self.bias = nn.Parameter(torch.zeros(self.filters)) if self.use_bias else None


class SeparableConv2D(Conv2D):
    """A depthwise convolution (`depthwise_weight`, strided) then a 1x1 convolution (`weight`, `bias`)."""

    def __init__(self, filters, kernel_size, strides=1, padding="valid", depth_multiplier=1, dilation_rate=1,
                 activation=None, use_bias=True, *, data_format=None, input_shape=None, name=None):
        super().__init__(filters, kernel_size, strides, padding, dilation_rate, 1, activation, use_bias,
                         data_format=data_format, input_shape=input_shape, name=name)
        self.depth_multiplier = int(depth_multiplier)

    def build(self, input_shape):
        self.in_channels = int(self.channels(input_shape))
        middle = self.in_channels * self.depth_multiplier
        self.depthwise_weight = nn.Parameter(torch.empty(middle, 1, *self.kernel_size))
        self.weight = nn.Parameter(torch.empty(self.filters, middle, 1, 1))
        nn.init.xavier_uniform_(self.depthwise_weight)
        nn.init.xavier_uniform_(self.weight)
        self.bias = nn.Parameter(torch.zeros(self.filters)) if self.use_bias else None

    def conv(self, x, weight, bias, stride, padding, dilation, groups):
        x = F.conv2d(x, self.depthwise_weight, None, stride, padding, dilation, self.in_channels)
        return F.conv2d(x, weight, bias)
