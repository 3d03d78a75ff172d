"""Format "int8": ONNX Runtime static quantization (QDQ, per-channel), plus ORT's mobile `.ort` format.

Static, not dynamic: dynamic quantization turns convolutions into `ConvInteger`, which is
several times slower on CPU. Calibration needs real inputs (a sample of the training data).
"""
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from ember.deploy import to_onnx
from ember.deploy.inputs import ModelInputs
from ember.deploy.report import EagerBaseline, ExportReport

FORMAT = "int8"
FILE, MOBILE_FILE = "model.int8.onnx", "model.int8.ort"
CALIBRATION_BATCH = 32


def export(model, directory: Path, inputs: ModelInputs, baseline: EagerBaseline, calibration_data=None) -> ExportReport:
    require_calibration(inputs, calibration_data)
    directory = Path(directory)
    fp32 = directory / to_onnx.FILE
    if not fp32.exists():
        to_onnx.write_onnx(model, inputs, fp32)
    with tempfile.TemporaryDirectory(dir=directory) as work:
        prepared = Path(work) / "prepared.onnx"
        quant_pre_process(str(fp32), str(prepared))
        # reduce_range (7-bit weights): x86 CPUs without VNNI multiply int8 pairs into saturating int16
        # sums (VPMADDUBSW); full-range weights lost 1.7 points of digits accuracy on such a CPU, 7-bit none.
        quantize_static(str(prepared), str(directory / FILE), _Reader(calibration_data), quant_format=QuantFormat.QDQ,
                        per_channel=True, reduce_range=True, activation_type=QuantType.QInt8,
                        weight_type=QuantType.QInt8)
    _convert_to_ort(directory / FILE, directory / MOBILE_FILE)

    session = to_onnx.ort_session(directory / FILE)
    mobile = to_onnx.ort_runner(to_onnx.ort_session(directory / MOBILE_FILE))
    held = baseline.held_out.rows(0, 8).numpy()
    mobile_diff = max(float(np.max(np.abs(a - b))) for a, b in zip(mobile(held), to_onnx.ort_runner(session)(held)))
    if mobile_diff > 1e-5:
        raise RuntimeError(f"{MOBILE_FILE} disagrees with {FILE} by {mobile_diff:.2e}")
    fp32_size = fp32.stat().st_size
    size_ratio = (directory / FILE).stat().st_size / fp32_size
    return baseline.report(FORMAT, directory, [FILE, MOBILE_FILE], to_onnx.ort_runner(session),
                           notes=[f"QDQ per-channel, {size_ratio:.0%} of fp32 onnx size",
                                  f"calibrated on {calibration_data.batch_size} rows"])


def require_calibration(inputs: ModelInputs, calibration_data) -> None:
    if calibration_data is None:
        shape = ", ".join(["N", *map(str, inputs.tensors[0].shape[1:])])
        raise ValueError("format 'int8' needs calibration_data=: a sample of training inputs (a few hundred rows "
                         f"shaped ({shape}) like the example); on the command line, --calibration FILE.npy")


class _Reader(CalibrationDataReader):
    def __init__(self, data: ModelInputs):
        self.batches = iter([data.rows(i, i + CALIBRATION_BATCH).numpy()
                             for i in range(0, data.batch_size, CALIBRATION_BATCH)])

    def get_next(self):
        return next(self.batches, None)


def _convert_to_ort(source: Path, target: Path) -> None:
    with tempfile.TemporaryDirectory(dir=target.parent) as out:
        result = subprocess.run([sys.executable, "-m", "onnxruntime.tools.convert_onnx_models_to_ort", str(source),
                                 "--output_dir", out, "--optimization_style", "Fixed"],
                                capture_output=True, text=True)
        converted = Path(out) / (source.stem + ".ort")
        if result.returncode != 0 or not converted.exists():
            raise RuntimeError(f"converting {source.name} to ORT format failed:\n{result.stdout}\n{result.stderr}")
        converted.replace(target)
