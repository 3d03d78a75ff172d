"""Helpers shared by the benchmarks."""
import time

from ember.callbacks import Callback


class EpochTimer(Callback):
    """Records each epoch's wall-clock seconds."""

    def __init__(self):
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)
