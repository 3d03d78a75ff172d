"""Format "web": a self-contained browser folder, `web/` (index.html, app.js, onnxruntime-web, the model;
for a text classifier exported with its tokenizer, tokenizer.json and tokenizer.js tokenize in the page).

Only the wasm build the page uses is copied (about 14 MB), from the onnxruntime-web npm
package pinned in the repository's package.json. Serve the folder from any static file
server; the browser test (tests/test_export_formats.py) checks its prediction against eager.
"""
import os
import shutil
from pathlib import Path

from ember.deploy import to_onnx
from ember.deploy.inputs import ModelInputs
from ember.deploy.report import EagerBaseline, ExportReport
from ember.signature import SIGNATURE_FILE, load_signature

FORMAT = "web"
FOLDER = "web"
TEMPLATE = Path(__file__).parent / "web"
# onnxruntime-web 1.30 ships SIMD + threaded builds only; the plain wasm entry needs these three.
RUNTIME_FILES = ("ort.wasm.min.js", "ort-wasm-simd-threaded.wasm", "ort-wasm-simd-threaded.mjs")


def export(model, directory: Path, inputs: ModelInputs, baseline: EagerBaseline, calibration_data=None) -> ExportReport:
    directory = Path(directory)
    fp32 = directory / to_onnx.FILE
    if not fp32.exists():
        to_onnx.write_onnx(model, inputs, fp32)
    web = directory / FOLDER
    web.mkdir()
    dist = runtime_dist()
    for name in RUNTIME_FILES:
        shutil.copyfile(dist / name, web / name)
    for name in ("index.html", "app.js", "tokenizer.js"):
        shutil.copyfile(TEMPLATE / name, web / name)
    shutil.copyfile(fp32, web / to_onnx.FILE)
    shutil.copyfile(directory / SIGNATURE_FILE, web / SIGNATURE_FILE)
    tokenizer = load_signature(directory).tokenizer
    if tokenizer:
        shutil.copyfile(directory / tokenizer["file"], web / tokenizer["file"])
    # The page runs exactly these model bytes; check them in ONNX Runtime here, in a browser in the tests.
    session = to_onnx.ort_session(web / to_onnx.FILE)
    return baseline.report(FORMAT, directory, [FOLDER], to_onnx.ort_runner(session),
                           notes=["onnxruntime-web wasm; timed in ONNX Runtime (Python)"])


def runtime_dist() -> Path:
    """onnxruntime-web's dist folder: $EMBER_ORT_WEB_DIST, or node_modules at the repository root."""
    root = Path(__file__).resolve().parents[2]
    dist = Path(os.environ.get("EMBER_ORT_WEB_DIST", root / "node_modules" / "onnxruntime-web" / "dist"))
    missing = [name for name in RUNTIME_FILES if not (dist / name).exists()]
    if missing:
        raise FileNotFoundError(f"format 'web' needs onnxruntime-web from npm, but {dist} lacks {missing}: run "
                                f"`npm ci` in {root} (package.json pins the version), or set EMBER_ORT_WEB_DIST "
                                "to its dist folder")
    return dist
