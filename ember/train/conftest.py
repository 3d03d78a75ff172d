"""Fixtures: a Keras 3 model (torch backend) and an ember model with the same architecture and
weights, for tests that check ember's training numbers against Keras'."""
import os

import numpy as np
import pytest
import torch

from testing.twins import TwoHeads


@pytest.fixture
def keras():
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "torch":
        pytest.skip("Keras runs on another backend in this process")
    return keras


@pytest.fixture
def twins(keras):
    """(keras_model, ember_model, data): the same two-headed network in both, and 20 samples
    (x, [labels, values]); `as_dict`: both return a dict of outputs."""
    def build(as_dict=False):
        keras.utils.set_random_seed(3)
        inputs = keras.Input((4,))
        hidden = keras.layers.Dense(5, activation="relu", name="trunk")(inputs)
        heads = [keras.layers.Dense(3, activation="softmax", name="cls")(hidden),
                 keras.layers.Dense(1, name="reg")(hidden)]
        keras_model = keras.Model(inputs, dict(zip(("cls", "reg"), heads)) if as_dict else heads)
        model = TwoHeads(as_dict)
        with torch.no_grad():
            for layer in (model.trunk, model.cls, model.reg):
                kernel, bias = keras_model.get_layer([n for n, m in model.named_children() if m is layer][0]).get_weights()
                layer.weight.copy_(torch.from_numpy(kernel.T))  # Keras' Dense kernel is (in, out)
                layer.bias.copy_(torch.from_numpy(bias))
        rng = np.random.default_rng(1)
        x = rng.normal(size=(20, 4)).astype("float32")
        y = [rng.integers(0, 3, 20), rng.normal(size=(20, 1)).astype("float32")]
        return keras_model, model, x, y
    return build
