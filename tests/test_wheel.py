"""The wheel holds ember's modules, the web template and onnxruntime-web's files (with their license), and
none of the tests or test helpers."""
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _is_test(name: str) -> bool:
    return name.endswith("_test.py") or Path(name).name == "conftest.py"


def _build_wheel(tmp_path, web_runtime: Path):
    """(the pip wheel run, the source folder): built from a copy, since setuptools builds in the source
    folder and a build/ left there by an older build would carry its files into the wheel."""
    source = tmp_path / "source"
    shutil.copytree(ROOT / "ember", source / "ember", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(ROOT / name, source / name)
    # The copy has no node_modules: onnxruntime-web's files come from EMBER_ORT_WEB_DIST.
    # --no-build-isolation: the build uses this environment's setuptools, no network.
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-cache-dir",
                            "-q", "-w", str(tmp_path / "wheel"), str(source)], capture_output=True, text=True,
                           timeout=300, env={**os.environ, "EMBER_ORT_WEB_DIST": str(web_runtime)})
    return build, source


@pytest.mark.slow
def test_wheel_has_the_modules_web_template_and_runtime_but_no_tests(tmp_path):
    build, source = _build_wheel(tmp_path, ROOT / "node_modules" / "onnxruntime-web" / "dist")
    assert build.returncode == 0, f"pip wheel failed:\n{build.stdout[-3000:]}\n{build.stderr[-3000:]}"
    [wheel] = (tmp_path / "wheel").glob("ember-*.whl")
    packaged = set(zipfile.ZipFile(wheel).namelist())

    in_source = {path.relative_to(source).as_posix() for path in (source / "ember").rglob("*") if path.is_file()}
    tests = {name for name in in_source if _is_test(name)}
    assert tests, "the checkout should have tests beside the modules, or this test proves nothing"
    assert sorted(packaged & tests) == []
    assert sorted(name for name in packaged if name.startswith("testing/")) == []  # the test helpers
    modules = {name for name in in_source if name.endswith(".py")} - tests
    assert sorted(modules - packaged) == []
    web_template = {name for name in in_source if name.startswith("ember/deploy/web/")}
    assert web_template and sorted(web_template - packaged) == []
    runtime = json.loads((source / "ember/deploy/web/runtime.json").read_text())
    carried = {f"ember/deploy/web_runtime/{name}" for name in [*runtime["files"], runtime["license"]]}
    assert sorted(carried - packaged) == []


@pytest.mark.slow
def test_a_wheel_build_without_onnxruntime_web_says_how_to_get_it(tmp_path):
    build, _ = _build_wheel(tmp_path, tmp_path / "nowhere")
    assert build.returncode != 0 and "run `npm ci` first" in build.stdout + build.stderr
