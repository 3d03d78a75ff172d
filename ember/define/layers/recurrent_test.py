"""Recurrent layers and masks against Keras 3 (in this process, torch backend): the same weights, the
same padded batch and mask, the same numbers; and ember models with masks train, save and export."""
import numpy as np
import pytest
import torch

import ember
from ember import layers as L
from ember.keras.layers import KERAS_LAYERS
from testing.layers import assert_saves_and_exports, keras, padded_ids, rebuilt

RNG = np.random.default_rng(0)
LENGTHS = np.array([5, 2, 1, 4])
MASK = np.arange(5)[None, :] < LENGTHS[:, None]  # rows end in padding
STEPS = np.where(MASK[..., None], RNG.normal(size=(4, 5, 3)), 0.0).astype("float32")


def _keras_and_ember(class_name, **options):
    """A built Keras layer and the ember layer from_keras makes of it, with its weights."""
    k = keras()
    keras_layer = getattr(k.layers, class_name)(**options)
    keras_layer.build(STEPS.shape)
    for variable in keras_layer.weights:  # Keras starts biases at zero: give them values
        variable.assign(RNG.normal(size=variable.shape).astype("float32") * 0.5)
    spec = KERAS_LAYERS[class_name]
    config = keras_layer.get_config()
    (layer,), _ = spec.build(config, "keras", STEPS.shape[1:])
    layer.build_for(STEPS.shape[1:])
    arrays = [k.ops.convert_to_numpy(v) for v in keras_layer.weights]
    layer.load_state_dict({key: torch.from_numpy(np.ascontiguousarray(value))
                           for key, value in spec.weights(arrays, config, "keras", STEPS.shape[1:]).items()})
    return keras_layer, layer.eval()


def _keras_output(keras_layer, x, mask):
    out = keras_layer(x, mask=mask)
    return [keras().ops.convert_to_numpy(o) for o in out] if isinstance(out, (list, tuple)) \
        else keras().ops.convert_to_numpy(out)


def _ember_output(layer, x, mask):
    with torch.no_grad():
        out = layer(torch.from_numpy(x), mask=torch.from_numpy(mask))
    return [o.numpy() for o in out] if isinstance(out, (tuple, list)) else out.numpy()


@pytest.mark.parametrize("class_name", ["SimpleRNN", "LSTM", "GRU"])
@pytest.mark.parametrize("options", [{}, {"return_sequences": True}, {"go_backwards": True},
                                     {"return_sequences": True, "go_backwards": True, "zero_output_for_mask": True}],
                         ids=["last", "sequences", "backwards", "backwards_zero_output"])
def test_masked_steps_keep_the_state_as_in_keras(class_name, options):
    keras_layer, layer = _keras_and_ember(class_name, units=4, **options)
    expected = _keras_output(keras_layer, STEPS, MASK)
    np.testing.assert_allclose(_ember_output(layer, STEPS, MASK), expected, atol=1e-6)
    assert np.abs(_ember_output(rebuilt(layer).eval(), STEPS, MASK) - expected).max() <= 1e-6


@pytest.mark.parametrize("merge_mode", ["concat", "sum", "mul", "ave", None])
@pytest.mark.parametrize("return_sequences", [True, False])
def test_bidirectional_matches_keras_under_a_mask(merge_mode, return_sequences):
    gru = keras().layers.GRU(3, return_sequences=return_sequences)
    keras_layer, layer = _keras_and_ember("Bidirectional", layer=gru)
    keras_layer.merge_mode = layer.merge_mode = merge_mode  # both read it as they run
    expected = _keras_output(keras_layer, STEPS, MASK)
    np.testing.assert_allclose(_ember_output(layer, STEPS, MASK), expected, atol=1e-6)


@pytest.mark.parametrize("class_name", ["SimpleRNN", "LSTM", "GRU"])
@pytest.mark.parametrize("go_backwards", [False, True])
def test_given_initial_states_and_returned_states_match_keras(class_name, go_backwards):
    keras_layer, layer = _keras_and_ember(class_name, units=4, return_state=True, return_sequences=True,
                                          go_backwards=go_backwards)
    states = [RNG.normal(size=(4, 4)).astype("float32") for _ in range(2 if class_name == "LSTM" else 1)]
    expected = [keras().ops.convert_to_numpy(o) for o in keras_layer(STEPS, mask=MASK, initial_state=states)]
    with torch.no_grad():
        got = layer(torch.from_numpy(STEPS), mask=torch.from_numpy(MASK),
                    initial_state=[torch.from_numpy(state) for state in states])
    assert len(got) == len(expected) == 1 + len(states)
    for one, want in zip(got, expected):
        np.testing.assert_allclose(one.numpy(), want, atol=1e-6)
    with pytest.raises(ember.errors.ShapeError, match="initial_state"):
        layer(torch.from_numpy(STEPS), initial_state=[torch.zeros(4, 3)] * len(states))


def test_bidirectional_returns_both_directions_and_their_states_as_keras():
    lstm = keras().layers.LSTM(3, return_state=True)
    keras_layer, layer = _keras_and_ember("Bidirectional", layer=lstm, merge_mode=None)
    expected = _keras_output(keras_layer, STEPS, MASK)
    got = _ember_output(layer, STEPS, MASK)
    assert len(got) == len(expected) == 6  # forward, backward, then h and c of each
    for one, want in zip(got, expected):
        np.testing.assert_allclose(one, want, atol=1e-6)
    assert layer.compute_output_shape((5, 3)) == ((3,),) * 6


def test_average_pooling_counts_real_steps_and_masking_makes_the_mask():
    k = keras()
    pooled = k.ops.convert_to_numpy(k.layers.GlobalAveragePooling1D()(STEPS + 1, mask=MASK))
    pooling = L.GlobalAveragePooling1D(data_format="channels_last")
    got = pooling(torch.from_numpy(STEPS + 1), mask=torch.from_numpy(MASK))
    np.testing.assert_allclose(got.numpy(), pooled, rtol=1e-6)
    masking = L.Masking()
    assert torch.equal(masking.compute_mask(torch.from_numpy(STEPS), None), torch.from_numpy(MASK))
    assert torch.equal(masking(torch.from_numpy(STEPS)), torch.from_numpy(STEPS))


def test_a_bidirectional_takes_recurrent_layers_only():
    with pytest.raises(TypeError, match="must be a SimpleRNN, LSTM or GRU layer"):
        L.Bidirectional(L.Dense(3))
    with pytest.raises(ValueError, match="merge_mode must be one of"):
        L.Bidirectional(L.LSTM(3), merge_mode="max")
    with pytest.raises(ValueError, match="must differ in go_backwards"):
        L.Bidirectional(L.LSTM(3), backward_layer=L.LSTM(3))


def test_a_sequential_passes_masks_on_padding_changes_nothing():
    model = ember.Sequential([L.Input((None,), dtype="int64"), L.Embedding(20, 6, mask_zero=True), L.Dense(6),
                              L.LSTM(5, return_sequences=True), L.Bidirectional(L.GRU(3)), L.Dense(2)]).eval()
    ids, lengths = padded_ids(RNG, 6, 7, 20)
    with torch.no_grad():
        batch = model(torch.from_numpy(ids))
        for row, length in enumerate(lengths):
            alone = model(torch.from_numpy(ids[row:row + 1, :length]))
            assert (alone[0] - batch[row]).abs().max() <= 1e-6


def test_a_functional_model_with_masks_trains_saves_and_exports_to_onnx(tmp_path):
    ember.seed(0)
    ids = L.Input((None,), dtype="int64", name="ids")
    x = L.Embedding(30, 8, mask_zero=True)(ids)
    assert x.mask is not None and x.mask.shape == (None, None)
    x = L.Bidirectional(L.LSTM(6, return_sequences=True))(x)
    x = L.GlobalAveragePooling1D(data_format="channels_last")(x)
    model = ember.Model(ids, L.Dense(3, activation="softmax")(x))
    assert [node.get("op") for node in model.graph["nodes"]].count("not_equal") == 1
    data, lengths = padded_ids(RNG, 64, 8, 30)
    model.compile("adam", "sparse_categorical_crossentropy")
    history = model.fit(data, lengths % 3, epochs=2, batch_size=16, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    model.eval()
    with torch.no_grad():
        eager = model(torch.from_numpy(data[:10])).numpy()
        alone = model(torch.from_numpy(data[1:2, :lengths[1]])).numpy()
    assert np.abs(alone[0] - eager[1]).max() <= 1e-6
    assert_saves_and_exports(model, data[:10], tmp_path)


def test_a_functional_encoder_decoder_passes_states_trains_saves_and_loads(tmp_path):
    ember.seed(0)
    source, target = L.Input((7, 3), name="source"), L.Input((5, 4), name="target")
    _, h, c = L.LSTM(6, return_state=True)(source)
    decoded = L.LSTM(6, return_sequences=True)(target, initial_state=[h, c])
    model = ember.Model([source, target], L.Dense(4, activation="softmax")(decoded))
    x = [RNG.normal(size=(32, 7, 3)).astype("float32"), RNG.normal(size=(32, 5, 4)).astype("float32")]
    model.compile("adam", "sparse_categorical_crossentropy", precision="fp32")
    assert np.isfinite(model.fit(x, RNG.integers(0, 4, (32, 5)), epochs=1, batch_size=8, verbose=0)
                       .history["loss"]).all()
    model.eval()
    inputs = [torch.from_numpy(a[:4]) for a in x]
    with torch.no_grad():
        eager = model(inputs)
        changed_source = model([inputs[0] + 1, inputs[1]])
        model.save(tmp_path / "model.ember")
        assert torch.equal(ember.load(tmp_path / "model.ember")(inputs), eager)
    assert not torch.allclose(eager, changed_source)  # the decoder starts from the encoder's states


def test_an_lstm_has_keras_one_bias_and_reads_files_with_torch_two():
    """Two biases would be one bias trained twice as fast; a file saved with both loads as their sum."""
    torch.manual_seed(0)
    lstm = L.LSTM(3, input_shape=(5, 2))
    assert [name for name, _ in lstm.named_parameters()] == ["weight_ih", "weight_hh", "bias_ih"]
    x = torch.randn(4, 5, 2)
    old = {**lstm.state_dict(), "bias_hh": torch.full((12,), 0.25)}
    reference = torch.nn.LSTM(2, 3, batch_first=True)
    reference.load_state_dict({"weight_ih_l0": old["weight_ih"], "weight_hh_l0": old["weight_hh"],
                               "bias_ih_l0": old["bias_ih"], "bias_hh_l0": old["bias_hh"]})
    lstm.load_state_dict(old)
    with torch.no_grad():
        assert torch.allclose(lstm(x), reference(x)[0][:, -1], atol=1e-6)
