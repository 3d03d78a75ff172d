import pytest
import torch

import ember
from ember import layers as L
from ember.define.regularizers import L1, L2, L1L2
from ember.train.regularization import penalty, regularized_layers


def test_penalties_are_keras_sums_and_activity_ones_come_from_training_calls_only():
    dense = L.Dense(2, input_shape=(3,)).regularize("weight", L1L2(0.1, 0.01))
    dense.activity_regularizer = L2(0.5)
    weight = dense.weight.detach()
    x = torch.ones(4, 3)
    with torch.no_grad():
        dense.eval()(x)  # inference: no activity penalty
    assert float(penalty([dense])) == pytest.approx(float(0.1 * weight.abs().sum() + 0.01 * weight.square().sum()))
    out = dense.train()(x)
    expected = 0.1 * weight.abs().sum() + 0.01 * weight.square().sum() + 0.5 * out.square().sum() / 4
    assert float(penalty([dense])) == pytest.approx(float(expected), rel=1e-6)
    assert float(penalty([dense])) == pytest.approx(float(0.1 * weight.abs().sum() + 0.01 * weight.square().sum()))


def test_regularizers_are_saved_with_the_model_and_join_the_fit_loss(tmp_path):
    model = ember.Sequential([L.Input((3,)), L.Dense(4).regularize("weight", L2(0.1)), L.Dense(1)])
    model.layers[-1].activity_regularizer = L1(0.2)
    model.save(tmp_path / "model.ember")
    loaded = ember.load(tmp_path / "model.ember")
    assert [(m.weight_regularizers, m.activity_regularizer) for m in regularized_layers(loaded)] == \
        [({"weight": L2(0.1)}, None), ({}, L1(0.2))]
    x, y = torch.randn(8, 3), torch.randn(8, 1)
    loaded.compile("sgd", "mse", lr=0.0, precision="fp32")
    logged = loaded.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0).history["loss"][0]
    out = loaded.train()(x)
    expected = torch.nn.functional.mse_loss(out, y) + 0.1 * loaded.layers[0].weight.square().sum() \
        + 0.2 * out.abs().sum() / 8
    assert logged == pytest.approx(float(expected), rel=1e-5)


def test_a_regularizer_is_numbers_at_least_zero():
    with pytest.raises(ValueError, match=r"l2 must be a number >= 0, got -1"):
        L2(-1)
    with pytest.raises(ValueError, match=r"l1 must be a number >= 0, got 'big'"):
        L1L2(l1="big")
