"""GET /v1/pods/{ns}/{name}/logs on each real runtime: current, previous, kept after exit.

Runs against containerd 1.6, containerd 2.x and CRI-O (the ``cri_runtime``
matrix). containerd writes its timestamps in UTC with a ``Z``; CRI-O (its
conmon) in local time with an offset, and the lab runs it in a zone that is
not UTC so that an offset read wrongly shows.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agent.settings import Settings
from cri_proto import api_pb2
from lab.cri_pods import ContainerDef, CriPodDriver, PodHandle
from lab.runtimes import PrivateRuntime, RuntimeFacts
from tests.agent_server import RunningAgent, running_agent

pytestmark = pytest.mark.containerd
BUSYBOX = "docker.io/library/busybox:latest"
# stderr goes through its own pipe; the pause orders "oops" after the count.
COUNT = (
    "i=0; while [ $i -lt 300 ]; do echo line-$i; i=$((i+1)); done; "
    "sleep 0.3; echo oops >&2; sleep 3600"
)


@pytest.fixture(scope="module")
def agent(cri_runtime: PrivateRuntime, runtime_driver: CriPodDriver) -> Iterator[RunningAgent]:
    settings = Settings(
        cri_endpoint=cri_runtime.endpoint,
        node_name="lab-node",
        relist_interval_seconds=0.5,
        log_roots=(runtime_driver.log_root,),
    )
    with running_agent(settings) as running:
        running.wait_for(lambda a: a.get("/readyz").status_code == 200)
        yield running


@pytest.fixture
def chatty(runtime_pod: Callable[..., PodHandle], request: pytest.FixtureRequest) -> PodHandle:
    # A name per test: the pod of the test before may still be leaving the snapshot.
    name = "chatty-" + request.node.originalname.removeprefix("test_").replace("_", "-")[:40]
    return runtime_pod(
        name,
        "logs",
        containers=[
            ContainerDef("talker", BUSYBOX, command=["sh", "-c", COUNT]),
            ContainerDef("quiet", BUSYBOX, command=["sleep", "3600"]),
        ],
    )


def get_logs(agent: RunningAgent, pod: str, **params: Any) -> Any:
    return agent.get(f"/v1/pods/logs/{pod}/logs", params=params)


def logs(agent: RunningAgent, pod: str, **params: Any) -> dict[str, Any]:
    response = get_logs(agent, pod, **params)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def last_texts(agent: RunningAgent, pod: str, **params: Any) -> list[str] | None:
    """The log's last lines, or None while the agent does not know the pod yet."""
    response = get_logs(agent, pod, **params)
    if response.status_code != 200:
        return None
    return [line["text"] for line in response.json()["lines"]]


def test_tail_of_the_current_attempt(
    agent: RunningAgent, chatty: PodHandle, runtime_facts: RuntimeFacts
) -> None:
    pod = chatty.name
    agent.wait_for(lambda a: (last_texts(a, pod, container="talker", tail=5) or [""])[-1] == "oops")
    body = logs(agent, pod, container="talker", tail=5)
    texts = [line["text"] for line in body["lines"]]
    assert texts == ["line-296", "line-297", "line-298", "line-299", "oops"]
    assert body["lines"][-1]["stream"] == "stderr"
    assert body["lines"][0]["stream"] == "stdout"
    # The runtime's own timestamp format, read as the moment it names.
    raw_stamp = chatty.containers["talker"].log_path.read_text().split(" ", 1)[0]
    if runtime_facts.runtime_name == "cri-o":
        # conftest runs the test CRI-O in Asia/Kolkata.
        assert raw_stamp.endswith("+05:30"), raw_stamp
    else:
        assert raw_stamp.endswith("Z"), raw_stamp
    at = datetime.fromisoformat(body["lines"][0]["at"].replace("Z", "+00:00"))
    assert abs(datetime.now(UTC) - at) < timedelta(minutes=2), (raw_stamp, at)
    assert body["source"] == "file"
    assert body["attempt"] == 0
    assert body["files"] == [str(chatty.containers["talker"].log_path)]
    text = get_logs(agent, pod, container="talker", tail=2, output="text").text
    assert text == "line-299\noops\n"


def test_previous_attempt_and_lines_kept_after_the_file_is_gone(
    agent: RunningAgent, runtime_driver: CriPodDriver, chatty: PodHandle
) -> None:
    cri_driver = runtime_driver
    pod = chatty.name
    agent.wait_for(lambda a: last_texts(a, pod, container="talker", tail=1) == ["oops"])
    pid = cri_driver.container_pid(chatty.container_id("talker"))
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    cri_driver.wait_container_state(chatty.container_id("talker"), api_pb2.CONTAINER_EXITED)
    new = cri_driver.restart_container(chatty, "talker")
    agent.wait_for(lambda a: a.get(f"/v1/containers/{new.id}").json().get("state") == "running")
    previous = logs(agent, pod, container="talker", previous="true", tail=3)
    assert previous["attempt"] == 0
    assert [line["text"] for line in previous["lines"]] == ["line-298", "line-299", "oops"]
    agent.wait_for(lambda a: last_texts(a, pod, container="talker", tail=1) == ["oops"])

    # Attempt 1 dies too; its file disappears (as kubelet's GC would remove it)
    # before anyone asks. The agent kept its last lines when it saw the exit.
    first_restart = Path(new.log_path)
    pid = cri_driver.container_pid(new.id)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    cri_driver.wait_container_state(new.id, api_pb2.CONTAINER_EXITED)
    agent.wait_for(lambda a: a.get(f"/v1/containers/{new.id}").json().get("state") == "exited")
    agent.wait_for(lambda a: 1 in a.node_last_words().attempts(chatty.uid, "talker"))
    first_restart.unlink()
    kept = logs(agent, pod, container="talker", previous="true", tail=2)
    assert kept["attempt"] == 0 or kept["source"] == "kept-after-exit"
    newest = cri_driver.restart_container(chatty, "talker")  # attempt 2; attempt 0 removed
    agent.wait_for(lambda a: a.get(f"/v1/containers/{newest.id}").json().get("state") == "running")
    kept = logs(agent, pod, container="talker", previous="true", tail=2)
    assert kept["attempt"] == 1
    assert kept["source"] == "kept-after-exit"
    assert [line["text"] for line in kept["lines"]] == ["line-299", "oops"]


def test_bad_requests(agent: RunningAgent, chatty: PodHandle) -> None:
    pod = chatty.name
    # Both containers known, or the route would pick the only one it sees.
    agent.wait_for(
        lambda a: (
            (r := a.get(f"/v1/pods/logs/{pod}")).status_code == 200
            and len(r.json()["containers"]) == 2
        )
    )
    which = get_logs(agent, pod)
    assert which.status_code == 422
    assert "talker" in which.json()["message"]
    assert "quiet" in which.json()["message"]
    missing = get_logs(agent, pod, container="nope")
    assert missing.status_code == 404
    assert sorted(missing.json()["detail"]["containers"]) == ["quiet", "talker"]
    for params in (
        {"container": "../etc"},
        {"container": "a/b"},
        {"container": "talker", "tail": 0},
        {"container": "talker", "tail": -1},
        {"container": "talker", "tail": 10**9},
        {"container": "talker", "previous": "maybe"},
    ):
        response = get_logs(agent, pod, **params)
        assert response.status_code == 422, params
        assert response.json()["error"] == "invalid_input"
    nothing = get_logs(agent, pod, container="quiet", previous="true")
    assert nothing.status_code == 404
    assert "previous attempt" in nothing.json()["message"]
