"""Freezing (`layer.trainable = False`) and per-call modes (`layer(x, training=False)`), as in Keras."""
import numpy as np
import torch

import ember
from ember import layers as L


def test_a_frozen_layer_keeps_its_weights_and_statistics_through_fit_and_after_save(tmp_path):
    ember.seed(0)
    model = ember.Sequential([L.Input((5,)), L.Dense(4), L.BatchNormalization(), L.Dense(2)])
    model.layers[0].trainable = model.layers[1].trainable = False
    frozen = {key: value.clone() for key, value in model.state_dict().items() if key.startswith(("layers.0.", "layers.1."))}
    assert not any(p.requires_grad for p in model.layers[0].parameters())
    top = model.layers[2].weight.detach().clone()
    model.compile("sgd", "mse", lr=0.1, precision="fp32")
    x = np.random.default_rng(0).normal(size=(32, 5)).astype("float32")
    model.fit(x, x[:, :2], epochs=2, batch_size=8, verbose=0)
    state = model.state_dict()
    assert len(frozen) == 6 and all(torch.equal(value, state[key]) for key, value in frozen.items())
    assert not torch.equal(state["layers.2.weight"], top)  # the top still trains
    model.save(tmp_path / "model.ember")
    loaded = ember.load(tmp_path / "model.ember")
    assert [layer.trainable for layer in loaded.layers] == [False, False, True]


def test_a_call_in_inference_mode_stays_there_while_the_model_trains(tmp_path):
    ember.seed(0)
    inputs = L.Input((6,))
    kept = L.Dropout(0.9)(inputs, training=False)  # recorded with the call, saved with the model
    model = ember.Model(inputs, L.Add()([kept, L.Dropout(0.9)(inputs)]))
    model.train()
    x = torch.ones(4, 6)
    out = model(x)
    assert torch.all(out >= 1) and torch.any(out == 1)  # the first branch is x itself, the second dropped
    model.save(tmp_path / "model.ember")
    loaded = ember.load(tmp_path / "model.ember").train()
    assert torch.all(loaded(x) >= 1) and all(m.training for m in loaded.modules())  # the mode is put back
    layer = L.Dropout(0.9).train()
    assert torch.equal(layer(x, training=False), x) and layer.training


def test_frozen_layers_inside_wrappers_rebuild_from_their_configs():
    inner = L.Dense(3)
    inner.trainable = False
    spread = L.TimeDistributed(inner)
    spread.build_for((4, 5))
    assert spread.layer.trainable is False
    assert L.TimeDistributed.from_config(spread.get_config()).layer.trainable is False
    lstm = L.LSTM(3)
    lstm.trainable = False
    both = L.Bidirectional(lstm)
    assert both.backward_layer.trainable is False
    assert L.Bidirectional.from_config(both.get_config()).forward_layer.trainable is False
