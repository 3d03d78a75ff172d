"""Format "web": a self-contained browser folder, `web/` (index.html, app.js, onnxruntime-web, the model;
for a text classifier exported with its tokenizer, tokenizer.json and tokenizer.js tokenize in the page).

Only the wasm build the page uses is copied (about 14 MB, with its license): from the wheel,
which carries the files of the onnxruntime-web npm package pinned in package.json (setup.py puts
them there), or in a checkout from node_modules after `npm ci`; $EMBER_ORT_WEB_DIST overrides
both. The bundle is run and timed in headless Chromium (web_timing.py): the report's outputs and
latencies are the page's, on one wasm thread as from any static server, and the notes give the
multi-threaded latencies of a cross-origin isolated page (`ember serve-web`). Without Chromium
the row is timed in ONNX Runtime for Python and its note says so.
"""
import json
import os
import shutil
from pathlib import Path

import numpy as np

from ember.deploy import to_onnx
from ember.deploy.inputs import ModelInputs
from ember.deploy.report import EagerBaseline, ExportReport
from ember.deploy.web_timing import BrowserUnavailable, run_in_chromium
from ember.signature import SIGNATURE_FILE, load_signature

FORMAT = "web"
FOLDER = "web"
TEMPLATE = Path(__file__).parent / "web"
RUNTIME = json.loads((TEMPLATE / "runtime.json").read_text())  # which files; setup.py reads it too
PACKAGED_RUNTIME = Path(__file__).parent / "web_runtime"  # in an installed wheel


def export(model, directory: Path, inputs: ModelInputs, baseline: EagerBaseline, calibration_data=None) -> ExportReport:
    directory = Path(directory)
    fp32 = directory / to_onnx.FILE
    if not fp32.exists():
        to_onnx.write_onnx(model, inputs, fp32)
    web = directory / FOLDER
    web.mkdir()
    dist = runtime_dist()
    for name in RUNTIME["files"]:
        shutil.copyfile(dist / name, web / name)
    for name in ("index.html", "app.js", "tokenizer.js", RUNTIME["license"]):
        shutil.copyfile(TEMPLATE / name, web / name)
    shutil.copyfile(fp32, web / to_onnx.FILE)
    shutil.copyfile(directory / SIGNATURE_FILE, web / SIGNATURE_FILE)
    tokenizer = load_signature(directory).tokenizer
    if tokenizer:
        shutil.copyfile(directory / tokenizer["file"], web / tokenizer["file"])
    session = to_onnx.ort_session(web / to_onnx.FILE)
    try:
        return _report_from_chromium(web, session, directory, baseline)
    except BrowserUnavailable as why:
        return baseline.report(FORMAT, directory, [FOLDER], to_onnx.ort_runner(session),
                               notes=[f"timed in ONNX Runtime (Python), not in a browser: {why}"])


def _report_from_chromium(web: Path, session, directory: Path, baseline: EagerBaseline) -> ExportReport:
    dtypes = to_onnx.input_dtypes(session)
    held, one, many = ({name: np.asarray(value, dtypes[name]) for name, value in feeds.items()}
                       for feeds in baseline.timing_inputs())
    outputs = [o.name for o in session.get_outputs()]
    single = run_in_chromium(web, {"held": held, "one": one, "many": many}, outputs)
    threaded = run_in_chromium(web, {"held": one, "one": one, "many": many}, outputs, isolated=True)
    isolated = (f"{threaded.threads} threads with COOP/COEP (ember serve-web): "
                f"{threaded.latency_ms['one']:.3f} ms batch 1, {threaded.latency_ms['many']:.2f} ms batch 64"
                if threaded.isolated else "COOP/COEP headers did not isolate the page: no threaded timing")
    notes = [f"{single.browser} headless, wasm SIMD, {single.threads} thread (any static server)", isolated]
    return baseline.measured(FORMAT, directory, [FOLDER], single.outputs, single.latency_ms["one"],
                             single.latency_ms["many"], notes)


def runtime_dist() -> Path:
    """The folder with onnxruntime-web's files: $EMBER_ORT_WEB_DIST, the wheel's copy, or node_modules in
    a checkout."""
    root = Path(__file__).resolve().parents[2]
    checkout = root / "node_modules" / RUNTIME["package"] / "dist"
    override = os.environ.get("EMBER_ORT_WEB_DIST")
    dist = Path(override) if override else PACKAGED_RUNTIME if PACKAGED_RUNTIME.is_dir() else checkout
    missing = [name for name in RUNTIME["files"] if not (dist / name).is_file()]
    if missing:
        where = "$EMBER_ORT_WEB_DIST" if override else "the wheel's copy" if dist == PACKAGED_RUNTIME else "a checkout"
        raise FileNotFoundError(f"format 'web' needs {RUNTIME['package']}'s files, but {dist} ({where}) lacks "
                                f"{missing}: run `npm ci` in {root} (package.json pins the version), install "
                                "ember from its wheel (which carries them), or set EMBER_ORT_WEB_DIST to the npm "
                                "package's dist folder")
    return dist
