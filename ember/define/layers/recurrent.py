"""SimpleRNN, LSTM and GRU over (batch, steps, features) inputs, with Keras' arguments and masks.

Parameters use torch's names and gate order (`weight_ih`, `weight_hh`, `bias_ih`,
`bias_hh`; LSTM gates i, f, g, o; GRU gates r, z, n). With the default activations, no
recurrent dropout and no mask, LSTM and GRU run torch's fused kernels (`torch.lstm` /
`torch.gru`); anything else (other activations, GRU's `reset_after=False`, Keras 2's old
default that applies the reset gate before the recurrent matmul, a mask, SimpleRNN) runs a
step loop with the same parameters.

A mask (batch, steps), True for real steps, works as in Keras' RNN loop: a masked step keeps
the previous state and outputs the previous output (zeros with `zero_output_for_mask`, which
Bidirectional sets when it returns sequences), so padding changes nothing of what the real
steps compute. With `return_sequences` the output keeps the mask (masking.py).
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

from ember.define import activations
from ember.define.layers.base import Layer


class _Recurrent(Layer):
    gates = None  # 1 for SimpleRNN, 4 for LSTM, 3 for GRU
    has_recurrent_bias = True
    fused_ok = True

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid", use_bias=True,
                 return_sequences=False, go_backwards=False, dropout=0.0, recurrent_dropout=0.0, *,
                 zero_output_for_mask=False, input_shape=None, name=None):
        super().__init__(input_shape=input_shape, name=name)
        self.units = int(units)
        self.activation_name, self.recurrent_activation_name = activation, recurrent_activation
        self.activation = activations.get(activation)
        self.recurrent_activation = activations.get(recurrent_activation)
        self.use_bias, self.return_sequences, self.go_backwards = use_bias, return_sequences, go_backwards
        self.dropout, self.recurrent_dropout = float(dropout), float(recurrent_dropout)
        self.zero_output_for_mask = bool(zero_output_for_mask)

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

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.units) if self.return_sequences else (self.units,)

    def compute_mask(self, inputs, mask):
        return mask if self.return_sequences else None

    def forward(self, x, mask=None):
        if x.dim() != 3 or x.shape[-1] != self.in_features:
            raise self.shape_error(("batch", "steps", self.in_features), tuple(x.shape))
        if mask is not None:
            if tuple(mask.shape) != tuple(x.shape[:2]):
                raise self.shape_error(f"a mask of shape (batch, steps) = {tuple(x.shape[:2])}",
                                       f"a mask of shape {tuple(mask.shape)}")
            mask = mask.bool()
        if self.go_backwards:
            x = x.flip(1)
            mask = None if mask is None else mask.flip(1)
        if self.training and self.dropout:
            # Keras drops the same input features at every step.
            keep = 1.0 - self.dropout
            x = x * torch.bernoulli(x.new_full((x.shape[0], 1, x.shape[2]), keep)) / keep
        h0 = x.new_zeros(x.shape[0], self.units)
        fused = (self.activation_name == "tanh" and self.recurrent_activation_name == "sigmoid" and mask is None
                 and self.fused_ok and not (self.training and self.recurrent_dropout))
        sequence = self.run_fused(x, h0) if fused else self.run_loop(x, h0, mask)
        return sequence if self.return_sequences else sequence[:, -1]

    def _params(self):
        return [p for p in (self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh) if p is not None]

    def run_loop(self, x, h0, mask):
        """One step at a time; the state is a tuple whose first item is the output (h)."""
        dropped = self._recurrent_dropout(h0)
        inputs = F.linear(x, self.weight_ih, self.bias_ih)
        state, outputs = self.initial_state(h0), []
        for t in range(x.shape[1]):
            new = self.step(inputs[:, t], state[0] if dropped is None else state[0] * dropped, state)
            output = new[0]
            if mask is not None:
                real = mask[:, t, None]
                new = tuple(torch.where(real, value, old) for value, old in zip(new, state))
                output = torch.where(real, output, 0.0) if self.zero_output_for_mask else new[0]
            state = new
            outputs.append(output)
        return torch.stack(outputs, dim=1)

    def initial_state(self, h0):
        return (h0,)

    def _recurrent_dropout(self, h):
        if not (self.training and self.recurrent_dropout):
            return None
        keep = 1.0 - self.recurrent_dropout
        return torch.bernoulli(torch.full_like(h, keep)) / keep


class SimpleRNN(_Recurrent):
    """`h = activation(x @ kernel + h @ recurrent_kernel + bias)`, one bias as Keras."""

    gates = 1
    has_recurrent_bias = fused_ok = False

    def __init__(self, units, activation="tanh", use_bias=True, return_sequences=False, go_backwards=False,
                 dropout=0.0, recurrent_dropout=0.0, *, zero_output_for_mask=False, input_shape=None, name=None):
        super().__init__(units, activation, None, use_bias, return_sequences, go_backwards, dropout,
                         recurrent_dropout, zero_output_for_mask=zero_output_for_mask, input_shape=input_shape,
                         name=name)

    def step(self, inputs, hidden, state):
        return (self.activation(inputs + F.linear(hidden, self.weight_hh)),)


class LSTM(_Recurrent):
    gates = 4

    def run_fused(self, x, h0):
        output, _, _ = torch.lstm(x, (h0[None], h0[None]), self._params(), self.use_bias, 1, 0.0,
                                  self.training, False, True)
        return output

    def initial_state(self, h0):
        return h0, h0  # h, c

    def step(self, inputs, hidden, state):
        i, f, g, o = (inputs + F.linear(hidden, self.weight_hh, self.bias_hh)).chunk(4, dim=-1)
        c = self.recurrent_activation(f) * state[1] + self.recurrent_activation(i) * self.activation(g)
        return self.recurrent_activation(o) * self.activation(c), c


class GRU(_Recurrent):
    gates = 3

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid", use_bias=True,
                 return_sequences=False, go_backwards=False, dropout=0.0, recurrent_dropout=0.0,
                 reset_after=True, *, zero_output_for_mask=False, input_shape=None, name=None):
        super().__init__(units, activation, recurrent_activation, use_bias, return_sequences, go_backwards,
                         dropout, recurrent_dropout, zero_output_for_mask=zero_output_for_mask,
                         input_shape=input_shape, name=name)
        self.reset_after = bool(reset_after)
        self.has_recurrent_bias = self.fused_ok = self.reset_after

    def run_fused(self, x, h0):
        output, _ = torch.gru(x, h0[None], self._params(), self.use_bias, 1, 0.0, self.training, False, True)
        return output

    def step(self, inputs, hidden, state):
        x_r, x_z, x_n = inputs.chunk(3, dim=-1)
        if self.reset_after:
            h_r, h_z, h_n = F.linear(hidden, self.weight_hh, self.bias_hh).chunk(3, dim=-1)
            r = self.recurrent_activation(x_r + h_r)
            n = self.activation(x_n + r * h_n)
        else:
            w_hr, w_hz, w_hn = self.weight_hh.chunk(3)
            r = self.recurrent_activation(x_r + F.linear(hidden, w_hr))
            h_z = F.linear(hidden, w_hz)
            n = self.activation(x_n + F.linear(r * hidden, w_hn))
        z = self.recurrent_activation(x_z + h_z)
        return ((1 - z) * n + z * state[0],)
