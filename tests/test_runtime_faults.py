"""Faults on each real runtime: restarted mid-stream, optional calls it does not offer.

Runs against containerd 1.6, containerd 2.x and CRI-O (the ``cri_runtime``
matrix). A runtime restarted while the agent follows its events must leave
the agent following them again with nothing missed (what changed while it was
down shows after the reconnect's relist); an optional call the runtime
answers UNIMPLEMENTED is recorded as an answer, never as an outage. The
socket-gone case (503, then recovery) is in tests/test_inventory_containerd.py.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator

import pytest

from agent.settings import Settings
from lab.cri_pods import ContainerDef, CriPodDriver, PodHandle
from lab.runtimes import PrivateRuntime, RuntimeFacts
from tests.agent_server import RunningAgent, running_agent

pytestmark = pytest.mark.containerd

BUSYBOX = "docker.io/library/busybox:latest"
SLEEP = ["sleep", "3600"]
# Optional calls as each runtime answers them (from their sources: containerd
# 1.6 predates ListPodSandboxMetrics; 2.x and CRI-O implement it).
SANDBOX_METRICS = {"containerd": "unimplemented", "containerd2": "available", "crio": "available"}


@pytest.fixture(scope="module")
def agent(cri_runtime: PrivateRuntime, runtime_facts: RuntimeFacts) -> Iterator[RunningAgent]:
    # Where events are followed, the relist is a minute away: a quick update
    # can only come from events, pidfds or the relist a reconnect makes.
    settings = Settings(
        cri_endpoint=cri_runtime.endpoint,
        node_name="lab-node",
        relist_interval_seconds=60 if runtime_facts.streams_events else 0.5,
        events_relist_interval_seconds=60,
        reconnect_min_seconds=0.1,
        reconnect_max_seconds=0.5,
    )
    with running_agent(settings) as running:
        running.wait_for(lambda a: a.get("/readyz").status_code == 200)
        yield running


def container(agent: RunningAgent, container_id: str) -> dict[str, object]:
    response = agent.get(f"/v1/containers/{container_id}")
    found: dict[str, object] = response.json() if response.status_code == 200 else {}
    return found


def capabilities(agent: RunningAgent) -> dict[str, object]:
    found: dict[str, object] = agent.get("/v1/node").json()["capabilities"]
    return found


def test_optional_calls_are_answers_not_faults(
    agent: RunningAgent, cri_runtime: PrivateRuntime, runtime_facts: RuntimeFacts
) -> None:
    # Settled: subscribing, or told there are no events.
    now = agent.wait_for(
        lambda a: (c := capabilities(a))["change_source_reason"] != "subscribing" and c
    )
    assert agent.get("/v1/node").json()["runtime"]["connected"] is True
    assert agent.get("/readyz").status_code == 200
    answer = str(now["optional_calls"]["ListPodSandboxMetrics"])
    assert answer.startswith(SANDBOX_METRICS[cri_runtime.name]), answer
    if runtime_facts.streams_events:
        assert now["change_source"] == "events"
    else:
        assert now["change_source"] == "relist"
        assert "does not implement GetContainerEvents" in str(now["change_source_reason"])


def test_a_runtime_restarted_mid_stream_is_followed_again_and_nothing_is_missed(
    agent: RunningAgent,
    cri_runtime: PrivateRuntime,
    runtime_driver: CriPodDriver,
    runtime_facts: RuntimeFacts,
    runtime_pod: Callable[..., PodHandle],
) -> None:
    pod = runtime_pod(
        "restart",
        "faults",
        containers=[
            ContainerDef("a", BUSYBOX, command=SLEEP),
            ContainerDef("b", BUSYBOX, command=SLEEP),
        ],
    )
    ids = pod.container_ids
    agent.wait_for(lambda a: all(container(a, i).get("pid") for i in ids.values()))
    pid = container(agent, ids["a"])["pid"]
    assert isinstance(pid, int)
    breaks_before = agent.node.event_stream_breaks

    cri_runtime.kill()
    try:
        agent.wait_for(lambda a: a.get("/readyz").status_code == 503, timeout=15)
        # While the runtime is down: a process ends, and no event can say so.
        os.kill(pid, signal.SIGKILL)
    finally:
        cri_runtime.start()
    agent.wait_for(lambda a: a.get("/readyz").status_code == 200, timeout=30)
    # The reconnect's relist shows what happened while the runtime was away.
    seen = agent.wait_for(
        lambda a: (c := container(a, ids["a"])).get("state") == "exited" and c, timeout=15
    )
    # The runtime learns of an exit it did not see only as "unknown" (containerd
    # 2.x: 255); the agent shows what the runtime says.
    runtime = runtime_driver.container_status(ids["a"]).status
    assert (seen["exit_code"], seen["pid"]) == (runtime.exit_code, None)
    assert container(agent, ids["b"])["pid"] == runtime_driver.container_pid(ids["b"])

    if not runtime_facts.streams_events:
        assert capabilities(agent)["change_source"] == "relist"
        return
    agent.wait_for(lambda a: capabilities(a)["change_source"] == "events", timeout=15)
    assert agent.node.event_stream_breaks > breaks_before
    # Events again: with a relist a minute away, a new container shows within moments.
    started = time.monotonic()
    fresh = runtime_driver.restart_container(pod, "a")
    agent.wait_for(lambda a: container(a, fresh.id).get("pid"), timeout=10, interval=0.01)
    assert time.monotonic() - started < 5
