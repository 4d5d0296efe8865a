"""Containers that exit: crash loops, OOM kills, containers that failed for good.

Part of the rules: imports other rule modules, the domain and the standard library only.
"""

from __future__ import annotations

from datetime import datetime

from agent.diagnose._common import (
    Ctx,
    Target,
    age,
    dedupe,
    duration,
    earliest_event,
    event_evidence,
    restart_policy_of,
    targets,
    terminal,
    termination_evidence,
    will_restart,
)
from agent.diagnose._exitcodes import ExitMeaning, decode_exit, exit_text
from agent.diagnose._types import (
    Evidence,
    Finding,
)
from agent.domain.backoff import Backoff, current_backoff, go_duration
from agent.domain.kubemodel import ApiEvent, ApiPod, ContainerRole, ContainerStateInfo
from agent.domain.severity import Severity
from agent.domain.times import aware, iso

_PROBE_EVENTS = frozenset({"Killing", "Unhealthy"})


def runtime_id(container_id: str | None) -> str | None:
    if not container_id:
        return None
    _, sep, bare = container_id.partition("://")
    return bare if sep else container_id


def oom_counter(ctx: Ctx, name: str) -> int | None:
    kills = ctx.inp.oom_kills
    return None if kills is None else kills.get(name)


def exit_facts(
    ctx: Ctx, pod: ApiPod, target: Target, term: ContainerStateInfo, *, which: str
) -> tuple[ExitMeaning, list[Evidence]]:
    """The decoded exit of ``term`` and the evidence that goes with it."""
    m = decode_exit(
        term.exit_code or 0,
        reason=term.reason,
        signal=term.signal,
        restart_policy=restart_policy_of(pod, target),
        oom_kills=oom_counter(ctx, target.name),
    )
    evidence = [Evidence("exit-code", f"{which} exit code" if which else "exit code", exit_text(m))]
    evidence.extend(termination_evidence(term, ctx.now, ctx.th, which=which))
    return m, evidence


def liveness_kills(ctx: Ctx, pod: ApiPod, name: str) -> list[ApiEvent]:
    """Events saying kubelet restarted the container over its liveness probe."""
    return [
        ev
        for ev in ctx.events(pod, name, reasons=_PROBE_EVENTS)
        if "liveness probe" in (ev.message or "").lower()
    ]


def backoff_evidence(b: Backoff, restarts: int, now: datetime) -> list[Evidence]:
    if b.source == "message":
        where = "from kubelet's waiting message"
    else:
        where = f"computed from {restarts} restarts: 10s doubling up to 5m"
    out = [Evidence("check", "back-off step", f"{go_duration(b.step)} ({where})")]
    if b.next_try is not None:
        out.append(Evidence("check", "next restart", next_try_text(b.next_try, now)))
    return out


def next_try_text(next_try: datetime, now: datetime) -> str:
    if aware(next_try) > now:
        return f"{iso(next_try)} (in {duration(aware(next_try) - now)})"
    return f"{iso(next_try)} (due {duration(now - aware(next_try))} ago: on kubelet's next sync)"


def _crash_cause(
    ctx: Ctx, pod: ApiPod, target: Target, m: ExitMeaning, kills: list[ApiEvent]
) -> str:
    if kills and m.signal in (9, 15):
        probe = target.spec.liveness_probe or "its liveness probe"
        return (
            f"Kubelet restarted it because its liveness probe failed ({probe}); the process "
            "did not exit on its own. The probe may be too strict or start too early for the "
            "program."
        )
    return m.cause


def crash_steps(
    ctx: Ctx, target: Target, term: ContainerStateInfo, m: ExitMeaning, *, previous: bool = True
) -> list[str]:
    s = ctx.steps
    steps = [
        s.logs(target.name, previous=previous),
        *s.agent_logs(target.name, previous=previous),
        s.describe(),
        s.crictl_ps(target.name),
    ]
    if (rid := runtime_id(term.container_id)) is not None:
        steps.append(f"crictl inspect {rid}")
        steps.extend(s.agent_container(rid))
    if m.code in (126, 127, 128):
        group = "initContainers" if target.role is not ContainerRole.APP else "containers"
        steps.append(
            s.kubectl(
                f"get pod {s.name} -o jsonpath="
                f"'{{.spec.{group}[?(@.name==\"{target.name}\")].command}}'"
            )
        )
    return steps


def _since_loop(ctx: Ctx, pod: ApiPod, target: Target, term: ContainerStateInfo) -> datetime | None:
    started = earliest_event(ctx.events(pod, target.name, reasons=frozenset({"BackOff"})))
    return started or term.finished_at


def loop_finding(
    ctx: Ctx,
    pod: ApiPod,
    target: Target,
    *,
    rule: str,
    severity: Severity,
    term: ContainerStateInfo,
    which: str,
    headline: str,
) -> Finding:
    """A crash-loop style finding; shared by app containers, sidecars and init containers."""
    status = target.status
    assert status is not None
    m, evidence = exit_facts(ctx, pod, target, term, which=which)
    state = status.state
    front = [
        Evidence(
            "api",
            "state",
            f"{state.kind}:{state.reason}" if state.reason else str(state.kind or "none"),
        ),
        Evidence("api", "restart count", str(status.restart_count)),
    ]
    if state.is_waiting and state.message:
        front.append(Evidence("api", "waiting message", state.message))
    evidence = front + evidence
    b = current_backoff(status)
    when = ""
    if b is not None:
        evidence.extend(backoff_evidence(b, status.restart_count, ctx.now))
        if b.next_try is not None:
            when = "; next restart " + (
                f"in {duration(aware(b.next_try) - ctx.now)}"
                if aware(b.next_try) > ctx.now
                else "due now"
            )
        when += f" (back-off {go_duration(b.step)})"
    kills = liveness_kills(ctx, pod, target.name)
    evidence.extend(event_evidence(ev, ctx.now) for ev in kills[:2])
    backoffs = ctx.events(pod, target.name, reasons=frozenset({"BackOff"}))
    evidence.extend(event_evidence(ev, ctx.now) for ev in backoffs[:1])
    if (count := oom_counter(ctx, target.name)) is not None:
        evidence.append(Evidence("process", "cgroup OOM kills", str(count)))
    evidence.extend(ctx.logs(target.name, previous=state.is_waiting or state.is_running))
    if state.is_terminated:
        evidence.extend(ctx.logs(target.name, previous=False))
    ago = f" {duration(ctx.now - aware(term.finished_at))} ago" if term.finished_at else ""
    summary = (
        f"{target.label} of {ctx.where} {headline}: exited {exit_text(m)}{ago}, "
        f"{status.restart_count} restart{'s' if status.restart_count != 1 else ''}{when}"
    )
    return Finding(
        rule=rule,
        severity=severity,
        container=target.name,
        summary=summary,
        evidence=tuple(evidence),
        cause=_crash_cause(ctx, pod, target, m, kills),
        next_steps=dedupe(crash_steps(ctx, target, term, m)),
        since=_since_loop(ctx, pod, target, term),
    )


def crashloop(ctx: Ctx) -> list[Finding]:
    """App containers and sidecars exiting and being restarted."""
    pod = ctx.pod
    if pod is None or terminal(pod) or pod.deletion_timestamp is not None:
        return []
    out: list[Finding] = []
    for t in targets(pod):
        if t.role is ContainerRole.INIT or t.status is None:
            continue
        state, last = t.state, t.last_state
        policy = restart_policy_of(pod, t)
        if state.is_waiting and state.reason == "CrashLoopBackOff":
            term = last if last.is_terminated else ContainerStateInfo(kind="terminated")
            out.append(
                loop_finding(
                    ctx,
                    pod,
                    t,
                    rule="crashloop",
                    severity="error",
                    term=term,
                    which="last",
                    headline="is in CrashLoopBackOff",
                )
            )
        elif state.is_terminated and will_restart(policy, state.exit_code):
            out.append(
                loop_finding(
                    ctx,
                    pod,
                    t,
                    rule="crashloop",
                    severity="error" if t.restart_count > 0 else "warning",
                    term=state,
                    which="current",
                    headline="exited and is about to be restarted",
                )
            )
        elif (
            state.is_running
            and last.is_terminated
            and last.reason != "OOMKilled"
            and last.finished_at is not None
            and age(last.finished_at, ctx.now) <= ctx.th.recent_exit
        ):
            out.append(
                loop_finding(
                    ctx,
                    pod,
                    t,
                    rule="crashloop",
                    severity="warning",
                    term=last,
                    which="last",
                    headline="runs again after a recent exit",
                )
            )
    return out


def container_failed(ctx: Ctx) -> list[Finding]:
    """App containers that ended with an error and that kubelet will not restart."""
    pod = ctx.pod
    if pod is None:
        return []
    out: list[Finding] = []
    for t in targets(pod):
        if t.role is not ContainerRole.APP:
            continue
        state = t.state
        if not state.is_terminated or (state.exit_code == 0 and state.reason != "OOMKilled"):
            continue
        policy = restart_policy_of(pod, t)
        if will_restart(policy, state.exit_code) and not terminal(pod):
            continue
        m, evidence = exit_facts(ctx, pod, t, state, which="")
        evidence.insert(0, Evidence("api", "restartPolicy", policy))
        evidence.insert(1, Evidence("api", "pod phase", pod.phase or "unset"))
        evidence.extend(ctx.logs(t.name, previous=False))
        severity: Severity = "critical" if pod.phase == "Failed" else "error"
        fate = (
            "the pod has failed for good"
            if pod.phase == "Failed"
            else f"restartPolicy {policy} does not restart it"
        )
        out.append(
            Finding(
                rule="container-failed",
                severity=severity,
                container=t.name,
                summary=(
                    f"{t.label} of {ctx.where} failed with exit code {exit_text(m)}"
                    + (f" at {iso(state.finished_at)}" if state.finished_at else "")
                    + f"; {fate}"
                ),
                evidence=tuple(evidence),
                cause=m.cause,
                next_steps=dedupe(crash_steps(ctx, t, state, m, previous=False)),
                since=state.finished_at,
            )
        )
    return out


def _memory_evidence(target: Target) -> list[Evidence]:
    limits, requests = target.spec.limits, target.spec.requests
    out = [
        Evidence("api", "memory limit", limits.get("memory", "none")),
    ]
    if "memory" in requests:
        out.append(Evidence("api", "memory request", requests["memory"]))
    return out


def oom_killed(ctx: Ctx) -> list[Finding]:
    """Containers the kernel's OOM killer struck, by the API's reason or the cgroup counter."""
    pod = ctx.pod
    if pod is None:
        return []
    out: list[Finding] = []
    for t in targets(pod):
        state, last = t.state, t.last_state
        term: ContainerStateInfo | None = None
        if state.is_terminated and state.reason == "OOMKilled":
            term = state
        elif last.is_terminated and last.reason == "OOMKilled":
            term = last
        count = oom_counter(ctx, t.name)
        if term is None and not count:
            continue
        evidence = _memory_evidence(t)
        limit = t.spec.limits.get("memory")
        if count is not None:
            evidence.append(Evidence("process", "cgroup OOM kills (current instance)", str(count)))
        if term is None:
            evidence.extend(ctx.logs(t.name, previous=False))
            out.append(
                Finding(
                    rule="oom-killed",
                    severity="warning",
                    container=t.name,
                    summary=(
                        f"the OOM killer struck {count} time{'s' if count != 1 else ''} inside "
                        f"{t.label} of {ctx.where} (memory limit {limit or 'none'}); its main "
                        f"process survived"
                    ),
                    evidence=tuple(evidence),
                    cause=(
                        "A process inside the container (a worker or child) used more memory than "
                        "the container may, and the kernel killed it; the main process kept "
                        "running, so the API shows no OOMKilled."
                    ),
                    next_steps=dedupe(
                        [
                            ctx.steps.kubectl(f"top pod {ctx.name} --containers"),
                            ctx.steps.logs(t.name),
                            *ctx.steps.agent_logs(t.name),
                        ]
                    ),
                    since=None,
                )
            )
            continue
        m, exit_ev = exit_facts(ctx, pod, t, term, which="last" if term is last else "")
        evidence = [*exit_ev[:1], *evidence, *exit_ev[1:]]
        evidence.extend(ctx.logs(t.name, previous=term is last))
        recent = term.finished_at is None or age(term.finished_at, ctx.now) <= ctx.th.recent_exit
        severity: Severity = "error" if (not state.is_running or recent) else "warning"
        if limit:
            cause = (
                f"The container reached its memory limit of {limit} and the kernel killed it. "
                "Either it needs more memory than the limit allows, or it leaks."
            )
        else:
            cause = (
                "The container has no memory limit, so the kill came from memory pressure on "
                "the node or the pod's own cgroup; the node ran short of memory."
            )
        ago = f" {duration(ctx.now - aware(term.finished_at))} ago" if term.finished_at else ""
        running = " and runs again" if state.is_running else ""
        out.append(
            Finding(
                rule="oom-killed",
                severity=severity,
                container=t.name,
                summary=(
                    f"{t.label} of {ctx.where} was OOM-killed{ago} (memory limit "
                    f"{limit or 'none'}, exit {m.code}){running}"
                ),
                evidence=tuple(evidence),
                cause=cause,
                next_steps=dedupe(
                    [
                        ctx.steps.kubectl(f"top pod {ctx.name} --containers"),
                        ctx.steps.logs(t.name, previous=term is last),
                        *ctx.steps.agent_logs(t.name, previous=term is last),
                        _raise_limit_step(ctx, pod, t.name),
                    ]
                ),
                since=term.finished_at,
            )
        )
    return out


def _raise_limit_step(ctx: Ctx, pod: ApiPod, container: str) -> str:
    """Where a memory limit is changed: on the workload, since a pod's own limits are fixed."""
    controller = pod.controller
    if controller is None:
        return (
            f"raise resources.limits.memory of {container} in the pod's manifest and recreate "
            f"pod {pod.name}"
        )
    ref = f"{controller.kind.lower()}/{controller.name}"
    if controller.kind == "ReplicaSet" and pod.labels.get("pod-template-hash"):
        # The ReplicaSet is named after its Deployment plus "-<pod-template-hash>".
        head, sep, _ = controller.name.rpartition("-")
        if sep:
            ref = f"deployment/{head}"
    return ctx.steps.kubectl(f"set resources {ref} -c {container} --limits=memory=<more>")
