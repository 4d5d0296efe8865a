"""Where CRI runtimes listen, and how to pick one.

Part of the CRI adapter: imports the errors and the standard library only.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from agent.errors import RuntimeUnavailable


@dataclass(frozen=True, slots=True)
class KnownEndpoint:
    path: str
    runtime: str


# Order matters: the first three are what crictl tries, in its order; the
# rest are the distributions that move containerd's socket elsewhere.
KNOWN_ENDPOINTS: tuple[KnownEndpoint, ...] = (
    KnownEndpoint("/run/containerd/containerd.sock", "containerd"),
    KnownEndpoint("/run/crio/crio.sock", "cri-o"),
    KnownEndpoint("/var/run/cri-dockerd.sock", "cri-dockerd"),
    KnownEndpoint("/run/k3s/containerd/containerd.sock", "containerd (k3s/RKE2)"),
    KnownEndpoint("/var/snap/microk8s/common/run/containerd.sock", "containerd (MicroK8s)"),
    KnownEndpoint("/run/k0s/containerd.sock", "containerd (k0s)"),
)


def normalize_endpoint(endpoint: str) -> str:
    """Return a gRPC target for a CRI endpoint given as a URL or a bare path."""
    if endpoint.startswith("unix://"):
        return endpoint
    if endpoint.startswith("/"):
        return "unix://" + endpoint
    if endpoint.startswith("tcp://"):
        return endpoint.removeprefix("tcp://")
    return endpoint


def socket_path(endpoint: str) -> str | None:
    """The filesystem path behind a unix endpoint, or None for network endpoints."""
    target = normalize_endpoint(endpoint)
    if target.startswith("unix://"):
        return target.removeprefix("unix://")
    return None


def _is_socket(path: str, root: Path) -> bool:
    try:
        mode = os.stat(root / path.lstrip("/")).st_mode
    except OSError:
        return False
    return stat.S_ISSOCK(mode)


def discover_endpoint(
    explicit: str | None,
    *,
    root: Path = Path("/"),
    candidates: Iterable[KnownEndpoint] = KNOWN_ENDPOINTS,
) -> str:
    """Pick the CRI endpoint: the explicit one if given, else the first known socket present.

    ``root`` lets a containerised agent look at the host's filesystem mounted
    somewhere else.
    """
    if explicit:
        return normalize_endpoint(explicit)
    tried = []
    for candidate in candidates:
        tried.append(candidate.path)
        if _is_socket(candidate.path, root):
            return "unix://" + candidate.path
    raise RuntimeUnavailable(
        "no CRI socket found; pass --cri-endpoint (or PODLENS_CRI_ENDPOINT)",
        tried=tried,
    )
