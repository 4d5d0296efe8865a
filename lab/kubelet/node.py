"""The Node object the lab kubelet registers, as a kubelet registers its node.

``kubectl get nodes`` and ``kubectl describe node`` read it, and the API
server reads ``status.daemonEndpoints`` to find the kubelet's port for logs,
exec and port-forward. Conditions carry kubelet's own reasons and messages.
Capacity is the machine's; the lab does not reserve anything for the system.

Owns the Node body. Imports the standard library only.
"""

from __future__ import annotations

import os
import platform
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from lab.apitime import rfc3339

JSON = dict[str, Any]

# The version the stand-in reports: the release its behaviour is measured against.
LAB_KUBELET_VERSION: Final = "v1.37.2-lab"
# kubelet's --max-pods default.
MAX_PODS: Final = 110

_CONDITIONS: Final = (
    (
        "MemoryPressure",
        "False",
        "KubeletHasSufficientMemory",
        "kubelet has sufficient memory available",
    ),
    ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
    ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
    ("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
)


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def _os_image() -> str:
    for line in _read("/etc/os-release").splitlines():
        key, _, value = line.partition("=")
        if key == "PRETTY_NAME":
            return value.strip().strip('"')
    return "Linux"


def _memory_kib() -> int:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1])
    return 0


def node_object(
    name: str,
    address: str,
    labels: Mapping[str, str],
    *,
    kubelet_port: int,
    runtime_version: str,
) -> JSON:
    """The Node for this machine, Ready, with the kubelet's endpoint on ``kubelet_port``."""
    now = rfc3339()
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    capacity = {
        "cpu": str(os.cpu_count() or 1),
        "memory": f"{_memory_kib()}Ki",
        "pods": str(MAX_PODS),
    }
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": dict(labels)},
        "spec": {},
        "status": {
            "capacity": capacity,
            "allocatable": dict(capacity),
            "conditions": [
                {
                    "type": type_,
                    "status": status,
                    "reason": reason,
                    "message": message,
                    "lastHeartbeatTime": now,
                    "lastTransitionTime": now,
                }
                for type_, status, reason, message in _CONDITIONS
            ],
            "addresses": [
                {"type": "InternalIP", "address": address},
                {"type": "Hostname", "address": socket.gethostname()},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet_port}},
            "nodeInfo": {
                "machineID": _read("/etc/machine-id"),
                "systemUUID": _read("/sys/class/dmi/id/product_uuid"),
                "bootID": _read("/proc/sys/kernel/random/boot_id"),
                "kernelVersion": platform.release(),
                "osImage": _os_image(),
                "containerRuntimeVersion": runtime_version,
                "kubeletVersion": LAB_KUBELET_VERSION,
                "operatingSystem": "linux",
                "architecture": arch,
            },
        },
    }
