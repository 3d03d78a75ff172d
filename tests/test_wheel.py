"""The wheel holds ember's modules and the web template, and none of the tests or test helpers."""
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _is_test(name: str) -> bool:
    return name.endswith("_test.py") or Path(name).name == "conftest.py"


@pytest.mark.slow
def test_wheel_has_the_modules_and_web_template_but_no_tests(tmp_path):
    # Built from a copy: setuptools builds in the source folder, and a build/ left there by an older
    # build would carry its files into the wheel.
    source = tmp_path / "source"
    shutil.copytree(ROOT / "ember", source / "ember", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(ROOT / name, source / name)
    # --no-build-isolation: the build uses this environment's setuptools, no network.
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-cache-dir",
                            "-q", "-w", str(tmp_path / "wheel"), str(source)], capture_output=True, text=True,
                           timeout=300)
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
