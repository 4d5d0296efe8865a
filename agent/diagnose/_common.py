"""Helpers every rule uses: times, the pod's containers in order, events, logs, next steps.

Part of the rules: imports ``_types``, the domain and the standard library only.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from agent.diagnose._types import (
    ContainerLogs,
    DiagnosisInput,
    Evidence,
    Thresholds,
)
from agent.domain.kubemodel import (
    ApiEvent,
    ApiPod,
    ContainerRole,
    ContainerSpec,
    ContainerStateInfo,
    ContainerStatus,
)
from agent.domain.podstatus import human_duration
from agent.domain.severity import Severity
from agent.domain.times import aware, iso

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# "spec.containers{web}", "spec.initContainers{init-db}", "spec.ephemeralContainers{dbg}"
_FIELD_PATH = re.compile(r"^spec\.(?:initC|c|ephemeralC)ontainers\{(?P<name>[^}]+)\}$")


# --------------------------------------------------------------------------
# Time
# --------------------------------------------------------------------------


def duration(d: timedelta) -> str:
    return human_duration(d)


def age(t: datetime, now: datetime) -> timedelta:
    return aware(now) - aware(t)


def since_text(t: datetime | None, now: datetime) -> str:
    """ "since 2025-03-04T11:55:00Z (5m ago)", or "" without a time."""
    if t is None:
        return ""
    return f"since {iso(t)} ({duration(age(t, now))} ago)"


def by_threshold(elapsed: timedelta, warning: timedelta, error: timedelta) -> Severity | None:
    if elapsed > error:
        return "error"
    if elapsed > warning:
        return "warning"
    return None


# --------------------------------------------------------------------------
# Containers
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """One container of the pod with everything the API says about it."""

    name: str
    role: ContainerRole
    spec: ContainerSpec
    status: ContainerStatus | None
    index: int  # position among the init containers, or among the app containers
    count: int  # how many containers that group has

    @property
    def label(self) -> str:
        """How a sentence names it: "init container init-db", "sidecar log-shipper"."""
        if self.role is ContainerRole.INIT:
            return f"init container {self.name}"
        if self.role is ContainerRole.SIDECAR:
            return f"sidecar {self.name}"
        return f"container {self.name}"

    @property
    def state(self) -> ContainerStateInfo:
        return self.status.state if self.status is not None else ContainerStateInfo()

    @property
    def last_state(self) -> ContainerStateInfo:
        return self.status.last_state if self.status is not None else ContainerStateInfo()

    @property
    def restart_count(self) -> int:
        return self.status.restart_count if self.status is not None else 0


def targets(pod: ApiPod) -> list[Target]:
    """Init containers (sidecars among them) then app containers, in spec order."""
    out: list[Target] = []
    statuses = {s.name: s for s in pod.init_container_statuses}
    n = len(pod.init_containers)
    for i, spec in enumerate(pod.init_containers):
        role = ContainerRole.SIDECAR if spec.is_restartable else ContainerRole.INIT
        out.append(Target(spec.name, role, spec, statuses.get(spec.name), i, n))
    statuses = {s.name: s for s in pod.container_statuses}
    n = len(pod.containers)
    for i, spec in enumerate(pod.containers):
        out.append(Target(spec.name, ContainerRole.APP, spec, statuses.get(spec.name), i, n))
    return out


def restart_policy_of(pod: ApiPod, target: Target) -> str:
    """The policy kubelet applies to this container: sidecars always restart."""
    if target.role is ContainerRole.SIDECAR:
        return "Always"
    return pod.restart_policy or "Always"


def will_restart(policy: str, exit_code: int | None) -> bool:
    if policy == "Always":
        return True
    if policy == "OnFailure":
        return exit_code != 0
    return False


def initialized(pod: ApiPod) -> bool:
    cond = pod.condition("Initialized")
    return cond is not None and cond.is_true


def blocking_init(pod: ApiPod) -> Target | None:
    """The init container the pod waits on, as kubectl's Init:i/N counts; None when past init."""
    if initialized(pod):
        return None
    for target in targets(pod):
        if target.role is ContainerRole.APP:
            break
        state = target.state
        if state.is_terminated and state.exit_code == 0:
            continue
        status = target.status
        if target.role is ContainerRole.SIDECAR and status is not None and status.started:
            continue
        return target
    return None


def terminal(pod: ApiPod) -> bool:
    return pod.phase in ("Succeeded", "Failed")


def bound(pod: ApiPod) -> bool:
    """Whether the pod is bound to a node.

    A fragment without a spec has no ``nodeName``; its status still shows a
    bound pod by a true PodScheduled condition or a host IP.
    """
    if pod.node_name:
        return True
    if pod.spec_known:
        return False
    scheduled = pod.condition("PodScheduled")
    return (scheduled is not None and scheduled.is_true) or bool(pod.host_ip)


# --------------------------------------------------------------------------
# Raw document fields the model does not carry
# --------------------------------------------------------------------------


def raw_container(pod: ApiPod, name: str) -> Mapping[str, Any]:
    spec = pod.raw.get("spec")
    if not isinstance(spec, Mapping):
        return {}
    for key in ("initContainers", "containers", "ephemeralContainers"):
        group = spec.get(key)
        if not isinstance(group, Sequence):
            continue
        for c in group:
            if isinstance(c, Mapping) and c.get("name") == name:
                return c
    return {}


def raw_str(d: Mapping[str, Any], *keys: str) -> str | None:
    cur: Any = d
    for key in keys:
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(key)
    return cur if isinstance(cur, str) and cur else None


def raw_names(d: Mapping[str, Any], *keys: str) -> tuple[str, ...]:
    """Names in a list of ``{name: ...}`` objects, or of strings (finalizers)."""
    cur: Any = d
    for key in keys:
        if not isinstance(cur, Mapping):
            return ()
        cur = cur.get(key)
    if not isinstance(cur, Sequence) or isinstance(cur, str):
        return ()
    out: list[str] = []
    for item in cur:
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, Mapping) and isinstance(item.get("name"), str):
            out.append(item["name"])
    return tuple(out)


# --------------------------------------------------------------------------
# Events
# --------------------------------------------------------------------------


def event_container(event: ApiEvent) -> str | None:
    if not event.involved_field_path:
        return None
    m = _FIELD_PATH.match(event.involved_field_path)
    return m.group("name") if m else None


def _newest(event: ApiEvent) -> datetime:
    seen = event.last_seen
    return _EPOCH if seen is None else aware(seen)


def pod_events(inp: DiagnosisInput, pod: ApiPod) -> list[ApiEvent]:
    """Events about this pod (this incarnation when UIDs are known), newest first."""
    out: list[ApiEvent] = []
    for ev in inp.events:
        if ev.involved_kind not in ("Pod", "") or ev.involved_name != pod.name:
            continue
        if ev.involved_namespace and pod.namespace and ev.involved_namespace != pod.namespace:
            continue
        if ev.involved_uid and pod.uid and ev.involved_uid != pod.uid:
            continue
        out.append(ev)
    out.sort(key=_newest, reverse=True)
    return out


def container_events(
    inp: DiagnosisInput, pod: ApiPod, name: str, reasons: frozenset[str] | None = None
) -> list[ApiEvent]:
    return [
        ev
        for ev in pod_events(inp, pod)
        if event_container(ev) == name and (reasons is None or ev.reason in reasons)
    ]


def event_evidence(event: ApiEvent, now: datetime) -> Evidence:
    parts = [event.reason or "event"]
    if event.count and event.count > 1:
        parts.append(f"x{event.count}")
    seen = event.last_seen
    if seen is not None:
        parts.append(f"{duration(age(seen, now))} ago")
    label = f"{parts[0]} ({', '.join(parts[1:])})" if len(parts) > 1 else parts[0]
    return Evidence("event", label, first_lines(event.message or "", 3))


def earliest_event(events: Sequence[ApiEvent]) -> datetime | None:
    stamps: list[datetime] = []
    for ev in events:
        t = ev.first_timestamp or ev.event_time or ev.last_seen
        if t is not None:
            stamps.append(aware(t))
    return min(stamps) if stamps else None


# --------------------------------------------------------------------------
# Text
# --------------------------------------------------------------------------


def first_lines(text: str, n: int) -> str:
    lines = text.strip().splitlines()
    if len(lines) <= n:
        return "\n".join(lines)
    return "\n".join([*lines[:n], f"... ({len(lines) - n} more lines)"])


def log_evidence(inp: DiagnosisInput, name: str, *, previous: bool, n: int) -> Evidence | None:
    logs: ContainerLogs | None = inp.logs.get(name)
    if logs is None:
        return None
    lines = logs.previous if previous else logs.current
    if not lines:
        return None
    tail = lines[-n:]
    which = "previous attempt" if previous else "current attempt"
    if previous and logs.previous_attempt is not None:
        which = f"attempt {logs.previous_attempt}"
    label = f"last {len(tail)} log line{'s' if len(tail) != 1 else ''} of {name} ({which})"
    source = logs.previous_source if previous else logs.source
    if source:
        label += f" from {source}"
    return Evidence("log", label, "\n".join(tail))


def termination_evidence(
    state: ContainerStateInfo, now: datetime, th: Thresholds, *, which: str
) -> list[Evidence]:
    """Reason, finish time, run time and termination message of a terminated state."""
    out: list[Evidence] = []
    lead = f"{which} " if which else ""
    if state.reason:
        out.append(Evidence("api", f"{lead}reason", state.reason))
    if state.finished_at is not None:
        ran = ""
        if state.started_at is not None:
            ran = f", after running {duration(age(state.started_at, state.finished_at))}"
        out.append(
            Evidence(
                "api",
                f"{lead}finished at",
                f"{iso(state.finished_at)} ({duration(age(state.finished_at, now))} ago{ran})",
            )
        )
    if state.message:
        out.append(
            Evidence(
                "api", f"{lead}termination message", first_lines(state.message, th.message_lines)
            )
        )
    return out


# --------------------------------------------------------------------------
# Next steps
# --------------------------------------------------------------------------


class Steps:
    """Commands with the real names filled in, for one pod."""

    def __init__(self, inp: DiagnosisInput, namespace: str, name: str, uid: str = "") -> None:
        self.ns = namespace
        self.name = name
        self.uid = uid
        self.agent = inp.agent_urls

    def kubectl(self, rest: str) -> str:
        return f"kubectl -n {self.ns} {rest}"

    def describe(self) -> str:
        return self.kubectl(f"describe pod {self.name}")

    def events(self) -> str:
        return self.kubectl(
            f"get events --field-selector involvedObject.name={self.name} --sort-by=.lastTimestamp"
        )

    def logs(self, container: str, *, previous: bool = False) -> str:
        flag = " --previous" if previous else ""
        return self.kubectl(f"logs {self.name} -c {container}{flag}")

    def crictl_ps(self, container: str | None = None) -> str:
        # crictl's --pod wants a sandbox ID; the labels kubelet sets work with names.
        where = (
            f"--label io.kubernetes.pod.uid={self.uid}"
            if self.uid
            else f"--label io.kubernetes.pod.name={self.name} "
            f"--label io.kubernetes.pod.namespace={self.ns}"
        )
        name = f" --name '^{container}$'" if container else ""
        return f"crictl ps -a {where}{name}"

    def agent_logs(self, container: str, *, previous: bool = False) -> list[str]:
        if not self.agent:
            return []
        url = f"/v1/pods/{self.ns}/{self.name}/logs?container={container}"
        if previous:
            url += "&previous=true"
        return [url]

    def agent_pod(self) -> list[str]:
        return [f"/v1/pods/{self.ns}/{self.name}"] if self.agent else []

    def agent_container(self, runtime_id: str | None) -> list[str]:
        if not self.agent or not runtime_id:
            return []
        return [f"/v1/containers/{runtime_id}"]


def dedupe(items: Iterator[str] | Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


# --------------------------------------------------------------------------
# What every rule gets
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ctx:
    inp: DiagnosisInput
    th: Thresholds
    namespace: str
    name: str
    steps: Steps

    @property
    def now(self) -> datetime:
        return aware(self.inp.now)

    @property
    def pod(self) -> ApiPod | None:
        return self.inp.pod

    @property
    def where(self) -> str:
        return f"{self.namespace}/{self.name}"

    def logs(self, container: str, *, previous: bool) -> list[Evidence]:
        ev = log_evidence(self.inp, container, previous=previous, n=self.th.log_lines)
        return [ev] if ev is not None else []

    def events(
        self, pod: ApiPod, container: str | None = None, *, reasons: frozenset[str] | None = None
    ) -> list[ApiEvent]:
        if container is None:
            return [e for e in pod_events(self.inp, pod) if reasons is None or e.reason in reasons]
        return container_events(self.inp, pod, container, reasons)


def make_ctx(inp: DiagnosisInput, th: Thresholds) -> Ctx | None:
    if inp.pod is not None:
        ns, name, uid = inp.pod.namespace, inp.pod.name, inp.pod.uid
    elif inp.view is not None:
        ns, name, uid = inp.view.namespace, inp.view.name, inp.view.runtime_uid or inp.view.uid
    else:
        return None
    return Ctx(inp, th, ns, name, Steps(inp, ns, name, uid))
