"""The Keras functional API guide's models, written as a Keras user writes them with `ember` in
place of `keras` (the same function builds both), give Keras 3's outputs (torch backend, no
TensorFlow) once Keras' weights are copied in by layer name."""
import os

import numpy as np
import pytest
import torch

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")

from ember.keras.layers import KERAS, convert_weights, copy_weights  # noqa: E402
from testing.functional_guide import EMBER, GUIDE_MODELS, channels_last  # noqa: E402, F401 (channels_last: autouse)


def _copy_keras_weights(keras_model, ember_model):
    """Every Keras layer's arrays into the ember module of the same name (nested models included)."""
    ours = {name: module for module in ember_model.modules() if hasattr(module, "layers")
            and isinstance(module.layers, torch.nn.ModuleDict) for name, module in module.layers.items()}
    for layer in _keras_layers(keras_model):
        arrays = [np.asarray(w) for w in layer.get_weights()]
        if arrays:
            converted, problem = convert_weights(type(layer).__name__, arrays, ours[layer.name],
                                                 layer.get_config(), KERAS, None)
            assert problem is None, problem
            copy_weights(ours[layer.name], converted)


def _keras_layers(model):
    for layer in model.layers:
        yield from _keras_layers(layer) if isinstance(layer, keras.Model) else [layer]


@pytest.mark.parametrize("name", GUIDE_MODELS)
def test_the_guides_models_give_keras_outputs(name):
    build, inputs = GUIDE_MODELS[name][:2]
    keras.backend.clear_session()  # Keras' automatic names (lstm, lstm_1) count from zero, as ember's do
    keras.utils.set_random_seed(0)
    reference = build(keras)
    model = build(EMBER)
    _copy_keras_weights(reference, model)
    data = inputs(np.random.default_rng(0))
    expected = reference.predict(data, verbose=0)
    model.eval()
    with torch.no_grad():
        tensors = [torch.from_numpy(d).long() if d.dtype.kind == "i" else torch.from_numpy(d) for d in data] \
            if isinstance(data, list) else torch.from_numpy(data)
        outputs = model(tensors)
    if isinstance(expected, dict):
        assert set(outputs) == set(expected)
        for output in expected:
            assert np.abs(outputs[output].numpy() - np.asarray(expected[output])).max() < 1e-4, output
    else:
        assert np.abs(outputs.numpy() - np.asarray(expected)).max() < 1e-4
