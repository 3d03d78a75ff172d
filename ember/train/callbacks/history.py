"""`History`: what fit() returns; `.history` maps each logged name to per-epoch values."""
from ember.train.callbacks.base import Callback


class History(Callback):
    def __init__(self):
        self.epoch = []
        self.history = {}

    def on_train_begin(self, logs=None):
        # Keep previous epochs when fit() is called again with initial_epoch.
        pass

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)

    def state_dict(self):
        return {"epoch": self.epoch, "history": self.history}

    def load_state_dict(self, state):
        self.epoch = list(state["epoch"])
        self.history = {k: list(v) for k, v in state["history"].items()}

    def plot(self, path, keys=None):
        """Write a PNG of the curves: one panel per quantity, train and val_ together."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from ember.io import atomic_write

        names = keys or [k for k in self.history if not k.startswith("val_")]
        fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.5), squeeze=False)
        epochs = [e + 1 for e in self.epoch]
        for ax, name in zip(axes[0], names):
            ax.plot(epochs, self.history[name], marker="o", label=name)
            if f"val_{name}" in self.history:
                ax.plot(epochs, self.history[f"val_{name}"], marker="o", label=f"val_{name}")
            ax.set_xlabel("epoch")
            ax.set_title(name)
            ax.legend()
        fig.tight_layout()
        with atomic_write(path, "wb") as f:
            fig.savefig(f, format="png", dpi=100)
        plt.close(fig)
        return path
