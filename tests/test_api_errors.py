"""Bad input and faults at the HTTP edge: clear 4xx/503 JSON bodies, never a 500."""

from __future__ import annotations

from datetime import UTC, datetime

import anyio
import httpx
import pytest
from fastapi.testclient import TestClient

from agent.api.app import create_app
from agent.domain.model import Container, ContainerState, PodRef, Sandbox, SandboxState
from agent.services.node import NodeState, RuntimeHealth, Snapshot
from agent.settings import Settings

POD = PodRef(name="web", namespace="shop", uid="0b5c7d3e-1111-2222-3333-444455556666")
T0 = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def sandbox(sandbox_id: str) -> Sandbox:
    return Sandbox(
        id=sandbox_id,
        pod=POD,
        state=SandboxState.READY,
        attempt=0,
        created_at=T0,
        runtime_handler="",
        pause_pid=None,
    )


def container(container_id: str, name: str, sandbox_id: str) -> Container:
    return Container(
        id=container_id,
        name=name,
        sandbox_id=sandbox_id,
        pod=POD,
        state=ContainerState.EXITED,
        attempt=0,
        image="busybox",
        image_ref="sha256:00",
        created_at=T0,
        exit_code=1,
        reason="Error",
    )


class StillNode(NodeState):
    """A node state whose snapshot the test sets; no runtime behind it."""

    async def run(self) -> None:
        return None

    def load(self, snapshot: Snapshot, *, connected: bool = True) -> None:
        self._snapshot = snapshot
        self._health = RuntimeHealth(
            connected=connected,
            since=T0,
            reason=None if connected else "connect: no such file /run/containerd/containerd.sock",
            endpoint="unix:///run/containerd/containerd.sock",
            synced=connected,
        )


SB = "ab" + "0" * 62
C1 = "abc1" + "1" * 60
C2 = "abc2" + "2" * 60


@pytest.fixture
def node() -> StillNode:
    state = StillNode(Settings(node_name="n1", cri_endpoint="/run/containerd/containerd.sock"))
    state.load(
        Snapshot(
            version=1,
            taken_at=T0,
            sandboxes={SB: sandbox(SB)},
            containers={C1: container(C1, "app", SB), C2: container(C2, "sidecar", SB)},
        )
    )
    return state


@pytest.fixture
def client(node: StillNode) -> TestClient:
    return TestClient(create_app(node.settings, node), raise_server_exceptions=False)


def test_unknown_id_is_404_naming_it(client: TestClient) -> None:
    response = client.get("/v1/containers/fff")
    assert response.status_code == 404
    body = response.json()
    assert body["error"] == "not_found"
    assert "'fff'" in body["message"]


def test_ambiguous_prefix_is_409_listing_matches(client: TestClient) -> None:
    response = client.get("/v1/containers/abc")
    assert response.status_code == 409
    body = response.json()
    assert body["error"] == "ambiguous_prefix"
    assert sorted(body["detail"]["matches"]) == [C1, C2]


def test_unique_prefix_and_uppercase_resolve(client: TestClient) -> None:
    assert client.get("/v1/containers/abc1").json()["id"] == C1
    assert client.get("/v1/containers/ABC2").json()["id"] == C2
    assert client.get(f"/v1/sandboxes/{SB[:3]}").json()["id"] == SB


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/v1/containers?state=sleeping", "state"),
        ("/v1/containers?namespace=Shop", "namespace"),
        ("/v1/containers?pod=" + "a" * 300, "pod"),
        ("/v1/containers?name=a/b", "name"),
        ("/v1/sandboxes?state=up", "state"),
        ("/v1/containers?output=yaml", "output"),
        ("/v1/containers/not-hex", "container_id"),
        ("/v1/sandboxes/" + "a" * 65, "sandbox_id"),
        ("/v1/processes/0", "pid"),
        ("/v1/processes/-5", "pid"),
        ("/v1/processes/99999999999", "pid"),
        ("/v1/processes/abc", "pid"),
    ],
)
def test_malformed_values_are_422_naming_the_field(
    client: TestClient, path: str, field: str
) -> None:
    response = client.get(path)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "invalid_input"
    assert field in body["message"]


def test_pid_that_does_not_exist_is_404(client: TestClient) -> None:
    response = client.get("/v1/processes/4194000")
    assert response.status_code == 404
    assert response.json()["error"] == "process_gone"


def test_unknown_route_is_json_404(client: TestClient) -> None:
    response = client.get("/v1/nothing-here")
    assert response.status_code == 404
    assert response.json()["message"] == "no such endpoint: GET /v1/nothing-here"


def test_runtime_down_gives_503_with_reason_but_node_and_health_answer(
    node: StillNode, client: TestClient
) -> None:
    node.load(Snapshot(version=0, taken_at=None), connected=False)
    for path in ("/v1/containers", "/v1/sandboxes", "/v1/containers/abc1", "/v1/processes/1"):
        response = client.get(path)
        assert response.status_code == 503, path
        body = response.json()
        assert body["error"] == "runtime_unavailable"
        assert "containerd.sock" in body["message"]
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert "no such file" in ready.json()["checks"]["runtime"]
    assert client.get("/healthz").status_code == 200
    info = client.get("/v1/node").json()
    assert info["runtime"]["connected"] is False


def test_text_rendering_is_an_aligned_table(client: TestClient) -> None:
    text = client.get("/v1/containers", headers={"Accept": "text/plain"}).text
    header, *rows = text.splitlines()
    assert header.split() == [
        "CONTAINER", "NAME", "STATE", "ATTEMPT", "PID", "EXIT", "REASON", "POD", "NAMESPACE",
        "CREATED",
    ]  # fmt: skip
    assert len(rows) == 2
    # Columns line up: every row has NAME where the header has it.
    name_col = header.index("NAME")
    assert {row[name_col:].split()[0] for row in rows} == {"app", "sidecar"}
    # JSON stays the default for curl's */* and for browsers.
    assert client.get("/v1/containers", headers={"Accept": "*/*"}).json()["items"]


def test_openapi_documents_the_response_models(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    components = schema["components"]["schemas"]
    assert {"ContainerItem", "SandboxItem", "ProcessLookup", "NodeInfo", "ErrorBody"} <= set(
        components
    )
    item = components["ContainerItem"]["properties"]
    required = [
        "id",
        "name",
        "pod",
        "namespace",
        "pod_uid",
        "sandbox_id",
        "state",
        "attempt",
        "pid",
        "exit_code",
        "reason",
        "started_at",
        "finished_at",
        "log_path",
    ]
    assert set(required) <= set(item), set(required) - set(item)


async def test_probes_answer_while_every_worker_thread_is_held(node: StillNode) -> None:
    # Slow sync routes (a process tree under load) run in anyio's worker
    # threads; a liveness probe queued behind them would get the agent
    # restarted for being busy.
    app = create_app(node.settings, node)
    limiter = anyio.to_thread.current_default_thread_limiter()
    holders = [object() for _ in range(int(limiter.total_tokens))]
    for holder in holders:
        await limiter.acquire_on_behalf_of(holder)
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://agent") as client:
            with anyio.fail_after(5):
                assert (await client.get("/healthz")).status_code == 200
                ready = await client.get("/readyz")
            assert ready.status_code == 200, ready.text
            # A sync route does wait for a thread: the hold above is real.
            with anyio.move_on_after(0.3) as waited:
                await client.get("/v1/containers")
            assert waited.cancelled_caught
    finally:
        for holder in holders:
            limiter.release_on_behalf_of(holder)
