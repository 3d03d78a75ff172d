"""An ember model with a Keras twin (see ember/train/conftest.py's `twins`), for tests that check
ember's training numbers against Keras'."""
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


def ember_weights(model):
    """The ember twin's weights in Keras' order and layout."""
    return [t.detach().numpy() for layer in (model.trunk, model.cls, model.reg) for t in (layer.weight.T, layer.bias)]
