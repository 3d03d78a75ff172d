"""Training and inference throughput: ember fit against the seed's hand-written loop, Keras 3
(torch backend) and Lightning, on the seed's ConvNet, 28x28 digits, batch 64, AdamW, clipping 1.0.

All trainers run in this process, alternating round by round after a warm-up, so they share the
machine's state; the report is the median samples/s of each, its ratio to the seed loop, and its
fraction of the machine's matmul peak (measured here). Absolute numbers drift on shared machines;
ratios measured in one run do not.

    python benchmarks/train_speed.py [--rounds 3] [--steps 60]
"""
import argparse
import logging
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "torch")
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from ember.datasets import load_digits
from ember.demo import ConvNet
from ember.train.hardware import describe_machine, native_bf16

FLOPS_PER_SAMPLE = 25.4e6  # forward + backward of the seed ConvNet on 28x28
BATCH = 64


def matmul_peak(dtype=torch.float32, n=1024, repeats=20):
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(3):
        a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - start)


def seed_model():
    """The seed's ConvNet, verbatim (x.view and all): examples/define_pytorch.py."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
    from define_pytorch import ConvNet as SeedConvNet

    return SeedConvNet()


# ---- trainers: each returns a function that trains `steps` batches and returns seconds --------
def seed_loop(x, y):
    model = seed_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    criterion = nn.CrossEntropyLoss()
    loader = DataLoader(TensorDataset(torch.from_numpy(x), torch.from_numpy(y)), batch_size=BATCH, shuffle=True)

    def run(steps):
        model.train()
        done, start = 0, time.perf_counter()
        while done < steps:
            for data, targets in loader:
                optimizer.zero_grad()
                loss = criterion(model(data), targets)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
                optimizer.step()
                loss.item()  # the seed reads the loss every step (a host sync on GPUs)
                done += 1
                if done == steps:
                    break
        return time.perf_counter() - start

    return run


def ember_fit(x, y, *, data="arrays", **options):
    model = ConvNet()
    model.compile("adamw", "cross_entropy", lr=1e-3, weight_decay=1e-4, clip_grad_norm=1.0, **options)
    loader = DataLoader(TensorDataset(torch.from_numpy(x), torch.from_numpy(y)), batch_size=BATCH, shuffle=True)

    def run(steps):
        n = steps * BATCH
        reps = -(-n // len(x))
        xs, ys = np.concatenate([x] * reps)[:n], np.concatenate([y] * reps)[:n]
        start = time.perf_counter()
        if data == "arrays":
            model.fit(xs, ys, batch_size=BATCH, epochs=1, verbose=0)
        else:
            model.fit(_Take(loader, steps), epochs=1, verbose=0)
        return time.perf_counter() - start

    return run


class _Take:
    def __init__(self, loader, steps):
        self.loader, self.steps = loader, steps

    def __len__(self):
        return self.steps

    def __iter__(self):
        done = 0
        while True:
            for batch in self.loader:
                yield batch
                done += 1
                if done == self.steps:
                    return


def keras_fit(x, y):
    import keras
    from keras import layers

    model = keras.Sequential([
        keras.Input((1, 28, 28)),
        layers.Conv2D(32, 3, activation="relu", padding="same", data_format="channels_first"),
        layers.MaxPooling2D(2, data_format="channels_first"),
        layers.Conv2D(64, 3, activation="relu", padding="same", data_format="channels_first"),
        layers.MaxPooling2D(2, data_format="channels_first"),
        layers.Dropout(0.25), layers.Flatten(), layers.Dense(128, activation="relu"), layers.Dropout(0.25),
        layers.Dense(10),
    ])
    model.compile(keras.optimizers.AdamW(1e-3, weight_decay=1e-4, clipnorm=1.0),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))

    def run(steps):
        n = steps * BATCH
        reps = -(-n // len(x))
        xs, ys = np.concatenate([x] * reps)[:n], np.concatenate([y] * reps)[:n]
        start = time.perf_counter()
        model.fit(xs, ys, batch_size=BATCH, epochs=1, verbose=0)
        return time.perf_counter() - start

    return run


def lightning_fit(x, y):
    import lightning as L

    for name in ("lightning", "lightning.pytorch", "lightning.pytorch.utilities.rank_zero", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)

    class Module(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = seed_model()

        def training_step(self, batch, _):
            data, targets = batch
            loss = F.cross_entropy(self.net(data), targets)
            self.log("loss", loss, prog_bar=False)
            return loss

        def configure_optimizers(self):
            return torch.optim.AdamW(self.parameters(), lr=1e-3, weight_decay=1e-4)

    module = Module()
    loader = DataLoader(TensorDataset(torch.from_numpy(x), torch.from_numpy(y)), batch_size=BATCH, shuffle=True)

    def run(steps):
        trainer = L.Trainer(max_steps=steps, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, gradient_clip_val=1.0)
        start = time.perf_counter()
        trainer.fit(module, _Take(loader, steps))
        return time.perf_counter() - start

    return run


def inference_runners(x, y):
    """Evaluate/predict throughput: the seed's validation loop against ember evaluate and predict."""
    model = ConvNet()
    model.compile("adamw", "cross_entropy", metrics=["accuracy"])
    seed = seed_model().eval()
    loader = DataLoader(TensorDataset(torch.from_numpy(x), torch.from_numpy(y)), batch_size=256)

    def seed_eval():
        start = time.perf_counter()
        correct = total = 0
        with torch.no_grad():
            for data, targets in loader:
                _, predicted = seed(data).max(1)
                correct += predicted.eq(targets).sum().item()
                total += targets.size(0)
        return time.perf_counter() - start

    def timed(fn):
        def run():
            start = time.perf_counter()
            fn()
            return time.perf_counter() - start
        return run

    return {
        "seed validation loop (no_grad, DataLoader)": seed_eval,
        "ember evaluate": timed(lambda: model.evaluate(x, y, batch_size=256)),
        "ember predict": timed(lambda: model.predict(x, batch_size=256)),
    }


def report(title, samples, base_name, fp32_peak=None):
    base = statistics.median(samples[base_name])
    print(f"\n{title:58s} {'samples/s':>10s} {'vs seed':>8s}" + (f" {'of peak':>8s}" if fp32_peak else ""))
    for name, values in samples.items():
        rate = statistics.median(values)
        line = f"{name:58s} {rate:10.0f} {rate / base:7.2f}x"
        if fp32_peak:
            line += f" {rate * FLOPS_PER_SAMPLE / fp32_peak:7.1%}"
        print(line)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--skip", default="", help="comma-separated trainer names to skip")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")

    (x, y), _ = load_digits()
    print(describe_machine())
    fp32_peak = matmul_peak()
    line = f"measured matmul peak: fp32 {fp32_peak / 1e9:.0f} GFLOP/s"
    bf16 = native_bf16(torch.device("cpu"))
    if bf16:
        line += f", bf16 {matmul_peak(torch.bfloat16) / 1e9:.0f} GFLOP/s"
    print(line + f" | native bf16: {bf16}")

    trainers = {
        "seed loop (DataLoader, loss.item() each step)": lambda: seed_loop(x, y),
        "ember fit, default (auto)": lambda: ember_fit(x, y),
        "ember fit, all off (DataLoader, fp32, no fused, NCHW)": lambda: ember_fit(
            x, y, data="loader", precision="fp32", fused=False, channels_last=False),
        "ember fit, sliced arrays only": lambda: ember_fit(x, y, precision="fp32", fused=False, channels_last=False),
        "ember fit, + fused AdamW only": lambda: ember_fit(x, y, data="loader", precision="fp32", channels_last=False),
        "ember fit, + channels_last only": lambda: ember_fit(x, y, data="loader", precision="fp32", fused=False,
                                                            channels_last=True),
        "ember fit, + jit_compile": lambda: ember_fit(x, y, jit_compile=True),
        "Keras 3 (torch backend) fit": lambda: keras_fit(x, y),
        "Lightning Trainer": lambda: lightning_fit(x, y),
    }
    if bf16:
        trainers["ember fit, + bf16 only"] = lambda: ember_fit(x, y, data="loader", precision="bf16", fused=False,
                                                               channels_last=False)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    runners = {}
    for name, make in trainers.items():
        if any(s in name for s in skip):
            continue
        try:
            runners[name] = make()
            runners[name](5)  # warm-up (also compiles)
        except Exception as error:  # a missing benchmark extra must not hide the others
            print(f"skipped {name}: {type(error).__name__}: {error}")
            runners.pop(name, None)
    samples = {name: [] for name in runners}
    for _ in range(args.rounds):
        for name, run in runners.items():
            samples[name].append(args.steps * BATCH / run(args.steps))

    if samples:
        report("training (seed ConvNet, batch 64)", samples, next(iter(samples)), fp32_peak)

    inference = inference_runners(x, y)
    for run in inference.values():
        run()  # warm-up
    rates = {name: [] for name in inference}
    for _ in range(args.rounds):
        for name, run in inference.items():
            rates[name].append(len(x) / run())
    report("inference (batch 256, whole training split)", rates, next(iter(rates)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
