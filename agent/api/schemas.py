"""Response models: the HTTP contract, as published in the OpenAPI document.

Built from the agent's own types with ``from_*`` constructors, so routes stay
thin and the wire shape is decided in one place.

Part of the HTTP edge: imports ``redact``, the domain model, severities and pydantic only.
"""

from __future__ import annotations

from datetime import datetime
from typing import Generic, Literal, TypeVar

from pydantic import BaseModel, Field

from agent.api.redact import redact_cmdline, visible_annotations
from agent.domain.model import (
    Container,
    Mount,
    NamespacePath,
    ProcessInfo,
    ProcessNode,
    Sandbox,
)
from agent.domain.severity import Severity

T = TypeVar("T")


class ItemList(BaseModel, Generic[T]):
    """The envelope of every list answer: ``{"items": [...]}``."""

    items: list[T]


class ErrorBody(BaseModel):
    """Every error answer: a stable kind, a message for a person, and details where known."""

    error: str = Field(description="stable machine-readable error kind")
    message: str = Field(description="what is wrong, for a person")
    detail: dict[str, object] | None = None


class NamespaceItem(BaseModel):
    """One Linux namespace from the OCI runtime spec; a null path means one of its own."""

    type: str
    path: str | None


class MountItem(BaseModel):
    """One mount of a container: where it appears inside, and what the runtime put there."""

    destination: str
    source: str
    type: str | None
    readonly: bool


class ProcessItem(BaseModel):
    """One host process: identity, command line, resources, namespaces and cgroup."""

    pid: int
    ppid: int
    name: str
    cmdline: list[str] = Field(
        description="secret-looking values shown as ***, unless asked for with "
        "?full_cmdline=true (needs get nodes/podlens-logs)"
    )
    cmdline_redacted: bool = Field(
        default=False, description="whether values were masked in cmdline"
    )
    state: str
    started_at: datetime
    user: str | None
    rss_bytes: int
    cpu_user_seconds: float
    cpu_system_seconds: float
    namespaces: dict[str, int]
    cgroup: list[str]
    container_id: str | None

    @classmethod
    def from_info(cls, p: ProcessInfo, *, full_cmdline: bool = False) -> ProcessItem:
        """The process on the wire, its command line redacted unless ``full_cmdline``."""
        cmdline, redacted = (list(p.cmdline), False) if full_cmdline else redact_cmdline(p.cmdline)
        return cls(
            pid=p.pid,
            ppid=p.ppid,
            name=p.name,
            cmdline=cmdline,
            cmdline_redacted=redacted,
            state=p.state,
            started_at=p.started_at,
            user=p.user,
            rss_bytes=p.rss_bytes,
            cpu_user_seconds=p.cpu_user_seconds,
            cpu_system_seconds=p.cpu_system_seconds,
            namespaces=dict(p.namespaces),
            cgroup=list(p.cgroup),
            container_id=p.container_id,
        )


class ProcessTreeItem(BaseModel):
    """A process and its descendants, each with its command line and memory."""

    pid: int
    name: str
    cmdline: list[str]
    state: str
    rss_bytes: int
    children: list[ProcessTreeItem] = []

    @classmethod
    def from_node(cls, node: ProcessNode, *, full_cmdline: bool = False) -> ProcessTreeItem:
        """The tree on the wire, command lines redacted unless ``full_cmdline``."""
        p = node.process
        cmdline = list(p.cmdline) if full_cmdline else redact_cmdline(p.cmdline)[0]
        return cls(
            pid=p.pid,
            name=p.name,
            cmdline=cmdline,
            state=p.state,
            rss_bytes=p.rss_bytes,
            children=[cls.from_node(child, full_cmdline=full_cmdline) for child in node.children],
        )


def _namespaces(items: tuple[NamespacePath, ...]) -> list[NamespaceItem]:
    return [NamespaceItem(type=n.type, path=n.path) for n in items]


def _mounts(items: tuple[Mount, ...]) -> list[MountItem]:
    return [
        MountItem(destination=m.destination, source=m.source, type=m.type, readonly=m.readonly)
        for m in items
    ]


class ContainerItem(BaseModel):
    """One container attempt as the runtime holds it, with its pod and its host PID."""

    id: str
    name: str
    pod: str
    namespace: str
    pod_uid: str
    sandbox_id: str
    state: Literal["created", "running", "exited", "unknown"]
    attempt: int
    pid: int | None = Field(description="host PID of the main process; null when not running")
    exit_code: int | None
    reason: str | None
    message: str | None
    image: str
    image_ref: str
    created_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    log_path: str | None

    @classmethod
    def from_container(cls, c: Container) -> ContainerItem:
        """The container on the wire, without labels, namespaces or mounts."""
        return cls(
            id=c.id,
            name=c.name,
            pod=c.pod.name,
            namespace=c.pod.namespace,
            pod_uid=c.pod.uid,
            sandbox_id=c.sandbox_id,
            state=c.state.value,
            attempt=c.attempt,
            pid=c.pid,
            exit_code=c.exit_code,
            reason=c.reason,
            message=c.message,
            image=c.image,
            image_ref=c.image_ref,
            created_at=c.created_at,
            started_at=c.started_at,
            finished_at=c.finished_at,
            log_path=c.log_path,
        )


class ContainerDetail(ContainerItem):
    """One container in full: labels, annotations, namespaces, mounts, process and tree."""

    labels: dict[str, str]
    annotations: dict[str, str]
    namespaces: list[NamespaceItem]
    mounts: list[MountItem]
    process: ProcessItem | None = Field(
        description="the main process as the host sees it; null when not running or gone"
    )
    process_tree: ProcessTreeItem | None

    @classmethod
    def build(
        cls,
        c: Container,
        process: ProcessInfo | None,
        tree: ProcessNode | None,
        *,
        full_cmdline: bool = False,
    ) -> ContainerDetail:
        """The detail on the wire, without kubectl's last-applied spec; commands redacted."""
        base = ContainerItem.from_container(c).model_dump()
        return cls(
            **base,
            labels=dict(c.labels),
            annotations=visible_annotations(c.annotations),
            namespaces=_namespaces(c.namespaces),
            mounts=_mounts(c.mounts),
            process=ProcessItem.from_info(process, full_cmdline=full_cmdline) if process else None,
            process_tree=(
                ProcessTreeItem.from_node(tree, full_cmdline=full_cmdline) if tree else None
            ),
        )


class SandboxItem(BaseModel):
    """One pod sandbox as the runtime holds it, with its pause PID and network."""

    id: str
    pod: str
    namespace: str
    pod_uid: str
    state: Literal["ready", "notready"]
    attempt: int
    pause_pid: int | None = Field(description="host PID of the pause (infra) process")
    pause_pid_note: str | None = Field(
        description="why pause_pid is null, when that is normal for the runtime"
    )
    network_namespace: str | None
    network_mode: str | None = Field(description="pod, node or container")
    ip: str | None
    runtime_handler: str
    created_at: datetime | None
    container_count: int

    @classmethod
    def from_sandbox(cls, s: Sandbox, container_count: int) -> SandboxItem:
        """The sandbox on the wire; a not-ready one without a pause PID says why."""
        note = s.pause_pid_note
        if s.pause_pid is None and note is None and s.state.value == "notready":
            note = "sandbox is not ready: its pause process has exited"
        return cls(
            id=s.id,
            pod=s.pod.name,
            namespace=s.pod.namespace,
            pod_uid=s.pod.uid,
            state=s.state.value,
            attempt=s.attempt,
            pause_pid=s.pause_pid,
            pause_pid_note=note,
            network_namespace=s.network_namespace,
            network_mode=s.network_mode,
            ip=s.ip,
            runtime_handler=s.runtime_handler,
            created_at=s.created_at,
            container_count=container_count,
        )


class SandboxDetail(SandboxItem):
    """One sandbox in full: labels, annotations, namespaces, pause process, containers."""

    labels: dict[str, str]
    annotations: dict[str, str]
    namespaces: list[NamespaceItem]
    pause_process: ProcessItem | None
    containers: list[ContainerItem]

    @classmethod
    def build(
        cls,
        s: Sandbox,
        containers: list[Container],
        pause: ProcessInfo | None,
        *,
        full_cmdline: bool = False,
    ) -> SandboxDetail:
        """The detail on the wire, without kubectl's last-applied spec; commands redacted."""
        base = SandboxItem.from_sandbox(s, len(containers)).model_dump()
        return cls(
            **base,
            labels=dict(s.labels),
            annotations=visible_annotations(s.annotations),
            namespaces=_namespaces(s.namespaces),
            pause_process=(
                ProcessItem.from_info(pause, full_cmdline=full_cmdline) if pause else None
            ),
            containers=[ContainerItem.from_container(c) for c in containers],
        )


class ProcessLookup(BaseModel):
    """A host PID traced to its container (or sandbox, for a pause) and pod."""

    process: ProcessItem
    matched_by: Literal["cgroup", "ancestor", "pause"] = Field(
        description="how the PID was tied to its container"
    )
    container: ContainerItem | None = Field(description="null when the PID is a pause process")
    sandbox: SandboxItem | None
    pod: str
    namespace: str
    pod_uid: str


class RuntimeSection(BaseModel):
    """The container runtime: whether it is reachable, since when, and what it is."""

    connected: bool
    since: datetime
    reason: str | None
    endpoint: str | None
    name: str | None
    version: str | None
    cri_api_version: str | None


class Capabilities(BaseModel):
    """How the agent follows this node: events or relists, pidfds, pause processes."""

    change_source: Literal["events", "relist"] = Field(
        description="how the agent learns of changes besides pidfd exit notifications"
    )
    change_source_reason: str | None = Field(
        default=None,
        description="why the agent relists instead of following the runtime's container "
        "events (null while it follows them)",
    )
    relist_interval_seconds: float = Field(
        description="seconds between relists now; with events, only the safety net"
    )
    event_stream_breaks: int = Field(
        default=0, description="times the container event stream broke and was resubscribed"
    )
    events_received: int = 0
    optional_calls: dict[str, str] = Field(
        default_factory=dict,
        description="what the runtime answered to optional CRI calls; 'unimplemented' is "
        "normal for some runtimes, not an error",
    )
    pidfd_exit_notifications: bool
    pidfd_unavailable: str | None = Field(
        default=None, description="why pidfds cannot be used here (kills are then refused)"
    )
    pause_processes: Literal["always", "per-pod", "unknown"] = Field(
        description="containerd runs one per sandbox; CRI-O only for some pods"
    )


class Counts(BaseModel):
    """How many sandboxes, containers and pods the node holds, by state."""

    sandboxes: int
    sandboxes_ready: int
    containers: int
    containers_running: int
    containers_exited: int
    pods: int


class ApiSection(BaseModel):
    """The API server's pod watch: its state, since when, and the pods bound to this node."""

    state: Literal["ok", "unavailable", "disabled"]
    detail: str = Field(description='"ok", or why not and since when')
    since: datetime
    pods_on_node: int


class NodeInfo(BaseModel):
    """What this node is: its runtime, the API server's view, capabilities and counts."""

    node_name: str
    runtime: RuntimeSection
    api: ApiSection
    capabilities: Capabilities
    counts: Counts
    snapshot_version: int
    snapshot_taken_at: datetime | None


class Health(BaseModel):
    """``/healthz`` and ``/readyz``: the verdict, and each check for a caller who may read."""

    status: Literal["ok", "degraded", "unavailable"]
    # Left out of /readyz for a caller who may not read (the probes).
    checks: dict[str, str] | None = None


# --------------------------------------------------------------------------
# Pods: the runtime joined with the API server
# --------------------------------------------------------------------------


class AttemptItem(BaseModel):
    """An earlier attempt of a pod's container that the runtime still holds."""

    id: str
    attempt: int
    state: Literal["created", "running", "exited", "unknown"]
    exit_code: int | None
    reason: str | None
    sandbox_id: str
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def from_container(cls, c: Container) -> AttemptItem:
        """The attempt on the wire: its state, how it ended, and when it ran."""
        return cls(
            id=c.id,
            attempt=c.attempt,
            state=c.state.value,
            exit_code=c.exit_code,
            reason=c.reason,
            sandbox_id=c.sandbox_id,
            started_at=c.started_at,
            finished_at=c.finished_at,
        )


class PodContainerItem(BaseModel):
    """One container of a pod: the spec's role, the API's status and the runtime's attempts."""

    name: str
    role: Literal["init", "sidecar", "app", "ephemeral"] | None = Field(
        description="from the pod spec; null for a container only the runtime knows"
    )
    state: str = Field(
        description="the runtime's state of the current attempt, else the API's "
        "(waiting:<reason>, terminated:<reason>), else not-created"
    )
    ready: bool | None
    restart_count: int
    pid: int | None
    id: str | None
    image: str | None
    exit_code: int | None
    reason: str | None
    sandbox_id: str | None
    attempts: list[AttemptItem] = Field(description="older attempts the runtime still holds")
    shares_with_pause: dict[str, bool] | None = Field(
        default=None,
        description="namespace type -> whether the container's process shares it with the "
        "pause process (detail view, while both run)",
    )
    process_tree: ProcessTreeItem | None = None


class MismatchItem(BaseModel):
    """A disagreement between the API server and the runtime, or within the runtime."""

    kind: str
    severity: Severity
    message: str
    container: str | None
    since: datetime | None
    evidence: dict[str, str | int | None]


class VolumeUserItem(BaseModel):
    """One container's mount of a pod volume, as the spec asks for it."""

    container: str
    mount_path: str
    read_only: bool


class SharedVolumeItem(BaseModel):
    """A pod volume, the containers that mount it, and the host paths the runtime gave them."""

    name: str
    kind: str
    mounted_by: list[VolumeUserItem]
    runtime_sources: list[str] = Field(description="host paths the runtime mounted for it")
    shared_in_runtime: bool | None = Field(
        description="true when the containers really mount the same host path"
    )


class EventItem(BaseModel):
    """One Kubernetes event about the pod, as ``kubectl describe`` lists it."""

    type: str | None
    reason: str | None
    message: str | None
    count: int | None
    last_seen: datetime | None
    source: str | None


class PodViewItem(BaseModel):
    """One pod of this node, the runtime joined with the API server, kubectl's columns first."""

    namespace: str
    name: str
    uid: str
    status: str = Field(description="STATUS exactly as kubectl prints it")
    ready: str = Field(description="READY as kubectl prints it, e.g. 1/2")
    restarts: str = Field(description="RESTARTS as kubectl prints it, e.g. 3 (2m ago)")
    needs_attention: bool = Field(
        default=False,
        description="what ?problems=true selects: a status kubectl would flag, not all ready, "
        "a mismatch, or a recent or pending restart",
    )
    phase: str | None
    api: str = Field(description='"ok", or why the API view is missing or stale, since when')
    api_known: bool = Field(description="false for pods only the runtime knows (orphans)")
    node_name: str | None
    created_at: datetime | None
    sandboxes: list[SandboxItem] = Field(description="newest attempt first")
    containers: list[PodContainerItem] = Field(
        description="init containers and sidecars in spec order, then app, ephemeral, "
        "and runtime-only containers"
    )
    mismatches: list[MismatchItem]
    volumes: list[SharedVolumeItem]
    events: list[EventItem] | None = Field(
        default=None, description="the pod's events, oldest first (detail view only)"
    )
    events_error: str | None = Field(
        default=None, description="why events could not be read, when they could not"
    )
    pause_shares_with_host: list[str] | None = Field(
        default=None,
        description="namespace types the pause process shares with the node's initial "
        "namespaces; a container sharing these with the pause shares them with the whole "
        "node, not just the pod (detail view)",
    )
    namespace_sharing_unknown: str | None = Field(
        default=None,
        description="why shares_with_pause or pause_shares_with_host is missing or null "
        "(e.g. the agent runs without CAP_SYS_PTRACE); null when all is shown (detail view)",
    )

    def pod_level_sharing(self, container: PodContainerItem) -> list[str]:
        """The namespaces a container shares with the pause process and not with the host."""
        host_wide = set(self.pause_shares_with_host or ())
        shared = container.shares_with_pause or {}
        return [kind for kind, same in shared.items() if same and kind not in host_wide]


# --------------------------------------------------------------------------
# Kill-and-watch
# --------------------------------------------------------------------------


class KillBody(BaseModel):
    """What to kill: one container by name, or the pod's sandbox (its pause process)."""

    model_config = {"extra": "forbid"}

    container: str | None = Field(
        default=None, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
    )
    sandbox: bool = False
    signal: str | int = Field(
        default="SIGKILL",
        description="SIGKILL or SIGTERM, by name (KILL, term) or number (9, 15); others are 422",
    )
    timeout_seconds: float | None = Field(
        default=None, gt=0, le=1800, description="how long to watch for the heal"
    )
    dry_run: bool = False


class TargetItem(BaseModel):
    """What a kill-and-watch run signals: the process, and the attempt it belongs to."""

    kind: Literal["container", "sandbox"]
    namespace: str
    pod: str
    pod_uid: str
    container: str | None
    container_id: str | None
    sandbox_id: str
    pid: int
    attempt: int
    restart_count: int | None


class PlanItem(BaseModel):
    """What the guards allowed: the target, the signal, and what kubelet should do next."""

    target: TargetItem
    signal: str
    timeout_seconds: float
    expected_attempt: int = Field(description="the attempt kubelet should create next")
    expected_delay_seconds: float = Field(
        description="the delay kubelet's current backoff step adds before the restart"
    )
    expected_delay_reason: str
    restart_policy: str
    steps: list[str]


class PhaseItem(BaseModel):
    """One step of a run's timeline, timed from the signal."""

    name: str
    at: datetime
    since_signal_seconds: float | None
    detail: dict[str, object]


class HealRunItem(BaseModel):
    """One kill-and-watch run in full: plan, who asked, timeline, verdict."""

    id: str
    state: Literal["running", "healed", "not_healed", "failed"]
    target: TargetItem
    plan: PlanItem
    requested_by: str
    requested_at: datetime
    finished_at: datetime | None
    phases: list[PhaseItem]
    time_to_recover_seconds: float | None
    verdict: str
    diagnosis_url: str | None


class HealRunSummary(BaseModel):
    """One kill-and-watch run in the list: its target, state, recovery time and verdict."""

    id: str
    state: Literal["running", "healed", "not_healed", "failed"]
    namespace: str
    pod: str
    target: str
    requested_at: datetime
    time_to_recover_seconds: float | None
    verdict: str


class KillAccepted(BaseModel):
    """A kill-and-watch request allowed: the run started and where to follow it, or the plan."""

    id: str | None = Field(description="the run's id; null for a dry run")
    dry_run: bool
    state: str
    plan: PlanItem
    run_url: str | None
    events_url: str | None


# --------------------------------------------------------------------------
# Logs
# --------------------------------------------------------------------------


class LogLineItem(BaseModel):
    """One line of a container's log: when the runtime wrote it, the stream, the text."""

    at: datetime | None
    stream: str
    text: str
    partial: bool
    cut: bool = Field(
        default=False, description="the line was longer than 16 KiB: text is its beginning"
    )


class LogsItem(BaseModel):
    """The last lines of one container attempt's log, and where they were read from."""

    namespace: str
    pod: str
    container: str
    attempt: int | None = Field(description="the attempt whose log this is")
    previous: bool
    source: Literal["file", "kept-after-exit"] = Field(
        description="read from the CRI log file, or the lines the agent kept when it "
        "saw the attempt exit (the file is gone)"
    )
    files: list[str]
    truncated: bool = Field(
        description="older lines exist that are not shown (the read or the answer was capped)"
    )
    note: str | None
    tail: int
    lines: list[LogLineItem]


# --------------------------------------------------------------------------
# Diagnosis
# --------------------------------------------------------------------------


class EvidenceItem(BaseModel):
    """One fact a finding rests on, and where it comes from."""

    kind: str = Field(description="where the fact comes from: api, runtime, exit-code, log, ...")
    label: str
    value: str


class FindingItem(BaseModel):
    """What one rule found about a pod: summary, evidence, likely cause, commands to run next."""

    rule: str = Field(description="stable rule id, e.g. crashloop or init-waiting")
    severity: Severity
    namespace: str
    pod: str
    container: str | None
    summary: str
    evidence: list[EvidenceItem]
    cause: str
    next_steps: list[str]
    since: datetime | None


class PodDiagnosis(BaseModel):
    """One pod's kubectl columns and its findings, most severe first."""

    namespace: str
    name: str
    status: str
    ready: str
    restarts: str
    api: str
    findings: list[FindingItem]


class NodeDiagnostics(BaseModel):
    """Every finding on this node, most severe first, and how many pods were checked."""

    node_name: str
    pods_checked: int
    pods_with_findings: int
    items: list[FindingItem] = Field(description="every finding on the node, most severe first")


# --------------------------------------------------------------------------
# The caller
# --------------------------------------------------------------------------


class KillPolicyItem(BaseModel):
    """Where this agent allows kill-and-watch at all, whoever asks."""

    enabled: bool
    namespaces: list[str] = Field(description="namespaces where any running pod may be killed")
    opt_in_label: str = Field(description="pods labelled <label>=true may be killed anywhere")
    allow_system: bool = Field(description="kube-system and static pods allowed too")
    rate_per_minute: int


class NamespaceAccessItem(BaseModel):
    """What the caller may do to the pods of one namespace, on top of the node permissions."""

    namespace: str
    read_logs: bool = Field(description="get pods/log there (and get nodes/podlens-logs)")
    kill: bool = Field(
        description="delete pods there, create nodes/podlens-heal, and kill-and-watch enabled; "
        "each run's own guards (policy, restart policy, rate) still apply"
    )


class WhoAmI(BaseModel):
    """Who the agent takes the caller for and what they may do here, as the door would decide."""

    user: str
    via: Literal["token", "loopback", "open", "unchecked"] = Field(
        description="how the caller was admitted: a reviewed token, trusted loopback, or "
        "no door at all (authentication off)"
    )
    groups: list[str]
    node_name: str
    read: bool = Field(description="get nodes/podlens: pods, containers, runs, metrics")
    read_logs: bool = Field(description="get nodes/podlens-logs: logs and diagnoses")
    heal: bool = Field(
        description="create nodes/podlens-heal, and kill-and-watch enabled on this agent"
    )
    kill_policy: KillPolicyItem
    namespace_access: NamespaceAccessItem | None = Field(
        default=None, description="with ?namespace=: what the caller may do there"
    )
