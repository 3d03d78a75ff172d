"""`Callback` with Keras' hook names, and `CallbackList`, which calls them in order.

Callbacks see `self.model` (the ember model) and `self.trainer`: `trainer.state` (a
`TrainState`: optimizer, LR schedule, scaler, metrics, loop position) and `trainer.strategy`. Batch-level `logs` are lazy: reading one syncs
the device, so callbacks that never read them cost nothing.
"""
from collections.abc import Mapping


class Callback:
    model = None
    trainer = None
    params: dict = {}

    def set_model(self, model):
        self.model = model

    def set_trainer(self, trainer):
        self.trainer = trainer

    def set_params(self, params):
        self.params = params

    # Hooks, as in Keras.
    def on_train_begin(self, logs=None): ...
    def on_train_end(self, logs=None): ...
    def on_epoch_begin(self, epoch, logs=None): ...
    def on_epoch_end(self, epoch, logs=None): ...
    def on_train_batch_begin(self, batch, logs=None): ...
    def on_train_batch_end(self, batch, logs=None): ...
    def on_test_begin(self, logs=None): ...
    def on_test_end(self, logs=None): ...
    def on_test_batch_begin(self, batch, logs=None): ...
    def on_test_batch_end(self, batch, logs=None): ...
    def on_predict_begin(self, logs=None): ...
    def on_predict_end(self, logs=None): ...
    def on_predict_batch_begin(self, batch, logs=None): ...
    def on_predict_batch_end(self, batch, logs=None): ...

    # Exact resume (BackupAndRestore) saves and restores what a callback has learnt.
    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class LambdaCallback(Callback):
    """Callback from functions: `LambdaCallback(on_epoch_end=lambda epoch, logs: ...)`."""

    def __init__(self, **hooks):
        for name, fn in hooks.items():
            if not name.startswith("on_") or not hasattr(Callback, name):
                raise ValueError(f"unknown hook {name!r}; hooks are the Callback methods named on_*")
            setattr(self, name, fn)


class LazyLogs(Mapping):
    """A dict computed on first access (the first access syncs the device)."""

    def __init__(self, compute):
        self._compute, self._values = compute, None

    def _get(self):
        if self._values is None:
            self._values = self._compute()
        return self._values

    def __getitem__(self, key):
        return self._get()[key]

    def __iter__(self):
        return iter(self._get())

    def __len__(self):
        return len(self._get())


class CallbackList:
    """The callbacks of one fit/evaluate/predict call; the trainer calls each hook as a method, in order."""

    def __init__(self, callbacks, model, trainer, params):
        self.callbacks = list(callbacks)
        for cb in self.callbacks:
            cb.set_model(model)
            cb.set_trainer(trainer)
            cb.set_params(params)

    def __iter__(self):
        return iter(self.callbacks)

    def by_key(self, excluding=None) -> dict:
        """The callbacks keyed by class name (and #n for repeats): how a backup names their states."""
        keyed, counts = {}, {}
        for cb in self.callbacks:
            if cb is not excluding:
                name = type(cb).__name__
                counts[name] = counts.get(name, 0) + 1
                keyed[name if counts[name] == 1 else f"{name}#{counts[name]}"] = cb
        return keyed

    def on_train_begin(self, logs=None):
        for cb in self.callbacks:
            cb.on_train_begin(logs)

    def on_train_end(self, logs=None):
        for cb in self.callbacks:
            cb.on_train_end(logs)

    def on_epoch_begin(self, epoch, logs=None):
        for cb in self.callbacks:
            cb.on_epoch_begin(epoch, logs)

    def on_epoch_end(self, epoch, logs=None):
        for cb in self.callbacks:
            cb.on_epoch_end(epoch, logs)

    def on_train_batch_begin(self, batch, logs=None):
        for cb in self.callbacks:
            cb.on_train_batch_begin(batch, logs)

    def on_train_batch_end(self, batch, logs=None):
        for cb in self.callbacks:
            cb.on_train_batch_end(batch, logs)

    def on_test_begin(self, logs=None):
        for cb in self.callbacks:
            cb.on_test_begin(logs)

    def on_test_end(self, logs=None):
        for cb in self.callbacks:
            cb.on_test_end(logs)

    def on_test_batch_begin(self, batch, logs=None):
        for cb in self.callbacks:
            cb.on_test_batch_begin(batch, logs)

    def on_test_batch_end(self, batch, logs=None):
        for cb in self.callbacks:
            cb.on_test_batch_end(batch, logs)

    def on_predict_begin(self, logs=None):
        for cb in self.callbacks:
            cb.on_predict_begin(logs)

    def on_predict_end(self, logs=None):
        for cb in self.callbacks:
            cb.on_predict_end(logs)

    def on_predict_batch_begin(self, batch, logs=None):
        for cb in self.callbacks:
            cb.on_predict_batch_begin(batch, logs)

    def on_predict_batch_end(self, batch, logs=None):
        for cb in self.callbacks:
            cb.on_predict_batch_end(batch, logs)
