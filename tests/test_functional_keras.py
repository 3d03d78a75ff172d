"""The Keras functional API guide's models, written as a Keras user writes them with `ember` in
place of `keras` (the same function builds both), give Keras 3's outputs (torch backend, no
TensorFlow) once Keras' weights are copied in by layer name."""
import os
from types import SimpleNamespace

import numpy as np
import pytest
import torch

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")

import ember  # noqa: E402
from ember.keras.layers import KERAS, convert_weights, copy_weights  # noqa: E402

EMBER = SimpleNamespace(Input=ember.Input, Model=ember.Model, layers=ember.layers, ops=ember.ops)


@pytest.fixture(autouse=True)
def channels_last():
    before = ember.config.image_data_format()
    ember.config.set_image_data_format("channels_last")  # the guide's images are NHWC, as Keras' default
    yield
    ember.config.set_image_data_format(before)


def toy_resnet(k):
    inputs = k.Input(shape=(16, 16, 3), name="img")
    x = k.layers.Conv2D(8, 3, activation="relu")(inputs)
    x = k.layers.Conv2D(16, 3, activation="relu")(x)
    block_1_output = k.layers.MaxPooling2D(3)(x)
    x = k.layers.Conv2D(16, 3, activation="relu", padding="same")(block_1_output)
    x = k.layers.Conv2D(16, 3, activation="relu", padding="same")(x)
    block_2_output = k.layers.add([x, block_1_output])
    x = k.layers.Conv2D(16, 3, activation="relu")(block_2_output)
    x = k.layers.GlobalAveragePooling2D()(x)
    x = k.layers.Dense(32, activation="relu")(x)
    x = k.layers.Dropout(0.5)(x)
    outputs = k.layers.Dense(10)(x)
    return k.Model(inputs, outputs, name="toy_resnet")


def ticket_model(k, num_tags=12, num_words=100, num_departments=4):
    title_input = k.Input(shape=(None,), dtype="int32", name="title")
    body_input = k.Input(shape=(None,), dtype="int32", name="body")
    tags_input = k.Input(shape=(num_tags,), name="tags")
    title_features = k.layers.LSTM(16)(k.layers.Embedding(num_words, 8)(title_input))
    body_features = k.layers.LSTM(4)(k.layers.Embedding(num_words, 8)(body_input))
    x = k.layers.concatenate([title_features, body_features, tags_input])
    priority_pred = k.layers.Dense(1, name="priority")(x)
    department_pred = k.layers.Dense(num_departments, name="department")(x)
    return k.Model(inputs=[title_input, body_input, tags_input], outputs={"priority": priority_pred,
                                                                          "department": department_pred})


def shared_embedding(k):
    shared = k.layers.Embedding(50, 8, name="shared_embedding")
    text_a = k.Input(shape=(None,), dtype="int32", name="text_a")
    text_b = k.Input(shape=(None,), dtype="int32", name="text_b")
    a = k.layers.GlobalAveragePooling1D()(shared(text_a))
    b = k.layers.GlobalAveragePooling1D()(shared(text_b))
    return k.Model([text_a, text_b], k.layers.Dense(1, name="same")(k.layers.concatenate([a, b])))


def model_as_layer(k):
    block_input = k.Input(shape=(6,), name="block_in")
    block = k.Model(block_input, k.layers.Dense(6, activation="relu", name="inner")(block_input), name="block")
    x = k.Input(shape=(6,), name="x")
    y = k.layers.Add()([block(x), x])
    return k.Model(x, k.layers.Dense(2, name="out")(y), name="outer")


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


@pytest.mark.parametrize("build, inputs", [
    (toy_resnet, lambda rng: rng.normal(size=(3, 16, 16, 3)).astype("float32")),
    (ticket_model, lambda rng: [rng.integers(0, 100, (3, 7)).astype("int32"), rng.integers(0, 100, (3, 11)).astype(
        "int32"), rng.normal(size=(3, 12)).astype("float32")]),
    (shared_embedding, lambda rng: [rng.integers(0, 50, (3, 5)).astype("int32"),
                                    rng.integers(0, 50, (3, 9)).astype("int32")]),
    (model_as_layer, lambda rng: rng.normal(size=(3, 6)).astype("float32")),
], ids=["toy_resnet", "ticket", "shared_embedding", "model_as_layer"])
def test_the_guides_models_give_keras_outputs(build, inputs):
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
        for name in expected:
            assert np.abs(outputs[name].numpy() - np.asarray(expected[name])).max() < 1e-4, name
    else:
        assert np.abs(outputs.numpy() - np.asarray(expected)).max() < 1e-4
