"""Stop training as soon as a batch loss is NaN or infinite (reads the loss every batch)."""
import math

from ember.train.callbacks.base import Callback


class TerminateOnNaN(Callback):
    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and (math.isnan(loss) or math.isinf(loss)):
            print(f"Batch {batch}: invalid loss, terminating training")
            self.model.stop_training = True
