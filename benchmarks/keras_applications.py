"""keras.applications models converted by ember.from_keras, against Keras 3's predict.

Each model is built by Keras (torch backend, `weights=None`, BatchNormalization statistics randomized,
logits out) at a small input size and saved as `.keras` and `.h5`; ember converts each file in a
process where `import keras` fails. Prints one row per model and file: parameters, load seconds,
max abs difference and the same relative to the largest logit, or why it failed.

    python benchmarks/keras_applications.py [--size 96] [--models ResNet50,MobileNetV2]
"""
import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # testing/, beside ember/

from ember.train.hardware import describe_machine  # noqa: E402
from testing.keras_applications import convert_without_keras, save_applications  # noqa: E402

# name -> the smallest input size Keras builds it for (and a small one for the others)
APPLICATIONS = {"ResNet50": 32, "ResNet50V2": 32, "MobileNet": 32, "MobileNetV2": 32, "DenseNet121": 32,
                "MobileNetV3Small": 32, "EfficientNetB0": 32, "EfficientNetV2B0": 32, "ConvNeXtTiny": 32,
                "Xception": 71, "InceptionV3": 75, "InceptionResNetV2": 75}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, help="height and width of every model's inputs (default: as small as "
                                                     "Keras builds each)")
    parser.add_argument("--models", default=",".join(APPLICATIONS))
    args = parser.parse_args()
    names = args.models.split(",")
    sizes = {name: args.size or APPLICATIONS.get(name, 32) for name in names}
    print(describe_machine())
    print(f"{'model':<18}{'size':>5} {'file':<8}{'params':>12}{'load s':>9}{'max abs':>11}{'max rel':>11}")
    with tempfile.TemporaryDirectory() as folder:
        for size in sorted(set(sizes.values())):
            save_applications(folder, [name for name in names if sizes[name] == size], size)
        for name in names:
            params = int(Path(folder, f"{name}_params.json").read_text())
            for extension in (".keras", ".h5"):
                result = convert_without_keras(folder, name, extension)["channels_last"]
                row = f"{name:<18}{sizes[name]:>5} {extension:<8}{params:>12,}"
                if "error" in result:
                    print(f"{row}  fails: {' '.join(result['error'].splitlines()[:2])[:200]}")
                else:
                    print(f"{row}{result['load_seconds']:>9.2f}{result['max_abs']:>11.2e}{result['max_rel']:>11.2e}")


if __name__ == "__main__":
    main()
