"""Never lose a run: kill this script at any moment (Ctrl-C, `kill -9`, a preempted machine) and run
it again; it continues from its last backup and ends with exactly the weights of a run that was
never interrupted.

    python examples/resume.py            # kill it, run it again, repeat until it finishes
    EMBER_QUICK=1 python examples/resume.py

Backups go to out/resume-backup every 10 batches (and are deleted once fit() returns, as Keras
does); the final weights go to out/resume-final.safetensors.
"""
import os
from pathlib import Path

import ember
from ember.callbacks import BackupAndRestore, CSVLogger, EarlyStopping, ReduceLROnPlateau
from ember.datasets import load_digits
from ember.demo import ConvNet


def main(out_dir=None):
    quick = os.environ.get("EMBER_QUICK") == "1"
    out = Path(out_dir or os.environ.get("EMBER_EXAMPLE_OUT", "out"))
    (x, y), (val_x, val_y) = load_digits()
    if quick:
        x, y, val_x, val_y = x[:256], y[:256], val_x[:64], val_y[:64]

    ember.seed(0)  # with the seed, a resumed run is bit-identical to an uninterrupted one
    model = ConvNet()
    model.compile("adamw", "cross_entropy", ["accuracy"], lr=1e-3, weight_decay=1e-4,
                  lr_schedule="cosine")
    history = model.fit(
        x, y,
        validation_data=(val_x, val_y),
        epochs=2 if quick else 10,
        batch_size=64,
        callbacks=[
            EarlyStopping(patience=5, restore_best_weights=True),  # its counters and best weights are backed up
            ReduceLROnPlateau(factor=0.5, patience=2),
            CSVLogger(out / "resume-log.csv"),
            # Every 10 batches (2 in quick mode); fit(..., resume=dir) alone backs up once per epoch.
            BackupAndRestore(out / "resume-backup", save_freq=2 if quick else 10),
        ],
    )
    model.save_weights(out / "resume-final.safetensors")
    print(f"done: {len(history.epoch)} epochs, val_accuracy {history.history['val_accuracy'][-1]:.4f}; "
          f"weights in {out / 'resume-final.safetensors'}")
    return model, history


if __name__ == "__main__":
    main()
