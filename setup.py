"""The build rules pyproject.toml cannot state.

- The tests beside the modules stay out of the wheel: setuptools' declarative options filter
  packages and data files, never a package's own .py modules, so `*_test.py` and `conftest.py` are
  dropped here, when build_py lists each package's modules.
- The wheel carries the onnxruntime-web files the "web" export copies into each bundle
  (ember/deploy/web/runtime.json names them), from node_modules after `npm ci` or from
  $EMBER_ORT_WEB_DIST, into ember/deploy/web_runtime/: an installed ember needs no npm. An editable
  install reads them from node_modules in place.
Everything else is configured in pyproject.toml."""
import json
import os
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

WEB = Path(__file__).parent / "ember" / "deploy" / "web"


class BuildPy(build_py):
    def find_package_modules(self, package, package_dir):
        return [(package_name, module, path)
                for package_name, module, path in super().find_package_modules(package, package_dir)
                if not (module.endswith("_test") or module == "conftest")]

    def run(self):
        super().run()
        if not getattr(self, "editable_mode", False):
            self.copy_web_runtime(Path(self.build_lib) / "ember" / "deploy" / "web_runtime")

    def copy_web_runtime(self, target: Path):
        runtime = json.loads((WEB / "runtime.json").read_text())
        dist = Path(os.environ.get("EMBER_ORT_WEB_DIST") or Path(__file__).parent / "node_modules" / runtime["package"]
                    / "dist")
        missing = [name for name in runtime["files"] if not (dist / name).is_file()]
        if missing:
            raise SystemExit(f"the wheel carries {runtime['package']}'s files, but {dist} lacks {missing}: run "
                             "`npm ci` first (package.json pins the version) or set EMBER_ORT_WEB_DIST")
        target.mkdir(parents=True, exist_ok=True)
        for name in runtime["files"]:
            shutil.copyfile(dist / name, target / name)
        shutil.copyfile(WEB / runtime["license"], target / runtime["license"])


setup(cmdclass={"build_py": BuildPy})
