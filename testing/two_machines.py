"""Two machines on one: two network namespaces joined by a veth pair, for multi-node tests.

Each machine has its own address (10.231.0.1, 10.231.0.2), its own loopback, and its own host
name (node0, node1: a UTS namespace per command) that resolves, on both, to its veth address
(`ip netns exec` puts /etc/netns/NAME/hosts over /etc/hosts), as on machines whose names DNS
resolves. That matters: gloo binds the address its host name resolves to, and torchrun's c10d
rendezvous tells the other nodes to meet rank 0 at its host name; a host name that resolves to
a loopback address (this VM's 127.0.0.1, Debian's 127.0.1.1) needs GLOO_SOCKET_IFNAME and
`--local-addr` instead (docs/guides/distributed.md).
"""
import contextlib
import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

SUBNET = "10.231.0"
NETNS_ETC = Path("/etc/netns")  # NETNS_ETC/NAME/hosts is the hosts file inside namespace NAME


@dataclass(frozen=True)
class Machine:
    host_name: str
    address: str
    namespace: str
    interface: str

    def command(self, argv) -> list:
        """argv run on this machine: in its network namespace, under its host name."""
        return ["ip", "netns", "exec", self.namespace, "unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"',
                self.host_name, *argv]


@contextlib.contextmanager
def two_machines():
    """Yields the two Machines, or None where namespaces cannot be made (not root, no `ip`, or
    `ip netns add` refused), saying why on stdout. Always deletes what it made."""
    token = secrets.token_hex(3)  # unique names: tests may run side by side
    machines = [Machine(f"node{i}", f"{SUBNET}.{i + 1}", f"ember-test-{token}-{i}", f"ve{token}{i}") for i in (0, 1)]
    made = []
    try:
        _make(machines, made)
    except (OSError, subprocess.CalledProcessError) as error:
        print(f"two machines: no network namespaces here ({_reason(error)})")
        machines = None
    try:
        yield machines
    finally:
        _delete(made)


def _make(machines, made):
    if os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("unshare"):
        raise OSError("needs root, `ip` and `unshare`")
    first, second = machines
    hosts = "127.0.0.1 localhost\n" + "".join(f"{m.address} {m.host_name}\n" for m in machines)
    if not NETNS_ETC.exists():
        NETNS_ETC.mkdir()
        made.append(("folder", NETNS_ETC))
    for machine in machines:
        _ip("netns", "add", machine.namespace)
        made.append(("netns", machine.namespace))
        folder = NETNS_ETC / machine.namespace
        folder.mkdir()
        made.append(("folder", folder))
        (folder / "hosts").write_text(hosts)
    _ip("link", "add", first.interface, "type", "veth", "peer", "name", second.interface)
    made.append(("link", first.interface))  # gone with its namespace once moved there
    for machine in machines:
        _ip("link", "set", machine.interface, "netns", machine.namespace)
        _ip("-n", machine.namespace, "addr", "add", f"{machine.address}/24", "dev", machine.interface)
        _ip("-n", machine.namespace, "link", "set", machine.interface, "up")
        _ip("-n", machine.namespace, "link", "set", "lo", "up")


def _delete(made):
    for kind, name in reversed(made):
        if kind == "folder":
            shutil.rmtree(name, ignore_errors=True)
        else:
            subprocess.run(["ip", kind, "del", name], capture_output=True)  # the link: already gone, or never moved


def _ip(*args):
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


def _reason(error) -> str:
    if isinstance(error, subprocess.CalledProcessError):
        return f"`{' '.join(error.cmd)}`: {error.stderr.strip()}"
    return str(error)
