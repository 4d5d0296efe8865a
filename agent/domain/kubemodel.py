"""The agent's own types for objects served by the Kubernetes API server.

``agent.kube.convert`` builds these from the JSON the API server serves (what
a watch delivers and what ``kubectl get -o json`` prints); nothing here knows
about the kubernetes client library. Only what troubleshooting needs is kept;
the original document rides along in ``raw`` for anything else.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

MIRROR_POD_ANNOTATION = "kubernetes.io/config.mirror"

StateKind = Literal["waiting", "running", "terminated"]


class ContainerRole(enum.StrEnum):
    INIT = "init"
    # An init container with restartPolicy Always (a native sidecar, KEP-753):
    # it keeps running next to the app containers instead of completing.
    SIDECAR = "sidecar"
    APP = "app"
    EPHEMERAL = "ephemeral"


@dataclass(frozen=True, slots=True)
class ContainerPort:
    container_port: int
    name: str | None = None
    protocol: str = "TCP"


@dataclass(frozen=True, slots=True)
class VolumeMount:
    name: str
    mount_path: str
    read_only: bool = False
    sub_path: str | None = None


@dataclass(frozen=True, slots=True)
class ContainerSpec:
    name: str
    image: str | None = None
    command: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    # Container-level policy; only "Always" on an init container is allowed
    # today, and it is what makes that init container a sidecar.
    restart_policy: str | None = None
    ports: tuple[ContainerPort, ...] = ()
    volume_mounts: tuple[VolumeMount, ...] = ()
    # Names only: values can hold credentials and must never reach a report.
    env_names: tuple[str, ...] = ()
    # envFrom sources as "configMap:<name>" / "secret:<name>", prefix included
    # as "<prefix>" when set.
    env_from: tuple[str, ...] = ()
    # None when the probe is absent; otherwise a one-line description in the
    # style of ``kubectl describe`` ("http-get :8080/healthz delay=0s ...").
    readiness_probe: str | None = None
    liveness_probe: str | None = None
    startup_probe: str | None = None
    limits: dict[str, str] = field(default_factory=dict, hash=False, compare=True)
    requests: dict[str, str] = field(default_factory=dict, hash=False, compare=True)
    working_dir: str | None = None
    termination_message_path: str | None = None
    # Only for ephemeral containers: the container whose namespaces it joins.
    target_container_name: str | None = None

    @property
    def is_restartable(self) -> bool:
        return self.restart_policy == "Always"


@dataclass(frozen=True, slots=True)
class ContainerStateInfo:
    """One of a container's ``state``/``lastState``: waiting, running, terminated or none.

    ``exit_code`` is set only for terminated; ``signal`` only when the runtime
    reported one.
    """

    kind: StateKind | None = None
    reason: str | None = None
    message: str | None = None
    exit_code: int | None = None
    signal: int | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    container_id: str | None = None

    @property
    def is_waiting(self) -> bool:
        return self.kind == "waiting"

    @property
    def is_running(self) -> bool:
        return self.kind == "running"

    @property
    def is_terminated(self) -> bool:
        return self.kind == "terminated"


NO_STATE = ContainerStateInfo()


@dataclass(frozen=True, slots=True)
class ContainerStatus:
    name: str
    container_id: str | None = None  # as the API has it: "containerd://<id>"
    runtime_container_id: str | None = None  # the bare ID the runtime knows
    image: str | None = None
    image_id: str | None = None
    ready: bool = False
    # None when the kubelet did not report it (older kubelets, or before the
    # first start); kubectl treats None like False.
    started: bool | None = None
    restart_count: int = 0
    state: ContainerStateInfo = NO_STATE
    last_state: ContainerStateInfo = NO_STATE


@dataclass(frozen=True, slots=True)
class PodCondition:
    type: str
    status: str  # "True", "False" or "Unknown", as the API spells them
    reason: str | None = None
    message: str | None = None
    last_transition_time: datetime | None = None

    @property
    def is_true(self) -> bool:
        return self.status == "True"


VolumeKind = Literal[
    "emptyDir",
    "configMap",
    "secret",
    "hostPath",
    "persistentVolumeClaim",
    "projected",
    "downwardAPI",
    "csi",
    "ephemeral",
    "nfs",
    "other",
]


@dataclass(frozen=True, slots=True)
class VolumeSpec:
    name: str
    kind: VolumeKind
    # What the volume points at: the ConfigMap/Secret/claim name, the host
    # path, the CSI driver, the projected sources; for "other" the API's key
    # for the source type.
    detail: str = ""


@dataclass(frozen=True, slots=True)
class OwnerRef:
    kind: str
    name: str
    uid: str = ""
    controller: bool = False


@dataclass(frozen=True, slots=True)
class ApiPod:
    namespace: str
    name: str
    uid: str = ""
    resource_version: str = ""
    node_name: str | None = None
    phase: str = ""
    reason: str | None = None
    message: str | None = None
    labels: dict[str, str] = field(default_factory=dict, hash=False, compare=True)
    annotations: dict[str, str] = field(default_factory=dict, hash=False, compare=True)
    owners: tuple[OwnerRef, ...] = ()
    creation_timestamp: datetime | None = None
    deletion_timestamp: datetime | None = None
    deletion_grace_period_seconds: int | None = None
    start_time: datetime | None = None
    restart_policy: str = "Always"
    share_process_namespace: bool = False
    host_network: bool = False
    priority: int | None = None
    qos_class: str | None = None
    host_ip: str | None = None
    pod_ip: str | None = None
    pod_ips: tuple[str, ...] = ()
    termination_grace_period_seconds: int | None = None
    conditions: tuple[PodCondition, ...] = ()
    init_containers: tuple[ContainerSpec, ...] = ()
    containers: tuple[ContainerSpec, ...] = ()
    ephemeral_containers: tuple[ContainerSpec, ...] = ()
    init_container_statuses: tuple[ContainerStatus, ...] = ()
    container_statuses: tuple[ContainerStatus, ...] = ()
    ephemeral_container_statuses: tuple[ContainerStatus, ...] = ()
    volumes: tuple[VolumeSpec, ...] = ()
    is_mirror: bool = False
    # The document this was built from, kept as evidence and for fields not
    # modelled here. Never compared: two reads of one pod state are equal
    # even if the server added fields this model ignores.
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)

    @property
    def owner_kinds(self) -> tuple[str, ...]:
        return tuple(o.kind for o in self.owners)

    @property
    def owner_names(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.owners)

    @property
    def controller(self) -> OwnerRef | None:
        for owner in self.owners:
            if owner.controller:
                return owner
        return None

    def container_spec(self, name: str) -> ContainerSpec | None:
        """The spec of the init, app or ephemeral container called ``name``."""
        for group in (self.init_containers, self.containers, self.ephemeral_containers):
            for spec in group:
                if spec.name == name:
                    return spec
        return None

    def status_for(self, name: str) -> ContainerStatus | None:
        """The status of the init, app or ephemeral container called ``name``."""
        for group in (
            self.init_container_statuses,
            self.container_statuses,
            self.ephemeral_container_statuses,
        ):
            for status in group:
                if status.name == name:
                    return status
        return None

    def role_of(self, name: str) -> ContainerRole | None:
        """What part ``name`` plays in the pod; None when the spec has no such container."""
        for spec in self.init_containers:
            if spec.name == name:
                return ContainerRole.SIDECAR if spec.is_restartable else ContainerRole.INIT
        if any(spec.name == name for spec in self.containers):
            return ContainerRole.APP
        if any(spec.name == name for spec in self.ephemeral_containers):
            return ContainerRole.EPHEMERAL
        return None

    def condition(self, type_: str) -> PodCondition | None:
        for cond in self.conditions:
            if cond.type == type_:
                return cond
        return None


@dataclass(frozen=True, slots=True)
class ApiEvent:
    namespace: str
    name: str
    uid: str = ""
    involved_kind: str = ""
    involved_name: str = ""
    involved_namespace: str = ""
    involved_uid: str = ""
    # e.g. "spec.containers{app}": which container of the pod the event is about.
    involved_field_path: str | None = None
    reason: str | None = None
    message: str | None = None
    type: str | None = None  # "Normal" or "Warning"
    count: int | None = None
    first_timestamp: datetime | None = None
    last_timestamp: datetime | None = None
    event_time: datetime | None = None
    series_last_observed: datetime | None = None
    source_component: str | None = None
    source_host: str | None = None
    # events.k8s.io/v1 writers fill these instead of ``source``.
    reporting_component: str | None = None
    reporting_instance: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)

    @property
    def last_seen(self) -> datetime | None:
        """The newest of the timestamps the event carries (writers fill different ones)."""
        stamps = [
            t
            for t in (
                self.series_last_observed,
                self.last_timestamp,
                self.event_time,
                self.first_timestamp,
            )
            if t is not None
        ]
        return max(stamps) if stamps else None
