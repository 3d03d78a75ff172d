"""Every example (one per code block of the seed article) runs in quick mode, so none rots."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.py"))


@pytest.mark.slow
@pytest.mark.parametrize("script", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs_in_quick_mode(script, tmp_path):
    env = {**os.environ, "EMBER_QUICK": "1", "MPLBACKEND": "Agg", "EMBER_EXAMPLE_OUT": str(tmp_path)}
    result = subprocess.run([sys.executable, script.name], cwd=script.parent, env=env, capture_output=True,
                            text=True, timeout=600, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, f"{script.name} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"


def test_there_is_an_example_for_each_seed_block():
    names = {p.stem for p in EXAMPLES}
    assert {"define_pytorch", "define_keras", "train_loop", "train_fit"} <= names
