"""Keras' sample_weight, class_weight, validation_freq, steps_per_epoch and validation_steps."""
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, IterableDataset, TensorDataset

import ember
from ember import layers
from ember.callbacks import BackupAndRestore
from ember.train.callbacks.backup_and_restore_test import Interrupt, InterruptAt, _assert_same
from testing.twins import LOSSES, assert_logs_close, ember_weights
from ember.train.data import make_batches



def test_weighted_losses_match_keras_shared_per_output_and_from_class_weight(twins, keras):
    keras_model, model, x, y = twins()
    weights = np.random.default_rng(4).random(20).astype("float32")
    keras_model.compile("sgd", loss=LOSSES, loss_weights=[0.5, 2.0])
    model.compile("sgd", loss=LOSSES, loss_weights=[0.5, 2.0], precision="fp32", device="cpu")
    for sample_weight in (weights, [weights, 1 - weights]):
        theirs = keras_model.evaluate(x, y, sample_weight=sample_weight, batch_size=8, verbose=0, return_dict=True)
        assert_logs_close(model.evaluate(x, y, sample_weight=sample_weight, batch_size=8), theirs)

    classes = {0: 1.0, 1: 3.0, 2: 0.25}
    keras_single = keras.Model(keras_model.inputs, keras_model.outputs[0])
    keras_single.compile(keras.optimizers.SGD(learning_rate=0.1), "sparse_categorical_crossentropy")
    single = ember.wrap(lambda_head(model)).compile("sgd", "sparse_categorical_crossentropy", lr=0.1,
                                                   precision="fp32", device="cpu")
    theirs = keras_single.fit(x, y[0], class_weight=classes, batch_size=8, shuffle=False, verbose=0).history
    ours = single.fit(x, y[0], class_weight=classes, batch_size=8, shuffle=False, verbose=0).history
    assert ours["loss"] == pytest.approx(theirs["loss"], rel=1e-5)
    for got, expected in zip(ember_weights(model)[:4], keras_single.get_weights()):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def lambda_head(model):
    """The first head of the two-headed twin, as a module of its own (sharing its weights)."""
    class FirstHead(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.twin = model

        def forward(self, x):
            return self.twin(x)[0]
    return FirstHead()


def test_sample_weights_of_the_wrong_length_or_with_class_weight_are_named():
    x, y = np.random.rand(8, 4).astype("float32"), np.arange(8) % 2
    with pytest.raises(ValueError, match=r"x has 8 samples but sample_weight has 5"):
        make_batches(x, y, sample_weight=np.ones(5))
    with pytest.raises(ValueError, match="sample_weight or class_weight, not both"):
        make_batches(x, y, sample_weight=np.ones(8), class_weight={0: 2.0})
    with pytest.raises(ValueError, match=r"class_weight is for a model with one output, but y is a list of 2"):
        make_batches(x, [y, y], class_weight={0: 2.0})
    with pytest.raises(ValueError, match="sample_weight must be None when x is a DataLoader"):
        make_batches(DataLoader(TensorDataset(torch.from_numpy(x))), sample_weight=np.ones(8))


def test_batches_carry_their_sample_weights_and_split_them_with_the_batch():
    loader = [(torch.arange(4.0), torch.arange(4), torch.tensor([1.0, 2.0, 3.0, 4.0]))]
    batches = make_batches(loader)
    batches.split_across(rank=1, processes=2)
    (batch,) = batches.epoch(0)
    assert batch.sample_weight.tolist() == [3.0, 4.0] and batch.weight == pytest.approx(1.0)
    arrays = make_batches(np.arange(4.0), np.arange(4), sample_weight=np.array([1.0, 2.0, 3.0, 4.0]), batch_size=4)
    arrays.split_across(rank=0, processes=2)
    assert next(arrays.epoch(0)).sample_weight.tolist() == [1.0, 2.0]


def _model():
    ember.seed(0)
    return ember.Sequential([layers.Dense(4, activation="relu"), layers.Dense(2)]).compile(
        "sgd", "cross_entropy", ["accuracy"], device="cpu", precision="fp32")


def test_validation_freq_validates_after_every_nth_epoch():
    x, y = np.random.rand(16, 3).astype("float32"), np.arange(16) % 2
    history = _model().fit(x, y, epochs=4, validation_data=(x, y), validation_freq=2, verbose=0)
    assert history.history["val_loss"] and len(history.history["val_loss"]) == 2
    with pytest.raises(ValueError, match="validation_freq must be a positive integer"):
        _model().fit(x, y, validation_data=(x, y), validation_freq=0, verbose=0)


class Stream(IterableDataset):
    """Batches without a length: `count` of them a pass."""

    def __init__(self, count):
        self.count = count

    def __iter__(self):
        for i in range(self.count):
            yield torch.full((2, 3), float(i)), torch.tensor([0, 1])


class Seen(ember.callbacks.Callback):
    def __init__(self):
        self.firsts = []

    def on_train_batch_begin(self, batch, logs=None):
        self.firsts.append(batch)


def test_steps_per_epoch_continues_the_data_and_a_short_pass_ends_the_epoch_as_in_keras():
    seen = Seen()
    loader = DataLoader(Stream(5), batch_size=None)
    with pytest.warns(RuntimeWarning, match="ran out after 5 batches"):
        _model().fit(loader, epochs=3, steps_per_epoch=2, verbose=0, callbacks=[seen])
    assert seen.firsts == [0, 1, 0, 1, 0]  # batches 0-1, 2-3, then 4 and the pass is over
    x, y = np.random.rand(10, 3).astype("float32"), np.arange(10) % 2
    with pytest.warns(RuntimeWarning, match="ends after 2 steps"):  # 5 batches: 3 steps, then 2
        history = _model().fit(x, y, batch_size=2, epochs=2, steps_per_epoch=3, validation_data=(x, y),
                               validation_steps=1, verbose=0)
    assert len(history.history["loss"]) == 2


def test_sample_weights_resume_bit_identical(tmp_path):
    def run(callbacks):
        ember.seed(7)
        x = np.random.rand(40, 6).astype("float32")
        y, weights = (x[:, 0] > 0.5).astype("int64"), np.random.rand(40).astype("float32")
        model = ember.Sequential([layers.Dense(8, activation="relu"), layers.Dropout(0.3), layers.Dense(2)])
        model.compile("adamw", "cross_entropy", ["accuracy"], lr=0.02)
        return model, model.fit(x, y, sample_weight=weights, batch_size=8, epochs=3, verbose=0, callbacks=callbacks)

    reference = run([])
    with pytest.raises(Interrupt):
        run([InterruptAt(7), BackupAndRestore(tmp_path / "backup", save_freq=2)])
    _assert_same(run([BackupAndRestore(tmp_path / "backup", save_freq=2)]), reference)
