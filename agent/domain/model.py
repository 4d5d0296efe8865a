"""The agent's own types.

Adapters (``agent.cri``, ``agent.kube``, ``agent.host``) turn library objects
(protobuf messages, ``V1Pod``, ``psutil.Process``) into these frozen
dataclasses; everything above the adapters sees only these.

Domain: imports the standard library only.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime

# --------------------------------------------------------------------------
# Runtime (CRI) view
# --------------------------------------------------------------------------


class SandboxState(enum.StrEnum):
    """A pod sandbox's state as the runtime reports it."""

    READY = "ready"
    NOTREADY = "notready"


class ContainerState(enum.StrEnum):
    """A container's state as the runtime reports it."""

    CREATED = "created"
    RUNNING = "running"
    EXITED = "exited"
    UNKNOWN = "unknown"


class RuntimeKind(enum.StrEnum):
    """Which verbose-info dialect the runtime speaks."""

    CONTAINERD = "containerd"
    CRIO = "cri-o"
    OTHER = "other"

    @classmethod
    def from_runtime_name(cls, name: str) -> RuntimeKind:
        """The dialect of the name a Version call answers; names it does not know are OTHER."""
        lowered = name.strip().lower()
        if lowered == "containerd":
            return cls.CONTAINERD
        if lowered in ("cri-o", "crio"):
            return cls.CRIO
        return cls.OTHER


@dataclass(frozen=True, slots=True)
class RuntimeInfo:
    """The runtime's Version answer, and the endpoint that gave it."""

    endpoint: str
    runtime_name: str
    runtime_version: str
    cri_api_version: str
    kind: RuntimeKind


@dataclass(frozen=True, slots=True)
class NamespacePath:
    """One Linux namespace as named in an OCI runtime spec."""

    type: str
    path: str | None


@dataclass(frozen=True, slots=True)
class Mount:
    """One mount of a container as named in an OCI runtime spec."""

    destination: str
    source: str
    type: str | None = None
    readonly: bool = False


@dataclass(frozen=True, slots=True)
class VerboseInfo:
    """What the runtime's verbose status tells beyond the plain status.

    ``pid`` is None when the runtime reports no live process (pid 0, missing,
    or a stale pid that must not be trusted).
    """

    pid: int | None
    sandbox_id: str | None = None
    namespaces: tuple[NamespacePath, ...] = ()
    mounts: tuple[Mount, ...] = ()
    cgroups_path: str | None = None
    # Why ``pid`` is None, when the runtime explains it (e.g. CRI-O pods
    # without an infra container). None when a pid is present or pid 0 is
    # simply "not running".
    pid_note: str | None = None
    # True when the runtime may report a pid that outlived its process (CRI-O
    # keeps it after exit): the caller must check the process started after the
    # container did before using ``pid``.
    pid_needs_start_check: bool = False


@dataclass(frozen=True, slots=True)
class PodRef:
    """The pod a sandbox or container belongs to, by the metadata kubelet gave the runtime."""

    name: str
    namespace: str
    uid: str


@dataclass(frozen=True, slots=True)
class Sandbox:
    """A pod sandbox as the runtime holds it: one attempt at the pod's shared namespaces."""

    id: str
    pod: PodRef
    state: SandboxState
    attempt: int
    created_at: datetime | None
    runtime_handler: str
    labels: dict[str, str] = field(default_factory=dict, hash=False, compare=True)
    annotations: dict[str, str] = field(default_factory=dict, hash=False, compare=True)
    # Filled from the status (verbose) call, fetched once per sandbox.
    ip: str | None = None
    network_mode: str | None = None  # "pod", "node" or "container"
    log_directory: str | None = None
    pause_pid: int | None = None
    pause_pid_note: str | None = None
    network_namespace: str | None = None
    namespaces: tuple[NamespacePath, ...] = ()


@dataclass(frozen=True, slots=True)
class Container:
    """One attempt of a container as the runtime holds it, with its host PID while running."""

    id: str
    name: str
    sandbox_id: str
    pod: PodRef
    state: ContainerState
    attempt: int
    image: str
    image_ref: str
    created_at: datetime | None
    labels: dict[str, str] = field(default_factory=dict, hash=False, compare=True)
    annotations: dict[str, str] = field(default_factory=dict, hash=False, compare=True)
    # Filled from ContainerStatus (verbose), fetched when first seen and when
    # the state changes.
    started_at: datetime | None = None
    finished_at: datetime | None = None
    exit_code: int | None = None
    reason: str | None = None
    message: str | None = None
    log_path: str | None = None
    pid: int | None = None
    namespaces: tuple[NamespacePath, ...] = ()
    mounts: tuple[Mount, ...] = ()


@dataclass(frozen=True, slots=True)
class ContainerEvent:
    """One change the runtime announced on its container event stream."""

    container_id: str
    type: str  # "created", "started", "stopped", "deleted"
    sandbox_id: str | None
    at: datetime | None


# --------------------------------------------------------------------------
# Host (process) view
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProcessInfo:
    """One host process at one moment: identity, command, resources, namespaces, cgroup."""

    pid: int
    ppid: int
    name: str
    cmdline: tuple[str, ...]
    state: str  # "running", "sleeping", "zombie", "disk-sleep", "stopped", ...
    started_at: datetime
    user: str | None
    rss_bytes: int
    cpu_user_seconds: float
    cpu_system_seconds: float
    namespaces: dict[str, int] = field(default_factory=dict, hash=False)
    cgroup: tuple[str, ...] = ()
    container_id: str | None = None  # the container ID the cgroup names, if any


@dataclass(frozen=True, slots=True)
class ProcessNode:
    """A process and its descendants."""

    process: ProcessInfo
    children: tuple[ProcessNode, ...] = ()
