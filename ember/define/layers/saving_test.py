"""The layers keras.applications need, in ember's own Sequential and functional models: saved,
loaded by ember.load, the same outputs, in both data formats."""
import numpy as np
import pytest
import torch

import ember
from ember import layers as L


def image_stack(data_format):
    shape = (9, 10, 3) if data_format == "channels_last" else (3, 9, 10)
    image = dict(data_format=data_format)
    normalization_axis = -1 if data_format == "channels_last" else 1
    return [
        L.Input(shape),
        L.Rescaling(1 / 127.5, -1.0, data_format=data_format),
        L.Normalization(normalization_axis, mean=[0.1, 0.2, 0.3], variance=[1.0, 2.0, 3.0]),
        L.ZeroPadding2D(((0, 1), (2, 1)), **image),
        L.Conv2D(6, 3, strides=2, **image),
        L.GroupNormalization(3, normalization_axis),
        L.SpatialDropout2D(0.1, **image),
        L.Conv2DTranspose(4, 3, 2, "same", **image),
        L.UpSampling2D(2, "bilinear", **image),
        L.Cropping2D(((1, 0), (2, 3)), **image),
        L.GaussianNoise(0.1), L.GaussianDropout(0.1), L.Dropout(0.2, noise_shape=(None, 1, 1, 1)),
        L.UnitNormalization(normalization_axis),
        L.Flatten(), L.Dense(4), L.LayerScale(0.5, 4),
    ]


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_sequential_with_the_new_layers_saves_and_loads(tmp_path, data_format):
    ember.seed(0)
    model = ember.Sequential(image_stack(data_format))
    x = torch.rand(2, *model.input_shape) * 255
    model.eval()
    with torch.no_grad():
        expected = model(x)
    model.save(tmp_path / "model.ember")
    loaded = ember.load(tmp_path / "model.ember").eval()
    with torch.no_grad():
        np.testing.assert_allclose(loaded(x).numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)


def test_functional_with_broadcasting_multiply_and_adapted_normalization_saves_and_loads(tmp_path):
    ember.seed(0)
    data = np.random.default_rng(0).uniform(0, 255, (16, 6, 7, 3)).astype("float32")
    normalization = L.Normalization()
    normalization.adapt(data)
    image = ember.Input((6, 7, 3))
    x = L.Conv2D(4, 3, padding="same", data_format="channels_last")(normalization(image))
    squeeze = L.Reshape((1, 1, 4))(L.GlobalAveragePooling2D(data_format="channels_last")(x))
    model = ember.Model(image, L.Multiply()([x, L.Dense(4, activation="sigmoid")(squeeze)]))
    model.eval()
    with torch.no_grad():
        expected = model(torch.from_numpy(data))
    model.save(tmp_path / "model.ember")
    loaded = ember.load(tmp_path / "model.ember").eval()
    with torch.no_grad():
        np.testing.assert_allclose(loaded(torch.from_numpy(data)).numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)
