"""Keras' recurrent layers in ember: SimpleRNN, LSTM, GRU, ConvLSTM1D/2D/3D, Bidirectional around
SimpleRNN, LSTM or GRU, and TimeDistributed around any layer ember converts.

Keras keeps a cell's kernel (features, gates * units), recurrent kernel (units, gates * units)
and bias; torch's layout is the transposed matrices, with LSTM's gates in the same order and
GRU's reordered (Keras z, r, h -> torch r, z, n). A Bidirectional's arrays are its forward
layer's, then its backward layer's; a TimeDistributed's are its inner layer's. Registered into
`KERAS_LAYERS` by layers.py.
"""
import numpy as np

from ember.define import layers as L
from ember.keras.layers import KERAS, KERAS_LAYERS, KerasLayer, UnsupportedConfig, activation_name, conv_kernel

MERGE_MODES = ("concat", "sum", "mul", "ave", None)  # None: the two directions' outputs, as two tensors


def _recurrent_options(config, keras2, recurrent_activation=True):
    """The keyword arguments of every recurrent layer, from its config."""
    for option in ("stateful", "time_major"):
        if config.get(option):
            raise UnsupportedConfig(f"{option}=True")
    options = dict(activation=activation_name(config.get("activation", "tanh"), keras2),
                   use_bias=config.get("use_bias", True), return_sequences=config.get("return_sequences", False),
                   go_backwards=config.get("go_backwards", False), dropout=config.get("dropout", 0.0),
                   recurrent_dropout=config.get("recurrent_dropout", 0.0),
                   return_state=bool(config.get("return_state", False)),
                   zero_output_for_mask=config.get("zero_output_for_mask", False), name=config["name"])
    if recurrent_activation:
        options["recurrent_activation"] = activation_name(config.get("recurrent_activation", "sigmoid"), keras2)
    return options


def _recurrent_layer(cls, config, keras2):
    kwargs = _recurrent_options(config, keras2, recurrent_activation=cls is not L.SimpleRNN)
    if cls is L.GRU:
        kwargs["reset_after"] = config.get("reset_after", True)
    return cls(config["units"], **kwargs)


def _build_conv_lstm(cls):
    def build(config, layout, shape, keras2=False):
        return [cls(config["filters"], config["kernel_size"], config.get("strides", 1), config.get("padding", "valid"),
                    config.get("dilation_rate", 1), data_format=config.get("data_format") or "channels_last",
                    **_recurrent_options(config, keras2))], KERAS
    return build


def _conv_lstm_weights(arrays, config, layout, shape):
    # Keras' kernels (*kernel, in, 4 * filters) and (*kernel, filters, 4 * filters), gates i, f, c, o on
    # the last axis: the convolutions' weights once transposed. One bias, the input convolution's.
    out = {"input_conv.weight": conv_kernel(arrays[0]), "recurrent_conv.weight": conv_kernel(arrays[1])}
    if len(arrays) > 2:
        out["input_conv.bias"] = arrays[2]
    return out


def _build_recurrent(cls):
    def build(config, layout, shape, keras2=False):
        return [_recurrent_layer(cls, config, keras2)], KERAS
    return build


def _simple_rnn_weights(arrays, config, layout, shape):
    out = {"weight_ih": arrays[0].T, "weight_hh": arrays[1].T}
    if len(arrays) > 2:
        out["bias_ih"] = arrays[2]
    return out


def _lstm_weights(arrays, config, layout, shape):
    # Keras' gates i, f, c, o are torch's i, f, g, o: same order, transposed matrices.
    out = {"weight_ih": arrays[0].T, "weight_hh": arrays[1].T}
    if len(arrays) > 2:
        out["bias_ih"] = arrays[2]  # one bias, as ember's LSTM has
    return out


def _gru_weights(arrays, config, layout, shape):
    def reorder(a):  # Keras' gates z, r, h -> torch's r, z, n on the last axis
        z, r, h = np.split(a, 3, axis=-1)
        return np.concatenate([r, z, h], axis=-1)

    out = {"weight_ih": reorder(arrays[0]).T, "weight_hh": reorder(arrays[1]).T}
    if len(arrays) > 2:
        bias = reorder(arrays[2])
        if config.get("reset_after", True):  # (2, 3 units): input bias, recurrent bias
            out["bias_ih"], out["bias_hh"] = bias[0], bias[1]
        else:
            out["bias_ih"] = bias
    return out


_CELLS = {"SimpleRNN": (L.SimpleRNN, _simple_rnn_weights), "LSTM": (L.LSTM, _lstm_weights),
          "GRU": (L.GRU, _gru_weights)}


def _wrapped(config, key):
    """(class name, config) of the layer a Bidirectional's config holds under `key`."""
    entry = config.get(key)
    if not isinstance(entry, dict) or not isinstance(entry.get("config"), dict):
        raise ValueError(f"Bidirectional's {key} must be a layer's {{class_name, config}}, got {entry!r:.100}")
    if entry.get("class_name") not in _CELLS:
        raise UnsupportedConfig(f"Bidirectional around {entry.get('class_name')!r} (SimpleRNN, LSTM and GRU are)")
    return entry["class_name"], entry["config"]


def _build_bidirectional(config, layout, shape, keras2=False):
    merge_mode = config.get("merge_mode", "concat")
    if merge_mode not in MERGE_MODES:
        raise UnsupportedConfig(f"merge_mode={merge_mode!r}")
    lines = [_wrapped(config, "layer")]
    if config.get("backward_layer") is not None:
        lines.append(_wrapped(config, "backward_layer"))
    layers = [_recurrent_layer(_CELLS[class_name][0], line_config, keras2) for class_name, line_config in lines]
    return [L.Bidirectional(layers[0], merge_mode, layers[1] if len(layers) > 1 else None, name=config["name"])], \
        KERAS


def _bidirectional_weights(arrays, config, layout, shape):
    forward_class, forward_config = _wrapped(config, "layer")
    backward_class, backward_config = _wrapped(config, "backward_layer") if config.get("backward_layer") \
        else (forward_class, forward_config)
    half = len(arrays) // 2
    out = {f"forward_layer.{key}": value
           for key, value in _CELLS[forward_class][1](arrays[:half], forward_config, layout, shape).items()}
    out.update({f"backward_layer.{key}": value
                for key, value in _CELLS[backward_class][1](arrays[half:], backward_config, layout, shape).items()})
    return out


def _inner(config):
    """(class name, config, KerasLayer) of the layer a TimeDistributed wraps."""
    entry = config.get("layer")
    if not isinstance(entry, dict) or not isinstance(entry.get("config"), dict) \
            or not isinstance(entry["config"].get("name", ""), str):
        raise ValueError(f"TimeDistributed's layer must be a layer's {{class_name, config}}, got {entry!r:.100}")
    class_name = entry.get("class_name")
    if class_name not in KERAS_LAYERS:
        raise UnsupportedConfig(f"TimeDistributed around {class_name!r}")
    return class_name, {"name": f"{config['name']}_layer", **entry["config"]}, KERAS_LAYERS[class_name]


def _build_time_distributed(config, layout, shape, keras2=False):
    class_name, inner_config, spec = _inner(config)
    if len(shape) < 2:
        raise ValueError(f"TimeDistributed takes (batch, steps, ...) inputs, got {('batch', *shape)}")
    modules, inner_layout = spec.build(inner_config, KERAS, tuple(shape[1:]), keras2=keras2)
    if inner_layout != KERAS:
        raise UnsupportedConfig(f"TimeDistributed around a {class_name} that changes the layout")
    # Each module of the inner layer applied per step: the first holds the weights, as for any layer.
    return [L.TimeDistributed(module, name=config["name"] if index == 0 else f"{config['name']}_{index}")
            for index, module in enumerate(modules)], KERAS


def _time_distributed_weights(arrays, config, layout, shape):
    class_name, inner_config, spec = _inner(config)
    if spec.weights is None:
        return {}
    step_shape = None if shape is None else tuple(shape[1:])  # None: load_keras_weights, which knows no shapes
    return {f"layer.{key}": value for key, value in spec.weights(arrays, inner_config, KERAS, step_shape).items()}


RECURRENT_LAYERS = {
    **{name: KerasLayer(_build_recurrent(cls), weights) for name, (cls, weights) in _CELLS.items()},
    "Bidirectional": KerasLayer(_build_bidirectional, _bidirectional_weights),
    "TimeDistributed": KerasLayer(_build_time_distributed, _time_distributed_weights),
    **{f"ConvLSTM{n}D": KerasLayer(_build_conv_lstm(getattr(L, f"ConvLSTM{n}D")), _conv_lstm_weights)
       for n in (1, 2, 3)},
}
