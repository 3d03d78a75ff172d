"""Training and inference throughput: ember fit against the seed's hand-written loop, Keras 3
(torch backend) and Lightning, on the seed's ConvNet, 28x28 digits, batch 64, AdamW, clipping 1.0.

Each measurement runs in a fresh process (as a user's script would: ember's allocator setting is
process-wide), after a warm-up, timed three times (median). The seed loop runs again between every two
other jobs, and each job's ratio is to the mean of the two seed runs around it: neighbours on a shared
machine move absolute speed within minutes. The report: median samples/s, the median and range of those
ratios over the rounds, and the fractions of the machine's matmul peaks (measured here: fp32, and bf16
where the CPU runs it natively).

    python benchmarks/train_speed.py [--rounds 3] [--steps 60]
"""
import argparse
import json
import logging
import os
import statistics
import subprocess
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


def matmul_peak(dtype=torch.float32, n=1024, repeats=10, tries=5):
    """FLOP/s of n x n matmuls: the best of `tries` timings (a peak; neighbours only lower it)."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(tries):
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 * repeats / best


def seed_model():
    """The seed's ConvNet, verbatim (x.view and all) on ember.Model: examples/define_pytorch.py. ember's
    ConvNet (ember/demo.py) is the same network written with flatten(1)."""
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


def ember_fit(x, y, *, data="arrays", model=ConvNet, **options):
    model = model()
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


def report(title, samples, ratios, peaks=None):
    """samples: name -> samples/s per run; ratios: name -> its ratios to the seed loop runs around it;
    peaks: precision -> measured matmul FLOP/s, each printed as the fraction of it the rate reaches."""
    peaks = peaks or {}
    header = f"\n{title:84s} {'samples/s':>10s} {'vs seed':>8s} {'range':>12s}"
    print(header + "".join(f" {'of ' + name + ' peak':>14s}" for name in peaks))
    for name, values in samples.items():
        measured = [r for r in ratios[name] if r]
        if not measured:
            continue
        rate = statistics.median(v for v in values if v)
        line = (f"{name:84s} {rate:10.0f} {statistics.median(measured):7.2f}x "
                f"{min(measured):5.2f}-{max(measured):.2f}x")
        print(line + "".join(f" {rate * FLOPS_PER_SAMPLE / peak:14.1%}" for peak in peaks.values()))


def measure(kind, name, steps):
    """samples/s of one job in a fresh process; None (and a line saying why) when it could not run."""
    result = subprocess.run([sys.executable, __file__, "--steps", str(steps), "--job", kind, name],
                            capture_output=True, text=True)
    if result.returncode != 0:  # a missing benchmark extra must not hide the others
        print(f"skipped {name}: {result.stderr.strip().splitlines()[-1:]}")
        return None
    return float(result.stdout.split()[-1])


OFF = {"precision": "fp32", "fused": False, "channels_last": False, "fast_dropout": False, "reuse_host_memory": False}


def jobs(x, y, bf16: bool) -> dict:
    """name -> factory of a runner; each runs in a fresh process (ember's allocator setting is process-wide)."""
    training = {
        "seed loop (DataLoader, loss.item() each step)": lambda: seed_loop(x, y),
        "ember fit, default (auto)": lambda: ember_fit(x, y),
        "ember fit, default, the seed's class as written (x.view)": lambda: ember_fit(x, y, model=seed_model),
        "ember fit, all off (DataLoader, fp32, NCHW, torch dropout, no fused, glibc malloc)": lambda: ember_fit(
            x, y, data="loader", **OFF),
        "ember fit, sliced arrays only": lambda: ember_fit(x, y, **OFF),
        "ember fit, + fused AdamW only": lambda: ember_fit(x, y, data="loader", **{**OFF, "fused": "auto"}),
        "ember fit, + channels_last only": lambda: ember_fit(x, y, data="loader", **{**OFF, "channels_last": True}),
        "ember fit, + fast_dropout only": lambda: ember_fit(x, y, data="loader", **{**OFF, "fast_dropout": True}),
        "ember fit, + reuse_host_memory only": lambda: ember_fit(x, y, data="loader",
                                                                 **{**OFF, "reuse_host_memory": True}),
        "ember fit, + jit_compile": lambda: ember_fit(x, y, jit_compile=True),
        "Keras 3 (torch backend) fit": lambda: keras_fit(x, y),
        "Lightning Trainer": lambda: lightning_fit(x, y),
    }
    if bf16:
        training["ember fit, + bf16 only"] = lambda: ember_fit(x, y, data="loader", **{**OFF, "precision": "bf16"})
    return {"training": training, "inference": inference_runners(x, y)}


def run_job(kind: str, name: str, steps: int, chunks: int = 3) -> float:
    """In a worker process: build one runner, warm it up, time `chunks` runs; the median samples/s."""
    (x, y), _ = load_digits()
    if kind == "training":
        run = jobs(x, y, native_bf16(torch.device("cpu")))[kind][name]()
        run(10)  # warm-up (also compiles)
        return statistics.median(steps * BATCH / run(steps) for _ in range(chunks))
    run = jobs(x, y, False)[kind][name]
    run()  # warm-up
    return statistics.median(len(x) / run() for _ in range(chunks))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--skip", default="", help="comma-separated trainer names to skip")
    parser.add_argument("--job", nargs=2, metavar=("KIND", "NAME"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    if args.job:
        print(json.dumps(run_job(*args.job, args.steps)))
        return 0

    print(describe_machine())
    bf16 = native_bf16(torch.device("cpu"))
    peaks = {"fp32": matmul_peak()}
    if bf16:  # precision="auto" trains in bf16 here
        peaks["bf16"] = matmul_peak(torch.bfloat16)
    print("measured matmul peak: " + ", ".join(f"{k} {v / 1e9:.0f} GFLOP/s" for k, v in peaks.items())
          + f" | native bf16: {bf16}")
    print("each measurement in a fresh process; the seed loop runs between every two others")

    (x, y), _ = load_digits()
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    names = {kind: [n for n in runners if not any(s in n for s in skip)] for kind, runners in jobs(x, y, bf16).items()}
    samples = {kind: {name: [] for name in kind_names} for kind, kind_names in names.items()}
    ratios = {kind: {name: [] for name in kind_names} for kind, kind_names in names.items()}
    for _ in range(args.rounds):
        for kind, (base, *others) in names.items():
            # The seed loop runs before and after every other job: each ratio is to the mean of the
            # two seed runs around it, minutes apart at most, as neighbours move the machine's speed.
            before = measure(kind, base, args.steps)
            samples[kind][base].append(before)
            ratios[kind][base].append(1.0)
            for name in others:
                value, after = measure(kind, name, args.steps), measure(kind, base, args.steps)
                samples[kind][name].append(value)
                samples[kind][base].append(after)
                if value and before and after:
                    ratios[kind][name].append(value / ((before + after) / 2))
                before = after
    report("training (seed ConvNet, batch 64)", samples["training"], ratios["training"], peaks)
    report("inference (batch 256, whole training split)", samples["inference"], ratios["inference"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
