"""The audit trail on a shared cluster: who asked (uid, groups, address, token
fingerprint), and a trail that cannot be written stops kills without leaving
a pod marked busy (daemonset/SECURITY.md, L2)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from agent import host
from agent.api.app import create_app
from agent.api.auth import token_fingerprint
from agent.errors import Conflict, Unavailable
from agent.kube import DisabledPodCache, KubeAccessReviewer
from agent.services.heal import AuditLog, HealManager, Plan, RunState, Target, audit_caller
from agent.services.node import NodeState
from agent.settings import Settings
from lab.apiserver import FakeApiServer
from tests.test_auth import (
    KILL,
    NODE,
    OPERATOR,
    REMOTE,
    TOKENS,
    QuietNode,
    Reviews,
    agent_app,
    bearer,
    door,
    reviewer_for,
)

DRY_RUN = {"container": "app", "dry_run": True}


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


def audit_records(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "podlens.audit"]


def test_records_name_the_callers_uid_groups_address_and_token(
    reviewer: KubeAccessReviewer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="podlens.audit")
    client = TestClient(agent_app(door(), reviewer), client=REMOTE)
    response = client.post(KILL, headers=bearer("operator-token"), json=DRY_RUN)
    assert response.status_code == 404
    (record,) = audit_records(caplog)
    assert record["event"] == "refused"
    assert record["requested_by"] == OPERATOR
    assert record["caller"] == {
        "name": OPERATOR,
        "via": "token",
        "uid": "uid-operator",
        "groups": ["system:authenticated"],
        "source": f"{REMOTE[0]}:{REMOTE[1]}",
        "token": token_fingerprint("operator-token"),
    }
    assert "operator-token" not in caplog.text


def test_without_a_door_records_still_name_the_address(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="podlens.audit")
    client = TestClient(agent_app(door(mode="none"), None), client=REMOTE)
    assert client.post(KILL, json=DRY_RUN).status_code == 404
    (record,) = audit_records(caplog)
    assert record["caller"]["via"] == "unchecked"
    assert record["caller"]["source"] == f"{REMOTE[0]}:{REMOTE[1]}"


def test_an_unwritable_trail_refuses_with_503_not_500(tmp_path: Path) -> None:
    settings = Settings(
        node_name=NODE,
        cri_endpoint="/run/containerd/containerd.sock",
        audit_log_path=tmp_path,  # a directory: every append fails
        auth_mode="none",
    )
    node = QuietNode(settings)
    node.load_empty()
    client = TestClient(create_app(settings, node, DisabledPodCache()), client=REMOTE)
    response = client.post(KILL, json=DRY_RUN)
    assert response.status_code == 503
    body = response.json()
    assert body["detail"]["rule"] == "audit-unwritable"
    assert str(tmp_path) in body["message"]


def test_an_uncreatable_directory_does_not_stop_the_agent(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    audit = AuditLog(blocker / "podlens" / "audit.jsonl")
    with pytest.raises(Unavailable) as refused:
        audit.write("kill", pod="web")
    assert refused.value.detail["rule"] == "audit-unwritable"


def test_the_caller_is_named_only_inside_its_block(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "audit.jsonl")
    with audit_caller({"name": "alice", "source": "10.0.0.1:1"}):
        audit.write("refused", pod="a")
    audit.write("refused", pod="b")
    first, second = audit.read()
    assert first["caller"] == {"name": "alice", "source": "10.0.0.1:1"}
    assert "caller" not in second


def plan_for(pod_uid: str) -> Plan:
    target = Target(
        namespace="shop",
        pod="web",
        pod_uid=pod_uid,
        container="app",
        container_id="c" * 64,
        sandbox_id="s" * 64,
        pid=999_999,
        pid_started_at=datetime(2026, 1, 1, tzinfo=UTC),
        attempt=0,
        restart_count=0,
    )
    return Plan(
        target=target,
        signal=9,
        signal_name="SIGKILL",
        timeout_seconds=5.0,
        expected_attempt=1,
        expected_delay_seconds=0.0,
        expected_delay_reason="",
        restart_policy="Always",
        steps=(),
    )


async def test_a_kill_whose_record_cannot_be_written_is_not_sent_and_frees_the_pod(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    signalled: list[int] = []

    def never(pid: int, *args: object) -> object:
        signalled.append(pid)
        raise AssertionError("a kill without its audit record")

    monkeypatch.setattr(host, "signal_container_process", never)
    settings = Settings(node_name=NODE, enable_kill=True, kill_rate_per_minute=60)
    finished: list[RunState] = []
    manager = HealManager(
        settings,
        NodeState(settings),
        DisabledPodCache(),
        AuditLog(tmp_path),  # a directory: every append fails
        on_finished=lambda run: finished.append(run.state),
    )
    run = manager.start(plan_for("uid-1"), "alice")
    await asyncio.wait_for(asyncio.gather(*manager._tasks), 5)
    assert run.state is RunState.FAILED
    assert "audit log" in run.verdict
    assert finished == [RunState.FAILED]
    assert signalled == []
    # The pod is not left marked busy: another run may start.
    try:
        again = manager.start(plan_for("uid-1"), "alice")
    except Conflict as exc:  # pragma: no cover - the failure this test is about
        pytest.fail(f"the pod stayed busy: {exc.message}")
    await asyncio.wait_for(asyncio.gather(*manager._tasks), 5)
    assert again.state is RunState.FAILED
