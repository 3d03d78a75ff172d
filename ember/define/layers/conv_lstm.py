"""ConvLSTM1D/2D/3D: Keras' LSTM whose input and recurrent transforms are convolutions, over
(batch, steps, *spatial, channels) inputs (channels_last) or (batch, steps, channels, *spatial).

The input convolution (Keras' `strides`, `padding`, `dilation_rate`, the bias) runs on every step at
once; the recurrent one ("same" padding, stride 1, no bias) step by step, in LSTM's loop with its
masks, states, `go_backwards`, `return_state` and dropouts (recurrent.py). Gates i, f, c, o are
stacked on the channel axis in Keras' order, so a Keras kernel (*kernel, in, 4 * filters) is the
input convolution's weight once transposed.
"""
from torch import nn

from ember.config import normalize_data_format
from ember.define.layers.conv import Conv1D, Conv2D, Conv3D
from ember.define.layers.recurrent import LSTM


class _ConvLSTM(LSTM):
    spatial_dims = None
    fused_ok = False
    gate_axis = 1

    def __init__(self, filters, kernel_size, strides=1, padding="valid", dilation_rate=1, activation="tanh",
                 recurrent_activation="sigmoid", use_bias=True, return_sequences=False, return_state=False,
                 go_backwards=False, dropout=0.0, recurrent_dropout=0.0, *, data_format=None,
                 zero_output_for_mask=False, input_shape=None, name=None):
        super().__init__(filters, activation, recurrent_activation, use_bias, return_sequences, go_backwards,
                         dropout, recurrent_dropout, return_state, zero_output_for_mask=zero_output_for_mask,
                         input_shape=input_shape, name=name)
        self.data_format = normalize_data_format(data_format)
        self.channels_last = self.data_format == "channels_last"
        conv = {1: Conv1D, 2: Conv2D, 3: Conv3D}[self.spatial_dims]
        self.input_conv = conv(4 * self.units, kernel_size, strides, padding, dilation_rate, use_bias=use_bias,
                               data_format="channels_first")
        if self.input_conv.padding == "causal":
            raise ValueError(f"padding must be 'same' or 'valid', got {padding!r}")
        self.recurrent_conv = conv(4 * self.units, kernel_size, 1, "same", use_bias=False,
                                   data_format="channels_first")

    def _steps_layout(self):
        spatial = self.input_conv.spatial_names()
        channels = getattr(self, "in_channels", "channels")
        return ("batch", "steps") + (spatial + (channels,) if self.channels_last else (channels,) + spatial)

    def check_input_shape(self, input_shape):
        if len(input_shape) != self.spatial_dims + 2:
            raise self.shape_error(self._steps_layout(), ("batch",) + tuple(input_shape))

    def build(self, input_shape):
        steps = tuple(input_shape)
        step = (steps[-1],) + steps[1:-1] if self.channels_last else steps[1:]  # (channels, *spatial)
        self.in_channels = int(step[0])
        self.out_spatial = tuple(self.input_conv.build_for(step)[1:])
        self.recurrent_conv.build_for((self.units,) + self.out_spatial)
        if self.use_bias:  # Keras' unit_forget_bias: the forget gate starts open
            nn.init.ones_(self.input_conv.bias.data[self.units:2 * self.units])

    def compute_output_shape(self, input_shape):
        state = self.out_spatial + (self.units,) if self.channels_last else (self.units,) + self.out_spatial
        output = (input_shape[0],) + state if self.return_sequences else state
        return (output, state, state) if self.return_state else output

    def check_steps(self, x):
        """`x`: steps with their channels on axis 2 (forward moved them there when the rank was right)."""
        rank = self.spatial_dims + 3
        if x.dim() != rank or x.shape[2] != self.in_channels or tuple(x.shape[3:]) != self._in_spatial:
            received = x.movedim(2, -1).shape if self.channels_last and x.dim() == rank else x.shape
            raise self.shape_error(self._steps_layout(), tuple(received))

    @property
    def _in_spatial(self):
        steps = self.input_shape
        return tuple(steps[1:-1] if self.channels_last else steps[2:])

    def state_shape(self, x):
        return (x.shape[0], self.units) + self.out_spatial

    def project(self, x):
        return self.input_conv(x.flatten(0, 1)).unflatten(0, x.shape[:2])

    def recurrent(self, hidden):
        return self.recurrent_conv(hidden)

    def forward(self, x, mask=None, initial_state=None):
        moved = self.channels_last and x.dim() == self.spatial_dims + 3
        if moved:
            x = x.movedim(-1, 2)
            if initial_state is not None:
                given = initial_state if isinstance(initial_state, (list, tuple)) else [initial_state]
                initial_state = [state.movedim(-1, 1) for state in given]
        result = super().forward(x, mask, initial_state)
        if not moved:
            return result
        if self.return_state:
            output, *states = result
            return [output.movedim(2 if self.return_sequences else 1, -1), *(s.movedim(1, -1) for s in states)]
        return result.movedim(2 if self.return_sequences else 1, -1)


class ConvLSTM1D(_ConvLSTM):
    spatial_dims = 1


class ConvLSTM2D(_ConvLSTM):
    spatial_dims = 2


class ConvLSTM3D(_ConvLSTM):
    spatial_dims = 3
