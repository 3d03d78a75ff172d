"""LSTM and GRU over (batch, steps, features) inputs, with Keras' arguments.

Parameters use torch's names and gate order (`weight_ih`, `weight_hh`, `bias_ih`,
`bias_hh`; LSTM gates i, f, g, o; GRU gates r, z, n). With the default activations and
no recurrent dropout the layers run torch's fused kernels (`torch.lstm` / `torch.gru`);
other activations and GRU's `reset_after=False` (Keras 2's old default, which applies
the reset gate before the recurrent matmul) run a step loop with the same parameters.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

from ember.define import activations
from ember.define.layers.base import Layer


class _Recurrent(Layer):
    gates = None  # 4 for LSTM, 3 for GRU

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid", use_bias=True,
                 return_sequences=False, go_backwards=False, dropout=0.0, recurrent_dropout=0.0, *,
                 input_shape=None, name=None):
        super().__init__(input_shape=input_shape, name=name)
        self.units = int(units)
        self.activation_name, self.recurrent_activation_name = activation, recurrent_activation
        self.activation = activations.get(activation)
        self.recurrent_activation = activations.get(recurrent_activation)
        self.use_bias, self.return_sequences, self.go_backwards = use_bias, return_sequences, go_backwards
        self.dropout, self.recurrent_dropout = float(dropout), float(recurrent_dropout)

    def check_input_shape(self, input_shape):
        if len(input_shape) != 2:
            raise self.shape_error("(batch, steps, features)", ("batch",) + tuple(input_shape))

    def build(self, input_shape):
        self.in_features = int(input_shape[-1])
        size = self.gates * self.units
        bound = 1.0 / math.sqrt(self.units)
        self.weight_ih = nn.Parameter(torch.empty(size, self.in_features).uniform_(-bound, bound))
        self.weight_hh = nn.Parameter(torch.empty(size, self.units).uniform_(-bound, bound))
        self.bias_ih = nn.Parameter(torch.zeros(size)) if self.use_bias else None
        self.bias_hh = nn.Parameter(torch.zeros(size)) if self.use_bias and self.has_recurrent_bias else None

    has_recurrent_bias = True

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.units) if self.return_sequences else (self.units,)

    def forward(self, x):
        if x.dim() != 3 or x.shape[-1] != self.in_features:
            raise self.shape_error(("batch", "steps", self.in_features), tuple(x.shape))
        if self.go_backwards:
            x = x.flip(1)
        if self.training and self.dropout:
            # Keras drops the same input features at every step.
            keep = 1.0 - self.dropout
            x = x * torch.bernoulli(x.new_full((x.shape[0], 1, x.shape[2]), keep)) / keep
        h0 = x.new_zeros(x.shape[0], self.units)
        fused = (self.activation_name == "tanh" and self.recurrent_activation_name == "sigmoid"
                 and self.fused_ok and not (self.training and self.recurrent_dropout))
        sequence = self.run_fused(x, h0) if fused else self.run_loop(x, h0)
        return sequence if self.return_sequences else sequence[:, -1]

    fused_ok = True

    def _params(self):
        return [p for p in (self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh) if p is not None]

    def _recurrent_mask(self, h):
        if not (self.training and self.recurrent_dropout):
            return None
        keep = 1.0 - self.recurrent_dropout
        return torch.bernoulli(torch.full_like(h, keep)) / keep


class LSTM(_Recurrent):
    gates = 4

    def run_fused(self, x, h0):
        output, _, _ = torch.lstm(x, (h0[None], h0[None]), self._params(), self.use_bias, 1, 0.0,
                                  self.training, False, True)
        return output

    def run_loop(self, x, h):
        c, mask, outputs = h, self._recurrent_mask(h), []
        inputs = F.linear(x, self.weight_ih, self.bias_ih)
        for t in range(x.shape[1]):
            recurrent = F.linear(h if mask is None else h * mask, self.weight_hh, self.bias_hh)
            i, f, g, o = (inputs[:, t] + recurrent).chunk(4, dim=-1)
            c = self.recurrent_activation(f) * c + self.recurrent_activation(i) * self.activation(g)
            h = self.recurrent_activation(o) * self.activation(c)
            outputs.append(h)
        return torch.stack(outputs, dim=1)


class GRU(_Recurrent):
    gates = 3

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid", use_bias=True,
                 return_sequences=False, go_backwards=False, dropout=0.0, recurrent_dropout=0.0,
                 reset_after=True, *, input_shape=None, name=None):
        super().__init__(units, activation, recurrent_activation, use_bias, return_sequences, go_backwards,
                         dropout, recurrent_dropout, input_shape=input_shape, name=name)
        self.reset_after = bool(reset_after)
        self.has_recurrent_bias = self.fused_ok = self.reset_after

    def run_fused(self, x, h0):
        output, _ = torch.gru(x, h0[None], self._params(), self.use_bias, 1, 0.0, self.training, False, True)
        return output

    def run_loop(self, x, h):
        mask, outputs = self._recurrent_mask(h), []
        inputs = F.linear(x, self.weight_ih, self.bias_ih)
        w_hr, w_hz, w_hn = self.weight_hh.chunk(3)
        for t in range(x.shape[1]):
            h_in = h if mask is None else h * mask
            x_r, x_z, x_n = inputs[:, t].chunk(3, dim=-1)
            if self.reset_after:
                h_r, h_z, h_n = F.linear(h_in, self.weight_hh, self.bias_hh).chunk(3, dim=-1)
                r = self.recurrent_activation(x_r + h_r)
                n = self.activation(x_n + r * h_n)
            else:
                r = self.recurrent_activation(x_r + F.linear(h_in, w_hr))
                h_z = F.linear(h_in, w_hz)
                n = self.activation(x_n + F.linear(r * h_in, w_hn))
            z = self.recurrent_activation(x_z + h_z)
            h = (1 - z) * n + z * h
            outputs.append(h)
        return torch.stack(outputs, dim=1)
