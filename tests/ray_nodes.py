"""A Ray head node for the cluster tests, on loopback only, as its own ``ray start`` process.

Importing this module sets the environment Ray reads when it is imported: 127.0.0.1 stays loopback
(Ray otherwise swaps it for this machine's network address unless clusters are "off", as on macOS),
and token auth uses one fresh token shared by the node and the drivers (not the one in ~/.ray).
Import it before Ray. With clusters "off", Ray refuses a second node (``ray start --address``): the
two-node cluster (:func:`start_two_nodes`) runs with clusters "on", on addresses of a veth pair between
this network namespace and one made for the second node, so it never reaches past this machine.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.event_servers import free_port

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_AUTH_MODE", "token")
os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))

RAY = str(Path(sys.executable).with_name("ray"))
LOOPBACK = "127.0.0.1"


def start_head(cpus: int, temp_dir: Path) -> str:
    """Starts a head node with ``cpus`` CPUs and no dashboard; returns its address."""
    port = free_port()
    subprocess.run(
        [RAY, "start", "--head", f"--port={port}", f"--node-ip-address={LOOPBACK}", f"--num-cpus={cpus}",
         "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp_dir}"],
        check=True, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    return f"{LOOPBACK}:{port}"


def stop_all() -> None:
    """``ray stop --force``: every Ray process these tests started."""
    subprocess.run([RAY, "stop", "--force"], capture_output=True, timeout=120)


@dataclass(frozen=True)
class TwoNodes:
    """A head node in this network namespace and a second node in a namespace of its own, joined by a
    veth pair whose two addresses exist only on this machine."""

    address: str
    head_ip: str
    node_ip: str
    netns: str
    env: dict[str, str]
    """The environment for drivers of this cluster: clusters "on" (a second node is allowed)."""


def network_namespaces_available() -> bool:
    """True when this process may create network namespaces (root with iproute2)."""
    return os.geteuid() == 0 and shutil.which("ip") is not None


def start_two_nodes(cpus: int, temp_dir: Path) -> TwoNodes:
    """Starts a head (``ray start --head``) on one end of a new veth pair and a second node (its own
    ``ray start``) in a new network namespace on the other end, ``cpus`` CPUs each."""
    tag = f"{os.getpid() % 10000}"
    netns, host_end, node_end = f"svray{tag}", f"svh{tag}", f"svn{tag}"
    subnet = f"10.231.{os.getpid() % 250}"
    head_ip, node_ip = f"{subnet}.1", f"{subnet}.2"
    for command in (
        f"ip netns add {netns}",
        f"ip link add {host_end} type veth peer name {node_end}",
        f"ip link set {node_end} netns {netns}",
        f"ip addr add {head_ip}/24 dev {host_end}",
        f"ip link set {host_end} up",
        f"ip netns exec {netns} ip addr add {node_ip}/24 dev {node_end}",
        f"ip netns exec {netns} ip link set {node_end} up",
        f"ip netns exec {netns} ip link set lo up",
    ):
        subprocess.run(command.split(), check=True, capture_output=True, timeout=30)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"}
    port = free_port()
    common = [f"--num-cpus={cpus}", "--disable-usage-stats"]
    subprocess.run(
        [RAY, "start", "--head", f"--port={port}", f"--node-ip-address={head_ip}",
         "--include-dashboard=false", f"--temp-dir={temp_dir / 'head'}", *common],
        check=True, capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    address = f"{head_ip}:{port}"
    subprocess.run(
        ["ip", "netns", "exec", netns, RAY, "start", f"--address={address}", f"--node-ip-address={node_ip}",
         f"--temp-dir={temp_dir / 'node'}", *common],
        check=True, capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    return TwoNodes(address, head_ip, node_ip, netns, env)


def node_pids(nodes: TwoNodes) -> list[int]:
    """The processes of the second node (everything in its network namespace)."""
    listed = subprocess.run(["ip", "netns", "pids", nodes.netns], capture_output=True, text=True, timeout=30)
    return [int(pid) for pid in listed.stdout.split()]


def kill_node(nodes: TwoNodes) -> float:
    """SIGKILLs every process of the second node, as a machine that loses power; returns when (epoch s)."""
    killed_at = time.time()
    for pid in node_pids(nodes):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return killed_at


def remove_two_nodes(nodes: TwoNodes) -> None:
    """Stops both nodes and removes the namespace and the veth pair."""
    stop_all()
    kill_node(nodes)
    subprocess.run(["ip", "netns", "del", nodes.netns], capture_output=True, timeout=30)
