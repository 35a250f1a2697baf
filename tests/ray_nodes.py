"""A Ray head node for the cluster tests, on loopback only, as its own ``ray start`` process.

Importing this module sets the environment Ray reads when it is imported: 127.0.0.1 stays loopback
(Ray otherwise swaps it for this machine's network address unless clusters are "off", as on macOS),
and token auth uses one fresh token shared by the node and the drivers (not the one in ~/.ray).
Import it before Ray. With clusters "off", Ray refuses a second node (``ray start --address``).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
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
