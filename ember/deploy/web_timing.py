"""A web bundle run and timed where it will run: in a page of headless Chromium.

`run_in_chromium` serves the bundle on loopback (web_server.py's handler, plus a few `/__ember__/`
routes), opens `/__ember_bench.html` (the bundle's own index.html with web/bench.js added) in a fresh
Chromium profile, and waits for the page to post back the outputs of the held-out inputs and
the median batch-1 and batch-64 latencies of the page's own onnxruntime-web session. Served
without the cross-origin isolation headers the page runs wasm on one thread, as from any static
server; with them (as `ember serve-web` sends) on several.

Chromium is $EMBER_CHROMIUM or the first of CHROMIUM_NAMES on PATH; with none, or when it does not
answer in time, `BrowserUnavailable` says why and the exporter times in ONNX Runtime for Python.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from pathlib import Path

import numpy as np

from ember.deploy.web_server import BundleFiles, handler

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--mute-audio"]
TIMEOUT_S = 300
BENCH_JS = Path(__file__).parent / "web" / "bench.js"
TIMING = {"budget_ms": 400, "min_runs": 5, "max_runs": 200}  # as report.median_ms


class BrowserUnavailable(RuntimeError):
    """No Chromium here, or it gave no answer: the web row cannot be timed in a browser."""


class PageError(RuntimeError):
    """The bundle failed in the page: a real defect of the export."""


@dataclass
class BrowserRun:
    outputs: list           # numpy arrays, one per model output, for the "held" feeds
    latency_ms: dict        # feed set name -> median ms
    threads: int
    isolated: bool
    browser: str            # e.g. "Chromium 156"


def find_chromium() -> str | None:
    override = os.environ.get("EMBER_CHROMIUM")
    if override:
        return override
    return next((path for path in map(shutil.which, CHROMIUM_NAMES) if path), None)


def run_in_chromium(web_folder, feeds: dict, output_names: list, timed=("one", "many"), isolated=False,
                    timeout_s=TIMEOUT_S) -> BrowserRun:
    """Run the bundle in `web_folder` on `feeds` ({set name: {input name: numpy array}}, with a "held" set)."""
    chromium = find_chromium()
    if chromium is None:
        raise BrowserUnavailable(f"no Chromium found (looked for {', '.join(CHROMIUM_NAMES)} on PATH; set "
                                 "EMBER_CHROMIUM)")
    bench = _Bench(Path(web_folder), feeds, output_names, list(timed))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler(web_folder, isolated=isolated, quiet=True,
                                                           handler_class=_BenchFiles))
    server.bench = bench
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        result = _open_page(chromium, f"http://127.0.0.1:{server.server_address[1]}/__ember_bench.html",
                            bench, timeout_s)
    finally:
        server.shutdown()
        server.server_close()
    if "error" in result:
        raise PageError(f"the web bundle failed in Chromium: {result['error']}")
    outputs = [np.asarray(o["data"], np.float32).reshape(o["dims"]) for o in result["outputs"]]
    version = re.search(r"(?:Headless)?Chrome/(\d+)", result.get("userAgent", ""))
    return BrowserRun(outputs, result["latency"], int(result["threads"]), bool(result["isolated"]),
                      f"Chromium {version.group(1)}" if version else "Chromium")


class _Bench:
    """What one page load is sent, and what it posts back."""

    def __init__(self, folder, feeds, output_names, timed):
        self.index_html = (folder / "index.html").read_text()
        self.arrays, specs = {}, {}
        for set_name, inputs in feeds.items():
            specs[set_name] = []
            for index, (name, array) in enumerate(inputs.items()):
                url = f"/__ember__/feed/{set_name}/{index}"
                array = np.ascontiguousarray(array)
                self.arrays[url] = array.astype(np.uint8) if array.dtype == np.bool_ else array
                specs[set_name].append({"name": name, "dtype": str(array.dtype),
                                        "shape": list(array.shape), "url": url})
        self.plan = json.dumps({"feeds": specs, "outputs": output_names, "timed": timed, **TIMING}).encode()
        self.result, self.answered = None, threading.Event()


class _BenchFiles(BundleFiles):
    def do_GET(self):
        bench = self.server.bench
        if self.path == "/__ember_bench.html":
            page = bench.index_html.replace("</body>", '<script src="/__ember__/bench.js"></script>\n</body>')
            return self._send(page.encode(), "text/html")
        if self.path == "/__ember__/bench.js":
            return self._send(BENCH_JS.read_bytes(), "text/javascript")
        if self.path == "/__ember__/plan.json":
            return self._send(bench.plan, "application/json")
        if self.path in bench.arrays:
            return self._send(bench.arrays[self.path].tobytes(), "application/octet-stream")
        return super().do_GET()

    def do_POST(self):
        if self.path != "/__ember__/result":
            return self.send_error(404)
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.bench.result = json.loads(body)
        self.server.bench.answered.set()
        self._send(b"{}", "application/json")

    def _send(self, body: bytes, content_type: str):
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _open_page(chromium, url, bench, timeout_s) -> dict:
    with tempfile.TemporaryDirectory(prefix="ember-chromium-") as profile, tempfile.TemporaryFile() as log:
        try:
            process = subprocess.Popen([chromium, *CHROMIUM_ARGS, f"--user-data-dir={profile}", url],
                                       stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        except OSError as error:
            raise BrowserUnavailable(f"{chromium} did not start: {error}") from None
        try:
            deadline = time.monotonic() + timeout_s
            while not bench.answered.wait(0.2):
                if process.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    tail = log.read().decode(errors="replace").strip().splitlines()[-5:]
                    why = f"exited with {process.returncode}" if process.returncode is not None else \
                        f"gave no answer in {timeout_s} s"
                    raise BrowserUnavailable(f"{chromium} {why}" + (f": {' | '.join(tail)}" if tail else ""))
            return bench.result
        finally:
            _stop(process)


def _stop(process):
    # Chromium starts helper processes (zygote, renderer, GPU); its own session holds them all.
    for sig, wait_s in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(wait_s)
            break
        except subprocess.TimeoutExpired:
            continue
