"""Running unchanged pipelines on a Ray cluster: ``streamvision cluster run`` (a fleet of sources, an
actor each) and ``streamvision batch`` (a folder of videos, a task each).

Ray is an optional dependency (extra ``cluster``) and is imported only when a cluster command runs.
"""

from __future__ import annotations

import logging
import os
import socket
from types import ModuleType

from streamvision import optional
from streamvision.errors import ClusterError

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'streamvision[cluster]'"
LOOPBACK = "127.0.0.1"
LOCAL_ONLY_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
AUTH_MODE_ENV = "RAY_AUTH_MODE"


def require_ray() -> ModuleType:
    """Imports Ray.

    Raises:
        ClusterError: Ray is not installed; the message names the ``cluster`` extra.
    """
    return optional.require("ray", "the cluster commands", INSTALL_HINT, ClusterError)


def connect(address: str | None, num_cpus: int | None = None) -> ModuleType:
    """Connects to the Ray cluster at ``address``, or starts a local Ray instance on loopback.

    A local instance listens on loopback only, with ``num_cpus`` CPUs (all of this machine's by
    default) and no dashboard. Call
    ``ray.shutdown()`` when done; it also stops a local instance.

    Raises:
        ClusterError: Ray is not installed, or the cluster cannot be reached or started.
    """
    if address is None:
        # Ray swaps a loopback address for this machine's network address unless, as on Windows and
        # macOS, clusters are off; read when Ray is imported, and inherited by the processes it starts.
        os.environ.setdefault(LOCAL_ONLY_ENV, "0")
        # Ray turns token authentication on for a new local instance and says so on every start;
        # asked for explicitly, the same mode starts without the notice.
        os.environ.setdefault(AUTH_MODE_ENV, "token")
    ray = require_ray()
    if ray.is_initialized():
        return ray
    if address is not None:
        check_reachable(address)
    try:
        if address is None:
            ray.init(
                address="local",  # a new instance, never one a `ray start` left on this machine
                num_cpus=num_cpus,
                include_dashboard=False,
                _node_ip_address=LOOPBACK,
                log_to_driver=True,
                configure_logging=False,
            )
        else:
            ray.init(address=address, log_to_driver=True, configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        raise ClusterError(f"cannot connect to {where}: {exc}") from None
    log.info("connected to Ray: %s", ray.cluster_resources())
    return ray


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fails fast when nothing listens at a ``HOST:PORT`` cluster address (Ray itself retries for minutes).

    ``auto`` and ``ray://`` (Ray Client) addresses are left to Ray.

    Raises:
        ClusterError: the address is malformed, or no connection opens within ``timeout`` seconds.
    """
    if address == "auto" or "://" in address:
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ClusterError(f"--address {address!r}: expected HOST:PORT (the head's port, 6379 by default)")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise ClusterError(f"cannot reach the Ray cluster at {address}: {exc.strerror or exc}") from None
