"""Write the epoch logs to a CSV file (rewritten atomically each epoch)."""
import csv
import io
import os

from ember.io import atomic_write_text
from ember.train.callbacks.base import Callback


class CSVLogger(Callback):
    def __init__(self, filename, separator=",", append=False):
        self.filename, self.separator, self.append = str(filename), separator, append
        self.rows = []
        self.keys = None

    def on_train_begin(self, logs=None):
        self.rows, self.keys = [], None
        if self.append and os.path.exists(self.filename):
            with open(self.filename, newline="") as f:
                reader = csv.DictReader(f, delimiter=self.separator)
                self.rows = list(reader)
                self.keys = [k for k in (reader.fieldnames or []) if k != "epoch"] or None

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        if self.keys is None:
            self.keys = sorted(logs)
        self.rows.append({"epoch": epoch, **{k: logs.get(k, "NA") for k in self.keys}})
        if self.trainer is not None and not self.trainer.strategy.is_main:
            return
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=["epoch"] + self.keys, delimiter=self.separator,
                                extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_text(self.filename, out.getvalue())

    def state_dict(self):
        return {"rows": self.rows, "keys": self.keys}

    def load_state_dict(self, state):
        self.rows, self.keys = state["rows"], state["keys"]
