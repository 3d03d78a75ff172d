"""Bidirectional: a recurrent layer run forwards and a copy of it run backwards, outputs merged.

As Keras: the backward layer is the forward one's config with `go_backwards` flipped (or one
given), it reads the steps last to first, and with `return_sequences` its outputs are flipped
back so step t of both lines up. Under a mask, both skip the padded steps (the backward layer
starts at each row's last real step: trailing padding comes first for it and leaves its state
at zero), and with `return_sequences` both output zeros there (Keras sets `zero_output_for_mask`).
With `return_state` (the wrapped layer's) the outputs are followed by the forward layer's states,
then the backward layer's; `initial_state` takes them in the same order.
"""
import torch

from ember.define.layers.base import Layer
from ember.define.layers import recurrent

MERGE_MODES = {
    "concat": lambda y, y_rev: torch.cat([y, y_rev], dim=-1),
    "sum": lambda y, y_rev: y + y_rev,
    "mul": lambda y, y_rev: y * y_rev,
    "ave": lambda y, y_rev: (y + y_rev) / 2,
    None: lambda y, y_rev: (y, y_rev),
}
RECURRENT_LAYERS = {cls.__name__: cls for cls in (recurrent.SimpleRNN, recurrent.LSTM, recurrent.GRU)}


class Bidirectional(Layer):
    """`layer` (SimpleRNN, LSTM or GRU, or its config {"class_name", "config"}) both ways; `merge_mode`:
    "concat" (default), "sum", "mul", "ave" or None (the two outputs as a tuple)."""

    def __init__(self, layer, merge_mode="concat", backward_layer=None, *, input_shape=None, name=None):
        super().__init__(input_shape=input_shape, name=name)
        if merge_mode not in MERGE_MODES:
            raise ValueError(f"merge_mode must be one of 'concat', 'sum', 'mul', 'ave' or None, got {merge_mode!r}")
        self.merge_mode = merge_mode
        self.forward_layer = _recurrent_layer(layer, "layer")
        if backward_layer is None:
            config = {**self.forward_layer.get_config(), "go_backwards": not self.forward_layer.go_backwards,
                      "name": f"backward_{self.forward_layer.name or 'layer'}", "input_shape": None}
            backward_layer = type(self.forward_layer).from_config(config)
        self.backward_layer = _recurrent_layer(backward_layer, "backward_layer")
        if self.backward_layer.go_backwards == self.forward_layer.go_backwards:
            raise ValueError("Bidirectional's forward and backward layers must differ in go_backwards, both have "
                             f"go_backwards={self.forward_layer.go_backwards}")
        self.return_sequences = self.forward_layer.return_sequences
        self.return_state = self.forward_layer.return_state
        if self.backward_layer.return_state != self.return_state:
            raise ValueError("Bidirectional's forward and backward layers must agree on return_state")
        for line in (self.forward_layer, self.backward_layer):
            line.zero_output_for_mask = line.return_sequences

    def check_input_shape(self, input_shape):
        self.forward_layer.check_input_shape(input_shape)

    def build(self, input_shape):
        self.forward_layer.build_for(input_shape)
        self.backward_layer.build_for(input_shape)

    def compute_output_shape(self, input_shape):
        shape, *forward_states = _outputs(self.forward_layer.compute_output_shape(input_shape), self.return_state)
        backward, *backward_states = _outputs(self.backward_layer.compute_output_shape(input_shape),
                                              self.return_state)
        if self.merge_mode is None:
            outputs = (shape, backward)
        else:
            outputs = (shape[:-1] + (shape[-1] + backward[-1],) if self.merge_mode == "concat" else shape,)
        outputs += tuple(forward_states) + tuple(backward_states)
        return outputs if len(outputs) > 1 else outputs[0]

    def compute_mask(self, inputs, mask):
        output_mask = mask if self.return_sequences else None
        masks = [output_mask] * (2 if self.merge_mode is None else 1)
        masks += [None] * (self.forward_layer.state_count + self.backward_layer.state_count) * self.return_state
        return masks if len(masks) > 1 else masks[0]

    def forward(self, x, mask=None, initial_state=None):
        forward_state = backward_state = None
        if initial_state is not None:
            count = self.forward_layer.state_count
            if len(initial_state) != count + self.backward_layer.state_count:
                raise self.shape_error(f"initial_state: {count} forward then {count} backward state tensors",
                                       f"{len(initial_state)} tensors")
            forward_state, backward_state = list(initial_state[:count]), list(initial_state[count:])
        y, *forward_states = _outputs(self.forward_layer(x, mask=mask, initial_state=forward_state),
                                      self.return_state)
        y_rev, *backward_states = _outputs(self.backward_layer(x, mask=mask, initial_state=backward_state),
                                           self.return_state)
        if self.return_sequences:
            y_rev = y_rev.flip(1)
        merged = MERGE_MODES[self.merge_mode](y, y_rev)
        if not self.return_state:
            return merged
        return [*(merged if self.merge_mode is None else (merged,)), *forward_states, *backward_states]

    def get_config(self):
        config = super().get_config()
        config.update(layer=_describe(self.forward_layer), backward_layer=_describe(self.backward_layer))
        return config


def _outputs(value, return_state):
    """A recurrent layer's output (or output shape) as a list: [output, *states]."""
    return list(value) if return_state else [value]


def _recurrent_layer(value, argument):
    if isinstance(value, dict) and value.get("class_name") in RECURRENT_LAYERS:
        value = RECURRENT_LAYERS[value["class_name"]].from_config(value.get("config", {}))
    if not isinstance(value, tuple(RECURRENT_LAYERS.values())):
        raise TypeError(f"Bidirectional's {argument} must be a SimpleRNN, LSTM or GRU layer (or its config "
                        f"{{'class_name': ..., 'config': ...}}), got {value!r:.100}")
    return value


def _describe(layer):
    return {"class_name": type(layer).__name__, "config": layer.get_config()}
