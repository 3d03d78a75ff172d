"""Run as a script (by testing/keras_applications.py): converts one saved keras.applications model with
ember where `import keras` fails, compares it with Keras' predictions and runs the asked checks on it.

    check_converted_application.py FOLDER KEY FILE_KINDS DATA_FORMATS CHECKS

FILE_KINDS, comma-separated: .keras or .h5 (from_keras), .weights.h5 or .legacy.weights.h5 (the architecture
from KEY.keras, every weight zeroed, then ember.load_keras_weights). DATA_FORMATS: comma-separated. CHECKS:
comma-separated among fit, onnx, int8 (which exports onnx too), run on the first model that loaded. Prints one
JSON line: {"FILE_KIND DATA_FORMAT": {load_seconds, max_abs, max_rel} or {error}, CHECK: {...}}.
"""
import sys

for _blocked in ("keras", "tf_keras", "tensorflow"):
    sys.modules[_blocked] = None  # ember must convert without Keras

import json  # noqa: E402
import math  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

import ember  # noqa: E402

FIT_ROWS, EXPORT_ROWS, INT8_ROWS = 4, 8, 64


def load(folder, key, file_kind, data_format):
    if file_kind in (".keras", ".h5"):
        return ember.from_keras(folder / f"{key}{file_kind}", data_format=data_format)
    model = ember.from_keras(folder / f"{key}.keras", data_format=data_format)
    # Zeroed, so that a weight load_keras_weights leaves out shows in the outputs: the parameters and the
    # BatchNormalization statistics (a Normalization's mean and variance are in the config, not in weights files).
    statistics = [t for name, t in model.named_buffers() if name.endswith(("running_mean", "running_var"))]
    with torch.no_grad():
        for tensor in [*model.parameters(), *statistics]:
            tensor.zero_()
    return ember.load_keras_weights(model, folder / f"{key}{file_kind}")


def to_model_layout(images, data_format):
    batch = torch.from_numpy(images)
    return batch.permute(0, 3, 1, 2) if data_format == "channels_first" else batch


def predict(model, images):
    with torch.no_grad():
        return model.eval()(images).numpy()


def random_images(rng, rows, like):
    """`rows` images of uniform pixels in [0, 255], shaped and laid out as the batch `like`."""
    pixels = rng.uniform(0, 255, (rows, *like.shape[1:]))
    return torch.from_numpy(pixels.astype("float32"))


def fit_one_epoch(model, images):
    """One epoch on a few distinct rows against random targets (mse fits a logits or a feature-map output).
    Distinct: a batch holding one image twice has zero variance wherever the feature map is 1x1, and
    BatchNormalization's gradient there (1/sqrt(epsilon) per layer) overflows to NaN, in Keras too."""
    targets = torch.randn_like(torch.from_numpy(predict(model, images)))
    model.compile(optimizer="adam", loss="mse")
    started = time.perf_counter()
    loss = model.fit(images, targets, batch_size=2, epochs=1, verbose=0).history["loss"][-1]
    return {"seconds": time.perf_counter() - started, "loss": loss, "finite": math.isfinite(loss)}


def export(model, images, formats):
    """ONNX (and int8, calibrated on random images) against the converted model; int8 also by top-1 agreement
    with it on INT8_ROWS random images."""
    rng = np.random.default_rng(1)
    held = random_images(rng, INT8_ROWS if "int8" in formats else EXPORT_ROWS, images)
    labels = predict(model, held).argmax(-1)
    calibration = random_images(rng, INT8_ROWS, images) if "int8" in formats else None
    with tempfile.TemporaryDirectory() as folder:
        reports = model.export(folder, format=formats, example=images, held_out=(held, labels),
                               calibration_data=calibration)
        megabytes = {report.format: (Path(folder) / report.files[0]).stat().st_size / 2 ** 20 for report in reports}
    results = {report.format: {"max_abs": report.max_abs_diff, "mb": megabytes[report.format],
                               "agreement": report.accuracy} for report in reports}
    if "int8" in results:
        results["int8"]["size_ratio"] = megabytes["int8"] / megabytes["onnx"]
    return results


def compare(folder, key, file_kind, data_format, images, expected):
    """(model, {load_seconds, max_abs, max_rel}) or (None, {error})."""
    started = time.perf_counter()
    try:
        model = load(folder, key, file_kind, data_format)
    except Exception as error:
        return None, {"error": f"{type(error).__name__}: {error}"}
    seconds = time.perf_counter() - started
    got = predict(model, to_model_layout(images, data_format))
    if data_format == "channels_first" and got.ndim == 4:  # a feature map, NCHW here and NHWC in Keras
        got = got.transpose(0, 2, 3, 1)
    difference = float(np.abs(got - expected).max())
    return model, {"load_seconds": seconds, "max_abs": difference, "max_rel": difference / float(np.abs(expected).max())}


def main():
    folder, key = Path(sys.argv[1]), sys.argv[2]
    file_kinds, data_formats = sys.argv[3].split(","), sys.argv[4].split(",")
    checks = [c for c in sys.argv[5].split(",") if c]
    images, expected = np.load(folder / f"{key}_inputs.npy"), np.load(folder / f"{key}_predictions.npy")
    report, checked = {}, None
    for file_kind in file_kinds:
        for data_format in data_formats:
            model, report[f"{file_kind} {data_format}"] = compare(folder, key, file_kind, data_format, images, expected)
            if model is not None and checked is None:
                checked = model, to_model_layout(images, data_format)
    if checked and checks:
        model, batch = checked
        formats = ["onnx", "int8"] if "int8" in checks else ["onnx"] if "onnx" in checks else []  # int8 vs onnx
        if formats:
            try:
                report.update(export(model, batch, formats))
            except Exception as error:  # reported, so that the fit and the other models still run
                report.update({name: {"error": f"{type(error).__name__}: {error}"} for name in formats})
        if "fit" in checks:
            others = random_images(np.random.default_rng(0), FIT_ROWS - len(batch), batch)
            report["fit"] = fit_one_epoch(model, torch.cat([batch, others]))
    print(json.dumps(report))


if __name__ == "__main__":
    main()
