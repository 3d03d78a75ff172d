import numpy as np
import pytest
import torch

from ember import layers as L
from ember.keras.layers import KERAS, convert_weights, copy_weights
from testing.layers import assert_matches_keras, keras

X = np.random.default_rng(0).normal(size=(2, 5, 6, 3)).astype("float32")


def _built_with_bias(keras_layer, input_shape):
    """The Keras layer built for `input_shape` (no batch), its bias made nonzero so that where it is added shows."""
    keras_layer.build((None,) + tuple(input_shape))
    kernel, bias = keras_layer.get_weights()
    keras_layer.set_weights([kernel, np.linspace(-1, 1, bias.size, dtype="float32")])
    return keras_layer


def _with_keras_weights(keras_layer, ember_layer, class_name, shape):
    """The ember layer built for `shape` (no batch) holding the Keras layer's weights."""
    ember_layer.build_for(shape)
    arrays = [np.asarray(w) for w in keras_layer.get_weights()]
    converted, problem = convert_weights(class_name, arrays, ember_layer, {}, KERAS, shape)
    assert problem is None
    copy_weights(ember_layer, converted)
    return ember_layer


@pytest.mark.parametrize("kernel, strides, padding, output_padding, dilation", [
    (3, 2, "same", None, 1), (3, 2, "valid", None, 1), (2, 3, "valid", None, 1), (4, 2, "same", None, 1),
    (3, 2, "same", 1, 1), ((3, 2), (2, 1), "valid", (1, 0), 1), (3, 1, "same", None, 2), (1, 3, "same", None, 1),
])
def test_conv_2d_transpose_matches_keras(kernel, strides, padding, output_padding, dilation):
    k = keras()
    reference = _built_with_bias(k.layers.Conv2DTranspose(4, kernel, strides, padding, output_padding=output_padding,
                                                          dilation_rate=dilation), X.shape[1:])

    def ours(data_format):
        layer = L.Conv2DTranspose(4, kernel, strides, padding, output_padding, dilation, data_format=data_format)
        shape = X.shape[1:] if data_format == "channels_last" else (3,) + X.shape[1:3]
        return _with_keras_weights(reference, layer, "Conv2DTranspose", shape)

    assert_matches_keras(reference, ours, X)


@pytest.mark.parametrize("strides, padding", [(2, "same"), (3, "valid")])
def test_conv_1d_transpose_matches_keras(strides, padding):
    x = X[:, 0]
    reference = _built_with_bias(keras().layers.Conv1DTranspose(4, 3, strides, padding, activation="relu"), x.shape[1:])

    def ours(data_format):
        layer = L.Conv1DTranspose(4, 3, strides, padding, activation="relu", data_format=data_format)
        return _with_keras_weights(reference, layer, "Conv1DTranspose", x.shape[1:] if data_format == "channels_last"
                                   else x.shape[:0:-1])

    assert_matches_keras(reference, ours, x)


def test_output_padding_must_be_below_the_stride():
    with pytest.raises(ValueError, match=r"output_padding \(2, 2\) must be smaller than the strides \(2, 2\)"):
        L.Conv2DTranspose(4, 3, 2, output_padding=2)
    layer = L.Conv2DTranspose(4, 3, 2, "same", data_format="channels_first", input_shape=(3, 5, 6))
    assert layer.output_shape == (4, 10, 12) and layer.weight.shape == (3, 4, 3, 3)
    with pytest.raises(Exception, match="with 3 channels"):
        layer(torch.zeros(1, 2, 5, 6))


@pytest.mark.parametrize("cls, kwargs", [("Conv3D", dict(strides=(1, 2, 1), padding="same")),
                                         ("Conv3D", dict(dilation_rate=(1, 1, 2))),
                                         ("Conv3DTranspose", dict(strides=2, padding="same")),
                                         ("Conv3DTranspose", dict(strides=(2, 1, 3), padding="valid"))])
def test_conv_3d_and_its_transpose_match_keras(cls, kwargs):
    x = np.random.default_rng(1).normal(size=(2, 4, 5, 6, 3)).astype("float32")
    reference = _built_with_bias(getattr(keras().layers, cls)(4, (2, 3, 2), **kwargs), x.shape[1:])

    def ours(data_format):
        layer = getattr(L, cls)(4, (2, 3, 2), **kwargs, data_format=data_format)
        shape = x.shape[1:] if data_format == "channels_last" else (3,) + x.shape[1:4]
        return _with_keras_weights(reference, layer, cls, shape)

    assert_matches_keras(reference, ours, x)
