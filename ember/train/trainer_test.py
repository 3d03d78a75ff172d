import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import ember
from ember import layers


def make_data(n=96, features=4, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features)).astype(np.float64)  # float64 on purpose: cast to float32
    w = rng.normal(size=(features, classes))
    y = (x @ w).argmax(1)
    return x, y


def mlp(classes=3, features=4):
    ember.seed(0)
    model = ember.Sequential([layers.Dense(16, activation="relu", input_shape=(features,)), layers.Dense(classes)])
    model.compile("adam", "cross_entropy", ["accuracy"], lr=0.05)
    return model


def test_fit_learns_and_history_has_every_key():
    x, y = make_data()
    model = mlp()
    history = model.fit(x, y, epochs=8, batch_size=16, validation_split=0.25, verbose=0)
    assert set(history.history) == {"loss", "accuracy", "lr", "val_loss", "val_accuracy"}
    assert len(history.history["loss"]) == 8 and history.epoch == list(range(8))
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert history.history["accuracy"][-1] > 0.8


@pytest.mark.parametrize("form", ["numpy", "tensor", "tensordataset", "dataloader", "list", "dataset"])
def test_every_data_form_trains_to_the_same_loss_when_not_shuffled(form):
    x, y = make_data()
    xt, yt = torch.tensor(x, dtype=torch.float32), torch.tensor(y)
    data = {
        "numpy": (x, y), "tensor": (xt, yt), "tensordataset": (TensorDataset(xt, yt), None),
        "dataloader": (DataLoader(TensorDataset(xt, yt), batch_size=16), None),
        "list": ([(xt[i:i + 16], yt[i:i + 16]) for i in range(0, 96, 16)], None),
        "dataset": (_MapDataset(xt, yt), None),
    }[form]
    reference = mlp().fit(x, y, epochs=2, batch_size=16, shuffle=False, verbose=0).history["loss"]
    losses = mlp().fit(*data, epochs=2, batch_size=16, shuffle=False, verbose=0).history["loss"]
    np.testing.assert_allclose(losses, reference, rtol=1e-5)


class _MapDataset(torch.utils.data.Dataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


def test_dict_batches_and_models_returning_their_own_loss():
    class WithLoss(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(4, 3)

        def forward(self, features, labels=None):
            logits = self.linear(features)
            loss = None if labels is None else nn.functional.cross_entropy(logits, labels)
            return type("Out", (), {"loss": loss, "logits": logits})()

    x, y = make_data()
    model = ember.wrap(WithLoss())
    model.compile("adam", metrics=["accuracy"], lr=0.05)
    history = model.fit({"features": x.astype(np.float32), "labels": y}, epochs=5, batch_size=16, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    logits = model.predict({"features": x.astype(np.float32)})
    assert isinstance(logits, np.ndarray) and logits.shape == (96, 3)


def test_evaluate_returns_dict_and_predict_restores_mode():
    x, y = make_data()
    model = mlp()
    model.fit(x, y, epochs=2, verbose=0)
    result = model.evaluate(x, y, batch_size=50)
    assert set(result) == {"loss", "accuracy"} and 0 <= result["accuracy"] <= 1
    model.train()
    out = model.predict(x, batch_size=7)
    assert isinstance(out, np.ndarray) and out.shape == (96, 3) and model.training
    model.eval()
    model.predict(x)
    assert not model.training


def test_wrap_shares_parameters_and_trains_the_original():
    net = nn.Sequential(nn.Linear(4, 3))
    before = net[0].weight.detach().clone()
    model = ember.wrap(net)
    assert next(model.parameters()) is net[0].weight
    model.compile("sgd", "cross_entropy", lr=0.1)
    model.fit(*make_data(), epochs=1, verbose=0)
    assert not torch.equal(before, net[0].weight)


def test_keras_probability_losses_and_from_logits():
    x, y = make_data()
    ember.seed(0)
    model = ember.Sequential([layers.Dense(3, activation="softmax", input_shape=(4,))])
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"], lr=0.05)
    history = model.fit(x, y, epochs=5, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    onehot = np.eye(3, dtype=np.float32)[y]
    model.compile("adam", "categorical_crossentropy", ["accuracy"], lr=0.05)
    assert model.fit(x, onehot, epochs=1, verbose=0).history["accuracy"][0] > 0.3


def test_gradient_accumulation_matches_a_larger_batch():
    x, y = make_data(n=64)
    a, b = mlp(), mlp()
    # fp32: in bf16 (auto on CPUs with AMX) batches of 8 and 32 round differently.
    a.compile("sgd", "cross_entropy", lr=0.1, precision="fp32")
    b.compile("sgd", "cross_entropy", lr=0.1, accumulate_steps=4, precision="fp32")
    a.fit(x, y, epochs=1, batch_size=32, shuffle=False, verbose=0)
    b.fit(x, y, epochs=1, batch_size=8, shuffle=False, verbose=0)
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_cosine_schedule_per_epoch_and_linear_warmup_per_batch():
    x, y = make_data()
    model = mlp()
    model.compile("adam", "cross_entropy", lr=0.1, lr_schedule="cosine")
    lrs = model.fit(x, y, epochs=4, verbose=0).history["lr"]
    np.testing.assert_allclose(lrs, [0.1 * (1 + math.cos(math.pi * e / 4)) / 2 for e in range(4)])
    model.compile("adam", "cross_entropy", lr=0.1, lr_schedule="linear", lr_schedule_interval="batch",
                  warmup_steps=0.5)
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)  # 6 steps: 3 warmup, 3 decay
    assert model.optimizer.param_groups[0]["lr"] == pytest.approx(0.0)


def test_weight_decay_skips_biases_and_norms_and_optimizer_is_fused():
    model = ember.Sequential([layers.Dense(4, input_shape=(3,)), layers.LayerNorm()])
    model.compile("adamw", "mse", lr=1e-3, weight_decay=0.1)
    groups = model.optimizer.param_groups
    assert [g["weight_decay"] for g in groups] == [0.1, 0.0]
    assert [len(g["params"]) for g in groups] == [1, 3]
    assert model.optimizer.defaults.get("fused") is True


def test_optimizer_forms():
    import functools

    model = mlp()
    model.compile(functools.partial(torch.optim.SGD, lr=0.3), "cross_entropy")
    assert isinstance(model.optimizer, torch.optim.SGD) and model.optimizer.defaults["lr"] == 0.3
    model.compile(torch.optim.RMSprop(model.parameters(), lr=0.01), "cross_entropy")
    assert isinstance(model.optimizer, torch.optim.RMSprop)


def test_torchmetrics_objects_are_accepted():
    torchmetrics = pytest.importorskip("torchmetrics")
    x, y = make_data()
    model = mlp()
    model.compile("adam", "cross_entropy", [torchmetrics.classification.MulticlassAccuracy(num_classes=3)])
    logs = model.evaluate(x, y)
    assert "multiclass_accuracy" in logs and 0 <= logs["multiclass_accuracy"] <= 1


# --- bad input -------------------------------------------------------------
def test_fit_before_compile():
    model = ember.Sequential([layers.Dense(3, input_shape=(4,))])
    with pytest.raises(RuntimeError, match="not compiled: call model.compile"):
        model.fit(*make_data())


@pytest.mark.parametrize("kwargs, message", [
    ({"optimizer": "adamx"}, "unknown optimizer 'adamx'; known: adadelta, adagrad, adam"),
    ({"loss": "crossentropy"}, "unknown loss 'crossentropy'; known: .*cross_entropy"),
    ({"metrics": ["acuracy"]}, "unknown metric 'acuracy'; known: .*accuracy"),
])
def test_unknown_names_list_the_known_ones(kwargs, message):
    model = ember.Sequential([layers.Dense(3, input_shape=(4,))])
    options = {"optimizer": "adam", "loss": "cross_entropy", **kwargs}
    with pytest.raises(ValueError, match=message):
        model.compile(**options)


def test_labels_out_of_range():
    x, y = make_data()
    y[5] = 7
    with pytest.raises(ValueError, match=r"labels must be in \[0, 3\) for a model with 3 outputs, got labels from 0 to 7"):
        mlp().fit(x, y, verbose=0)


def test_a_bad_label_in_a_later_batch_names_the_batch_the_label_and_the_range():
    x, y = make_data()
    y[77] = 7  # batch 3 of 4 (batch size 32), in a DataLoader: labels are not all known up front
    loader = DataLoader(TensorDataset(torch.from_numpy(x).float(), torch.from_numpy(y)), batch_size=32)
    with pytest.raises(ValueError, match=r"batch 3 of epoch 1: label 7 is out of range: labels must be in "
                                         r"\[0, 3\) for a model with 3 outputs"):
        mlp().fit(loader, verbose=0)
    with pytest.raises(ValueError, match=r"an evaluation batch: label 7 is out of range"):
        mlp().evaluate(loader)


@pytest.mark.parametrize("data", [[], DataLoader(TensorDataset(torch.zeros(0, 4), torch.zeros(0)), batch_size=8)])
def test_data_without_batches_is_an_error_naming_it(data):
    with pytest.raises(ValueError, match=r"x is an empty (list|DataLoader): expected at least one batch"):
        mlp().fit(data, verbose=0)


def test_an_iterable_that_yields_nothing_in_an_epoch_is_an_error():
    class Exhausted:
        """Re-iterable, but yields no batch (e.g. a reader whose files are gone)."""

        def __iter__(self):
            return iter(())

    with pytest.raises(ValueError, match=r"x \(Exhausted\) yielded no batch in epoch 1"):
        mlp().evaluate(Exhausted())


def test_empty_data_and_bad_validation_split():
    model = mlp()
    with pytest.raises(ValueError, match="0 samples"):
        model.fit(np.zeros((0, 4), np.float32), np.zeros(0, np.int64), verbose=0)
    with pytest.raises(ValueError, match=r"validation_split must be in \[0, 1\), got 1.5"):
        model.fit(*make_data(), validation_split=1.5, verbose=0)
    with pytest.raises(ValueError, match="has 96 samples but y has 10"):
        model.fit(make_data()[0], np.zeros(10), verbose=0)


def test_wrong_input_shape_on_a_torch_model_names_the_layer():
    model = ember.wrap(nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.LazyLinear(2)))
    model.compile("adam", "cross_entropy")
    with pytest.raises(ValueError, match=r"layer 'module.0' \(Conv2d\) expected input of shape \(batch, 1, H, W\), "
                                         r"received \(8, 28, 28\)"):
        model.fit(np.zeros((8, 28, 28), np.float32), np.zeros(8, np.int64), verbose=0)


def test_nan_loss_stops_training_cleanly():
    x, y = make_data()
    model = mlp()
    model.compile("sgd", "mse", lr=1e30)
    with pytest.warns(RuntimeWarning, match="loss became (nan|inf)"):
        history = model.fit(x, np.ones((96, 3), np.float32) * 1e20, epochs=20, verbose=0)
    assert len(history.epoch) < 20


def test_generator_is_refused_with_a_clear_message():
    model = mlp()
    with pytest.raises(TypeError, match="one-shot iterator"):
        model.fit((b for b in []), verbose=0)


def test_progress_bar_prints_keras_like_lines(capsys):
    mlp().fit(*make_data(), epochs=2, batch_size=32, verbose=1)
    out = capsys.readouterr().out
    assert "Epoch 1/2" in out and "3/3 [" in out and "loss:" in out and "accuracy:" in out
    mlp().fit(*make_data(), epochs=1, verbose=0)
    assert capsys.readouterr().out == ""


def test_probability_loss_on_logits_warns():
    x, y = make_data()
    model = mlp()  # ends in a Dense without softmax: logits
    model.compile("adam", "sparse_categorical_crossentropy", lr=0.01)
    with pytest.warns(RuntimeWarning, match="expects probabilities .* from_logits=True"):
        model.fit(x, y, epochs=1, verbose=0)


class Recorder(ember.callbacks.Callback):
    def __init__(self):
        self.calls = []

    def __getattribute__(self, name):
        if name.startswith("on_"):
            return lambda *args: self.calls.append((name, *args[:1])) if args and isinstance(args[0], int) \
                else self.calls.append((name,))
        return super().__getattribute__(name)


def test_evaluate_and_predict_call_the_test_and_predict_hooks_as_keras_does():
    x, y = make_data(n=40)
    model = mlp()
    recorder = Recorder()
    model.evaluate(x, y, batch_size=16, callbacks=[recorder])
    assert recorder.calls == [("on_test_begin",), ("on_test_batch_begin", 0), ("on_test_batch_end", 0),
                              ("on_test_batch_begin", 1), ("on_test_batch_end", 1), ("on_test_batch_begin", 2),
                              ("on_test_batch_end", 2), ("on_test_end",)]
    recorder.calls.clear()
    model.predict(x, batch_size=32, callbacks=[recorder])
    assert recorder.calls == [("on_predict_begin",), ("on_predict_batch_begin", 0), ("on_predict_batch_end", 0),
                              ("on_predict_batch_begin", 1), ("on_predict_batch_end", 1), ("on_predict_end",)]
    recorder.calls.clear()
    model.fit(x, y, batch_size=40, epochs=1, validation_data=(x, y), verbose=0, callbacks=[recorder])
    names = [c[0] for c in recorder.calls]
    assert names == ["on_train_begin", "on_epoch_begin", "on_train_batch_begin", "on_train_batch_end",
                     "on_test_begin", "on_test_batch_begin", "on_test_batch_end", "on_test_end", "on_epoch_end",
                     "on_train_end"]


def test_predict_batch_logs_hold_the_outputs_and_evaluate_can_return_a_list():
    x, y = make_data(n=40)
    model = mlp()
    seen = []
    model.predict(x, batch_size=32, callbacks=[ember.callbacks.LambdaCallback(
        on_predict_batch_end=lambda batch, logs: seen.append(logs["outputs"].shape))])
    assert seen == [(32, 3), (8, 3)]
    as_dict = model.evaluate(x, y)
    assert model.evaluate(x, y, return_dict=False) == [as_dict["loss"], as_dict["accuracy"]]
    model.compile("adam", "cross_entropy")
    assert model.evaluate(x, y, return_dict=False) == model.evaluate(x, y)["loss"]


def test_evaluate_and_predict_draw_a_progress_bar_when_verbose(capsys):
    x, y = make_data(n=40)
    model = mlp()
    model.evaluate(x, y, batch_size=16, verbose=1)
    model.predict(x, batch_size=16, verbose=1)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[0].startswith("3/3 [") and "loss: " in lines[0] and "accuracy: " in lines[0]
    assert lines[1].startswith("3/3 [") and "ms/step" in lines[1]
    model.fit(x, y, batch_size=16, validation_data=(x, y), verbose=1)  # validation draws no bar of its own
    assert len(capsys.readouterr().out.splitlines()) == 2  # "Epoch 1/1" and its line


def test_evaluate_from_a_callback_mid_epoch_leaves_the_training_logs_as_they_were():
    x, y = make_data()

    def train(callbacks):
        model = mlp()
        probe = ember.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: model.evaluate(x[:10], y[:10]))
        return model.fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=[probe] if callbacks else []).history

    assert train(callbacks=True) == train(callbacks=False)


def test_compile_freezes_the_recipe_and_the_state_lives_on_across_fits():
    x, y = make_data()
    model = mlp()
    with pytest.raises(AttributeError):
        model.recipe.accumulate_steps = 2  # a frozen description: recompile to change it
    assert model.recipe.describe()["optimizer"] == "adam"
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    optimizer, steps = model.optimizer, model.trainer.state.global_step
    assert steps == 6 and optimizer.state  # Adam's moments
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    assert model.optimizer is optimizer and model.trainer.state.global_step == 12  # as Keras' optimizer.iterations
