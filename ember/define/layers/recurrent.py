"""SimpleRNN, LSTM and GRU over (batch, steps, features) inputs, with Keras' arguments and masks.

Parameters use torch's names and gate order (`weight_ih`, `weight_hh`, `bias_ih`,
`bias_hh`; LSTM gates i, f, g, o; GRU gates r, z, n), with Keras' biases: SimpleRNN and LSTM have
one (`bias_ih`), GRU with `reset_after` two. With the default activations and no
recurrent dropout, LSTM and GRU run torch's fused kernels (`torch.lstm` / `torch.gru`), under a
mask too (each row's real steps moved to the front); anything else (other
activations, GRU's `reset_after=False`, Keras 2's old default that applies the reset gate before
the recurrent matmul, recurrent dropout in training, SimpleRNN, an LSTM's final `c` under a mask)
runs a step loop with the same parameters.

A mask (batch, steps), True for real steps, works as in Keras' RNN loop: a masked step keeps
the previous state and outputs the previous output (zeros before the first real step, and always
with `zero_output_for_mask`, which Bidirectional sets when it returns sequences), so padding
changes nothing of what the real steps compute. With `return_sequences` the output keeps the mask (masking.py).

As in Keras, `initial_state=[h]` (LSTM: `[h, c]`, each (batch, units)) starts the recurrence from
given states instead of zeros, and `return_state=True` returns `[output, h]` (LSTM: `[output, h, c]`),
the states after the last real step: a sequence-to-sequence encoder hands them to its decoder.
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
                 return_sequences=False, go_backwards=False, dropout=0.0, recurrent_dropout=0.0,
                 return_state=False, *, zero_output_for_mask=False, input_shape=None, name=None):
        super().__init__(input_shape=input_shape, name=name)
        self.units = int(units)
        self.activation_name, self.recurrent_activation_name = activation, recurrent_activation
        self.activation = activations.get(activation)
        self.recurrent_activation = activations.get(recurrent_activation)
        self.use_bias, self.return_sequences, self.go_backwards = use_bias, return_sequences, go_backwards
        self.dropout, self.recurrent_dropout = float(dropout), float(recurrent_dropout)
        self.zero_output_for_mask, self.return_state = bool(zero_output_for_mask), bool(return_state)

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

    @property
    def state_count(self) -> int:
        return 2 if self.gates == 4 else 1  # LSTM: h and c

    def compute_output_shape(self, input_shape):
        output = (input_shape[0], self.units) if self.return_sequences else (self.units,)
        return (output,) + ((self.units,),) * self.state_count if self.return_state else output

    def compute_mask(self, inputs, mask):
        output_mask = mask if self.return_sequences else None
        return [output_mask] + [None] * self.state_count if self.return_state else output_mask

    def check_steps(self, x):
        """Raise a ShapeError unless `x` is a batch of steps this layer was built for."""
        if x.dim() != 3 or x.shape[-1] != self.in_features:
            raise self.shape_error(("batch", "steps", self.in_features), tuple(x.shape))

    def state_shape(self, x) -> tuple:
        """The shape of each state (h, and an LSTM's c) for the batch of steps `x`."""
        return (x.shape[0], self.units)

    def project(self, x):
        """Every step's input transform at once (before the recurrence adds its own)."""
        return F.linear(x, self.weight_ih, self.bias_ih)

    def forward(self, x, mask=None, initial_state=None):
        self.check_steps(x)
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
            x = x * torch.bernoulli(x.new_full((x.shape[0], 1, *x.shape[2:]), keep)) / keep
        state = self._initial_state(x, initial_state)
        fused = (self.activation_name == "tanh" and self.recurrent_activation_name == "sigmoid" and self.fused_ok
                 and not (self.training and self.recurrent_dropout))
        if fused and mask is None:
            sequence, state = self.run_fused(x, state)
        elif fused and not (self.return_state and self.state_count == 2):  # an LSTM's last c needs the loop
            sequence, state = self.run_fused_masked(x, state, mask)
        else:
            sequence, state = self.run_loop(x, state, mask)
        output = sequence if self.return_sequences else sequence[:, -1]
        return [output, *state] if self.return_state else output

    def _initial_state(self, x, given):
        """The state the recurrence starts from: zeros, or `initial_state`'s tensors, checked."""
        expected = tuple(self.state_shape(x))
        if given is None:
            return (x.new_zeros(expected),) * self.state_count
        given = tuple(given) if isinstance(given, (list, tuple)) else (given,)
        if len(given) != self.state_count or any(tuple(t.shape) != expected for t in given):
            raise self.shape_error(f"initial_state: {self.state_count} tensor(s) of shape {expected}",
                                   f"initial_state: {[tuple(t.shape) for t in given]}")
        return tuple(t.to(x.dtype) for t in given)

    def _params(self):
        return [p for p in (self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh) if p is not None]

    def run_fused_masked(self, x, state, mask):
        """The fused kernel under a mask: (outputs, (h,)). Masked steps leave the state as it was, so each
        row's real steps, moved to the front in order, give the same states one after the other; every
        step then outputs the output of the real steps so far (zeros before the first). No Python loop,
        and the sequence length stays free in an export."""
        count = mask.long().cumsum(1)  # real steps up to each position
        length = count[:, -1:]
        steps = torch.arange(1, mask.shape[1] + 1, device=mask.device)[None]
        to = torch.where(mask, count - 1, length + steps - count - 1)  # real steps first, both in order
        compact = torch.zeros_like(x).scatter(1, to[..., None].expand_as(x), x)
        outputs, _ = self.run_fused(compact, state)
        seen = torch.gather(outputs, 1, (count - 1).clamp(min=0)[..., None].expand(-1, -1, self.units))
        sequence = torch.where((count > 0 if not self.zero_output_for_mask else mask)[..., None], seen, 0.0)
        last = torch.gather(outputs, 1, (length - 1).clamp(min=0)[..., None].expand(-1, 1, self.units))[:, 0]
        return sequence, (torch.where(length > 0, last, state[0]),)

    def run_loop(self, x, state, mask):
        """One step at a time: (outputs, final state); the state is a tuple whose first item is the output (h)."""
        dropped = self._recurrent_dropout(state[0])
        inputs = self.project(x)
        outputs, output = [], torch.zeros_like(state[0])  # Keras' output before the first step: zeros
        for t in range(x.shape[1]):
            new = self.step(inputs[:, t], state[0] if dropped is None else state[0] * dropped, state)
            if mask is not None:
                real = mask[:, t].reshape((-1,) + (1,) * (state[0].dim() - 1))
                output = torch.where(real, new[0], 0.0 if self.zero_output_for_mask else output)
                new = tuple(torch.where(real, value, old) for value, old in zip(new, state))
            else:
                output = new[0]
            state = new
            outputs.append(output)
        return torch.stack(outputs, dim=1), state

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
                 dropout=0.0, recurrent_dropout=0.0, return_state=False, *, zero_output_for_mask=False,
                 input_shape=None, name=None):
        super().__init__(units, activation, None, use_bias, return_sequences, go_backwards, dropout,
                         recurrent_dropout, return_state, zero_output_for_mask=zero_output_for_mask,
                         input_shape=input_shape, name=name)

    def step(self, inputs, hidden, state):
        return (self.activation(inputs + F.linear(hidden, self.weight_hh)),)


class LSTM(_Recurrent):
    """Keras' LSTM: one bias (`bias_ih`), as Keras has; torch's second (recurrent) bias would be a copy
    that training moves as far again, so the fused kernel is given zeros for it."""

    gates = 4
    has_recurrent_bias = False

    def run_fused(self, x, state):
        params = self._params()
        if self.use_bias:
            params.append(torch.zeros_like(self.bias_ih))
        output, h, c = torch.lstm(x, (state[0][None], state[1][None]), params, self.use_bias, 1, 0.0,
                                  self.training, False, True)
        return output, (h[0], c[0])

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Files saved when ember's LSTM had torch's two biases: their sum is the one bias.
        recurrent_bias = state_dict.pop(prefix + "bias_hh", None)
        if recurrent_bias is not None and prefix + "bias_ih" in state_dict:
            state_dict[prefix + "bias_ih"] = state_dict[prefix + "bias_ih"] + recurrent_bias
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    gate_axis = -1  # the axis the four gates are stacked on

    def recurrent(self, hidden):
        """The recurrent transform of the previous output, all four gates stacked."""
        return F.linear(hidden, self.weight_hh, self.bias_hh)

    def step(self, inputs, hidden, state):
        i, f, g, o = (inputs + self.recurrent(hidden)).chunk(4, dim=self.gate_axis)
        c = self.recurrent_activation(f) * state[1] + self.recurrent_activation(i) * self.activation(g)
        return self.recurrent_activation(o) * self.activation(c), c


class GRU(_Recurrent):
    gates = 3

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid", use_bias=True,
                 return_sequences=False, go_backwards=False, dropout=0.0, recurrent_dropout=0.0,
                 reset_after=True, return_state=False, *, zero_output_for_mask=False, input_shape=None, name=None):
        super().__init__(units, activation, recurrent_activation, use_bias, return_sequences, go_backwards,
                         dropout, recurrent_dropout, return_state, zero_output_for_mask=zero_output_for_mask,
                         input_shape=input_shape, name=name)
        self.reset_after = bool(reset_after)
        self.has_recurrent_bias = self.fused_ok = self.reset_after

    def run_fused(self, x, state):
        output, h = torch.gru(x, state[0][None], self._params(), self.use_bias, 1, 0.0, self.training, False, True)
        return output, (h[0],)

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
