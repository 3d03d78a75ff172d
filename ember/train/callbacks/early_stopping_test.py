import torch

from ember.callbacks import Callback, EarlyStopping


class Feed(Callback):
    """Overwrites the monitored value with a scripted sequence (runs before EarlyStopping)."""

    def __init__(self, values, key="val_loss"):
        self.values, self.key = values, key

    def on_epoch_end(self, epoch, logs=None):
        logs[self.key] = self.values[epoch]


def test_stops_after_patience_epochs_without_improvement(toy):
    x, y, build = toy
    stop = EarlyStopping(monitor="val_loss", patience=2)
    history = build().fit(x, y, epochs=10, verbose=0, validation_data=(x, y),
                          callbacks=[Feed([1.0, 0.5, 0.6, 0.7, 0.4, 0.3, 0.2, 0.1, 0.1, 0.1]), stop])
    assert len(history.epoch) == 4 and stop.stopped_epoch == 3 and stop.best == 0.5


def test_mode_max_and_min_delta(toy):
    x, y, build = toy
    stop = EarlyStopping(monitor="val_accuracy", patience=1, min_delta=0.05)
    history = build().fit(x, y, epochs=10, verbose=0, validation_data=(x, y),
                          callbacks=[Feed([0.5, 0.6, 0.62, 0.9], "val_accuracy"), stop])
    assert stop.mode == "max" and len(history.epoch) == 3


def test_restore_best_weights_also_when_training_runs_to_the_end(toy):
    x, y, build = toy
    model = build()
    snapshots = []

    class Snapshot(Callback):
        def on_epoch_end(self, epoch, logs=None):
            snapshots.append({k: v.clone() for k, v in self.model.state_dict().items()})

    stop = EarlyStopping(monitor="val_loss", patience=10, restore_best_weights=True)
    model.fit(x, y, epochs=4, verbose=0, validation_data=(x, y),
              callbacks=[Feed([0.9, 0.2, 0.5, 0.6]), Snapshot(), stop])
    assert stop.stopped_epoch == 0 and stop.best_epoch == 1
    for key, value in model.state_dict().items():
        assert torch.equal(value, snapshots[1][key])


def test_baseline_stops_when_never_beaten(toy):
    x, y, build = toy
    stop = EarlyStopping(monitor="val_loss", patience=2, baseline=0.1)
    history = build().fit(x, y, epochs=10, verbose=0, validation_data=(x, y),
                          callbacks=[Feed([0.5] * 10), stop])
    assert len(history.epoch) == 2
