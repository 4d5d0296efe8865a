"""Faults injected around the agent running as a subprocess on the lab.

- containerd stopped and started again: the agent answers 503 meanwhile and
  recovers by itself, with no dead container or removed pod reported live;
- the API server stopped, replaced by an empty one, and restarted on the same
  port with different pods: pod views say "unavailable since" meanwhile, and
  no pod the API server no longer has keeps its API state;
- SIGTERM with many requests in flight: a prompt, clean exit;
- SIGTERM while a kill-and-watch run watches: the run is abandoned with an
  audit record, and a restarted agent works.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from lab.apiserver import FakeApiServer
from lab.containerd import PrivateContainerd
from tests._lab_stack import BUSYBOX, SLEEP, AgentProcess, LabStack, wait_for

pytestmark = pytest.mark.containerd

NODE = "faults-node"
NS = "faults"
PODS = ("steady", "victim", "doomed", "keeper", "goner", "target")


@pytest.fixture(scope="module")
def stack(
    containerd: PrivateContainerd, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LabStack]:
    lab = LabStack(containerd.endpoint, tmp_path_factory.mktemp("faults-lab"), NODE).start()
    try:
        for name in PODS:
            lab.create_pod(NS, name)
        yield lab
    finally:
        lab.close()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("faults")


def new_agent(
    containerd: PrivateContainerd, stack: LabStack, workdir: Path, name: str
) -> AgentProcess:
    return AgentProcess(
        cri_endpoint=containerd.endpoint,
        api_server=stack.api_url,
        node_name=NODE,
        log_path=workdir / f"{name}.log",
        enable_kill=True,
        kill_namespaces=(NS,),
        audit_log=workdir / "audit.jsonl",
    )


@pytest.fixture(scope="module")
def agent(containerd: PrivateContainerd, stack: LabStack, workdir: Path) -> Iterator[AgentProcess]:
    proc = new_agent(containerd, stack, workdir, "agent")
    try:
        proc.start()
        proc.wait_ready()
        for name in PODS:
            wait_for(functools.partial(running, proc, name), f"{name} running", 40)
        yield proc
    finally:
        proc.stop()


def pod(agent: AgentProcess, name: str) -> tuple[int, dict[str, Any]]:
    response = agent.get(f"/v1/pods/{NS}/{name}")
    return response.status_code, response.json()


def running(agent: AgentProcess, name: str) -> dict[str, Any] | None:
    """The pod's view once the API and the runtime both show it running with a PID."""
    code, body = pod(agent, name)
    if code != 200 or body["status"] != "Running" or body["ready"] != "1/1":
        return None
    if not body["api_known"] or not all(c["pid"] for c in body["containers"]):
        return None
    return body


def audit(workdir: Path) -> list[dict[str, Any]]:
    path = workdir / "audit.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def pid_alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


# --------------------------------------------------------------------- the runtime


def test_containerd_restart_the_agent_recovers_and_reports_nothing_stale(
    agent: AgentProcess, stack: LabStack, containerd: PrivateContainerd
) -> None:
    steady = running(agent, "steady")
    victim = running(agent, "victim")
    assert steady is not None
    assert victim is not None
    wait_for(lambda: running(agent, "doomed"), "doomed running")
    victim_id, victim_pid = victim["containers"][0]["id"], victim["containers"][0]["pid"]

    containerd.kill()
    try:
        wait_for(lambda: agent.get("/readyz").status_code == 503, "readyz 503", 15)
        for path in ("/v1/pods", f"/v1/pods/{NS}/steady", "/v1/containers", "/v1/diagnostics"):
            down = agent.get(path)
            assert down.status_code == 503, (path, down.text)
            assert down.json()["error"] == "runtime_unavailable"
            assert "since" in down.json()["detail"]
        assert agent.get("/healthz").status_code == 200
        node = agent.get("/v1/node").json()
        assert node["runtime"]["connected"] is False
        assert node["runtime"]["reason"]
        # Behind the agent's back while it cannot look: a container's process
        # dies, and a pod is deleted from the API server.
        os.kill(victim_pid, signal.SIGKILL)
        wait_for(lambda: not pid_alive(victim_pid), "victim process gone", 5)
        stack.delete_pod(NS, "doomed")
        time.sleep(1.0)
    finally:
        containerd.start()
    t0 = time.monotonic()
    wait_for(lambda: agent.get("/readyz").status_code == 200, "readyz 200 again", 30)
    print(f"\ncontainerd back: agent ready again in {time.monotonic() - t0:.2f}s")

    # From the first answer after recovery on: the dead process is never a
    # live container's PID, the deleted pod never has its API state back, and
    # what was seen gone stays gone.
    doomed_gone = victim_exited = False
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        containers = agent.get("/v1/containers", params={"namespace": NS}).json()["items"]
        for c in containers:
            if c["state"] == "running":
                assert c["pid"] != victim_pid, f"dead PID {victim_pid} reported live: {c}"
        old = next((c for c in containers if c["id"] == victim_id), None)
        if old is not None and old["state"] == "exited":
            assert old["exit_code"] == 137, old
            victim_exited = True
        elif victim_exited:
            assert old is None, f"the exited container came back: {old}"
        code, doomed = pod(agent, "doomed")
        if code == 200:
            assert not doomed_gone, "the removed pod came back"
            assert not doomed["api_known"], f"deleted pod kept its API state: {doomed}"
        else:
            assert code == 404, doomed
            doomed_gone = True
        healed = running(agent, "victim")
        if doomed_gone and healed and healed["containers"][0]["id"] != victim_id:
            break
        time.sleep(0.1)
    assert doomed_gone, "the pod deleted during the outage is still reported"
    healed = running(agent, "victim")
    assert healed is not None
    assert healed["containers"][0]["restart_count"] == 1
    assert healed["containers"][0]["pid"] != victim_pid
    # The containers that kept running while containerd was down are the same.
    after = running(agent, "steady")
    assert after is not None
    assert after["containers"][0]["id"] == steady["containers"][0]["id"]
    assert after["containers"][0]["pid"] == steady["containers"][0]["pid"]
    assert "Traceback" not in agent.log_text(), agent.log_tail(80)


# --------------------------------------------------------------------- the API server


def test_api_server_outage_empty_server_and_restart_with_other_pods(
    agent: AgentProcess, stack: LabStack
) -> None:
    keeper = wait_for(lambda: running(agent, "keeper"), "keeper running")
    wait_for(lambda: running(agent, "goner"), "goner running")
    original = stack.api

    stack.stop_api()
    unavailable = wait_for(
        lambda: (
            pod(agent, "keeper")[1]["api"].startswith("unavailable since")
            and pod(agent, "keeper")[1]
        ),
        "pod view says the API is unavailable",
        15,
    )
    # The runtime's side is still served, with the last known API state.
    assert unavailable["containers"][0]["id"] == keeper["containers"][0]["id"]
    node = agent.get("/v1/node").json()
    assert node["api"]["state"] == "unavailable"
    assert node["api"]["since"]
    ready = agent.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["status"] == "degraded"
    assert "unavailable since" in ready.json()["checks"]["api"]
    assert agent.get("/v1/pods", params={"namespace": NS}).status_code == 200

    # An empty API server on the same port: no pod keeps its old API state.
    stack.replace_api(FakeApiServer(port=stack.port, bookmark_interval=0.5))

    def forgotten() -> bool:
        if agent.get("/v1/node").json()["api"]["state"] != "ok":
            return False
        items = agent.get("/v1/pods", params={"namespace": NS}).json()["items"]
        return bool(items) and not any(p["api_known"] for p in items)

    wait_for(forgotten, "pods known only to the runtime once the API has none", 30)
    code, body = pod(agent, "keeper")
    assert code == 200
    assert body["api"] == "ok"
    assert not body["api_known"]

    # Back to the original server, with a pod deleted and one added while it
    # was away, and its history compacted: every client must relist.
    stack.stop_api()
    original.delete("pod", NS, "goner")
    original.add(
        "pod",
        {
            "metadata": {"name": "newcomer", "namespace": NS},
            "spec": {
                "terminationGracePeriodSeconds": 0,
                "containers": [{"name": "c", "image": BUSYBOX, "command": SLEEP}],
            },
        },
    )
    original.compact()
    stack.replace_api(original)
    t0 = time.monotonic()

    goner_gone = False
    deadline = time.monotonic() + 45
    while time.monotonic() < deadline:
        node = agent.get("/v1/node").json()
        code, goner = pod(agent, "goner")
        if node["api"]["state"] == "ok" and code == 200:
            assert not goner_gone, "goner came back"
            assert not goner["api_known"], f"pod deleted from the API kept its API state: {goner}"
        if code == 404:
            goner_gone = True
        if goner_gone and running(agent, "newcomer") and running(agent, "keeper"):
            break
        time.sleep(0.1)
    assert goner_gone, "the pod deleted while the API server was away is still reported"
    assert running(agent, "newcomer") is not None
    again = running(agent, "keeper")
    assert again is not None
    assert again["containers"][0]["id"] == keeper["containers"][0]["id"]
    print(f"\nAPI server back with other pods: agent current in {time.monotonic() - t0:.2f}s")
    stack.delete_pod(NS, "newcomer")
    assert "Traceback" not in agent.log_text(), agent.log_tail(80)


# --------------------------------------------------------------------- SIGTERM


def hammer(agent: AgentProcess, stop: threading.Event, results: list[Any]) -> None:
    """GETs in a loop until ``stop``; each outcome is a status code or an exception name."""
    paths = ["/v1/diagnostics", f"/v1/pods/{NS}/steady", "/v1/pods", "/v1/containers"]
    with httpx.Client(base_url=agent.url, timeout=10) as client:
        n = 0
        deadline = time.monotonic() + 30
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                results.append(client.get(paths[n % len(paths)]).status_code)
            except httpx.TransportError as exc:
                results.append(type(exc).__name__)
                if not agent.alive():
                    return
                time.sleep(0.01)
            n += 1


def terminate_under_load(agent: AgentProcess) -> tuple[int | None, float, list[Any]]:
    stop = threading.Event()
    results: list[Any] = []
    with ThreadPoolExecutor(48) as pool:
        for _ in range(48):
            pool.submit(hammer, agent, stop, results)
        wait_for(lambda: len(results) > 200, "requests flowing", 20)
        code, seconds = agent.signal_and_wait(signal.SIGTERM, 10)
        stop.set()
    return code, seconds, results


def test_sigterm_with_requests_in_flight_exits_promptly(
    containerd: PrivateContainerd, stack: LabStack, workdir: Path
) -> None:
    agent = new_agent(containerd, stack, workdir, "sigterm-load")
    try:
        agent.start()
        agent.wait_ready()
        code, seconds, results = terminate_under_load(agent)
        assert code is not None, f"still running {seconds:.1f}s after SIGTERM"
        assert seconds < 5, seconds
        # The exit status itself is pinned in test_sigterm_exit_status_is_0.
        assert code == 0, code
        statuses = [r for r in results if isinstance(r, int)]
        assert statuses, results[:20]
        assert all(s < 500 for s in statuses), sorted(set(statuses))
        log = agent.log_text()
        assert "Application shutdown complete" in log, agent.log_tail()
        assert "Traceback" not in log, agent.log_tail(80)
    finally:
        agent.stop()


def test_sigterm_exit_status_is_0(
    containerd: PrivateContainerd, stack: LabStack, workdir: Path
) -> None:
    agent = new_agent(containerd, stack, workdir, "sigterm-status")
    try:
        agent.start()
        code, _ = agent.signal_and_wait(signal.SIGTERM, 10)
        assert code == 0, f"exit status {code}"
    finally:
        agent.stop()


def start_unhealable_run(agent: AgentProcess, stack: LabStack) -> dict[str, Any]:
    """A kill-and-watch run that stays running: the kubelet is stopped, so nothing heals."""
    wait_for(lambda: running(agent, "target"), "target running", 40)
    stack.stop_kubelet()
    started = agent.http.post(
        f"/v1/pods/{NS}/target/kill-and-watch", json={"container": "c", "timeout_seconds": 60}
    )
    assert started.status_code == 202, started.text
    run_id = started.json()["id"]

    def watching() -> dict[str, Any] | None:
        run: dict[str, Any] = agent.get(f"/v1/heal/runs/{run_id}").json()
        names = {p["name"] for p in run["phases"]}
        return run if {"signal_sent", "process_gone"} <= names else None

    run = wait_for(watching, "the run sees the process gone", 15)
    assert run["state"] == "running", run
    return run


def assert_abandoned(workdir: Path, run_id: str) -> None:
    mine = [r for r in audit(workdir) if r.get("run") == run_id]
    assert [r["event"] for r in mine] == ["kill", "outcome"], mine
    outcome = mine[1]
    assert outcome["state"] == "failed", outcome
    assert outcome["verdict"].startswith("abandoned"), outcome
    assert "signal_sent" in outcome["phases"]


def test_sigterm_mid_kill_and_watch_abandons_the_run_then_a_new_agent_works(
    containerd: PrivateContainerd, stack: LabStack, workdir: Path
) -> None:
    agent = new_agent(containerd, stack, workdir, "sigterm-heal")
    try:
        agent.start()
        agent.wait_ready()
        run = start_unhealable_run(agent, stack)
        code, seconds = agent.signal_and_wait(signal.SIGTERM, 10)
        assert code is not None, f"still running {seconds:.1f}s after SIGTERM"
        assert seconds < 5, seconds
        assert code == 0, code
        assert_abandoned(workdir, run["id"])
    finally:
        agent.stop()
        if stack.kubelet is None:
            stack.start_kubelet()

    again = new_agent(containerd, stack, workdir, "after-sigterm")
    try:
        again.start()
        again.wait_ready()
        assert again.get("/v1/heal/runs").json() == {"items": []}
        # The kubelet, back, has restarted the killed container.
        before = wait_for(
            lambda: (b := running(again, "target")) and b["restarts"] != "0" and b,
            "target restarted by the kubelet",
            40,
        )
        started = again.http.post(
            f"/v1/pods/{NS}/target/kill-and-watch", json={"container": "c", "timeout_seconds": 30}
        )
        assert started.status_code == 202, started.text
        run_id = started.json()["id"]
        done = wait_for(
            lambda: (r := again.get(f"/v1/heal/runs/{run_id}").json())["state"] != "running" and r,
            "the new run finishes",
            40,
        )
        assert done["state"] == "healed", done["verdict"]
        after = running(again, "target")
        assert after is not None
        assert after["containers"][0]["restart_count"] > before["containers"][0]["restart_count"]
        mine = [r for r in audit(workdir) if r.get("run") == run_id]
        assert [r["event"] for r in mine] == ["kill", "outcome"]
        assert mine[1]["state"] == "healed"
    finally:
        again.stop()


def test_sigterm_while_a_client_follows_the_run_still_abandons_it(
    containerd: PrivateContainerd, stack: LabStack, workdir: Path
) -> None:
    agent = new_agent(containerd, stack, workdir, "sigterm-stream")
    follower: threading.Thread | None = None
    try:
        agent.start()
        agent.wait_ready()
        run = start_unhealable_run(agent, stack)
        received: list[str] = []

        def follow() -> None:
            try:
                with (
                    httpx.Client(base_url=agent.url, timeout=20) as client,
                    client.stream("GET", f"/v1/heal/runs/{run['id']}/events") as stream,
                ):
                    for line in stream.iter_lines():
                        received.append(line)
            except httpx.HTTPError:
                pass

        follower = threading.Thread(target=follow, daemon=True)
        follower.start()
        wait_for(lambda: any(line.startswith("event: phase") for line in received), "stream")
        code, seconds = agent.signal_and_wait(signal.SIGTERM, 8)
        assert code is not None, f"still running {seconds:.1f}s after SIGTERM"
        assert code == 0, code
        # The open stream did not hold the shutdown up, and the run was
        # abandoned with both audit records on disk; the stream itself ended.
        assert_abandoned(workdir, run["id"])
        follower.join(5)
        assert not follower.is_alive()
    finally:
        agent.stop(grace=1)
        if follower is not None:
            follower.join(5)
        if stack.kubelet is None:
            stack.start_kubelet()
