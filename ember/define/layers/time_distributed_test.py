"""TimeDistributed: the wrapped layer on every step with the same weights, BatchNormalization step by step
in training as Keras runs it, masks of more than (batch, steps) reach the inner layer, configs round trip."""
import numpy as np
import pytest
import torch

import ember
from ember import layers as L
from testing.layers import keras, rebuilt

RNG = np.random.default_rng(0)
FRAMES = RNG.normal(size=(2, 4, 6, 6, 3)).astype("float32")


def test_every_step_gets_the_same_layer():
    conv = L.Conv2D(5, 3, activation="relu", data_format="channels_last")
    spread = L.TimeDistributed(conv).eval()
    with torch.no_grad():
        got = spread(torch.from_numpy(FRAMES))
        each = torch.stack([conv(torch.from_numpy(FRAMES[:, t])) for t in range(4)], dim=1)
    assert got.shape == (2, 4, 4, 4, 5) and torch.equal(got, each)
    assert spread.compute_output_shape((4, 6, 6, 3)) == (4, 4, 4, 5)
    assert torch.equal(rebuilt(spread).eval()(torch.from_numpy(FRAMES)), got)


def test_batch_normalization_inside_trains_step_by_step_as_keras():
    """Keras runs the inner layer once per step: per-step batch statistics, moving averages moved per step."""
    k = keras()
    keras_layer = k.layers.TimeDistributed(k.layers.BatchNormalization(momentum=0.5))
    keras_out = k.ops.convert_to_numpy(keras_layer(FRAMES, training=True))
    spread = L.TimeDistributed(L.BatchNormalization(momentum=0.5, data_format="channels_last")).train()
    got = spread(torch.from_numpy(FRAMES)).detach().numpy()
    np.testing.assert_allclose(got, keras_out, atol=1e-5)
    moving_mean, moving_variance = (k.ops.convert_to_numpy(v) for v in keras_layer.layer.non_trainable_weights)
    np.testing.assert_allclose(spread.layer.running_mean.numpy(), moving_mean, atol=1e-6)
    np.testing.assert_allclose(spread.layer.running_var.numpy(), moving_variance, atol=1e-6)


def test_a_sequential_of_time_distributed_layers_trains_saves_and_loads(tmp_path):
    ember.seed(0)
    model = ember.Sequential([L.Input((4, 6, 6, 3)), L.TimeDistributed(L.Conv2D(4, 3, data_format="channels_last")),
                              L.TimeDistributed(L.GlobalAveragePooling2D(data_format="channels_last")),
                              L.LSTM(5), L.Dense(2, activation="softmax")])
    assert model.output_shape == (2,)
    model.compile("adam", "sparse_categorical_crossentropy", precision="fp32")
    model.fit(np.repeat(FRAMES, 8, axis=0), np.arange(16) % 2, epochs=1, batch_size=8, verbose=0)
    model.save(tmp_path / "model.ember")
    with torch.no_grad():
        assert torch.equal(ember.load(tmp_path / "model.ember").eval()(torch.from_numpy(FRAMES)),
                           model.eval()(torch.from_numpy(FRAMES)))


def test_a_mask_per_word_reaches_an_inner_recurrent_layer():
    """(batch, sentences, words) ids: the inner LSTM reads each sentence with its own words' mask."""
    ids = np.where(np.arange(5)[None, None] < RNG.integers(1, 6, (2, 3, 1)), RNG.integers(1, 9, (2, 3, 5)), 0)
    embedding = L.Embedding(9, 4, mask_zero=True)
    lstm = L.LSTM(3)
    spread = L.TimeDistributed(lstm).eval()
    words = embedding(torch.from_numpy(ids))
    mask = embedding.compute_mask(torch.from_numpy(ids), None)
    with torch.no_grad():
        got = spread(words, mask=mask)
        each = torch.stack([lstm(words[:, s], mask=mask[:, s]) for s in range(3)], dim=1)
    assert torch.allclose(got, each, atol=1e-6) and spread.compute_mask(words, mask) is None


def test_wrong_inputs_are_named():
    with pytest.raises(TypeError, match="TimeDistributed wraps a torch module"):
        L.TimeDistributed("dense")
    with pytest.raises(ember.errors.ShapeError, match="at least one axis after the steps"):
        L.TimeDistributed(L.Dense(2))(torch.zeros(3, 4))
