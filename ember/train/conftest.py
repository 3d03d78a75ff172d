"""A Keras 3 model (torch backend) and an ember model with the same architecture and weights, for
tests that check ember's training numbers against Keras'."""
import os

import numpy as np
import pytest
import torch
from torch import nn

import ember


LOSSES = ["sparse_categorical_crossentropy", "mse"]  # the twins' heads: class probabilities, a value


def assert_logs_close(ours: dict, theirs: dict):
    """ember's logs have Keras' keys and values (float32 arithmetic in both)."""
    assert set(ours) == set(theirs)
    for key in theirs:
        assert ours[key] == pytest.approx(theirs[key], rel=1e-5, abs=1e-6), key


class TwoHeads(ember.Model):
    """A shared trunk and two heads: class probabilities ("cls") and a regression ("reg")."""

    output_names = ("cls", "reg")

    def __init__(self, as_dict=False):
        super().__init__()
        self.trunk, self.cls, self.reg, self.as_dict = nn.Linear(4, 5), nn.Linear(5, 3), nn.Linear(5, 1), as_dict

    def forward(self, x):
        hidden = torch.relu(self.trunk(x))
        outputs = torch.softmax(self.cls(hidden), -1), self.reg(hidden)
        return dict(zip(self.output_names, outputs)) if self.as_dict else outputs


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


def ember_weights(model):
    """The ember twin's weights in Keras' order and layout."""
    return [t.detach().numpy() for layer in (model.trunk, model.cls, model.reg) for t in (layer.weight.T, layer.bias)]
