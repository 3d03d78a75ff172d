"""The Keras functional API guide's models as functions of a namespace `k` with `Input`, `Model`
and `layers`: `keras` builds Keras' model, an `ember` namespace builds ember's, from the same code.
Each comes with inputs for a few samples and a loss per output."""
from types import SimpleNamespace

import numpy as np
import pytest

import ember

@pytest.fixture(autouse=True)
def channels_last():
    """Autouse in the tests that import it: the guide's layers in Keras' default image layout."""
    before = ember.config.image_data_format()
    ember.config.set_image_data_format("channels_last")  # the guide's images are NHWC, as Keras' default
    yield
    ember.config.set_image_data_format(before)


EMBER = SimpleNamespace(Input=ember.Input, Model=ember.Model, layers=ember.layers, ops=ember.ops)


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


def _ids(rng, high, length):
    return rng.integers(0, high, (3, length)).astype("int32")


# name -> (builder, inputs for a few samples, their targets, compile's loss)
GUIDE_MODELS = {
    "toy_resnet": (toy_resnet, lambda rng: rng.normal(size=(3, 16, 16, 3)).astype("float32"),
                   lambda rng: rng.integers(0, 10, 3), "cross_entropy"),
    "ticket": (ticket_model, lambda rng: [_ids(rng, 100, 7), _ids(rng, 100, 11), rng.normal(size=(3, 12)).astype(
        "float32")], lambda rng: {"priority": rng.integers(0, 2, (3, 1)).astype("float32"),
                                  "department": rng.integers(0, 4, 3)},
               {"priority": "bce_with_logits", "department": "cross_entropy"}),
    "shared_embedding": (shared_embedding, lambda rng: [_ids(rng, 50, 5), _ids(rng, 50, 9)],
                         lambda rng: rng.normal(size=(3, 1)).astype("float32"), "mse"),
    "model_as_layer": (model_as_layer, lambda rng: rng.normal(size=(3, 6)).astype("float32"),
                       lambda rng: rng.integers(0, 2, 3), "cross_entropy"),
}
