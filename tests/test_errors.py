"""The error tree and its one mapping to HTTP statuses, checked class by class and on the wire."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from agent import errors
from agent.api.app import create_app
from agent.api.errors import status_for
from agent.domain.kubemodel import ApiPod
from agent.domain.model import Container, ContainerState, PodRef, Sandbox, SandboxState
from agent.errors import (
    AgentError,
    Ambiguous,
    ApiServerError,
    Conflict,
    CriError,
    Forbidden,
    Inapplicable,
    InvalidInput,
    NotFound,
    ProcessGone,
    RateLimited,
    RuntimeCallFailed,
    RuntimeUnavailable,
    Unavailable,
)
from agent.kube import DisabledPodCache
from agent.kube.convert import pod_from_dict
from agent.services.node import NodeState, RuntimeHealth, Snapshot
from agent.settings import Settings

# The wire of every class: its status and its ``error`` value. A new class
# fails the first test until it is written down here, on purpose.
WIRE: dict[type[AgentError], tuple[int, str]] = {
    AgentError: (500, "error"),
    CriError: (503, "runtime_error"),
    RuntimeUnavailable: (503, "runtime_unavailable"),
    RuntimeCallFailed: (502, "runtime_call_failed"),
    ApiServerError: (503, "api_server_error"),
    NotFound: (404, "not_found"),
    ProcessGone: (404, "process_gone"),
    Ambiguous: (409, "ambiguous_prefix"),
    InvalidInput: (422, "invalid_input"),
    Inapplicable: (422, "refused"),
    Forbidden: (403, "refused"),
    Conflict: (409, "refused"),
    RateLimited: (429, "refused"),
    Unavailable: (503, "refused"),
}


def every_error_class() -> set[type[AgentError]]:
    found: set[type[AgentError]] = set()
    todo: list[type[AgentError]] = [AgentError]
    while todo:
        cls = todo.pop()
        found.add(cls)
        todo.extend(cls.__subclasses__())
    return found


def test_every_error_class_maps_to_a_status() -> None:
    classes = every_error_class()
    assert set(WIRE) <= classes
    for cls in classes:
        assert 400 <= status_for(cls) <= 599, cls
        if cls in WIRE:
            assert (status_for(cls), cls.kind) == WIRE[cls], cls.__name__
    assert {cls for cls in classes if cls.__module__ == "agent.errors"} == set(WIRE)


def test_no_error_class_carries_a_status() -> None:
    for cls in WIRE:
        assert cls.__module__ == "agent.errors"
        assert not [name for name in dir(cls) if "status" in name.lower()], cls.__name__


def test_a_status_follows_the_nearest_class_in_the_table() -> None:
    class StillRunning(Conflict):
        pass

    assert status_for(StillRunning("x")) == 409
    assert status_for(ProcessGone("gone", pid=1)) == 404
    assert status_for(RuntimeCallFailed("no", code="INTERNAL")) == 502


def test_the_tree_drawn_in_the_module_is_the_real_one() -> None:
    assert errors.__doc__ is not None
    drawn = re.compile(r"^\s{4}([ │├└─]*)(\w+)\s+(\w+)\s+(\d{3})\s")
    parents: list[type[AgentError]] = []
    seen: set[type[AgentError]] = set()
    for line in errors.__doc__.splitlines():
        match = drawn.match(line)
        if match is None:
            continue
        prefix, name, kind, status = match.groups()
        cls = getattr(errors, name)
        depth = len(prefix) // 4
        del parents[depth:]
        if parents:
            assert cls.__bases__ == (parents[-1],), name
        parents.append(cls)
        assert (int(status), kind) == WIRE[cls] == (status_for(cls), cls.kind), name
        seen.add(cls)
    assert seen == set(WIRE)


# --- on the wire, through the routes that raise each one

NOW = datetime.now(UTC)
POD = PodRef(name="web", namespace="shop", uid="0b5c7d3e-1111-2222-3333-444455556666")
SB = "ab" + "0" * 62
APP = "c" * 64
SIDECAR = "cd" + "0" * 62
KILL = "/v1/pods/shop/web/kill-and-watch"


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def api_pod(policy: str = "Always") -> ApiPod:
    started = iso(NOW - timedelta(minutes=1))
    return pod_from_dict(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": POD.name,
                "namespace": POD.namespace,
                "uid": POD.uid,
                "creationTimestamp": iso(NOW - timedelta(minutes=5)),
            },
            "spec": {
                "nodeName": "n1",
                "restartPolicy": policy,
                "containers": [{"name": "app", "image": "busybox"}],
            },
            "status": {
                "phase": "Running",
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [
                    {
                        "name": "app",
                        "ready": True,
                        "started": True,
                        "restartCount": 0,
                        "image": "busybox",
                        "imageID": "",
                        "containerID": "containerd://" + APP,
                        "state": {"running": {"startedAt": started}},
                    }
                ],
            },
        }
    )


class StillNode(NodeState):
    """A node state whose snapshot the test sets; no runtime behind it."""

    async def run(self) -> None:
        return None

    def load(self, snapshot: Snapshot, *, connected: bool = True) -> None:
        self._snapshot = snapshot
        self._health = RuntimeHealth(
            connected=connected,
            since=NOW,
            reason=None if connected else "connect: no such file /run/containerd/containerd.sock",
            endpoint="unix:///run/containerd/containerd.sock",
            synced=connected,
        )


class StillPods(DisabledPodCache):
    """The API server's pods, fixed by the test."""

    def __init__(self, *pods: ApiPod) -> None:
        super().__init__()
        self._pods = {p.uid: p for p in pods}


@pytest.fixture
def sleeper() -> Iterator[int]:
    # A process of the test's own: the runtime snapshot claims it as the app
    # container's, but its cgroup says otherwise, so the agent never signals it.
    child = subprocess.Popen(["sleep", "600"])
    try:
        yield child.pid
    finally:
        child.kill()
        child.wait()


def client_for(
    pid: int, *pods: ApiPod, connected: bool = True, pidfds: str | None = None, **cfg: Any
) -> TestClient:
    settings = Settings(node_name="n1", cri_endpoint="/run/containerd/containerd.sock", **cfg)
    node = StillNode(settings)
    sandbox = Sandbox(
        id=SB, pod=POD, state=SandboxState.READY, attempt=0, created_at=NOW,
        runtime_handler="", pause_pid=None,
    )  # fmt: skip
    app = Container(
        id=APP, name="app", sandbox_id=SB, pod=POD, state=ContainerState.RUNNING, attempt=0,
        image="busybox", image_ref="sha256:00", created_at=NOW,
        started_at=NOW - timedelta(minutes=1), pid=pid,
    )  # fmt: skip
    sidecar = Container(
        id=SIDECAR, name="sidecar", sandbox_id=SB, pod=POD, state=ContainerState.EXITED,
        attempt=0, image="busybox", image_ref="sha256:00", created_at=NOW, exit_code=1,
        reason="Error",
    )  # fmt: skip
    snapshot = Snapshot(
        version=1, taken_at=NOW, sandboxes={SB: sandbox}, containers={APP: app, SIDECAR: sidecar}
    )
    node.load(snapshot if connected else Snapshot(version=0, taken_at=None), connected=connected)
    node.pidfd_unavailable = pidfds
    return TestClient(create_app(settings, node, StillPods(*pods)), raise_server_exceptions=False)


ALLOWED: dict[str, Any] = {"enable_kill": True, "kill_namespaces": ("shop",)}


def answer(client: TestClient, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    with client:
        response = client.request(method, path, json=body)
    return response.status_code, response.json()


@pytest.mark.parametrize(
    ("cls", "cfg", "pods", "method", "path", "body", "rule"),
    [
        (NotFound, {}, False, "GET", "/v1/containers/fff", None, None),
        (Ambiguous, {}, False, "GET", "/v1/containers/c", None, None),
        (InvalidInput, {}, False, "POST", KILL, {"container": "app", "sandbox": True}, None),
        (Inapplicable, {}, False, "POST", KILL, {"container": "app", "signal": "NOPE"},
         "bad-signal"),
        (Forbidden, {}, True, "POST", KILL, {"container": "app", "dry_run": True},
         "kill-disabled"),
        (Conflict, ALLOWED, False, "POST", KILL, {"container": "app", "dry_run": True},
         "api-unknown"),
        (Conflict, ALLOWED, True, "POST", KILL, {"container": "sidecar", "dry_run": True},
         "not-running"),
    ],
)  # fmt: skip
def test_each_class_on_the_wire(
    sleeper: int,
    cls: type[AgentError],
    cfg: dict[str, Any],
    pods: bool,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    rule: str | None,
) -> None:
    client = client_for(sleeper, *([api_pod()] if pods else []), **cfg)
    status, got = answer(client, method, path, body)
    assert (status, got["error"]) == WIRE[cls], got
    assert got["message"]
    if rule is not None:
        assert got["detail"]["rule"] == rule


def test_restart_policy_refusal_on_the_wire(sleeper: int) -> None:
    client = client_for(sleeper, api_pod("Never"), **ALLOWED)
    status, got = answer(client, "POST", KILL, {"container": "app", "dry_run": True})
    assert (status, got["error"], got["detail"]["rule"]) == (422, "refused", "restart-policy")


def test_runtime_unavailable_on_the_wire(sleeper: int) -> None:
    status, got = answer(client_for(sleeper, connected=False), "GET", "/v1/containers")
    assert (status, got["error"]) == WIRE[RuntimeUnavailable]


def test_unavailable_pidfds_on_the_wire(sleeper: int) -> None:
    reason = "pidfd_open fails here (EPERM): the seccomp profile does not allow it"
    client = client_for(sleeper, api_pod(), pidfds=reason, **ALLOWED)
    status, got = answer(client, "POST", KILL, {"container": "app", "dry_run": True})
    assert (status, got["error"]) == WIRE[Unavailable]
    assert got["detail"] == {"rule": "pidfd-unavailable"}
    assert reason in got["message"]


def test_rate_limit_on_the_wire(sleeper: int) -> None:
    client = client_for(sleeper, api_pod(), kill_rate_per_minute=1, **ALLOWED)
    with client:
        first = client.post(KILL, json={"container": "app"})
        assert first.status_code == 202, first.text
        run = f"/v1/heal/runs/{first.json()['id']}"
        # The run ends at once: the sleeper's cgroup is not the app container's.
        deadline = time.monotonic() + 10
        while (state := client.get(run).json()["state"]) == "running":
            assert time.monotonic() < deadline, "the run never ended"
            time.sleep(0.05)
        assert state == "failed"
        second = client.post(KILL, json={"container": "app"})
    got = second.json()
    assert (second.status_code, got["error"]) == WIRE[RateLimited], got
    assert got["detail"]["rule"] == "rate-limited"
    assert got["detail"]["retry_after_seconds"] > 0
