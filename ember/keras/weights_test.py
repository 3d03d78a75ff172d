import numpy as np
import torch

import ember
from ember import layers as L
from ember.keras import load_keras_weights
from testing.keras import keras3_weights


def test_a_layer_keras_names_otherwise_counts_under_its_keras_name(tmp_path):
    """InceptionResNetV2's CustomScaleLayer is ember's ScaledAdd: Keras 3 numbers its weight groups by class
    (dense, dense_1, custom_scale_layer, ...), so each ember layer must count under its Keras class."""
    inputs = L.Input((4,))
    joined = L.ScaledAdd(0.5)([L.Dense(3)(inputs), L.Dense(3)(inputs)])
    model = ember.Model(inputs, L.Dense(2)(L.ScaledAdd(2.0)([joined, joined])))
    arrays = {group: (group, [np.full(shape, value, dtype="float32") for shape in shapes])
              for group, shapes, value in (("dense", [(4, 3), (3,)], 1.0), ("dense_1", [(4, 3), (3,)], 2.0),
                                           ("dense_2", [(3, 2), (2,)], 3.0))}
    path = tmp_path / "model.weights.h5"
    path.write_bytes(keras3_weights(arrays))
    load_keras_weights(model, path)
    dense = [module for module in model.modules() if isinstance(module, L.Dense)]
    assert [float(module.bias[0]) for module in dense] == [1.0, 2.0, 3.0]
    assert torch.equal(dense[2].weight, torch.full((2, 3), 3.0))
