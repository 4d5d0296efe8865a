"""Kill-and-watch against the real kubelet: a container kill and a sandbox kill heal.

The agent of ``lab up --real`` allows kills in namespace default. The target
(``tests/fixtures/real/heal-target.yaml``) has an init container and two app
containers. Each run is started with POST /v1/pods/default/heal-target/kill-and-watch
and followed at /v1/heal/runs/{id} until it ends; it must heal with every
phase of its kind, and the real API server must show what the run says
kubelet did (a restart of the container that ended by SIGKILL, a new sandbox).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from agent.services.heal import CONTAINER_PHASES, SANDBOX_PHASES
from tests.real_cluster import RealCluster, load_manifests, note, wait_for

pytest_plugins = ("tests.real_cluster",)
pytestmark = [pytest.mark.containerd, pytest.mark.real, pytest.mark.usefixtures("module_timer")]

POD = "heal-target"
TIMEOUT = 120.0


def statuses(pod: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in pod["status"].get("containerStatuses") or []}


def ready_everywhere(cluster: RealCluster) -> bool:
    """kubectl and the agent both show the pod Running 2/2."""
    k = cluster.kubectl_rows().get(POD)
    a = cluster.agent_rows().get(POD)
    return (
        k is not None
        and a is not None
        and (k.status, k.ready)
        == ("Running", "2/2")
        == (
            a.status,
            a.ready,
        )
    )


@pytest.fixture(scope="module")
def target(real_cluster: RealCluster) -> Iterator[str]:
    real_cluster.apply(load_manifests("heal-target.yaml"))
    try:
        wait_for(
            "heal-target Running 2/2 on both sides", lambda: ready_everywhere(real_cluster), 90
        )
        yield POD
    finally:
        real_cluster.delete_pods([POD])


def kill_and_watch(cluster: RealCluster, body: dict[str, Any]) -> dict[str, Any]:
    """Start a run and follow it until it ends; the run as the agent reports it."""
    wait_for("the target ready before the kill", lambda: ready_everywhere(cluster), 90)
    response = cluster.agent(
        "POST", f"/v1/pods/default/{POD}/kill-and-watch", {**body, "timeout_seconds": TIMEOUT}
    )
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["run_url"], accepted
    run_id = accepted["id"]

    def finished() -> dict[str, Any] | None:
        run: dict[str, Any] = cluster.agent_json(f"/v1/heal/runs/{run_id}")
        return run if run["state"] != "running" else None

    run = wait_for(f"run {run_id} finished", finished, TIMEOUT + 15, interval=0.5)
    phases = ", ".join(
        f"{p['name']} +{p['since_signal_seconds']:.2f}s"
        for p in run["phases"]
        if p["since_signal_seconds"] is not None
    )
    plan = run["plan"]
    note(
        f"kill-and-watch {run['target']['kind']}: {run['state']}, time to recover "
        f"{run['time_to_recover_seconds']:.2f}s (expected delay {plan['expected_delay_seconds']}s: "
        f"{plan['expected_delay_reason']}; {phases})"
    )
    return run


def test_container_kill_heals_with_every_phase(real_cluster: RealCluster, target: str) -> None:
    before = statuses(real_cluster.pod(target) or {})["sidecar"]
    run = kill_and_watch(real_cluster, {"container": "sidecar"})

    assert run["state"] == "healed", run["verdict"]
    names = [p["name"] for p in run["phases"]]
    assert set(names) == set(CONTAINER_PHASES), names
    assert names[0] == "signal_sent"
    assert run["time_to_recover_seconds"] > 0
    assert run["target"]["container_id"] == before["containerID"].split("://", 1)[1]

    # What the API server says kubelet did: one more restart, after a SIGKILL.
    after = statuses(real_cluster.pod(target) or {})["sidecar"]
    assert after["restartCount"] == before["restartCount"] + 1
    assert after["lastState"]["terminated"]["exitCode"] == 137
    assert after["containerID"] != before["containerID"]
    assert after["ready"] is True


def test_sandbox_kill_heals_with_every_phase(real_cluster: RealCluster, target: str) -> None:
    before = real_cluster.pod(target) or {}
    counts = {n: s["restartCount"] for n, s in statuses(before).items()}
    run = kill_and_watch(real_cluster, {"sandbox": True})

    assert run["state"] == "healed", run["verdict"]
    names = [p["name"] for p in run["phases"]]
    # The pod has an init container, so the new sandbox reruns it: every phase.
    assert set(names) == set(SANDBOX_PHASES), names
    assert names[0] == "signal_sent"
    new_sandbox = next(p for p in run["phases"] if p["name"] == "runtime_new_sandbox")
    assert new_sandbox["detail"]["sandbox_id"] != run["target"]["sandbox_id"]

    # kubelet's own account: the sandbox changed, every container started again.
    messages = {(e.get("reason"), e.get("message")) for e in real_cluster.events(target)}
    assert ("SandboxChanged", "Pod sandbox changed, it will be killed and re-created.") in messages
    after = real_cluster.pod(target) or {}
    for name, count in counts.items():
        assert statuses(after)[name]["restartCount"] > count, (name, statuses(after)[name])
    first, rerun = (
        p["status"]["initContainerStatuses"][0]["state"]["terminated"] for p in (before, after)
    )
    assert rerun["exitCode"] == 0
    # RFC 3339 in UTC, to the second: later reads greater.
    assert rerun["startedAt"] > first["finishedAt"], (first, rerun)


def test_runs_are_listed_with_their_outcome(real_cluster: RealCluster, target: str) -> None:
    runs = real_cluster.agent_json("/v1/heal/runs")["items"]
    mine = [r for r in runs if r["pod"] == target]
    assert {r["state"] for r in mine} == {"healed"}, mine
    assert len(mine) >= 2
    # Listed newest first.
    assert [r["requested_at"] for r in mine] == sorted(
        (r["requested_at"] for r in mine), reverse=True
    )
    assert all(r["time_to_recover_seconds"] and r["time_to_recover_seconds"] > 0 for r in mine)
