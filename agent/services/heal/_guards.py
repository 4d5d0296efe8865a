"""Preflight for kill-and-watch: every refusal with its reason, and the plan when allowed.

Pure over what it is given (settings, the joined pod view, the agent's own
identity, the clock), so every guard is table-testable.

Part of the heal service: imports ``_run``, the domain, the errors and the settings; no
adapter.
"""

from __future__ import annotations

import signal as signals
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from agent.domain.backoff import BACKOFF_RESET, INITIAL_BACKOFF, MAX_BACKOFF, backoff_for_restarts
from agent.domain.kubemodel import ApiPod, ContainerRole, ContainerStatus
from agent.domain.model import ContainerState, SandboxState
from agent.domain.podview import PodView
from agent.errors import Conflict, Forbidden, Inapplicable, NotFound
from agent.services.heal._run import Plan, Target
from agent.settings import Settings

# Signals whose default action ends a process with a non-zero status that a
# process cannot catch: kubelet restarts the container under OnFailure.
_UNCATCHABLE = {signals.SIGKILL}
# What kill-and-watch may send: each ends a process that does not catch it,
# so kubelet sees an exit and restarts the container.
_ALLOWED_SIGNALS = frozenset({int(signals.SIGKILL), int(signals.SIGTERM)})
# The two built-in classes (scheduling.k8s.io), and the floor of the range
# reserved for them: user-defined classes may not go above one billion.
_SYSTEM_PRIORITY_CLASSES = frozenset({"system-node-critical", "system-cluster-critical"})
_SYSTEM_PRIORITY_MIN = 2_000_000_000


@dataclass(frozen=True, slots=True)
class KillRequest:
    """What a kill-and-watch request asks for, its signal already parsed."""

    container: str | None
    sandbox: bool
    signal: int
    timeout_seconds: float
    dry_run: bool


@dataclass(frozen=True, slots=True)
class AgentIdentity:
    """Who the agent is, so it never targets itself."""

    pod_namespace: str | None
    pod_name: str | None
    container_id: str | None  # from the agent's own cgroup, when it runs in one


def parse_signal(value: str | int) -> int:
    """SIGKILL, KILL, kill or 9 -> 9 (SIGTERM alike); any other signal is refused naming the two."""
    number: int | None = None
    # Only plain ASCII digits are numbers here: str.isdigit() also accepts
    # characters like "²" that int() cannot read.
    if isinstance(value, int) or (
        isinstance(value, str) and value.isascii() and value.isdecimal() and len(value) <= 3
    ):
        number = int(value)
    else:
        name = value.strip().upper()
        name = name if name.startswith("SIG") else "SIG" + name
        if name in signals.Signals.__members__:
            number = int(signals.Signals[name])
    if number in _ALLOWED_SIGNALS:
        return number
    known = number is not None and number in {int(s) for s in signals.Signals}
    what = "not a kill-and-watch signal" if known else "unknown signal"
    raise Inapplicable(
        f"{what} {value!r}: only SIGKILL (9) and SIGTERM (15) are accepted. Other signals "
        "heal nothing: SIGSTOP freezes the pod, and the rest may be caught and ignored",
        rule="bad-signal",
        allowed=["SIGKILL", "SIGTERM"],
    )


def _system_priority(pod: ApiPod) -> bool:
    """Whether the pod runs at a system priority, wherever its namespace is."""
    spec = pod.raw.get("spec")
    name = spec.get("priorityClassName") if isinstance(spec, Mapping) else None
    # The class name is what admission resolves; the number is what it put in
    # the spec, and covers a pod read without its class name.
    if name in _SYSTEM_PRIORITY_CLASSES:
        return True
    return pod.priority is not None and pod.priority >= _SYSTEM_PRIORITY_MIN


def check_allowed(settings: Settings, view: PodView, me: AgentIdentity) -> None:
    """The guards that do not depend on the target container."""
    pod = view.pod
    where = f"{view.namespace}/{view.name}"
    if not settings.enable_kill:
        raise Forbidden(
            "kill-and-watch is disabled on this agent; start it with --enable-kill "
            "(and --kill-namespaces or the opt-in label) to allow it",
            rule="kill-disabled",
        )
    if (view.namespace, view.name) == (me.pod_namespace, me.pod_name):
        raise Forbidden(f"{where} is the agent's own pod; it never kills itself", rule="own-pod")
    system = view.namespace == "kube-system" or (
        pod is not None
        and (
            pod.is_mirror
            or pod.annotations.get("kubernetes.io/config.source", "api") != "api"
            or _system_priority(pod)
        )
    )
    if system and not settings.kill_allow_system:
        raise Forbidden(
            f"{where} is a system pod (in kube-system, static, or of priority class "
            "system-node-critical or system-cluster-critical); refused unless the agent runs "
            "with --kill-allow-system",
            rule="system-pod",
        )
    labelled = pod is not None and pod.labels.get(settings.kill_opt_in_label) == "true"
    if view.namespace not in settings.kill_namespaces and not labelled:
        allowed = ", ".join(settings.kill_namespaces) or "none"
        raise Forbidden(
            f"namespace {view.namespace} is not in the kill allowlist ({allowed}) and the pod "
            f"lacks the opt-in label {settings.kill_opt_in_label}=true",
            rule="not-allowed",
        )
    if pod is None:
        raise Conflict(
            f"{where} is unknown to the API server (an orphan or the API is unavailable): "
            "kubelet would not recreate it, so there is nothing to watch heal",
            rule="api-unknown",
        )


def expected_restart_delay(status: ContainerStatus | None, now: datetime) -> tuple[float, str]:
    """How long kubelet's backoff will hold the restart that the kill causes."""
    last = status.last_state if status is not None else None
    finished = last.finished_at if last is not None and last.kind == "terminated" else None
    if finished is None or now - finished > BACKOFF_RESET:
        return 0.0, (
            "no exit in the last 10 minutes: kubelet restarts it at once "
            "(plus up to ~1 s for its relist and sync)"
        )
    restarts = status.restart_count if status is not None else 1
    lower = INITIAL_BACKOFF.total_seconds()
    upper = max(backoff_for_restarts(restarts), INITIAL_BACKOFF).total_seconds()
    ago = int((now - finished).total_seconds())
    return lower, (
        f"the previous exit was {ago}s ago, inside kubelet's 10-minute backoff window: "
        f"the restart waits at least {lower:.0f}s and at most {upper:.0f}s "
        f"(doubling per recent exit, capped at {MAX_BACKOFF.total_seconds():.0f}s)"
    )


def plan_kill(
    settings: Settings,
    view: PodView,
    request: KillRequest,
    me: AgentIdentity,
    now: datetime,
) -> Plan:
    """Check every guard for this target; return the plan or raise the refusal."""
    check_allowed(settings, view, me)
    pod = view.pod
    assert pod is not None  # check_allowed refuses API-unknown pods
    where = f"{view.namespace}/{view.name}"
    name = signals.Signals(request.signal).name

    if request.sandbox:
        sandbox = view.current_sandbox
        if sandbox is None or sandbox.state != SandboxState.READY:
            raise Conflict(f"{where} has no ready sandbox to kill", rule="not-running")
        if sandbox.pause_pid is None:
            raise Conflict(
                f"{where} has no pause process: "
                f"{sandbox.pause_pid_note or 'the runtime runs none'}",
                rule="no-pause-process",
            )
        grace = pod.termination_grace_period_seconds
        grace = 30 if grace is None else grace  # the API server's default
        if pod.restart_policy == "Never":
            raise Inapplicable(
                f"{where} has restartPolicy Never: after its sandbox dies kubelet will not start "
                "its containers again, so the pod would fail instead of healing",
                rule="restart-policy",
            )
        target = Target(
            namespace=view.namespace,
            pod=view.name,
            pod_uid=view.uid,
            container=None,
            container_id=sandbox.id,
            sandbox_id=sandbox.id,
            pid=sandbox.pause_pid,
            pid_started_at=now,  # replaced by the caller with the process's real start time
            attempt=sandbox.attempt,
            restart_count=None,
        )
        # The recovery is as slow as the longest back-off among the containers
        # kubelet restarts; each is started again only once its own back-off ends.
        held, held_by, held_why = 0.0, "", ""
        for c in view.containers:
            if c.role not in (ContainerRole.APP, ContainerRole.SIDECAR):
                continue
            delay, why = expected_restart_delay(c.api_status, now)
            if delay > held:
                held, held_by, held_why = delay, c.name, why
        return Plan(
            target=target,
            signal=request.signal,
            signal_name=name,
            timeout_seconds=request.timeout_seconds,
            expected_attempt=sandbox.attempt + 1,
            expected_delay_seconds=held,
            expected_delay_reason=(
                "kubelet notices the dead sandbox at its next relist (~1 s), stops the pod's "
                "containers (each may take up to the pod's terminationGracePeriodSeconds, "
                f"{grace}s, "
                "if it ignores SIGTERM), recreates the sandbox with attempt + 1, then reruns "
                "every init container; containers that exited in the last 10 minutes wait "
                "their backoff" + (f" ({held_by}: {held_why})" if held_by else "")
            ),
            restart_policy=pod.restart_policy or "Always",
            steps=(
                f"send {name} to pause PID {sandbox.pause_pid} through a pidfd",
                "watch the runtime mark the sandbox not ready",
                f"watch kubelet create sandbox attempt {sandbox.attempt + 1}",
                "watch the init containers rerun and the app containers start",
                "watch the API report the pod ready again",
            ),
        )

    container_name = request.container or ""
    match = next((c for c in view.containers if c.name == container_name), None)
    if match is None:
        names = ", ".join(c.name for c in view.containers) or "none"
        raise NotFound(
            f"pod {where} has no container {container_name!r}; its containers: {names}",
            containers=[c.name for c in view.containers],
        )
    current = match.current
    if current is None or current.state != ContainerState.RUNNING or match.pid is None:
        raise Conflict(
            f"container {container_name} of {where} is not running ({match.state}); "
            "only a running process can be killed",
            rule="not-running",
        )
    role = match.role
    policy = pod.restart_policy or "Always"
    restarts_anyway = role == ContainerRole.SIDECAR
    if not restarts_anyway and policy == "Never":
        raise Inapplicable(
            f"{where} has restartPolicy Never: kubelet will not restart {container_name} after "
            "it dies, so there would be nothing to heal",
            rule="restart-policy",
        )
    if not restarts_anyway and policy == "OnFailure" and request.signal not in _UNCATCHABLE:
        raise Inapplicable(
            f"{where} has restartPolicy OnFailure and {name} can be caught: if {container_name} "
            "exits cleanly (0) kubelet will not restart it. Use SIGKILL, which always ends "
            "with 137",
            rule="restart-policy",
        )
    if role == ContainerRole.INIT:
        raise Conflict(f"{container_name} is an init container that runs once", rule="not-running")
    delay, why = expected_restart_delay(match.api_status, now)
    target = Target(
        namespace=view.namespace,
        pod=view.name,
        pod_uid=view.uid,
        container=container_name,
        container_id=current.id,
        sandbox_id=current.sandbox_id,
        pid=match.pid,
        pid_started_at=now,
        attempt=current.attempt,
        restart_count=match.api_status.restart_count if match.api_status else None,
    )
    return Plan(
        target=target,
        signal=request.signal,
        signal_name=name,
        timeout_seconds=request.timeout_seconds,
        expected_attempt=current.attempt + 1,
        expected_delay_seconds=delay,
        expected_delay_reason=why,
        restart_policy=policy,
        steps=(
            f"verify PID {match.pid} is still container {current.id[:13]}'s process "
            "(start time and cgroup)",
            f"send {name} to it through a pidfd",
            "watch the process go (pidfd), the runtime report the exit, the API report it",
            f"watch kubelet create attempt {current.attempt + 1} and start it",
            "watch the API report it running and ready with restartCount + 1",
        ),
    )
