"""`ember demo`: the seed's ConvNet on real handwritten digits, end to end."""
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import ember
from ember.callbacks import EarlyStopping, ModelCheckpoint, ReduceLROnPlateau
from ember.datasets import load_digits
from ember.deploy.report import print_table


class ConvNet(ember.Model):
    """The seed's PyTorch ConvNet, unchanged but for its base class."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3, padding=1)
        self.pool = nn.MaxPool2d(2, 2)
        self.dropout = nn.Dropout(0.25)
        self.fc1 = nn.Linear(64 * 7 * 7, 128)
        self.fc2 = nn.Linear(128, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = self.dropout(x)
        x = x.flatten(1)  # the seed's x.view(x.size(0), -1), which channels_last activations refuse
        x = F.relu(self.fc1(x))
        x = self.dropout(x)
        return self.fc2(x)


BATCH_SIZE = 32


def compile_recipe(model, **options):
    """The demo's optimizer, loss and clipping; benchmarks/demo_accuracy.py passes other `options`."""
    model.compile(torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4),
                  loss="cross_entropy", metrics=["accuracy"], clip_grad_norm=1.0, **options)


def recipe_callbacks():
    return [EarlyStopping(monitor="val_accuracy", patience=5, restore_best_weights=True),
            ReduceLROnPlateau(factor=0.5, patience=3)]


def add_arguments(parser):
    parser.add_argument("--out", default="out/demo", help="folder for the checkpoint, curves and exports")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="one short epoch (also EMBER_QUICK=1)")


def run(args) -> int:
    quick = args.quick or os.environ.get("EMBER_QUICK") == "1"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ember.seed(0)
    (x_train, y_train), (x_val, y_val) = load_digits()
    if quick:
        x_train, y_train = x_train[:256], y_train[:256]
    print(f"digits: {len(x_train)} training and {len(x_val)} validation images, 28x28")

    model = ConvNet(num_classes=10)
    model.summary(input_shape=(1, 28, 28))
    compile_recipe(model)
    callbacks = recipe_callbacks() + [
        ModelCheckpoint(out / "best_model.ember", monitor="val_accuracy", save_best_only=True)]
    started = time.perf_counter()
    history = model.fit(x_train, y_train, validation_data=(x_val, y_val), epochs=1 if quick else args.epochs,
                        batch_size=BATCH_SIZE, callbacks=callbacks, verbose=1)
    seconds = time.perf_counter() - started
    results = model.evaluate(x_val, y_val)
    history.plot(out / "curves.png")
    print(f"validation: loss {results['loss']:.4f}, accuracy {results['accuracy']:.2%} "
          f"({len(history.epoch)} epochs, {seconds:.1f}s); curves: {out / 'curves.png'}")

    # Every deployment format, each checked against the eager model on the validation images.
    calibration = x_train[np.random.default_rng(0).permutation(len(x_train))[:256]]
    reports = model.export(out / "export", format="all", example=torch.from_numpy(x_train[:2]),
                           calibration_data=calibration, held_out=(x_val, y_val))
    print(f"exported to {out / 'export'}:")
    print_table(reports)
    return 0
