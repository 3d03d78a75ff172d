import numpy as np
import pytest

from ember import layers as L
from testing.layers import assert_matches_keras, keras

X = np.random.default_rng(0).normal(size=(2, 4, 5, 3)).astype("float32")


@pytest.mark.parametrize("size", [2, (3, 2)])
@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
def test_upsampling_2d_matches_keras(size, interpolation):
    assert_matches_keras(keras().layers.UpSampling2D(size, interpolation=interpolation),
                         lambda data_format: L.UpSampling2D(size, interpolation, data_format=data_format), X)


def test_upsampling_1d_matches_keras():
    assert_matches_keras(keras().layers.UpSampling1D(3), lambda data_format: L.UpSampling1D(3, data_format=data_format),
                         X[:, 0])


def test_unknown_interpolation_is_refused_by_name():
    with pytest.raises(ValueError, match=r"interpolation must be one of \('nearest', 'bilinear'\), got 'lanczos3'"):
        L.UpSampling2D(2, "lanczos3")
    assert L.UpSampling2D(2, data_format="channels_last", input_shape=(4, 5, 3)).output_shape == (8, 10, 3)


def test_upsampling_3d_matches_keras():
    x = np.random.default_rng(1).normal(size=(2, 3, 4, 2, 3)).astype("float32")
    assert_matches_keras(keras().layers.UpSampling3D((2, 1, 3)),
                         lambda data_format: L.UpSampling3D((2, 1, 3), data_format=data_format), x)
