import numpy as np
import pytest
import torch

from ember import layers as L
from ember.errors import ShapeError
from testing.layers import assert_matches_keras, ember_predict, keras, rebuilt

X = np.random.default_rng(0).uniform(0, 255, size=(4, 5, 6, 3)).astype("float32")


@pytest.mark.parametrize("scale, offset", [(1 / 127.5, -1.0), (0.5, 0.0)])
def test_rescaling_matches_keras(scale, offset):
    assert_matches_keras(keras().layers.Rescaling(scale, offset),
                         lambda data_format: L.Rescaling(scale, offset, data_format=data_format), X)


def test_rescaling_per_channel_scales_the_channel_axis():
    scale = [1.0, 2.0, 3.0]
    assert_matches_keras(keras().layers.Rescaling(scale), lambda data_format: L.Rescaling(scale, data_format=data_format),
                         X)


@pytest.mark.parametrize("axis, mean, variance", [
    (-1, [120.0, 110.0, 100.0], [3000.0, 3200.0, 1e-20]),  # a zero variance divides by Keras' 1e-7, not 0
    ((1, 3), 2.0, 4.0),  # a scalar broadcast to every kept position
    (None, 5.0, 9.0),
    ((2, 3), [1.0, 2.0, 3.0], [4.0, 5.0, 6.0]),  # a vector lines up with the last kept axis
])
def test_normalization_with_given_statistics_matches_keras(axis, mean, variance):
    expected = assert_matches_keras(keras().layers.Normalization(axis=axis, mean=mean, variance=variance),
                                    lambda _: L.Normalization(axis, mean, variance), X, channels_axis=None)
    inverted = L.Normalization(axis, mean, variance, invert=True)
    if axis != -1:  # an inverted zero variance cannot come back
        np.testing.assert_allclose(ember_predict(inverted, expected), X, rtol=1e-4)


def test_adapt_matches_keras_on_an_array_and_on_batches():
    k = keras()
    reference = k.layers.Normalization(axis=-1)
    reference.adapt(X)
    expected = np.asarray(reference(X).detach().cpu())
    whole = L.Normalization()
    whole.adapt(X)
    np.testing.assert_allclose(ember_predict(whole, X), expected, rtol=1e-4, atol=1e-5)
    batches = L.Normalization()
    batches.adapt([(torch.from_numpy(X[:1]), None), X[1:3], X[3:]])  # (inputs, labels) pairs or plain batches
    np.testing.assert_allclose(batches.mean.numpy(), whole.mean.numpy(), rtol=1e-5)
    np.testing.assert_allclose(batches.variance.numpy(), whole.variance.numpy(), rtol=1e-4)
    np.testing.assert_allclose(ember_predict(rebuilt(batches), X), expected, rtol=1e-4, atol=1e-5)


def test_normalization_refuses_what_does_not_fit():
    with pytest.raises(ValueError, match="give both mean and variance"):
        L.Normalization(mean=1.0)
    with pytest.raises(ValueError, match="was given its mean and variance"):
        L.Normalization(mean=1.0, variance=2.0).adapt(X)
    with pytest.raises(ShapeError, match=r"sizes \(3,\) on axes \(3,\)"):
        L.Normalization(input_shape=(5, 6, 3))(torch.zeros(2, 5, 6, 4))
    with pytest.raises(ShapeError, match="not the batch axis"):
        L.Normalization(axis=0, input_shape=(5, 6, 3))
