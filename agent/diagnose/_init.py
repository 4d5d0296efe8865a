"""Init containers that hold the pod back: waiting, crash-looping, failed.

Part of the rules: imports other rule modules, the domain and the standard library only.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from typing import Any

from agent.diagnose._common import (
    Ctx,
    Target,
    age,
    blocking_init,
    by_threshold,
    dedupe,
    duration,
    raw_container,
    terminal,
)
from agent.diagnose._crash import crash_steps, exit_facts, loop_finding
from agent.diagnose._exitcodes import exit_text
from agent.diagnose._types import (
    Evidence,
    Finding,
)
from agent.diagnose._waits import WaitTarget, service_for, wait_plan
from agent.domain.kubemodel import ApiPod, ContainerRole, ContainerSpec
from agent.domain.podstatus import status_strings
from agent.domain.severity import Severity
from agent.domain.times import iso


def _namespace_vars(pod: ApiPod, name: str) -> tuple[str, ...]:
    """Env variables of the container set from the pod's own namespace (downward API)."""
    env = raw_container(pod, name).get("env")
    if not isinstance(env, Sequence):
        return ()
    out: list[str] = []
    for item in env:
        if not isinstance(item, Mapping):
            continue
        ref: Any = item.get("valueFrom")
        ref = ref.get("fieldRef") if isinstance(ref, Mapping) else None
        var = item.get("name")
        if (
            isinstance(ref, Mapping)
            and ref.get("fieldPath") == "metadata.namespace"
            and isinstance(var, str)
        ):
            out.append(var)
    return tuple(out)


def _file_check(pod: ApiPod, spec: ContainerSpec, path: str) -> tuple[str, str]:
    """(evidence value, cause) for an init container waiting on a file."""
    covering = [
        m
        for m in spec.volume_mounts
        if path == m.mount_path or path.startswith(m.mount_path.rstrip("/") + "/")
    ]
    if not covering:
        return (
            "not on any volume of this container",
            f"It waits for file {path}, which is not on a volume: only the container itself "
            "could create it, so the wait never ends.",
        )
    mount = max(covering, key=lambda m: len(m.mount_path))
    sharers = [
        c.name
        for c in (*pod.init_containers, *pod.containers)
        if c.name != spec.name and any(m.name == mount.name for m in c.volume_mounts)
    ]
    sidecars = {c.name for c in pod.init_containers if c.is_restartable}
    writers = [n for n in sharers if n in sidecars]
    where = f"on volume {mount.name} (mounted at {mount.mount_path})"
    if writers:
        return (
            f"{where}, shared with sidecar {', '.join(writers)}",
            f"It waits for file {path} on volume {mount.name}; sidecar "
            f"{', '.join(writers)} shares it and is the only container running alongside.",
        )
    shared = f", also mounted by {', '.join(sharers)}" if sharers else ""
    return (
        f"{where}{shared}",
        f"It waits for file {path} on volume {mount.name}; while init containers run, no app "
        "container runs yet, so unless something outside the pod writes it (a pre-populated "
        "volume), it never appears.",
    )


def _target_check(ctx: Ctx, pod: ApiPod, target: WaitTarget) -> tuple[Evidence, str, list[str]]:
    """What can be said about one thing the container waits for: evidence, cause, steps."""
    s = ctx.steps
    host = target.host or ""
    svc = service_for(host, pod.namespace)
    what = target.what
    if svc is None:
        return (
            Evidence("check", what, "not a Service name of this cluster; not checked"),
            f"It waits for {what}, which must resolve and answer from inside the pod.",
            [s.kubectl(f"exec {pod.name} -c <init> -- nslookup {host}")],
        )
    name, ns = svc
    port = f" port {target.port}" if target.port else ""
    steps = [
        f"kubectl -n {ns} get service {name}",
        f"kubectl -n {ns} get endpointslices -l kubernetes.io/service-name={name}",
    ]
    if ns != pod.namespace:
        return (
            Evidence(
                "check",
                f"Service {name}",
                f"in namespace {ns}: not checked (only namespace {pod.namespace}'s Services "
                "are known here)",
            ),
            f"It waits for {what}, served by Service {name} in namespace {ns}.",
            steps,
        )
    if ctx.inp.services is None:
        return (
            Evidence(
                "check", f"Service {name}", f"in namespace {ns}: not checked (Services unknown)"
            ),
            f"It waits for {what}; it ends once Service {name} in namespace {ns} exists and "
            f"answers{port}.",
            steps,
        )
    if name in ctx.inp.services:
        return (
            Evidence("check", f"Service {name}", f"exists in namespace {ns}"),
            f"It waits for {what}, and Service {name} exists in namespace {ns}; so the wait is on "
            f"what stands behind it: no ready endpoints yet{port}, or the name does not resolve "
            "or answer from this pod.",
            steps,
        )
    return (
        Evidence("check", f"Service {name}", f"no Service named {name} in namespace {ns}"),
        f"It waits for {what}, and there is no Service named {name} in namespace {ns}; it loops "
        "until one is created (or the name in the command is a typo).",
        [f"kubectl -n {ns} get services", *steps],
    )


def init_waiting(ctx: Ctx) -> list[Finding]:
    """The init container the pod waits on has been running too long."""
    pod = ctx.pod
    if pod is None or terminal(pod) or pod.deletion_timestamp is not None:
        return []
    t = blocking_init(pod)
    if t is None or not t.state.is_running or t.state.started_at is None:
        return []
    since = t.state.started_at
    elapsed = age(since, ctx.now)
    severity = by_threshold(elapsed, ctx.th.init_waiting_warning, ctx.th.init_waiting_error)
    if severity is None:
        return []
    status = status_strings(pod, ctx.now).status
    spec = t.spec
    plan = wait_plan(
        spec.command,
        spec.args,
        namespace=pod.namespace,
        namespace_vars=_namespace_vars(pod, t.name),
    )
    evidence = [
        Evidence("api", "pod status", status),
        Evidence("api", "state", f"running since {iso(since)} ({duration(elapsed)})"),
    ]
    if plan.script:
        evidence.append(Evidence("api", "command", plan.script))
    if t.restart_count:
        evidence.append(Evidence("api", "restart count", str(t.restart_count)))
    causes: list[str] = []
    steps = [ctx.steps.logs(t.name), *ctx.steps.agent_logs(t.name)]
    if t.role is ContainerRole.SIDECAR:
        evidence.append(Evidence("api", "started", "false"))
        causes.append(
            "A sidecar must be started (its startup probe passed) before the next init "
            "container runs."
        )
    for target in plan.targets:
        if target.kind == "file" and target.path:
            value, cause = _file_check(pod, spec, target.path)
            evidence.append(Evidence("check", target.what, value))
            causes.append(cause)
            continue
        ev, cause, more = _target_check(ctx, pod, target)
        evidence.append(ev)
        causes.append(cause)
        steps.extend(step.replace("<init>", t.name) for step in more)
    if not causes:
        causes.append(
            "Init containers must exit 0, one after the other, before the app containers "
            "start; this one has not finished. Its log shows what it is doing."
        )
    evidence.extend(ctx.logs(t.name, previous=False))
    steps.append(ctx.steps.describe())
    waits = ""
    if plan.targets:
        waits = ", waiting for " + ", ".join(w.what for w in plan.targets)
    summary = (
        f"{t.label} ({t.index + 1} of {t.count}) of {ctx.where} has been running for "
        f"{duration(elapsed)} (since {iso(since)}){waits}; the pod stays {status}"
    )
    return [
        Finding(
            rule="init-waiting",
            severity=severity,
            container=t.name,
            summary=summary,
            evidence=tuple(evidence),
            cause=" ".join(causes),
            next_steps=dedupe(steps),
            since=since,
        )
    ]


def _position(t: Target) -> str:
    return f"{t.index + 1} of {t.count}"


def init_crashloop(ctx: Ctx) -> list[Finding]:
    """Init:CrashLoopBackOff, or the retry after it: the blocking init container keeps failing."""
    pod = ctx.pod
    if pod is None or terminal(pod) or pod.deletion_timestamp is not None:
        return []
    t = blocking_init(pod)
    if t is None or t.role is not ContainerRole.INIT or t.status is None:
        return []
    state, last = t.state, t.last_state
    term, which = last, "last"
    if _failed_again(pod, t):
        # The real kubelet shows Init:Error between two tries, most of the
        # time, not Init:CrashLoopBackOff: the loop is the restart count.
        headline = f"({_position(t)}) failed again and waits for kubelet's next try"
        severity: Severity = "error"
        term, which = state, "current"
    elif not last.is_terminated:
        return []
    elif state.is_waiting and state.reason == "CrashLoopBackOff":
        headline = f"({_position(t)}) is in Init:CrashLoopBackOff"
        severity = "error"
    elif (
        # Between two failures it runs (or is being started) again, and kubectl
        # shows only Init:i/N: the loop is still there, in lastState.
        (state.is_running or state.is_waiting)
        and last.exit_code not in (None, 0)
        and last.finished_at is not None
        and age(last.finished_at, ctx.now) <= ctx.th.recent_exit
    ):
        headline = f"({_position(t)}) failed and is being retried"
        severity = "error" if t.restart_count > 1 else "warning"
    else:
        return []
    return [
        loop_finding(
            ctx,
            pod,
            t,
            rule="init-crashloop",
            severity=severity,
            term=term,
            which=which,
            headline=headline,
        )
    ]


def _failed_again(pod: ApiPod, t: Target) -> bool:
    """The blocking init container failed after being restarted, and kubelet will retry it."""
    state = t.state
    policy = pod.restart_policy or "Always"
    return (
        state.is_terminated
        and state.exit_code not in (None, 0)
        and t.restart_count >= 1
        and policy != "Never"
        and pod.phase != "Failed"
    )


def init_failed(ctx: Ctx) -> list[Finding]:
    """Init:Error / Init:ExitCode:N / Init:OOMKilled: the blocking init container failed."""
    pod = ctx.pod
    if pod is None or pod.deletion_timestamp is not None:
        return []
    t = blocking_init(pod)
    if t is None or t.role is not ContainerRole.INIT:
        return []
    state = t.state
    if not state.is_terminated or state.exit_code == 0:
        return []
    if t.status is not None and _failed_again(pod, t):
        return []  # a repeated failure: init-crashloop tells it
    m, evidence = exit_facts(ctx, pod, t, state, which="")
    status = status_strings(pod, ctx.now).status
    policy = pod.restart_policy or "Always"
    never = policy == "Never" or pod.phase == "Failed"
    evidence = [
        Evidence("api", "pod status", status),
        Evidence("api", "pod phase", pod.phase or "unset"),
        Evidence("api", "restartPolicy", policy),
        *evidence,
        *ctx.logs(t.name, previous=False),
    ]
    severity: Severity = "critical" if never else "error"
    if never:
        fate = "restartPolicy Never: the pod is Failed for good and its app containers never start"
        cause = (
            f"{m.cause} Under restartPolicy Never a failed init container fails the whole pod; "
            "it has to be fixed and the pod recreated."
        )
    else:
        fate = f"kubelet retries it after a back-off (restartPolicy {policy})"
        cause = m.cause
    command = shlex.join((*t.spec.command, *t.spec.args))
    if command:
        evidence.insert(3, Evidence("api", "command", command))
    return [
        Finding(
            rule="init-failed",
            severity=severity,
            container=t.name,
            summary=(
                f"{t.label} ({_position(t)}) of {ctx.where} failed with exit code {exit_text(m)}"
                f" ({status}); {fate}"
            ),
            evidence=tuple(evidence),
            cause=cause,
            next_steps=dedupe(crash_steps(ctx, t, state, m, previous=False)),
            since=state.finished_at,
        )
    ]
