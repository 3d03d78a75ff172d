"""Keras' "Image classification from scratch", on ember: a folder of JPEGs to an exported model.

The recipe (keras.io/examples/vision/image_classification_from_scratch): read a folder of class
sub-folders with `image_dataset_from_directory`, augment with RandomFlip and RandomRotation inside
the model, Rescaling inside the model, a small CNN, fit with callbacks, then export with the
preprocessing inside, so the exported model takes raw 0-255 pixels.

Keras' example downloads the Cats vs Dogs photos; this one builds its folder from the two real
photos scikit-learn ships (crops of each, at random places and scales, as JPEGs): the classes are
"china" and "flower", the photo a crop comes from. Point it at your own folder instead:

    python examples/image_folder.py [FOLDER]         # EMBER_QUICK=1 for a fast run
"""
import os
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from PIL import Image

import ember
from ember import layers
from ember.callbacks import EarlyStopping, ModelCheckpoint

QUICK = os.environ.get("EMBER_QUICK") == "1"
OUT = Path(os.environ.get("EMBER_EXAMPLE_OUT", "out/examples")) / "image_folder"
IMAGE_SIZE = (64, 64) if QUICK else (128, 128)


def build_folder(root: Path, per_class: int) -> Path:
    """root/china/*.jpg and root/flower/*.jpg: crops of scikit-learn's two sample photos."""
    from sklearn.datasets import load_sample_images

    rng = np.random.default_rng(0)
    for name, photo in zip(("china", "flower"), load_sample_images().images):
        (root / name).mkdir(parents=True, exist_ok=True)
        for n in range(per_class):
            side = int(rng.integers(100, 400))
            top, left = rng.integers(photo.shape[0] - side), rng.integers(photo.shape[1] - side)
            crop = Image.fromarray(photo[top:top + side, left:left + side])
            crop.resize((int(side * rng.uniform(0.6, 1.2)),) * 2).save(root / name / f"{n:04d}.jpg", quality=90)
    return root


def make_model(input_shape, num_classes):
    """Keras' make_model, smaller: augmentation and Rescaling first, then a small CNN."""
    inputs = ember.Input(shape=input_shape)
    x = layers.RandomFlip("horizontal")(inputs)  # training only: at inference these pass images through
    x = layers.RandomRotation(0.1)(x)
    x = layers.Rescaling(1.0 / 255)(x)
    for filters in (16, 32, 64):
        x = layers.Conv2D(filters, 3, strides=2, padding="same")(x)
        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.25)(x)
    outputs = layers.Dense(1 if num_classes == 2 else num_classes)(x)
    return ember.Model(inputs, outputs)


def main():
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else build_folder(OUT / "photos", 40 if QUICK else 300)
    train, val = ember.data.image_dataset_from_directory(
        folder, validation_split=0.2, subset="both", seed=1337, image_size=IMAGE_SIZE, batch_size=32,
        label_mode="binary", cache=True)
    print("classes:", train.class_names)

    ember.seed(1337)
    model = make_model((3, *IMAGE_SIZE), num_classes=len(train.class_names))
    model.summary()
    model.compile("adam", lr=3e-4, loss="binary_crossentropy", from_logits=True, metrics=["accuracy"])
    history = model.fit(
        train, epochs=2 if QUICK else 15, validation_data=val,
        callbacks=[ModelCheckpoint(str(OUT / "save_at_{epoch}.ember")), EarlyStopping(patience=4)])
    print("validation accuracy:", history.history["val_accuracy"][-1])

    # The exported model takes raw pixels (0-255): augmentation is gone, Rescaling is inside.
    images, _ = next(iter(val))
    raw = images.float()
    report = model.export(OUT / "export", format="onnx", example=raw[:2], held_out=raw)
    print(report)
    session = ort.InferenceSession(str(OUT / "export" / "model.onnx"))
    logits = session.run(None, {session.get_inputs()[0].name: raw.numpy()})[0]
    with torch.inference_mode():
        eager = model.eval()(raw).numpy()
    assert np.abs(logits - eager).max() < 1e-3, "the ONNX model must compute what the model does at inference"
    predicted = [train.class_names[int(p > 0)] for p in logits[:5, 0]]
    print("first validation images predicted as:", predicted)


if __name__ == "__main__":
    main()
