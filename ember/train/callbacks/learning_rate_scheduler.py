"""Set the learning rate at the start of each epoch from `schedule(epoch, lr) -> lr`."""
from ember.train.callbacks.base import Callback


class LearningRateScheduler(Callback):
    def __init__(self, schedule, verbose=0):
        self.schedule, self.verbose = schedule, verbose

    def on_epoch_begin(self, epoch, logs=None):
        groups = self.model.optimizer.param_groups
        lr = float(self.schedule(epoch, groups[0]["lr"]))
        for group in groups:
            group["lr"] = lr
        if self.verbose:
            print(f"Epoch {epoch + 1}: LearningRateScheduler setting learning rate to {lr:.4g}.")
