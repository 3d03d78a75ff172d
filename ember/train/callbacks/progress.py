"""Keras-like progress bar. It reads the running logs (a device sync) only when it redraws."""
import sys
import time

from ember.train.callbacks.base import Callback


class ProgressBar(Callback):
    """One line per epoch in fit, one line per evaluate/predict call; fit's validation draws none (as Keras)."""

    def __init__(self, verbose=1, refresh_seconds=0.25, stream=None):
        self.verbose = verbose
        self.refresh_seconds = refresh_seconds
        self.stream = stream or sys.stdout
        self.interactive = verbose == 1 and getattr(self.stream, "isatty", lambda: False)()
        self.in_fit = False

    def on_train_begin(self, logs=None):
        self.in_fit = True

    def on_train_end(self, logs=None):
        self.in_fit = False

    def on_epoch_begin(self, epoch, logs=None):
        self._begin(f"Epoch {epoch + 1}/{self.params.get('epochs')}\n")

    def on_train_batch_end(self, batch, logs=None):
        self._redraw(batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        self._finish(logs)

    def on_test_begin(self, logs=None):
        if not self.in_fit:
            self._begin("")

    def on_test_batch_end(self, batch, logs=None):
        if not self.in_fit:
            self._redraw(batch, logs)

    def on_test_end(self, logs=None):
        if not self.in_fit:
            self._finish(logs)

    def on_predict_begin(self, logs=None):
        self._begin("")

    def on_predict_batch_end(self, batch, logs=None):
        self._redraw(batch, None)

    def on_predict_end(self, logs=None):
        self._finish(None)

    def _begin(self, header):
        self.start = self.last_draw = time.perf_counter()
        self.steps, self.done = self.params.get("steps"), 0
        if self.verbose and header:
            self._write(header)

    def _redraw(self, batch, logs):
        self.done = batch + 1
        now = time.perf_counter()
        if self.interactive and now - self.last_draw >= self.refresh_seconds:
            self.last_draw = now
            self._write("\r" + self._line(self.done, now, logs))

    def _finish(self, logs):
        if self.verbose:
            now = time.perf_counter()
            prefix = "\r" if self.interactive else ""
            self._write(prefix + self._line(self.steps or self.done, now, logs, final=True) + "\n")

    def _line(self, done, now, logs, final=False):
        elapsed = now - self.start
        if self.steps:
            width = 30
            filled = int(width * done / self.steps)
            bar = "=" * max(filled - 1, 0) + (">" if filled < width else "=") + "." * (width - filled)
            head = f"{done}/{self.steps} [{bar}]"
        else:
            head = f"{done} steps"
        if final:
            timing = f"{elapsed:.1f}s {1000 * elapsed / max(done, 1):.0f}ms/step"
        else:
            eta = elapsed / max(done, 1) * ((self.steps or done) - done)
            timing = f"ETA: {eta:.0f}s"
        values = " - ".join(f"{k}: {_fmt(v)}" for k, v in (logs or {}).items())
        return f"{head} - {timing}" + (f" - {values}" if values else "")

    def _write(self, text):
        self.stream.write(text)
        self.stream.flush()


def _fmt(value):
    return f"{value:.4f}" if isinstance(value, float) and abs(value) >= 1e-3 or value == 0 else f"{value:.4e}" \
        if isinstance(value, float) else str(value)
