"""Every reader of ember's own files, fed mutations of a valid file (tests/fuzzing.py), raises only
its documented error type and allocates no more than a bounded amount beyond what reading the
valid file took. EMBER_FUZZ_EXAMPLES sets the number of mutations per reader (default: a few
seconds' worth; e.g. 20000 for a thorough run)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = int(os.environ.get("EMBER_FUZZ_EXAMPLES", "1500"))
# Reading a mutation may allocate a few copies of it (bytes, zip member, tensors); the inputs are
# kilobytes, so anything near this bound is the file choosing how much memory ember allocates.
RSS_GROWTH_BOUND = 64 * 1024 * 1024


@pytest.mark.slow
@pytest.mark.parametrize("reader", ["model", "backup"])
def test_mutated_files_raise_only_embers_errors(reader):
    script = Path(__file__).with_name("fuzzing.py")
    run = subprocess.run([sys.executable, str(script), reader, str(EXAMPLES), "1"], capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    print(f"\n{reader}: {result['cases']} mutations in {result['seconds']} s, inputs up to "
          f"{result['largest_input']} bytes, peak RSS {result['baseline_rss'] >> 20} -> {result['peak_rss'] >> 20} MiB")
    assert result["failures"] == [], json.dumps(result["failures"], indent=1)
    assert result["peak_rss"] - result["baseline_rss"] < RSS_GROWTH_BOUND
