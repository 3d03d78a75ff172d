import numpy as np
import pytest
import torch

from ember import layers as L
from ember.errors import ShapeError
from testing.layers import assert_matches_keras, keras

X = np.random.default_rng(0).normal(2.0, 3.0, size=(2, 4, 5, 6)).astype("float32")


@pytest.mark.parametrize("groups", [1, 3, 6])
def test_group_normalization_matches_keras(groups):
    reference = keras().layers.GroupNormalization(groups)
    reference.build((None,) + X.shape[1:])
    gamma, beta = np.linspace(0.5, 1.5, 6, dtype="float32"), np.linspace(-1, 1, 6, dtype="float32")
    reference.set_weights([gamma, beta])

    def ours(data_format):
        layer = L.GroupNormalization(groups, -1 if data_format == "channels_last" else 1)
        layer.build_for(X.shape[1:] if data_format == "channels_last" else (6, 4, 5))
        layer.load_state_dict({"weight": torch.from_numpy(gamma), "bias": torch.from_numpy(beta)})
        return layer

    assert_matches_keras(reference, ours, X)


@pytest.mark.parametrize("axis", [-1, [1, 2]])
def test_unit_normalization_matches_keras(axis):
    x = X.copy()
    x[0, 0, 0] = 0.0  # a zero vector stays zero
    assert_matches_keras(keras().layers.UnitNormalization(axis), lambda _: L.UnitNormalization(axis), x,
                         channels_axis=None)


def test_group_normalization_needs_channels_divisible_by_groups():
    with pytest.raises(ShapeError, match="divisible by groups=4"):
        L.GroupNormalization(4, input_shape=(4, 5, 6))
    assert L.GroupNormalization(3, input_shape=(4, 5, 6)).weight.shape == (6,)
