"""Keras' attention layers in ember: MultiHeadAttention (its options, and its EinsumDense kernels as
torch matrices), Attention and AdditiveAttention (their learned scale and score weight).

Keras keeps each projection as an einsum kernel: query, key (features, heads, key_dim), value
(features, heads, value_dim), the gate (query features, heads, value_dim) with `use_gate`, and
the output (heads, value_dim, output features), with biases (heads, size) and (output features,).
torch's layout is the matrices those reshape to, transposed. Registered into `KERAS_LAYERS` by
layers.py.
"""
import numpy as np

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


def _build_attention(config, layout, shape, keras2=False):
    return [L.Attention(config.get("use_scale", False), config.get("score_mode", "dot"), config.get("dropout", 0.0),
                        name=config["name"])], layout


def _build_additive_attention(config, layout, shape, keras2=False):
    return [L.AdditiveAttention(config.get("use_scale", True), config.get("dropout", 0.0), name=config["name"])], \
        layout


def _scalar_weights(arrays, config, layout, shape):
    """Attention's scale then concat_score_weight, as it creates them (scalars, which files may hold as
    one-element arrays); AdditiveAttention's scale (one per feature)."""
    additive = "score_mode" not in config
    names = ["scale"] * bool(config.get("use_scale", additive)) + ["concat_score_weight"] * (
        config.get("score_mode") == "concat")
    if len(arrays) != len(names) or not additive and any(np.size(a) != 1 for a in arrays):
        raise ValueError(f"{len(arrays)} arrays, expected {len(names)} ({', '.join(names) or 'none'})"
                         + ("" if additive else ", each one number"))
    return {name: a if additive else np.reshape(a, ()) for name, a in zip(names, arrays)}


_ATTENTION_CALL = ("use_causal_mask", "return_attention_scores")
ATTENTION_LAYERS = {
    "MultiHeadAttention": KerasLayer(_build_multi_head_attention, _multi_head_attention_weights,
                                     call_options=_ATTENTION_CALL),
    "Attention": KerasLayer(_build_attention, _scalar_weights, call_options=_ATTENTION_CALL),
    "AdditiveAttention": KerasLayer(_build_additive_attention, _scalar_weights, call_options=_ATTENTION_CALL),
}
