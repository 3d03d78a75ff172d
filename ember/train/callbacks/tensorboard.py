"""Write epoch logs as TensorBoard event files (torch.utils.tensorboard; no TensorFlow needed)."""
from ember.train.callbacks.base import Callback


class TensorBoard(Callback):
    def __init__(self, log_dir="logs", update_freq="epoch"):
        self.log_dir, self.update_freq = str(log_dir), update_freq
        self.writer = None

    def on_train_begin(self, logs=None):
        if self.trainer is not None and not self.trainer.strategy.is_main:
            return
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(self.log_dir)

    def on_train_batch_end(self, batch, logs=None):
        if self.writer is not None and isinstance(self.update_freq, int) and batch % self.update_freq == 0:
            for key, value in (logs or {}).items():
                self.writer.add_scalar(f"batch/{key}", value, self.trainer.state.global_step)

    def on_epoch_end(self, epoch, logs=None):
        if self.writer is None:
            return
        for key, value in (logs or {}).items():
            split = "validation" if key.startswith("val_") else "train"
            self.writer.add_scalar(f"{split}/{key.removeprefix('val_')}", value, epoch)
        self.writer.flush()

    def on_train_end(self, logs=None):
        if self.writer is not None:
            self.writer.close()
            self.writer = None
