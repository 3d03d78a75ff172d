"""Several outputs, Keras' way: per-output losses, loss weights, metrics, log names and predict's
structure, checked against Keras 3 on the torch backend with the same weights."""
import numpy as np
import pytest
import torch
from torch import nn

import ember
from testing.twins import LOSSES, assert_logs_close, TwoHeads, ember_weights



@pytest.mark.parametrize("as_dict", [False, True])
def test_evaluate_matches_keras_per_output_losses_weights_and_metrics(twins, as_dict):
    keras_model, model, x, y = twins(as_dict)
    targets = dict(zip(("cls", "reg"), y)) if as_dict else y
    options = dict(loss=dict(zip(("cls", "reg"), LOSSES)) if as_dict else LOSSES, loss_weights=[0.5, 2.0],
                   metrics={"cls": ["accuracy"], "reg": ["mae"]})
    keras_model.compile("sgd", **options)
    model.compile("sgd", precision="fp32", device="cpu", **options)
    theirs = keras_model.evaluate(x, targets, batch_size=8, verbose=0, return_dict=True)
    ours = model.evaluate(x, targets, batch_size=8)
    assert_logs_close(ours, theirs)  # loss, cls_loss, reg_loss, cls_accuracy, reg_mae; a short last batch of 4


def test_one_epoch_of_sgd_matches_keras_weights_and_history(twins):
    keras_model, model, x, y = twins()
    options = dict(loss=LOSSES, loss_weights=[0.5, 2.0], metrics=[["accuracy"], ["mae"]])
    keras_model.compile(keras_sgd(0.1), **options)
    model.compile("sgd", lr=0.1, precision="fp32", device="cpu", **options)
    theirs = keras_model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0, validation_data=(x, y)).history
    ours = model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0, validation_data=(x, y)).history
    assert set(ours) - {"lr"} == set(theirs)  # Keras logs the learning rate only with a schedule callback
    for key in theirs:
        np.testing.assert_allclose(ours[key], theirs[key], rtol=1e-5, atol=1e-6, err_msg=key)
    for got, expected in zip(ember_weights(model), keras_model.get_weights()):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def keras_sgd(rate):
    import keras

    return keras.optimizers.SGD(learning_rate=rate)


def test_one_loss_applies_to_every_output_and_a_partial_dict_to_the_named_ones(twins):
    keras_model, model, x, y = twins(as_dict=True)
    targets = {"cls": np.random.default_rng(2).random((20, 3)).astype("float32"), "reg": y[1]}
    keras_model.compile("sgd", loss="mse")
    model.compile("sgd", loss="mse", precision="fp32", device="cpu")
    assert_logs_close(model.evaluate(x, targets), keras_model.evaluate(x, targets, verbose=0, return_dict=True))
    keras_model.compile("sgd", loss={"reg": "mse"})  # one loss: no per-output entries in the logs
    model.compile("sgd", loss={"reg": "mse"}, precision="fp32", device="cpu")
    assert_logs_close(model.evaluate(x, {"reg": y[1]}), keras_model.evaluate(x, targets, verbose=0, return_dict=True))


def test_predict_returns_the_model_s_structure():
    x = np.random.rand(10, 4).astype("float32")
    as_tuple, as_dict = TwoHeads().predict(x, batch_size=4), TwoHeads(as_dict=True).predict(x, batch_size=4)
    assert isinstance(as_tuple, tuple) and [a.shape for a in as_tuple] == [(10, 3), (10, 1)]
    assert isinstance(as_dict, dict) and list(as_dict) == ["cls", "reg"] and as_dict["reg"].shape == (10, 1)


class Unnamed(ember.Model):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 1), nn.Linear(4, 1)

    def forward(self, x):
        return [self.a(x), self.b(x)]


def test_unnamed_outputs_are_numbered_in_the_logs():
    x, y = np.random.rand(12, 4).astype("float32"), np.random.rand(12, 1).astype("float32")
    model = Unnamed().compile("sgd", "mse", metrics=["mae", ["mae", "mse"]], device="cpu")
    logs = model.evaluate(x, [y, y])
    assert list(logs) == ["loss", "output_0_loss", "output_1_loss", "output_0_mae", "output_1_mae", "output_1_mse"]
    assert logs["loss"] == pytest.approx(logs["output_0_loss"] + logs["output_1_loss"])


@pytest.mark.parametrize("compile_args, data, message", [
    (dict(loss=["mse"] * 3), "list", r"compile\(loss=...\) has 3 entries for a model with 2 outputs \(cls, reg\)"),
    (dict(loss={"cls": "mse", "head": "mse"}), "list", r"names \['head'\], which are not outputs .* \['cls', 'reg'\]"),
    (dict(loss="mse", metrics=["mae"]), "list", r"compile\(metrics=...\) has 1 entries for a model with 2 outputs"),
    (dict(loss="mse", loss_weights=[1.0]), "list", r"loss_weights=...\) has 1 entries"),
    (dict(loss="mse"), "three", r"y: expected one per output of the model's 2 \(cls, reg\).* got a list of 3"),
    (dict(loss="mse"), "one", r"y: expected one per output .* got one Tensor"),
])
def test_a_mismatch_between_compile_data_and_outputs_names_both(compile_args, data, message):
    x, y = np.random.rand(8, 4).astype("float32"), np.random.rand(8, 1).astype("float32")
    targets = {"list": [y, y], "three": [y, y, y], "one": y}[data]
    model = TwoHeads().compile("sgd", device="cpu", **compile_args)
    with pytest.raises(ValueError, match=message):
        model.fit(x, targets, verbose=0)


class TwoInputs(ember.Model):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(3, 1), nn.Linear(2, 1)

    def forward(self, inputs):  # a list, or a dict by input name: one argument, as a Keras functional model
        a, b = (inputs["a"], inputs["b"]) if isinstance(inputs, dict) else inputs
        return self.a(a) + self.b(b)


def test_several_inputs_as_a_list_a_dict_or_batches_of_them_train_alike():
    ember.seed(0)
    a, b, y = torch.rand(16, 3), torch.rand(16, 2), torch.rand(16, 1)
    results = []
    for data in (dict(x=[a, b], y=y), dict(x={"a": a, "b": b}, y=y),
                 dict(x=[({"a": a[i:i + 4], "b": b[i:i + 4]}, y[i:i + 4]) for i in range(0, 16, 4)])):
        ember.seed(1)
        model = TwoInputs().compile("sgd", "mse", device="cpu", precision="fp32")
        results.append(model.fit(**data, batch_size=4, shuffle=False, verbose=0).history["loss"])
    assert results[0] == results[1] == results[2]
