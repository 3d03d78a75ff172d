"""schemathesis fuzzes `ember serve` from its own OpenAPI document: no 5xx answer, no crash."""
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from testing.serve import ServerProcess, exported

SCHEMATHESIS_CONFIG = """
[generation]
max-examples = {examples}
[parameters]
"path.name" = "{model}"
"path.version" = 1
"""


@pytest.mark.slow
def test_openapi_fuzzing_finds_no_server_error(tmp_path):
    repository = tmp_path / "models"
    for model in ("tiny", "text"):
        shutil.copytree(exported(model), repository / model / "1")
    with ServerProcess(repository) as server:
        for model in ("tiny", "text"):  # path parameters fixed to a served model, so bodies reach the runtime
            config = tmp_path / f"schemathesis-{model}.toml"
            config.write_text(SCHEMATHESIS_CONFIG.format(model=model, examples=5))
            command = [str(Path(sys.executable).with_name("schemathesis")), "--config-file", str(config), "run",
                       f"{server.url}/openapi.json", "--checks", "not_a_server_error", "--seed", "1",
                       "--request-timeout", "10", "--phases", "examples,coverage,fuzzing"]
            run = subprocess.run(command, capture_output=True, text=True, timeout=240)
            assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
            assert "Server error" not in run.stdout
        assert httpx.get(f"{server.url}/v2/health/ready").json() == {"ready": True}  # still up
        assert server.process.poll() is None
