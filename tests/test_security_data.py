"""What the agent reads and what its answers show: only the log directories, no secrets in reads.

Each test here fails on the behaviour the shared-cluster review found and
passes with its control (daemonset/SECURITY.md names them by finding).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from agent.api.app import create_app
from agent.logs import AttemptKey, tail
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


def client_for(root: Path, pod: StillPod, **settings: Any) -> Iterator[TestClient]:
    cfg = still_settings(log_roots=(root,), **settings)
    app = create_app(cfg, still_node(cfg, [pod]), StillPods([pod.api]))
    with TestClient(app, raise_server_exceptions=False) as client:
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
