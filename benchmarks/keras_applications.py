"""Every keras.applications model Keras 3 builds on torch, converted by ember, against Keras' predict.

Each model is built by Keras (torch backend, `weights=None`, random gammas, betas and biases,
BatchNormalization statistics measured on the inputs, logits out) at the smallest input size Keras
allows, with its top and without (pooling=None: the feature map), and saved as `.keras`, `.h5`,
`.weights.h5` (save_weights) and a legacy weights-only `.h5`. ember converts each in a process where
`import keras` fails (weights-only files: the architecture from the `.keras`, every weight zeroed, then
load_keras_weights). Prints one row per model: parameters, load seconds, max abs difference and the same
relative to the largest output per file kind, one `fit` epoch (4 rows, mse), the ONNX export's max
difference from the converted model, and for a few small ones the int8 export's size (of the ONNX
one) and top-1 agreement with the converted model on 64 random images.

    python benchmarks/keras_applications.py [--models ResNet50,VGG16] [--no-notop]
"""
import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # testing/, beside ember/

from ember.train.hardware import describe_machine  # noqa: E402
from testing.keras_applications import FILE_KINDS, Application, convert_without_keras, save_applications  # noqa: E402

# NASNetMobile and NASNetLarge are left out: Keras refuses to build them on the torch backend.
APPLICATIONS = [
    "ConvNeXtTiny", "ConvNeXtSmall", "ConvNeXtBase", "ConvNeXtLarge", "ConvNeXtXLarge",
    "DenseNet121", "DenseNet169", "DenseNet201",
    *[f"EfficientNetB{i}" for i in range(8)],
    "EfficientNetV2B0", "EfficientNetV2B1", "EfficientNetV2B2", "EfficientNetV2B3", "EfficientNetV2S",
    "EfficientNetV2M", "EfficientNetV2L",
    "InceptionResNetV2", "InceptionV3", "MobileNet", "MobileNetV2", "MobileNetV3Small", "MobileNetV3Large",
    "ResNet50", "ResNet101", "ResNet152", "ResNet50V2", "ResNet101V2", "ResNet152V2", "VGG16", "VGG19", "Xception"]
INT8 = {"MobileNet", "MobileNetV2", "MobileNetV3Small", "EfficientNetB0", "ResNet50"}  # with their top
SHORT = {".keras": "keras", ".h5": "h5", ".weights.h5": "weights", ".legacy.weights.h5": "legacy"}


def row(application, params, report):
    keras = report[".keras channels_last"]
    if "error" in keras:
        return f"{application.key:<26}{application.size:>5}{params:>13,}  fails: {keras['error'][:200]}"
    cells = [f"{keras['load_seconds']:>7.1f}", f"{keras['max_abs']:>10.1e}"]
    for kind in FILE_KINDS:
        result = report[f"{kind} channels_last"]
        cells.append(f"{'FAIL' if 'error' in result else format(result['max_rel'], '.1e'):>11}")
    fit = report.get("fit")
    cells.append(f"{fit['seconds']:>6.1f}s {'ok' if fit['finite'] else 'NaN':<3}" if fit else f"{'-':>11}")
    onnx, int8 = report.get("onnx"), report.get("int8")
    cells.append(f"{'-' if not onnx else 'FAIL' if 'error' in onnx else format(onnx['max_abs'], '.1e'):>10}")
    cells.append(f"{'-':>14}" if not int8 else f"{'FAIL':>14}" if "error" in int8
                 else f"{int8['size_ratio']:>6.0%} {int8['agreement']:>7.1%}")
    return f"{application.key:<26}{application.size:>5}{params:>13,}" + "".join(cells)


def failures(report):
    return [f"{key}: {value['error']}" for key, value in report.items() if isinstance(value, dict) and "error" in value]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(APPLICATIONS))
    parser.add_argument("--no-notop", action="store_true", help="only the models with their top")
    args = parser.parse_args()
    print(describe_machine())
    header = ["model", "size", "params", "load s", "max abs"] + [f"rel {SHORT[k]}" for k in FILE_KINDS]
    print(f"{header[0]:<26}{header[1]:>5}{header[2]:>13}{header[3]:>7}{header[4]:>10}"
          + "".join(f"{h:>11}" for h in header[5:]) + f"{'fit':>11}{'onnx abs':>10}{'int8 size,top1':>15}",
          flush=True)
    for name in args.models.split(","):
        applications = [Application(name)] + ([] if args.no_notop else [Application(name, include_top=False)])
        with tempfile.TemporaryDirectory() as folder:  # one model's files at a time: the largest are GBs
            save_applications(folder, applications)
            for application in applications:
                checks = ("fit", "int8" if application.include_top and name in INT8 else "onnx")
                report = convert_without_keras(folder, application.key, checks=checks)
                params = int(Path(folder, f"{application.key}_params.json").read_text())
                print(row(application, params, report), flush=True)
                for failure in failures(report):
                    print(f"    {' '.join(failure.splitlines())[:300]}", flush=True)


if __name__ == "__main__":
    main()
