"""What the agent reads and what its answers show: only the log directories, no secrets in reads.

Each test here fails on the behaviour the shared-cluster review found and
passes with its control (daemonset/SECURITY.md names them by finding).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from agent.api.app import create_app
from agent.api.auth import AuthConfig, install_auth
from agent.kube import AccessDecision, ResourceAttributes, TokenReviewResult, UserInfo
from agent.logs import AttemptKey, TailMemo, tail
from agent.logs._memo import CUT_MARK
from agent.services import evidence
from agent.services.agent import Agent
from tests.still_node import (
    StillContainer,
    StillPod,
    StillPods,
    still_node,
    still_pod,
    still_settings,
)

SECRET = "db-password=hunter2-do-not-show"
UID = "0b5c7d3e-1111-2222-3333-000000000000"


def cri_log(*lines: str) -> bytes:
    return b"".join(
        f"2026-11-21T12:00:00.{i}Z stdout F {t}\n".encode() for i, t in enumerate(lines)
    )


@pytest.fixture
def roots(tmp_path: Path) -> Path:
    """The node's log directory, and a secret file next to (not under) it."""
    (tmp_path / "pods").mkdir()
    (tmp_path / "secret.txt").write_bytes(cri_log(SECRET))
    return tmp_path / "pods"


def container_dir(root: Path, container: str = "app") -> Path:
    return root / f"shop_web_{UID}" / container


def client_for(
    root: Path, pod: StillPod, *, reviewer: Any = None, **settings: Any
) -> Iterator[TestClient]:
    """A client of an agent holding ``pod``; with ``reviewer``, behind the token door."""
    cfg = still_settings(log_roots=(root,), **settings)
    app = create_app(cfg, still_node(cfg, [pod]), StillPods([pod.api]))
    if reviewer is not None:
        app.state.reviewer = reviewer
        install_auth(app, AuthConfig(mode="kubernetes", node_name="n1"), reviewer)
    with TestClient(app, raise_server_exceptions=False, client=("10.244.1.7", 51000)) as client:
        yield client


# --------------------------------------------------------------------------
# M1: nothing outside the configured log directories is ever opened
# --------------------------------------------------------------------------


def test_the_tail_has_no_default_roots() -> None:
    # Every read names its roots; none falls back to "wherever the file is".
    param = inspect.signature(tail).parameters["allowed_roots"]
    assert param.default is inspect.Parameter.empty
    assert param.kind is inspect.Parameter.KEYWORD_ONLY


def test_diagnosis_does_not_quote_a_log_symlinked_out_of_the_roots(roots: Path) -> None:
    log = container_dir(roots) / "0.log"
    log.parent.mkdir(parents=True)
    log.symlink_to(roots.parent / "secret.txt")
    pod = still_pod("web", [StillContainer("app", exit_code=1, log_path=str(log))])
    for client in client_for(roots, pod):
        answer = client.get("/v1/pods/shop/web/diagnosis")
        assert answer.status_code == 200, answer.text
        assert SECRET not in answer.text
        assert "hunter2" not in client.get("/v1/diagnostics").text


def test_logs_of_a_container_dir_symlinked_out_of_the_roots_are_refused(roots: Path) -> None:
    elsewhere = roots.parent / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "0.log").write_bytes(cri_log(SECRET))
    container_dir(roots).parent.mkdir(parents=True)
    container_dir(roots).symlink_to(elsewhere)
    log = container_dir(roots) / "0.log"
    pod = still_pod("web", [StillContainer("app", pid=None, log_path=str(log))])
    for client in client_for(roots, pod):
        answer = client.get("/v1/pods/shop/web/logs")
        assert 400 <= answer.status_code < 500, answer.text
        assert answer.json()["error"]
        assert "hunter2" not in answer.text


def test_logs_at_a_path_outside_the_roots_are_refused(roots: Path) -> None:
    # A runtime reporting a log path outside the configured directories does
    # not make that directory readable.
    outside = roots.parent / "other" / "0.log"
    outside.parent.mkdir()
    outside.write_bytes(cri_log(SECRET))
    pod = still_pod("web", [StillContainer("app", log_path=str(outside))])
    for client in client_for(roots, pod):
        answer = client.get("/v1/pods/shop/web/logs")
        assert 400 <= answer.status_code < 500, answer.text
        assert "hunter2" not in answer.text
        assert SECRET not in client.get("/v1/pods/shop/web/diagnosis").text


def test_last_words_are_not_kept_from_a_log_symlinked_out_of_the_roots(roots: Path) -> None:
    log = container_dir(roots) / "0.log"
    log.parent.mkdir(parents=True)
    log.symlink_to(roots.parent / "secret.txt")
    honest = container_dir(roots) / "1.log"
    honest.write_bytes(cri_log("bye"))
    agent = Agent(still_settings(log_roots=(roots,)), pods=StillPods([]))
    agent._remember(AttemptKey(UID, "app", 0), log)
    agent._remember(AttemptKey(UID, "app", 1), honest)
    assert agent.last_words.recall(UID, "app", 0) is None
    kept = agent.last_words.recall(UID, "app", 1)
    assert kept is not None
    assert [line.text for line in kept.lines] == ["bye"]


# --------------------------------------------------------------------------
# M5: the read tier shows no secrets
# --------------------------------------------------------------------------

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
ANNOTATIONS = {
    LAST_APPLIED: json.dumps(
        {"spec": {"containers": [{"env": [{"name": "DB_PASSWORD", "value": "swordfish"}]}]}}
    ),
    "team": "shop",
}
ARGV = [
    "--password=hunter2",
    "--token",
    "tok-abc123",
    "DB_PASSWORD=swordfish",
    "https://admin:letmein@db.example/x",
    "--port=5432",
]
SECRETS = ("hunter2", "tok-abc123", "swordfish", "letmein")


@pytest.fixture
def secretive() -> Iterator[int]:
    """A process whose command line carries secrets, as many real ones do."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", *ARGV])
    try:
        yield child.pid
    finally:
        child.kill()
        child.wait()


@pytest.fixture
def stranger() -> Iterator[int]:
    """A host process in no container."""
    child = subprocess.Popen(["sleep", "600"])
    try:
        yield child.pid
    finally:
        child.kill()
        child.wait()


def secretive_pod(pid: int) -> StillPod:
    return still_pod("web", [StillContainer("app", pid=pid)], annotations=ANNOTATIONS)


def reads_of(pod: StillPod, pid: int) -> list[str]:
    container, sandbox = pod.containers[0].id, pod.sandbox.id
    return [
        f"/v1/processes/{pid}",
        f"/v1/containers/{container}",
        f"/v1/sandboxes/{sandbox}",
        "/v1/pods/shop/web",
        "/v1/pods",
        "/v1/containers",
        "/v1/sandboxes",
    ]


def test_command_lines_are_redacted_in_every_read(roots: Path, secretive: int) -> None:
    pod = secretive_pod(secretive)
    for client in client_for(roots, pod):
        for path in reads_of(pod, secretive):
            for output in ("json", "text"):
                answer = client.get(path, params={"output": output})
                assert answer.status_code == 200, (path, answer.text)
                leaked = [s for s in SECRETS if s in answer.text]
                assert not leaked, (path, output, leaked)
        process = client.get(f"/v1/processes/{secretive}").json()["process"]
        assert process["cmdline"][3:] == [
            "--password=***",
            "--token",
            "***",
            "DB_PASSWORD=***",
            "https://admin:***@db.example/x",
            "--port=5432",
        ]
        assert process["cmdline_redacted"] is True


def test_the_full_command_line_needs_the_logs_permission(roots: Path, secretive: int) -> None:
    pod = secretive_pod(secretive)
    # Authentication off: whoever reaches the port holds every tier.
    for client in client_for(roots, pod):
        full = client.get(f"/v1/processes/{secretive}", params={"full_cmdline": "true"})
        assert full.status_code == 200
        assert "--password=hunter2" in full.json()["process"]["cmdline"]
        assert full.json()["process"]["cmdline_redacted"] is False
    reviewer = FakeReviewer()
    for client in client_for(roots, pod, reviewer=reviewer):
        path = f"/v1/processes/{secretive}"
        plain = client.get(path, headers=bearer("reader"))
        assert plain.status_code == 200, plain.text
        assert "hunter2" not in plain.text
        for where in (path, f"/v1/containers/{pod.containers[0].id}", "/v1/pods/shop/web"):
            refused = client.get(where, params={"full_cmdline": "true"}, headers=bearer("reader"))
            assert refused.status_code == 403, (where, refused.text)
            assert "podlens-logs" in refused.json()["message"]
            assert "hunter2" not in refused.text
            allowed = client.get(where, params={"full_cmdline": "true"}, headers=bearer("logs"))
            assert allowed.status_code == 200, (where, allowed.text)
            assert "hunter2" in allowed.text
        assert ("system:serviceaccount:ops:logs", "podlens-logs") in reviewer.asked


def test_last_applied_configuration_is_dropped_from_every_view(roots: Path, secretive: int) -> None:
    pod = secretive_pod(secretive)
    for client in client_for(roots, pod):
        for path in (f"/v1/containers/{pod.containers[0].id}", f"/v1/sandboxes/{pod.sandbox.id}"):
            body = client.get(path).json()
            assert LAST_APPLIED not in body["annotations"], path
            assert body["annotations"]["team"] == "shop"
            assert "swordfish" not in client.get(path, params={"output": "text"}).text
        for path in reads_of(pod, secretive):
            assert "last-applied-configuration" not in client.get(path).text, path


def test_a_404_names_nothing_about_a_process_outside_containers(
    roots: Path, secretive: int, stranger: int
) -> None:
    for client in client_for(roots, secretive_pod(secretive)):
        answer = client.get(f"/v1/processes/{stranger}")
        assert answer.status_code == 404
        body = answer.json()
        assert body["message"] == f"PID {stranger} is not in a container"
        assert "sleep" not in answer.text
        assert "cgroup" not in answer.text
        assert body.get("detail") in (None, {"pid": stranger})


class FakeReviewer:
    """The API server's answers: tokens "reader" (reads) and "logs" (reads and logs)."""

    USERS = {"reader": "system:serviceaccount:ops:reader", "logs": "system:serviceaccount:ops:logs"}
    GRANTS = {
        "system:serviceaccount:ops:reader": {"podlens"},
        "system:serviceaccount:ops:logs": {"podlens", "podlens-logs"},
    }

    def __init__(self) -> None:
        self.asked: list[tuple[str, str]] = []

    def review_token(self, token: str) -> TokenReviewResult:
        name = self.USERS.get(token)
        return TokenReviewResult(UserInfo(name) if name else None, "" if name else "unknown")

    def review_access(self, user: UserInfo, attributes: ResourceAttributes) -> AccessDecision:
        self.asked.append((user.username, attributes.subresource))
        if attributes.resource != "nodes" or attributes.name != "n1":
            return AccessDecision(False)
        return AccessDecision(attributes.subresource in self.GRANTS.get(user.username, set()))

    def close(self) -> None:
        return None


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --------------------------------------------------------------------------
# M2: memory bounds (the cgroup test is tests/test_security_memory.py)
# --------------------------------------------------------------------------

CONTROL = "".join(chr(c) for c in range(1, 32) if c != 10)


def control_log(path: Path, lines: int, width: int = 800) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = (CONTROL * (width // len(CONTROL) + 1))[:width]
    record = f"2026-11-21T12:00:00.000000001Z stdout F {text}\n".encode()
    path.write_bytes(record * lines)


def test_a_logs_answer_is_capped_and_says_what_it_left_out(roots: Path) -> None:
    log = container_dir(roots) / "0.log"
    control_log(log, 10_000)
    pod = still_pod("web", [StillContainer("app", pid=None, log_path=str(log))])
    cap = 256 * 1024
    for client in client_for(roots, pod, log_response_max_bytes=cap):
        answer = client.get("/v1/pods/shop/web/logs", params={"tail": 10_000})
        assert answer.status_code == 200
        assert len(answer.content) <= cap + 2048
        body = answer.json()
        assert body["truncated"] is True
        assert "capped at 256 KiB" in body["note"]
        assert 0 < len(body["lines"]) < 10_000
        text = client.get("/v1/pods/shop/web/logs", params={"tail": 10_000, "output": "text"})
        assert len(text.content) <= cap


def test_long_lines_are_cut_and_marked_in_both_outputs(roots: Path) -> None:
    log = container_dir(roots) / "0.log"
    log.parent.mkdir(parents=True)
    long = "y" * 100_000
    log.write_bytes(f"2026-11-21T12:00:00Z stdout F {long}\n".encode())
    pod = still_pod("web", [StillContainer("app", pid=None, log_path=str(log))])
    for client in client_for(roots, pod):
        (line,) = client.get("/v1/pods/shop/web/logs").json()["lines"]
        assert line["cut"] is True
        assert line["text"] == "y" * 16 * 1024
        text = client.get("/v1/pods/shop/web/logs", params={"output": "text"}).text
        assert text == "y" * 16 * 1024 + " [line cut at 16 KiB]\n"


async def test_log_reads_and_diagnoses_run_a_bounded_number_at_once(
    roots: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = container_dir(roots) / "0.log"
    control_log(log, 10)
    pod = still_pod("web", [StillContainer("app", exit_code=1, log_path=str(log))])
    cfg = still_settings(log_roots=(roots,), log_reads_concurrent=2)
    app = create_app(cfg, still_node(cfg, [pod]), StillPods([pod.api]))
    agent: Agent = app.state.agent
    inside = 0
    most = 0
    lock = threading.Lock()
    real_read, real_gather = agent.read_log, evidence.gather_many

    def counted(enter: bool) -> None:
        nonlocal inside, most
        with lock:
            inside += 1 if enter else -1
            most = max(most, inside)

    def slow_read(*args: Any, **kwargs: Any) -> Any:
        counted(True)
        try:
            time.sleep(0.1)
            return real_read(*args, **kwargs)
        finally:
            counted(False)

    async def slow_gather(*args: Any, **kwargs: Any) -> Any:
        counted(True)
        try:
            await asyncio.sleep(0.1)
            return await real_gather(*args, **kwargs)
        finally:
            counted(False)

    monkeypatch.setattr(agent, "read_log", slow_read)
    monkeypatch.setattr(evidence, "gather_many", slow_gather)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://agent") as client:
        paths = ["/v1/pods/shop/web/logs", "/v1/pods/shop/web/diagnosis", "/v1/diagnostics"]
        answers = await asyncio.gather(*(client.get(paths[i % 3]) for i in range(12)))
    assert [a.status_code for a in answers] == [200] * 12
    assert most == 2


def test_the_diagnosis_memo_is_bounded_by_bytes(roots: Path) -> None:
    memo = TailMemo([roots], max_total_bytes=64 * 1024, max_line_chars=100)
    for i in range(50):
        log = roots / f"p{i}" / "0.log"
        control_log(log, 20, width=4000)
        (first, *_) = memo.lines(log, 10)
        assert first.endswith(CUT_MARK)
        assert len(first) == 100 + len(CUT_MARK)
    assert 0 < memo.approx_bytes <= 64 * 1024
    assert len(memo) < 50
