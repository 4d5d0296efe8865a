"""API-server JSON -> agent.domain.kubemodel."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from agent.api.errors import status_for
from agent.domain.kubemodel import (
    ApiPod,
    ContainerPort,
    ContainerRole,
    OwnerRef,
    VolumeMount,
    VolumeSpec,
)
from agent.errors import InvalidInput
from agent.kube.convert import event_from_dict, parse_time, pod_from_dict

FIXTURES = Path(__file__).parent / "fixtures" / "pods"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data


@pytest.fixture
def web() -> ApiPod:
    return pod_from_dict(load("web-with-sidecar.json"))


def test_metadata(web: ApiPod) -> None:
    assert web.namespace == "shop"
    assert web.name == "web-7c9d8b6f4d-x2lqp"
    assert web.uid == "9f1c3c7e-2b7a-4d64-8f0e-1a2b3c4d5e6f"
    assert web.resource_version == "1849203"
    assert web.labels == {"app.kubernetes.io/name": "web", "pod-template-hash": "7c9d8b6f4d"}
    assert web.annotations["kubectl.kubernetes.io/restartedAt"] == "2025-03-02T09:14:11Z"
    assert web.owners == (
        OwnerRef(
            kind="ReplicaSet",
            name="web-7c9d8b6f4d",
            uid="5b0a2f0e-8d7b-4e8a-9f43-0c1d2e3f4a5b",
            controller=True,
        ),
    )
    assert web.owner_kinds == ("ReplicaSet",)
    assert web.owner_names == ("web-7c9d8b6f4d",)
    assert web.controller is not None
    assert web.controller.kind == "ReplicaSet"
    assert web.creation_timestamp == datetime(2025, 3, 4, 8, 0, 5, tzinfo=UTC)
    assert web.deletion_timestamp is None
    assert not web.is_mirror


def test_spec_and_status_fields(web: ApiPod) -> None:
    assert web.node_name == "worker-2"
    assert web.restart_policy == "Always"
    assert web.priority == 0
    assert web.termination_grace_period_seconds == 30
    assert not web.host_network
    assert not web.share_process_namespace
    assert web.phase == "Running"
    assert web.reason is None
    assert web.qos_class == "Burstable"
    assert web.host_ip == "10.0.1.12"
    assert web.pod_ip == "10.244.2.17"
    assert web.pod_ips == ("10.244.2.17", "fd00:10:244:2::11")
    assert web.start_time == datetime(2025, 3, 4, 8, 0, 5, tzinfo=UTC)
    assert [c.type for c in web.conditions] == [
        "PodReadyToStartContainers",
        "Initialized",
        "Ready",
        "ContainersReady",
        "PodScheduled",
    ]
    ready = web.condition("Ready")
    assert ready is not None
    assert ready.is_true
    assert ready.last_transition_time == datetime(2025, 3, 4, 8, 3, 27, tzinfo=UTC)


def test_container_spec(web: ApiPod) -> None:
    spec = web.container_spec("web")
    assert spec is not None
    assert spec.image == "registry.example.com/shop/web:1.8.2"
    assert spec.command == ("/app/server",)
    assert spec.args == ("--listen=:8080", "--db=$(DB_HOST)")
    assert spec.restart_policy is None
    assert spec.ports == (
        ContainerPort(container_port=8080, name="http", protocol="TCP"),
        ContainerPort(container_port=9090, name="metrics", protocol="TCP"),
    )
    assert spec.volume_mounts[0] == VolumeMount(
        name="config", mount_path="/etc/web", read_only=True, sub_path=None
    )
    assert spec.limits == {"cpu": "500m", "memory": "256Mi"}
    assert spec.requests == {"cpu": "100m", "memory": "128Mi"}
    assert spec.working_dir == "/app"
    assert spec.termination_message_path == "/dev/termination-log"
    assert spec.liveness_probe == (
        "http-get http://:8080/healthz delay=10s timeout=1s period=10s #success=1 #failure=3"
    )
    assert spec.readiness_probe == (
        "tcp-socket :http delay=0s timeout=2s period=5s #success=1 #failure=3"
    )
    assert spec.startup_probe is None

    sidecar = web.container_spec("log-shipper")
    assert sidecar is not None
    assert sidecar.restart_policy == "Always"
    assert sidecar.is_restartable
    assert sidecar.startup_probe == (
        "exec [cat /tmp/ready] delay=0s timeout=1s period=1s #success=1 #failure=30"
    )
    assert sidecar.volume_mounts[0].sub_path == "current"
    assert web.container_spec("nope") is None


def test_env_values_are_never_stored(web: ApiPod) -> None:
    spec = web.container_spec("web")
    assert spec is not None
    assert spec.env_names == ("DB_HOST", "DB_PASSWORD", "API_TOKEN", "POD_IP")
    assert spec.env_from == ("configMap:web-config", "secret:s3-keys prefix=S3_")
    # Nothing derived from the pod (raw excluded) mentions a value.
    rendered = repr(web)
    for secret in ("s3cr3t-t0ken-do-not-leak", "db-primary.internal", "db-credentials"):
        assert secret not in rendered
    assert "raw" not in rendered


def test_container_statuses(web: ApiPod) -> None:
    status = web.status_for("web")
    assert status is not None
    assert status.container_id == (
        "containerd://4c1f0a7d2f3e9b8a6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b"
    )
    assert status.runtime_container_id == (
        "4c1f0a7d2f3e9b8a6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b"
    )
    assert status.image_id is not None
    assert status.image_id.endswith("e1f0")
    assert status.ready is True
    assert status.started is True
    assert status.restart_count == 1
    assert status.state.kind == "running"
    assert status.state.is_running
    assert status.state.started_at == datetime(2025, 3, 4, 8, 3, 12, tzinfo=UTC)
    last = status.last_state
    assert last.kind == "terminated"
    assert last.reason == "OOMKilled"
    assert last.exit_code == 137
    assert last.signal is None
    assert last.finished_at == datetime(2025, 3, 4, 8, 3, 11, tzinfo=UTC)
    assert last.container_id is not None
    assert last.container_id.startswith("containerd://aa11")

    init = web.status_for("wait-for-db")
    assert init is not None
    assert init.state.is_terminated
    assert init.state.exit_code == 0
    assert init.state.reason == "Completed"
    # Nine fraction digits from the runtime, cut to microseconds.
    assert init.state.started_at == datetime(2025, 3, 4, 8, 0, 8, 123456, tzinfo=UTC)
    # "lastState": {} is "no previous state".
    assert init.last_state.kind is None
    assert web.status_for("nope") is None


def test_roles(web: ApiPod) -> None:
    assert web.role_of("wait-for-db") is ContainerRole.INIT
    assert web.role_of("log-shipper") is ContainerRole.SIDECAR
    assert web.role_of("web") is ContainerRole.APP
    assert web.role_of("nope") is None
    assert str(ContainerRole.SIDECAR) == "sidecar"


def test_ephemeral_container_role() -> None:
    d = load("web-with-sidecar.json")
    d["spec"]["ephemeralContainers"] = [
        {
            "name": "debugger-x7k2q",
            "image": "busybox:1.36",
            "stdin": True,
            "tty": True,
            "targetContainerName": "web",
        }
    ]
    d["status"]["ephemeralContainerStatuses"] = [
        {
            "containerID": "containerd://feedface",
            "image": "docker.io/library/busybox:1.36",
            "imageID": "docker.io/library/busybox@sha256:11",
            "lastState": {},
            "name": "debugger-x7k2q",
            "ready": False,
            "restartCount": 0,
            "state": {"running": {"startedAt": "2025-03-04T09:00:00Z"}},
        }
    ]
    pod = pod_from_dict(d)
    assert pod.role_of("debugger-x7k2q") is ContainerRole.EPHEMERAL
    spec = pod.container_spec("debugger-x7k2q")
    assert spec is not None
    assert spec.target_container_name == "web"
    status = pod.status_for("debugger-x7k2q")
    assert status is not None
    assert status.runtime_container_id == "feedface"
    assert status.started is None


def test_volumes(web: ApiPod) -> None:
    assert web.volumes == (
        VolumeSpec(name="config", kind="configMap", detail="web-config"),
        VolumeSpec(name="cache", kind="emptyDir", detail="Memory"),
        VolumeSpec(name="logs", kind="emptyDir", detail=""),
        VolumeSpec(name="tls", kind="secret", detail="web-tls"),
        VolumeSpec(name="state", kind="hostPath", detail="/var/lib/web type=DirectoryOrCreate"),
        VolumeSpec(name="uploads", kind="persistentVolumeClaim", detail="web-uploads"),
        VolumeSpec(
            name="kube-api-access-7xk2p",
            kind="projected",
            detail="serviceAccountToken,configMap:kube-root-ca.crt,downwardAPI",
        ),
        VolumeSpec(name="legacy", kind="other", detail="iscsi"),
    )


def test_raw_is_kept_but_not_compared(web: ApiPod) -> None:
    d = load("web-with-sidecar.json")
    assert web.raw["metadata"]["generateName"] == "web-7c9d8b6f4d-"
    noisy = copy.deepcopy(d)
    noisy["metadata"]["managedFields"] = [{"manager": "kubelet"}]
    noisy["status"]["someFutureField"] = {"x": 1}
    other = pod_from_dict(noisy)
    assert other == web
    assert hash(other) == hash(web)


def test_pending_pod_without_container_statuses() -> None:
    pod = pod_from_dict(load("pending-unschedulable.json"))
    assert pod.phase == "Pending"
    assert pod.node_name is None
    assert pod.restart_policy == "Never"
    assert pod.container_statuses == ()
    assert pod.init_container_statuses == ()
    assert pod.status_for("report") is None
    assert pod.role_of("report") is ContainerRole.APP
    assert pod.pod_ip is None
    assert pod.pod_ips == ()
    cond = pod.condition("PodScheduled")
    assert cond is not None
    assert cond.reason == "Unschedulable"
    assert not cond.is_true
    assert pod.owner_kinds == ("Job",)
    spec = pod.container_spec("report")
    assert spec is not None
    assert spec.requests == {"cpu": "8", "memory": "64Gi"}


def test_pod_without_status_or_spec_extras() -> None:
    pod = pod_from_dict(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "bare", "namespace": "default"},
            "spec": {"containers": [{"name": "c", "image": "nginx"}]},
        }
    )
    assert pod.phase == ""
    assert pod.conditions == ()
    assert pod.container_statuses == ()
    assert pod.creation_timestamp is None
    assert pod.restart_policy == "Always"
    assert pod.labels == {}


def test_kind_may_be_absent() -> None:
    # Items of a PodList, and watch objects from some clients, carry no kind.
    pod = pod_from_dict({"metadata": {"name": "p", "namespace": "n"}, "status": None})
    assert pod.name == "p"


def test_mirror_pod() -> None:
    d = {
        "kind": "Pod",
        "metadata": {
            "name": "kube-apiserver-cp-1",
            "namespace": "kube-system",
            "annotations": {
                "kubernetes.io/config.hash": "b1c2d3",
                "kubernetes.io/config.mirror": "b1c2d3",
                "kubernetes.io/config.source": "file",
            },
            "ownerReferences": [
                {
                    "apiVersion": "v1",
                    "controller": True,
                    "kind": "Node",
                    "name": "cp-1",
                    "uid": "n1",
                }
            ],
        },
        "spec": {
            "hostNetwork": True,
            "priority": 2000001000,
            "containers": [{"name": "kube-apiserver", "image": "registry.k8s.io/kube-apiserver"}],
        },
    }
    pod = pod_from_dict(d)
    assert pod.is_mirror
    assert pod.host_network
    assert pod.priority == 2000001000
    assert pod.owner_kinds == ("Node",)


def test_terminating_pod_fields() -> None:
    d = load("web-with-sidecar.json")
    d["metadata"]["deletionTimestamp"] = "2025-03-04T09:30:00+01:00"
    d["metadata"]["deletionGracePeriodSeconds"] = 30
    pod = pod_from_dict(d)
    assert pod.deletion_timestamp == datetime(2025, 3, 4, 8, 30, tzinfo=UTC)
    assert pod.deletion_timestamp is not None
    assert pod.deletion_timestamp.tzinfo is UTC
    assert pod.deletion_grace_period_seconds == 30


def test_terminated_state_signal_and_default_exit_code() -> None:
    d = {
        "metadata": {"name": "p", "namespace": "n"},
        "spec": {"containers": [{"name": "c"}]},
        "status": {
            "containerStatuses": [
                {
                    "name": "c",
                    "ready": False,
                    "restartCount": 2,
                    "state": {"terminated": {"signal": 9, "startedAt": None}},
                    "lastState": {"waiting": {"reason": "ContainerCreating", "message": ""}},
                }
            ]
        },
    }
    status = pod_from_dict(d).status_for("c")
    assert status is not None
    assert status.state.kind == "terminated"
    assert status.state.signal == 9
    assert status.state.exit_code == 0
    assert status.state.reason is None
    assert status.last_state.kind == "waiting"
    assert status.last_state.reason == "ContainerCreating"
    assert status.last_state.message is None
    assert status.container_id is None
    assert status.runtime_container_id is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-03-04T08:00:05Z", datetime(2025, 3, 4, 8, 0, 5, tzinfo=UTC)),
        ("2025-03-04T08:00:05.5Z", datetime(2025, 3, 4, 8, 0, 5, 500000, tzinfo=UTC)),
        ("2025-03-04T08:00:05.123456Z", datetime(2025, 3, 4, 8, 0, 5, 123456, tzinfo=UTC)),
        ("2025-03-04T08:00:05.999999999Z", datetime(2025, 3, 4, 8, 0, 5, 999999, tzinfo=UTC)),
        ("2025-03-04T10:00:05+02:00", datetime(2025, 3, 4, 8, 0, 5, tzinfo=UTC)),
        ("2025-03-04T03:30:05.25-04:30", datetime(2025, 3, 4, 8, 0, 5, 250000, tzinfo=UTC)),
        ("2025-03-04t08:00:05z", datetime(2025, 3, 4, 8, 0, 5, tzinfo=UTC)),
        ("", None),
        (None, None),
    ],
)
def test_parse_time(text: str | None, expected: datetime | None) -> None:
    parsed = parse_time(text)
    assert parsed == expected
    if parsed is not None:
        assert parsed.utcoffset() == timedelta(0)


def test_parse_time_accepts_datetimes() -> None:
    aware = datetime(2025, 3, 4, 10, 0, tzinfo=timezone(timedelta(hours=2)))
    assert parse_time(aware) == datetime(2025, 3, 4, 8, 0, tzinfo=UTC)
    assert parse_time(datetime(2025, 3, 4, 8, 0)) == datetime(2025, 3, 4, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "text", ["2025-03-04", "2025-03-04T08:00:05", "yesterday", "2025-13-04T08:00:05Z", "1741075205"]
)
def test_parse_time_rejects(text: str) -> None:
    with pytest.raises(InvalidInput):
        parse_time(text)


@pytest.mark.parametrize(
    ("doc", "fragment"),
    [
        ({"kind": "Deployment", "metadata": {"name": "web"}}, "Deployment"),
        ({"kind": "PodList", "items": []}, "PodList"),
        ({"kind": "Pod", "metadata": {"namespace": "x"}}, "metadata.name"),
        ({"spec": {"containers": []}}, "metadata.name"),
        ({"metadata": {"name": ""}}, "metadata.name"),
        ({"metadata": {"name": "p"}, "spec": {"containers": "nginx"}}, "spec.containers"),
        ({"metadata": {"name": "p"}, "spec": {"containers": [{"image": "x"}]}}, "no name"),
        ({"metadata": {"name": "p", "labels": ["a"]}}, "metadata.labels"),
        (
            {
                "metadata": {"name": "p"},
                "status": {"containerStatuses": [{"name": "c", "restartCount": "3"}]},
            },
            "status.containerStatuses[0].restartCount",
        ),
        ({"metadata": {"name": "p", "creationTimestamp": "last week"}}, "creationTimestamp"),
    ],
)
def test_bad_pod_documents(doc: dict[str, Any], fragment: str) -> None:
    with pytest.raises(InvalidInput) as info:
        pod_from_dict(doc)
    assert fragment in info.value.message
    assert status_for(info.value) == 422


def test_not_a_mapping() -> None:
    with pytest.raises(InvalidInput):
        pod_from_dict(["not", "a", "pod"])  # type: ignore[arg-type]


def test_event() -> None:
    event = event_from_dict(load("event-backoff.json"))
    assert event.namespace == "shop"
    assert event.name == "web-7c9d8b6f4d-x2lqp.182a1b2c3d4e5f60"
    assert event.uid == "31f0e9d8-c7b6-4a59-8e7d-6c5b4a3f2e1d"
    assert event.involved_kind == "Pod"
    assert event.involved_name == "web-7c9d8b6f4d-x2lqp"
    assert event.involved_namespace == "shop"
    assert event.involved_uid == "9f1c3c7e-2b7a-4d64-8f0e-1a2b3c4d5e6f"
    assert event.involved_field_path == "spec.containers{web}"
    assert event.reason == "BackOff"
    assert event.type == "Warning"
    assert event.count == 27
    assert event.first_timestamp == datetime(2025, 3, 4, 8, 1, 2, tzinfo=UTC)
    assert event.last_timestamp == datetime(2025, 3, 4, 8, 9, 44, tzinfo=UTC)
    assert event.event_time is None
    assert event.source_component == "kubelet"
    assert event.source_host == "worker-2"
    assert event.reporting_component == "kubelet"
    assert event.last_seen == event.last_timestamp
    assert event.message is not None
    assert event.message.startswith("Back-off restarting")


def test_event_from_events_api_writer() -> None:
    # Written through events.k8s.io/v1 and read back via core/v1: no source,
    # no count/first/last, a MicroTime eventTime and a series instead.
    event = event_from_dict(
        {
            "kind": "Event",
            "metadata": {"name": "web.1", "namespace": "shop"},
            "involvedObject": {"kind": "Pod", "name": "web", "uid": "u1"},
            "eventTime": "2025-03-04T08:00:00.123456Z",
            "series": {"count": 4, "lastObservedTime": "2025-03-04T08:05:00.000001Z"},
            "reason": "FailedScheduling",
            "reportingComponent": "default-scheduler",
            "reportingInstance": "default-scheduler-cp-1",
            "type": "Warning",
        }
    )
    assert event.count == 4
    assert event.source_component is None
    assert event.involved_namespace == "shop"
    assert event.event_time == datetime(2025, 3, 4, 8, 0, 0, 123456, tzinfo=UTC)
    assert event.last_seen == datetime(2025, 3, 4, 8, 5, 0, 1, tzinfo=UTC)


def test_bad_event_documents() -> None:
    with pytest.raises(InvalidInput, match="Pod"):
        event_from_dict(load("web-with-sidecar.json"))
    with pytest.raises(InvalidInput, match=r"metadata\.name"):
        event_from_dict({"kind": "Event", "metadata": {}})
