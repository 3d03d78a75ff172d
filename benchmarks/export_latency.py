"""Latency of every export format against eager PyTorch, on the demo ConvNet trained on digits.

For each thread count, the model is exported (each format reloaded from its file) and timed
at batch 1 and batch 64: median wall time, every runtime on the same number of threads.
Accuracy is on the digits validation split; int8 is calibrated on 256 training images.
On a shared machine absolute times drift; compare the ratios within one table.

    python benchmarks/export_latency.py [--threads 1,2] [--formats onnx,program,int8,tflite,pte,web] [--epochs 5]
"""
import argparse
import tempfile

import numpy as np
import torch

import ember
from ember.datasets import load_digits
from ember.demo import ConvNet
from ember.deploy.report import print_table
from ember.train.hardware import describe_machine


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--formats", default="onnx,program,int8,tflite,pte,web")
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()

    ember.seed(0)
    (x, y), (x_val, y_val) = load_digits()
    model = ConvNet()
    model.compile("adamw", lr=2e-3, loss="cross_entropy", metrics=["accuracy"])
    model.fit(x, y, epochs=args.epochs, verbose=0)
    calibration = x[np.random.default_rng(0).permutation(len(x))[:256]]
    for threads in [int(t) for t in args.threads.split(",")]:
        torch.set_num_threads(threads)
        print(f"\n{describe_machine()}")
        with tempfile.TemporaryDirectory() as folder:
            reports = model.export(folder, format=args.formats.split(","), example=torch.from_numpy(x[:2]),
                                   calibration_data=calibration, held_out=(x_val, y_val))
        print_table(reports)
        fp32 = next((r for r in reports if r.format == "onnx"), None)
        int8 = next((r for r in reports if r.format == "int8"), None)
        if fp32:
            print(f"ONNX Runtime batch-1 speedup over eager: {fp32.speedup:.1f}x (goal >= 3x)")
        if int8:
            print(f"int8: {int8.notes[0]}; accuracy {int8.accuracy:.2%} vs eager {int8.eager_accuracy:.2%} "
                  f"({100 * (int8.eager_accuracy - int8.accuracy):+.2f} points lost; goal <= 0.5)")


if __name__ == "__main__":
    main()
