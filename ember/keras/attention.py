"""Keras' MultiHeadAttention in ember: its options, and its EinsumDense kernels as torch matrices.

Keras keeps each projection as an einsum kernel: query, key (features, heads, key_dim), value
(features, heads, value_dim), the gate (query features, heads, value_dim) with `use_gate`, and
the output (heads, value_dim, output features), with biases (heads, size) and (output features,).
torch's layout is the matrices those reshape to, transposed. Registered into `KERAS_LAYERS` by
layers.py.
"""
from ember.define import layers as L
from ember.keras.layers import KerasLayer, UnsupportedConfig


def _build_multi_head_attention(config, layout, shape, keras2=False):
    rank = len(shape) + 1  # the query's, with the batch axis
    axes = config.get("attention_axes")
    axes = [axes] if isinstance(axes, int) else axes
    if axes is not None and sorted(a if a >= 0 else rank + a for a in axes) != list(range(1, rank - 1)):
        raise UnsupportedConfig(f"attention_axes={config.get('attention_axes')!r} (attention over every axis "
                                "between the batch and the features is)")
    output_shape = config.get("output_shape")
    if isinstance(output_shape, (list, tuple)) and len(output_shape) != 1:
        raise UnsupportedConfig(f"output_shape={output_shape!r} (one size is)")
    return [L.MultiHeadAttention(config["num_heads"], config["key_dim"], config.get("value_dim"),
                                 config.get("dropout", 0.0), config.get("use_bias", True), output_shape,
                                 config.get("sliding_window"), config.get("use_gate", False),
                                 name=config["name"])], layout


def _multi_head_attention_weights(arrays, config, layout, shape):
    parts = ["query", "key"] + ["gate"] * bool(config.get("use_gate")) + ["value", "output"]
    per_part = 2 if config.get("use_bias", True) else 1
    if len(arrays) != per_part * len(parts):
        raise ValueError(f"{len(arrays)} arrays, expected {per_part * len(parts)} for {', '.join(parts)}")
    out = {}
    for index, part in enumerate(parts):
        kernel = arrays[index * per_part]
        matrix = kernel.reshape(-1, kernel.shape[-1]) if part == "output" else kernel.reshape(kernel.shape[0], -1)
        out[f"{part}_weight"] = matrix.T
        if per_part == 2:
            out[f"{part}_bias"] = arrays[index * per_part + 1].reshape(-1)
    return out


ATTENTION_LAYERS = {
    "MultiHeadAttention": KerasLayer(_build_multi_head_attention, _multi_head_attention_weights,
                                     call_options=("use_causal_mask", "return_attention_scores")),
}
