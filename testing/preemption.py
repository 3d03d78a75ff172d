"""For the preemption tests: a fake `scontrol` that records its calls."""
import os
from pathlib import Path

JOB_ID = "4242"


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
