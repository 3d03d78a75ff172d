"""What BackupAndRestore costs at its default frequency (one backup per epoch), as a percentage
of epoch time. Goal: <= 2%.

The seed's ConvNet (421,642 parameters, AdamW: a backup holds the weights and two moment
buffers, ~5 MB) trains on the 28x28 digits (1,437 images, 23 batches of 64 per epoch, a short
epoch, so the backup's share is large). Two numbers:
- the time spent inside the callback's hooks (exact, timed around each backup) over the epoch time;
- fit() with and without the callback, alternating round by round (noisy on a shared machine).

    python benchmarks/backup_overhead.py [--rounds 2] [--epochs 2]     (EMBER_QUICK=1: 1 round, 1 epoch)
"""
import argparse
import os
import statistics
import tempfile
import time

import ember
from ember.callbacks import BackupAndRestore
from ember.datasets import load_digits
from ember.demo import ConvNet
from ember.train.hardware import describe_machine
from timing import EpochTimer


class TimedBackup(BackupAndRestore):
    """BackupAndRestore that records how long each backup takes (state gathering, serialising,
    writing, fsync, rename, rotation)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seconds = []

    def _backup(self, *args, **kwargs):
        start = time.perf_counter()
        super()._backup(*args, **kwargs)
        self.seconds.append(time.perf_counter() - start)


def fit_once(x, y, epochs, backup_dir=None):
    ember.seed(0)
    model = ConvNet()
    model.compile("adamw", "cross_entropy", ["accuracy"], lr=1e-3, clip_grad_norm=1.0)
    timer = EpochTimer()
    callbacks = [timer]
    backup = None
    if backup_dir is not None:
        backup = TimedBackup(backup_dir, delete_checkpoint=False)  # default save_freq="epoch", keep=2
        callbacks.append(backup)
    start = time.perf_counter()
    model.fit(x, y, batch_size=64, epochs=epochs, verbose=0, callbacks=callbacks)
    return time.perf_counter() - start, timer.seconds, backup.seconds if backup else []


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    quick = os.environ.get("EMBER_QUICK") == "1"
    parser.add_argument("--rounds", type=int, default=1 if quick else 2)
    parser.add_argument("--epochs", type=int, default=1 if quick else 2)
    args = parser.parse_args()
    print(describe_machine())
    (x, y), _ = load_digits()
    fit_once(x[:256], y[:256], 1)  # warm-up
    plain, backed, epoch_seconds, backup_seconds = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            total, epochs, _ = fit_once(x, y, args.epochs)
            plain.append(total)
            epoch_seconds += epochs
            total, _, backups = fit_once(x, y, args.epochs, os.path.join(tmp, f"backup-{round_}"))
            backed.append(total)
            backup_seconds += backups
        size = max(os.path.getsize(os.path.join(tmp, "backup-0", name)) for name in os.listdir(tmp + "/backup-0"))
    epoch = statistics.median(epoch_seconds)
    backup = statistics.median(backup_seconds)
    print(f"epoch (23 batches of 64): {epoch * 1000:.0f} ms median over {len(epoch_seconds)} epochs")
    print(f"one backup: {backup * 1000:.1f} ms median over {len(backup_seconds)} backups of {size / 1e6:.1f} MB")
    print(f"overhead at save_freq='epoch': {100 * backup / epoch:.2f}% of epoch time (goal <= 2%)")
    a, b = statistics.median(plain), statistics.median(backed)
    print(f"fit() wall, {args.epochs} epochs: {a:.2f}s without, {b:.2f}s with BackupAndRestore "
          f"({100 * (b - a) / a:+.1f}%, noisy on a shared machine)")


if __name__ == "__main__":
    main()
