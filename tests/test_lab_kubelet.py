"""The lab kubelet against a real containerd and the lab's API server.

Pods are created in the fake API server exactly as ``kubectl apply`` would
(no node), the lab binds them and its kubelet runs them; everything is then
checked where a user would look: the pod read back from the API server
(kubectl's STATUS through ``agent.domain.podstatus``), its events, and the
runtime through CRI. One kubelet serves the module with its clocks sped up
20 times (``time_scale=0.05``), so a 10 s back-off lasts half a second.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agent.domain.backoff import backoff_from_message
from agent.domain.podstatus import PodStatusStrings, status_strings
from agent.kube.convert import pod_from_dict
from cri_proto import api_pb2
from lab.apiserver import FakeApiServer
from lab.containerd import PrivateContainerd
from lab.cri_pods import LABEL_POD_UID, CriPodDriver
from lab.errors import CriCallFailed
from lab.kubelet import (
    LAB_HOST_PATH_PREFIX,
    LabKubelet,
    ManifestError,
    read_pod,
    unsupported_fields,
)
from lab.kubelet.backoff import RestartBackoff, crash_loop_message

SCALE = 0.05
NODE = "lab-node"
BUSYBOX = "busybox:1.37"
SLEEP = ["sleep", "3600"]

JSON = dict[str, Any]


# --------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def api() -> Iterator[FakeApiServer]:
    server = FakeApiServer(bookmark_interval=0.5).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def kubelet(
    api: FakeApiServer,
    containerd: PrivateContainerd,
    cri_driver: CriPodDriver,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[LabKubelet]:
    root = tmp_path_factory.mktemp("kubelet")
    instance = LabKubelet(
        api.url, containerd.endpoint, NODE, root, time_scale=SCALE, sync_period=0.1
    )
    instance.start()
    assert instance.wait_synced(10)
    yield instance
    # Delete through the API, as a user would; the kubelet removes the rest.
    for pod in api.list_objects("pod"):
        api.delete("pod", pod["metadata"]["namespace"], pod["metadata"]["name"])
    deadline = time.monotonic() + 15
    while instance.pod_uids and time.monotonic() < deadline:
        time.sleep(0.1)
    instance.stop()
    for uid in os.listdir(root / "pods"):
        for sb in cri_driver.list_sandboxes({LABEL_POD_UID: uid}):
            cri_driver.stop_sandbox(sb.id)
            cri_driver.remove_sandbox(sb.id)


# --------------------------------------------------------------------- helpers


def wait_for(what: str, predicate: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for: {what}")
        time.sleep(0.03)


def container(name: str, command: list[str] | None = None, **extra: Any) -> JSON:
    return {"name": name, "image": BUSYBOX, "command": command or SLEEP, **extra}


def create(
    api: FakeApiServer,
    namespace: str,
    name: str,
    containers: list[JSON],
    init: list[JSON] | None = None,
    **spec: Any,
) -> JSON:
    body: JSON = {"containers": containers, "terminationGracePeriodSeconds": 0, **spec}
    if init:
        body["initContainers"] = init
    return api.add("pod", {"metadata": {"name": name, "namespace": namespace}, "spec": body})


def read(api: FakeApiServer, namespace: str, name: str) -> JSON:
    pod = api.get("pod", namespace, name)
    assert pod is not None, f"pod {namespace}/{name} is gone"
    return pod


def strings(api: FakeApiServer, namespace: str, name: str) -> PodStatusStrings:
    return status_strings(pod_from_dict(read(api, namespace, name)), datetime.now(UTC))


def cstatus(pod: JSON, name: str) -> JSON:
    status = pod.get("status") or {}
    for group in ("initContainerStatuses", "containerStatuses"):
        for st in status.get(group) or []:
            if st["name"] == name:
                return dict(st)
    return {}


def condition(pod: JSON, type_: str) -> JSON:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond["type"] == type_:
            return dict(cond)
    return {}


def events(api: FakeApiServer, namespace: str) -> list[JSON]:
    return api.list_objects("event", namespace)


def wait_events(
    api: FakeApiServer, namespace: str, what: str, match: Callable[[JSON], bool]
) -> list[JSON]:
    """The events matching ``match``, once there are any (events are sent asynchronously)."""
    return list(wait_for(what, lambda: [e for e in events(api, namespace) if match(e)]))


def instances(driver: CriPodDriver, uid: str, name: str) -> list[api_pb2.ContainerStatus]:
    """Every instance of container ``name`` the runtime still holds, by attempt."""
    found = []
    for c in driver.list_containers({LABEL_POD_UID: uid}):
        if c.metadata.name != name:
            continue
        try:
            found.append(driver.container_status(c.id).status)
        except CriCallFailed:
            continue  # removed by the kubelet's GC between the two calls
    return sorted(found, key=lambda s: s.metadata.attempt)


def sandboxes(driver: CriPodDriver, uid: str) -> list[api_pb2.PodSandbox]:
    return sorted(driver.list_sandboxes({LABEL_POD_UID: uid}), key=lambda s: s.metadata.attempt)


def log_text(status: api_pb2.ContainerStatus) -> str:
    try:
        return Path(status.log_path).read_text()
    except OSError:
        return ""


# --------------------------------------------------------------------- pure parts


def test_unsupported_fields_names_what_the_lab_cannot_honour() -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p"},
        "spec": {
            "hostPID": False,
            "imagePullSecrets": [],
            "tolerations": [{"operator": "Exists"}],
            "affinity": {"nodeAffinity": {}},
            "nodeSelector": {"disktype": "ssd"},
            "volumes": [
                {"name": "cfg", "configMap": {"name": "app-config"}},
                {"name": "scratch", "emptyDir": {}},
                {"name": "etc", "hostPath": {"path": "/etc"}},
            ],
            "containers": [
                {
                    "name": "app",
                    "image": "busybox",
                    "securityContext": {"capabilities": {"add": ["NET_ADMIN"]}},
                    "lifecycle": {"preStop": {"exec": {"command": ["true"]}}},
                    "readinessProbe": {"grpc": {"port": 9000}},
                    "volumeMounts": [
                        {"name": "cfg", "mountPath": "/cfg"},
                        {"name": "scratch", "mountPath": "/s"},
                    ],
                    "resources": {"limits": {"nvidia.com/gpu": 1, "memory": "64Mi"}},
                }
            ],
        },
    }
    assert unsupported_fields(pod, node_name=NODE) == [
        "spec.affinity",
        "spec.nodeSelector.disktype",
        "spec.volumes[0].configMap",
        "spec.volumes[2].hostPath",
        "spec.containers[0].lifecycle.preStop",
        "spec.containers[0].securityContext.capabilities",
        "spec.containers[0].readinessProbe.grpc",
        "spec.containers[0].resources.limits.nvidia.com/gpu",
    ]
    reasons_by_field = {u.field: u.why for u in read_pod(pod, node_name=NODE).unsupported}
    assert "ConfigMaps" in reasons_by_field["spec.volumes[0].configMap"]


def test_unsupported_fields_accepts_what_the_lab_runs() -> None:
    pod = {
        "metadata": {"name": "ok"},
        "spec": {
            "restartPolicy": "OnFailure",
            "shareProcessNamespace": True,
            "hostPID": False,
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "volumes": [{"name": "v", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}}],
            "initContainers": [
                {"name": "side", "image": "busybox", "restartPolicy": "Always"},
                {"name": "wait", "image": "busybox", "command": ["sh", "-c", "nslookup x"]},
            ],
            "containers": [
                {
                    "name": "app",
                    "image": "nginx",
                    "env": [
                        {"name": "A", "value": "1"},
                        {"name": "P", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                        {
                            "name": "C",
                            "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k"}},
                        },
                    ],
                    "ports": [{"containerPort": 80, "name": "http"}],
                    "volumeMounts": [{"name": "v", "mountPath": "/v", "readOnly": True}],
                    "livenessProbe": {"httpGet": {"path": "/", "port": "http"}},
                    "resources": {"requests": {"cpu": "100m"}, "limits": {"memory": "64Mi"}},
                    "securityContext": {"allowPrivilegeEscalation": False, "runAsUser": 1000},
                }
            ],
        },
    }
    assert unsupported_fields(pod, node_name=NODE) == []


def test_unsupported_fields_reports_bad_types_and_refuses_non_pods() -> None:
    pod = {"metadata": {"name": "x"}, "spec": {"containers": "app", "bogus": 1}}
    assert unsupported_fields(pod) == ["spec.bogus", "spec.containers"]
    with pytest.raises(ManifestError, match="JSON object"):
        unsupported_fields(["not", "a", "pod"])  # type: ignore[arg-type]
    with pytest.raises(ManifestError, match="kind Pod"):
        unsupported_fields({"kind": "Service"})


def test_backoff_schedule_doubles_to_the_cap_and_resets() -> None:
    backoff = RestartBackoff(1.0)
    key = ("ns", "pod", "uid", "c", "hash")
    t = 1000.0
    assert backoff.remaining(key, t, t) is None  # first restart: immediate
    periods = []
    for _ in range(7):
        periods.append(backoff.next(key, t, t))
        t += 1
        left = backoff.remaining(key, t, t)
        assert left is not None
        assert left[1] == periods[-1]
        t += left[0]
    assert [p.total_seconds() for p in periods] == [10, 20, 40, 80, 160, 300, 300]
    # Ten minutes without an exit forget the entry.
    assert backoff.remaining(key, t + 601, t + 601) is None
    assert backoff.next(key, t + 601, t + 601) == timedelta(seconds=10)


def test_backoff_time_scale_shrinks_the_wait_not_the_step() -> None:
    backoff = RestartBackoff(0.1)
    key = ("ns", "pod", "uid", "c", "hash")
    backoff.next(key, 0.0, 0.0)
    left = backoff.remaining(key, 0.0, 0.0)
    assert left is not None
    assert left[0] == pytest.approx(1.0)
    assert left[1] == timedelta(seconds=10)
    # The reset is scaled too: 60 wall seconds are kubelet's ten minutes.
    assert backoff.remaining(key, 61.0, 61.0) is None


@pytest.mark.parametrize(
    ("seconds", "step"),
    [(10, "10s"), (40, "40s"), (80, "1m20s"), (160, "2m40s"), (300, "5m0s")],
)
def test_crash_loop_message_writes_go_durations_as_kubelet_does(seconds: int, step: str) -> None:
    message = crash_loop_message(timedelta(seconds=seconds), "app", "web_default(uid-1)")
    assert message == f"back-off {step} restarting failed container=app pod=web_default(uid-1)"
    # The agent reads the step back from the message.
    assert backoff_from_message(message) == timedelta(seconds=seconds)


# --------------------------------------------------------------------- init order


@pytest.mark.containerd
def test_init_containers_run_one_at_a_time_in_order(
    api: FakeApiServer, kubelet: LabKubelet, cri_driver: CriPodDriver
) -> None:
    ns = "init-order"
    gate = "until [ -f /work/go ]; do sleep 0.05; done"
    pod = create(
        api,
        ns,
        "ordered",
        [container("app", volumeMounts=[{"name": "work", "mountPath": "/work"}])],
        init=[
            container(
                "first", ["sh", "-c", gate], volumeMounts=[{"name": "work", "mountPath": "/work"}]
            ),
            container(
                "second",
                ["sh", "-c", "echo second > /work/second"],
                volumeMounts=[{"name": "work", "mountPath": "/work"}],
            ),
        ],
        volumes=[{"name": "work", "emptyDir": {}}],
    )
    uid = pod["metadata"]["uid"]
    wait_for(
        "first init running",
        lambda: cstatus(read(api, ns, "ordered"), "first").get("state", {}).get("running"),
    )
    time.sleep(0.5)  # several relists: the second must still wait

    shown = strings(api, ns, "ordered")
    assert shown.status == "Init:0/2"
    assert shown.ready == "0/1"
    assert read(api, ns, "ordered")["status"]["phase"] == "Pending"
    assert instances(cri_driver, uid, "second") == []
    assert instances(cri_driver, uid, "app") == []
    assert cstatus(read(api, ns, "ordered"), "second")["state"] == {
        "waiting": {"reason": "PodInitializing"}
    }
    assert condition(read(api, ns, "ordered"), "Initialized")["status"] == "False"

    volume = kubelet.pod_dir(uid) / "volumes" / "kubernetes.io~empty-dir" / "work"
    (volume / "go").touch()

    wait_for("pod running", lambda: strings(api, ns, "ordered").status == "Running")
    first = instances(cri_driver, uid, "first")[-1]
    second = instances(cri_driver, uid, "second")[-1]
    app = instances(cri_driver, uid, "app")[-1]
    assert first.exit_code == 0
    assert second.exit_code == 0
    assert first.finished_at <= second.started_at
    assert second.finished_at <= app.started_at
    assert (volume / "second").read_text() == "second\n"
    assert condition(read(api, ns, "ordered"), "Initialized")["status"] == "True"


@pytest.mark.containerd
def test_failing_init_container_backs_off_then_never_fails_the_pod(
    api: FakeApiServer, kubelet: LabKubelet, cri_driver: CriPodDriver
) -> None:
    ns = "init-fail"
    retried = create(
        api, ns, "retried", [container("app")], init=[container("bad", ["sh", "-c", "exit 3"])]
    )
    failed = create(
        api,
        ns,
        "failed",
        [container("app")],
        init=[container("bad", ["sh", "-c", "exit 3"])],
        restartPolicy="Never",
    )
    wait_for(
        "init crash loop",
        lambda: strings(api, ns, "retried").status == "Init:CrashLoopBackOff",
    )
    bad = cstatus(read(api, ns, "retried"), "bad")
    assert bad["state"]["waiting"]["message"].startswith(
        "back-off 10s restarting failed container=bad"
    )
    assert bad["lastState"]["terminated"]["exitCode"] == 3
    assert len(instances(cri_driver, retried["metadata"]["uid"], "bad")) >= 2

    wait_for("Never pod failed", lambda: read(api, ns, "failed")["status"]["phase"] == "Failed")
    assert strings(api, ns, "failed").status == "Init:Error"
    assert len(instances(cri_driver, failed["metadata"]["uid"], "bad")) == 1
    assert instances(cri_driver, failed["metadata"]["uid"], "app") == []


# --------------------------------------------------------------------- volumes


@pytest.mark.containerd
def test_empty_dir_is_shared_and_read_only_is_honoured(
    api: FakeApiServer, kubelet: LabKubelet, cri_driver: CriPodDriver
) -> None:
    ns = "shared"
    writer = "echo hello from writer > /out/msg; sleep 3600"
    reader = (
        "until [ -f /in/msg ]; do sleep 0.05; done; cat /in/msg; "
        "touch /in/other 2>/dev/null && echo writable || echo read-only; sleep 3600"
    )
    pod = create(
        api,
        ns,
        "pair",
        [
            container(
                "writer", ["sh", "-c", writer], volumeMounts=[{"name": "data", "mountPath": "/out"}]
            ),
            container(
                "reader",
                ["sh", "-c", reader],
                volumeMounts=[{"name": "data", "mountPath": "/in", "readOnly": True}],
            ),
        ],
        volumes=[{"name": "data", "emptyDir": {}}],
    )
    uid = pod["metadata"]["uid"]
    wait_for(
        "reader output",
        lambda: (
            "read-only" in log_text(instances(cri_driver, uid, "reader")[-1])
            if instances(cri_driver, uid, "reader")
            else False
        ),
    )
    text = log_text(instances(cri_driver, uid, "reader")[-1])
    assert "hello from writer" in text
    assert "writable" not in text.replace("read-only", "")


# --------------------------------------------------------------------- restarts


@pytest.mark.containerd
def test_crash_loop_restarts_with_kubelets_backoff(
    api: FakeApiServer, kubelet: LabKubelet, cri_driver: CriPodDriver
) -> None:
    ns = "crash"
    pod = create(api, ns, "crasher", [container("c", ["sh", "-c", "exit 1"])])
    uid = pod["metadata"]["uid"]
    seen: dict[int, api_pb2.ContainerStatus] = {}
    messages: set[str] = set()
    deadline = time.monotonic() + 15
    while 4 not in seen or not seen[4].finished_at:
        for st in instances(cri_driver, uid, "c"):
            if st.finished_at:
                seen[st.metadata.attempt] = st
        waiting = cstatus(read(api, ns, "crasher"), "c").get("state", {}).get("waiting") or {}
        if waiting.get("reason") == "CrashLoopBackOff":
            messages.add(waiting["message"])
        assert time.monotonic() < deadline, f"only attempts {sorted(seen)} seen"
        time.sleep(0.02)

    assert sorted(seen)[:5] == [0, 1, 2, 3, 4], "every restart is a new container, attempt + 1"
    gaps = [(seen[n + 1].started_at - seen[n].finished_at) / 1e9 for n in range(4)]
    # Immediate, then 10 s, 20 s, 40 s (scaled), plus relist and start
    # latency; each gap stays below the next step of the schedule.
    for gap, nominal in zip(gaps, (0, 10, 20, 40), strict=True):
        assert nominal * SCALE <= gap + 0.02, gaps
        # The immediate first restart gets a wider bound (a loaded machine's
        # relist and start latency), and must still come sooner than the second.
        assert gap < max(nominal * 2, 20 if nominal == 0 else 10) * SCALE, gaps
    assert gaps[0] < gaps[1], gaps
    label = f"pod=crasher_{ns}({uid})"
    assert f"back-off 10s restarting failed container=c {label}" in messages
    assert f"back-off 20s restarting failed container=c {label}" in messages
    # The step after 40 s passes a minute; kubelet prints it as Go prints a
    # duration (waited for here: attempt 4 has just exited).
    wait_for(
        "the 80 s step in Go's form",
        lambda: (
            (cstatus(read(api, ns, "crasher"), "c").get("state", {}).get("waiting") or {})
            .get("message", "")
            .startswith(f"back-off 1m20s restarting failed container=c {label}")
        ),
    )
    # Kubelet's GC keeps one dead instance per container.
    assert len(instances(cri_driver, uid, "c")) <= 2
    status = cstatus(read(api, ns, "crasher"), "c")
    assert status["restartCount"] >= 4
    assert status["lastState"]["terminated"]["exitCode"] == 1
    assert status["lastState"]["terminated"]["reason"] == "Error"
    # Repeats are one event with a count, as client-go's correlator folds them.
    backoffs = wait_events(
        api, ns, "BackOff counted", lambda e: e["reason"] == "BackOff" and e["count"] >= 2
    )
    assert len(backoffs) == 1
    assert backoffs[0]["type"] == "Warning"
    assert backoffs[0]["lastTimestamp"] >= backoffs[0]["firstTimestamp"]
    started = wait_events(
        api, ns, "Started counted", lambda e: e["reason"] == "Started" and e["count"] >= 5
    )
    assert len(started) == 1


@pytest.mark.containerd
def test_restart_policies_end_the_pod(
    api: FakeApiServer, kubelet: LabKubelet, cri_driver: CriPodDriver
) -> None:
    ns = "policies"
    never = create(
        api, ns, "never", [container("c", ["sh", "-c", "exit 2"])], restartPolicy="Never"
    )
    done = create(api, ns, "done", [container("c", ["true"])], restartPolicy="OnFailure")
    retry = create(
        api, ns, "retry", [container("c", ["sh", "-c", "exit 5"])], restartPolicy="OnFailure"
    )

    wait_for("Never pod failed", lambda: read(api, ns, "never")["status"]["phase"] == "Failed")
    assert strings(api, ns, "never").status == "Error"
    terminated = cstatus(read(api, ns, "never"), "c")["state"]["terminated"]
    assert terminated["exitCode"] == 2
    # kubelet's reason on a failed pod, not the succeeded one's.
    assert condition(read(api, ns, "never"), "Ready")["reason"] == "PodFailed"
    assert [s.metadata.attempt for s in instances(cri_driver, never["metadata"]["uid"], "c")] == [0]

    wait_for(
        "OnFailure exit 0 succeeded",
        lambda: read(api, ns, "done")["status"]["phase"] == "Succeeded",
    )
    assert strings(api, ns, "done").status == "Completed"
    assert condition(read(api, ns, "done"), "Ready")["reason"] == "PodCompleted"
    # A terminal pod's sandbox is stopped; its containers stay for their logs.
    wait_for(
        "sandbox stopped",
        lambda: all(
            s.state == api_pb2.SANDBOX_NOTREADY
            for s in sandboxes(cri_driver, done["metadata"]["uid"])
        ),
    )

    wait_for(
        "OnFailure restarts a failure",
        lambda: cstatus(read(api, ns, "retry"), "c").get("restartCount", 0) >= 1,
    )
    assert read(api, ns, "retry")["status"]["phase"] in ("Running", "Pending")
    attempts = [s.metadata.attempt for s in instances(cri_driver, retry["metadata"]["uid"], "c")]
    assert max(attempts) >= 1


# --------------------------------------------------------------------- sidecars


@pytest.mark.containerd
def test_native_sidecar_starts_first_and_restarts_even_in_a_never_pod(
    api: FakeApiServer, kubelet: LabKubelet, cri_driver: CriPodDriver
) -> None:
    ns = "sidecar"
    pod = create(
        api,
        ns,
        "with-sidecar",
        [container("app")],
        init=[
            container("proxy", ["sh", "-c", "sleep 0.6; exit 0"], restartPolicy="Always"),
            container("setup", ["true"]),
        ],
        restartPolicy="Never",
    )
    uid = pod["metadata"]["uid"]
    wait_for(
        "sidecar restarted",
        lambda: any(s.metadata.attempt >= 1 for s in instances(cri_driver, uid, "proxy")),
    )
    proxy0 = [s for s in instances(cri_driver, uid, "proxy") if s.metadata.attempt == 0]
    setup = instances(cri_driver, uid, "setup")[-1]
    app = instances(cri_driver, uid, "app")[-1]
    assert proxy0, "one dead instance is kept"
    assert proxy0[0].started_at <= setup.started_at
    assert setup.finished_at <= app.started_at
    assert app.state == api_pb2.CONTAINER_RUNNING
    wait_for(
        "sidecar restart in the status",
        lambda: cstatus(read(api, ns, "with-sidecar"), "proxy").get("restartCount", 0) >= 1,
    )
    assert read(api, ns, "with-sidecar")["status"]["phase"] == "Running"
    assert strings(api, ns, "with-sidecar").total_count == 2  # app + sidecar


# --------------------------------------------------------------------- sandbox


@pytest.mark.containerd
def test_killed_pause_process_recreates_the_sandbox_and_reruns_init(
    api: FakeApiServer, kubelet: LabKubelet, cri_driver: CriPodDriver
) -> None:
    ns = "pause-kill"
    pod = create(api, ns, "phoenix", [container("app")], init=[container("init", ["true"])])
    uid = pod["metadata"]["uid"]
    wait_for("running", lambda: strings(api, ns, "phoenix").status == "Running")
    first = sandboxes(cri_driver, uid)[-1]
    pause = cri_driver.sandbox_pid(first.id)
    assert pause is not None

    os.kill(pause, signal.SIGKILL)

    def recreated() -> bool:
        sbs = sandboxes(cri_driver, uid)
        return (
            bool(sbs) and sbs[-1].metadata.attempt == 1 and sbs[-1].state == api_pb2.SANDBOX_READY
        )

    wait_for("new sandbox", recreated)
    wait_for(
        "running again",
        lambda: any(
            s.metadata.attempt == 1 and s.state == api_pb2.CONTAINER_RUNNING
            for s in instances(cri_driver, uid, "app")
        ),
    )
    new = sandboxes(cri_driver, uid)[-1]
    init = [
        c for c in cri_driver.list_containers({LABEL_POD_UID: uid}) if c.metadata.name == "init"
    ]
    assert any(c.pod_sandbox_id == new.id and c.metadata.attempt == 1 for c in init), "init reran"
    wait_events(api, ns, "SandboxChanged", lambda e: e["reason"] == "SandboxChanged")
    wait_for(
        "status shows new pod IP",
        lambda: (
            read(api, ns, "phoenix")["status"].get("podIP")
            == cri_driver.sandbox_status(new.id).status.network.ip
        ),
    )


# --------------------------------------------------------------------- probes


@pytest.mark.containerd
def test_exec_readiness_probe_toggles_ready(
    api: FakeApiServer, kubelet: LabKubelet, cri_driver: CriPodDriver
) -> None:
    ns = "readiness"
    probe = {"exec": {"command": ["cat", "/tmp/ready"]}, "periodSeconds": 1, "failureThreshold": 1}
    pod = create(
        api,
        ns,
        "probed",
        [container("app", ["sh", "-c", "touch /tmp/ready; sleep 3600"], readinessProbe=probe)],
    )
    uid = pod["metadata"]["uid"]
    wait_for("ready", lambda: condition(read(api, ns, "probed"), "Ready").get("status") == "True")
    assert strings(api, ns, "probed").ready == "1/1"
    cid = instances(cri_driver, uid, "app")[-1].id

    cri_driver.exec_sync(cid, ["rm", "/tmp/ready"], timeout=5)
    wait_for(
        "not ready", lambda: condition(read(api, ns, "probed"), "Ready").get("status") == "False"
    )
    shown = read(api, ns, "probed")
    assert strings(api, ns, "probed").ready == "0/1"
    assert cstatus(shown, "app")["ready"] is False
    assert condition(shown, "ContainersReady")["message"] == "containers with unready status: [app]"
    unhealthy = wait_events(api, ns, "Unhealthy", lambda e: e["reason"] == "Unhealthy")
    assert unhealthy[0]["message"].startswith("Readiness probe failed:")
    assert unhealthy[0]["type"] == "Warning"

    cri_driver.exec_sync(cid, ["touch", "/tmp/ready"], timeout=5)
    wait_for(
        "ready again", lambda: condition(read(api, ns, "probed"), "Ready").get("status") == "True"
    )
    assert instances(cri_driver, uid, "app")[-1].id == cid, "readiness never restarts"


@pytest.mark.containerd
def test_failed_liveness_probe_kills_and_restarts(
    api: FakeApiServer, kubelet: LabKubelet, cri_driver: CriPodDriver
) -> None:
    ns = "liveness"
    probe = {"exec": {"command": ["cat", "/tmp/alive"]}, "periodSeconds": 1, "failureThreshold": 2}
    pod = create(
        api,
        ns,
        "live",
        [container("app", ["sh", "-c", "touch /tmp/alive; sleep 3600"], livenessProbe=probe)],
    )
    uid = pod["metadata"]["uid"]
    wait_for("running", lambda: strings(api, ns, "live").status == "Running")
    cri_driver.exec_sync(instances(cri_driver, uid, "app")[-1].id, ["rm", "/tmp/alive"], timeout=5)
    wait_for("restarted", lambda: cstatus(read(api, ns, "live"), "app").get("restartCount", 0) >= 1)
    killing = wait_events(api, ns, "Killing", lambda e: e["reason"] == "Killing")
    assert killing[0]["message"] == "Container app failed liveness probe, will be restarted"
    wait_events(api, ns, "Unhealthy", lambda e: e["message"].startswith("Liveness probe failed:"))


@pytest.mark.containerd
def test_http_and_tcp_probes_run_inside_the_pod_network(
    api: FakeApiServer, kubelet: LabKubelet, cri_driver: CriPodDriver
) -> None:
    ns = "http-probe"
    serve = "mkdir -p /www && echo ok > /www/healthz && exec httpd -f -p 8080 -h /www"
    create(
        api,
        ns,
        "web",
        [
            container(
                "web",
                ["sh", "-c", serve],
                ports=[{"containerPort": 8080, "name": "http"}],
                readinessProbe={
                    "httpGet": {"path": "/healthz", "port": "http"},
                    "periodSeconds": 1,
                },
                livenessProbe={"tcpSocket": {"port": 8080}, "periodSeconds": 1},
            ),
            container(
                "missing",
                readinessProbe={"httpGet": {"path": "/", "port": 9999}, "periodSeconds": 1},
            ),
        ],
    )
    wait_for("web ready", lambda: cstatus(read(api, ns, "web"), "web").get("ready") is True)
    wait_for(
        "probe failure seen", lambda: [e for e in events(api, ns) if e["reason"] == "Unhealthy"]
    )
    failure = next(e for e in events(api, ns) if e["reason"] == "Unhealthy")
    pod_ip = read(api, ns, "web")["status"]["podIP"]
    assert failure["message"] == (
        f'Readiness probe failed: Get "http://{pod_ip}:9999/": dial tcp {pod_ip}:9999: '
        "connect: connection refused"
    )
    assert failure["involvedObject"]["fieldPath"] == "spec.containers{missing}"
    assert cstatus(read(api, ns, "web"), "missing")["ready"] is False
    assert cstatus(read(api, ns, "web"), "web")["restartCount"] == 0
    assert strings(api, ns, "web").ready == "1/2"


# --------------------------------------------------------------------- status and events


@pytest.mark.containerd
def test_status_and_events_are_written_as_kubelet_writes_them(
    api: FakeApiServer, kubelet: LabKubelet, cri_driver: CriPodDriver
) -> None:
    ns = "status"
    env = [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "POD_UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "GREETING", "value": "hi $(POD_NAME)"},
    ]
    report = (
        'echo "$GREETING $POD_NS $POD_UID $POD_IP $(pwd)"; '
        'echo "it broke" > /dev/termination-log; exit 4'
    )
    pod = create(
        api,
        ns,
        "reporter",
        [
            container("app"),
            container("report", ["sh", "-c", report], env=env, workingDir="/tmp"),
        ],
        restartPolicy="Never",
    )
    uid = pod["metadata"]["uid"]
    wait_for(
        "report exited",
        lambda: cstatus(read(api, ns, "reporter"), "report").get("state", {}).get("terminated"),
    )
    shown = read(api, ns, "reporter")
    status = shown["status"]
    assert shown["spec"]["nodeName"] == NODE
    assert status["phase"] == "Running"
    assert status["hostIP"] == kubelet.node_ip
    assert status["podIP"]
    assert status["podIPs"] == [{"ip": status["podIP"]}]
    assert status["startTime"].endswith("Z")
    assert [c["type"] for c in status["conditions"]] == [
        "PodReadyToStartContainers",
        "Initialized",
        "Ready",
        "ContainersReady",
        "PodScheduled",
    ]
    assert all(c["lastTransitionTime"] for c in status["conditions"])
    assert condition(shown, "Ready")["status"] == "False"
    assert condition(shown, "PodScheduled")["status"] == "True"

    app = cstatus(shown, "app")
    runtime_app = instances(cri_driver, uid, "app")[-1]
    assert app["containerID"] == f"containerd://{runtime_app.id}"
    assert app["image"] == "docker.io/library/busybox:1.37"
    assert app["imageID"] == runtime_app.image_ref
    assert app["ready"] is True
    assert app["started"] is True
    assert app["restartCount"] == 0
    assert set(app["state"]) == {"running"}

    done = cstatus(shown, "report")["state"]["terminated"]
    assert done["exitCode"] == 4
    assert done["reason"] == "Error"
    assert done["message"] == "it broke\n"
    assert done["startedAt"] <= done["finishedAt"]
    assert done["containerID"].startswith("containerd://")
    out = log_text(instances(cri_driver, uid, "report")[-1])
    ip = status["podIP"]
    assert f"hi reporter {ns} {uid} {ip} /tmp" in out
    assert strings(api, ns, "reporter").status == "Error"

    wait_events(
        api,
        ns,
        "the report container's Started",
        lambda e: (
            e["reason"] == "Started"
            and e["involvedObject"].get("fieldPath") == "spec.containers{report}"
        ),
    )
    evs = events(api, ns)
    scheduled = next(e for e in evs if e["reason"] == "Scheduled")
    assert scheduled["source"] == {"component": "default-scheduler"}
    assert scheduled["message"] == f"Successfully assigned {ns}/reporter to {NODE}"
    by_field = {(e["involvedObject"].get("fieldPath"), e["reason"]): e for e in evs}
    pulled = by_field[("spec.containers{app}", "Pulled")]
    assert pulled["message"] == 'Container image "busybox:1.37" already present on machine'
    assert pulled["source"] == {"component": "kubelet", "host": NODE}
    assert pulled["involvedObject"]["uid"] == uid
    assert by_field[("spec.containers{app}", "Created")]["type"] == "Normal"
    assert by_field[("spec.containers{report}", "Started")]["count"] == 1


@pytest.mark.containerd
def test_missing_image_config_map_and_unsupported_fields_get_clear_reasons(
    api: FakeApiServer, kubelet: LabKubelet, cri_driver: CriPodDriver
) -> None:
    ns = "refused"
    create(api, ns, "no-image", [{"name": "app", "image": "registry.example/app:1.0"}])
    create(
        api,
        ns,
        "no-config",
        [
            container(
                "app",
                env=[
                    {
                        "name": "X",
                        "valueFrom": {"configMapKeyRef": {"name": "app-config", "key": "x"}},
                    }
                ],
            )
        ],
    )
    create(
        api,
        ns,
        "config-volume",
        [container("app", volumeMounts=[{"name": "cfg", "mountPath": "/cfg"}])],
        volumes=[{"name": "cfg", "configMap": {"name": "app-config"}}],
    )

    def waiting(name: str) -> JSON:
        return cstatus(read(api, ns, name), "app").get("state", {}).get("waiting") or {}

    wait_for("ErrImagePull", lambda: waiting("no-image").get("reason") == "ErrImagePull")
    assert "cannot pull" in waiting("no-image")["message"]
    wait_for("ImagePullBackOff", lambda: waiting("no-image").get("reason") == "ImagePullBackOff")
    wait_events(
        api, ns, "ImagePullBackOff event", lambda e: e["message"] == "Error: ImagePullBackOff"
    )
    failed = [
        e["message"]
        for e in events(api, ns)
        if e["reason"] == "Failed" and e["involvedObject"]["name"] == "no-image"
    ]
    assert any("the lab cannot pull" in m for m in failed)
    assert "Error: ImagePullBackOff" in failed

    wait_for(
        "config error", lambda: waiting("no-config").get("reason") == "CreateContainerConfigError"
    )
    assert waiting("no-config")["message"] == 'configmap "app-config" not found'
    assert strings(api, ns, "no-config").status == "CreateContainerConfigError"

    wait_for(
        "unsupported",
        lambda: waiting("config-volume").get("reason") == "CreateContainerConfigError",
    )
    message = waiting("config-volume")["message"]
    assert message.startswith("the lab cannot honour spec.volumes[0].configMap")
    uid = read(api, ns, "config-volume")["metadata"]["uid"]
    assert sandboxes(cri_driver, uid) == []
    wait_events(api, ns, "the refusal event", lambda e: e["message"] == f"Error: {message}")


@pytest.mark.containerd
def test_nslookup_in_an_init_container_gets_a_lab_note(
    api: FakeApiServer, kubelet: LabKubelet
) -> None:
    ns = "dns"
    create(
        api,
        ns,
        "waits",
        [container("app")],
        init=[container("wait-db", ["sh", "-c", "until nslookup mydb; do sleep 0.2; done"])],
    )
    note = wait_for("LabNote", lambda: [e for e in events(api, ns) if e["reason"] == "LabNote"])[0]
    assert note["type"] == "Normal"
    assert "no cluster DNS" in note["message"]
    assert note["involvedObject"]["fieldPath"] == "spec.initContainers{wait-db}"
    wait_for("initializing", lambda: strings(api, ns, "waits").status == "Init:0/1")
    time.sleep(0.5)
    assert strings(api, ns, "waits").status == "Init:0/1", "the lookup never succeeds"


@pytest.mark.containerd
def test_shared_process_namespace(
    api: FakeApiServer, kubelet: LabKubelet, cri_driver: CriPodDriver
) -> None:
    ns = "sharepid"
    pod = create(api, ns, "shared", [container("a"), container("b")], shareProcessNamespace=True)
    uid = pod["metadata"]["uid"]
    wait_for("running", lambda: strings(api, ns, "shared").ready == "2/2")
    pids = [cri_driver.container_pid(instances(cri_driver, uid, n)[-1].id) for n in ("a", "b")]
    inodes = {os.readlink(f"/proc/{pid}/ns/pid") for pid in pids}
    assert len(inodes) == 1
    assert os.readlink(f"/proc/{pids[0]}/ns/pid") != os.readlink("/proc/self/ns/pid")


# --------------------------------------------------------------------- deletion and restarts


@pytest.mark.containerd
def test_deletion_removes_containers_sandbox_volumes_and_logs(
    api: FakeApiServer, kubelet: LabKubelet, cri_driver: CriPodDriver
) -> None:
    ns = "delete"
    pod = create(
        api,
        ns,
        "doomed",
        [
            # PID 1 without a handler ignores SIGTERM: it waits for the SIGKILL.
            container("a", volumeMounts=[{"name": "v", "mountPath": "/v"}]),
            container("b", ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]),
        ],
        volumes=[{"name": "v", "emptyDir": {}}],
        terminationGracePeriodSeconds=20,
    )
    uid = pod["metadata"]["uid"]
    wait_for("running", lambda: strings(api, ns, "doomed").ready == "2/2")
    assert kubelet.pod_dir(uid).exists()
    log_dir = kubelet.root / "log" / "pods" / f"{ns}_doomed_{uid}"
    assert log_dir.exists()
    links = list((kubelet.root / "log" / "containers").glob(f"doomed_{ns}_*"))
    assert len(links) == 2

    api.delete("pod", ns, "doomed")
    deleted_at = time.monotonic()

    wait_for("sandbox gone", lambda: not sandboxes(cri_driver, uid), timeout=10)
    # SIGKILL only after the scaled grace period (20 s x 0.05 = 1 s).
    assert time.monotonic() - deleted_at >= 20 * SCALE - 0.05
    killing = wait_events(
        api,
        ns,
        "Killing",
        lambda e: (
            e["reason"] == "Killing" and e["involvedObject"]["fieldPath"] == "spec.containers{a}"
        ),
    )
    assert killing[0]["message"] == "Stopping container a"
    wait_for("worker gone", lambda: uid not in kubelet.pod_uids)
    assert cri_driver.list_containers({LABEL_POD_UID: uid}) == []
    assert not kubelet.pod_dir(uid).exists()
    assert not log_dir.exists()
    assert not list((kubelet.root / "log" / "containers").glob(f"doomed_{ns}_*"))


@pytest.mark.containerd
def test_a_restarted_kubelet_adopts_its_running_pods(
    api: FakeApiServer,
    containerd: PrivateContainerd,
    cri_driver: CriPodDriver,
    tmp_path: Path,
) -> None:
    ns = "adopt"
    node = "adopt-node"
    api.add(
        "pod",
        {
            "metadata": {"name": "kept", "namespace": ns},
            "spec": {
                "nodeName": node,
                "containers": [container("app")],
                "terminationGracePeriodSeconds": 0,
            },
        },
    )
    first = LabKubelet(
        api.url,
        containerd.endpoint,
        node,
        tmp_path,
        time_scale=SCALE,
        sync_period=0.1,
        schedule=False,
    )
    first.start()
    try:
        wait_for("running", lambda: strings(api, ns, "kept").status == "Running")
    finally:
        first.stop()
    uid = read(api, ns, "kept")["metadata"]["uid"]
    before = instances(cri_driver, uid, "app")
    assert [s.state for s in before] == [api_pb2.CONTAINER_RUNNING], "pods outlive the kubelet"

    second = LabKubelet(
        api.url,
        containerd.endpoint,
        node,
        tmp_path,
        time_scale=SCALE,
        sync_period=0.1,
        schedule=False,
    )
    second.start()
    try:
        time.sleep(0.5)
        assert [s.id for s in instances(cri_driver, uid, "app")] == [before[0].id]
        assert len(sandboxes(cri_driver, uid)) == 1
        api.delete("pod", ns, "kept")
        wait_for("removed by the new kubelet", lambda: not sandboxes(cri_driver, uid))
    finally:
        second.stop()


@pytest.mark.containerd
def test_host_network_and_memory_limit(
    api: FakeApiServer, kubelet: LabKubelet, cri_driver: CriPodDriver
) -> None:
    ns = "node-things"
    host = create(api, ns, "on-host", [container("app")], hostNetwork=True)
    hog = "x=$(head -c 64000000 /dev/zero | tr '\\0' a); echo survived"
    create(
        api,
        ns,
        "hog",
        [container("hog", ["sh", "-c", hog], resources={"limits": {"memory": "16Mi"}})],
        restartPolicy="Never",
    )
    wait_for("host pod running", lambda: strings(api, ns, "on-host").status == "Running")
    shown = read(api, ns, "on-host")
    assert shown["status"]["podIP"] == kubelet.node_ip
    sandbox = cri_driver.sandbox_status(sandboxes(cri_driver, host["metadata"]["uid"])[0].id)
    assert sandbox.status.linux.namespaces.options.network == api_pb2.NODE

    wait_for("hog failed", lambda: read(api, ns, "hog")["status"]["phase"] == "Failed")
    terminated = cstatus(read(api, ns, "hog"), "hog")["state"]["terminated"]
    assert terminated["reason"] == "OOMKilled"
    assert terminated["exitCode"] == 137
    assert strings(api, ns, "hog").status == "OOMKilled"


@pytest.mark.containerd
def test_host_path_under_the_lab_prefix_and_image_edit_restart(
    api: FakeApiServer, kubelet: LabKubelet, cri_driver: CriPodDriver
) -> None:
    ns = "edits"
    host_dir = Path(LAB_HOST_PATH_PREFIX) / f"test-{uuid.uuid4().hex[:8]}"
    try:
        pod = create(
            api,
            ns,
            "edited",
            [
                container(
                    "app",
                    ["sh", "-c", "echo from-pod > /host/out; sleep 3600"],
                    volumeMounts=[{"name": "h", "mountPath": "/host"}],
                )
            ],
            volumes=[
                {"name": "h", "hostPath": {"path": str(host_dir), "type": "DirectoryOrCreate"}}
            ],
        )
        uid = pod["metadata"]["uid"]
        # The shell creates the file, then writes to it: wait for the line.
        wait_for(
            "the pod's line in the file on the host",
            lambda: (host_dir / "out").exists() and (host_dir / "out").read_text() == "from-pod\n",
        )
        first = instances(cri_driver, uid, "app")[-1].id

        # The image is the one field of a running pod a user may edit:
        # kubelet sees a new container hash, kills and restarts the container.
        edited = read(api, ns, "edited")
        edited["spec"]["containers"][0]["image"] = "busybox"
        api.update("pod", edited)

        wait_for(
            "restarted with the new image",
            lambda: (
                cstatus(read(api, ns, "edited"), "app").get("image")
                == "docker.io/library/busybox:latest"
                and cstatus(read(api, ns, "edited"), "app").get("state", {}).get("running")
            ),
        )
        status = cstatus(read(api, ns, "edited"), "app")
        assert status["restartCount"] == 1
        assert status["lastState"]["terminated"]["containerID"] == f"containerd://{first}"
        killing = wait_events(api, ns, "Killing", lambda e: e["reason"] == "Killing")[0]
        assert killing["message"] == "Container app definition changed, will be restarted"
    finally:
        shutil.rmtree(host_dir, ignore_errors=True)


@pytest.mark.containerd
def test_outages_of_the_api_server_and_the_runtime_are_ridden_out(
    containerd: PrivateContainerd, cri_driver: CriPodDriver, tmp_path: Path
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    api = FakeApiServer(port=port, bookmark_interval=0.5).start()
    instance = LabKubelet(
        api.url, containerd.endpoint, "outage-node", tmp_path, time_scale=SCALE, sync_period=0.1
    )
    instance.start()
    ns = "outage"
    try:
        create(api, ns, "before", [container("app")])
        wait_for("first pod", lambda: strings(api, ns, "before").status == "Running")
        uid = read(api, ns, "before")["metadata"]["uid"]
        app_id = instances(cri_driver, uid, "app")[-1].id

        api.stop()  # the store survives; only the socket goes away
        time.sleep(0.6)
        api.start()
        create(api, ns, "after-api", [container("app")])
        wait_for("pod after API outage", lambda: strings(api, ns, "after-api").status == "Running")

        api.compact()
        api.drop_watches()
        create(api, ns, "after-410", [container("app")])
        wait_for("pod after relist", lambda: strings(api, ns, "after-410").status == "Running")

        containerd.kill()
        create(api, ns, "after-cri", [container("app")])
        time.sleep(0.5)
        containerd.start()
        wait_for(
            "pod after runtime outage",
            lambda: strings(api, ns, "after-cri").status == "Running",
            timeout=20,
        )
        assert [s.id for s in instances(cri_driver, uid, "app")] == [app_id]
        for name in ("before", "after-api", "after-410", "after-cri"):
            api.delete("pod", ns, name)
        wait_for("all removed", lambda: not instance.pod_uids, timeout=15)
    finally:
        instance.stop()
        api.stop()


# --------------------------------------------------------------------- the process


def test_cli_refuses_bad_arguments_clearly(tmp_path: Path) -> None:
    base = [sys.executable, "-m", "lab.kubelet", "--node-name", "n", "--root", str(tmp_path)]
    bad_scale = subprocess.run(
        [
            *base,
            "--api-server",
            "http://127.0.0.1:1",
            "--cri-endpoint",
            "unix:///x",
            "--time-scale",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert bad_scale.returncode == 2
    assert "--time-scale must be positive" in bad_scale.stderr
    assert "Traceback" not in bad_scale.stderr
    bad_url = subprocess.run(
        [*base, "--api-server", "https://example.invalid", "--cri-endpoint", "unix:///x"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert bad_url.returncode == 2
    assert "plain http://" in bad_url.stderr
    assert "Traceback" not in bad_url.stderr


@pytest.mark.containerd
def test_process_exits_zero_on_sigterm_and_leaves_pods_running(
    api: FakeApiServer,
    containerd: PrivateContainerd,
    cri_driver: CriPodDriver,
    tmp_path: Path,
) -> None:
    ns = "process"
    node = "proc-node"
    api.add(
        "pod",
        {
            "metadata": {"name": "survivor", "namespace": ns},
            "spec": {
                "nodeName": node,
                "containers": [container("app")],
                "terminationGracePeriodSeconds": 0,
            },
        },
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lab.kubelet",
            "--api-server",
            api.url,
            "--cri-endpoint",
            containerd.endpoint,
            "--node-name",
            node,
            "--root",
            str(tmp_path),
            "--time-scale",
            str(SCALE),
            "--sync-period",
            "0.1",
            "--no-schedule",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for("running", lambda: strings(api, ns, "survivor").status == "Running", timeout=15)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert "stopped; pods keep running" in stderr
    uid = read(api, ns, "survivor")["metadata"]["uid"]
    assert [s.state for s in instances(cri_driver, uid, "app")] == [api_pb2.CONTAINER_RUNNING]
    for sb in sandboxes(cri_driver, uid):
        cri_driver.stop_sandbox(sb.id)
        cri_driver.remove_sandbox(sb.id)
    api.delete("pod", ns, "survivor")
