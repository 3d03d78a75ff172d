"""Training throughput (samples/s) of the same fit() on 1 process and on 2 processes
(DDP and FSDP2, started with `ember launch -n 2`), same global batch.

The model is an MLP with 4 repeated residual blocks (~1.1 M parameters) on synthetic data;
the global batch is 256. On a 2-core CPU expect little gain: both processes share the
cores and gloo all-reduces over loopback. The script exists for GPU machines, where each
process gets its own GPU.

    python benchmarks/distributed.py [--epochs 3]     (EMBER_QUICK=1: 2 short epochs)
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

import ember
from ember.train.hardware import describe_machine
from timing import EpochTimer

QUICK = os.environ.get("EMBER_QUICK") == "1"
SAMPLES = 2048 if QUICK else 16384
BATCH = 256


class Block(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.up, self.down = nn.Linear(width, 2 * width), nn.Linear(2 * width, width)

    def forward(self, x):
        return x + self.down(torch.relu(self.up(x)))


class ResidualMLP(ember.Model):
    def __init__(self, features=64, width=256, classes=10, depth=4):
        super().__init__()
        self.stem = nn.Linear(features, width)
        self.blocks = nn.Sequential(*[Block(width) for _ in range(depth)])
        self.head = nn.Linear(width, classes)

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)))


def samples_per_second(strategy, epochs):
    """Fit for `epochs` and return the best epoch's samples/s (the first epoch warms up)."""
    ember.seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(SAMPLES, 64)).astype("float32")
    y = rng.integers(0, 10, SAMPLES)
    model = ResidualMLP()
    model.compile("adamw", loss="cross_entropy", lr=1e-3, precision="fp32")
    timer = EpochTimer()
    model.fit(x, y, batch_size=BATCH, epochs=epochs, verbose=0, strategy=strategy, callbacks=[timer])
    return SAMPLES / min(timer.seconds[1:] or timer.seconds)


def launch_two(strategy, epochs):
    with tempfile.TemporaryDirectory() as out:
        result = Path(out) / "result.json"
        job = subprocess.run([sys.executable, "-m", "ember.cli", "launch", "-n", "2", __file__,
                              "--worker", strategy, "--epochs", str(epochs), "--out", str(result)],
                             capture_output=True, text=True)
        if job.returncode != 0:
            raise RuntimeError(f"the 2-process {strategy} run failed:\n{job.stderr[-3000:]}")
        return json.loads(result.read_text())["samples_per_second"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2 if QUICK else 3)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:  # one rank of a 2-process run
        rate = samples_per_second(args.worker, args.epochs)
        if int(os.environ["RANK"]) == 0:
            Path(args.out).write_text(json.dumps({"samples_per_second": rate}))
        return
    print(describe_machine())
    params = sum(p.numel() for p in ResidualMLP().parameters())
    print(f"ResidualMLP ({params:,} parameters), {SAMPLES} samples, global batch {BATCH}, fp32, "
          f"best of {args.epochs} epochs")
    one = samples_per_second(None, args.epochs)
    print(f"1 process ({torch.get_num_threads()} threads): {one:,.0f} samples/s")
    for strategy in ("ddp", "fsdp"):
        two = launch_two(strategy, args.epochs)
        print(f"2 processes, {strategy} (1 thread each): {two:,.0f} samples/s ({two / one:.2f}x)")


if __name__ == "__main__":
    main()
