"""The documentation site builds in strict mode (no broken link, anchor or API reference) with every page of
its nav, and the README's links to docs/ point at files that exist (mkdocs does not read the README)."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _nav_pages(entries) -> list:
    """The Markdown paths named anywhere in mkdocs.yml's nav."""
    pages = []
    for entry in entries:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        pages.extend(_nav_pages(value) if isinstance(value, list) else [value])
    return pages


@pytest.mark.slow
def test_the_site_builds_in_strict_mode_with_every_nav_page(tmp_path):
    build = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
                           cwd=ROOT, capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert build.returncode == 0, build.stderr
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    for page in _nav_pages(config["nav"]):
        built = "index.html" if page == "index.md" else page.removesuffix(".md").removesuffix("/index") + "/index.html"
        assert (tmp_path / "site" / built).is_file(), f"{page} is in the nav but was not built"


def test_the_readme_links_to_docs_pages_that_exist():
    readme = (ROOT / "README.md").read_text()
    targets = re.findall(r"\]\((docs/[^)#]+)", readme)
    assert targets, "the README links to the docs pages"
    missing = [target for target in targets if not (ROOT / target).is_file()]
    assert not missing, f"README links to missing files: {missing}"
