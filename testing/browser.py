"""For tests of the web bundle: serve a folder on loopback and open its page in Debian's headless Chromium."""
import contextlib
import functools
import http.server
import threading

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


class _StaticFiles(http.server.SimpleHTTPRequestHandler):
    # Browsers refuse ES modules served as anything but JavaScript; older Pythons don't know .mjs.
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, ".mjs": "text/javascript",
                      ".js": "text/javascript", ".wasm": "application/wasm"}

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def bundle_page(folder):
    """A Playwright page on `folder`/index.html once the bundle says "ready"; yields (page, page errors)."""
    from playwright.sync_api import sync_playwright

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_StaticFiles, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page()
                errors = []
                page.on("pageerror", lambda error: errors.append(str(error)))
                page.goto(f"http://127.0.0.1:{server.server_address[1]}/index.html")
                page.wait_for_function("document.getElementById('status').textContent === 'ready'",
                                       timeout=120_000)
                yield page, errors
            finally:
                browser.close()
    finally:
        server.shutdown()
