import numpy as np
import pytest

from ember import layers as L
from testing.layers import assert_matches_keras, keras

X = np.random.default_rng(0).normal(size=(2, 9, 12, 3)).astype("float32")


@pytest.mark.parametrize("height, width", [(5, 7), (18, 10), (9, 4)])
@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
@pytest.mark.parametrize("crop_to_aspect_ratio", [False, True])
def test_resizing_matches_keras(height, width, interpolation, crop_to_aspect_ratio):
    reference = keras().layers.Resizing(height, width, interpolation, crop_to_aspect_ratio=crop_to_aspect_ratio)
    assert_matches_keras(reference, lambda data_format: L.Resizing(height, width, interpolation, crop_to_aspect_ratio,
                                                                   data_format=data_format), X)


def test_antialiased_downsizing_matches_keras():
    assert_matches_keras(keras().layers.Resizing(4, 5, antialias=True),
                         lambda data_format: L.Resizing(4, 5, antialias=True, data_format=data_format), X)


@pytest.mark.parametrize("height, width", [(5, 7), (9, 12), (12, 6)])  # the last one is taller than the images
def test_center_crop_matches_keras(height, width):
    assert_matches_keras(keras().layers.CenterCrop(height, width),
                         lambda data_format: L.CenterCrop(height, width, data_format=data_format), X)


def test_unsupported_interpolation_is_named():
    with pytest.raises(ValueError, match=r"one of \('bilinear', 'nearest'\), got 'bicubic'"):
        L.Resizing(4, 4, "bicubic")
