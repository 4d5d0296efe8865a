"""The agent's door: bearer tokens checked by TokenReview, permissions by
SubjectAccessReview, against the fake API server over real HTTP."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, WebSocket
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from agent.api.app import create_app
from agent.api.auth import (
    HEAL,
    LOOPBACK_CALLER_NAME,
    READ,
    READ_LOGS,
    UNCHECKED_CALLER,
    AuthConfig,
    CallerDep,
    Permission,
    get_caller,
    install_auth,
    required_permission,
    token_fingerprint,
)
from agent.api.errors import status_for
from agent.errors import ApiServerError
from agent.kube import (
    AccessDecision,
    DisabledPodCache,
    KubeAccessReviewer,
    ResourceAttributes,
    TokenReviewResult,
    UserInfo,
    access_reviewer_from_settings,
)
from agent.services.node import NodeState, RuntimeHealth, Snapshot
from agent.settings import Settings
from lab.apiserver import FakeApiServer

NODE = "n1"
T0 = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
REMOTE = ("10.244.1.7", 51000)

READER = "system:serviceaccount:ops:reader"
LOG_READER = "system:serviceaccount:ops:log-reader"
OPERATOR = "system:serviceaccount:ops:operator"
NOBODY = "system:serviceaccount:ops:nobody"

TOKENS: dict[str, dict[str, Any] | None] = {
    "reader-token": {
        "username": READER,
        "uid": "uid-reader",
        "groups": ["system:serviceaccounts", "system:serviceaccounts:ops"],
        "extra": {"authentication.kubernetes.io/pod-name": ["toolbox-0"]},
    },
    "logs-token": {"username": LOG_READER, "uid": "uid-logs"},
    "operator-token": {"username": OPERATOR, "uid": "uid-operator"},
    "nobody-token": {"username": NOBODY},
    "audience-token": {"username": READER, "audiences": ["podlens"]},
    "revoked-token": None,
}
GRANTS: dict[str, set[tuple[str, str]]] = {
    READER: {("get", "podlens")},
    LOG_READER: {("get", "podlens"), ("get", "podlens-logs")},
    OPERATOR: {("get", "podlens"), ("create", "podlens-heal")},
}
# What each user may do to pods, by namespace, as a RoleBinding would grant it.
NAMESPACE_GRANTS: dict[str, set[tuple[str, str, str]]] = {
    LOG_READER: {("get", "pods/log", "shop")},
    OPERATOR: {("delete", "pods", "shop")},
}
TOKEN_REVIEWS = "/apis/authentication.k8s.io/v1/tokenreviews"
ACCESS_REVIEWS = "/apis/authorization.k8s.io/v1/subjectaccessreviews"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class QuietNode(NodeState):
    """A synced node with an empty snapshot and no runtime behind it."""

    async def run(self) -> None:
        return None

    def load_empty(self) -> None:
        self._snapshot = Snapshot(version=1, taken_at=T0, sandboxes={}, containers={})
        self._health = RuntimeHealth(
            connected=True,
            since=T0,
            reason=None,
            endpoint="unix:///run/containerd/containerd.sock",
            synced=True,
        )


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Reviews:
    """The SubjectAccessReview specs the fake API server was asked to decide."""

    def __init__(self) -> None:
        self.specs: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def authorize(self, spec: dict[str, Any]) -> tuple[bool, str]:
        with self._lock:
            self.specs.append(spec)
        attrs = spec.get("resourceAttributes") or {}
        if attrs.get("resource") == "pods":
            resource = "pods/" + attrs["subresource"] if attrs.get("subresource") else "pods"
            wanted_in_ns = (attrs.get("verb"), resource, attrs.get("namespace") or "")
            return wanted_in_ns in NAMESPACE_GRANTS.get(str(spec.get("user")), set()), ""
        if (attrs.get("group") or "", attrs.get("resource"), attrs.get("name")) != (
            "",
            "nodes",
            NODE,
        ):
            return False, "only nodes/n1 is granted in this test"
        wanted = (attrs.get("verb"), attrs.get("subresource"))
        return wanted in GRANTS.get(str(spec.get("user")), set()), ""


@pytest.fixture
def reviews() -> Reviews:
    return Reviews()


@pytest.fixture
def fake(reviews: Reviews) -> Iterator[FakeApiServer]:
    with FakeApiServer(tokens=TOKENS, authorizer=reviews.authorize) as server:
        yield server


def token_reviews(server: FakeApiServer) -> int:
    return server.count("POST", TOKEN_REVIEWS)


def access_reviews(server: FakeApiServer) -> int:
    return server.count("POST", ACCESS_REVIEWS)


@contextlib.contextmanager
def reviewer_for(url: str, **kwargs: Any) -> Iterator[KubeAccessReviewer]:
    kwargs.setdefault("timeout_seconds", 2.0)
    reviewer = access_reviewer_from_settings(Settings(node_name=NODE, api_server=url), **kwargs)
    assert reviewer is not None
    try:
        yield reviewer
    finally:
        reviewer.close()


def agent_app(
    config: AuthConfig | None,
    reviewer: Any,
    *,
    clock: Callable[[], float] = time.monotonic,
) -> FastAPI:
    settings = Settings(node_name=NODE, cri_endpoint="/run/containerd/containerd.sock")
    node = QuietNode(settings)
    node.load_empty()
    app = create_app(settings, node, DisabledPodCache())

    # Routes a test can ask "who am I?", over HTTP and over a websocket.
    @app.get("/v1/test/whoami")
    def whoami(caller: CallerDep) -> dict[str, object]:
        return {
            "name": caller.name,
            "via": caller.via,
            "uid": caller.uid,
            "groups": list(caller.groups),
            "token_hash": caller.token_hash,
        }

    @app.websocket("/v1/test/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text(get_caller(websocket).name)  # type: ignore[arg-type]
        await websocket.close()

    if config is not None:
        install_auth(app, config, reviewer, clock=clock)
    return app


def door(**overrides: Any) -> AuthConfig:
    values: dict[str, Any] = {"mode": "kubernetes", "node_name": NODE}
    values.update(overrides)
    return AuthConfig(**values)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def reviewer(fake: FakeApiServer) -> Iterator[KubeAccessReviewer]:
    with reviewer_for(fake.url) as made:
        yield made


@pytest.fixture
def client(reviewer: KubeAccessReviewer, clock: FakeClock) -> TestClient:
    app = agent_app(door(), reviewer, clock=clock)
    return TestClient(app, raise_server_exceptions=False, client=REMOTE)


# -- what each request needs ------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "needed"),
    [
        ("GET", "/healthz", None),
        ("GET", "/readyz", None),
        ("HEAD", "/healthz", None),
        ("GET", "/v1/node", READ),
        ("GET", "/v1/pods", READ),
        ("GET", "/v1/pods/shop/web", READ),
        ("GET", "/v1/sandboxes", READ),
        ("GET", "/v1/sandboxes/ab12", READ),
        ("GET", "/v1/containers", READ),
        ("GET", "/v1/containers/abc1", READ),
        ("GET", "/v1/processes/4242", READ),
        ("GET", "/v1/diagnostics", READ_LOGS),
        ("GET", "/v1/pods/shop/web/diagnosis", READ_LOGS),
        ("GET", "/v1/heal/runs", READ),
        ("GET", "/v1/heal/runs/r-1", READ),
        ("GET", "/v1/heal/runs/r-1/timeline", READ),
        ("GET", "/metrics", READ),
        ("GET", "/openapi.json", READ),
        ("GET", "/docs", READ),
        ("GET", "/no/such/path", READ),
        ("GET", "/healthz/", READ),
        ("GET", "/v1/pods/shop/web/logs", READ_LOGS),
        ("HEAD", "/v1/pods/shop/web/logs", READ_LOGS),
        ("get", "/v1/pods/shop/web/logs", READ_LOGS),
        ("GET", "/v1/pods/shop/web/logs/stream", READ_LOGS),
        ("GET", "/v1/pods/shop//web/logs", READ_LOGS),
        # A pod named "logs" and a container-ish suffix are plain reads.
        ("GET", "/v1/pods/shop/logs", READ),
        ("GET", "/v1/pods/shop/web/logsx", READ),
        ("POST", "/v1/pods/shop/web/kill-and-watch", HEAL),
        ("post", "/v1/pods/shop/web/kill-and-watch", HEAL),
        # Writes the table does not know need the heal subresource, with
        # the kubelet's method-to-verb mapping.
        ("POST", "/v1/pods", HEAL),
        ("POST", "/healthz", HEAL),
        ("PUT", "/v1/node", Permission("update", "podlens-heal")),
        ("PATCH", "/v1/pods/shop/web", Permission("patch", "podlens-heal")),
        ("DELETE", "/v1/heal/runs/r-1", Permission("delete", "podlens-heal")),
        ("OPTIONS", "/v1/pods", Permission("options", "podlens-heal")),
    ],
)
def test_required_permission(method: str, path: str, needed: Permission | None) -> None:
    assert required_permission(method, path) == needed


def test_permissions_name_a_subresource_of_this_node() -> None:
    attrs = READ_LOGS.attributes(NODE)
    assert attrs == ResourceAttributes(
        verb="get",
        resource="nodes",
        name=NODE,
        subresource="podlens-logs",
        group="",
        version="v1",
    )
    assert HEAL.describe() == "create nodes/podlens-heal"


def test_every_route_of_the_app_needs_a_permission_except_the_probes() -> None:
    app = create_app(Settings(node_name=NODE), QuietNode(Settings(node_name=NODE)))
    checked = 0
    for template, operations in app.openapi()["paths"].items():
        path = template.replace("{", "").replace("}", "")
        for method in operations:
            needed = required_permission(method, path)
            checked += 1
            if template in ("/healthz", "/readyz"):
                assert needed is None
            elif method.upper() not in ("GET", "HEAD"):
                assert needed is not None
                assert needed.subresource == HEAL.subresource, template
            elif {"logs", "diagnosis", "diagnostics"} & set(template.split("/")):
                # Diagnoses quote log lines, so they need the log permission too.
                assert needed == READ_LOGS, template
            else:
                assert needed == READ, template
    assert checked >= 8


# -- open doors -------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_probes_need_no_token(client: TestClient, fake: FakeApiServer, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert token_reviews(fake) == 0


# -- 401 --------------------------------------------------------------------------


def test_no_token_is_401_with_a_bearer_challenge(client: TestClient, fake: FakeApiServer) -> None:
    response = client.get("/v1/pods")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    body = response.json()
    assert body["error"] == "unauthorized"
    assert "Authorization: Bearer" in body["message"]
    assert token_reviews(fake) == 0


@pytest.mark.parametrize(
    "header",
    ["Basic cmVhZGVyOnNlY3JldA==", "Bearer", "Bearer    ", "reader-token", "Token reader-token"],
)
def test_a_header_without_a_bearer_token_is_401_without_asking(
    client: TestClient, fake: FakeApiServer, header: str
) -> None:
    response = client.get("/v1/pods", headers={"Authorization": header})
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    assert token_reviews(fake) == 0


@pytest.mark.parametrize("token", ["revoked-token", "made-up-token"])
def test_a_token_the_api_server_rejects_is_401(
    client: TestClient, fake: FakeApiServer, token: str
) -> None:
    response = client.get("/v1/pods", headers=bearer(token))
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    assert response.json()["error"] == "unauthorized"
    assert token not in response.text
    assert token_reviews(fake) == 1
    assert access_reviews(fake) == 0


def test_anonymous_callers_cannot_tell_real_paths_from_missing_ones(client: TestClient) -> None:
    answers = [
        client.get("/v1/pods"),
        client.get("/v1/no-such-thing"),
        client.get("/openapi.json"),
        client.post("/v1/pods/shop/web/kill-and-watch"),
        client.delete("/v1/pods"),
    ]
    assert {r.status_code for r in answers} == {401}
    assert len({r.text for r in answers}) == 1


def test_a_reader_sees_the_routers_404_and_405(client: TestClient) -> None:
    assert client.get("/v1/no-such-thing", headers=bearer("reader-token")).status_code == 404
    assert client.get("/openapi.json", headers=bearer("reader-token")).status_code == 200


# -- 403 --------------------------------------------------------------------------


def test_a_valid_token_without_the_permission_is_403_naming_it(client: TestClient) -> None:
    response = client.get("/v1/pods", headers=bearer("nobody-token"))
    assert response.status_code == 403
    body = response.json()
    assert body["error"] == "forbidden"
    assert body["message"] == f"user {NOBODY} may not get nodes/podlens on node {NODE}"
    assert body["detail"]["resource"] == "nodes/podlens"
    assert body["detail"]["user"] == NOBODY


def test_a_reader_can_read_pods_but_not_logs(client: TestClient, reviews: Reviews) -> None:
    pods = client.get("/v1/pods", headers=bearer("reader-token"))
    assert pods.status_code == 200
    assert pods.json() == {"items": []}

    logs = client.get("/v1/pods/shop/web/logs", headers=bearer("reader-token"))
    assert logs.status_code == 403
    assert logs.json()["message"] == (
        f"user {READER} may not get nodes/podlens-logs on node {NODE}"
    )

    # The review carries the user exactly as the TokenReview named them.
    spec = reviews.specs[-1]
    assert spec["user"] == READER
    assert spec["uid"] == "uid-reader"
    assert spec["groups"] == [
        "system:serviceaccounts",
        "system:serviceaccounts:ops",
        "system:authenticated",
    ]
    assert spec["extra"] == {"authentication.kubernetes.io/pod-name": ["toolbox-0"]}
    attrs = spec["resourceAttributes"]
    assert (attrs["verb"], attrs["resource"], attrs["subresource"], attrs["name"]) == (
        "get",
        "nodes",
        "podlens-logs",
        NODE,
    )
    assert attrs.get("group", "") == ""
    assert attrs.get("namespace", "") == ""


DOOR_ERRORS = {"unauthorized", "forbidden", "auth_unavailable"}


def past_the_door(response: httpx.Response) -> bool:
    """Answered by the route (whatever it said), not refused at the door."""
    return response.status_code != 401 and response.json().get("error") not in DOOR_ERRORS


def test_a_log_reader_gets_through_to_the_logs_route(client: TestClient, reviews: Reviews) -> None:
    response = client.get("/v1/pods/shop/web/logs", headers=bearer("logs-token"))
    assert past_the_door(response)
    # The node's subresource, then the pod's log in its namespace.
    node, pod = (spec["resourceAttributes"] for spec in reviews.specs[-2:])
    assert (node["resource"], node["subresource"]) == ("nodes", "podlens-logs")
    assert (pod["resource"], pod["subresource"], pod["namespace"]) == ("pods", "log", "shop")


KILL = "/v1/pods/shop/web/kill-and-watch"
# A dry run of a pod this node does not have: nothing can be signalled.
DRY_RUN = {"container": "app", "dry_run": True}


def audited_callers(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        json.loads(r.getMessage())["requested_by"]
        for r in caplog.records
        if r.name == "podlens.audit"
    ]


def test_an_operator_may_kill_and_a_reader_may_not(
    client: TestClient, reviews: Reviews, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="podlens.audit")
    operator = client.post(KILL, headers=bearer("operator-token"), json=DRY_RUN)
    assert past_the_door(operator)
    node, pod = (spec["resourceAttributes"] for spec in reviews.specs[-2:])
    assert (node["verb"], node["subresource"]) == ("create", "podlens-heal")
    assert (pod["verb"], pod["resource"], pod["namespace"]) == ("delete", "pods", "shop")
    # The route's own audit trail names the user the API server named.
    assert audited_callers(caplog) == [OPERATOR]

    reader = client.post(KILL, headers=bearer("reader-token"), json=DRY_RUN)
    assert reader.status_code == 403
    assert reader.json()["message"] == (
        f"user {READER} may not create nodes/podlens-heal on node {NODE}"
    )
    assert audited_callers(caplog) == [OPERATOR]


def test_routes_know_who_asked(client: TestClient) -> None:
    response = client.get("/v1/test/whoami", headers=bearer("reader-token"))
    assert response.status_code == 200
    assert response.json() == {
        "name": READER,
        "via": "token",
        "uid": "uid-reader",
        "groups": ["system:serviceaccounts", "system:serviceaccounts:ops", "system:authenticated"],
        "token_hash": token_fingerprint("reader-token"),
    }
    assert "reader-token" not in response.text


def test_tokens_never_reach_the_logs(
    client: TestClient, caplog: pytest.LogCaptureFixture, fake: FakeApiServer
) -> None:
    caplog.set_level(logging.DEBUG)
    for token in ("revoked-token", "nobody-token", "reader-token"):
        client.get("/v1/pods", headers=bearer(token))
    fake.stop()
    client.get("/v1/pods/shop/web/logs", headers=bearer("operator-token"))
    text = caplog.text
    for token in ("revoked-token", "nobody-token", "reader-token", "operator-token"):
        assert token not in text
    assert token_fingerprint("revoked-token") in text
    assert token_fingerprint("nobody-token") in text
    assert token_fingerprint("operator-token") in text


# -- the cache --------------------------------------------------------------------


def test_answers_are_cached_until_the_ttl(
    client: TestClient, fake: FakeApiServer, clock: FakeClock
) -> None:
    headers = bearer("reader-token")
    assert client.get("/v1/pods", headers=headers).status_code == 200
    assert (token_reviews(fake), access_reviews(fake)) == (1, 1)

    clock.now += 9.9
    assert client.get("/v1/pods", headers=headers).status_code == 200
    # Same token, same permission: the node view needs nothing new either.
    assert client.get("/v1/node", headers=headers).status_code == 200
    assert (token_reviews(fake), access_reviews(fake)) == (1, 1)

    # Another permission is another question, about the same (known) user.
    assert client.get("/v1/pods/shop/web/logs", headers=headers).status_code == 403
    assert (token_reviews(fake), access_reviews(fake)) == (1, 2)

    clock.now += 0.1
    assert client.get("/v1/pods", headers=headers).status_code == 200
    assert (token_reviews(fake), access_reviews(fake)) == (2, 3)


def test_denials_are_cached_too(client: TestClient, fake: FakeApiServer) -> None:
    for _ in range(3):
        assert client.get("/v1/pods", headers=bearer("revoked-token")).status_code == 401
        assert client.get("/v1/pods", headers=bearer("nobody-token")).status_code == 403
    assert token_reviews(fake) == 2
    assert access_reviews(fake) == 1


def test_a_revoked_permission_takes_effect_after_the_ttl(
    client: TestClient, fake: FakeApiServer, clock: FakeClock
) -> None:
    headers = bearer("reader-token")
    assert client.get("/v1/pods", headers=headers).status_code == 200
    fake.set_authorizer(lambda spec: False)
    assert client.get("/v1/pods", headers=headers).status_code == 200
    clock.now += 10
    assert client.get("/v1/pods", headers=headers).status_code == 403


def test_cache_seconds_zero_asks_every_time(
    reviewer: KubeAccessReviewer, fake: FakeApiServer
) -> None:
    app = agent_app(door(cache_seconds=0), reviewer)
    client = TestClient(app, client=REMOTE)
    for _ in range(2):
        assert client.get("/v1/pods", headers=bearer("reader-token")).status_code == 200
    assert (token_reviews(fake), access_reviews(fake)) == (2, 2)


def test_the_cache_is_bounded(
    reviewer: KubeAccessReviewer, fake: FakeApiServer, clock: FakeClock
) -> None:
    app = agent_app(door(cache_entries=2), reviewer, clock=clock)
    client = TestClient(app, client=REMOTE)
    for token in ("reader-token", "logs-token", "operator-token", "operator-token"):
        assert client.get("/v1/pods", headers=bearer(token)).status_code == 200
    assert token_reviews(fake) == 3
    # The first token was pushed out by the third.
    assert client.get("/v1/pods", headers=bearer("reader-token")).status_code == 200
    assert token_reviews(fake) == 4


# -- when the API server cannot be asked ---------------------------------------------


def test_api_server_down_fails_closed_and_is_not_cached(reviews: Reviews) -> None:
    fake = FakeApiServer(tokens=TOKENS, authorizer=reviews.authorize).start()
    port = fake.port
    with reviewer_for(fake.url, timeout_seconds=1.0) as reviewer:
        client = TestClient(agent_app(door(), reviewer), client=REMOTE)
        fake.stop()
        response = client.get("/v1/pods", headers=bearer("reader-token"))
        assert response.status_code == 503
        body = response.json()
        assert body["error"] == "auth_unavailable"
        assert "API server: token review failed" in body["message"]
        assert "reader-token" not in response.text

        with FakeApiServer(port=port, tokens=TOKENS, authorizer=reviews.authorize) as back:
            assert client.get("/v1/pods", headers=bearer("reader-token")).status_code == 200
            assert token_reviews(back) == 1


def test_api_server_failing_the_access_review_fails_closed(
    client: TestClient, fake: FakeApiServer
) -> None:
    def broken(spec: dict[str, Any]) -> bool:
        raise RuntimeError("authorizer crashed")

    fake.set_authorizer(broken)
    response = client.get("/v1/pods", headers=bearer("reader-token"))
    assert response.status_code == 503
    assert "subject access review failed: 500" in response.json()["message"]


def test_agent_credentials_refused_by_the_api_server_says_so(reviews: Reviews) -> None:
    locked = FakeApiServer(
        tokens=TOKENS, authorizer=reviews.authorize, required_token="the-agents-own"
    )
    with locked, reviewer_for(locked.url) as reviewer:
        client = TestClient(agent_app(door(), reviewer), client=REMOTE)
        response = client.get("/v1/pods", headers=bearer("reader-token"))
    assert response.status_code == 503
    assert "the agent's own credentials were refused" in response.json()["message"]


@contextlib.contextmanager
def silent_api_server() -> Iterator[str]:
    """Accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.05)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                held.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        listener.close()


class StuckReviewer:
    """A reviewer whose calls never return on their own (a hung DNS lookup, say)."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def review_token(self, token: str) -> TokenReviewResult:
        self.release.wait(30)
        return TokenReviewResult(UserInfo(READER))

    def review_access(self, user: UserInfo, attributes: ResourceAttributes) -> AccessDecision:
        return AccessDecision(True)

    def close(self) -> None:
        self.release.set()


def test_a_review_stuck_past_its_deadline_is_abandoned_with_503() -> None:
    stuck = StuckReviewer()
    try:
        client = TestClient(agent_app(door(timeout_seconds=0.2), stuck), client=REMOTE)
        started = time.monotonic()
        response = client.get("/v1/pods", headers=bearer("reader-token"))
        elapsed = time.monotonic() - started
    finally:
        stuck.close()
    assert response.status_code == 503
    assert "no answer within 0.7 s" in response.json()["message"]
    assert elapsed < 3


@contextlib.contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="auth-test-agent", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("agent did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def test_a_silent_api_server_neither_lets_through_nor_stalls_the_agent() -> None:
    with silent_api_server() as url, reviewer_for(url, timeout_seconds=1.0) as reviewer:
        app = agent_app(door(timeout_seconds=1.0), reviewer)
        with serve(app) as agent, httpx.Client(base_url=agent, timeout=10) as http:
            answers: list[tuple[httpx.Response, float]] = []

            def ask() -> None:
                started = time.monotonic()
                response = http.get("/v1/pods", headers=bearer("reader-token"))
                answers.append((response, time.monotonic() - started))

            waiting = [threading.Thread(target=ask) for _ in range(4)]
            for thread in waiting:
                thread.start()
            time.sleep(0.2)
            # The reviews hang in their own threads; the agent still serves.
            started = time.monotonic()
            assert http.get("/healthz").status_code == 200
            # A blocked probe would wait out the 4 s review deadline.
            assert time.monotonic() - started < 1.0
            assert any(thread.is_alive() for thread in waiting)
            for thread in waiting:
                thread.join(10)
    assert len(answers) == 4
    for response, elapsed in answers:
        assert response.status_code == 503
        assert response.json()["error"] == "auth_unavailable"
        assert elapsed < 4


def test_hung_reviews_cannot_take_the_threads_the_routes_run_in() -> None:
    # More hung reviews than the shared worker pool has threads (40): they
    # must wait for the door's own few threads instead, so a route run in a
    # worker thread (/healthz is one) still answers at once.
    stuck = StuckReviewer()
    # Each of the 48 tokens is new, so each needs a review: the budget per
    # source address must not be what answers them.
    # The reviews' deadline is long enough that, on a busy machine too, the
    # 48 requests are all still waiting when the probe is asked.
    app = agent_app(door(timeout_seconds=4.0, review_burst=64), stuck)
    statuses: list[int] = []
    try:
        with serve(app) as agent, httpx.Client(base_url=agent, timeout=10) as http:

            def ask(n: int) -> None:
                with httpx.Client(base_url=agent, timeout=10) as own:
                    statuses.append(own.get("/v1/pods", headers=bearer(f"t-{n}")).status_code)

            waiting = [threading.Thread(target=ask, args=(n,)) for n in range(48)]
            for thread in waiting:
                thread.start()
            time.sleep(0.3)
            started = time.monotonic()
            assert http.get("/healthz").status_code == 200
            # A blocked probe would wait out the 4 s review deadline.
            assert time.monotonic() - started < 1.0
            assert sum(thread.is_alive() for thread in waiting) > 40
            for thread in waiting:
                thread.join(10)
    finally:
        stuck.close()
    assert statuses == [503] * 48


# -- loopback -----------------------------------------------------------------------


def test_trusted_loopback_reads_over_a_real_socket(
    reviewer: KubeAccessReviewer, fake: FakeApiServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="podlens.audit")
    app = agent_app(door(trust_loopback=True), reviewer)
    with serve(app) as agent, httpx.Client(base_url=agent) as http:
        assert http.get("/v1/pods").status_code == 200
        me = http.get("/v1/test/whoami").json()
        assert (me["name"], me["via"]) == (LOOPBACK_CALLER_NAME, "loopback")
        # Kills need a token, from loopback too.
        assert http.post(KILL, json=DRY_RUN).status_code == 401
        assert past_the_door(http.post(KILL, json=DRY_RUN, headers=bearer("operator-token")))
    assert token_reviews(fake) == 1
    assert audited_callers(caplog) == [OPERATOR]


def test_loopback_is_not_trusted_by_default_over_a_real_socket(
    reviewer: KubeAccessReviewer, fake: FakeApiServer
) -> None:
    app = agent_app(door(), reviewer)
    with serve(app) as agent, httpx.Client(base_url=agent) as http:
        assert http.get("/v1/pods").status_code == 401
        me = http.get("/v1/test/whoami", headers=bearer("reader-token")).json()
        assert (me["name"], me["via"]) == (READER, "token")


@pytest.mark.parametrize(
    ("host", "trusted"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", False),
        ("127.0.0.6", False),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("10.244.1.7", False),
        ("::ffff:10.244.1.7", False),
        ("0.0.0.0", False),
        ("fe80::1%eth0", False),
        ("testclient", False),
        ("localhost", False),
    ],
)
def test_which_client_addresses_count_as_loopback(
    reviewer: KubeAccessReviewer, host: str, trusted: bool
) -> None:
    client = TestClient(agent_app(door(trust_loopback=True), reviewer), client=(host, 40000))
    response = client.get("/v1/test/whoami")
    if trusted:
        assert response.status_code == 200
        assert response.json()["name"] == LOOPBACK_CALLER_NAME
    else:
        assert response.status_code == 401


# -- websockets, audiences, modes ------------------------------------------------------


def test_websocket_handshakes_pass_the_same_door(client: TestClient) -> None:
    with (
        pytest.raises(WebSocketDisconnect) as refused,
        client.websocket_connect("/v1/test/ws"),
    ):
        pass
    assert refused.value.code == 1008
    with client.websocket_connect("/v1/test/ws", headers=bearer("reader-token")) as ws:
        assert ws.receive_text() == READER


def test_an_audience_keeps_out_tokens_meant_for_the_api_server(fake: FakeApiServer) -> None:
    with reviewer_for(fake.url, audiences=("podlens",)) as reviewer:
        client = TestClient(agent_app(door(), reviewer), client=REMOTE)
        assert client.get("/v1/pods", headers=bearer("audience-token")).status_code == 200
        assert client.get("/v1/pods", headers=bearer("reader-token")).status_code == 401


def test_mode_none_installs_no_door(fake: FakeApiServer) -> None:
    client = TestClient(agent_app(door(mode="none"), None), client=REMOTE)
    assert client.get("/v1/pods").status_code == 200
    assert client.get("/v1/test/whoami").json()["name"] == UNCHECKED_CALLER.name
    assert token_reviews(fake) == 0


def test_mode_kubernetes_without_an_api_server_refuses_to_start() -> None:
    with pytest.raises(ValueError, match="needs an API server"):
        agent_app(door(), None)


def test_no_reviewer_without_an_api_server() -> None:
    assert access_reviewer_from_settings(Settings(node_name=NODE)) is None


@pytest.mark.parametrize(
    "overrides",
    [{"mode": "rbac"}, {"cache_seconds": -1}, {"timeout_seconds": 0}, {"cache_entries": 0}],
)
def test_config_rejects_nonsense(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="auth"):
        door(**overrides)


def test_api_server_errors_are_agent_errors(reviews: Reviews) -> None:
    with (
        silent_api_server() as url,
        reviewer_for(url, timeout_seconds=0.3) as reviewer,
        pytest.raises(ApiServerError) as raised,
    ):
        reviewer.review_token("reader-token")
    assert "reader-token" not in str(raised.value)
    assert status_for(raised.value) == 503
