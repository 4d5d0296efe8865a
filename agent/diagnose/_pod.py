"""Pod-level states: not ready, stuck creating, stuck terminating, evicted, unknown, unscheduled.

Part of the rules: imports other rule modules, the domain and the standard library only.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from agent.diagnose._bounds import bounded
from agent.diagnose._common import (
    Ctx,
    Target,
    age,
    blocking_init,
    bound,
    by_threshold,
    dedupe,
    duration,
    earliest_event,
    event_evidence,
    initialized,
    raw_names,
    restart_policy_of,
    targets,
    terminal,
    will_restart,
)
from agent.diagnose._config import missing_config
from agent.diagnose._crash import exit_facts
from agent.diagnose._exitcodes import exit_text
from agent.diagnose._types import (
    Evidence,
    Finding,
)
from agent.domain.kubemodel import ApiEvent, ApiPod, ContainerRole
from agent.domain.model import ContainerState, SandboxState
from agent.domain.podstatus import status_strings
from agent.domain.severity import Severity
from agent.domain.times import iso

_CREATING_REASONS = frozenset({None, "ContainerCreating", "PodInitializing"})
_CREATING_EVENTS = frozenset(
    {
        "FailedMount",
        "FailedAttachVolume",
        "FailedMapVolume",
        "FailedCreatePodSandBox",
        "FailedCreatePodContainer",
        "NetworkNotReady",
        "FailedSync",
        "Pulling",
        "Pulled",
    }
)


# --------------------------------------------------------------------------
# not-ready
# --------------------------------------------------------------------------


def not_ready(ctx: Ctx) -> list[Finding]:
    """Running containers that are not ready, and containers down for good in a running pod."""
    pod = ctx.pod
    if pod is None or terminal(pod) or pod.deletion_timestamp is not None:
        return []
    if pod.init_containers and not initialized(pod) and blocking_init(pod) is not None:
        return []
    strings = status_strings(pod, ctx.now)
    out: list[Finding] = []
    for t in targets(pod):
        if t.role is ContainerRole.INIT or t.status is None:
            continue
        state = t.state
        if state.is_running and not t.status.ready and state.started_at is not None:
            elapsed = age(state.started_at, ctx.now)
            if elapsed <= ctx.th.not_ready_warning:
                continue
            out.append(_probe_failing(ctx, pod, t, elapsed, strings.ready))
        elif state.is_terminated and not will_restart(restart_policy_of(pod, t), state.exit_code):
            if state.exit_code != 0 and t.role is ContainerRole.APP:
                continue  # container-failed says it, with the exit code
            if not any(o.state.is_running for o in targets(pod) if o.name != t.name):
                continue  # the whole pod finished: nothing is "not ready"
            out.append(_down_for_good(ctx, pod, t, strings.ready))
    return out


def _probe_failing(ctx: Ctx, pod: ApiPod, t: Target, elapsed: timedelta, ready: str) -> Finding:
    started = t.state.started_at
    assert started is not None
    spec = t.spec
    unhealthy = [
        ev
        for ev in ctx.events(pod, t.name, reasons=frozenset({"Unhealthy"}))
        if "readiness" in (ev.message or "").lower() or "startup" in (ev.message or "").lower()
    ]
    evidence = [
        Evidence("api", "pod READY", ready),
        Evidence("api", "state", f"running since {iso(started)}, ready=false"),
        Evidence("api", "readiness probe", spec.readiness_probe or "none"),
    ]
    if spec.startup_probe:
        evidence.append(Evidence("api", "startup probe", spec.startup_probe))
    if t.status is not None and t.status.started is False:
        evidence.append(Evidence("api", "started", "false"))
    evidence.extend(event_evidence(ev, ctx.now) for ev in unhealthy[:2])
    evidence.extend(ctx.logs(t.name, previous=False))
    if t.status is not None and t.status.started is False and spec.startup_probe:
        cause = (
            "Its startup probe has not passed yet; until it does, readiness and liveness are not "
            "checked and the container receives no traffic."
        )
    elif unhealthy:
        cause = (
            "Its readiness probe keeps failing (see the events), so it is left out of the "
            "Service's endpoints: the program is not listening where the probe looks yet, or "
            "answers with an error."
        )
    elif spec.readiness_probe:
        cause = (
            "Its readiness probe has not succeeded; the probe may point at the wrong port or "
            "path, or the program is still starting."
        )
    else:
        cause = (
            "Without a readiness probe a running container is ready unless kubelet has not "
            "caught up, or a pod readiness gate holds it back."
        )
    return Finding(
        rule="not-ready",
        severity="warning",
        container=t.name,
        summary=(
            f"{t.label} of {ctx.where} has been running for {duration(elapsed)} "
            f"(since {iso(started)}) but is not ready; the pod shows {ready}"
        ),
        evidence=tuple(evidence),
        cause=cause,
        next_steps=dedupe(
            [
                ctx.steps.describe(),
                ctx.steps.logs(t.name),
                *ctx.steps.agent_logs(t.name),
                ctx.steps.events(),
            ]
        ),
        since=started,
    )


def _down_for_good(ctx: Ctx, pod: ApiPod, t: Target, ready: str) -> Finding:
    state = t.state
    policy = restart_policy_of(pod, t)
    m, evidence = exit_facts(ctx, pod, t, state, which="")
    evidence = [
        Evidence("api", "pod READY", ready),
        Evidence("api", "restartPolicy", policy),
        *evidence,
        *ctx.logs(t.name, previous=False),
    ]
    return Finding(
        rule="not-ready",
        severity="warning",
        container=t.name,
        summary=(
            f"{t.label} of {ctx.where} has ended ({exit_text(m)}) and restartPolicy {policy} "
            f"will not restart it; the pod shows {ready}"
        ),
        evidence=tuple(evidence),
        cause=(
            "The container's command finished while the others keep running. A helper meant to "
            "run alongside (a sidecar, an ambassador) needs a command that does not return; one "
            "meant to run first belongs in initContainers."
        ),
        next_steps=dedupe(
            [ctx.steps.logs(t.name), *ctx.steps.agent_logs(t.name), ctx.steps.describe()]
        ),
        since=state.finished_at,
    )


# --------------------------------------------------------------------------
# stuck-creating
# --------------------------------------------------------------------------


def _never_ran(t: Target) -> bool:
    state = t.state
    if state.is_running or state.is_terminated:
        return False
    if state.is_waiting and state.reason not in _CREATING_REASONS:
        return False
    return t.restart_count == 0 and t.last_state.kind is None


def _scheduled_at(pod: ApiPod) -> datetime | None:
    cond = pod.condition("PodScheduled")
    if cond is not None and cond.is_true and cond.last_transition_time is not None:
        return cond.last_transition_time
    return pod.start_time or pod.creation_timestamp


def _creating_target(pod: ApiPod) -> tuple[Target, datetime | None] | None:
    """The container the pod waits to create, and since when it waits."""
    all_targets = targets(pod)
    if not initialized(pod):
        blocking = blocking_init(pod)
        if blocking is not None:
            if not _never_ran(blocking):
                return None
            if blocking.index == 0:
                return blocking, _scheduled_at(pod)
            before = all_targets[blocking.index - 1].state
            return blocking, before.finished_at or _scheduled_at(pod)
    for t in all_targets:
        if t.role is not ContainerRole.APP or not _never_ran(t):
            continue
        if pod.init_containers:
            cond = pod.condition("Initialized")
            since = cond.last_transition_time if cond is not None else None
            return t, since or _scheduled_at(pod)
        return t, _scheduled_at(pod)
    return None


def _creating_cause(events: list[ApiEvent], image: str | None) -> str:
    for ev in events:
        msg = ev.message or ""
        if ev.reason == "FailedMount":
            missing = missing_config(msg)
            if missing is not None and missing.kind in ("ConfigMap", "Secret"):
                return (
                    f"A volume cannot be mounted because {missing.what} does not exist; kubelet "
                    "retries and the pod starts once it is created."
                )
            vol = re.search(r'volume "([^"]+)"', bounded(msg))
            named = f" {vol.group(1)}" if vol else ""
            return (
                f"Volume{named} cannot be mounted (see the FailedMount event): a missing object, "
                "a storage backend that does not answer, or a claim that is not bound."
            )
        if ev.reason in ("FailedAttachVolume", "FailedMapVolume"):
            return (
                "A volume cannot be attached to this node: often a disk still attached to "
                "another node, or a CSI driver that is not running here."
            )
        if ev.reason in ("FailedCreatePodSandBox", "NetworkNotReady"):
            return (
                "The runtime cannot create the pod sandbox; most often the pod network (CNI "
                "plugin) fails to set up, as the event says."
            )
    reasons = [ev.reason for ev in events]
    if "Pulling" in reasons and (
        "Pulled" not in reasons or reasons.index("Pulling") < reasons.index("Pulled")
    ):
        return f"The image {image or ''} is still being pulled; a large image or a slow registry."
    return (
        "Kubelet has not reported progress for this container; its events and the kubelet log on "
        "the node say why."
    )


def stuck_creating(ctx: Ctx) -> list[Finding]:
    pod = ctx.pod
    if pod is None or terminal(pod) or pod.deletion_timestamp is not None or not bound(pod):
        return []
    found = _creating_target(pod)
    if found is None:
        return []
    t, since = found
    if since is None:
        return []
    elapsed = age(since, ctx.now)
    severity = by_threshold(elapsed, ctx.th.creating_warning, ctx.th.creating_error)
    if severity is None:
        return []
    status = status_strings(pod, ctx.now).status
    pod_events = [
        ev for ev in ctx.events(pod, reasons=_CREATING_EVENTS) if ev.involved_field_path is None
    ]
    own = ctx.events(pod, t.name, reasons=_CREATING_EVENTS)
    events = pod_events + own
    evidence = [
        Evidence("api", "pod status", status),
        Evidence(
            "api",
            "state",
            f"waiting:{t.state.reason}" if t.state.reason else "no status reported yet",
        ),
    ]
    evidence.extend(event_evidence(ev, ctx.now) for ev in events[:3])
    view = ctx.inp.view
    if view is not None:
        sb = view.current_sandbox
        if sb is None:
            evidence.append(Evidence("runtime", "sandbox", "none on this node"))
        else:
            pause = f", pause PID {sb.pause_pid}" if sb.pause_pid else ""
            evidence.append(
                Evidence(
                    "runtime",
                    "sandbox",
                    f"{sb.id[:13]} {sb.state.value} (attempt {sb.attempt}{pause})",
                )
            )
        cv = view.container(t.name)
        if cv is not None and cv.current is not None:
            evidence.append(Evidence("runtime", "container", f"{cv.current.id[:13]} {cv.state}"))
    what = "init container" if t.role is not ContainerRole.APP else "container"
    summary = (
        f"{what} {t.name} of {ctx.where} has not been created after {duration(elapsed)}"
        f" (since {iso(since)}); the pod shows {status}"
    )
    steps = [ctx.steps.describe(), ctx.steps.events()]
    if view is not None and view.current_sandbox is not None:
        steps.append(f"crictl inspectp {view.current_sandbox.id}")
    else:
        steps.append(f"crictl pods --name {pod.name} --namespace {pod.namespace}")
    steps.append("journalctl -u kubelet --since '-10m' | grep " + pod.name)
    return [
        Finding(
            rule="stuck-creating",
            severity=severity,
            container=t.name,
            summary=summary,
            evidence=tuple(evidence),
            cause=_creating_cause(events, t.spec.image),
            next_steps=dedupe(steps),
            since=since,
        )
    ]


# --------------------------------------------------------------------------
# terminating-stuck
# --------------------------------------------------------------------------


def terminating_stuck(ctx: Ctx) -> list[Finding]:
    pod = ctx.pod
    if pod is None or pod.deletion_timestamp is None:
        return []
    deadline = pod.deletion_timestamp
    overdue = age(deadline, ctx.now)
    severity = by_threshold(overdue, ctx.th.terminating_warning, ctx.th.terminating_error)
    if severity is None:
        return []
    grace = pod.deletion_grace_period_seconds
    requested = deadline if grace is None else deadline - timedelta(seconds=grace)
    finalizers = raw_names(pod.raw, "metadata", "finalizers")
    running = [t.name for t in targets(pod) if t.state.is_running]
    evidence = [
        Evidence("api", "deletionTimestamp", f"{iso(deadline)} ({duration(overdue)} ago)"),
        Evidence("api", "grace period", f"{grace}s" if grace is not None else "unknown"),
        Evidence("api", "phase", pod.phase or "unset"),
        Evidence("api", "finalizers", ", ".join(finalizers) or "none"),
        Evidence("api", "containers running (API)", ", ".join(running) or "none"),
    ]
    runtime_running: list[str] = []
    view = ctx.inp.view
    if view is not None:
        for cv in view.containers:
            if cv.current is not None and cv.current.state is ContainerState.RUNNING:
                runtime_running.append(f"{cv.name} (PID {cv.pid})" if cv.pid else cv.name)
        ready = [sb for sb in view.sandboxes if sb.state is SandboxState.READY]
        evidence.append(
            Evidence("runtime", "containers running", ", ".join(runtime_running) or "none")
        )
        evidence.append(Evidence("runtime", "ready sandboxes", str(len(ready))))
    s = ctx.steps
    steps = [s.kubectl(f"get pod {pod.name} -o jsonpath='{{.metadata.finalizers}}'"), s.describe()]
    if finalizers:
        cause = (
            f"Finalizer{'s' if len(finalizers) > 1 else ''} {', '.join(finalizers)} keep the pod "
            "object until the controller that owns them removes them; kubelet has no part in it."
        )
        steps.append(
            s.kubectl(
                f'patch pod {pod.name} --type=merge -p \'{{"metadata":{{"finalizers":null}}}}\''
            )
            + "   # only once that controller is known to be gone"
        )
    elif runtime_running or (view is None and running):
        cause = (
            "Containers still run past the grace period: kubelet's stop has not completed (a "
            "process stuck in uninterruptible I/O, a runtime or CNI teardown failing)."
        )
        steps.extend([s.crictl_ps(), "journalctl -u kubelet --since '-15m' | grep " + pod.name])
    elif pod.reason == "NodeLost" or (view is None and not ctx.inp.api_available):
        cause = (
            f"The node {pod.node_name or ''} is unreachable, so no kubelet confirms the deletion; "
            "the pod object stays until the node returns or is deleted."
        )
    else:
        cause = (
            f"Nothing runs any more, but kubelet on {pod.node_name or 'the node'} has not "
            "confirmed the deletion: kubelet is down or cannot reach the API server."
        )
    steps.append(s.kubectl(f"delete pod {pod.name} --grace-period=0 --force") + "   # last resort")
    return [
        Finding(
            rule="terminating-stuck",
            severity=severity,
            container=None,
            summary=(
                f"pod {ctx.where} has been terminating since {iso(requested)}; its grace period "
                f"ran out {duration(overdue)} ago"
            ),
            evidence=tuple(evidence),
            cause=cause,
            next_steps=dedupe(steps),
            since=requested,
        )
    ]


# --------------------------------------------------------------------------
# evicted
# --------------------------------------------------------------------------

_LOW_ON = re.compile(r"low on resource: (?P<resource>[\w.-]+)", re.I)
_USAGE = re.compile(
    r"Container (?P<c>\S+) was using (?P<used>\S+), "
    r"(?:request|which exceeds its request) is (?P<req>[^,.\s]+)",
    re.I,
)


def evicted(ctx: Ctx) -> list[Finding]:
    pod = ctx.pod
    if pod is None or pod.reason != "Evicted":
        return []
    message = pod.message or ""
    evidence = [
        Evidence("api", "phase", pod.phase or "unset"),
        Evidence("api", "reason", "Evicted"),
    ]
    if message:
        evidence.append(Evidence("api", "message", message))
    low = _LOW_ON.search(bounded(message))
    resource = low.group("resource").rstrip(".") if low else None
    for m in _USAGE.finditer(bounded(message)):
        evidence.append(
            Evidence(
                "api", f"usage of {m.group('c')}", f"{m.group('used')} (request {m.group('req')})"
            )
        )
    cond = pod.condition("DisruptionTarget")
    since = cond.last_transition_time if cond is not None else None
    controller = pod.controller
    severity: Severity = "error" if controller is not None else "critical"
    replaced = (
        f"its {controller.kind} {controller.name} creates a replacement"
        if controller is not None
        else "nothing recreates it: it was a bare pod"
    )
    if resource:
        cause = (
            f"The node ran low on {resource} and kubelet evicted pods to recover, starting with "
            f"those using the most {resource} above their requests."
        )
    else:
        cause = "Kubelet evicted the pod (node pressure); the message says which resource."
    node = pod.node_name or "<node>"
    return [
        Finding(
            rule="evicted",
            severity=severity,
            container=None,
            summary=(
                f"pod {ctx.where} was evicted from {node}"
                + (f" (node low on {resource})" if resource else "")
                + f"; {replaced}"
            ),
            evidence=tuple(evidence),
            cause=cause,
            next_steps=dedupe(
                [
                    f"kubectl describe node {node}",
                    ctx.steps.kubectl("get pods --field-selector=status.phase=Failed"),
                    ctx.steps.kubectl(f"delete pod {pod.name}")
                    + "   # evicted pods stay as records",
                ]
            ),
            since=since,
        )
    ]


# --------------------------------------------------------------------------
# container-status-unknown
# --------------------------------------------------------------------------


def container_status_unknown(ctx: Ctx) -> list[Finding]:
    pod = ctx.pod
    if pod is None:
        return []
    out: list[Finding] = []
    if pod.phase == "Unknown" or pod.reason == "NodeLost":
        out.append(
            Finding(
                rule="container-status-unknown",
                severity="error",
                container=None,
                summary=(
                    f"pod {ctx.where} has status Unknown: its node {pod.node_name or ''} "
                    "stopped reporting"
                ),
                evidence=(
                    Evidence("api", "phase", pod.phase or "unset"),
                    Evidence("api", "reason", pod.reason or "none"),
                    *((Evidence("api", "message", pod.message),) if pod.message else ()),
                ),
                cause=(
                    "The node's kubelet has not reported for too long (node down, network cut, "
                    "kubelet stopped), so nobody knows what the containers do."
                ),
                next_steps=(f"kubectl get node {pod.node_name or '<node>'}", ctx.steps.describe()),
                since=None,
            )
        )
    for t in targets(pod):
        for which, st in (("", t.state), ("last", t.last_state)):
            if not st.is_terminated or st.reason != "ContainerStatusUnknown":
                continue
            if (
                which == "last"
                and t.state.is_running
                and st.finished_at is not None
                and age(st.finished_at, ctx.now) > ctx.th.recent_exit
            ):
                continue
            out.append(
                Finding(
                    rule="container-status-unknown",
                    severity="warning",
                    container=t.name,
                    summary=(
                        f"{t.label} of {ctx.where}: kubelet lost track of it "
                        f"(ContainerStatusUnknown, exit {st.exit_code})"
                    ),
                    evidence=(
                        Evidence(
                            "api", f"{which + ' ' if which else ''}reason", "ContainerStatusUnknown"
                        ),
                        Evidence(
                            "exit-code",
                            "exit code",
                            f"{st.exit_code} (set by kubelet, not by the process)",
                        ),
                        *((Evidence("api", "message", st.message),) if st.message else ()),
                    ),
                    cause=(
                        "The runtime no longer knows the container kubelet last saw running (the "
                        "node rebooted, the runtime's state was lost, or it was removed behind "
                        "kubelet's back), so kubelet recorded it as terminated with 137."
                    ),
                    next_steps=dedupe([ctx.steps.describe(), ctx.steps.crictl_ps(t.name)]),
                    since=st.finished_at,
                )
            )
            break
    return out


# --------------------------------------------------------------------------
# unschedulable
# --------------------------------------------------------------------------


def unschedulable(ctx: Ctx) -> list[Finding]:
    pod = ctx.pod
    if pod is None or pod.node_name or terminal(pod):
        return []
    cond = pod.condition("PodScheduled")
    if cond is None or cond.is_true:
        return []
    message = cond.message
    since = cond.last_transition_time or pod.creation_timestamp
    if cond.reason != "Unschedulable":
        # A fragment may keep the condition's status without its reason
        # (``kubectl describe`` prints only Type and Status); the scheduler's
        # FailedScheduling events then say the same.
        failed = ctx.events(pod, reasons=frozenset({"FailedScheduling"}))
        if cond.reason is not None or not pod.partial or not failed:
            return []
        message = message or failed[0].message
        since = since or earliest_event(failed)
    severity: Severity = "warning"
    if since is not None and age(since, ctx.now) > ctx.th.unschedulable_error:
        severity = "error"
    return [
        Finding(
            rule="unschedulable",
            severity=severity,
            container=None,
            summary=(
                f"pod {ctx.where} cannot be scheduled"
                + (f" (since {iso(since)})" if since else "")
                + f": {message or 'no node fits'}"
            ).replace("\n", " "),
            evidence=(
                Evidence(
                    "api",
                    "PodScheduled",
                    f"False: {cond.reason}" if cond.reason else "False (no reason given)",
                ),
            )
            + ((Evidence("api", "scheduler message", message),) if message else ()),
            cause=(
                "No node satisfies the pod's requests, selectors, affinities and tolerations; "
                "the scheduler's message counts the nodes rejected per reason."
            ),
            next_steps=(ctx.steps.describe(), "kubectl describe nodes | grep -A5 -i taints"),
            since=since,
        )
    ]
