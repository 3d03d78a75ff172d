"""The one build rule pyproject.toml cannot state: the tests beside the modules stay out of the wheel.

setuptools' declarative options filter packages (packages.find exclude) and data files
(exclude-package-data), never a package's own .py modules, so `*_test.py` and `conftest.py` are dropped
here, when build_py lists each package's modules. Everything else is configured in pyproject.toml."""
from setuptools import setup
from setuptools.command.build_py import build_py


class BuildPyWithoutTests(build_py):
    def find_package_modules(self, package, package_dir):
        return [(package_name, module, path)
                for package_name, module, path in super().find_package_modules(package, package_dir)
                if not (module.endswith("_test") or module == "conftest")]


setup(cmdclass={"build_py": BuildPyWithoutTests})
