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


def test_scaled_add_matches_inception_resnet_v2s_custom_scale_layer():
    k = keras()
    from keras.src.applications.inception_resnet_v2 import CustomScaleLayer

    a, b = k.Input(IMAGE.shape[1:]), k.Input(IMAGE.shape[1:])
    expected = k.Model([a, b], CustomScaleLayer(0.17)([a, b])).predict([IMAGE, IMAGE[::-1]], verbose=0)
    got = L.ScaledAdd(0.17)([torch.from_numpy(IMAGE), torch.from_numpy(IMAGE[::-1].copy())]).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert L.ScaledAdd(**L.ScaledAdd(0.17).get_config()).scale == 0.17
    with pytest.raises(ShapeError, match="exactly 2 tensors"):
        L.ScaledAdd(0.5)([torch.zeros(1, 2)] * 3)


def test_dot_contracts_the_given_axes_sample_by_sample_as_keras_batch_dot():
    x, y = torch.randn(2, 3, 4), torch.randn(2, 5, 4)
    assert torch.allclose(L.Dot(axes=(2, 2))([x, y]), x @ y.transpose(1, 2), atol=1e-6)
    assert L.Dot(axes=1)([x, torch.randn(2, 3, 6)]).shape == (2, 4, 6)
    u, v = torch.randn(4, 8), torch.randn(4, 8)
    cosine = L.Dot(axes=-1, normalize=True)([u, v])
    assert cosine.shape == (4, 1)
    assert torch.allclose(cosine[:, 0], torch.nn.functional.cosine_similarity(u, v), atol=1e-6)
    assert L.Dot(axes=(1, 2)).build_for([(3, 4), (5, 3)]) == (4, 5)
    with pytest.raises(ShapeError, match="equal sizes on axes"):
        L.Dot(axes=2).build_for([(3, 4), (5, 3)])


def test_repeat_vector_identity_and_alpha_dropout():
    x = torch.randn(2, 3)
    assert torch.equal(L.RepeatVector(4)(x), x[:, None].expand(2, 4, 3))
    assert L.RepeatVector(4).build_for((3,)) == (4, 3)
    assert L.Identity()(x) is x
    dropout = L.AlphaDropout(0.5)
    assert torch.equal(dropout.eval()(x), x) and not torch.equal(dropout.train()(x), x)
    with pytest.raises(ValueError, match="positive integer"):
        L.RepeatVector(0)
