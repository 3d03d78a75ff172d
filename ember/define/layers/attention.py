"""MultiHeadAttention, Attention (Luong-style) and AdditiveAttention (Bahdanau-style) with Keras'
arguments, masks and computation.

`layer(query, value, key=None)`: query (batch, T, dim), value and key (batch, S, dim). Each is
projected to `num_heads` heads, attention runs over the steps, and the heads are projected back
to `output_shape` (default: query's last size). Inputs with more axes attend over all of them
jointly (Keras' default `attention_axes`), as if they were flattened into one step axis.

Masks work as in Keras: `query_mask` (batch, T), `value_mask` / `key_mask` (batch, S),
`attention_mask` (batch, T, S) and `use_causal_mask` are combined with AND; in a functional model
the masks of the query, value and key tensors (an `Embedding(mask_zero=True)`'s) are passed
automatically, and the output keeps the query's mask. A query step that may attend to nothing
attends to every step equally, as Keras' large negative bias (not -inf) makes it.

Parameters are torch-style matrices: `query_weight` (heads * key_dim, query dim), `key_weight`,
`value_weight` (heads * value_dim, value dim), `output_weight` (output dim, heads * value_dim),
with `*_bias` beside each when `use_bias`, and `gate_weight` (heads * value_dim, query dim) with
`use_gate` (the heads are multiplied by a sigmoid gate of the query before the output projection).

`Attention` and `AdditiveAttention` take a list [query, value] or [query, value, key] and their masks
(a list, as any layer called on a list): no projections, scores from the query and key (a dot product,
or `sum(tanh(query + key))`), masked value steps left out, masked query steps output zeros.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

from ember.define.layers.base import Layer

_MASKED = -1e9  # Keras' bias for masked scores in float32: finite, so a fully masked row stays uniform


class MultiHeadAttention(Layer):
    supports_masking = True  # the output keeps the query's mask

    def __init__(self, num_heads, key_dim, value_dim=None, dropout=0.0, use_bias=True, output_shape=None,
                 sliding_window=None, use_gate=False, *, input_shape=None, name=None):
        super().__init__(input_shape=input_shape, name=name)
        for argument, value in (("num_heads", num_heads), ("key_dim", key_dim), ("value_dim", value_dim or 1),
                                ("sliding_window", sliding_window or 1)):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"MultiHeadAttention's {argument} must be a positive integer, got {value!r}")
        if isinstance(output_shape, (list, tuple)):
            if len(output_shape) != 1:
                raise ValueError(f"MultiHeadAttention's output_shape must be one size, got {output_shape!r}")
            output_shape = output_shape[0]
        self.num_heads, self.key_dim, self.value_dim = num_heads, key_dim, value_dim or key_dim
        self.dropout, self.use_bias, self.output_size = float(dropout), use_bias, output_shape
        self.sliding_window, self.use_gate = sliding_window, bool(use_gate)

    @staticmethod
    def call_input_shape(query, value=None, key=None, **kwargs):
        """The shapes the layer is built for, from a call's tensors: [query, value, key] shapes."""
        if value is None:
            raise TypeError("MultiHeadAttention is called as layer(query, value) or layer(query, value, key)")
        key = value if key is None else key
        return [tuple(t.shape[1:]) for t in (query, value, key)]

    def _shapes(self, input_shape):
        """(query, value, key) shapes from [query, value] or [query, value, key]."""
        shapes = [tuple(shape) for shape in input_shape] if all(isinstance(s, (list, tuple)) for s in input_shape) \
            else []
        if len(shapes) not in (2, 3):
            raise self.shape_error("the shapes of query and value (and key): the layer is called as "
                                   "layer(query, value) or layer(query, value, key)", tuple(input_shape))
        return shapes[0], shapes[1], shapes[-1]

    def check_input_shape(self, input_shape):
        query, value, key = self._shapes(input_shape)
        if len(query) < 2 or len(value) < 2:
            raise self.shape_error("query (batch, steps, features) and value (batch, steps, features)",
                                   f"query {('batch',) + query}, value {('batch',) + value}")
        if len(query) != len(value) or value[:-1] != key[:-1]:
            raise self.shape_error("a value and key with the same steps, as many step axes as the query",
                                   f"query {('batch',) + query}, value {('batch',) + value}, key {('batch',) + key}")

    def build(self, input_shape):
        query, value, key = self._shapes(input_shape)
        self.query_features, self.value_features, self.key_features = query[-1], value[-1], key[-1]
        out = self.output_size or query[-1]
        heads_k, heads_v = self.num_heads * self.key_dim, self.num_heads * self.value_dim
        parts = [("query", heads_k, query[-1]), ("key", heads_k, key[-1]), ("value", heads_v, value[-1]),
                 ("output", out, heads_v)] + [("gate", heads_v, query[-1])] * self.use_gate
        for part, rows, columns in parts:
            weight = nn.Parameter(torch.empty(rows, columns))
            nn.init.xavier_uniform_(weight)  # Keras' glorot_uniform
            setattr(self, f"{part}_weight", weight)
            setattr(self, f"{part}_bias", nn.Parameter(torch.zeros(rows)) if self.use_bias else None)

    def compute_output_shape(self, input_shape):
        query = tuple(input_shape[0])
        return query[:-1] + (self.output_size or query[-1],)

    def forward(self, query, value, key=None, query_mask=None, value_mask=None, key_mask=None, attention_mask=None,
                use_causal_mask=False, return_attention_scores=False):
        key = value if key is None else key
        batch, query_steps = query.shape[0], query.shape[1:-1]
        steps_q, steps_s = math.prod(query_steps), math.prod(value.shape[1:-1])
        q = self._heads(query, "query", self.key_dim)
        k = self._heads(key, "key", self.key_dim)
        v = self._heads(value, "value", self.value_dim)
        allowed = self._allowed(batch, steps_q, steps_s, query_mask, value_mask, key_mask, attention_mask,
                                use_causal_mask, self.sliding_window, query.device)
        bias = None if allowed is None else torch.zeros(allowed.shape, dtype=q.dtype, device=q.device) \
            .masked_fill(~allowed, _MASKED)[:, None]
        if return_attention_scores:
            scores = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(self.key_dim) + (0 if bias is None else bias),
                                   dim=-1)
            heads = F.dropout(scores, self.dropout, self.training) @ v
        else:
            heads = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=1 / math.sqrt(self.key_dim),
                                                   dropout_p=self.dropout if self.training else 0.0)
        heads = heads.transpose(1, 2).reshape(batch, *query_steps, self.num_heads * self.value_dim)
        if self.use_gate:
            heads = heads * torch.sigmoid(F.linear(query, self.gate_weight, self.gate_bias))
        output = F.linear(heads, self.output_weight, self.output_bias)
        if return_attention_scores:
            return output, scores.reshape(batch, self.num_heads, *query_steps, *value.shape[1:-1])
        return output

    def compute_mask(self, inputs, mask):
        return mask

    def _heads(self, x, part, size):
        """(batch, heads, steps, size): `x`'s projection, its step axes flattened into one."""
        expected = getattr(self, f"{part}_features")
        if x.shape[-1] != expected:
            raise self.shape_error(f"{part} with {expected} features", f"{part} of shape {tuple(x.shape)}")
        projected = F.linear(x, getattr(self, f"{part}_weight"), getattr(self, f"{part}_bias"))
        return projected.reshape(x.shape[0], -1, self.num_heads, size).transpose(1, 2)

    @staticmethod
    def _allowed(batch, steps_q, steps_s, query_mask, value_mask, key_mask, attention_mask, causal, window, device):
        """Which (query step, value step) pairs may attend, (batch, T, S) bool; None: all of them."""
        allowed = None
        parts = [(query_mask, lambda m: m.reshape(batch, steps_q, 1)),
                 (value_mask, lambda m: m.reshape(batch, 1, steps_s)),
                 (key_mask, lambda m: m.reshape(batch, 1, steps_s)),
                 (attention_mask, lambda m: m.reshape(-1, steps_q, steps_s))]
        for mask, shaped in parts:
            if mask is not None:
                mask = shaped(mask.bool())
                allowed = mask if allowed is None else allowed & mask
        if causal:
            lower = torch.ones(steps_q, steps_s, dtype=torch.bool, device=device).tril()
            allowed = lower[None] if allowed is None else allowed & lower
        if window:  # a band: steps fewer than `window` apart, either way
            rows, columns = torch.arange(steps_q, device=device), torch.arange(steps_s, device=device)
            band = (rows[:, None] - columns[None]).abs() < window
            allowed = band[None] if allowed is None else allowed & band
        return None if allowed is None else allowed.expand(batch, steps_q, steps_s)


class Attention(Layer):
    """Scores `query @ key^T` (times a learned `scale` with `use_scale`), or with score_mode="concat"
    `concat_score_weight * sum(tanh(scale * (query + key)))`; softmax over the value steps; weighted values."""

    supports_masking = True  # the output keeps the query's mask

    def __init__(self, use_scale=False, score_mode="dot", dropout=0.0, *, input_shape=None, name=None):
        super().__init__(input_shape=input_shape, name=name)
        if score_mode not in ("dot", "concat"):
            raise ValueError(f"score_mode must be 'dot' or 'concat', got {score_mode!r}")
        self.use_scale, self.score_mode, self.dropout = bool(use_scale), score_mode, float(dropout)

    def check_input_shape(self, input_shape):
        shapes = list(input_shape)
        if not 2 <= len(shapes) <= 3 or not all(isinstance(s, (list, tuple)) and len(s) == 2 for s in shapes):
            raise self.shape_error("a list [query, value] or [query, value, key] of (batch, steps, features)",
                                   shapes)

    def build(self, input_shape):
        if self.use_scale:
            self.scale = nn.Parameter(torch.ones(()))
        if self.score_mode == "concat":
            self.concat_score_weight = nn.Parameter(torch.ones(()))

    def compute_output_shape(self, input_shape):
        query, value = input_shape[0], input_shape[1]
        return tuple(query[:-1]) + (value[-1],)

    def scores(self, query, key):
        """(batch, query steps, key steps)."""
        if self.score_mode == "dot":
            scores = query @ key.transpose(-1, -2)
            return scores * self.scale if self.use_scale else scores
        summed = query[:, :, None] + key[:, None]
        return self.concat_score_weight * torch.tanh(self.scale * summed if self.use_scale else summed).sum(-1)

    def forward(self, inputs, mask=None, return_attention_scores=False, use_causal_mask=False):
        if not isinstance(inputs, (list, tuple)) or not 2 <= len(inputs) <= 3:
            raise self.shape_error("a list [query, value] or [query, value, key]", type(inputs).__name__)
        query, value = inputs[0], inputs[1]
        key = inputs[2] if len(inputs) > 2 else value
        query_mask, value_mask = (mask[0], mask[1]) if mask is not None else (None, None)
        scores = self.scores(query, key)
        allowed = None if value_mask is None else value_mask.bool()[:, None, :]
        if use_causal_mask:
            lower = torch.ones(scores.shape[-2:], dtype=torch.bool, device=scores.device).tril()
            allowed = lower if allowed is None else allowed & lower
        if allowed is not None:
            scores = torch.where(allowed, scores, scores + _MASKED)  # Keras subtracts 1e9 where masked
        weights = torch.softmax(scores, dim=-1)
        output = F.dropout(weights, self.dropout, self.training) @ value
        if query_mask is not None:
            output = torch.where(query_mask.bool()[..., None], output, 0.0)
        return (output, weights) if return_attention_scores else output

    def compute_mask(self, inputs, mask):
        return None if mask is None else mask[0]


class AdditiveAttention(Attention):
    """Scores `sum(scale * tanh(query + key))`, with a learned `scale` per feature when `use_scale`."""

    def __init__(self, use_scale=True, dropout=0.0, *, input_shape=None, name=None):
        super().__init__(use_scale, "dot", dropout, input_shape=input_shape, name=name)

    def build(self, input_shape):
        if self.use_scale:
            features = input_shape[0][-1]
            bound = math.sqrt(3.0 / features)  # Keras' glorot_uniform on a vector: fan in = fan out = features
            self.scale = nn.Parameter(torch.empty(features).uniform_(-bound, bound))

    def scores(self, query, key):
        tanh = torch.tanh(query[:, :, None] + key[:, None])
        return (tanh * self.scale).sum(-1) if self.use_scale else tanh.sum(-1)
