"""Every kill-and-watch guard, refusing and allowing, over realistic pods."""

from __future__ import annotations

import signal
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agent.api.errors import status_for
from agent.domain.model import Container, ContainerState, PodRef, Sandbox, SandboxState
from agent.domain.podview import PodView, build_pod_view
from agent.errors import AgentError, InvalidInput, NotFound
from agent.kube.convert import pod_from_dict
from agent.services.heal import (
    AgentIdentity,
    KillRequest,
    expected_restart_delay,
    parse_signal,
    plan_kill,
)
from agent.settings import Settings

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
UID = "5d1f0a64-0c1e-4d3f-9f51-7b1b2f7a9e10"
SB = "a" * 64
NODE = "n1"


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def pod_json(
    ns: str = "lab",
    policy: str = "Always",
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    sidecar: bool = False,
    last_exit: datetime | None = None,
    restarts: int = 0,
    spec_extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    app_status: dict[str, Any] = {
        "name": "app",
        "ready": True,
        "started": True,
        "restartCount": restarts,
        "image": "busybox",
        "imageID": "",
        "containerID": "containerd://" + "c" * 64,
        "state": {"running": {"startedAt": iso(NOW - timedelta(minutes=1))}},
    }
    if last_exit is not None:
        app_status["lastState"] = {
            "terminated": {"exitCode": 137, "reason": "Error", "finishedAt": iso(last_exit)}
        }
    spec: dict[str, Any] = {
        "nodeName": NODE,
        "restartPolicy": policy,
        "containers": [{"name": "app", "image": "busybox"}],
        **(spec_extra or {}),
    }
    statuses: dict[str, Any] = {"containerStatuses": [app_status]}
    if sidecar:
        spec["initContainers"] = [
            {"name": "shipper", "image": "busybox", "restartPolicy": "Always"}
        ]
        statuses["initContainerStatuses"] = [
            {
                "name": "shipper",
                "ready": True,
                "started": True,
                "restartCount": 0,
                "image": "busybox",
                "imageID": "",
                "containerID": "containerd://" + "d" * 64,
                "state": {"running": {"startedAt": iso(NOW - timedelta(minutes=1))}},
            }
        ]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "web",
            "namespace": ns,
            "uid": UID,
            "labels": labels or {},
            "annotations": annotations or {},
            "creationTimestamp": iso(NOW - timedelta(minutes=5)),
        },
        "spec": spec,
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True"}],
            **statuses,
        },
    }


def view_of(
    doc: dict[str, Any], *, app_running: bool = True, pause_pid: int | None = 4242
) -> PodView:
    pod = pod_from_dict(doc)
    ref = PodRef(pod.name, pod.namespace, pod.uid)
    sandbox = Sandbox(
        id=SB, pod=ref, state=SandboxState.READY, attempt=0, created_at=NOW,
        runtime_handler="", pause_pid=pause_pid,
        pause_pid_note=None if pause_pid else "CRI-O runs this pod without an infra container",
    )  # fmt: skip

    def container(cid: str, name: str, pid: int, running: bool = True) -> Container:
        return Container(
            id=cid, name=name, sandbox_id=SB, pod=ref,
            state=ContainerState.RUNNING if running else ContainerState.EXITED,
            attempt=0, image="busybox", image_ref="", created_at=NOW,
            started_at=NOW - timedelta(minutes=1), pid=pid if running else None,
            exit_code=None if running else 0,
        )  # fmt: skip

    containers = {"c" * 64: container("c" * 64, "app", 5000, app_running)}
    if any(c.name == "shipper" for c in pod.init_containers):
        containers["d" * 64] = container("d" * 64, "shipper", 5001)
    view = build_pod_view(
        {pod.uid: pod}, {SB: sandbox}, containers, namespace=pod.namespace, name=pod.name,
        node_name=NODE, api_synced=True, now=NOW,
    )  # fmt: skip
    assert view is not None
    return view


def settings(**overrides: Any) -> Settings:
    base: dict[str, Any] = {"enable_kill": True, "kill_namespaces": ("lab",), "node_name": NODE}
    return Settings(**{**base, **overrides})


ME = AgentIdentity(pod_namespace="podlens-system", pod_name="podlens-abc", container_id=None)


def kill(container: str | None = "app", sandbox: bool = False, sig: int = 9) -> KillRequest:
    return KillRequest(container=container, sandbox=sandbox, signal=sig, timeout_seconds=60,
                       dry_run=False)  # fmt: skip


def refusal(call: Any) -> AgentError:
    with pytest.raises(AgentError) as caught:
        call()
    # Every guard refusal answers with the same kind; the rule tells them apart.
    assert caught.value.kind == "refused"
    return caught.value


@pytest.mark.parametrize(
    ("cfg", "doc", "me", "status", "rule"),
    [
        ({"enable_kill": False}, {}, ME, 403, "kill-disabled"),
        ({"kill_namespaces": ()}, {}, ME, 403, "not-allowed"),
        ({"kill_namespaces": ("other",)}, {}, ME, 403, "not-allowed"),
        ({}, {}, AgentIdentity("lab", "web", None), 403, "own-pod"),
        ({"kill_namespaces": ("kube-system",)}, {"ns": "kube-system"}, ME, 403, "system-pod"),
        ({}, {"annotations": {"kubernetes.io/config.mirror": "x"}}, ME, 403, "system-pod"),
        ({}, {"annotations": {"kubernetes.io/config.source": "file"}}, ME, 403, "system-pod"),
        ({}, {"policy": "Never"}, ME, 422, "restart-policy"),
    ],
)
def test_refusals(
    cfg: dict[str, Any], doc: dict[str, Any], me: AgentIdentity, status: int, rule: str
) -> None:
    view = view_of(pod_json(**doc))
    refused = refusal(lambda: plan_kill(settings(**cfg), view, kill(), me, NOW))
    assert status_for(refused) == status
    assert refused.detail["rule"] == rule
    assert refused.message  # says why, for a person


def test_opt_in_label_allows_outside_the_allowlist() -> None:
    view = view_of(pod_json(ns="shop", labels={"podlens.io/allow-kill": "true"}))
    plan = plan_kill(settings(), view, kill(), ME, NOW)
    assert plan.target.pid == 5000
    other_value = view_of(pod_json(ns="shop", labels={"podlens.io/allow-kill": "yes"}))
    assert status_for(refusal(lambda: plan_kill(settings(), other_value, kill(), ME, NOW))) == 403


@pytest.mark.parametrize(
    "extra",
    [
        {"priorityClassName": "system-node-critical"},
        {"priorityClassName": "system-cluster-critical"},
        {"priority": 2_000_000_000},
        {"priorityClassName": "platform-critical", "priority": 2_000_001_000},
    ],
)
def test_critical_priority_pods_are_system_pods_in_any_namespace(extra: dict[str, Any]) -> None:
    # A DaemonSet's CNI or CSI agent may run in its own namespace with the
    # system priority classes; killing it takes the node's pods down with it.
    view = view_of(pod_json(ns="lab", spec_extra=extra))
    refused = refusal(lambda: plan_kill(settings(), view, kill(), ME, NOW))
    assert (status_for(refused), refused.detail["rule"]) == (403, "system-pod")
    assert "--kill-allow-system" in refused.message
    allowed = plan_kill(settings(kill_allow_system=True), view, kill(), ME, NOW)
    assert allowed.target.namespace == "lab"


def test_an_ordinary_priority_is_not_a_system_pod() -> None:
    view = view_of(pod_json(spec_extra={"priorityClassName": "high", "priority": 1_999_999_999}))
    assert plan_kill(settings(), view, kill(), ME, NOW).target.pid == 5000


def test_system_pods_allowed_only_when_explicit() -> None:
    view = view_of(pod_json(ns="kube-system"))
    plan = plan_kill(
        settings(kill_namespaces=("kube-system",), kill_allow_system=True), view, kill(), ME, NOW
    )
    assert plan.target.namespace == "kube-system"


def test_unknown_container_lists_the_pods_containers() -> None:
    with pytest.raises(NotFound) as caught:
        plan_kill(settings(), view_of(pod_json(sidecar=True)), kill("nope"), ME, NOW)
    assert caught.value.detail["containers"] == ["shipper", "app"]


def test_target_must_be_running() -> None:
    view = view_of(pod_json(), app_running=False)
    refused = refusal(lambda: plan_kill(settings(), view, kill(), ME, NOW))
    assert (status_for(refused), refused.detail["rule"]) == (409, "not-running")


def test_sidecar_restarts_even_in_a_never_pod() -> None:
    view = view_of(pod_json(policy="Never", sidecar=True))
    assert plan_kill(settings(), view, kill("shipper"), ME, NOW).target.container == "shipper"
    assert status_for(refusal(lambda: plan_kill(settings(), view, kill("app"), ME, NOW))) == 422


def test_on_failure_needs_an_uncatchable_signal() -> None:
    view = view_of(pod_json(policy="OnFailure"))
    refused = refusal(lambda: plan_kill(settings(), view, kill(sig=signal.SIGTERM), ME, NOW))
    assert status_for(refused) == 422
    assert "SIGKILL" in refused.message
    assert plan_kill(settings(), view, kill(sig=signal.SIGKILL), ME, NOW).signal == 9


def test_sandbox_guards() -> None:
    never = view_of(pod_json(policy="Never"))
    assert refusal(
        lambda: plan_kill(settings(), never, kill(None, sandbox=True), ME, NOW)
    ).detail["rule"] == "restart-policy"  # fmt: skip
    no_pause = view_of(pod_json(), pause_pid=None)
    refused = refusal(lambda: plan_kill(settings(), no_pause, kill(None, sandbox=True), ME, NOW))
    assert refused.detail["rule"] == "no-pause-process"
    assert "infra container" in refused.message
    plan = plan_kill(settings(), view_of(pod_json()), kill(None, sandbox=True), ME, NOW)
    assert (plan.target.pid, plan.target.kind, plan.expected_attempt) == (4242, "sandbox", 1)


def test_plan_says_pid_next_attempt_and_backoff_delay() -> None:
    fresh = plan_kill(settings(), view_of(pod_json()), kill(), ME, NOW)
    assert (fresh.target.pid, fresh.expected_attempt, fresh.expected_delay_seconds) == (5000, 1, 0)
    assert "at once" in fresh.expected_delay_reason
    recent = pod_json(last_exit=NOW - timedelta(minutes=2), restarts=3)
    plan = plan_kill(settings(), view_of(recent), kill(), ME, NOW)
    assert plan.expected_delay_seconds == 10
    assert "at most 40s" in plan.expected_delay_reason
    old = pod_json(last_exit=NOW - timedelta(minutes=11), restarts=3)
    assert plan_kill(settings(), view_of(old), kill(), ME, NOW).expected_delay_seconds == 0


def test_a_sandbox_kill_waits_out_the_longest_container_backoff() -> None:
    fresh = plan_kill(settings(), view_of(pod_json()), kill(None, sandbox=True), ME, NOW)
    assert fresh.expected_delay_seconds == 0
    # The real kubelet starts a container that exited in the last ten
    # minutes only after its back-off, even in a new sandbox.
    recent = pod_json(last_exit=NOW - timedelta(minutes=2), restarts=3)
    plan = plan_kill(settings(), view_of(recent), kill(None, sandbox=True), ME, NOW)
    assert plan.expected_delay_seconds == 10
    assert "(app: the previous exit was 120s ago" in plan.expected_delay_reason


def test_backoff_upper_bound_caps_at_300() -> None:
    status = pod_from_dict(pod_json(last_exit=NOW - timedelta(seconds=30), restarts=9)).status_for(
        "app"
    )
    _, why = expected_restart_delay(status, NOW)
    assert "at most 300s" in why


@pytest.mark.parametrize(
    ("given", "number"),
    [("SIGKILL", 9), ("KILL", 9), ("kill", 9), ("9", 9), (9, 9), ("SIGTERM", 15), ("term", 15)],
)
def test_signal_names(given: str | int, number: int) -> None:
    assert parse_signal(given) == number


@pytest.mark.parametrize("given", ["SIGNOPE", "0x9", 999, "", "-9"])
def test_bad_signals_are_422(given: str | int) -> None:
    refused = refusal(lambda: parse_signal(given))
    assert isinstance(refused, InvalidInput)
    assert (status_for(refused), refused.detail["rule"]) == (422, "bad-signal")


@pytest.mark.parametrize("given", ["SIGSTOP", "STOP", "19", 19, "SIGHUP", "int", "SIGUSR1", 2])
def test_signals_other_than_kill_and_term_are_refused_naming_the_two(given: str | int) -> None:
    # SIGSTOP freezes the pod instead of healing it; the others may be caught
    # and ignored, so kubelet would have nothing to restart.
    refused = refusal(lambda: parse_signal(given))
    assert (status_for(refused), refused.detail["rule"]) == (422, "bad-signal")
    assert "SIGKILL" in refused.message
    assert "SIGTERM" in refused.message
