import itertools

import numpy as np
import pytest
import torch

from ember import layers as L
from ember.define.layers.conv import same_padding
from testing.layers import assert_matches_keras, keras

X3 = np.random.default_rng(0).normal(size=(2, 5, 4, 7, 3)).astype("float32")


# "same" with windows of 2 only: Keras 3.15's torch backend pads with copies of the edge (see the next test),
# which for a window of 2 averages the same values as TF's rule.
@pytest.mark.parametrize("name", ["MaxPooling3D", "AveragePooling3D"])
@pytest.mark.parametrize("pool_size, strides, padding", [(2, None, "valid"), ((3, 2, 3), (1, 2, 3), "valid"),
                                                         ((2, 2, 2), (1, 2, 1), "same")])
def test_3d_pooling_matches_keras(name, pool_size, strides, padding):
    assert_matches_keras(getattr(keras().layers, name)(pool_size, strides, padding),
                         lambda data_format: getattr(L, name)(pool_size, strides, padding, data_format=data_format), X3)


def test_average_pooling_same_averages_the_real_values_only():
    """TF's rule, and Keras' from 3.16 on: the padding never counts. (Keras 3.15's torch backend pads every
    axis with copies of the edge when one needs more padding after than before, and averages those.)"""
    pool, strides = (2, 3, 3), (1, 2, 3)
    x = X3[:1, ..., :1]
    got = L.AveragePooling3D(pool, strides, "same", data_format="channels_last")(torch.from_numpy(x))[0, ..., 0]
    spatial = x.shape[1:4]
    starts = [[o * s - same_padding(n, k, s, 1)[0] for o in range(-(-n // s))] for n, k, s in zip(spatial, pool, strides)]
    for index in itertools.product(*(range(len(axis)) for axis in starts)):
        window = tuple(slice(max(axis[i], 0), axis[i] + k) for axis, i, k in zip(starts, index, pool))
        assert float(got[index]) == pytest.approx(float(x[0][window].mean()), abs=1e-6)


@pytest.mark.parametrize("name", ["GlobalAveragePooling3D", "GlobalMaxPooling3D"])
@pytest.mark.parametrize("keepdims", [False, True])
def test_3d_global_pooling_matches_keras(name, keepdims):
    assert_matches_keras(getattr(keras().layers, name)(keepdims=keepdims),
                         lambda data_format: getattr(L, name)(keepdims, data_format=data_format), X3)
