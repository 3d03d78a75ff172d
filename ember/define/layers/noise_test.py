import numpy as np
import pytest
import torch

from ember import layers as L
from testing.layers import ember_predict, keras_predict, keras, rebuilt

X = np.random.default_rng(0).normal(size=(4, 6, 7, 8)).astype("float32")


@pytest.mark.parametrize("make_ember, make_keras", [
    (lambda: L.SpatialDropout2D(0.5, data_format="channels_last"), lambda k: k.layers.SpatialDropout2D(0.5)),
    (lambda: L.GaussianNoise(0.3), lambda k: k.layers.GaussianNoise(0.3)),
    (lambda: L.GaussianDropout(0.3), lambda k: k.layers.GaussianDropout(0.3)),
])
def test_identity_at_inference_as_keras(make_ember, make_keras):
    np.testing.assert_array_equal(keras_predict(make_keras(keras()), X), X)
    np.testing.assert_array_equal(ember_predict(rebuilt(make_ember()), X), X)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_spatial_dropout_drops_whole_channels_while_training(data_format):
    torch.manual_seed(0)
    x = torch.ones(16, 5, 5, 8) if data_format == "channels_last" else torch.ones(16, 8, 5, 5)
    y = L.SpatialDropout2D(0.5, data_format=data_format).train()(x)
    per_channel = y.movedim(-1, 1) if data_format == "channels_last" else y
    per_channel = per_channel.flatten(2)
    assert ((per_channel == 0).all(-1) | (per_channel == 2.0).all(-1)).all()
    assert 0.3 < float((per_channel[..., 0] == 0).float().mean()) < 0.7
    y1 = L.SpatialDropout1D(0.5, data_format="channels_last").train()(torch.ones(16, 9, 8))
    assert ((y1 == 0).all(1) | (y1 == 2.0).all(1)).all()


def test_gaussian_layers_draw_keras_moments_while_training():
    torch.manual_seed(0)
    x = torch.full((200, 500), 2.0)
    noisy = L.GaussianNoise(0.5).train()(x)
    assert abs(float(noisy.mean()) - 2.0) < 0.01 and abs(float(noisy.std()) - 0.5) < 0.01
    scaled = L.GaussianDropout(0.2).train()(x)  # x * N(1, sqrt(rate / (1 - rate)))
    assert abs(float(scaled.mean()) - 2.0) < 0.01 and abs(float(scaled.std()) - 2.0 * 0.5) < 0.02
