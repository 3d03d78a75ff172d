"""Hot reload under load: a new version becomes the default without a failed request; a broken one is reported."""
import json
import shutil
import time

import httpx
import pytest

from testing.serve import BackToBackClients, ServerProcess, exported

BODY = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [0.1, 0.2, 0.3, 0.4]}]}


class Clients(BackToBackClients):
    """Two clients sending requests back to back until stopped; they record (status, version)."""

    def __init__(self, url: str):
        super().__init__(url, "/v2/models/tiny/infer", BODY)

    def record(self, started, seconds, answer):
        if not isinstance(answer, httpx.Response):
            return None, repr(answer)
        return answer.status_code, answer.json().get("model_version") if answer.status_code == 200 else answer.text

    def wait_for_version(self, version: str, timeout: float = 60.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.answers and self.answers[-1][1] == version:
                return
            time.sleep(0.05)
        raise TimeoutError(f"version {version} was not served within {timeout}s; last answers {self.answers[-3:]}")


def status(url: str) -> dict:
    return {s["version"]: s for s in httpx.get(f"{url}/v1/models/tiny").json()["model_version_status"]}


@pytest.mark.slow
def test_new_version_is_loaded_under_load_and_a_broken_one_is_reported(tmp_path):
    repository = tmp_path / "models"
    shutil.copytree(exported("tiny", seed=0), repository / "tiny" / "1")
    config = tmp_path / "serve.json"
    config.write_text(json.dumps({"poll_seconds": 0.2}))
    with ServerProcess(repository, "--config", config) as server, Clients(server.url) as clients:
        clients.wait_for_version("1")
        shutil.copytree(exported("tiny", seed=1), repository / "tiny" / "2")  # copied in place, not renamed
        clients.wait_for_version("2")

        broken = repository / "tiny" / "3"
        broken.mkdir()
        (broken / "model.onnx").write_bytes(b"not an onnx model")
        (broken / "signature.json").write_text((repository / "tiny" / "2" / "signature.json").read_text())
        deadline = time.monotonic() + 30
        while "3" not in status(server.url) and time.monotonic() < deadline:
            time.sleep(0.1)
        version_3 = status(server.url).get("3")
        served_after_broken = len(clients.answers)
        time.sleep(0.5)

    assert version_3 is not None and version_3["state"] == "END"
    assert "3/model.onnx failed" in version_3["status"]["error_message"]
    failures = [a for a in clients.answers if a[0] != 200]
    assert not failures, failures[:5]
    versions = [version for _, version in clients.answers]
    assert versions[0] == "1" and "2" in versions
    assert len(versions) > served_after_broken and all(v == "2" for v in versions[served_after_broken:])
