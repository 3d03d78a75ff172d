"""Accuracy of the accelerated defaults against plain fp32 on the demo's recipe (`make demo`).

The demo's ConvNet, data, optimizer and callbacks (ember/demo.py, without its checkpoint), trained once with compile()'s
defaults and once with every acceleration off, for each seed; prints both validation accuracies and
their difference. The issue's bar: the accelerated fit within 0.5 points of fp32.

    python benchmarks/demo_accuracy.py [--seeds 0 1 2] [--epochs 10]
"""
import argparse
import statistics

import ember
from ember.datasets import load_digits
from ember.demo import BATCH_SIZE, ConvNet, compile_recipe, recipe_callbacks
from ember.train.hardware import describe_machine

# The demo passes a built AdamW, so `fused` does not apply; reuse_host_memory does not change results.
ALL_OFF = {"precision": "fp32", "channels_last": False, "fast_dropout": False}


def train(seed, epochs, **options):
    ember.seed(seed)
    (x, y), (x_val, y_val) = load_digits()
    model = ConvNet()
    compile_recipe(model, **options)
    model.fit(x, y, validation_data=(x_val, y_val), epochs=epochs, batch_size=BATCH_SIZE, verbose=0,
              callbacks=recipe_callbacks())
    return model.evaluate(x_val, y_val)["accuracy"], model.recipe.precision


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    print(describe_machine())
    print(f"{'seed':>4s} {'defaults':>14s} {'all off (fp32)':>15s} {'difference':>11s}")
    differences = []
    for seed in args.seeds:
        fast, precision = train(seed, args.epochs)
        plain, _ = train(seed, args.epochs, **ALL_OFF)
        differences.append(fast - plain)
        print(f"{seed:4d} {fast:8.2%} ({precision}) {plain:15.2%} {100 * (fast - plain):+10.2f} pt")
    print(f"mean difference {100 * statistics.mean(differences):+.2f} points over {len(differences)} seeds")


if __name__ == "__main__":
    main()
