"""A pod's STATUS, READY, RESTARTS and AGE exactly as ``kubectl get pods`` prints them.

The rules are those of kubernetes ``pkg/printers/internalversion/printers.go``
(``printPod``) and ``k8s.io/apimachinery/pkg/util/duration`` (``HumanDuration``),
which the API server applies when it renders the Table kubectl shows. Users
compare the agent's answer with kubectl's, so quirks are reproduced on
purpose, e.g.:

* the app-container walk goes in reverse, so the FIRST container with a
  waiting/terminated reason names the pod;
* READY counts an app container only when it is ready AND running, and only
  once the pod is past its init containers;
* while an init container blocks, RESTARTS sums the init containers up to it
  (including ones that completed) and app containers do not count;
* a pod whose Initialized condition is True gets the app-container view even
  if an init container status still looks unfinished.

Everything here is a pure function of an ``ApiPod`` (plus ``now`` where the
answer depends on time). A pod read from a fragment (``ApiPod.gaps``) gets
the same rules over what it holds: without a spec its containers were taken
from the statuses, so READY's denominator counts the containers that report
a status, and the answer says it is partial.

Domain: imports the standard library and other domain modules only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from agent.domain.kubemodel import ApiPod, ContainerStatus
from agent.domain.times import aware

__all__ = [
    "PodStatusStrings",
    "human_duration",
    "kubectl_age",
    "kubectl_ready",
    "kubectl_restarts",
    "kubectl_status",
    "status_strings",
    "time_since",
]

# Pod reason the node lifecycle controller sets on pods of an unreachable
# node (k8s.io/kubernetes/pkg/util/node NodeUnreachablePodReason).
NODE_LOST_REASON = "NodeLost"
SCHEDULING_GATED_REASON = "SchedulingGated"
_TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})

_US_PER_S = 1_000_000
_US_PER_MIN = 60 * _US_PER_S
_US_PER_H = 60 * _US_PER_MIN


def human_duration(d: timedelta) -> str:
    """``duration.HumanDuration``: two to three significant figures, e.g. "90s", "2m30s", "5h3m".

    Up to a second in the future still reads "0s" (clock skew between the
    node and the reader); further than that is "<invalid>".
    """
    total_us = d // timedelta(microseconds=1)
    # Go converts with int(), which truncates toward zero, also for negatives.
    seconds = abs(total_us) // _US_PER_S * (-1 if total_us < 0 else 1)
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    if seconds < 120:
        return f"{seconds}s"
    minutes = total_us // _US_PER_MIN
    if minutes < 10:
        rest = seconds % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 3 * 60:
        return f"{minutes}m"
    hours = total_us // _US_PER_H
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    days = hours // 24
    if hours < 8 * 24:
        rest = hours % 24
        return f"{days}d{rest}h" if rest else f"{days}d"
    if hours < 2 * 365 * 24:
        return f"{days}d"
    years = days // 365
    if hours < 8 * 365 * 24:
        rest = days % 365
        return f"{years}y{rest}d" if rest else f"{years}y"
    return f"{years}y"


def time_since(t: datetime | None, now: datetime) -> str:
    """How long ago ``t`` was, as kubectl prints ages; "<unknown>" without a time.

    Naive datetimes are taken as UTC.
    """
    if t is None:
        return "<unknown>"
    return human_duration(aware(now) - aware(t))


# --------------------------------------------------------------------------
# printPod
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Tally:
    reason: str
    ready: int
    total: int
    restarts: int
    last_restart: datetime | None


def _condition_true(pod: ApiPod, type_: str) -> bool:
    # kubectl takes the first condition of the type; the API keeps one per type.
    cond = pod.condition(type_)
    return cond is not None and cond.is_true


def _newer(current: datetime | None, status: ContainerStatus) -> datetime | None:
    last = status.last_state
    if not last.is_terminated or last.finished_at is None:
        return current
    finished = aware(last.finished_at)
    if current is None or finished > current:
        return finished
    return current


def _exit_text(signal: int | None, exit_code: int | None) -> str:
    if signal:
        return f"Signal:{signal}"
    return f"ExitCode:{exit_code or 0}"


def _tally(pod: ApiPod) -> _Tally:
    reason = pod.reason or pod.phase
    # The gate shows even when status.reason says something else; the
    # condition's status is not looked at, only its reason.
    if any(
        c.type == "PodScheduled" and c.reason == SCHEDULING_GATED_REASON for c in pod.conditions
    ):
        reason = SCHEDULING_GATED_REASON

    init_specs = {spec.name: spec for spec in pod.init_containers}
    total = len(pod.containers) + sum(1 for spec in pod.init_containers if spec.is_restartable)
    ready = 0

    # Init containers are visited in order until the first one that holds the
    # pod back. Everything visited counts toward the "initializing" restarts;
    # only sidecars count toward the restarts shown once initialized.
    restarts = 0
    last_restart: datetime | None = None
    sidecar_restarts = 0
    sidecar_last_restart: datetime | None = None
    initializing = False
    for index, status in enumerate(pod.init_container_statuses):
        restarts += status.restart_count
        last_restart = _newer(last_restart, status)
        spec = init_specs.get(status.name)
        sidecar = spec is not None and spec.is_restartable
        if sidecar:
            sidecar_restarts += status.restart_count
            sidecar_last_restart = _newer(sidecar_last_restart, status)

        state = status.state
        if state.is_terminated and state.exit_code == 0:
            continue
        if sidecar and status.started:
            if status.ready:
                ready += 1
            continue
        if state.is_terminated:
            reason = (
                f"Init:{state.reason}"
                if state.reason
                else "Init:" + _exit_text(state.signal, state.exit_code)
            )
        elif state.is_waiting and state.reason and state.reason != "PodInitializing":
            reason = f"Init:{state.reason}"
        else:
            reason = f"Init:{index}/{len(pod.init_containers)}"
        initializing = True
        break

    if not initializing or _condition_true(pod, "Initialized"):
        restarts = sidecar_restarts
        last_restart = sidecar_last_restart
        has_running = False
        # Reverse order: the last assignment wins, so the first container in
        # spec order that has something to say names the pod.
        for status in reversed(pod.container_statuses):
            restarts += status.restart_count
            last_restart = _newer(last_restart, status)
            state = status.state
            if state.reason and (state.is_waiting or state.is_terminated):
                reason = state.reason
            elif state.is_terminated:
                reason = _exit_text(state.signal, state.exit_code)
            elif status.ready and state.is_running:
                has_running = True
                ready += 1
        # A container that completed while another still serves (a finished
        # helper next to a server) should not make the pod read "Completed".
        if reason == "Completed" and has_running:
            reason = "Running" if _condition_true(pod, "Ready") else "NotReady"

    if pod.deletion_timestamp is not None and pod.reason == NODE_LOST_REASON:
        reason = "Unknown"
    elif pod.deletion_timestamp is not None and pod.phase not in _TERMINAL_PHASES:
        reason = "Terminating"

    return _Tally(reason, ready, total, restarts, last_restart)


def _restarts_text(tally: _Tally, now: datetime) -> str:
    if tally.restarts != 0 and tally.last_restart is not None:
        return f"{tally.restarts} ({time_since(tally.last_restart, now)} ago)"
    return str(tally.restarts)


def kubectl_status(pod: ApiPod) -> str:
    """The STATUS column: "Running", "CrashLoopBackOff", "Init:1/3", "Terminating", ..."""
    return _tally(pod).reason


def kubectl_ready(pod: ApiPod) -> str:
    """The READY column, "<ready>/<total>"; native sidecars count as containers."""
    tally = _tally(pod)
    return f"{tally.ready}/{tally.total}"


def kubectl_restarts(pod: ApiPod, now: datetime) -> str:
    """The RESTARTS column: "0", or "4 (2m30s ago)" when a last exit time is known."""
    return _restarts_text(_tally(pod), now)


def kubectl_age(pod: ApiPod, now: datetime) -> str:
    """The AGE column."""
    return time_since(pod.creation_timestamp, now)


@dataclass(frozen=True, slots=True)
class PodStatusStrings:
    """The kubectl columns, plus the numbers behind them for callers that compute."""

    status: str
    ready: str
    restarts: str
    age: str
    ready_count: int
    total_count: int
    restart_count: int
    last_restart_at: datetime | None
    # True when the pod was read from a fragment: the columns are kubectl's
    # rules over what the fragment held, not over the whole object.
    partial: bool = False


def status_strings(pod: ApiPod, now: datetime) -> PodStatusStrings:
    """Every kubectl column of ``pod`` at ``now``, from one walk of its statuses."""
    tally = _tally(pod)
    return PodStatusStrings(
        status=tally.reason,
        ready=f"{tally.ready}/{tally.total}",
        restarts=_restarts_text(tally, now),
        age=kubectl_age(pod, now),
        ready_count=tally.ready,
        total_count=tally.total,
        restart_count=tally.restarts,
        last_restart_at=tally.last_restart,
        partial=pod.partial,
    )
