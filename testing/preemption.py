"""For the preemption tests: a training process pauses after a chosen batch until the test has
signalled it (so the signal lands at a known step), and a fake `scontrol` that records its calls."""
import contextlib
import os
import subprocess
import time
from pathlib import Path

JOB_ID = "4242"


def pause(folder: Path, name: str) -> None:
    """In the training process: say `name` reached its batch (with its pid), wait for the go."""
    (folder / f"{name}.paused").write_text(str(os.getpid()))
    deadline = time.monotonic() + 120
    while not (folder / "go").exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name}: no go from the test in {folder}")
        time.sleep(0.01)


@contextlib.contextmanager
def started(**popen_arguments):
    """A subprocess that a failing test does not leave running: SIGTERM (`ember launch` passes it
    on to its workers and kills them 30 s later), then SIGKILL."""
    job = subprocess.Popen(**popen_arguments)
    try:
        yield job
    finally:
        if job.poll() is None:
            job.terminate()
            try:
                job.wait(60)
            except subprocess.TimeoutExpired:
                job.kill()
                job.wait()


def paused_pids(folder: Path, names, job) -> list:
    """In the test: the pids of `names` once each has paused; `job` (a Popen) is watched so that
    a process that died does not leave the test waiting."""
    deadline, pids = time.monotonic() + 240, []
    for name in names:
        paused = folder / f"{name}.paused"
        while not (paused.exists() and paused.read_text()):
            if time.monotonic() > deadline or job.poll() is not None:
                raise AssertionError(f"{name} never paused: {job.communicate()[1][-3000:]}")
            time.sleep(0.01)
        pids.append(int(paused.read_text()))
    return pids


def signal_paused(folder: Path, names, signum: int, job) -> None:
    """In the test: once every one of `names` has paused, send each `signum`, then the go."""
    for pid in paused_pids(folder, names, job):
        os.kill(pid, signum)
    go(folder)


def go(folder: Path) -> None:
    (folder / "go").touch()


def slurm_with_fake_scontrol(folder: Path) -> dict:
    """Environment variables of a Slurm job whose `scontrol` appends its arguments (and the RANK of
    the process calling it) to `folder/scontrol.log`."""
    folder.mkdir(parents=True, exist_ok=True)
    scontrol = folder / "scontrol"
    scontrol.write_text(f'#!/bin/sh\necho "$* rank=${{RANK:-none}}" >> {folder / "scontrol.log"}\n')
    scontrol.chmod(0o755)
    return {"SLURM_JOB_ID": JOB_ID, "PATH": f"{folder}{os.pathsep}{os.environ['PATH']}"}


def scontrol_calls(folder: Path) -> list:
    log = folder / "scontrol.log"
    return log.read_text().splitlines() if log.exists() else []
