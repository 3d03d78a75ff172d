import numpy as np
import pytest
import torch

from ember import layers as L
from ember.errors import ShapeError
from testing.layers import assert_matches_keras, keras

X2 = np.random.default_rng(0).normal(size=(2, 5, 6, 3)).astype("float32")
X1 = X2[:, 0]


@pytest.mark.parametrize("padding", [1, (2, 0), ((0, 1), (2, 3))])
def test_zero_padding_2d_matches_keras(padding):
    assert_matches_keras(keras().layers.ZeroPadding2D(padding),
                         lambda data_format: L.ZeroPadding2D(padding, data_format=data_format), X2)


@pytest.mark.parametrize("cropping", [1, (2, 0), ((0, 1), (2, 3))])
def test_cropping_2d_matches_keras(cropping):
    assert_matches_keras(keras().layers.Cropping2D(cropping),
                         lambda data_format: L.Cropping2D(cropping, data_format=data_format), X2)


@pytest.mark.parametrize("amount", [2, (0, 3)])
def test_one_dimensional_padding_and_cropping_match_keras(amount):
    k = keras()
    assert_matches_keras(k.layers.ZeroPadding1D(amount), lambda data_format: L.ZeroPadding1D(amount,
                                                                                            data_format=data_format), X1)
    assert_matches_keras(k.layers.Cropping1D(amount), lambda data_format: L.Cropping1D(amount,
                                                                                      data_format=data_format), X1)


def test_shapes_are_known_before_any_data():
    padding = L.ZeroPadding2D(((0, 1), (2, 3)), data_format="channels_first", input_shape=(3, 5, 6))
    assert padding.output_shape == (3, 6, 11)
    assert L.Cropping1D((1, 2), data_format="channels_last", input_shape=(7, 4)).output_shape == (4, 4)


def test_errors_name_what_was_expected():
    with pytest.raises(ShapeError, match="larger than the cropping"):
        L.Cropping2D(((2, 3), (0, 0)), data_format="channels_last", input_shape=(5, 6, 3))
    with pytest.raises(ValueError, match=r"2 \(before, after\) pairs, got \(1, 2, 3\)"):
        L.ZeroPadding2D((1, 2, 3))
    with pytest.raises(ValueError, match=r"non-negative integer \(before, after\) pairs, got \(-1, -1\)"):
        L.Cropping2D(-1)
    with pytest.raises(ShapeError):
        L.ZeroPadding2D(1, data_format="channels_last")(torch.zeros(2, 5, 3))


@pytest.mark.parametrize("amount", [1, (1, 0, 2), ((0, 1), (2, 1), (1, 0))])
def test_three_dimensional_padding_and_cropping_match_keras(amount):
    x = np.random.default_rng(1).normal(size=(2, 4, 5, 6, 3)).astype("float32")
    k = keras()
    assert_matches_keras(k.layers.ZeroPadding3D(amount),
                         lambda data_format: L.ZeroPadding3D(amount, data_format=data_format), x)
    assert_matches_keras(k.layers.Cropping3D(amount), lambda data_format: L.Cropping3D(amount, data_format=data_format), x)
    with pytest.raises(ShapeError, match=r"D, H, W"):
        L.ZeroPadding3D(amount).build_for((4, 5, 3))
