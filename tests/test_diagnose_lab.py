"""Diagnosis end to end on the lab: a real runtime, the lab kubelet, the agent over HTTP.

Runs against containerd 1.6, containerd 2.x and CRI-O (the ``cri_runtime``
matrix), the whole module once per runtime.

Every pod is created at the start of the module so they age together: the
init container that waits for a Service is only worth a finding after
the init-waiting threshold (60 s by default; shortened here through the
agent's settings), and a declared port nothing listens on only after the
port grace (30 s by default, shortened too). The tests that need the pods
younger come first, those that need them older last, and the very last one
stops the API server to read logs from the node alone.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agent.diagnose import SEVERITY_RANK
from agent.settings import Settings
from lab.apiserver import FakeApiServer
from lab.kubelet import LabKubelet
from lab.runtimes import PrivateRuntime
from tests.agent_server import RunningAgent, running_agent

pytestmark = pytest.mark.containerd

NODE = "diag-node"
NS = "diag"
BUSYBOX = "busybox"
SLEEP = ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
# The agent runs with these (shorter than the defaults), so the module waits less.
INIT_WAIT = timedelta(seconds=30)
PORT_GRACE = timedelta(seconds=15)
# Kubelet's clocks run ten times faster here (a 10 s back-off lasts 1 s);
# the messages and the diagnosis keep kubelet's nominal values.
SCALE = 0.1

JSON = dict[str, Any]

CRASH_LINE = "error: cannot open /config/app.conf: No such file or directory"
MIGRATE_LINE = "migration failed: schema version 7 not found"
FLAKY_LINE = "fatal: lost connection to db:5432"


def _sleeper(name: str, **extra: Any) -> JSON:
    return {"name": name, "image": BUSYBOX, "command": SLEEP, **extra}


def _shell(name: str, script: str, **extra: Any) -> JSON:
    return {"name": name, "image": BUSYBOX, "command": ["sh", "-c", script], **extra}


PODS: dict[str, JSON] = {
    # init-demo, with busybox for the app container (it never starts anyway).
    "init-demo": {
        "initContainers": [
            _shell("init-wait", "until nslookup myservice; do echo waiting; sleep 2; done"),
            _shell(
                "init-setup",
                'echo "Setup complete" > /data/ready',
                volumeMounts=[{"name": "shared", "mountPath": "/data"}],
            ),
        ],
        "containers": [_sleeper("main", volumeMounts=[{"name": "shared", "mountPath": "/srv"}])],
        "volumes": [{"name": "shared", "emptyDir": {}}],
    },
    # The same wait for a Service that does exist (the lab has no DNS, so it
    # never resolves): the evidence says the Service is there.
    "init-known": {
        "initContainers": [
            _shell("init-wait", "until nslookup backend; do echo still waiting; sleep 2; done")
        ],
        "containers": [_sleeper("main")],
    },
    "crashloop-demo": {"containers": [_shell("app", f"echo '{CRASH_LINE}' >&2; exit 1")]},
    # Runs a while, then fails: kubectl shows it Running most of the time.
    "flaky": {
        "containers": [_shell("app", f"echo starting; sleep 2; echo '{FLAKY_LINE}'; exit 2")]
    },
    # sidecar-pod with a sidecar whose command ends.
    "sidecar-pod": {"containers": [_sleeper("main"), _shell("sidecar", "echo done")]},
    "init-fail-demo": {
        "initContainers": [_shell("migrate", f"echo '{MIGRATE_LINE}' >&2; exit 1")],
        "containers": [_sleeper("main")],
    },
    "init-fail-once": {
        "restartPolicy": "Never",
        "initContainers": [_shell("migrate", f"echo '{MIGRATE_LINE}' >&2; exit 3")],
        "containers": [_sleeper("main")],
    },
    "hog": {
        "restartPolicy": "Never",
        "containers": [
            _shell(
                "hog",
                "echo allocating; x=$(head -c 64000000 /dev/zero | tr '\\0' a); echo survived",
                resources={"limits": {"memory": "16Mi"}},
            )
        ],
    },
    # Declares 8080, serves on 9090.
    "no-listener": {
        "containers": [
            _shell(
                "app",
                "echo 'listening on :9090'; exec httpd -f -p 9090 -h /tmp",
                ports=[{"containerPort": 8080, "name": "http"}],
            )
        ]
    },
    "web-ok": {
        "containers": [
            _shell("web", "exec httpd -f -p 8080 -h /tmp", ports=[{"containerPort": 8080}])
        ]
    },
    "healthy": {"containers": [_sleeper("app")]},
}
HEALTHY = ("web-ok", "healthy")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def api(cri_runtime: PrivateRuntime) -> Iterator[FakeApiServer]:
    # One per runtime, so each runs the module from an empty cluster. A fixed
    # port, so the last test can stop the server and start it again.
    server = FakeApiServer(port=_free_port(), bookmark_interval=0.5).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def kubelet(
    api: FakeApiServer, cri_runtime: PrivateRuntime, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LabKubelet]:
    root = tmp_path_factory.mktemp("diag-kubelet")
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
def agent(
    cri_runtime: PrivateRuntime, api: FakeApiServer, kubelet: LabKubelet
) -> Iterator[RunningAgent]:
    settings = Settings(
        cri_endpoint=cri_runtime.endpoint,
        api_server=api.url,
        node_name=NODE,
        relist_interval_seconds=0.5,
        events_cache_seconds=0.5,
        api_timeout_seconds=2.0,
        auth_mode="none",
        diagnosis_init_waiting_seconds=INIT_WAIT.total_seconds(),
        diagnosis_port_grace_seconds=PORT_GRACE.total_seconds(),
        log_roots=(kubelet.root / "log" / "pods",),
    )
    with running_agent(settings) as running:
        running.wait_for(lambda a: a.get("/readyz").json().get("status") == "ok")
        yield running


@pytest.fixture(scope="module")
def pods(api: FakeApiServer, agent: RunningAgent) -> dict[str, JSON]:
    api.add("service", {"metadata": {"name": "backend", "namespace": NS}, "spec": {}})
    made = {}
    for name, spec in PODS.items():
        body = {"terminationGracePeriodSeconds": 0, **spec}
        made[name] = api.add("pod", {"metadata": {"name": name, "namespace": NS}, "spec": body})
    return made


# --------------------------------------------------------------------- helpers


def diagnosis(agent: RunningAgent, pod: str) -> JSON:
    r = agent.get(f"/v1/pods/{NS}/{pod}/diagnosis")
    assert r.status_code == 200, r.text
    body: JSON = r.json()
    return body


def findings(body: JSON, rule: str, container: str | None = None) -> list[JSON]:
    return [
        f
        for f in body["findings"]
        if f["rule"] == rule and (container is None or f["container"] == container)
    ]


def wait_finding(
    agent: RunningAgent,
    pod: str,
    rule: str,
    container: str,
    ready: Callable[[JSON], bool] = lambda f: True,
    timeout: float = 30,
) -> JSON:
    """Poll the pod's diagnosis until a ``rule`` finding on ``container`` passes ``ready``."""

    def check(a: RunningAgent) -> JSON | None:
        for f in findings(diagnosis(a, pod), rule, container):
            if ready(f):
                return f
        return None

    found: JSON = agent.wait_for(check, timeout=timeout, interval=0.1)
    return found


def evidence(f: JSON, label: str) -> str:
    """The value of the evidence whose label starts with ``label``."""
    for e in f["evidence"]:
        if e["label"].startswith(label):
            return str(e["value"])
    raise AssertionError(f"no evidence {label!r} in {[e['label'] for e in f['evidence']]}")


def log_evidence(f: JSON) -> list[JSON]:
    return [e for e in f["evidence"] if e["kind"] == "log"]


def started_at(api: FakeApiServer, pod: str, container: str) -> datetime | None:
    obj = api.get("pod", NS, pod) or {}
    status = obj.get("status") or {}
    for s in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        running = (s.get("state") or {}).get("running")
        if s["name"] == container and running:
            return datetime.fromisoformat(running["startedAt"].replace("Z", "+00:00"))
    return None


def wait_running(api: FakeApiServer, pod: str, container: str) -> datetime:
    deadline = time.monotonic() + 30
    while (t := started_at(api, pod, container)) is None:
        assert time.monotonic() < deadline, f"{pod}/{container} did not start"
        time.sleep(0.1)
    return t


def log_lines(
    agent: RunningAgent, pod: str, container: str, *, missing_ok: bool = False, **params: Any
) -> list[str]:
    r = agent.get(f"/v1/pods/{NS}/{pod}/logs", params={"container": container, **params})
    if missing_ok and r.status_code == 404:
        return []  # the agent's relist has not seen the container yet
    assert r.status_code == 200, r.text
    return [line["text"] for line in r.json()["lines"]]


# ----------------------------------------------------------------------- tests


def test_an_init_container_waiting_less_than_the_threshold_is_no_finding(
    agent: RunningAgent, api: FakeApiServer, pods: dict[str, JSON]
) -> None:
    started = wait_running(api, "init-demo", "init-wait")
    agent.wait_for(
        lambda a: "waiting" in log_lines(a, "init-demo", "init-wait", missing_ok=True),
        timeout=15,
        interval=0.2,
    )
    body = diagnosis(agent, "init-demo")
    assert (datetime.now(UTC) - started) < INIT_WAIT
    assert body["status"] == "Init:0/2"
    assert not findings(body, "init-waiting"), body["findings"]
    assert not [f for f in body["findings"] if SEVERITY_RANK[f["severity"]] <= 1], body


def test_crashloop_names_the_container_the_exit_and_the_previous_attempts_log(
    agent: RunningAgent, pods: dict[str, JSON]
) -> None:
    f = wait_finding(
        agent,
        "crashloop-demo",
        "crashloop",
        "app",
        # Two restarts, and the agent's relist has caught up with the API
        # (it quotes the attempt the API's lastState names).
        lambda f: (
            evidence(f, "state") == "waiting:CrashLoopBackOff"
            and int(evidence(f, "restart count")) >= 2
            and any(
                f"(attempt {evidence(f, 'restart count')})" in e["label"] for e in log_evidence(f)
            )
        ),
    )
    assert f["severity"] == "error"
    assert "container app of diag/crashloop-demo is in CrashLoopBackOff" in f["summary"]
    assert evidence(f, "last exit code") == "1 (application error)"
    assert evidence(f, "last reason") == "Error"
    assert "last log lines usually say why" in f["cause"]
    # The log of the attempt whose exit is shown (what kubectl logs --previous
    # reads: the container lastState names), from that attempt's own file.
    restarts = int(evidence(f, "restart count"))
    logs = log_evidence(f)
    assert len(logs) == 1, f["evidence"]
    assert logs[0]["value"] == CRASH_LINE
    assert logs[0]["label"].startswith(f"last 1 log line of app (attempt {restarts}) from /")
    assert logs[0]["label"].endswith(f"/app/{restarts}.log")
    # The back-off step is kubelet's (nominal) one from its waiting message.
    message = evidence(f, "waiting message")
    assert message.startswith("back-off ")
    assert "restarting failed container=app pod=crashloop-demo_diag(" in message
    step = message.split()[1]
    assert evidence(f, "back-off step") == f"{step} (from kubelet's waiting message)"
    assert evidence(f, "next restart").endswith(")")
    assert f" (back-off {step})" in f["summary"]
    assert f["since"] is not None
    assert f"kubectl -n {NS} logs crashloop-demo -c app --previous" in f["next_steps"]
    assert f"/v1/pods/{NS}/crashloop-demo/logs?container=app&previous=true" in f["next_steps"]
    # The real log line, also through the logs endpoint.
    assert CRASH_LINE in log_lines(agent, "crashloop-demo", "app", previous="true")


def test_a_container_running_again_after_a_crash_is_on_the_node_list(
    agent: RunningAgent, pods: dict[str, JSON]
) -> None:
    def running_again(a: RunningAgent) -> JSON | None:
        item: JSON
        for item in a.get("/v1/diagnostics").json()["items"]:
            if item["pod"] == "flaky" and "runs again after a recent exit" in item["summary"]:
                return item
        return None

    f: JSON = agent.wait_for(running_again, timeout=20, interval=0.1)
    assert f["rule"] == "crashloop"
    assert f["container"] == "app"
    assert f["severity"] == "warning"
    assert evidence(f, "state") == "running"
    assert evidence(f, "last exit code") == "2 (usage or shell error)"
    logs = log_evidence(f)
    assert logs, f["evidence"]
    assert logs[0]["value"].splitlines() == ["starting", FLAKY_LINE]
    assert f"(attempt {int(evidence(f, 'restart count')) - 1})" in logs[0]["label"]


def test_a_sidecar_whose_command_ends_is_a_crashloop_with_exit_0_explained(
    agent: RunningAgent, pods: dict[str, JSON]
) -> None:
    f = wait_finding(
        agent,
        "sidecar-pod",
        "crashloop",
        "sidecar",
        lambda f: int(evidence(f, "restart count")) >= 2 and bool(log_evidence(f)),
    )
    assert "container sidecar of diag/sidecar-pod" in f["summary"]
    exit_ev = next(e for e in f["evidence"] if e["kind"] == "exit-code")
    assert exit_ev["value"] == "0 (exited successfully, but restartPolicy is Always)"
    assert "restartPolicy Always restarts any exit" in f["cause"]
    assert "needs a command that does not return" in f["cause"]
    assert any(e["value"].splitlines()[-1] == "done" for e in log_evidence(f)), f["evidence"]
    body = diagnosis(agent, "sidecar-pod")
    # main runs fine: nothing is said about it.
    assert not [x for x in body["findings"] if x["container"] == "main"], body["findings"]


def test_a_failing_init_container_loops_with_its_exit_and_log(
    agent: RunningAgent, pods: dict[str, JSON]
) -> None:
    f = wait_finding(
        agent,
        "init-fail-demo",
        "init-crashloop",
        "migrate",
        # Between back-offs the retry runs and the finding says so; wait for a back-off.
        lambda f: (
            int(evidence(f, "restart count")) >= 2 and "Init:CrashLoopBackOff" in f["summary"]
        ),
    )
    assert f["severity"] == "error"
    assert "init container migrate of diag/init-fail-demo (1 of 1)" in f["summary"]
    assert evidence(f, "last exit code") == "1 (application error)"
    assert evidence(f, "back-off step").endswith("(from kubelet's waiting message)")
    assert any(MIGRATE_LINE in e["value"] for e in log_evidence(f)), f["evidence"]
    body = agent.wait_for(
        lambda a: (b := diagnosis(a, "init-fail-demo"))["status"] == "Init:CrashLoopBackOff" and b
    )
    # The app container never started, and is not blamed.
    assert not [x for x in body["findings"] if x["container"] == "main"], body["findings"]


def test_a_failed_init_container_under_restart_policy_never_is_critical(
    agent: RunningAgent, pods: dict[str, JSON]
) -> None:
    f = wait_finding(agent, "init-fail-once", "init-failed", "migrate")
    assert f["severity"] == "critical"
    assert "failed with exit code 3 (application-specific exit code 3)" in f["summary"]
    assert "restartPolicy Never: the pod is Failed for good" in f["summary"]
    assert evidence(f, "restartPolicy") == "Never"
    assert evidence(f, "pod phase") == "Failed"
    assert evidence(f, "pod status") == "Init:Error"
    assert evidence(f, "command").endswith("exit 3'")
    assert any(MIGRATE_LINE in e["value"] for e in log_evidence(f)), f["evidence"]
    assert "has to be fixed and the pod recreated" in f["cause"]
    body = diagnosis(agent, "init-fail-once")
    assert body["findings"][0]["rule"] == "init-failed"


def test_an_oom_kill_names_the_memory_limit(agent: RunningAgent, pods: dict[str, JSON]) -> None:
    f = wait_finding(agent, "hog", "oom-killed", "hog", timeout=40)
    assert f["severity"] == "error"
    assert "container hog of diag/hog was OOM-killed" in f["summary"]
    assert "(memory limit 16Mi, exit 137)" in f["summary"]
    assert evidence(f, "memory limit") == "16Mi"
    assert evidence(f, "exit code") == "137 (SIGKILL: OOM-killed)"
    assert evidence(f, "reason") == "OOMKilled"
    assert "reached its memory limit of 16Mi" in f["cause"]
    assert any("allocating" in e["value"] for e in log_evidence(f)), f["evidence"]
    assert not any("survived" in e["value"] for e in log_evidence(f))
    body = diagnosis(agent, "hog")
    assert body["status"] == "OOMKilled"
    # restartPolicy Never: the container failed for good as well.
    failed = findings(body, "container-failed", "hog")
    assert failed, body["findings"]
    assert failed[0]["severity"] == "critical"


def test_a_declared_port_nothing_listens_on(
    agent: RunningAgent, api: FakeApiServer, pods: dict[str, JSON]
) -> None:
    started = wait_running(api, "no-listener", "app")
    wait_running(api, "web-ok", "web")
    # Within the grace period a server may still be starting: no finding yet.
    early = diagnosis(agent, "no-listener")
    if (datetime.now(UTC) - started) < PORT_GRACE:
        assert not findings(early, "port-not-listening"), early["findings"]
    f = wait_finding(agent, "no-listener", "port-not-listening", "app", timeout=45)
    assert (datetime.now(UTC) - started) > PORT_GRACE
    assert f["severity"] == "warning"
    assert "declares port 8080 (http) but nothing listens on it" in f["summary"]
    assert "the pod's network namespace" in f["summary"]
    assert evidence(f, "declared containerPort") == "8080 (http)"
    assert evidence(f, "listening in the pod's network namespace") == "9090"
    assert "(the pod listens on 9090)" in f["cause"]
    assert any(e["value"] == "listening on :9090" for e in log_evidence(f)), f["evidence"]
    assert any(step.startswith("nsenter -t ") for step in f["next_steps"])
    # A pod whose server listens on its declared port, past the same grace: nothing.
    ok = diagnosis(agent, "web-ok")
    assert ok["status"] == "Running"
    assert ok["findings"] == [], ok["findings"]


def test_text_output_reads_as_a_report(agent: RunningAgent, pods: dict[str, JSON]) -> None:
    r = agent.get(f"/v1/pods/{NS}/crashloop-demo/diagnosis", params={"output": "text"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert text.startswith(f"Pod {NS}/crashloop-demo: ")
    assert f"ERROR    crashloop              {NS}/crashloop-demo [app]" in text
    assert "  Cause: " in text
    assert "  Evidence:\n" in text
    assert "    - (exit-code) last exit code: 1 (application error)" in text
    assert CRASH_LINE in text
    assert f"    $ kubectl -n {NS} logs crashloop-demo -c app --previous" in text

    quiet = agent.get(f"/v1/pods/{NS}/healthy/diagnosis", params={"output": "text"}).text
    assert quiet.startswith(f"Pod {NS}/healthy: Running  READY 1/1  RESTARTS 0")
    assert quiet.endswith("No problems found.\n")

    listing = agent.get("/v1/diagnostics", params={"output": "text"}).text
    assert listing.startswith(f"Node {NODE}: ")
    assert "CRITICAL init-failed" in listing
    assert listing.index("CRITICAL ") < listing.index("ERROR    ")


def test_an_init_container_waiting_past_the_threshold_names_the_missing_service(
    agent: RunningAgent, api: FakeApiServer, pods: dict[str, JSON]
) -> None:
    started = wait_running(api, "init-demo", "init-wait")
    due = started + INIT_WAIT
    time.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()))
    f = wait_finding(agent, "init-demo", "init-waiting", "init-wait", timeout=10)
    assert f["severity"] == "warning"
    assert (
        "init container init-wait (1 of 2) of diag/init-demo has been running for 3"
        in (f["summary"])
    )  # 30 s and a little more: the threshold the agent runs with
    assert "the pod stays Init:0/2" in f["summary"]
    assert evidence(f, "pod status") == "Init:0/2"
    assert evidence(f, "command") == "until nslookup myservice; do echo waiting; sleep 2; done"
    assert evidence(f, "Service myservice") == f"no Service named myservice in namespace {NS}"
    assert "there is no Service named myservice" in f["cause"]
    logs = log_evidence(f)
    assert logs, f["evidence"]
    assert set(logs[0]["value"].splitlines()) >= {"waiting"}
    assert f"kubectl -n {NS} get services" in f["next_steps"]
    assert f"kubectl -n {NS} logs init-demo -c init-wait" in f["next_steps"]

    # The Service that exists is named as existing: the wait is on what stands behind it.
    wait_running(api, "init-known", "init-wait")
    known = wait_finding(agent, "init-known", "init-waiting", "init-wait", timeout=15)
    assert evidence(known, "Service backend") == f"exists in namespace {NS}"
    assert "Service backend exists" in known["cause"]
    assert any("still waiting" in e["value"] for e in log_evidence(known))


def test_the_node_lists_failing_pods_most_severe_first(
    agent: RunningAgent, pods: dict[str, JSON]
) -> None:
    body = agent.get("/v1/diagnostics").json()
    assert body["node_name"] == NODE
    assert body["pods_checked"] >= len(PODS)
    items = body["items"]
    ranks = [SEVERITY_RANK[i["severity"]] for i in items]
    assert ranks == sorted(ranks), [(i["severity"], i["pod"], i["rule"]) for i in items]
    seen = {(i["pod"], i["rule"], i["container"]) for i in items}
    assert {
        ("init-fail-once", "init-failed", "migrate"),
        ("hog", "oom-killed", "hog"),
        ("crashloop-demo", "crashloop", "app"),
        ("sidecar-pod", "crashloop", "sidecar"),
        ("flaky", "crashloop", "app"),
        ("init-fail-demo", "init-crashloop", "migrate"),
        ("init-demo", "init-waiting", "init-wait"),
        ("no-listener", "port-not-listening", "app"),
    } <= seen
    assert items[0]["severity"] == "critical"
    assert body["pods_with_findings"] == len({(i["namespace"], i["pod"]) for i in items})
    for pod in HEALTHY:
        assert not [i for i in items if i["pod"] == pod], [i for i in items if i["pod"] == pod]
    assert all(i["namespace"] == NS for i in items)


def test_logs_keep_working_with_the_api_server_stopped(
    agent: RunningAgent, api: FakeApiServer, pods: dict[str, JSON]
) -> None:
    api.stop()
    try:
        agent.wait_for(
            lambda a: a.get(f"/v1/pods/{NS}/crashloop-demo/diagnosis").json()["api"] != "ok",
            timeout=20,
            interval=0.2,
        )
        assert CRASH_LINE in log_lines(agent, "crashloop-demo", "app", previous="true")
        assert "waiting" in log_lines(agent, "init-demo", "init-wait")
        text = agent.get(
            f"/v1/pods/{NS}/init-fail-once/logs", params={"container": "migrate", "output": "text"}
        ).text
        assert MIGRATE_LINE in text
        # The diagnosis still answers, from the last pod the API server sent,
        # and says the API server is unavailable.
        body = diagnosis(agent, "crashloop-demo")
        assert body["api"].startswith("unavailable since "), body["api"]
        assert findings(body, "crashloop", "app"), body["findings"]
    finally:
        # Back on the same port, so the kubelet and the agent reconnect and
        # the module's pods are deleted through the API.
        api.start()
