"""Seed block "TensorFlow/Keras — high-level API": compile / fit with the seed's three callbacks,
on the Keras-style ConvNet, with Keras' loss and metric names."""
import os
import tempfile
from pathlib import Path

import ember
from ember.datasets import load_digits
from define_keras import build_convnet


def main(epochs=50, out_dir=None):
    out_dir = Path(out_dir or tempfile.mkdtemp(prefix="ember-fit-"))
    (train_x, train_y), (val_x, val_y) = load_digits(channels_last=True)  # NHWC, as Keras takes it
    ember.seed(0)
    model = build_convnet(num_classes=10)
    model.compile(
        optimizer="adamw", learning_rate=1e-3, weight_decay=1e-4,
        loss='sparse_categorical_crossentropy',
        metrics=['accuracy'],
    )
    callbacks = [
        ember.callbacks.EarlyStopping(patience=5, restore_best_weights=True),
        ember.callbacks.ReduceLROnPlateau(factor=0.5, patience=3),
        ember.callbacks.ModelCheckpoint(str(out_dir / 'best_model.keras'), save_best_only=True),
    ]
    history = model.fit(
        train_x, train_y,
        validation_data=(val_x, val_y),
        epochs=epochs,
        batch_size=32,
        callbacks=callbacks,
        verbose=1,
    )
    results = model.evaluate(val_x, val_y)
    print(f"validation accuracy {results['accuracy']:.4f} after {len(history.epoch)} epochs; "
          f"best checkpoint: {out_dir / 'best_model.keras'}")
    return model, history, results


if __name__ == "__main__":
    main(epochs=1 if os.environ.get("EMBER_QUICK") == "1" else 50)
