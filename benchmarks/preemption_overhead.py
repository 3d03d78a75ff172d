"""What catching preemption signals costs under 2-process DDP: after every optimizer step the
processes agree on the highest signal any of them received (`strategy.reduce_max`, one
all-reduce of an integer), so that they stop at the same step. One process exchanges nothing.

Both numbers come from `ember launch -n 2` on gloo:
- the agreement alone: `reduce_max` timed over many calls (median per call), its exact cost a step;
- fit() with BackupAndRestore(preemption_signals="auto") and (None), alternating round by round,
  per optimizer step (noisy on a shared machine).

    python benchmarks/preemption_overhead.py [--rounds 3]     (EMBER_QUICK=1: 2 rounds)
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import ember
from ember import layers
from ember.callbacks import BackupAndRestore
from ember.distributed import DDP
from ember.train.hardware import describe_machine

QUICK = os.environ.get("EMBER_QUICK") == "1"
SAMPLES, BATCH, CALLS = 4096, 64, 2000


def agreement_seconds(strategy) -> float:
    for _ in range(200):  # warm-up
        strategy.reduce_max(0)
    times = []
    for _ in range(CALLS):
        start = time.perf_counter()
        strategy.reduce_max(0)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def step_seconds(strategy, signals, backup_dir) -> float:
    """Seconds per optimizer step of a 2-epoch fit (a small MLP, global batch 64), the first epoch
    included: both settings pay the same warm-up."""
    ember.seed(0)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(SAMPLES, 32)).astype("float32"), rng.integers(0, 10, SAMPLES)
    model = ember.Sequential([layers.Dense(256, activation="relu"), layers.Dense(256, activation="relu"),
                              layers.Dense(10)])
    model.compile("adamw", "cross_entropy", lr=1e-3, precision="fp32")
    start = time.perf_counter()
    model.fit(x, y, batch_size=BATCH, epochs=2, verbose=0, strategy=strategy,
              callbacks=[BackupAndRestore(backup_dir, preemption_signals=signals)])
    return (time.perf_counter() - start) / (2 * SAMPLES // BATCH)


def worker(rounds: int, out: Path) -> None:
    strategy = DDP()
    agreement = agreement_seconds(strategy)
    with_signals, without = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(rounds):
            without.append(step_seconds(strategy, None, Path(tmp) / f"off-{round_}"))
            with_signals.append(step_seconds(strategy, "auto", Path(tmp) / f"on-{round_}"))
    if strategy.is_main:
        out.write_text(json.dumps({"agreement": agreement, "with": with_signals, "without": without}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2 if QUICK else 3)
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.rounds, args.worker)
    print(describe_machine())
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.json"
        job = subprocess.run([sys.executable, "-m", "ember.cli", "launch", "-n", "2", __file__, "--rounds",
                              str(args.rounds), "--worker", str(result)], capture_output=True, text=True)
        if job.returncode != 0:
            raise RuntimeError(f"the 2-process run failed:\n{job.stderr[-3000:]}")
        measured = json.loads(result.read_text())
    agreement = measured["agreement"]
    on, off = statistics.median(measured["with"]), statistics.median(measured["without"])
    print(f"agreement (reduce_max, 2 processes, gloo): {agreement * 1e6:.0f} us median over {CALLS} calls")
    print(f"fit() per optimizer step: {off * 1e3:.2f} ms without signals, {on * 1e3:.2f} ms with "
          f"({100 * (on - off) / off:+.1f}%, medians of {args.rounds} rounds; noisy on a shared machine); "
          f"the agreement is {100 * agreement / off:.1f}% of a step")


if __name__ == "__main__":
    main()
