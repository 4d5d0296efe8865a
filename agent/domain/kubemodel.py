"""The agent's own types for objects served by the Kubernetes API server.

``agent.kube.convert`` builds these from the JSON the API server serves (what
a watch delivers and what ``kubectl get -o json`` prints); nothing here knows
about the kubernetes client library. Only what troubleshooting needs is kept;
the original document rides along in ``raw`` for anything else.

Domain: imports the standard library only.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

MIRROR_POD_ANNOTATION = "kubernetes.io/config.mirror"

StateKind = Literal["waiting", "running", "terminated"]


class ContainerRole(enum.StrEnum):
    """What part a container plays in its pod."""

    INIT = "init"
    # An init container with restartPolicy Always (a native sidecar, KEP-753):
    # it keeps running next to the app containers instead of completing.
    SIDECAR = "sidecar"
    APP = "app"
    EPHEMERAL = "ephemeral"


@dataclass(frozen=True, slots=True)
class ContainerPort:
    """One declared port of a container."""

    container_port: int
    name: str | None = None
    protocol: str = "TCP"


@dataclass(frozen=True, slots=True)
class VolumeMount:
    """Where a container mounts one of the pod's volumes."""

    name: str
    mount_path: str
    read_only: bool = False
    sub_path: str | None = None


@dataclass(frozen=True, slots=True)
class ContainerSpec:
    """What the pod's spec says about one container (the parts troubleshooting reads)."""

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
        """Whether an init container with this spec is a sidecar (restartPolicy Always)."""
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
        """Whether this is a waiting state."""
        return self.kind == "waiting"

    @property
    def is_running(self) -> bool:
        """Whether this is a running state."""
        return self.kind == "running"

    @property
    def is_terminated(self) -> bool:
        """Whether this is a terminated state."""
        return self.kind == "terminated"


NO_STATE = ContainerStateInfo()


@dataclass(frozen=True, slots=True)
class ContainerStatus:
    """What kubelet last reported about one container."""

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
    """One of the pod's conditions (PodScheduled, Initialized, Ready...)."""

    type: str
    status: str  # "True", "False" or "Unknown", as the API spells them
    reason: str | None = None
    message: str | None = None
    last_transition_time: datetime | None = None

    @property
    def is_true(self) -> bool:
        """Whether the condition's status is "True"."""
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
    """One volume of the pod and what it points at."""

    name: str
    kind: VolumeKind
    # What the volume points at: the ConfigMap/Secret/claim name, the host
    # path, the CSI driver, the projected sources; for "other" the API's key
    # for the source type.
    detail: str = ""


@dataclass(frozen=True, slots=True)
class OwnerRef:
    """One owner reference of the pod (its ReplicaSet, Job, ...)."""

    kind: str
    name: str
    uid: str = ""
    controller: bool = False


# What a fragment may lack that changes how the rest is read (``PodGaps.missing``).
GAP_SPEC = "spec"  # no container specs at all: containers come from the statuses
GAP_RESTART_POLICY = "spec.restartPolicy"
GAP_SIDECARS = "spec.initContainers[].restartPolicy"  # which init containers are sidecars
GAP_PHASE = "status.phase"


@dataclass(frozen=True, slots=True)
class PodGaps:
    """What the document a pod was read from lacks, and what was inferred in its place.

    A pod served by the API server has no gaps (``ApiPod.gaps`` is None); a
    pasted fragment (a ``status:`` block, ``kubectl describe`` text) has.
    ``missing`` holds field paths; ``inferred`` says, one sentence each, what
    was filled in and from what.
    """

    missing: tuple[str, ...] = ()
    inferred: tuple[str, ...] = ()

    def lacks(self, path: str) -> bool:
        """Whether the document had nothing at ``path``."""
        return path in self.missing


@dataclass(frozen=True, slots=True)
class ApiPod:
    """A pod as the API server serves it, or as much of one as a fragment held."""

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
    # None for a whole object; what was missing for a pod read from a fragment.
    gaps: PodGaps | None = None

    @property
    def partial(self) -> bool:
        """Whether this pod was read from a fragment rather than a whole object."""
        return self.gaps is not None

    @property
    def spec_known(self) -> bool:
        """Whether the containers come from a spec (False: taken from the statuses)."""
        return self.gaps is None or not self.gaps.lacks(GAP_SPEC)

    @property
    def owner_kinds(self) -> tuple[str, ...]:
        """The kinds of the pod's owners."""
        return tuple(o.kind for o in self.owners)

    @property
    def owner_names(self) -> tuple[str, ...]:
        """The names of the pod's owners."""
        return tuple(o.name for o in self.owners)

    @property
    def controller(self) -> OwnerRef | None:
        """The owner that controls the pod, if any."""
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
        """The pod's condition of type ``type_``, if it has one."""
        for cond in self.conditions:
            if cond.type == type_:
                return cond
        return None


@dataclass(frozen=True, slots=True)
class ApiEvent:
    """A core/v1 Event (events.k8s.io ones are brought to this shape)."""

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


# --------------------------------------------------------------------------
# Pods read from fragments
# --------------------------------------------------------------------------

_TERMINAL_PHASES = ("Succeeded", "Failed")
# Waiting reasons an app container shows before it has ever started in this
# round of initialisation.
_NOT_STARTED_REASONS = frozenset({None, "PodInitializing", "ContainerCreating"})


def _specs_from(statuses: tuple[ContainerStatus, ...]) -> tuple[ContainerSpec, ...]:
    return tuple(ContainerSpec(name=s.name, image=s.image) for s in statuses)


def _app_has_started(statuses: tuple[ContainerStatus, ...]) -> bool:
    """Whether an app container started after the init containers (not a leftover of before).

    A recreated sandbox reruns the init containers while the app containers
    keep their old ``lastState``; those wait with PodInitializing, so only a
    current state counts.
    """
    return any(_activity(s)[0] for s in statuses)


def _activity(status: ContainerStatus) -> tuple[bool, datetime | None]:
    """Whether the container has run in its current round, and when it last did (if known)."""
    state = status.state
    if state.is_running:
        return True, state.started_at
    if state.is_terminated:
        return True, state.finished_at or state.started_at
    if state.is_waiting and state.reason not in _NOT_STARTED_REASONS:
        last = status.last_state
        return True, last.finished_at if last.is_terminated else None
    return False, None


def _since(status: ContainerStatus) -> datetime | None:
    state, last = status.state, status.last_state
    if state.is_running:
        return state.started_at
    return last.finished_at if last.is_terminated else None


def _ran_after(statuses: Iterable[ContainerStatus], since: datetime | None) -> bool:
    """Whether one of ``statuses`` ran after ``since`` (or at an unknown time)."""
    for s in statuses:
        ran, when = _activity(s)
        if ran and (since is None or when is None or _utc(when) >= _utc(since)):
            return True
    return False


def _utc(t: datetime) -> datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def _infer_sidecars(
    pod: ApiPod, init_specs: tuple[ContainerSpec, ...]
) -> tuple[tuple[ContainerSpec, ...], list[str]]:
    """Init specs with ``restartPolicy: Always`` set where the statuses show a sidecar.

    A plain init container must exit 0 before anything after it starts, so
    one that has not completed while a later init container or an app
    container ran since it (re)started can only be a sidecar (KEP-753).
    Kubelet also reports a running init container ready only when it is a
    sidecar. Containers that ran before it restarted (a recreated sandbox
    reruns every init container) are no evidence.
    """
    statuses = list(pod.init_container_statuses)
    by_name = {s.name: i for i, s in enumerate(statuses)}
    initialized = any(c.type == "Initialized" and c.is_true for c in pod.conditions)
    out: list[ContainerSpec] = []
    sidecars: list[str] = []
    for spec in init_specs:
        index = by_name.get(spec.name)
        if spec.restart_policy is not None or index is None:
            out.append(spec)
            continue
        status = statuses[index]
        state = status.state
        if state.is_terminated and state.exit_code == 0:
            out.append(spec)
            continue
        later = [*statuses[index + 1 :], *pod.container_statuses]
        if (state.is_running and status.ready) or initialized or _ran_after(later, _since(status)):
            out.append(replace(spec, restart_policy="Always"))
            sidecars.append(spec.name)
        else:
            out.append(spec)
    notes: list[str] = []
    if sidecars:
        notes.append(
            f"init container{'s' if len(sidecars) > 1 else ''} {', '.join(sidecars)} taken as "
            "sidecar (restartPolicy Always): running ready, or not completed while the "
            "containers after it ran"
        )
    return tuple(out), notes


def _infer_phase(pod: ApiPod) -> tuple[str, str]:
    started = _app_has_started(pod.container_statuses) or any(
        s.state.is_running or s.state.is_terminated or s.last_state.is_terminated
        for s in pod.init_container_statuses
    )
    if started:
        return "Running", "phase unknown, taken as Running: a container has started"
    return "Pending", "phase unknown, taken as Pending: no container has started"


# Workload controllers whose pod template the API accepts only with Always.
_ALWAYS_CONTROLLERS = frozenset(
    {"ReplicaSet", "StatefulSet", "DaemonSet", "ReplicationController", "Deployment"}
)


def _infer_restart_policy(pod: ApiPod, phase: str) -> tuple[str, str]:
    controller = pod.controller
    if controller is not None and controller.kind in _ALWAYS_CONTROLLERS:
        return (
            "Always",
            f"restartPolicy unknown, taken as Always: a {controller.kind} accepts no other",
        )
    if phase in _TERMINAL_PHASES:
        return (
            "Never",
            f"restartPolicy unknown, taken as Never: phase {phase} is never reached under "
            "Always, and nothing restarts in a finished pod",
        )
    ended = [s.state for s in pod.container_statuses if s.state.is_terminated]
    completed = [t for t in ended if t.exit_code == 0 and t.reason != "OOMKilled"]
    failed = [t for t in ended if t not in completed]
    if completed:
        # Under Always kubelet restarts a completed container at once, so one
        # left terminated with exit 0 is not restarted at all.
        policy = "Never" if failed else "OnFailure"
        return (
            policy,
            f"restartPolicy unknown, taken as {policy}: a container that completed with exit "
            "0 is left terminated" + (", and one that failed too" if failed else ""),
        )
    if controller is not None and controller.kind == "Job":
        return (
            "OnFailure",
            "restartPolicy unknown, taken as OnFailure: a Job accepts only OnFailure or Never",
        )
    return "Always", "restartPolicy unknown, taken as Always (the default)"


def fill_gaps(pod: ApiPod, missing: Iterable[str], notes: Iterable[str] = ()) -> ApiPod:
    """``pod`` read from a fragment that lacked ``missing``, with what can be inferred filled in.

    Without a spec the containers come from the statuses (name and image);
    where it cannot be read which init containers are sidecars, which phase
    the pod is in, or which restart policy applies, they are inferred from
    the container states, and every inference is named in ``gaps.inferred``
    after ``notes`` (what the reader of the fragment already knows it filled).
    """
    gaps = tuple(dict.fromkeys(missing))
    inferred = list(notes)
    init_specs, app_specs, eph_specs = (
        pod.init_containers,
        pod.containers,
        pod.ephemeral_containers,
    )
    if GAP_SPEC in gaps:
        init_specs = _specs_from(pod.init_container_statuses)
        app_specs = _specs_from(pod.container_statuses)
        eph_specs = _specs_from(pod.ephemeral_container_statuses)
        parts = [f"app {', '.join(s.name for s in app_specs)}"] if app_specs else []
        if init_specs:
            parts.append(f"init {', '.join(s.name for s in init_specs)}")
        inferred.append(
            "no spec: containers taken from the statuses"
            + (f" ({'; '.join(parts)})" if parts else " (there are none)")
        )
    if GAP_SPEC in gaps or GAP_SIDECARS in gaps:
        init_specs, sidecar_notes = _infer_sidecars(pod, init_specs)
        inferred.extend(sidecar_notes)
    phase = pod.phase
    if not phase and (GAP_PHASE in gaps or GAP_SPEC in gaps):
        phase, note = _infer_phase(pod)
        inferred.append(note)
    restart_policy = pod.restart_policy
    if GAP_SPEC in gaps or GAP_RESTART_POLICY in gaps:
        restart_policy, note = _infer_restart_policy(pod, phase)
        inferred.append(note)
    return replace(
        pod,
        phase=phase,
        restart_policy=restart_policy,
        init_containers=init_specs,
        containers=app_specs,
        ephemeral_containers=eph_specs,
        gaps=PodGaps(missing=gaps, inferred=tuple(inferred)),
    )
