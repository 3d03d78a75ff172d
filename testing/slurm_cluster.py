"""A one-node Slurm cluster for a test: munged, slurmctld and slurmd from Debian's slurm-wlm, started
as root with a configuration in a temporary folder (its own ports, state and munge socket), and
stopped after. `srun` reaches it through SLURM_CONF."""
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

PROGRAMS = ("munged", "slurmctld", "slurmd", "srun", "sinfo")


def missing() -> str | None:
    """Why no cluster can start here, or None."""
    absent = [name for name in PROGRAMS if shutil.which(name) is None]
    if absent:
        return f"Debian's slurm-wlm is not installed ({', '.join(absent)} missing)"
    if os.geteuid() != 0:
        return "starting slurmd needs root"
    return None


@contextlib.contextmanager
def slurm_cluster(folder: Path, cpus=2):
    """Yields the environment (SLURM_CONF, nothing of an outer job) for srun on a fresh one-node cluster."""
    folder = Path(folder)
    for name in ("state", "spool", "run", "log", "munge"):
        (folder / name).mkdir(parents=True, exist_ok=True)
    host, ports = socket.gethostname().split(".")[0], _free_ports(2)
    conf = folder / "slurm.conf"
    conf.write_text("\n".join([
        "ClusterName=ember", f"SlurmctldHost={host}(127.0.0.1)", "AuthType=auth/munge",
        f"AuthInfo=socket={folder}/munge/munge.socket", "SlurmUser=root", "SlurmdUser=root",
        "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_CPU", "SwitchType=switch/none", "MpiDefault=none",
        f"SlurmctldPort={ports[0]}", f"SlurmdPort={ports[1]}", f"StateSaveLocation={folder}/state",
        f"SlurmdSpoolDir={folder}/spool", f"SlurmctldPidFile={folder}/run/slurmctld.pid",
        f"SlurmdPidFile={folder}/run/slurmd.pid", f"SlurmctldLogFile={folder}/log/slurmctld.log",
        f"SlurmdLogFile={folder}/log/slurmd.log", "ReturnToService=2", "JobCompType=jobcomp/none",
        "AccountingStorageType=accounting_storage/none",
        f"NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} State=UNKNOWN",
        f"PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES", ""]))
    env = {name: value for name, value in os.environ.items() if not name.startswith("SLURM_")}
    env["SLURM_CONF"] = str(conf)
    daemons = [
        ["munged", "--force", "--foreground", f"--socket={folder}/munge/munge.socket",
         f"--pid-file={folder}/munge/munged.pid", f"--log-file={folder}/munge/munged.log",
         f"--seed-file={folder}/munge/seed"],
        ["slurmctld", "-D", "-c", "-f", str(conf)],
        ["slurmd", "-D", "-c", "-f", str(conf)],
    ]
    started = []
    try:
        for command in daemons:
            started.append(subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                            start_new_session=True))
            time.sleep(0.5)
        _wait_for_idle_node(env, folder)
        yield env
    finally:
        for process in reversed(started):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def _wait_for_idle_node(env, folder, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = subprocess.run(["sinfo", "-h", "-o", "%t"], env=env, capture_output=True, text=True).stdout.strip()
        if state.startswith("idle"):
            return
        time.sleep(0.5)
    logs = "".join((folder / "log" / name).read_text()[-1500:] for name in ("slurmctld.log", "slurmd.log")
                   if (folder / "log" / name).exists())
    raise RuntimeError(f"the one-node Slurm cluster did not come up in {timeout} s (sinfo: {state!r}):\n{logs}")


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()
