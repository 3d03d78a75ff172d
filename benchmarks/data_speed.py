"""Images from disk: ember.data vs an ImageFolder + DataLoader + the seed's loop, side by side in one run.

A folder of real-photo JPEGs (crops and scales of scikit-learn's two photos, testing/image_folders.py),
a small ResNet at --size x --size, batch 64. Printed, each as a ratio to its anchor measured here:
- decode throughput (images/s, no model): ember's pipeline vs torchvision's ImageFolder recipe with
  DataLoader(num_workers=2);
- first epoch (samples/s): ember's fit on image_dataset_from_directory(cache=True) vs the seed's loop
  over the ImageFolder loader; goal >= 1.5x;
- cached epochs (samples/s): the same ember fit's later epochs vs ember's fit on the same images held
  in memory as uint8 arrays; goal >= 0.9x;
- where each run's time goes: inside the training steps vs waiting for data (and loop overhead).

torchvision's wheel on PyPI is linked against CUDA torch and does not import beside the CPU torch
build, so the baseline is its recipe written out: `ImageFolder` (sorted class folders, PIL open,
convert("RGB")) + `Resize((size, size))` (PIL bilinear) + `ToTensor()` (float CHW / 255).

    python benchmarks/data_speed.py [--images 2000] [--size 64] [--epochs 3] [--folder DIR]
"""
import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ember  # noqa: E402
from ember.callbacks import Callback  # noqa: E402
from ember.data import image_dataset_from_directory  # noqa: E402
from ember.train.hardware import describe_machine  # noqa: E402
from testing.image_folders import make_image_folder  # noqa: E402

BATCH = 64
CLASSES = ("bird", "cat", "dog", "fish")


class Block(nn.Module):
    def __init__(self, channels_in, channels_out, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(channels_in, channels_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels_out)
        self.conv2 = nn.Conv2d(channels_out, channels_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels_out)
        self.shortcut = nn.Sequential() if stride == 1 and channels_in == channels_out else nn.Sequential(
            nn.Conv2d(channels_in, channels_out, 1, stride, bias=False), nn.BatchNorm2d(channels_out))

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


class SmallResNet(ember.Model):
    """Inputs are 0-255 (ember yields uint8, the baseline's ToTensor gives 0-1: `scale` says which)."""

    def __init__(self, scale, classes=len(CLASSES)):
        super().__init__()
        self.scale = scale
        self.stem = nn.Sequential(nn.Conv2d(3, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU())
        self.blocks = nn.Sequential(Block(32, 32, 1), Block(32, 64, 2), Block(64, 128, 2))
        self.head = nn.Linear(128, classes)

    def forward(self, x):
        x = self.blocks(self.stem(x * self.scale))
        return self.head(x.mean((2, 3)))


class ImageFolderRecipe(Dataset):
    """torchvision.datasets.ImageFolder + transforms.Resize((size, size)) + transforms.ToTensor(), written out."""

    def __init__(self, root, size):
        classes = sorted(p.name for p in Path(root).iterdir() if p.is_dir())
        self.samples = [(str(f), i) for i, c in enumerate(classes) for f in sorted((Path(root) / c).iterdir())]
        self.size = size

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, index):
        path, label = self.samples[index]
        with open(path, "rb") as file:
            image = Image.open(file).convert("RGB")
        image = image.resize((self.size, self.size), Image.Resampling.BILINEAR)
        tensor = torch.from_numpy(np.asarray(image, np.uint8).copy()).permute(2, 0, 1).float().div(255)
        return tensor, label


def baseline_loader(folder, size):
    return DataLoader(ImageFolderRecipe(folder, size), batch_size=BATCH, shuffle=True, num_workers=2,
                      persistent_workers=False)


def decode_rate(batches) -> float:
    start, count = time.perf_counter(), 0
    for batch in batches:
        count += len(batch[0])
    return count / (time.perf_counter() - start)


def seed_loop_epoch(folder, size):
    """The seed's loop over the ImageFolder loader for one epoch: (samples/s, seconds in steps, seconds waiting)."""
    model = SmallResNet(scale=1.0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    criterion = nn.CrossEntropyLoss()
    model.train()
    count, in_steps, start = 0, 0.0, time.perf_counter()
    for data, targets in baseline_loader(folder, size):
        begin = time.perf_counter()
        optimizer.zero_grad()
        loss = criterion(model(data), targets)
        loss.backward()
        optimizer.step()
        loss.item()
        in_steps += time.perf_counter() - begin
        count += len(data)
    total = time.perf_counter() - start
    return count / total, in_steps, total - in_steps


class StepTimes(Callback):
    """Per epoch: wall seconds and seconds inside training steps (batch begin -> end)."""

    def __init__(self):
        self.epochs = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start, self._in_steps = time.perf_counter(), 0.0

    def on_train_batch_begin(self, batch, logs=None):
        self._begin = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self._in_steps += time.perf_counter() - self._begin

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append((time.perf_counter() - self._start, self._in_steps))


def ember_fit(data, epochs, count, **fit_options):
    model = SmallResNet(scale=1 / 255)
    model.compile("adamw", "cross_entropy", lr=1e-3)
    times = StepTimes()
    model.fit(data, epochs=epochs, verbose=0, callbacks=[times], **fit_options)
    return [(count / seconds, in_steps, seconds - in_steps) for seconds, in_steps in times.epochs]


def row(name, rate, anchor, in_steps=None, waiting=None, goal=""):
    split = f"  steps {in_steps:6.2f} s, waiting {waiting:6.2f} s" if in_steps is not None else ""
    print(f"{name:<58} {rate:8.0f}/s  {rate / anchor:5.2f}x{split}{goal}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--folder", help="reuse (or create) the JPEG folder here")
    args = parser.parse_args()
    print(describe_machine())
    folder = Path(args.folder or tempfile.mkdtemp(prefix="ember-data-speed-"))
    if not any(folder.glob("*/*.jpg")):
        make_image_folder(folder, classes=CLASSES, per_class=args.images // len(CLASSES), suffixes=(".jpg",),
                          min_side=160, max_side=427)
    files = sorted(folder.glob("*/*.jpg"))
    mean_kb = np.mean([f.stat().st_size for f in files]) / 1024
    print(f"{len(files)} JPEGs in {folder} (mean {mean_kb:.0f} KB), {args.size}x{args.size}, batch {BATCH}, "
          f"{os.cpu_count()} cores\n")
    size = (args.size, args.size)

    def dataset(**options):
        return image_dataset_from_directory(folder, image_size=size, batch_size=BATCH, seed=0, verbose=False,
                                            **options)

    print("decode (no model)")
    anchor = decode_rate(baseline_loader(folder, args.size))
    row("ImageFolder recipe + DataLoader(num_workers=2)", anchor, anchor)
    row("ember image_dataset_from_directory", decode_rate(dataset()), anchor)

    print("\nfirst epoch, training")
    anchor, in_steps, waiting = seed_loop_epoch(folder, args.size)
    row("seed's loop over ImageFolder + DataLoader(num_workers=2)", anchor, anchor, in_steps, waiting)
    epochs = ember_fit(dataset(cache=True), args.epochs, len(files))
    row("ember fit, image_dataset_from_directory(cache=True)", epochs[0][0], anchor, *epochs[0][1:],
        "   goal >= 1.5x")

    print(f"\nlater epochs (2..{args.epochs}), training")
    images = np.concatenate([x.numpy() for x, _ in dataset(shuffle=False, workers=0)])
    labels = np.concatenate([y.numpy() for _, y in dataset(shuffle=False, workers=0)]).astype(np.int64)
    in_memory = ember_fit(images, args.epochs, len(files), y=labels, batch_size=BATCH, shuffle=True)
    anchor = np.median([rate for rate, *_ in in_memory[1:]])
    row("ember fit, the same images as in-memory uint8 arrays", anchor, anchor,
        *np.sum([e[1:] for e in in_memory[1:]], 0))
    cached = np.median([rate for rate, *_ in epochs[1:]])
    row("ember fit, image_dataset_from_directory(cache=True)", cached, anchor, *np.sum([e[1:] for e in epochs[1:]], 0),
        "   goal >= 0.9x")


if __name__ == "__main__":
    main()
