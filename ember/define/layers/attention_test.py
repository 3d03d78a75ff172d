"""MultiHeadAttention against Keras 3 (in this process, torch backend): the same weights, inputs and
masks, the same numbers; and in ember functional models: masks from Embedding reach it, padding
changes nothing, the model trains, saves and exports."""
import numpy as np
import pytest
import torch

import ember
from ember import layers as L
from ember.keras.layers import KERAS_LAYERS
from testing.layers import assert_saves_and_exports, keras, padded_ids, rebuilt

RNG = np.random.default_rng(0)
QUERY = RNG.normal(size=(3, 5, 6)).astype("float32")
VALUE = RNG.normal(size=(3, 7, 4)).astype("float32")
QUERY_MASK = np.arange(5)[None] < np.array([5, 3, 1])[:, None]
VALUE_MASK = np.arange(7)[None] < np.array([2, 7, 4])[:, None]


def _keras_and_ember(query, value, **options):
    """A built Keras MultiHeadAttention (random weights and biases) and the ember layer from_keras makes of it."""
    keras_layer = keras().layers.MultiHeadAttention(**options)
    keras_layer.build(query.shape, value.shape)
    for variable in keras_layer.weights:
        variable.assign(RNG.normal(size=variable.shape).astype("float32") * 0.5)
    spec = KERAS_LAYERS["MultiHeadAttention"]
    config = keras_layer.get_config()
    (layer,), _ = spec.build(config, "keras", query.shape[1:])
    layer.build_for([query.shape[1:], value.shape[1:]])
    arrays = [keras().ops.convert_to_numpy(v) for v in keras_layer.weights]
    layer.load_state_dict({key: torch.from_numpy(np.ascontiguousarray(value))
                           for key, value in spec.weights(arrays, config, "keras", query.shape[1:]).items()})
    return keras_layer, layer.eval()


@pytest.mark.parametrize("options", [
    {"num_heads": 2, "key_dim": 3},
    {"num_heads": 3, "key_dim": 2, "value_dim": 4, "output_shape": 5, "use_bias": False},
    {"num_heads": 2, "key_dim": 4, "use_gate": True, "sliding_window": 2},
], ids=["default", "value_dim_output_no_bias", "gate_window"])
@pytest.mark.parametrize("masks", ["none", "query_value", "attention_causal"])
def test_multi_head_attention_matches_keras(options, masks):
    value = VALUE if masks != "attention_causal" else VALUE[:, :5]  # a causal mask lines up steps
    keras_layer, layer = _keras_and_ember(QUERY, value, **options)
    calls = {"none": {}, "query_value": {"query_mask": QUERY_MASK, "value_mask": VALUE_MASK},
             "attention_causal": {"attention_mask": RNG.random((3, 5, 5)) < 0.7, "use_causal_mask": True}}[masks]
    query = torch.from_numpy(QUERY)
    if "query_mask" in calls:  # Keras reads the query's mask from the tensor only (its call ignores query_mask=)
        query._keras_mask = torch.from_numpy(calls["query_mask"])
    expected = keras().ops.convert_to_numpy(keras_layer(query, value, **calls))
    given = {key: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for key, v in calls.items()}
    with torch.no_grad():
        got = layer(torch.from_numpy(QUERY), torch.from_numpy(value), **given).numpy()
        again = rebuilt(layer).eval()(torch.from_numpy(QUERY), torch.from_numpy(value), **given).numpy()
    np.testing.assert_allclose(got, expected, atol=2e-6)
    np.testing.assert_allclose(again, expected, atol=2e-6)


def test_attention_scores_and_a_separate_key_match_keras():
    key = RNG.normal(size=(3, 7, 2)).astype("float32")
    keras_layer = keras().layers.MultiHeadAttention(num_heads=2, key_dim=3)
    keras_layer.build(QUERY.shape, VALUE.shape, key.shape)
    for variable in keras_layer.weights:
        variable.assign(RNG.normal(size=variable.shape).astype("float32") * 0.5)
    spec = KERAS_LAYERS["MultiHeadAttention"]
    config = keras_layer.get_config()
    (layer,), _ = spec.build(config, "keras", QUERY.shape[1:])
    layer.build_for([QUERY.shape[1:], VALUE.shape[1:], key.shape[1:]])
    arrays = [keras().ops.convert_to_numpy(v) for v in keras_layer.weights]
    layer.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v))
                           for k, v in spec.weights(arrays, config, "keras", QUERY.shape[1:]).items()})
    output, scores = keras_layer(QUERY, VALUE, key, value_mask=VALUE_MASK, return_attention_scores=True)
    with torch.no_grad():
        got, got_scores = layer.eval()(torch.from_numpy(QUERY), torch.from_numpy(VALUE), torch.from_numpy(key),
                                       value_mask=torch.from_numpy(VALUE_MASK), return_attention_scores=True)
    np.testing.assert_allclose(got.numpy(), keras().ops.convert_to_numpy(output), atol=2e-6)
    np.testing.assert_allclose(got_scores.numpy(), keras().ops.convert_to_numpy(scores), atol=1e-6)


def test_a_transformer_block_gets_the_embedding_mask_trains_saves_and_exports(tmp_path):
    ember.seed(0)
    ids = L.Input((None,), dtype="int64", name="ids")
    x = L.Embedding(30, 8, mask_zero=True)(ids)
    attended = L.MultiHeadAttention(num_heads=2, key_dim=4)(x, x)
    x = L.LayerNormalization()(L.Add()([x, attended]))  # a merge layer keeps the mask (an operator `+` ends it)
    model = ember.Model(ids, L.Dense(3, activation="softmax")(L.GlobalAveragePooling1D(data_format="channels_last")(x)))
    attention = next(node for node in model.graph["nodes"] if node.get("layer") == "multi_head_attention")
    assert {"query_mask", "value_mask"} <= set(attention["kwargs"]["dict"])  # the Embedding's mask, as in Keras
    data, lengths = padded_ids(RNG, 64, 8, 30)
    model.compile("adam", "sparse_categorical_crossentropy", precision="fp32")
    assert np.isfinite(model.fit(data, lengths % 3, epochs=2, batch_size=16, verbose=0).history["loss"]).all()
    model.eval()
    with torch.no_grad():
        eager = model(torch.from_numpy(data[:10])).numpy()
        for row in range(10):  # padding changes nothing of what the real steps compute
            alone = model(torch.from_numpy(data[row:row + 1, :lengths[row]])).numpy()
            assert np.abs(alone[0] - eager[row]).max() <= 1e-5
    assert_saves_and_exports(model, data[:10], tmp_path)


def test_causal_attention_never_sees_later_steps():
    layer = L.MultiHeadAttention(num_heads=2, key_dim=3).eval()
    x = torch.from_numpy(QUERY)
    later_changed = x.clone()
    later_changed[:, 3:] += 1.0
    with torch.no_grad():
        before = layer(x, x, use_causal_mask=True)
        after = layer(later_changed, later_changed, use_causal_mask=True)
    assert torch.equal(before[:, :3], after[:, :3]) and not torch.allclose(before[:, 3:], after[:, 3:])


def test_wrong_shapes_and_options_are_named():
    with pytest.raises(ValueError, match="num_heads must be a positive integer, got 0"):
        L.MultiHeadAttention(num_heads=0, key_dim=2)
    with pytest.raises(ValueError, match="output_shape must be one size"):
        L.MultiHeadAttention(num_heads=1, key_dim=2, output_shape=(2, 3))
    with pytest.raises(ember.errors.ShapeError, match="same steps"):
        L.MultiHeadAttention(num_heads=1, key_dim=2)(torch.zeros(2, 5, 6), torch.zeros(2, 7, 4), torch.zeros(2, 6, 4))
    layer = L.MultiHeadAttention(num_heads=1, key_dim=2)
    layer(torch.zeros(2, 5, 6), torch.zeros(2, 7, 4))
    with pytest.raises(ember.errors.ShapeError, match="key with 4 features"):
        layer(torch.zeros(2, 5, 6), torch.zeros(2, 7, 3))


@pytest.mark.parametrize("layer", [L.Attention(use_scale=True), L.Attention(score_mode="concat", use_scale=True),
                                   L.AdditiveAttention()], ids=["dot", "concat", "additive"])
def test_attention_without_projections_keeps_padding_out(layer):
    """In a functional model the Embedding's masks reach it as a list; padded rows give what they give alone."""
    ids = L.Input((None,), dtype="int64")
    x = L.Embedding(30, 8, mask_zero=True)(ids)
    model = ember.Model(ids, L.GlobalAveragePooling1D(data_format="channels_last")(layer([x, L.Dense(8)(x)])))
    data, lengths = padded_ids(RNG, 6, 7, 30)
    model.eval()
    with torch.no_grad():
        batch = model(torch.from_numpy(data))
        for row in range(6):
            alone = model(torch.from_numpy(data[row:row + 1, :lengths[row]]))
            assert (alone[0] - batch[row]).abs().max() <= 1e-5
