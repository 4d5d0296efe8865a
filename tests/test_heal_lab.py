"""Kill-and-watch end to end on the lab: a real runtime, the lab kubelet, the agent over HTTP.

Runs against containerd 1.6, containerd 2.x and CRI-O (the ``cri_runtime``
matrix), the whole module once per runtime. CRI-O runs ordinary pods without
a pause process: a sandbox kill is refused there, saying why, and a pod that
shares its process namespace (which gets an infra container) is killed instead.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent import host
from agent.cri.verbose import NO_INFRA_CONTAINER
from agent.settings import Settings
from lab.apiserver import FakeApiServer
from lab.kubelet import LabKubelet
from lab.runtimes import PrivateRuntime, RuntimeFacts
from tests.agent_server import RunningAgent, running_agent

# Linux's clock id (uapi/linux/time.h); Python's time module does not name it.
CLOCK_REALTIME_COARSE = 5

pytestmark = pytest.mark.containerd

NODE = "heal-node"
NS = "heal"
BUSYBOX = "docker.io/library/busybox:latest"
SLEEP = ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
# kubelet's backoff runs ten times faster in this lab: 10 s becomes 1 s.
SCALE = 0.1


@pytest.fixture(scope="module")
def api(cri_runtime: PrivateRuntime) -> Iterator[FakeApiServer]:
    # One per runtime: each runs the module from an empty cluster.
    server = FakeApiServer(bookmark_interval=0.5).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def kubelet(
    api: FakeApiServer, cri_runtime: PrivateRuntime, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LabKubelet]:
    root = tmp_path_factory.mktemp("heal-kubelet")
    instance = LabKubelet(
        api.url, cri_runtime.endpoint, NODE, root, time_scale=SCALE, sync_period=0.1
    )
    instance.start()
    assert instance.wait_synced(10)
    yield instance
    for pod in api.list_objects("pod"):
        api.delete("pod", pod["metadata"]["namespace"], pod["metadata"]["name"])
    deadline = time.monotonic() + 15
    while instance.pod_uids and time.monotonic() < deadline:
        time.sleep(0.1)
    instance.stop()


@pytest.fixture(scope="module")
def audit_path(cri_runtime: PrivateRuntime, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("audit") / "audit.jsonl"


@pytest.fixture(scope="module")
def agent(
    cri_runtime: PrivateRuntime, api: FakeApiServer, kubelet: LabKubelet, audit_path: Path
) -> Iterator[RunningAgent]:
    settings = Settings(
        cri_endpoint=cri_runtime.endpoint,
        api_server=api.url,
        node_name=NODE,
        relist_interval_seconds=1.0,
        enable_kill=True,
        kill_namespaces=(NS,),
        kill_rate_per_minute=60,
        audit_log_path=audit_path,
        auth_mode="none",
        log_roots=(kubelet.root / "log" / "pods",),
    )
    with running_agent(settings) as running:
        running.wait_for(lambda a: a.get("/readyz").json().get("status") == "ok")
        yield running


def create(api: FakeApiServer, name: str, spec: dict[str, Any], ns: str = NS) -> None:
    body = {"terminationGracePeriodSeconds": 0, **spec}
    api.add("pod", {"metadata": {"name": name, "namespace": ns}, "spec": body})


def wait_pod(agent: RunningAgent, name: str, status: str, ready: str, ns: str = NS) -> Any:
    def check(a: RunningAgent) -> Any:
        r = a.get(f"/v1/pods/{ns}/{name}")
        if r.status_code != 200:
            return None
        body = r.json()
        done = body["status"] == status and body["ready"] == ready
        return (
            body
            if done and all(c["pid"] for c in body["containers"] if c["role"] != "init")
            else None
        )

    return agent.wait_for(check, timeout=30)


def kill(agent: RunningAgent, name: str, ns: str = NS, **body: Any) -> httpx.Response:
    return agent.http.post(f"/v1/pods/{ns}/{name}/kill-and-watch", json=body)


def finished(agent: RunningAgent, run_id: str, timeout: float = 60) -> dict[str, Any]:
    def done(a: RunningAgent) -> Any:
        run = a.get(f"/v1/heal/runs/{run_id}").json()
        return run if run["state"] != "running" else None

    return agent.wait_for(done, timeout=timeout, interval=0.1)  # type: ignore[no-any-return]


def at(run: dict[str, Any], phase: str) -> datetime:
    return datetime.fromisoformat(next(p["at"] for p in run["phases"] if p["name"] == phase))


@pytest.fixture(scope="module")
def web(api: FakeApiServer, agent: RunningAgent) -> str:
    create(
        api,
        "web",
        {
            "initContainers": [{"name": "prepare", "image": BUSYBOX, "command": ["true"]}],
            "containers": [
                {"name": "app", "image": BUSYBOX, "command": SLEEP},
                {"name": "sidecar", "image": BUSYBOX, "command": SLEEP},
            ],
        },
    )
    wait_pod(agent, "web", "Running", "2/2")
    return "web"


def test_kill_an_app_container_heals_with_every_phase_in_order(
    agent: RunningAgent, web: str
) -> None:
    before = wait_pod(agent, web, "Running", "2/2")
    app = next(c for c in before["containers"] if c["name"] == "app")

    dry = kill(agent, web, container="app", dry_run=True)
    assert dry.status_code == 200
    plan = dry.json()["plan"]
    assert plan["target"]["pid"] == app["pid"]
    assert plan["expected_attempt"] == app["restart_count"] + 1
    assert plan["expected_delay_seconds"] == 0
    assert dry.json()["id"] is None
    assert agent.get(f"/v1/containers/{app['id']}").json()["state"] == "running"

    started = kill(agent, web, container="app", timeout_seconds=30)
    assert started.status_code == 202, started.text
    run = finished(agent, started.json()["id"])
    assert run["state"] == "healed", run["verdict"]
    names = [p["name"] for p in run["phases"]]
    assert set(names) == {
        "signal_sent", "process_gone", "runtime_exited", "api_terminated",
        "runtime_recreated", "runtime_started", "api_running", "api_ready",
    }  # fmt: skip
    # Timestamps are the order things happened in. The agent stamps
    # signal_sent right before pidfd_send_signal from the precise clock;
    # CRI-O's finishedAt is the ctime of conmon's exit file (getFinishedTime
    # in its internal/oci), which the kernel stamps from its coarse clock, up
    # to one tick behind: that much earlier is still "after the signal".
    tick = timedelta(seconds=time.clock_getres(CLOCK_REALTIME_COARSE))
    assert at(run, "signal_sent") - tick <= at(run, "runtime_exited")
    for earlier, later in (
        # process_gone is when the agent's pidfd fired, runtime_exited when the
        # runtime says the process ended: the same moment, seen by two clocks.
        ("signal_sent", "process_gone"),
        ("runtime_exited", "runtime_recreated"),
        ("runtime_recreated", "runtime_started"),
        ("runtime_started", "api_running"),
        ("api_running", "api_ready"),
        ("signal_sent", "api_terminated"),
    ):
        assert at(run, earlier) <= at(run, later), (earlier, later)
    exited = next(p for p in run["phases"] if p["name"] == "runtime_exited")
    assert exited["detail"]["exit_code"] == 137
    gone = next(p for p in run["phases"] if p["name"] == "process_gone")
    assert gone["since_signal_seconds"] < 0.5
    assert run["time_to_recover_seconds"] == pytest.approx(
        (at(run, "api_ready") - at(run, "signal_sent")).total_seconds(), abs=0.01
    )

    after = wait_pod(agent, web, "Running", "2/2")
    new_app = next(c for c in after["containers"] if c["name"] == "app")
    assert new_app["restart_count"] == app["restart_count"] + 1
    assert new_app["pid"] != app["pid"]
    assert new_app["id"] != app["id"]
    assert app["id"] in {a["id"] for a in new_app["attempts"]}


def test_second_kill_shows_the_backoff_delay(agent: RunningAgent, web: str) -> None:
    wait_pod(agent, web, "Running", "2/2")
    dry = kill(agent, web, container="sidecar", dry_run=True).json()["plan"]
    first = finished(agent, kill(agent, web, container="sidecar", timeout_seconds=30).json()["id"])
    assert first["state"] == "healed", first["verdict"]
    wait_pod(agent, web, "Running", "2/2")
    plan = kill(agent, web, container="sidecar", dry_run=True).json()["plan"]
    assert plan["expected_delay_seconds"] >= 10
    assert "backoff" in plan["expected_delay_reason"]
    second = finished(agent, kill(agent, web, container="sidecar", timeout_seconds=30).json()["id"])
    assert second["state"] == "healed", second["verdict"]

    def wait(run: dict[str, Any]) -> float:
        return (at(run, "runtime_recreated") - at(run, "runtime_exited")).total_seconds()

    # The first restart is immediate; the second waits kubelet's 10 s (scaled) backoff.
    assert dry["expected_delay_seconds"] == 0
    assert wait(first) < 10 * SCALE
    assert wait(second) >= 0.9 * 10 * SCALE


def test_kill_the_pause_process_recreates_the_sandbox_and_reruns_init(
    agent: RunningAgent, api: FakeApiServer, runtime_facts: RuntimeFacts, web: str
) -> None:
    before = wait_pod(agent, web, "Running", "2/2")
    sandbox = before["sandboxes"][0]
    if not runtime_facts.pause_always:
        # CRI-O without an infra container: nothing to kill, and the answer says why.
        refused = kill(agent, web, sandbox=True)
        assert refused.status_code == 409, refused.text
        assert refused.json()["detail"]["rule"] == "no-pause-process"
        assert NO_INFRA_CONTAINER in refused.json()["message"]
        # A pod sharing one process namespace gets an infra container on CRI-O too.
        spec = agent.get(f"/v1/pods/{NS}/{web}").json()
        assert spec["sandboxes"][0]["pause_pid"] is None
        create(
            api,
            "shared",
            {
                "shareProcessNamespace": True,
                "initContainers": [{"name": "prepare", "image": BUSYBOX, "command": ["true"]}],
                "containers": [{"name": "app", "image": BUSYBOX, "command": SLEEP}],
            },
        )
        web = "shared"
        before = wait_pod(agent, web, "Running", "1/1")
        sandbox = before["sandboxes"][0]
        assert sandbox["pause_pid"] is not None
    response = kill(agent, web, sandbox=True, timeout_seconds=45)
    assert response.status_code == 202, response.text
    assert response.json()["plan"]["target"]["pid"] == sandbox["pause_pid"]
    run = finished(agent, response.json()["id"])
    assert run["state"] == "healed", run["verdict"]
    names = {p["name"] for p in run["phases"]}
    assert {"signal_sent", "process_gone", "runtime_sandbox_notready", "runtime_new_sandbox",
            "runtime_init_rerun", "runtime_started", "api_ready"} <= names  # fmt: skip
    new = next(p for p in run["phases"] if p["name"] == "runtime_new_sandbox")
    assert new["detail"]["attempt"] == sandbox["attempt"] + 1
    after = wait_pod(agent, web, before["status"], before["ready"])
    assert after["sandboxes"][0]["attempt"] == sandbox["attempt"] + 1
    assert after["sandboxes"][0]["pause_pid"] != sandbox["pause_pid"]


def test_guards_refuse_over_http(agent: RunningAgent, api: FakeApiServer) -> None:
    sleeper = [{"name": "c", "image": BUSYBOX, "command": SLEEP}]
    create(api, "once", {"restartPolicy": "Never", "containers": sleeper})
    create(api, "other", {"containers": sleeper}, ns="elsewhere")
    done = [{"name": "c", "image": BUSYBOX, "command": ["true"]}]
    create(api, "done", {"containers": done, "restartPolicy": "OnFailure"})
    wait_pod(agent, "once", "Running", "1/1")
    wait_pod(agent, "other", "Running", "1/1", ns="elsewhere")
    agent.wait_for(lambda a: a.get(f"/v1/pods/{NS}/done").json().get("status") == "Completed")

    cases = [
        (kill(agent, "once", container="c"), 422, "restart-policy"),
        (kill(agent, "other", ns="elsewhere", container="c"), 403, "not-allowed"),
        (kill(agent, "done", container="c"), 409, "not-running"),
        (kill(agent, "once", container="nope"), 404, None),
        (kill(agent, "nobody", container="c"), 404, None),
        (kill(agent, "once"), 422, None),
        (kill(agent, "once", container="c", sandbox=True), 422, None),
        (kill(agent, "once", container="c", signal="SIGNOPE"), 422, "bad-signal"),
        (kill(agent, "once", container="c", timeout_seconds=-1), 422, None),
        (kill(agent, "once", container="c", surprise=1), 422, None),
    ]
    for response, status, rule in cases:
        assert response.status_code == status, response.text
        body = response.json()
        assert body["message"]
        if rule:
            assert body["detail"]["rule"] == rule

    settings = Settings(node_name=NODE, cri_endpoint=str(agent.node.settings.cri_endpoint),
                        api_server=agent.node.settings.api_server, auth_mode="none")  # fmt: skip
    with running_agent(settings) as off:
        off.wait_for(lambda a: a.get("/readyz").json().get("status") == "ok")
        off.wait_for(lambda a: a.get(f"/v1/pods/{NS}/once").status_code == 200)
        refused = off.http.post(f"/v1/pods/{NS}/once/kill-and-watch", json={"container": "c"})
        assert refused.status_code == 403
        assert refused.json()["detail"]["rule"] == "kill-disabled"


def test_two_concurrent_requests_one_409_and_every_action_audited(
    agent: RunningAgent, api: FakeApiServer, audit_path: Path
) -> None:
    create(api, "race", {"containers": [{"name": "c", "image": BUSYBOX, "command": SLEEP}]})
    wait_pod(agent, "race", "Running", "1/1")
    results: list[httpx.Response] = []

    def fire() -> None:
        with httpx.Client(base_url=agent.url, timeout=10) as client:
            results.append(
                client.post(f"/v1/pods/{NS}/race/kill-and-watch", json={"container": "c"})
            )

    threads = [threading.Thread(target=fire) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    codes = sorted(r.status_code for r in results)
    assert codes == [202, 409], [r.text for r in results]
    conflict = next(r for r in results if r.status_code == 409).json()
    assert conflict["detail"]["rule"] == "run-in-progress"
    run = finished(agent, next(r for r in results if r.status_code == 202).json()["id"])
    assert run["state"] == "healed", run["verdict"]

    records = [json.loads(line) for line in audit_path.read_text().splitlines()]
    mine = [r for r in records if r.get("run") == run["id"]]
    assert [r["event"] for r in mine] == ["kill", "outcome"]
    assert mine[0]["pid"] == run["target"]["pid"]
    assert "unauthenticated" in mine[0]["requested_by"]
    assert mine[1]["state"] == "healed"
    refusals = [r for r in records if r["event"] == "refused"]
    assert {r["rule"] for r in refusals} >= {"run-in-progress", "restart-policy", "not-allowed"}


def test_live_stream_and_metrics(agent: RunningAgent, web: str) -> None:
    wait_pod(agent, web, "Running", "2/2")
    started = kill(agent, web, container="app", timeout_seconds=30).json()
    events: list[tuple[str, dict[str, Any]]] = []
    with agent.http.stream("GET", started["events_url"], timeout=60) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        kind = ""
        for line in stream.iter_lines():
            if line.startswith("event: "):
                kind = line.removeprefix("event: ")
            elif line.startswith("data: "):
                events.append((kind, json.loads(line.removeprefix("data: "))))
                if kind == "verdict":
                    break
    phases = [data["name"] for kind, data in events if kind == "phase"]
    assert phases[0] == "signal_sent"
    assert "api_ready" in phases
    assert events[-1][0] == "verdict"
    assert events[-1][1]["state"] == "healed"

    text = agent.get(f"/v1/heal/runs/{started['id']}", params={"output": "text"}).text
    assert "Timeline:" in text
    assert "api_ready" in text
    listing = agent.get("/v1/heal/runs").json()["items"]
    assert started["id"] in {r["id"] for r in listing}
    metrics = agent.get("/metrics").text
    assert (
        'podlens_heal_phase_seconds_bucket{le="0.05",phase="process_gone",target="container"}'
        in (metrics)
    )
    assert 'podlens_heal_runs_total{state="healed"}' in metrics
    assert "podlens_runtime_up 1.0" in metrics


def test_without_pidfds_kills_are_refused_and_the_node_says_why(
    agent: RunningAgent, web: str, audit_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reason = "pidfd_open fails here (EPERM): the kernel is older than 5.3 or the seccomp profile"
    monkeypatch.setattr(host, "pidfd_unavailable", lambda: reason)
    settings = agent.node.settings.model_copy(update={"audit_log_path": audit_path})
    with running_agent(settings) as denied:
        denied.wait_for(lambda a: a.get("/readyz").json().get("status") == "ok")
        capabilities = denied.get("/v1/node").json()["capabilities"]
        assert capabilities["pidfd_exit_notifications"] is False
        assert capabilities["pidfd_unavailable"] == reason
        assert "no pidfds" in denied.get("/v1/node?output=text").text

        before = wait_pod(denied, web, "Running", "2/2")
        for body in ({"container": "app"}, {"container": "app", "dry_run": True}):
            refused = kill(denied, web, **body)
            assert refused.status_code == 503, refused.text
            assert refused.json()["detail"]["rule"] == "pidfd-unavailable"
            assert reason in refused.json()["message"]
        after = denied.get(f"/v1/pods/{NS}/{web}").json()
        pid_of = {c["name"]: c["pid"] for c in before["containers"]}
        assert {c["name"]: c["pid"] for c in after["containers"]} == pid_of

    records = [json.loads(line) for line in audit_path.read_text().splitlines()]
    assert [r["rule"] for r in records if r["event"] == "refused"][-2:] == [
        "pidfd-unavailable",
        "pidfd-unavailable",
    ]
