"""One pod as the API server and the container runtime see it together.

The API server says what should run and what kubelet last reported; the
runtime says what exists on the node right now. ``build_pod_views`` joins
them the way kubelet itself does:

* API pod <-> sandboxes and containers by pod UID (the runtime's
  ``io.kubernetes.pod.uid`` label). A static pod runs under the UID kubelet
  derived from its manifest, which its mirror pod in the API carries in the
  ``kubernetes.io/config.mirror`` annotation, not as its own UID.
* a container status <-> a runtime container by ``containerID`` with the
  ``containerd://`` / ``cri-o://`` scheme stripped.

Where the two views disagree for longer than kubelet normally needs to catch
up (``grace``), the view carries a ``Mismatch``. Everything here is a pure
function of its arguments; ``now`` is passed in.

Domain: imports the standard library and other domain modules only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal, NamedTuple

from agent.domain.kubemodel import (
    MIRROR_POD_ANNOTATION,
    ApiPod,
    ContainerRole,
    ContainerSpec,
    ContainerStateInfo,
    ContainerStatus,
    VolumeKind,
)
from agent.domain.model import Container, ContainerState, Sandbox, SandboxState
from agent.domain.podstatus import human_duration, status_strings
from agent.domain.severity import Severity
from agent.domain.times import aware, iso_or_none

__all__ = [
    "DEFAULT_GRACE",
    "RUNTIME_ONLY_READY",
    "ContainerView",
    "Evidence",
    "Mismatch",
    "MismatchKind",
    "PodView",
    "Severity",
    "SharedVolume",
    "VolumeUser",
    "build_pod_view",
    "build_pod_views",
]

# How long kubelet may take to make the API and the runtime agree (PLEG relist
# is 1 s, the status manager batches updates, sandbox creation waits on CNI).
DEFAULT_GRACE = timedelta(seconds=30)

# The READY column for a pod the API server does not know: there is no spec,
# so no denominator.
RUNTIME_ONLY_READY = "-"

MismatchKind = Literal[
    "no-sandbox",
    "orphan-sandbox",
    "orphan-container",
    "multiple-ready-sandboxes",
    "api-running-runtime-exited",
    "api-not-running-runtime-running",
    "unknown-container-id",
    "volume-not-shared",
]
Evidence = dict[str, str | int | None]

_TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})
# Pod annotation kubelet sets on pods it did not get from the API server
# (static pods: "file" or "http"); sandboxes carry the pod's annotations.
_CONFIG_SOURCE_ANNOTATION = "kubernetes.io/config.source"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Enum ``.value`` goes through a descriptor; this runs once per container.
_STATE_TEXT = {state: state.value for state in ContainerState}
# crictl's short ID length; messages use it, evidence keeps the full ID.
_SHORT_ID = 13


# --------------------------------------------------------------------------
# Types
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Mismatch:
    """A disagreement between the API server and the runtime, or within the runtime."""

    kind: MismatchKind
    severity: Severity
    message: str
    container: str | None = None
    evidence: Evidence = field(default_factory=dict, hash=False, compare=True)
    # When the disagreement started, as far as the timestamps tell.
    since: datetime | None = None


class VolumeUser(NamedTuple):
    """One container's mount of a pod volume, as its spec asks for it."""

    container: str
    mount_path: str
    read_only: bool


@dataclass(frozen=True, slots=True)
class SharedVolume:
    """A pod volume that containers mount, and whether the runtime gave them one host path."""

    name: str
    kind: VolumeKind
    mounted_by: tuple[VolumeUser, ...]
    # Host paths the runtime bind-mounted at those mount paths, in container
    # order, each once.
    runtime_sources: tuple[str, ...] = ()
    # True when two or more containers got the same host path; None when the
    # runtime reported too few mounts to tell.
    shared_in_runtime: bool | None = None


@dataclass(frozen=True, slots=True)
class ContainerView:
    """One container of a pod: its spec, the API's status and the runtime's attempts, joined."""

    name: str
    role: ContainerRole | None  # None: the runtime has it, the spec does not
    spec: ContainerSpec | None
    api_status: ContainerStatus | None
    # The runtime's state of ``current`` ("running", "exited", "created",
    # "unknown"); without one the API's ("waiting:<reason>",
    # "terminated:<reason>", "running"); else "not-created".
    state: str
    ready: bool | None
    restart_count: int
    pid: int | None
    id: str | None
    current: Container | None
    # Every other instance the runtime still holds under this pod UID and
    # container name, newest first, across sandboxes.
    attempts: tuple[Container, ...]
    exit_code: int | None
    reason: str | None
    sandbox_id: str | None


@dataclass(frozen=True, slots=True)
class PodView:
    """One pod joined: kubectl's columns, its sandboxes and containers, and the mismatches."""

    namespace: str
    name: str
    uid: str
    status: str
    ready: str
    restarts: str
    phase: str | None
    api_known: bool
    sandboxes: tuple[Sandbox, ...]  # newest attempt first
    current_sandbox: Sandbox | None
    containers: tuple[ContainerView, ...]
    mismatches: tuple[Mismatch, ...]
    node_name: str | None
    created_at: datetime | None
    pod: ApiPod | None
    volumes: tuple[SharedVolume, ...]
    # The UID the runtime labels this pod's objects with; differs from ``uid``
    # only for static pods (the mirror pod has an API UID of its own).
    runtime_uid: str = ""

    def container(self, name: str) -> ContainerView | None:
        """The container of that name, init and ephemeral ones included; None if absent."""
        for view in self.containers:
            if view.name == name:
                return view
        return None


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def _short(object_id: str) -> str:
    return object_id[:_SHORT_ID]


def _past_grace(since: datetime | None, now: datetime, grace: timedelta) -> bool:
    # Without a timestamp there is no way to tell the disagreement is fresh;
    # the runtime and the API fill these times, so a gap is rare and saying
    # nothing would hide a real problem.
    return since is None or aware(now) - aware(since) > grace


def _age(since: datetime | None, now: datetime) -> Evidence:
    if since is None:
        return {"age": None, "age_seconds": None}
    delta = aware(now) - aware(since)
    return {"age": human_duration(delta), "age_seconds": int(delta.total_seconds())}


def _runtime_uid(pod: ApiPod) -> str:
    if pod.is_mirror:
        return pod.annotations.get(MIRROR_POD_ANNOTATION) or pod.uid
    return pod.uid


def _api_state_text(state: ContainerStateInfo) -> str:
    if state.kind is None:
        return "not-created"
    if state.kind == "running":
        return "running"
    return f"{state.kind}:{state.reason}" if state.reason else state.kind


def _norm_path(path: str) -> str:
    return path.rstrip("/") or "/"


@dataclass(slots=True)
class _Index:
    """The runtime snapshot regrouped once per build, so each pod is a dict lookup."""

    sandboxes_by_uid: dict[str, list[Sandbox]]
    # pod UID -> container name -> instances, newest first
    containers_by_uid: dict[str, dict[str, list[Container]]]
    sandbox_by_id: dict[str, Sandbox]
    container_ids: set[str]


def _index(sandboxes: Mapping[str, Sandbox], containers: Mapping[str, Container]) -> _Index:
    by_uid: dict[str, list[Sandbox]] = {}
    by_id: dict[str, Sandbox] = {}
    for sb in sandboxes.values():
        by_uid.setdefault(sb.pod.uid, []).append(sb)
        by_id[sb.id] = sb
    sandbox_attempt = {sb_id: sb.attempt for sb_id, sb in by_id.items()}

    def newest_first(c: Container) -> tuple[int, int, datetime]:
        # Container attempts continue across a recreated sandbox only while the
        # old instance is still around, so the sandbox attempt ranks first.
        t = c.created_at
        return (
            sandbox_attempt.get(c.sandbox_id, -1),
            c.attempt,
            _EPOCH if t is None else aware(t),
        )

    c_by_uid: dict[str, dict[str, list[Container]]] = {}
    ids: set[str] = set()
    for c in containers.values():
        c_by_uid.setdefault(c.pod.uid, {}).setdefault(c.name, []).append(c)
        ids.add(c.id)
    for by_name in c_by_uid.values():
        for instances in by_name.values():
            if len(instances) > 1:
                instances.sort(key=newest_first, reverse=True)
    return _Index(by_uid, c_by_uid, by_id, ids)


@dataclass(frozen=True, slots=True)
class _Ctx:
    node_name: str
    api_synced: bool
    now: datetime
    grace: timedelta
    index: _Index


def _sandbox_key(sb: Sandbox) -> tuple[int, datetime, str]:
    return (sb.attempt, aware(sb.created_at) if sb.created_at else _EPOCH, sb.id)


def _newest_first(sandboxes: list[Sandbox]) -> tuple[Sandbox, ...]:
    if len(sandboxes) < 2:
        return tuple(sandboxes)
    return tuple(sorted(sandboxes, key=_sandbox_key, reverse=True))


def _current_sandbox(ordered: tuple[Sandbox, ...]) -> Sandbox | None:
    for sb in ordered:
        if sb.state is SandboxState.READY:
            return sb
    return ordered[0] if ordered else None


# --------------------------------------------------------------------------
# Containers
# --------------------------------------------------------------------------


def _newest_runtime(
    instances: list[Container], current_sandbox: Sandbox | None
) -> Container | None:
    """The instance kubelet would be managing now: newest in the current sandbox, else newest."""
    if not instances:
        return None
    if current_sandbox is not None:
        for c in instances:
            if c.sandbox_id == current_sandbox.id:
                return c
    return instances[0]


def _container_view(
    name: str,
    role: ContainerRole | None,
    spec: ContainerSpec | None,
    status: ContainerStatus | None,
    instances: list[Container],
    newest: Container | None,
) -> ContainerView:
    current = newest
    if status is not None:
        rid = status.runtime_container_id
        if rid is not None and (current is None or current.id != rid):
            for c in instances:
                if c.id == rid:
                    current = c
                    break

    if current is None:
        if status is not None:
            api_state = status.state
            return ContainerView(
                name=name,
                role=role,
                spec=spec,
                api_status=status,
                state=_api_state_text(api_state),
                ready=status.ready,
                restart_count=status.restart_count,
                pid=None,
                id=None,
                current=None,
                attempts=(),
                exit_code=api_state.exit_code if api_state.is_terminated else None,
                reason=api_state.reason,
                sandbox_id=None,
            )
        return ContainerView(
            name=name,
            role=role,
            spec=spec,
            api_status=None,
            state="not-created",
            ready=None,
            restart_count=0,
            pid=None,
            id=None,
            current=None,
            attempts=(),
            exit_code=None,
            reason=None,
            sandbox_id=None,
        )

    if len(instances) == 1:
        attempts: tuple[Container, ...] = ()
        highest = current.attempt
    else:
        attempts = tuple([c for c in instances if c is not current])
        highest = max(c.attempt for c in instances)
    return ContainerView(
        name=name,
        role=role,
        spec=spec,
        api_status=status,
        state=_STATE_TEXT[current.state],
        ready=status.ready if status is not None else None,
        restart_count=status.restart_count if status is not None else highest,
        pid=current.pid,
        id=current.id,
        current=current,
        attempts=attempts,
        exit_code=current.exit_code,
        reason=current.reason,
        sandbox_id=current.sandbox_id,
    )


def _container_mismatches(
    where: str,
    status: ContainerStatus,
    view: ContainerView,
    newest: Container | None,
    ctx: _Ctx,
) -> list[Mismatch]:
    out: list[Mismatch] = []
    rid = status.runtime_container_id
    api_state = status.state
    # The view's current instance is the one the API names whenever the runtime holds it.
    held = view.current if view.current is not None and view.current.id == rid else None

    if (
        api_state.is_running
        and held is not None
        and held.state is ContainerState.EXITED
        and _past_grace(held.finished_at, ctx.now, ctx.grace)
    ):
        out.append(
            Mismatch(
                kind="api-running-runtime-exited",
                severity="warning",
                message=(
                    f"container {status.name} of {where}: the API says running, but runtime "
                    f"container {_short(held.id)} exited (code {held.exit_code}, "
                    f"{held.reason or 'no reason'}) and kubelet has not reported it"
                ),
                container=status.name,
                evidence={
                    "container_id": held.id,
                    "exit_code": held.exit_code,
                    "reason": held.reason,
                    "finished_at": iso_or_none(held.finished_at),
                    "api_started_at": iso_or_none(api_state.started_at),
                    **_age(held.finished_at, ctx.now),
                },
                since=held.finished_at,
            )
        )

    if (
        (api_state.is_waiting or api_state.is_terminated)
        and newest is not None
        and newest.state is ContainerState.RUNNING
    ):
        started = newest.started_at or newest.created_at
        if _past_grace(started, ctx.now, ctx.grace):
            api_text = _api_state_text(api_state)
            out.append(
                Mismatch(
                    kind="api-not-running-runtime-running",
                    severity="warning",
                    message=(
                        f"container {status.name} of {where}: the API says {api_text}, but "
                        f"runtime container {_short(newest.id)} (attempt {newest.attempt}) "
                        f"is running"
                    ),
                    container=status.name,
                    evidence={
                        "api_state": api_text,
                        "api_container_id": rid,
                        "container_id": newest.id,
                        "attempt": newest.attempt,
                        "pid": newest.pid,
                        "started_at": iso_or_none(started),
                        **_age(started, ctx.now),
                    },
                    since=started,
                )
            )

    # Only the ID the status calls current: lastState's container is one kubelet's
    # GC is allowed to remove.
    if rid is not None and rid not in ctx.index.container_ids:
        if api_state.is_running:
            since = api_state.started_at
        elif api_state.is_terminated:
            since = api_state.finished_at
        elif status.last_state.container_id == status.container_id:
            since = status.last_state.finished_at
        else:
            since = None
        if _past_grace(since, ctx.now, ctx.grace):
            if api_state.is_running:
                severity: Severity = "warning"
                note = "the API says it is running"
            else:
                severity = "info"
                note = (
                    "it is not running, so kubelet's container GC may have removed the old instance"
                )
            out.append(
                Mismatch(
                    kind="unknown-container-id",
                    severity=severity,
                    message=(
                        f"container {status.name} of {where}: the runtime holds no container "
                        f"{_short(rid)} named by the API; {note}"
                    ),
                    container=status.name,
                    evidence={
                        "container_id": status.container_id,
                        "api_state": _api_state_text(api_state),
                        "last_state_container_id": status.last_state.container_id,
                        "since": iso_or_none(since),
                    },
                    since=since,
                )
            )
    return out


# --------------------------------------------------------------------------
# Volumes
# --------------------------------------------------------------------------


def _runtime_source(table: Mapping[str, str], mount_path: str) -> str | None:
    source = table.get(mount_path)
    if source is None:
        # Destinations are compared as written; a trailing slash is the one
        # spelling difference seen in practice.
        path = _norm_path(mount_path)
        source = table.get(path)
        if source is None:
            source = table.get(path + "/")
    return source


def _volumes(
    pod: ApiPod, views: Mapping[str, ContainerView]
) -> tuple[list[SharedVolume], list[Mismatch]]:
    # Per volume: each mount, the host path the runtime gave it, and whether it
    # mounts the whole volume. A subPath mount gets a per-container directory
    # kubelet prepares (volume-subpaths/...), so its source differs by design.
    mounts: dict[str, list[tuple[VolumeUser, str | None, bool]]] = {}
    for group in (pod.init_containers, pod.containers, pod.ephemeral_containers):
        for spec in group:
            if not spec.volume_mounts:
                continue
            view = views.get(spec.name)
            current = view.current if view is not None else None
            # Later OCI mounts over the same destination hide earlier ones: the
            # comprehension keeps the last.
            table = {m.destination: m.source for m in current.mounts} if current else {}
            for vm in spec.volume_mounts:
                entry = (
                    VolumeUser(spec.name, vm.mount_path, vm.read_only),
                    _runtime_source(table, vm.mount_path) if table else None,
                    vm.sub_path is None,
                )
                entries = mounts.get(vm.name)
                if entries is None:
                    mounts[vm.name] = [entry]
                else:
                    entries.append(entry)

    out: list[SharedVolume] = []
    mismatches: list[Mismatch] = []
    for volume in pod.volumes:
        entries = mounts.get(volume.name)
        if not entries:
            continue
        mounted_by = tuple([entry[0] for entry in entries])
        runtime_sources = tuple(dict.fromkeys([e[1] for e in entries if e[1] is not None]))
        if not runtime_sources:
            out.append(SharedVolume(volume.name, volume.kind, mounted_by, (), None))
            continue
        # container -> source, whole-volume mounts the runtime reported
        known = {e[0].container: e[1] for e in entries if e[2] and e[1] is not None}
        distinct = len(set(known.values()))
        shared: bool | None
        if not known:
            shared = None
        elif len(known) > distinct:
            shared = True
        elif len(known) >= 2 or len({e[0].container for e in entries if e[2]}) == 1:
            shared = False
        else:
            shared = None

        if len(known) >= 2 and distinct > 1:
            evidence: Evidence = {"volume": volume.name, "kind": volume.kind}
            evidence.update((f"source:{name}", src) for name, src in known.items())
            mismatches.append(
                Mismatch(
                    kind="volume-not-shared",
                    severity="warning",
                    message=(
                        f"volume {volume.name} ({volume.kind}) of {pod.namespace}/{pod.name} is "
                        f"mounted by {', '.join(sorted(known))}, but the runtime gave them "
                        f"different host paths, so they do not see each other's files"
                    ),
                    evidence=evidence,
                )
            )
        out.append(SharedVolume(volume.name, volume.kind, mounted_by, runtime_sources, shared))
    return out, mismatches


# --------------------------------------------------------------------------
# Pods
# --------------------------------------------------------------------------


def _multiple_ready(where: str, ordered: tuple[Sandbox, ...], ctx: _Ctx) -> Mismatch | None:
    if len(ordered) < 2:
        return None
    ready = [sb for sb in ordered if sb.state is SandboxState.READY]
    if len(ready) < 2:
        return None
    # The disagreement began when the newer one came up.
    since = ready[0].created_at
    if not _past_grace(since, ctx.now, ctx.grace):
        return None
    return Mismatch(
        kind="multiple-ready-sandboxes",
        severity="error",
        message=(
            f"pod {where} has {len(ready)} ready sandboxes "
            f"({', '.join(f'{_short(sb.id)} attempt {sb.attempt}' for sb in ready)}); "
            f"kubelet keeps only one"
        ),
        evidence={
            "sandbox_ids": ",".join(sb.id for sb in ready),
            "attempts": ",".join(str(sb.attempt) for sb in ready),
            "pause_pids": ",".join(str(sb.pause_pid) for sb in ready),
        },
        since=since,
    )


def _no_sandbox(pod: ApiPod, ctx: _Ctx) -> Mismatch | None:
    if pod.phase in _TERMINAL_PHASES or pod.deletion_timestamp is not None:
        return None
    scheduled = pod.condition("PodScheduled")
    since = (
        scheduled.last_transition_time
        if scheduled is not None and scheduled.is_true and scheduled.last_transition_time
        else pod.creation_timestamp
    )
    if not _past_grace(since, ctx.now, ctx.grace):
        return None
    age = _age(since, ctx.now)
    return Mismatch(
        kind="no-sandbox",
        severity="error",
        message=(
            f"pod {pod.namespace}/{pod.name} is bound to {ctx.node_name} "
            f"(phase {pod.phase or 'unset'}) but the runtime has no sandbox for it "
            f"after {age['age'] or 'an unknown time'}"
        ),
        evidence={"phase": pod.phase or None, "scheduled_at": iso_or_none(since), **age},
        since=since,
    )


def _api_pod_view(pod: ApiPod, ctx: _Ctx) -> PodView:
    runtime_uid = _runtime_uid(pod)
    index = ctx.index
    sandboxes = _newest_first(index.sandboxes_by_uid.get(runtime_uid, []))
    current_sandbox = _current_sandbox(sandboxes)
    grouped = index.containers_by_uid.get(runtime_uid, {})
    on_node = pod.node_name == ctx.node_name
    # Comparing the API's status with the runtime only makes sense when the
    # status describes this node and is current.
    compare = on_node and ctx.api_synced

    mismatches: list[Mismatch] = []
    if compare and not sandboxes:
        missing = _no_sandbox(pod, ctx)
        if missing is not None:
            mismatches.append(missing)
    where = f"{pod.namespace}/{pod.name}"
    many = _multiple_ready(where, sandboxes, ctx)
    if many is not None:
        mismatches.append(many)

    statuses: dict[str, ContainerStatus] = {}
    for status_group in (
        pod.init_container_statuses,
        pod.container_statuses,
        pod.ephemeral_container_statuses,
    ):
        for st in status_group:
            statuses[st.name] = st

    views: dict[str, ContainerView] = {}
    for group, role in (
        (pod.init_containers, ContainerRole.INIT),
        (pod.containers, ContainerRole.APP),
        (pod.ephemeral_containers, ContainerRole.EPHEMERAL),
    ):
        for spec in group:
            instances = grouped.get(spec.name, [])
            newest = _newest_runtime(instances, current_sandbox)
            status = statuses.get(spec.name)
            this_role = role
            if role is ContainerRole.INIT and spec.is_restartable:
                this_role = ContainerRole.SIDECAR
            view = _container_view(spec.name, this_role, spec, status, instances, newest)
            views[spec.name] = view
            if compare and status is not None:
                mismatches.extend(_container_mismatches(where, status, view, newest, ctx))
    for name in sorted(grouped.keys() - views.keys()) if grouped else ():
        instances = grouped[name]
        newest = _newest_runtime(instances, current_sandbox)
        views[name] = _container_view(name, None, None, None, instances, newest)

    volumes, volume_mismatches = _volumes(pod, views)
    mismatches.extend(volume_mismatches)

    strings = status_strings(pod, ctx.now)
    return PodView(
        namespace=pod.namespace,
        name=pod.name,
        uid=pod.uid,
        status=strings.status,
        ready=strings.ready,
        restarts=strings.restarts,
        phase=pod.phase or None,
        api_known=True,
        sandboxes=sandboxes,
        current_sandbox=current_sandbox,
        containers=tuple(views.values()),
        mismatches=tuple(mismatches),
        node_name=pod.node_name,
        created_at=pod.creation_timestamp,
        pod=pod,
        volumes=tuple(volumes),
        runtime_uid=runtime_uid,
    )


def _static_pod(sb: Sandbox | None) -> bool:
    if sb is None:
        return False
    source = sb.annotations.get(_CONFIG_SOURCE_ANNOTATION)
    return source is not None and source != "api"


def _orphan_sandbox(sb: Sandbox, ctx: _Ctx) -> Mismatch | None:
    if not _past_grace(sb.created_at, ctx.now, ctx.grace):
        return None
    where = f"{sb.pod.namespace}/{sb.pod.name}"
    if _static_pod(sb):
        severity: Severity = "info"
        note = "a static pod whose mirror pod is missing from the API"
    elif sb.state is SandboxState.READY:
        severity, note = "warning", "still ready"
    else:
        severity, note = "info", "stopped; kubelet's GC normally removes it"
    return Mismatch(
        kind="orphan-sandbox",
        severity=severity,
        message=(
            f"sandbox {_short(sb.id)} of {where} (uid {sb.pod.uid}) belongs to no pod the "
            f"API server knows: {note}"
        ),
        evidence={
            "sandbox_id": sb.id,
            "state": sb.state.value,
            "attempt": sb.attempt,
            "pause_pid": sb.pause_pid,
            "created_at": iso_or_none(sb.created_at),
            **_age(sb.created_at, ctx.now),
        },
        since=sb.created_at,
    )


def _orphan_container(c: Container, ctx: _Ctx) -> Mismatch | None:
    if not _past_grace(c.created_at, ctx.now, ctx.grace):
        return None
    where = f"{c.pod.namespace}/{c.pod.name}"
    severity: Severity
    if _static_pod(ctx.index.sandbox_by_id.get(c.sandbox_id)):
        severity = "info"
    else:
        severity = "warning" if c.state is ContainerState.RUNNING else "info"
    return Mismatch(
        kind="orphan-container",
        severity=severity,
        message=(
            f"container {c.name} ({_short(c.id)}, {c.state.value}) of {where} "
            f"(uid {c.pod.uid}) belongs to no pod the API server knows"
        ),
        container=c.name,
        evidence={
            "container_id": c.id,
            "state": c.state.value,
            "attempt": c.attempt,
            "pid": c.pid,
            "sandbox_id": c.sandbox_id,
            "created_at": iso_or_none(c.created_at),
            **_age(c.created_at, ctx.now),
        },
        since=c.created_at,
    )


def _runtime_status(sandboxes: tuple[Sandbox, ...], views: Iterable[ContainerView]) -> str:
    if any(v.current is not None and v.current.state is ContainerState.RUNNING for v in views):
        return "Running (runtime only)"
    if all(sb.state is SandboxState.NOTREADY for sb in sandboxes):
        return "Stopped (runtime only)"
    return "Unknown (runtime only)"


def _runtime_pod_view(uid: str, ctx: _Ctx) -> PodView:
    index = ctx.index
    sandboxes = _newest_first(index.sandboxes_by_uid.get(uid, []))
    current_sandbox = _current_sandbox(sandboxes)
    grouped = index.containers_by_uid.get(uid, {})
    views: list[ContainerView] = []
    for name in sorted(grouped):
        instances = grouped[name]
        newest = _newest_runtime(instances, current_sandbox)
        views.append(_container_view(name, None, None, None, instances, newest))

    ref = sandboxes[0].pod if sandboxes else next(iter(grouped.values()))[0].pod
    where = f"{ref.namespace}/{ref.name}"
    mismatches: list[Mismatch] = []
    if ctx.api_synced:
        for sb in sandboxes:
            if (m := _orphan_sandbox(sb, ctx)) is not None:
                mismatches.append(m)
        for view in views:
            for c in (view.current, *view.attempts):
                if c is not None and (m := _orphan_container(c, ctx)) is not None:
                    mismatches.append(m)
    many = _multiple_ready(where, sandboxes, ctx)
    if many is not None:
        mismatches.append(many)

    created = [sb.created_at for sb in sandboxes if sb.created_at is not None] or [
        c.created_at for group in grouped.values() for c in group if c.created_at is not None
    ]
    return PodView(
        namespace=ref.namespace,
        name=ref.name,
        uid=uid,
        status=_runtime_status(sandboxes, views),
        ready=RUNTIME_ONLY_READY,
        restarts=str(sum(v.restart_count for v in views)),
        phase=None,
        api_known=False,
        sandboxes=sandboxes,
        current_sandbox=current_sandbox,
        containers=tuple(views),
        mismatches=tuple(mismatches),
        node_name=ctx.node_name,
        created_at=min(created, key=aware) if created else None,
        pod=None,
        volumes=(),
        runtime_uid=uid,
    )


def _known_uids(api_pods: Iterable[ApiPod]) -> set[str]:
    known: set[str] = set()
    for pod in api_pods:
        known.add(pod.uid)
        known.add(_runtime_uid(pod))
    return known


def _view_order(view: PodView) -> tuple[str, str, bool, str]:
    # The same name can belong to a live pod and to the leftovers of a deleted
    # one (a StatefulSet pod recreated under a new UID): the live one first.
    return (view.namespace, view.name, not view.api_known, view.uid)


def build_pod_views(
    api_pods: Mapping[str, ApiPod],
    sandboxes: Mapping[str, Sandbox],
    containers: Mapping[str, Container],
    *,
    node_name: str,
    api_synced: bool,
    now: datetime,
    grace: timedelta = DEFAULT_GRACE,
) -> list[PodView]:
    """Every pod of this node, API-known or runtime-only, sorted by namespace and name.

    ``api_pods`` is keyed by UID; ``sandboxes``/``containers`` by runtime ID.
    Pods bound to other nodes are left out unless the runtime here holds
    objects for them. ``api_synced`` says the API view is current: without it
    no mismatch that compares the API with the runtime (no-sandbox, orphans,
    the container-state ones) is raised, since a stale cache would invent them.
    """
    ctx = _Ctx(node_name, api_synced, now, grace, _index(sandboxes, containers))
    views: list[PodView] = []
    for pod in api_pods.values():
        ruid = _runtime_uid(pod)
        if (
            pod.node_name != node_name
            and ruid not in ctx.index.sandboxes_by_uid
            and ruid not in ctx.index.containers_by_uid
        ):
            continue
        views.append(_api_pod_view(pod, ctx))
    known = _known_uids(api_pods.values())
    runtime_uids = ctx.index.sandboxes_by_uid.keys() | ctx.index.containers_by_uid.keys()
    views.extend(_runtime_pod_view(uid, ctx) for uid in runtime_uids - known)
    views.sort(key=_view_order)
    return views


def build_pod_view(
    api_pods: Mapping[str, ApiPod],
    sandboxes: Mapping[str, Sandbox],
    containers: Mapping[str, Container],
    *,
    namespace: str,
    name: str,
    node_name: str,
    api_synced: bool,
    now: datetime,
    grace: timedelta = DEFAULT_GRACE,
) -> PodView | None:
    """The pod ``namespace/name`` as ``build_pod_views`` would list it; None when unknown.

    When the name is held both by an API pod and by runtime leftovers of an
    older UID, the API pod wins; among leftovers, the one with the newest
    sandbox.
    """
    ctx = _Ctx(node_name, api_synced, now, grace, _index(sandboxes, containers))
    for pod in api_pods.values():
        if pod.namespace != namespace or pod.name != name:
            continue
        ruid = _runtime_uid(pod)
        if (
            pod.node_name == node_name
            or ruid in ctx.index.sandboxes_by_uid
            or ruid in ctx.index.containers_by_uid
        ):
            return _api_pod_view(pod, ctx)

    known = _known_uids(api_pods.values())
    # Attempts count per UID, so only creation times compare across UIDs.
    candidates: dict[str, datetime] = {}
    for sb in sandboxes.values():
        ref = sb.pod
        if ref.namespace == namespace and ref.name == name and ref.uid not in known:
            created = aware(sb.created_at) if sb.created_at else _EPOCH
            candidates[ref.uid] = max(candidates.get(ref.uid, created), created)
    for c in containers.values():
        ref = c.pod
        if ref.namespace == namespace and ref.name == name and ref.uid not in known:
            candidates.setdefault(ref.uid, _EPOCH)
    if not candidates:
        return None
    uid = max(candidates, key=lambda u: (candidates[u], u))
    return _runtime_pod_view(uid, ctx)
