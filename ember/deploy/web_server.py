"""`ember serve-web DIR`: a static file server for a web bundle, with the headers multi-threaded wasm needs.

onnxruntime-web runs on several threads only in a cross-origin isolated page, which takes two
response headers (COOP `same-origin`, COEP `require-corp`); `python -m http.server` sends neither,
so its pages run on one thread. `BundleFiles` serves one folder and nothing outside it (no
directory listings, no symlinks leading out), with the MIME types ES modules and wasm need.
The web exporter times bundles in Chromium through the same handler (web_timing.py).
"""
import functools
import http.server
from pathlib import Path

ISOLATION_HEADERS = {"Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp"}


class BundleFiles(http.server.SimpleHTTPRequestHandler):
    """GET/HEAD of the files under `directory`; `isolated` adds the cross-origin isolation headers."""

    # Browsers refuse ES modules served as anything but JavaScript; older Pythons don't know .mjs.
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, ".mjs": "text/javascript",
                      ".js": "text/javascript", ".wasm": "application/wasm", ".json": "application/json"}

    def __init__(self, *args, isolated=True, quiet=False, **kwargs):
        self.isolated, self.quiet = isolated, quiet
        super().__init__(*args, **kwargs)

    def end_headers(self):
        if self.isolated:
            for name, value in ISOLATION_HEADERS.items():
                self.send_header(name, value)
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def send_head(self):
        path = Path(self.translate_path(self.path))
        root = Path(self.directory).resolve()
        if path.is_dir():
            path = path / "index.html"
        if not path.resolve().is_relative_to(root) or not path.is_file():
            self.send_error(404, "not a file of this bundle")
            return None
        return super().send_head()

    def list_directory(self, path):
        self.send_error(404, "no directory listings")

    def log_message(self, format, *args):
        if not self.quiet:
            super().log_message(format, *args)


def handler(directory, isolated=True, quiet=False, handler_class=BundleFiles):
    return functools.partial(handler_class, directory=str(directory), isolated=isolated, quiet=quiet)


def add_arguments(parser):
    parser.add_argument("directory", help="a web bundle folder (the `web/` of an export)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--no-isolation", action="store_true",
                        help="leave out the COOP/COEP headers (the page then runs on one thread)")


def run(args) -> int:
    directory = Path(args.directory)
    if not (directory / "index.html").is_file():
        raise FileNotFoundError(f"{directory} is not a web bundle: expected index.html in it (export with "
                                "format='web' and pass its web/ folder)")
    server = http.server.ThreadingHTTPServer((args.host, args.port),
                                             handler(directory, isolated=not args.no_isolation))
    threads = "on one thread (no isolation headers)" if args.no_isolation else \
        "on up to 4 of the visitor's cores (COOP/COEP sent)"
    print(f"ember serve-web: {directory} on http://{args.host}:{server.server_address[1]}/ runs wasm {threads}",
          flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0
