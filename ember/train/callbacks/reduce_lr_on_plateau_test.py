import pytest

from ember.callbacks import ReduceLROnPlateau
from ember.train.callbacks.early_stopping_test import Feed


def test_reduces_by_factor_after_patience_and_respects_min_lr(toy):
    x, y, build = toy
    model = build(lr=0.1)
    reduce = ReduceLROnPlateau(factor=0.5, patience=2, min_lr=0.03)
    history = model.fit(x, y, epochs=8, verbose=0, validation_data=(x, y),
                        callbacks=[Feed([1.0] * 8), reduce])
    # lr logged for epoch e is the rate used during e: reduced after epochs 2, 4 (min_lr), 6.
    assert history.history["lr"] == pytest.approx([0.1, 0.1, 0.1, 0.05, 0.05, 0.03, 0.03, 0.03])


def test_keras_defaults():
    reduce = ReduceLROnPlateau()
    assert (reduce.factor, reduce.patience, reduce.min_delta, reduce.cooldown) == (0.1, 10, 1e-4, 0)


def test_cooldown_pauses_counting(toy):
    x, y, build = toy
    model = build(lr=1.0)
    reduce = ReduceLROnPlateau(factor=0.5, patience=1, cooldown=2)
    history = model.fit(x, y, epochs=6, verbose=0, validation_data=(x, y), callbacks=[Feed([1.0] * 6), reduce])
    # Keras semantics: reduce after epoch 1, two cooldown epochs pass (counting resumes in the second).
    assert history.history["lr"] == pytest.approx([1.0, 1.0, 0.5, 0.5, 0.25, 0.25])
