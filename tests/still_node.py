"""A node the test sets by hand: a fixed runtime snapshot and fixed API pods, no runtime behind.

``StillNode`` answers with the snapshot the test loads; ``StillPods`` with the
pods (and events) it is given. ``still_pod`` builds one pod as both sides see
it: its API document and the runtime's sandbox and containers, with the log
path and PID each container should have.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from agent.domain.kubemodel import ApiEvent, ApiPod
from agent.domain.model import Container, ContainerState, PodRef, Sandbox, SandboxState
from agent.kube import DisabledPodCache
from agent.kube._watch import ApiHealth
from agent.kube.convert import pod_from_dict
from agent.services.node import NodeState, RuntimeHealth, Snapshot
from agent.settings import Settings

NOW = datetime.now(UTC).replace(microsecond=0)


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


class StillNode(NodeState):
    """A node state whose snapshot the test sets; no runtime behind it."""

    async def run(self) -> None:
        return None

    def load(self, snapshot: Snapshot) -> None:
        self._snapshot = snapshot
        self._health = RuntimeHealth(
            connected=True,
            since=NOW,
            endpoint="unix:///run/containerd/containerd.sock",
            synced=True,
        )
        self.pidfd_unavailable = None


class StillPods(DisabledPodCache):
    """The API server's pods and their events, fixed by the test; the API reads as healthy."""

    def __init__(self, pods: Iterable[ApiPod], events: Sequence[ApiEvent] = ()) -> None:
        super().__init__()
        self._pods = {p.uid: p for p in pods}
        self._events = tuple(events)

    @property
    def health(self) -> ApiHealth:
        return ApiHealth(state="ok", since=NOW, synced=True)

    def events_for(self, namespace: str, uid: str) -> tuple[ApiEvent, ...]:
        return self._events


@dataclass(frozen=True, slots=True)
class StillContainer:
    """One container of a still pod: running with ``pid``, or exited with ``exit_code``."""

    name: str
    pid: int | None = None
    exit_code: int = 1
    log_path: str | None = None
    restarts: int = 0
    waiting: tuple[str, str] | None = None  # (reason, message) in the API's state


@dataclass(frozen=True, slots=True)
class StillPod:
    """One pod as both sides see it."""

    api: ApiPod
    sandbox: Sandbox
    containers: tuple[Container, ...]


def still_pod(
    name: str,
    containers: Sequence[StillContainer],
    *,
    namespace: str = "shop",
    pause_pid: int | None = None,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    index: int = 0,
) -> StillPod:
    """A pod with one sandbox and these containers, as the API and the runtime report it."""
    uid = f"0b5c7d3e-1111-2222-3333-{index:012d}"
    ref = PodRef(name=name, namespace=namespace, uid=uid)
    sandbox_id = f"{index + 1:02x}" + "5b" * 31
    sandbox = Sandbox(
        id=sandbox_id, pod=ref, state=SandboxState.READY, attempt=0, created_at=NOW,
        runtime_handler="", pause_pid=pause_pid,
        annotations=dict(annotations or {}),
    )  # fmt: skip
    runtime: list[Container] = []
    statuses: list[dict[str, Any]] = []
    for number, c in enumerate(containers):
        cid = f"{index + 1:02x}{number:02x}" + "c0" * 30
        running = c.pid is not None
        runtime.append(
            Container(
                id=cid,
                name=c.name,
                sandbox_id=sandbox_id,
                pod=ref,
                state=ContainerState.RUNNING if running else ContainerState.EXITED,
                attempt=c.restarts,
                image="busybox",
                image_ref="sha256:00",
                created_at=NOW,
                started_at=NOW - timedelta(minutes=1),
                pid=c.pid,
                finished_at=None if running else NOW - timedelta(seconds=5),
                exit_code=None if running else c.exit_code,
                reason=None if running else "Error",
                log_path=c.log_path,
                annotations=dict(annotations or {}),
            )
        )
        state: dict[str, Any]
        if c.waiting is not None:
            state = {"waiting": {"reason": c.waiting[0], "message": c.waiting[1]}}
        elif running:
            state = {"running": {"startedAt": iso(NOW - timedelta(minutes=1))}}
        else:
            state = {
                "terminated": {
                    "exitCode": c.exit_code,
                    "reason": "Error",
                    "finishedAt": iso(NOW - timedelta(seconds=5)),
                }
            }
        statuses.append(
            {
                "name": c.name,
                "ready": running,
                "started": running,
                "restartCount": c.restarts,
                "image": "busybox",
                "imageID": "",
                "containerID": f"containerd://{cid}",
                "state": state,
            }
        )
    doc = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": uid,
            "labels": dict(labels or {}),
            "annotations": dict(annotations or {}),
            "creationTimestamp": iso(NOW - timedelta(minutes=5)),
        },
        "spec": {
            "nodeName": "n1",
            "restartPolicy": "Always",
            "containers": [{"name": c.name, "image": "busybox"} for c in containers],
        },
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": statuses,
        },
    }
    return StillPod(pod_from_dict(doc), sandbox, tuple(runtime))


def still_node(settings: Settings, pods: Sequence[StillPod]) -> StillNode:
    """A node state holding these pods' sandboxes and containers."""
    node = StillNode(settings)
    node.load(
        Snapshot(
            version=1,
            taken_at=NOW,
            sandboxes={p.sandbox.id: p.sandbox for p in pods},
            containers={c.id: c for p in pods for c in p.containers},
        )
    )
    return node


def still_settings(**overrides: Any) -> Settings:
    """Settings for a still node named n1."""
    values: dict[str, Any] = {
        "node_name": "n1",
        "cri_endpoint": "/run/containerd/containerd.sock",
        **overrides,
    }
    return Settings(**values)


__all__ = [
    "NOW",
    "StillContainer",
    "StillNode",
    "StillPod",
    "StillPods",
    "still_node",
    "still_pod",
    "still_settings",
]
