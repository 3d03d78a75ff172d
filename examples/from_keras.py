"""Move over from Keras: a model trained with Keras, continued in PyTorch with ember.

1. A child process trains the seed's Keras ConvNet on handwritten digits with Keras 3 (torch
   backend, no TensorFlow) and saves `convnet.keras` plus Keras' own predictions.
2. This process, which never imports Keras, loads the file with `ember.from_keras`, checks it
   against Keras' predictions, fine-tunes it with `fit`, and exports it to ONNX.

    python examples/from_keras.py                 # EMBER_QUICK=1 for a fast run
"""
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

QUICK = os.environ.get("EMBER_QUICK") == "1"


def train_with_keras(folder: Path, epochs: int) -> None:
    """The Keras side, as a team would have it (runs in the child process)."""
    os.environ["KERAS_BACKEND"] = "torch"
    import keras
    from keras import layers

    from ember.datasets import load_digits

    (x_train, y_train), (x_val, _) = load_digits(channels_last=True)
    model = keras.Sequential([
        keras.Input((28, 28, 1)),
        layers.Conv2D(32, (3, 3), activation="relu", padding="same"),
        layers.MaxPooling2D((2, 2)),
        layers.Conv2D(64, (3, 3), activation="relu", padding="same"),
        layers.MaxPooling2D((2, 2)),
        layers.Dropout(0.25),
        layers.Flatten(),
        layers.Dense(128, activation="relu"),
        layers.Dropout(0.25),
        layers.Dense(10, activation="softmax"),
    ])
    model.compile(keras.optimizers.AdamW(1e-3, weight_decay=1e-4), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=epochs, batch_size=64, verbose=0)
    model.save(folder / "convnet.keras")
    np.save(folder / "keras_predictions.npy", model.predict(x_val, verbose=0))


def main(folder: Path) -> None:
    subprocess.run([sys.executable, __file__, "--keras", str(folder), "1" if QUICK else "3"], check=True)
    for name in ("keras", "tensorflow"):  # prove the loading needs neither
        sys.modules[name] = None
    import ember
    from ember.datasets import load_digits

    (x_train, y_train), (x_val, y_val) = load_digits(channels_last=True)
    model = ember.from_keras(folder / "convnet.keras")  # takes NHWC, like the Keras model
    difference = np.abs(model.predict(x_val) - np.load(folder / "keras_predictions.npy")).max()
    print(f"loaded {type(model).__name__} ({model.count_params():,} parameters); "
          f"max |ember - keras| = {difference:.2e}")
    assert difference <= 1e-5

    model.compile("adamw", "sparse_categorical_crossentropy", metrics=["accuracy"], lr=3e-4)
    model.fit(x_train, y_train, epochs=1, batch_size=64, verbose=0 if QUICK else 1)
    print("fine-tuned in PyTorch:", model.evaluate(x_val, y_val, verbose=0))

    if hasattr(model, "export"):
        report = model.export(folder / "export", format="onnx", example=x_val[:8])
        print("exported:", report)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--keras":
        train_with_keras(Path(sys.argv[2]), int(sys.argv[3]))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            main(Path(tmp))
