"""For tests of the web bundle: serve a folder on loopback and open its page in Debian's headless Chromium."""
import contextlib
import http.server
import threading

from ember.deploy.web_server import handler
from ember.deploy.web_timing import CHROMIUM_ARGS, find_chromium


@contextlib.contextmanager
def bundle_page(folder):
    """A Playwright page on `folder`/index.html once the bundle says "ready"; yields (page, page errors)."""
    from playwright.sync_api import sync_playwright

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler(folder, isolated=False, quiet=True))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=find_chromium(), headless=True,
                                                 args=[a for a in CHROMIUM_ARGS if a != "--headless"])
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
