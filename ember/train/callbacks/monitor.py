"""`MonitorCallback`: the mode / min_delta / best-value logic shared by EarlyStopping,
ReduceLROnPlateau and ModelCheckpoint (as Keras' monitor_callback.py)."""
import math
import warnings

from ember.train.callbacks.base import Callback


class MonitorCallback(Callback):
    def __init__(self, monitor="val_loss", mode="auto", min_delta=0.0, baseline=None):
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
        self.monitor = monitor
        if mode == "auto":
            mode = "max" if any(k in monitor for k in ("acc", "auc", "precision", "recall", "f1")) else "min"
        self.mode = mode
        self.min_delta = abs(min_delta)
        self.baseline = baseline
        self.best = None

    def is_improvement(self, value, reference):
        if reference is None:
            return True
        if self.mode == "min":
            return value < reference - self.min_delta
        return value > reference + self.min_delta

    def current(self, logs):
        value = (logs or {}).get(self.monitor)
        if value is None:
            warnings.warn(f"{type(self).__name__} monitors {self.monitor!r}, which is not in the logs "
                          f"(available: {', '.join(logs or {}) or 'none'})", RuntimeWarning, stacklevel=3)
            return None
        return None if math.isnan(value) else value

    def state_dict(self):
        return {"best": self.best}

    def load_state_dict(self, state):
        self.best = state.get("best")
