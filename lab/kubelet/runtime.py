"""What the runtime holds for one pod, read the way kubelet's PLEG reads it.

The pod worker decides from this view, never from its own memory of what
it started, so a restarted kubelet picks up where the last one left off and
a change made behind its back (a killed process, a removed container) is
seen as it is.

Owns ``PodRuntime`` and the status cache. Imports ``lab.cri_pods`` and
``cri_proto`` only.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cri_proto import api_pb2
from lab.cri_pods import (
    ANN_CONTAINER_HASH,
    ANN_TERMINATION_MESSAGE_PATH,
    LABEL_CONTAINER_NAME,
    LABEL_POD_UID,
    CriPodDriver,
)


@dataclass(frozen=True, slots=True)
class SandboxView:
    """One pod sandbox as the runtime lists it."""

    id: str
    attempt: int
    ready: bool
    created_at: int  # ns
    ip: str = ""


@dataclass(frozen=True, slots=True)
class RuntimeContainer:
    """One container instance as the runtime reports it (list plus status)."""

    id: str
    name: str
    sandbox_id: str
    attempt: int
    state: int  # api_pb2.ContainerState
    created_at: int  # ns
    started_at: int = 0
    finished_at: int = 0
    exit_code: int = 0
    reason: str = ""
    message: str = ""
    image_ref: str = ""
    log_path: str = ""
    spec_hash: str = ""
    # The host file bind-mounted at the container's terminationMessagePath.
    termination_host_path: str = ""

    @property
    def running(self) -> bool:
        """Whether the runtime says it runs."""
        return self.state == api_pb2.CONTAINER_RUNNING

    @property
    def exited(self) -> bool:
        """Whether it ran and exited."""
        return self.state == api_pb2.CONTAINER_EXITED

    @property
    def created_only(self) -> bool:
        """Whether it was created and never started."""
        return self.state == api_pb2.CONTAINER_CREATED


@dataclass(frozen=True, slots=True)
class PodRuntime:
    """Everything the runtime holds for one pod, by sandbox and by container instance."""

    sandboxes: tuple[SandboxView, ...]  # oldest attempt first
    containers: tuple[RuntimeContainer, ...]  # oldest attempt first

    @property
    def latest_sandbox(self) -> SandboxView | None:
        """The sandbox of the highest attempt; None without any."""
        return self.sandboxes[-1] if self.sandboxes else None

    def instances(self, name: str) -> list[RuntimeContainer]:
        """Every instance of container ``name``, in any sandbox, oldest first."""
        return [c for c in self.containers if c.name == name]

    def latest(self, name: str) -> RuntimeContainer | None:
        """The newest instance of container ``name``; None if it never ran."""
        found = self.instances(name)
        return found[-1] if found else None

    def in_sandbox(self, name: str, sandbox_id: str) -> RuntimeContainer | None:
        """The newest instance of container ``name`` in sandbox ``sandbox_id``."""
        found = [c for c in self.containers if c.name == name and c.sandbox_id == sandbox_id]
        return found[-1] if found else None

    def fingerprint(self) -> tuple[tuple[str, int], ...]:
        """What changes whenever a container or sandbox changes state."""
        return tuple(sorted((c.id, c.state) for c in self.containers)) + tuple(
            sorted((s.id, int(s.ready)) for s in self.sandboxes)
        )


class StatusCache:
    """ContainerStatus answers by (id, state): an exited container never changes again."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._containers: dict[tuple[str, int], api_pb2.ContainerStatus] = {}
        self._ips: dict[str, str] = {}

    def container(self, driver: CriPodDriver, cid: str, state: int) -> api_pb2.ContainerStatus:
        """The ContainerStatus of ``cid`` in the listed ``state``, asked for once per state."""
        with self._lock:
            hit = self._containers.get((cid, state))
        if hit is not None:
            return hit
        status: api_pb2.ContainerStatus = driver.container_status(cid).status
        with self._lock:
            # Only what matches the listed state is kept: a status read while
            # the state moved on belongs to the newer state.
            self._containers[(cid, int(status.state))] = status
        return status

    def sandbox_ip(self, driver: CriPodDriver, sid: str) -> str:
        """The pod IP of sandbox ``sid``, asked for once."""
        with self._lock:
            hit = self._ips.get(sid)
        if hit is not None:
            return hit
        ip = str(driver.sandbox_status(sid).status.network.ip)
        with self._lock:
            self._ips[sid] = ip
        return ip

    def forget(self, ids: Sequence[str]) -> None:
        """Drop what is cached for these containers and sandboxes (they were removed)."""
        gone = set(ids)
        with self._lock:
            self._containers = {k: v for k, v in self._containers.items() if k[0] not in gone}
            for sid in gone:
                self._ips.pop(sid, None)


def read_pod_runtime(driver: CriPodDriver, uid: str, cache: StatusCache) -> PodRuntime:
    """Read what the runtime holds for pod ``uid``, oldest attempts first."""
    labels = {LABEL_POD_UID: uid}
    sandboxes = driver.list_sandboxes(labels)
    containers = driver.list_containers(labels)
    sviews = []
    for sb in sorted(sandboxes, key=lambda s: (s.metadata.attempt, s.created_at)):
        ready = sb.state == api_pb2.SANDBOX_READY
        sviews.append(
            SandboxView(
                id=sb.id,
                attempt=int(sb.metadata.attempt),
                ready=ready,
                created_at=int(sb.created_at),
                ip=cache.sandbox_ip(driver, sb.id) if ready else "",
            )
        )
    cviews = []
    for c in containers:
        status = cache.container(driver, c.id, int(c.state))
        message_path = c.annotations.get(ANN_TERMINATION_MESSAGE_PATH, "")
        host_file = next(
            (m.host_path for m in status.mounts if m.container_path == message_path), ""
        )
        cviews.append(
            RuntimeContainer(
                id=c.id,
                name=c.labels.get(LABEL_CONTAINER_NAME, c.metadata.name),
                sandbox_id=c.pod_sandbox_id,
                attempt=int(c.metadata.attempt),
                state=int(status.state),
                created_at=int(c.created_at),
                started_at=int(status.started_at),
                finished_at=int(status.finished_at),
                exit_code=int(status.exit_code),
                reason=status.reason,
                message=status.message,
                image_ref=status.image_ref,
                log_path=status.log_path,
                spec_hash=c.annotations.get(ANN_CONTAINER_HASH, ""),
                termination_host_path=host_file,
            )
        )
    cviews.sort(key=lambda c: (c.attempt, c.created_at))
    return PodRuntime(tuple(sviews), tuple(cviews))


def read_termination_message(host_file: Path | None, log_path: str, fallback: bool) -> str:
    """The terminated state's message, as kubelet reads it.

    The file the container wrote at its terminationMessagePath first (at most
    4096 bytes); with ``FallbackToLogsOnError`` and nothing written, the tail
    of the log (at most 80 lines and 2048 bytes).
    """
    if host_file is not None:
        try:
            with host_file.open("rb") as fh:
                data = fh.read(4096)
        except OSError:
            data = b""
        if data:
            return data.decode(errors="replace")
    if not fallback or not log_path:
        return ""
    try:
        raw = Path(log_path).read_bytes()[-64 * 1024 :]
    except OSError:
        return ""
    lines = []
    for line in raw.decode(errors="replace").splitlines()[-80:]:
        # "<time> <stream> <tag> <content>"
        parts = line.split(" ", 3)
        lines.append(parts[3] if len(parts) == 4 else line)
    text = "\n".join(lines)
    return text[-2048:]
