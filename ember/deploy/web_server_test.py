import os
import subprocess
import sys
import urllib.error
import urllib.request

import pytest


@pytest.fixture
def bundle(tmp_path):
    folder = tmp_path / "web"
    folder.mkdir()
    (folder / "index.html").write_text("<html></html>")
    (folder / "ort-wasm-simd-threaded.wasm").write_bytes(b"\0asm")
    (folder / "sub").mkdir()
    (tmp_path / "secret.txt").write_text("not for the page")
    os.symlink(tmp_path / "secret.txt", folder / "leak.txt")
    return folder


@pytest.fixture
def served(bundle):
    process = subprocess.Popen([sys.executable, "-m", "ember.cli", "serve-web", str(bundle), "--port", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = process.stdout.readline()
        assert line.startswith("ember serve-web: "), line
        yield line.split(" on ")[1].split("/ runs")[0]
    finally:
        process.terminate()
        process.wait(10)


def _get(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, b""


def test_serve_web_sends_isolation_headers_and_wasm_type(served):
    status, headers, body = _get(served + "/")
    assert status == 200 and body == b"<html></html>"
    assert headers["Cross-Origin-Opener-Policy"] == "same-origin"
    assert headers["Cross-Origin-Embedder-Policy"] == "require-corp"
    status, headers, _ = _get(served + "/ort-wasm-simd-threaded.wasm")
    assert status == 200 and headers["Content-Type"] == "application/wasm"


def test_serve_web_serves_nothing_outside_the_bundle(served):
    for path in ("/leak.txt", "/../secret.txt", "/%2e%2e/secret.txt", "/sub/", "/missing.js"):
        status, _, body = _get(served + path)
        assert status == 404 and b"not for the page" not in body, path


def test_serve_web_refuses_a_folder_without_index_html(tmp_path):
    result = subprocess.run([sys.executable, "-m", "ember.cli", "serve-web", str(tmp_path), "--port", "0"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "expected index.html" in result.stderr
