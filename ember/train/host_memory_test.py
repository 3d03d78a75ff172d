import subprocess
import sys

import pytest

from ember.train.host_memory import glibc

# A step's worth of activations: four 6 MB tensors written, then freed. glibc's thresholds start at
# 128 KiB and then move with the process's history, so the baseline pins them there (mmap per block,
# page faults every step); kept, the blocks are reused. The trainer is imported first, as in fit():
# in a process holding little more than torch, 3 runs in 8 still faulted ~300 pages a step with the
# thresholds kept (with or without ASLR; not understood), none in 8 with the trainer loaded.
_PAGE_FAULTS_PER_STEP = """
import resource, sys, torch
import ember.train.trainer
from ember.train import host_memory
libc = host_memory.glibc()
assert libc.mallopt(-3, 128 * 1024) and libc.mallopt(-1, 128 * 1024)  # M_MMAP/M_TRIM_THRESHOLD
if sys.argv[1] == "keep":
    assert host_memory.keep_freed_memory()
def step():
    tensors = [torch.ones(1_500_000) for _ in range(4)]
    del tensors
for _ in range(3):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    step()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20)
"""


def _faults_per_step(mode: str) -> float:
    result = subprocess.run([sys.executable, "-c", _PAGE_FAULTS_PER_STEP, mode], capture_output=True, text=True,
                            check=True)
    return float(result.stdout.split()[-1])


@pytest.mark.skipif(glibc() is None, reason="mallopt's thresholds are glibc's")
def test_freed_tensor_memory_is_reused_instead_of_faulted_back_in():
    default, kept = _faults_per_step("default"), _faults_per_step("keep")
    assert default > 1000, default  # 24 MB a step come back from the kernel: ~6,000 pages
    assert kept < 30, kept  # measured 0


@pytest.mark.skipif(glibc() is None, reason="mallopt's thresholds are glibc's")
def test_fit_keeps_freed_memory_unless_told_not_to():
    script = """
import numpy as np, torch, ember
from ember.train import host_memory
model = ember.wrap(torch.nn.Linear(4, 2))
model.compile("sgd", "cross_entropy", reuse_host_memory={flag})
model.fit(np.zeros((8, 4), np.float32), np.zeros(8, np.int64), epochs=1, verbose=0)
print(host_memory.freed_memory_kept())
"""
    for flag, expected in (("True", "True"), ("False", "False")):
        result = subprocess.run([sys.executable, "-c", script.format(flag=flag)], capture_output=True, text=True,
                                check=True)
        assert result.stdout.split()[-1] == expected


@pytest.mark.skipif(glibc() is None, reason="mallopt's thresholds are glibc's")
def test_predict_on_an_uncompiled_model_leaves_the_process_settings_alone():
    script = """
import numpy as np, torch, ember
from ember.train import host_memory
ember.wrap(torch.nn.Linear(4, 2)).predict(np.zeros((8, 4), np.float32))
print(host_memory.freed_memory_kept())
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.split()[-1] == "False"
