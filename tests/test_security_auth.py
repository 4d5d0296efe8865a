"""The door on a shared cluster: loopback, token audiences and shapes, review
budgets per source, per-namespace checks for logs and kills, and what
``/readyz`` tells a caller without a token (daemonset/SECURITY.md, H1, H2,
M4, L3, L7)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from agent.api.app import create_app
from agent.api.auth import READ, AuthConfig
from agent.kube import DisabledPodCache, KubeAccessReviewer
from agent.settings import Settings
from lab.apiserver import FakeApiServer
from tests.test_auth import (
    KILL,
    LOG_READER,
    NODE,
    OPERATOR,
    REMOTE,
    TOKENS,
    FakeClock,
    QuietNode,
    Reviews,
    agent_app,
    bearer,
    door,
    past_the_door,
    reviewer_for,
    token_reviews,
)

DRY_RUN = {"container": "app", "dry_run": True}
LOGS = "/v1/pods/shop/web/logs"
OTHER_LOGS = "/v1/pods/other-team/web/logs"


@pytest.fixture
def reviews() -> Reviews:
    return Reviews()


@pytest.fixture
def fake(reviews: Reviews) -> Iterator[FakeApiServer]:
    with FakeApiServer(tokens=TOKENS, authorizer=reviews.authorize) as server:
        yield server


@pytest.fixture
def reviewer(fake: FakeApiServer) -> Iterator[KubeAccessReviewer]:
    with reviewer_for(fake.url) as made:
        yield made


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def client_from(host: str, config: AuthConfig, reviewer: Any, clock: FakeClock) -> TestClient:
    return TestClient(agent_app(config, reviewer, clock=clock), client=(host, 40000))


# -- H1: loopback -------------------------------------------------------------------


def test_loopback_is_not_trusted_by_default(reviewer: KubeAccessReviewer, clock: FakeClock) -> None:
    assert Settings(node_name=NODE).trust_loopback is False
    assert AuthConfig(mode="kubernetes", node_name=NODE).trust_loopback is False
    # What `kubectl port-forward` and a mesh sidecar look like to the agent.
    for host in ("127.0.0.1", "::1", "127.0.0.6"):
        client = client_from(host, door(), reviewer, clock)
        assert client.get("/v1/pods").status_code == 401, host
        assert client.get(LOGS).status_code == 401, host
        assert client.post(KILL, json=DRY_RUN).status_code == 401, host


@pytest.mark.parametrize(
    ("host", "trusted"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        # A service mesh's sidecar delivers callers from these.
        ("127.0.0.6", False),
        ("127.8.9.10", False),
        ("::ffff:127.0.0.6", False),
        ("10.244.1.7", False),
    ],
)
def test_trusted_loopback_is_exactly_one_address_per_family(
    reviewer: KubeAccessReviewer, clock: FakeClock, host: str, trusted: bool
) -> None:
    client = client_from(host, door(trust_loopback=True), reviewer, clock)
    assert (client.get("/v1/pods").status_code == 200) is trusted


def test_trusted_loopback_reads_only(
    reviewer: KubeAccessReviewer, fake: FakeApiServer, clock: FakeClock
) -> None:
    client = client_from("127.0.0.1", door(trust_loopback=True), reviewer, clock)
    assert client.get("/v1/pods").status_code == 200
    assert client.get("/v1/node").status_code == 200
    # Logs, diagnoses (which quote logs) and kills need a token, loopback or not.
    for path in (LOGS, "/v1/diagnostics", "/v1/pods/shop/web/diagnosis"):
        assert client.get(path).status_code == 401, path
    assert client.post(KILL, json=DRY_RUN).status_code == 401
    assert token_reviews(fake) == 0
    # A token still works from loopback, for what it allows.
    assert past_the_door(client.get(LOGS, headers=bearer("logs-token")))


# -- H2: audiences --------------------------------------------------------------------


def test_the_agent_wants_tokens_minted_for_podlens_by_default(fake: FakeApiServer) -> None:
    settings = Settings(
        node_name=NODE, api_server=fake.url, cri_endpoint="/run/containerd/containerd.sock"
    )
    assert settings.auth_token_audiences == ("podlens",)
    node = QuietNode(settings)
    node.load_empty()
    client = TestClient(create_app(settings, node, DisabledPodCache()), client=REMOTE)
    # Minted for the API server (kubectl create token without --audience): refused.
    assert client.get("/v1/pods", headers=bearer("reader-token")).status_code == 401
    assert client.get("/v1/pods", headers=bearer("audience-token")).status_code == 200


# -- M4: token shapes and review budgets ------------------------------------------------


@pytest.mark.parametrize(
    "token",
    [
        "a" * 8193,
        "x" * 100_000,
        "tok\x00en",
        "tok\ten",
        "tok en",
        "t\u00f6ken",
        "===",
        "tok=en",
    ],
    ids=["8k+1", "100k", "nul", "tab", "space", "non-ascii", "only-padding", "inner-padding"],
)
def test_malformed_or_oversized_tokens_are_refused_without_a_review(
    reviewer: KubeAccessReviewer, fake: FakeApiServer, clock: FakeClock, token: str
) -> None:
    client = client_from(REMOTE[0], door(), reviewer, clock)
    response = client.get("/v1/pods", headers={"Authorization": f"Bearer {token}".encode()})
    assert response.status_code == 401
    body = response.json()
    assert body["error"] == "unauthorized"
    assert "malformed" in body["message"] or "too long" in body["message"]
    assert len(response.content) < 1024
    assert token_reviews(fake) == 0


def test_a_well_formed_jwt_shape_is_reviewed(
    reviewer: KubeAccessReviewer, fake: FakeApiServer, clock: FakeClock
) -> None:
    client = client_from(REMOTE[0], door(), reviewer, clock)
    jwt_like = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl-_~+/=="
    assert client.get("/v1/pods", headers=bearer(jwt_like)).status_code == 401
    assert token_reviews(fake) == 1


def test_token_reviews_are_bounded_per_source_address(
    reviewer: KubeAccessReviewer, fake: FakeApiServer, clock: FakeClock
) -> None:
    config = door(review_burst=3, review_rate_per_second=0.5)
    app = agent_app(config, reviewer, clock=clock)
    attacker = TestClient(app, client=("10.244.9.9", 40000))
    neighbour = TestClient(app, client=("10.244.1.7", 40000))
    statuses = [
        attacker.get("/v1/pods", headers=bearer(f"guess-{n}")).status_code for n in range(6)
    ]
    assert statuses == [401, 401, 401, 429, 429, 429]
    assert token_reviews(fake) == 3
    limited = attacker.get("/v1/pods", headers=bearer("guess-7"))
    assert limited.status_code == 429
    assert limited.json()["error"] == "rate_limited"
    assert int(limited.headers["Retry-After"]) >= 1
    # Another address has its own budget; a token already reviewed needs none.
    assert neighbour.get("/v1/pods", headers=bearer("reader-token")).status_code == 200
    assert token_reviews(fake) == 4
    # The budget refills with time.
    clock.now += 2.0
    assert attacker.get("/v1/pods", headers=bearer("reader-token")).status_code == 200


def test_cached_answers_spend_no_budget(
    reviewer: KubeAccessReviewer, fake: FakeApiServer, clock: FakeClock
) -> None:
    config = door(review_burst=1, review_rate_per_second=0.01)
    client = client_from(REMOTE[0], config, reviewer, clock)
    for _ in range(5):
        assert client.get("/v1/pods", headers=bearer("reader-token")).status_code == 200
    assert token_reviews(fake) == 1


@pytest.mark.parametrize(
    "overrides",
    [{"max_token_length": 0}, {"review_burst": 0}, {"review_rate_per_second": 0}],
)
def test_config_rejects_nonsense_bounds(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="auth"):
        door(**overrides)


# -- L3: per-namespace checks -----------------------------------------------------------


def namespace_reviews(reviews: Reviews) -> list[dict[str, Any]]:
    return [
        s["resourceAttributes"]
        for s in reviews.specs
        if s["resourceAttributes"].get("resource") == "pods"
    ]


def test_logs_need_pods_log_in_the_pods_namespace(
    reviewer: KubeAccessReviewer, reviews: Reviews, clock: FakeClock
) -> None:
    client = client_from(REMOTE[0], door(), reviewer, clock)
    allowed = client.get(LOGS, headers=bearer("logs-token"))
    assert past_the_door(allowed)
    attrs = namespace_reviews(reviews)[-1]
    assert (attrs["verb"], attrs["resource"], attrs["subresource"]) == ("get", "pods", "log")
    assert (attrs["namespace"], attrs["name"]) == ("shop", "web")

    # The same node-wide role, another tenant's namespace: refused.
    denied = client.get(OTHER_LOGS, headers=bearer("logs-token"))
    assert denied.status_code == 403
    body = denied.json()
    assert body["error"] == "forbidden"
    assert body["message"] == (
        f"user {LOG_READER} may not get pods/log in namespace other-team (pod web)"
    )
    assert body["detail"]["namespace"] == "other-team"


def test_a_pods_diagnosis_needs_its_logs_and_the_node_wide_one_every_namespace(
    reviewer: KubeAccessReviewer, reviews: Reviews, clock: FakeClock
) -> None:
    client = client_from(REMOTE[0], door(), reviewer, clock)
    assert past_the_door(client.get("/v1/pods/shop/web/diagnosis", headers=bearer("logs-token")))
    other = client.get("/v1/pods/other-team/web/diagnosis", headers=bearer("logs-token"))
    assert other.status_code == 403
    # Every pod's diagnosis quotes every namespace's logs.
    assert client.get("/v1/diagnostics", headers=bearer("logs-token")).status_code == 403
    attrs = namespace_reviews(reviews)[-1]
    assert (attrs["verb"], attrs["subresource"], attrs.get("namespace", "")) == ("get", "log", "")


def test_kills_need_delete_pods_in_the_pods_namespace(
    reviewer: KubeAccessReviewer, reviews: Reviews, clock: FakeClock
) -> None:
    client = client_from(REMOTE[0], door(), reviewer, clock)
    assert past_the_door(client.post(KILL, headers=bearer("operator-token"), json=DRY_RUN))
    attrs = namespace_reviews(reviews)[-1]
    assert (attrs["verb"], attrs["resource"], attrs["namespace"], attrs["name"]) == (
        "delete",
        "pods",
        "shop",
        "web",
    )
    other = client.post(
        "/v1/pods/other-team/web/kill-and-watch", headers=bearer("operator-token"), json=DRY_RUN
    )
    assert other.status_code == 403
    assert other.json()["message"] == (
        f"user {OPERATOR} may not delete pods in namespace other-team (pod web)"
    )


def test_reads_need_no_namespace_check(
    reviewer: KubeAccessReviewer, reviews: Reviews, clock: FakeClock
) -> None:
    client = client_from(REMOTE[0], door(), reviewer, clock)
    assert client.get("/v1/pods/other-team/web", headers=bearer("reader-token")).status_code == 404
    assert namespace_reviews(reviews) == []
    assert READ.subresource == "podlens"


@pytest.mark.parametrize(
    "path",
    [
        "/v1/pods/..%2F..%2Fetc/web/logs",
        "/v1/pods/" + "n" * 64 + "/web/logs",
        "/v1/pods/Shop/web/logs",
    ],
)
def test_a_path_naming_no_namespace_is_refused_before_any_namespace_review(
    reviewer: KubeAccessReviewer, reviews: Reviews, clock: FakeClock, path: str
) -> None:
    client = client_from(REMOTE[0], door(), reviewer, clock)
    response = client.get(path, headers=bearer("logs-token"))
    assert 400 <= response.status_code < 500
    assert response.json()["error"]
    assert namespace_reviews(reviews) == []


# -- L7: /readyz -------------------------------------------------------------------------


def readyz_client(fake: FakeApiServer, host: str = REMOTE[0]) -> TestClient:
    settings = Settings(
        node_name=NODE,
        api_server=fake.url,
        cri_endpoint="unix:///run/secret-runtime/containerd.sock",
        auth_token_audiences=(),
    )
    app = create_app(settings, QuietNode(settings), DisabledPodCache())
    return TestClient(app, client=(host, 40000))


def test_readyz_without_a_token_says_only_whether_ready(fake: FakeApiServer) -> None:
    client = readyz_client(fake)
    response = client.get("/readyz")
    # Not synced: no runtime behind QuietNode until it loads a snapshot.
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable"}
    assert "secret-runtime" not in response.text
    assert fake.url not in response.text


def test_readyz_with_a_token_has_the_details(fake: FakeApiServer) -> None:
    client = readyz_client(fake)
    response = client.get("/readyz", headers=bearer("reader-token"))
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert set(checks) == {"api", "runtime"}
    assert checks["runtime"].startswith("unavailable since")


def test_readyz_with_a_bad_token_is_still_a_probe(
    fake: FakeApiServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    client = readyz_client(fake)
    for headers in (bearer("revoked-token"), bearer("nobody-token"), {"Authorization": "x"}):
        response = client.get("/readyz", headers=headers)
        assert response.status_code == 503
        assert response.json() == {"status": "unavailable"}
