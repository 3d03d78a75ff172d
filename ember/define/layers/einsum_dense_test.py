import numpy as np
import pytest
import torch

import ember
from ember import layers as L
from ember.errors import ShapeError
from ember.keras.layers import KERAS, convert_weights, copy_weights
from testing.layers import keras, keras_predict, rebuilt


@pytest.mark.parametrize("equation, output_shape, bias_axes, shape", [
    ("abc,cde->abde", (None, 4, 8), "de", (7, 16)),  # a projection onto heads
    ("...b,bc->...c", 32, "c", (3, 5, 16)),          # a Dense over the last axis, whatever comes before
    ("ab...,bc->ac...", (32,), "c", (16, 3, 5)),     # over the first axis, the rest carried along
    ("abcd,cde->abe", (None, 5), None, (4, 3, 6)),   # two axes contracted at once, no bias
])
def test_einsum_dense_matches_keras_and_rebuilds(equation, output_shape, bias_axes, shape):
    x = np.random.default_rng(0).normal(size=(2,) + shape).astype("float32")
    reference = keras().layers.EinsumDense(equation, output_shape, bias_axes=bias_axes, activation="relu")
    reference.build((None,) + shape)
    reference.set_weights([np.random.default_rng(1).normal(size=w.shape).astype("float32")
                           for w in reference.get_weights()])
    layer = L.EinsumDense(equation, output_shape, "relu", bias_axes)
    layer.build_for(shape)
    converted, problem = convert_weights("EinsumDense", reference.get_weights(), layer, {}, KERAS, shape)
    assert problem is None
    copy_weights(layer, converted)
    expected = keras_predict(reference, x)
    with torch.no_grad():
        assert np.abs(layer(torch.from_numpy(x)).numpy() - expected).max() <= 1e-5
        assert torch.equal(rebuilt(layer)(torch.from_numpy(x)), layer(torch.from_numpy(x)))
    assert layer.output_shape == expected.shape[1:]


def test_a_free_sequence_length_and_clear_errors():
    model = ember.Model(inputs := L.Input((None, 16)), L.EinsumDense("abc,cd->abd", (None, 8), bias_axes="d")(inputs))
    assert model(torch.randn(2, 5, 16)).shape == (2, 5, 8) and model(torch.randn(2, 9, 16)).shape == (2, 9, 8)
    with pytest.raises(ShapeError, match=r"\(a, b, 16\).*\(2, 5, 12\)"):
        model(torch.randn(2, 5, 12))
    with pytest.raises(ValueError, match=r"equation must be.*'ab->c'"):
        L.EinsumDense("ab->c", 4)
    with pytest.raises(ValueError, match=r"kernel axis 'd' .* has no size"):
        L.EinsumDense("ab,bcd->ac", 4).build_for((3,))
    with pytest.raises(ValueError, match=r"bias_axes must be letters of the output 'ac', got 'x'"):
        L.EinsumDense("ab,bc->ac", 4, bias_axes="x").build_for((3,))
