import numpy as np
import pytest
import torch

import ember
from ember import layers as L
from ember.errors import ShapeError
from testing.layers import keras

RNG = np.random.default_rng(0)
IMAGE = RNG.normal(size=(2, 4, 5, 3)).astype("float32")
PER_CHANNEL = RNG.normal(size=(2, 1, 1, 3)).astype("float32")
VECTOR = RNG.normal(size=(2, 3)).astype("float32")


@pytest.mark.parametrize("name", ["Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum"])
@pytest.mark.parametrize("second", [PER_CHANNEL, VECTOR], ids=["N11C", "NC"])
def test_elementwise_merges_broadcast_as_keras(name, second):
    k = keras()
    a, b = k.Input(IMAGE.shape[1:]), k.Input(second.shape[1:])
    expected = k.Model([a, b], getattr(k.layers, name)()([a, b])).predict([IMAGE, second], verbose=0)
    x, y = ember.Input(IMAGE.shape[1:]), ember.Input(second.shape[1:])
    merged = getattr(L, name)()([x, y])
    assert merged.shape[1:] == IMAGE.shape[1:]  # shapes are inferred before any data
    model = ember.Model([x, y], merged)
    with torch.no_grad():
        got = model([torch.from_numpy(IMAGE), torch.from_numpy(second)]).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_shapes_that_do_not_broadcast_are_a_shape_error():
    with pytest.raises(ShapeError, match=r"sizes equal or 1.*\('batch', 4, 5, 3\), \('batch', 2\)"):
        L.Multiply()([torch.zeros(2, 4, 5, 3), torch.zeros(2, 2)])
    with pytest.raises(ShapeError, match="sizes equal or 1"):
        L.Add()([ember.Input((4, 5, 3)), ember.Input((5, 2))])
