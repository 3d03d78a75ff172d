"""Save the model (or its weights) every epoch, or only when it improves."""
from ember.distributed import is_sharded
from ember.train.callbacks.monitor import MonitorCallback


class ModelCheckpoint(MonitorCallback):
    """Keras' ModelCheckpoint. `filepath` may hold format fields: "ckpt-{epoch:02d}-{val_loss:.3f}.ember".

    The file is an ember model file (`ember.load` reads it) whatever its extension;
    with `save_weights_only=True`, a safetensors file of the weights. Writes are atomic.
    """

    def __init__(self, filepath, monitor="val_loss", verbose=0, save_best_only=False, save_weights_only=False,
                 mode="auto"):
        super().__init__(monitor, mode)
        self.filepath = str(filepath)
        self.verbose = verbose
        self.save_best_only = save_best_only
        self.save_weights_only = save_weights_only

    def on_epoch_end(self, epoch, logs=None):
        main = self.trainer is None or self.trainer.strategy.is_main
        if not (main or is_sharded(self.model)):
            return  # an FSDP model's shards are gathered to rank 0 with every rank: all go on (they decide alike)
        logs = logs or {}
        path = self.filepath.format(epoch=epoch + 1, **logs)
        if self.save_best_only:
            value = self.current(logs)
            if value is None or not self.is_improvement(value, self.best):
                return
            if self.verbose and main:
                print(f"Epoch {epoch + 1}: {self.monitor} improved from {self.best} to {value:.5f}, saving to {path}")
            self.best = value
        if self.save_weights_only:
            self.model.save_weights(path)
        else:
            self.model.save(path)
