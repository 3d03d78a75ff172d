"""Stop when a monitored quantity stops improving."""

from ember.distributed import is_sharded
from ember.train.callbacks.monitor import MonitorCallback


class EarlyStopping(MonitorCallback):
    """Keras' EarlyStopping.

    Args:
        monitor: the logged quantity to watch, e.g. "val_loss" or "val_accuracy".
        min_delta: a smaller change does not count as an improvement.
        patience: epochs without improvement after which training stops.
        mode: "min", "max" or "auto" (from the name).
        baseline: training stops if the quantity does not beat it within `patience` epochs.
        restore_best_weights: at the end of training (stopped early or not), load the
            weights of the best epoch, as Keras 3 does.
        start_from_epoch: epochs to wait before counting.
    """

    def __init__(self, monitor="val_loss", min_delta=0.0, patience=0, verbose=0, mode="auto", baseline=None,
                 restore_best_weights=False, start_from_epoch=0):
        super().__init__(monitor, mode, min_delta, baseline)
        self.patience, self.verbose = patience, verbose
        self.restore_best_weights = restore_best_weights
        self.start_from_epoch = start_from_epoch
        self.wait = 0
        self.stopped_epoch = 0
        self.best_epoch = 0
        self.best_weights = None

    def on_train_begin(self, logs=None):
        self.wait, self.stopped_epoch, self.best_epoch = 0, 0, 0
        self.best, self.best_weights = self.baseline, None

    def on_epoch_end(self, epoch, logs=None):
        value = self.current(logs)
        if value is None or epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = self._copy_weights()  # something to restore even with a baseline
        self.wait += 1
        if self.is_improvement(value, self.best):
            self.best, self.best_epoch = value, epoch
            if self.restore_best_weights:
                self.best_weights = self._copy_weights()
            if self.baseline is None or self.is_improvement(value, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch and self.verbose:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose:
                print(f"Restoring model weights from the end of the best epoch: {self.best_epoch + 1}.")
            if is_sharded(self.model):
                from ember.distributed import scatter_state_dict

                scatter_state_dict(self.model, self.best_weights)
            else:
                self.model.load_state_dict(self.best_weights)

    def _copy_weights(self):
        if is_sharded(self.model):
            # The full weights on rank 0 (every rank joins; they decide alike): what a backup, written
            # by rank 0, must hold. A copy of each rank's shard would be lost with the other ranks.
            from ember.distributed import gather_state_dict

            return gather_state_dict(self.model)
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def state_dict(self):
        return {"best": self.best, "wait": self.wait, "best_epoch": self.best_epoch,
                "stopped_epoch": self.stopped_epoch, "best_weights": self.best_weights}

    def load_state_dict(self, state):
        self.best, self.wait = state["best"], state["wait"]
        self.best_epoch, self.stopped_epoch = state["best_epoch"], state["stopped_epoch"]
        self.best_weights = state.get("best_weights")
