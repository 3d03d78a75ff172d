"""keras.applications models converted by ember.from_keras, against Keras 3's predict.

Each model is built by Keras (torch backend, `weights=None`, BatchNormalization statistics randomized,
logits out) at a small input size and saved as `.keras` and `.h5`; ember converts each file in a
process where `import keras` fails. Prints one row per model and file: parameters, load seconds,
max abs difference and the same relative to the largest logit, or why it failed.

    python benchmarks/keras_applications.py [--size 32] [--models ResNet50,MobileNetV2]
"""
import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # testing/, beside ember/

from ember.train.hardware import describe_machine  # noqa: E402
from testing.keras_applications import convert_without_keras, save_applications  # noqa: E402

APPLICATIONS = ["ResNet50", "ResNet50V2", "MobileNetV2", "DenseNet121", "MobileNetV3Small", "EfficientNetB0",
                "ConvNeXtTiny"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=32, help="height and width of the inputs")
    parser.add_argument("--models", default=",".join(APPLICATIONS))
    args = parser.parse_args()
    names = args.models.split(",")
    print(describe_machine())
    print(f"{'model':<18}{'file':<8}{'params':>12}{'load s':>9}{'max abs':>11}{'max rel':>11}")
    with tempfile.TemporaryDirectory() as folder:
        save_applications(folder, names, args.size)
        for name in names:
            params = int(Path(folder, f"{name}_params.json").read_text())
            for extension in (".keras", ".h5"):
                result = convert_without_keras(folder, name, extension)["channels_last"]
                if "error" in result:
                    print(f"{name:<18}{extension:<8}{params:>12,}  fails: {' '.join(result['error'].splitlines()[:2])[:200]}")
                else:
                    print(f"{name:<18}{extension:<8}{params:>12,}{result['load_seconds']:>9.2f}"
                          f"{result['max_abs']:>11.2e}{result['max_rel']:>11.2e}")


if __name__ == "__main__":
    main()
