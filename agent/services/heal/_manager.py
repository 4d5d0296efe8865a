"""Runs kill-and-watch: preflight, the race-free kill, and the watch until healed or not.

Part of the heal service: imports its siblings, the node state and ``pods``, the host and
kube adapters, the domain, the errors and the settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from datetime import UTC, datetime

from agent import host
from agent.domain.kubemodel import ApiPod, ContainerRole
from agent.domain.model import ContainerState, SandboxState
from agent.errors import (
    AgentError,
    Conflict,
    Forbidden,
    Inapplicable,
    NotFound,
    ProcessGone,
    RateLimited,
    Unavailable,
)
from agent.kube import PodCacheLike
from agent.services.heal._audit import AuditLog
from agent.services.heal._guards import AgentIdentity, KillRequest, plan_kill
from agent.services.heal._run import HealRun, Plan, RunState
from agent.services.node import NodeState, Snapshot
from agent.services.pods import node_pod_view
from agent.settings import Settings

log = logging.getLogger(__name__)

_KEEP_RUNS = 200
# While a run watches, the runtime is relisted this often (two cheap list
# calls): without container events, the relist is how a new container shows
# up, and the API side, which is pushed, must not be seen first only because
# the runtime was looked at too rarely.
_RECHECK_SECONDS = 0.1
# What preflight refuses a request with; each is audited and counted by rule.
_REFUSALS = (Forbidden, Conflict, Inapplicable, RateLimited, Unavailable, NotFound)


def _now() -> datetime:
    return datetime.now(UTC)


class _Pulse:
    """A level-triggered wake-up that threads can fire into the event loop."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event = asyncio.Event()

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def fire_threadsafe(self) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._event.set)

    async def wait(self, within: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                await self._event.wait()
        self._event.clear()


PhaseObserver = Callable[[datetime], None]


class HealManager:
    """Plans, starts and watches kill-and-watch runs: one per pod, rate-limited, audited."""

    def __init__(
        self,
        settings: Settings,
        node: NodeState,
        pods: PodCacheLike,
        audit: AuditLog,
        on_finished: Callable[[HealRun], None] | None = None,
        on_refused: Callable[[str], None] | None = None,
    ) -> None:
        self.settings = settings
        self.node = node
        self.pods = pods
        self.audit = audit
        self._on_finished = on_finished
        self._on_refused = on_refused
        self.runs: OrderedDict[str, HealRun] = OrderedDict()
        self._active: dict[str, str] = {}  # pod uid -> run id
        self._kills: deque[float] = deque()
        self._tasks: set[asyncio.Task[None]] = set()
        self._pod_pulse = _Pulse()
        self._me: AgentIdentity | None = None

    # --- lifecycle

    def bind_loop(self) -> None:
        self._pod_pulse.bind(asyncio.get_running_loop())
        add_listener = getattr(self.pods, "add_listener", None)
        if add_listener is not None:
            add_listener(self._pod_pulse.fire_threadsafe)

    async def shutdown(self) -> None:
        """Abandon running watches cleanly: each gets a verdict and an audit record."""
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # --- who the agent is

    def _self(self) -> AgentIdentity:
        if self._me is None:
            container_id = None
            with contextlib.suppress(AgentError):
                container_id = host.read_process(os.getpid(), self.settings.proc_root).container_id
            self._me = AgentIdentity(
                self.settings.pod_namespace, self.settings.pod_name, container_id
            )
        return self._me

    # --- the request

    def preflight(self, namespace: str, name: str, request: KillRequest, requested_by: str) -> Plan:
        """Plan the run or raise the refusal; every refusal is audited."""
        try:
            return self._preflight(namespace, name, request)
        except _REFUSALS as exc:
            rule = str(exc.detail.get("rule", exc.kind))
            self.audit.write(
                "refused",
                requested_by=requested_by,
                namespace=namespace,
                pod=name,
                container=request.container,
                sandbox=request.sandbox,
                signal=request.signal,
                dry_run=request.dry_run,
                rule=rule,
                reason=exc.message,
            )
            if self._on_refused is not None:
                self._on_refused(rule)
            raise

    def _preflight(self, namespace: str, name: str, request: KillRequest) -> Plan:
        snap = self.node.live_snapshot()
        view = node_pod_view(self.settings, self.pods, snap, namespace, name)
        running = self._active.get(view.uid)
        if running is not None and not request.dry_run:
            raise Conflict(
                f"run {running} is still watching {namespace}/{name}; one run per pod at a time",
                rule="run-in-progress",
                run=running,
            )
        plan = plan_kill(self.settings, view, request, self._self(), _now())
        unavailable = self.node.pidfd_unavailable
        if unavailable is not None:
            raise Unavailable(
                f"kills need pidfds, so that a recycled PID is never hit: {unavailable}",
                rule="pidfd-unavailable",
            )
        target = plan.target
        me = self._self()
        if me.container_id is not None and target.container_id == me.container_id:
            raise Forbidden("that container is the agent itself", rule="own-pod")
        started = host.process_start_time(target.pid, self.settings.proc_root)
        if started is None:
            raise Conflict(
                f"PID {target.pid} exited a moment ago; nothing to kill",
                rule="not-running",
            )
        plan = dataclasses.replace(plan, target=dataclasses.replace(target, pid_started_at=started))
        if not request.dry_run:
            running = self._active.get(view.uid)
            if running is not None:
                raise Conflict(
                    f"run {running} is still watching {namespace}/{name}; "
                    "one run per pod at a time",
                    rule="run-in-progress",
                    run=running,
                )
            self._check_rate()
        return plan

    def _check_rate(self) -> None:
        now = time.monotonic()
        while self._kills and now - self._kills[0] > 60:
            self._kills.popleft()
        if len(self._kills) >= self.settings.kill_rate_per_minute:
            retry = int(60 - (now - self._kills[0])) + 1
            raise RateLimited(
                f"rate limit: {self.settings.kill_rate_per_minute} kills per minute on this node; "
                f"try again in {retry}s",
                rule="rate-limited",
                retry_after_seconds=retry,
            )

    def start(self, plan: Plan, requested_by: str) -> HealRun:
        """Start the run in the background; the plan must come from ``preflight``.

        Call it on the event loop: the one-run-per-pod and rate checks made
        here and the records that make them hold are one step, with no await
        between them, so requests whose preflights overlapped (each run in a
        worker thread, each seeing the same free slot) cannot all get through.
        """
        target = plan.target
        try:
            running = self._active.get(target.pod_uid)
            if running is not None:
                raise Conflict(
                    f"run {running} is still watching {target.namespace}/{target.pod}; "
                    "one run per pod at a time",
                    rule="run-in-progress",
                    run=running,
                )
            self._check_rate()
        except (Conflict, RateLimited) as exc:
            rule = str(exc.detail.get("rule", exc.kind))
            self.audit.write(
                "refused",
                requested_by=requested_by,
                namespace=target.namespace,
                pod=target.pod,
                container=target.container,
                sandbox=target.container is None,
                signal=plan.signal,
                dry_run=False,
                rule=rule,
                reason=exc.message,
            )
            if self._on_refused is not None:
                self._on_refused(rule)
            raise
        self._kills.append(time.monotonic())
        run = HealRun(
            id=uuid.uuid4().hex[:12],
            plan=plan,
            requested_by=requested_by,
            requested_at=_now(),
            dry_run=False,
            diagnosis_url=f"/v1/pods/{target.namespace}/{target.pod}/diagnosis",
        )
        self.runs[run.id] = run
        while len(self.runs) > _KEEP_RUNS:
            self.runs.popitem(last=False)
        self._active[target.pod_uid] = run.id
        task = asyncio.create_task(self._execute(run), name=f"heal-{run.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return run

    # --- the run

    async def _execute(self, run: HealRun) -> None:
        plan = run.plan
        target = plan.target
        handle: host.SignalledProcess | None = None
        try:
            try:
                # Inside the try: a record that cannot be written ends the run
                # unkilled, and the finally below frees the pod for another.
                self.audit.write(
                    "kill",
                    run=run.id,
                    requested_by=run.requested_by,
                    namespace=target.namespace,
                    pod=target.pod,
                    pod_uid=target.pod_uid,
                    container=target.container,
                    container_id=target.container_id,
                    pid=target.pid,
                    signal=plan.signal_name,
                )
                handle = host.signal_container_process(
                    target.pid,
                    target.pid_started_at,
                    target.container_id or target.sandbox_id,
                    plan.signal,
                    self.settings.proc_root,
                )
            except (ProcessGone, Forbidden, Unavailable) as exc:
                run.finish(RunState.FAILED, f"not killed: {exc.message}", _now())
                return
            run.record("signal_sent", handle.signalled_at, pid=target.pid, signal=plan.signal_name)
            self.node.request_refresh()
            await self._watch(run, handle)
        except asyncio.CancelledError:
            if not run.done:
                run.finish(
                    RunState.FAILED,
                    "abandoned: the agent is shutting down; the kill was sent, the watch stopped",
                    _now(),
                )
            raise
        except Exception as exc:
            log.exception("heal run %s failed", run.id)
            run.finish(RunState.FAILED, f"watch failed: {exc!r}", _now())
        finally:
            if handle is not None:
                handle.close()
            self._active.pop(target.pod_uid, None)
            # The audit trail has logged why it could not write; the run's
            # verdict stands and is still reported.
            with contextlib.suppress(Unavailable):
                self.audit.write(
                    "outcome",
                    run=run.id,
                    state=run.state.value,
                    verdict=run.verdict,
                    time_to_recover_seconds=run.time_to_recover_seconds,
                    phases=[p.name for p in run.phases],
                )
            if self._on_finished is not None:
                self._on_finished(run)

    async def _watch(self, run: HealRun, handle: host.SignalledProcess) -> None:
        plan = run.plan
        deadline = time.monotonic() + plan.timeout_seconds

        async def gone() -> None:
            at = await handle.wait_gone(plan.timeout_seconds)
            if at is not None:
                run.record("process_gone", at, pid=handle.pid)
                self.node.request_refresh()

        gone_task = asyncio.create_task(gone())
        observe = self._observe_container if plan.target.container else self._observe_sandbox
        try:
            version = -1
            while True:
                snap = self.node.snapshot
                recovered = observe(
                    run, snap, self.pods.find(plan.target.namespace, plan.target.pod)
                )
                if recovered is not None:
                    signal_at = run.phases[0].at
                    run.time_to_recover_seconds = (recovered - signal_at).total_seconds()
                    run.finish(
                        RunState.HEALED,
                        f"healed in {run.time_to_recover_seconds:.2f}s: {self._healed_text(run)}",
                        _now(),
                    )
                    return
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    run.finish(RunState.NOT_HEALED, self._not_healed_text(run), _now())
                    return
                version = snap.version
                wait = min(remaining, _RECHECK_SECONDS)
                self.node.request_refresh()
                await asyncio.wait(
                    {
                        asyncio.create_task(self.node.wait_for_change(version, wait)),
                        asyncio.create_task(self._pod_pulse.wait(wait)),
                    },
                    return_when=asyncio.FIRST_COMPLETED,
                )
        finally:
            gone_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await gone_task

    # --- observers: record what each source shows; return the recovery time once healed

    def _observe_container(
        self, run: HealRun, snap: Snapshot, pod: ApiPod | None
    ) -> datetime | None:
        t = run.plan.target
        now = _now()
        old = snap.containers.get(t.container_id or "")
        if snap.taken_at is not None and (old is None or old.state == ContainerState.EXITED):
            # Runtime phases carry the runtime's own timestamps (when it
            # happened); seen_at is when the agent's relist saw it.
            run.record(
                "runtime_exited",
                (old.finished_at if old and old.finished_at else now),
                seen_at=now.isoformat(),
                container_id=t.container_id,
                exit_code=old.exit_code if old else None,
                reason=(old.reason if old else "removed by the runtime"),
            )
        newer = sorted(
            (
                c
                for c in snap.containers.values()
                if c.pod.uid == t.pod_uid and c.name == t.container and c.attempt > t.attempt
            ),
            key=lambda c: c.attempt,
        )
        new = newer[0] if newer else None
        if new is not None:
            run.record(
                "runtime_recreated",
                new.created_at or now,
                seen_at=now.isoformat(),
                container_id=new.id,
                attempt=new.attempt,
            )
            if new.state in (ContainerState.RUNNING, ContainerState.EXITED) and (
                new.pid is not None or new.state == ContainerState.EXITED
            ):
                run.record(
                    "runtime_started",
                    new.started_at or now,
                    seen_at=now.isoformat(),
                    pid=new.pid,
                    attempt=new.attempt,
                )
        status = pod.status_for(t.container) if pod is not None and t.container else None
        if status is not None:
            before = t.restart_count if t.restart_count is not None else 0
            old_ref = t.container_id or ""
            state, last = status.state, status.last_state
            if (
                (state.kind == "terminated" and status.runtime_container_id == old_ref)
                or (state.kind == "waiting" and last.kind == "terminated")
                or status.restart_count > before
            ):
                terminated = state if state.kind == "terminated" else last
                run.record(
                    "api_terminated",
                    now,
                    state=state.kind,
                    reason=state.reason or terminated.reason,
                    exit_code=terminated.exit_code,
                )
            if (
                state.kind == "running"
                and status.restart_count > before
                and (new is None or status.runtime_container_id == new.id)
            ):
                run.record("api_running", now, restart_count=status.restart_count)
                if status.ready:
                    run.record("api_ready", now, restart_count=status.restart_count)
        # Healed once both sides agree: the runtime runs the new attempt and the
        # API shows it ready. The recovery time is when the API showed it.
        ready = run.phase("api_ready")
        if ready is not None and run.has("runtime_started"):
            return ready.at
        return None

    def _observe_sandbox(self, run: HealRun, snap: Snapshot, pod: ApiPod | None) -> datetime | None:
        t = run.plan.target
        now = _now()
        old = snap.sandboxes.get(t.sandbox_id)
        if snap.taken_at is not None and (old is None or old.state == SandboxState.NOTREADY):
            run.record("runtime_sandbox_notready", now, sandbox_id=t.sandbox_id)
        if pod is not None and run.has("signal_sent"):
            ready = pod.condition("Ready")
            if ready is None or not ready.is_true:
                run.record("api_not_ready", now, reason=ready.reason if ready else None)
        newer = sorted(
            (
                s
                for s in snap.sandboxes.values()
                if s.pod.uid == t.pod_uid
                and s.attempt > t.attempt
                and s.state == SandboxState.READY
            ),
            key=lambda s: s.attempt,
        )
        if not newer:
            return None
        sandbox = newer[0]
        run.record(
            "runtime_new_sandbox",
            sandbox.created_at or now,
            seen_at=now.isoformat(),
            sandbox_id=sandbox.id,
            attempt=sandbox.attempt,
            pause_pid=sandbox.pause_pid,
        )
        inside = [c for c in snap.containers.values() if c.sandbox_id == sandbox.id]
        if pod is not None and pod.init_containers:
            first = pod.init_containers[0].name
            rerun = next((c for c in inside if c.name == first), None)
            if rerun is not None:
                run.record(
                    "runtime_init_rerun",
                    rerun.created_at or now,
                    seen_at=now.isoformat(),
                    container=first,
                )
        if pod is None:
            return None
        app_names = [c.name for c in pod.containers] + [
            c.name for c in pod.init_containers if pod.role_of(c.name) == ContainerRole.SIDECAR
        ]
        running = {c.name: c for c in inside if c.state == ContainerState.RUNNING}
        if all(name in running for name in app_names):
            starts = [s for n in app_names if (s := running[n].started_at) is not None]
            run.record(
                "runtime_started",
                max(starts) if starts else now,
                seen_at=now.isoformat(),
                containers=sorted(running),
            )
            new_ids = {c.id for c in inside}
            statuses = [pod.status_for(n) for n in app_names]
            ready = pod.condition("Ready")
            if (
                ready is not None
                and ready.is_true
                and all(
                    s is not None and s.ready and s.runtime_container_id in new_ids
                    for s in statuses
                )
            ):
                run.record("api_ready", now)
                phase = run.phase("api_ready")
                return phase.at if phase else now
        return None

    # --- verdicts

    def _healed_text(self, run: HealRun) -> str:
        t = run.plan.target
        if t.container:
            started = run.phase("runtime_started")
            attempt = started.detail.get("attempt") if started else None
            return f"kubelet recreated {t.container} as attempt {attempt}; the API shows it ready"
        new = run.phase("runtime_new_sandbox")
        attempt = new.detail.get("attempt") if new else None
        return f"kubelet recreated the sandbox as attempt {attempt}; the pod is ready again"

    def _not_healed_text(self, run: HealRun) -> str:
        t = run.plan.target
        timeout = run.plan.timeout_seconds
        pod = self.pods.find(t.namespace, t.pod)
        status = pod.status_for(t.container) if pod is not None and t.container else None
        where = f"see {run.diagnosis_url}"
        if status is not None and status.state.kind == "waiting":
            reason = status.state.reason or ""
            if reason == "CrashLoopBackOff":
                return (
                    f"not healed within {timeout:.0f}s: kubelet is backing off "
                    f"({status.state.message or reason}); {where}"
                )
            if "Image" in reason or reason == "InvalidImageName":
                return f"not healed within {timeout:.0f}s: image problem ({reason}); {where}"
            if reason:
                return (
                    f"not healed within {timeout:.0f}s: {t.container} is waiting ({reason}); "
                    f"{where}"
                )
        recreated = [name for name in ("runtime_recreated", "runtime_new_sandbox") if run.has(name)]
        if not recreated:
            return (
                f"not healed within {timeout:.0f}s: kubelet has not recreated it "
                f"(restartPolicy {run.plan.restart_policy}); {where}"
            )
        return f"not healed within {timeout:.0f}s: the API never showed it ready again; {where}"
