"""The node state: an in-memory snapshot of the runtime that a refresh loop keeps current.

Requests read the latest immutable ``Snapshot``; they never wait on a full
rescan. The loop relists sandboxes and containers (two cheap calls), diffs
them with the previous snapshot, and asks for a (verbose) status only for
objects that are new or changed state. It wakes early when a watched PID
exits (pidfd), when the runtime sends a container event, and when the API
server names a container or sandbox the snapshot does not hold yet, so a
change shows up within milliseconds rather than at the next relist.

Where the runtime broadcasts container events (containerd 2.x, CRI-O with
``enable_pod_events``) they are the change source and the relist slows to a
safety net; a broken stream is resubscribed, with a relist once it is back.

A services module: imports the CRI and host adapters, the domain, the errors and the
settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from agent import host
from agent.cri import (
    CallUnimplemented,
    CriClient,
    EventsUnsupported,
    RuntimeClient,
    discover_endpoint,
    event_policy,
)
from agent.domain.kubemodel import ApiPod
from agent.domain.model import (
    Container,
    ContainerState,
    PodRef,
    ProcessInfo,
    RuntimeInfo,
    Sandbox,
    SandboxState,
)
from agent.errors import Ambiguous, CriError, NotFound, RuntimeUnavailable, Unavailable
from agent.settings import Settings

log = logging.getLogger(__name__)

# CRI-O keeps the PID of an exited container; a live process that started
# before the container was created cannot be it. Created, not started: the
# OCI runtime forks the container's process at create, and a busy node can
# take seconds from there to StartContainer. Allow for clock granularity.
_START_TIME_SLACK = timedelta(seconds=1)
# Relists after a watched process exits, in seconds after the pidfd fired.
_EXIT_FOLLOW_UPS = (0.02, 0.06)
# A subscribed event stream that has stayed open this long is working: the
# runtime ends it at once when it has no events to give.
_EVENTS_CONFIRM_SECONDS = 0.25
# Relists after the last event of a burst, in seconds. Not every change is
# announced: CRI-O looks a removed sandbox up after removing it and so never
# sends its event, and drops events when its queue is full.
_EVENT_FOLLOW_UPS = (0.1, 0.5, 2.0)
# The API server's container state, and the snapshot's, when the runtime has
# moved on and the snapshot not yet.
_BEHIND = {("running", ContainerState.CREATED), ("terminated", ContainerState.RUNNING)}
# The API server's word already acted on, by object and state (bounded: IDs
# the runtime never held must not grow it without end).
_EXPECTATIONS_KEPT = 4096


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The runtime's sandboxes and containers at one moment, by ID; replaced, never changed."""

    version: int
    taken_at: datetime | None
    sandboxes: Mapping[str, Sandbox] = field(default_factory=dict)
    containers: Mapping[str, Container] = field(default_factory=dict)
    # Built on first use: a pod list asks once per sandbox.
    _by_sandbox: dict[str, list[Container]] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def containers_in(self, sandbox_id: str) -> list[Container]:
        """Every container the snapshot holds in that sandbox, every attempt."""
        index = self._by_sandbox
        if index is None:
            index = {}
            for c in self.containers.values():
                index.setdefault(c.sandbox_id, []).append(c)
            object.__setattr__(self, "_by_sandbox", index)
        return list(index.get(sandbox_id, ()))


@dataclass(frozen=True, slots=True)
class RuntimeHealth:
    """Whether the runtime is reachable and synced, since when, and how changes are learnt."""

    connected: bool
    since: datetime
    reason: str | None = None
    info: RuntimeInfo | None = None
    endpoint: str | None = None
    # "events" when the runtime streams container events, else "relist".
    change_source: str = "relist"
    # Why the agent relists rather than follows events; None while it follows them.
    change_source_reason: str | None = "not connected yet"
    synced: bool = False


@dataclass(frozen=True, slots=True)
class ProcessOwner:
    """Which container (or sandbox, for a pause process) a host PID belongs to."""

    process: ProcessInfo
    matched_by: str  # "cgroup", "ancestor" or "pause"
    container: Container | None
    sandbox: Sandbox | None
    pod: PodRef


@dataclass(frozen=True, slots=True)
class Change:
    """What one refresh changed, for subscribers (e.g. a kill-and-watch run)."""

    version: int
    at: datetime
    added: tuple[str, ...]
    removed: tuple[str, ...]
    changed: tuple[str, ...]


def resolve_prefix(kind: str, prefix: str, ids: Iterable[str]) -> str:
    """crictl-style ID lookup: an exact ID, or a unique prefix of one."""
    if not prefix:
        raise NotFound(f"{kind} ID must not be empty")
    prefix = prefix.lower()
    matches = []
    for candidate in ids:
        if candidate == prefix:
            return candidate
        if candidate.startswith(prefix):
            matches.append(candidate)
    if not matches:
        raise NotFound(f"no {kind} with ID or ID prefix {prefix!r}", id=prefix)
    if len(matches) > 1:
        raise Ambiguous(kind, prefix, sorted(matches))
    return matches[0]


# Called once per connection: a reconnect starts from a fresh channel.
ClientFactory = Callable[[str, Settings], RuntimeClient]


def _default_client_factory(endpoint: str, settings: Settings) -> RuntimeClient:
    return CriClient(endpoint, timeout=settings.cri_timeout_seconds)


class NodeState:
    """The runtime as the agent last saw it, and the loop that keeps it current."""

    def __init__(
        self,
        settings: Settings,
        client_factory: ClientFactory = _default_client_factory,
    ) -> None:
        self.settings = settings
        self._client_factory = client_factory
        self._snapshot = Snapshot(version=0, taken_at=None)
        self._health = RuntimeHealth(connected=False, since=_now(), reason="not connected yet")
        self._wake = asyncio.Event()
        self._changed = asyncio.Condition()
        # Refreshes begun and finished, whether or not they changed anything:
        # a reader that asked for one waits on these.
        self._refreshes_started = 0
        self._refreshes_done = 0
        self._refreshed = asyncio.Condition()
        # What the API server named that the snapshot lacked, by
        # (object, state), and the refresh that answers it.
        self._expected: OrderedDict[tuple[str, str], int] = OrderedDict()
        self._settle_target = 0
        self.expectation_refreshes = 0
        # The event stream: how many times it broke, was resubscribed, and
        # how many events it brought; what optional calls answered.
        self.event_stream_breaks = 0
        self.event_stream_resumes = 0
        self.events_received = 0
        self._follow_ups: list[asyncio.TimerHandle] = []
        self.optional_calls: dict[str, str] = {}
        # Objects whose status call is current for their listed state.
        self._fresh: set[str] = set()
        self._exit_listeners: list[Callable[[Container], None]] = []
        # Objects whose verbose status a bulk refresh left for later.
        self._needs_verbose: set[str] = set()
        self._pid_watcher: host.PidWatcher | None = None
        # Why exits are seen by relisting only, when pidfds cannot be used.
        self.pidfd_unavailable: str | None = None
        self._client: RuntimeClient | None = None
        self.refresh_count = 0
        self.status_calls = 0

    # --- reading (never touches the runtime)

    @property
    def snapshot(self) -> Snapshot:
        """The latest snapshot, however stale; ``live_snapshot`` refuses one not current."""
        return self._snapshot

    @property
    def health(self) -> RuntimeHealth:
        """The runtime connection as last seen by the refresh loop."""
        return self._health

    @property
    def client(self) -> RuntimeClient | None:
        """The connected runtime client, or None while the runtime is away."""
        return self._client if self._health.connected else None

    def live_snapshot(self) -> Snapshot:
        """The snapshot, or RuntimeUnavailable when it cannot be trusted as current."""
        health = self._health
        if not health.connected or not health.synced:
            raise RuntimeUnavailable(
                f"container runtime not available: {health.reason or 'not synced yet'}",
                endpoint=health.endpoint,
                since=health.since.isoformat(),
            )
        return self._snapshot

    def find_sandbox(self, prefix: str) -> Sandbox:
        """The sandbox with that ID or unique ID prefix, as crictl finds one."""
        snap = self.live_snapshot()
        return snap.sandboxes[resolve_prefix("sandbox", prefix, snap.sandboxes)]

    def find_container(self, prefix: str) -> Container:
        """The container with that ID or unique ID prefix, as crictl finds one."""
        snap = self.live_snapshot()
        return snap.containers[resolve_prefix("container", prefix, snap.containers)]

    def lookup_process(self, pid: int) -> ProcessOwner:
        """Host PID -> container -> pod, for any process in a container's tree."""
        snap = self.live_snapshot()
        process = host.read_process(pid, self.settings.proc_root)
        pause_of = {s.pause_pid: s for s in snap.sandboxes.values() if s.pause_pid is not None}
        if pid in pause_of:
            sandbox = pause_of[pid]
            return ProcessOwner(process, "pause", None, sandbox, sandbox.pod)
        main_pids = {c.pid: c.id for c in snap.containers.values() if c.pid is not None}
        found = host.find_container_for_pid(pid, main_pids, self.settings.proc_root)
        if found is not None:
            owner_id, how = found
            container = snap.containers.get(owner_id)
            if container is not None:
                home = snap.sandboxes.get(container.sandbox_id)
                return ProcessOwner(process, how, container, home, container.pod)
            # On containerd the pause process runs in the sandbox's own cgroup.
            owning_sandbox = snap.sandboxes.get(owner_id)
            if owning_sandbox is not None:
                return ProcessOwner(process, "pause", None, owning_sandbox, owning_sandbox.pod)
        raise NotFound(
            f"PID {pid} ({process.name}) belongs to no container this runtime knows",
            pid=pid,
            cgroup=list(process.cgroup),
        )

    def add_exit_listener(self, callback: Callable[[Container], None]) -> None:
        """Call ``callback(container)`` once for each container the refresh sees exit."""
        self._exit_listeners.append(callback)

    def _announce_exits(self, prev: Snapshot, containers: Mapping[str, Container]) -> None:
        for c in containers.values():
            if c.state != ContainerState.EXITED:
                continue
            before = prev.containers.get(c.id)
            if before is not None and before.state == ContainerState.EXITED:
                continue
            for listener in self._exit_listeners:
                try:
                    listener(c)
                except Exception:
                    log.exception("exit listener failed for %s", c.id[:13])

    def request_refresh(self) -> None:
        """Relist now rather than at the next interval."""
        self._wake.set()

    # --- the API server's word (no blind second)

    def expect_pod(self, pod: ApiPod) -> bool:
        """Refresh at once when the API server names what the snapshot lacks; True if it did.

        A container ID the snapshot does not hold, a container the API calls
        running that the snapshot has only created (or exited the other way),
        or a running pod with no ready sandbox: each is asked about once, by
        the next refresh, which a reader can wait for (``settle``).
        """
        if not self._health.synced:
            return False  # the first sync lists everything anyway
        snap = self._snapshot
        behind: list[tuple[str, str]] = []
        for status in (
            *pod.init_container_statuses,
            *pod.container_statuses,
            *pod.ephemeral_container_statuses,
        ):
            cid = status.runtime_container_id
            if not cid:
                continue
            held = snap.containers.get(cid)
            kind = status.state.kind
            if held is None:
                behind.append((cid, kind or "known"))
            elif (kind, held.state) in _BEHIND:
                behind.append((cid, kind or ""))
        if (
            pod.uid
            and pod.phase in ("Pending", "Running")
            and pod.deletion_timestamp is None
            and any(
                s.runtime_container_id
                for s in (*pod.init_container_statuses, *pod.container_statuses)
            )
            and not any(
                sb.pod.uid == pod.uid and sb.state is SandboxState.READY
                for sb in snap.sandboxes.values()
            )
        ):
            behind.append((pod.uid, "sandbox"))
        fresh = [key for key in behind if key not in self._expected]
        if not fresh:
            return False
        # The refresh now running may have listed before these existed: the
        # one after it answers them.
        target = self._refreshes_started + 1
        for key in fresh:
            self._expected[key] = target
        while len(self._expected) > _EXPECTATIONS_KEPT:
            self._expected.popitem(last=False)
        self._settle_target = max(self._settle_target, target)
        self.expectation_refreshes += 1
        self._wake.set()
        return True

    async def settle(self, within: float) -> None:
        """Wait (at most ``within`` seconds) for the refresh the API server's news asked for."""
        if self._refreshes_done >= self._settle_target or within <= 0:
            return
        target = self._settle_target
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within), self._refreshed:
                await self._refreshed.wait_for(lambda: self._refreshes_done >= target)

    async def wait_for_change(self, after_version: int, within: float) -> Snapshot:
        """Wait until the snapshot is newer than ``after_version``, at most ``within`` seconds."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within), self._changed:
                await self._changed.wait_for(lambda: self._snapshot.version > after_version)
        return self._snapshot

    # --- the loop

    async def run(self) -> None:
        """Connect, sync, keep current; reconnect with backoff whenever the runtime goes away."""
        delay = self.settings.reconnect_min_seconds
        self.pidfd_unavailable = host.pidfd_unavailable()
        if self.pidfd_unavailable is None:
            self._pid_watcher = host.PidWatcher()
        else:
            log.warning("exits are seen by relisting only: %s", self.pidfd_unavailable)
        try:
            while True:
                was_synced = False
                try:
                    await self._run_connected()
                except CriError as exc:
                    was_synced = self._health.synced
                    self._set_disconnected(exc.message)
                except Exception as exc:  # keep serving; report what broke
                    log.exception("refresh loop failed")
                    was_synced = self._health.synced
                    self._set_disconnected(f"refresh failed: {exc!r}")
                else:
                    return
                # A runtime that was healthy gets a quick first retry.
                if was_synced:
                    delay = self.settings.reconnect_min_seconds
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.settings.reconnect_max_seconds)
        finally:
            if self._pid_watcher is not None:
                self._pid_watcher.close()
            await self._close_client()

    @property
    def relist_interval(self) -> float:
        """Seconds between relists now: the safety net while events are followed."""
        if self._health.change_source == "events":
            return self.settings.events_relist_interval_seconds
        return self.settings.relist_interval_seconds

    async def _run_connected(self) -> None:
        await self._close_client()
        endpoint = discover_endpoint(self.settings.cri_endpoint)
        self._health = dataclasses.replace(self._health, endpoint=endpoint)
        client = self._client_factory(endpoint, self.settings)
        self._client = client
        info = await client.version()
        self._health = dataclasses.replace(
            self._health, change_source="relist", change_source_reason="subscribing"
        )
        events_task = asyncio.create_task(self._follow_events(client, info), name="cri-events")
        filler: asyncio.Task[None] | None = None
        try:
            await self.refresh_once(client)
            await self._probe_optional_calls(client)
            if self._needs_verbose:
                filler = asyncio.create_task(self._fill_verbose(client), name="cri-verbose")
            self._health = RuntimeHealth(
                connected=True,
                since=_now(),
                info=info,
                endpoint=endpoint,
                change_source=self._health.change_source,
                change_source_reason=self._health.change_source_reason,
                synced=True,
            )
            log.info(
                "runtime %s %s synced at %s", info.runtime_name, info.runtime_version, endpoint
            )
            while True:
                # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow
                # a cancellation that lands as the wake-up does, and the loop then
                # never stops.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.relist_interval):
                        await self._wake.wait()
                self._wake.clear()
                await self.refresh_once(client)
                if self._needs_verbose and (filler is None or filler.done()):
                    filler = asyncio.create_task(self._fill_verbose(client), name="cri-verbose")
        finally:
            if filler is not None:
                filler.cancel()
            events_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await events_task

    async def _probe_optional_calls(self, client: RuntimeClient) -> None:
        """Ask the optional calls once per connection; UNIMPLEMENTED is an answer, not a fault."""
        try:
            count = await client.list_pod_sandbox_metrics()
        except CallUnimplemented:
            self.optional_calls["ListPodSandboxMetrics"] = "unimplemented"
        except CriError as exc:
            # Optional: a failure here must not take the runtime's view down.
            self.optional_calls["ListPodSandboxMetrics"] = f"failed: {exc.message}"
        else:
            self.optional_calls["ListPodSandboxMetrics"] = f"available ({count} pods)"

    async def _close_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.close()

    def _set_disconnected(self, reason: str) -> None:
        was = self._health
        # Unavailable since the first failure: a retry failing with another
        # reason (Version after ListPodSandbox) is the same outage.
        since = was.since if not was.connected else _now()
        if was.connected or was.reason != reason:
            log.warning("container runtime unavailable: %s", reason)
        self._health = RuntimeHealth(
            connected=False,
            since=since,
            reason=reason,
            info=was.info,
            endpoint=was.endpoint,
            change_source="relist",
            change_source_reason="runtime unavailable",
            synced=False,
        )
        # Statuses may be stale once we are back: fetch them again.
        self._fresh.clear()

    def _set_source(self, source: str, reason: str | None) -> None:
        if (self._health.change_source, self._health.change_source_reason) != (source, reason):
            self._health = dataclasses.replace(
                self._health, change_source=source, change_source_reason=reason
            )

    async def _follow_events(self, client: RuntimeClient, info: RuntimeInfo) -> None:
        """Follow container events where the runtime broadcasts them; resubscribe when cut."""
        policy = event_policy(info)
        if not self.settings.follow_container_events:
            policy = dataclasses.replace(
                policy,
                subscribe=False,
                reason="container events are off by configuration (follow_container_events)",
            )
        if not policy.subscribe:
            log.info("not following container events: %s", policy.reason)
            self._set_source("relist", policy.reason)
            return
        loop = asyncio.get_running_loop()
        delay = self.settings.reconnect_min_seconds
        while True:
            resuming = self.event_stream_breaks > 0
            confirmed = False

            def confirm(resuming: bool = resuming) -> None:
                # Open long enough (or an event came): a working stream. After
                # a break, a relist now catches what happened while it was down.
                nonlocal confirmed
                if confirmed:
                    return
                confirmed = True
                self._set_source("events", None)
                if resuming:
                    self.event_stream_resumes += 1
                    self._wake.set()

            confirming = loop.call_later(_EVENTS_CONFIRM_SECONDS, confirm)
            if resuming:
                self._wake.set()
            try:
                async for _event in client.container_events():
                    self.events_received += 1
                    confirm()
                    self._wake.set()
                    self._follow_up(loop)
            except EventsUnsupported as exc:
                log.info(
                    "container events unavailable (%s); relisting every %.1fs",
                    exc,
                    self.settings.relist_interval_seconds,
                )
                self._set_source("relist", str(exc))
                return
            except CriError as exc:
                # Relist at the normal pace until the stream is back.
                self.event_stream_breaks += 1
                log.info("container event stream broke (%s); resubscribing", exc.message)
                self._set_source(
                    "relist", f"container event stream broke ({exc.message}); resubscribing"
                )
                self._wake.set()
            finally:
                confirming.cancel()
            if confirmed:
                delay = self.settings.reconnect_min_seconds
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.settings.reconnect_max_seconds)

    def _follow_up(self, loop: asyncio.AbstractEventLoop) -> None:
        # Timed from the last event: a burst gets one set of follow-ups.
        for handle in self._follow_ups:
            handle.cancel()
        self._follow_ups = [loop.call_later(delay, self._wake.set) for delay in _EVENT_FOLLOW_UPS]

    async def refresh_once(self, client: RuntimeClient) -> Change | None:
        """Relist, fetch statuses for what is new or changed, publish; None when nothing changed."""
        self._refreshes_started += 1
        started = self._refreshes_started
        try:
            change = await self._refresh(client)
        finally:
            # Done even when it failed: readers waiting on it must not wait on.
            self._refreshes_done = max(self._refreshes_done, started)
            async with self._refreshed:
                self._refreshed.notify_all()
        return change

    async def _refresh(self, client: RuntimeClient) -> Change | None:
        listed_sandboxes, listed_containers = await asyncio.gather(
            client.list_sandboxes(), client.list_containers()
        )
        self.refresh_count += 1
        prev = self._snapshot
        limit = asyncio.Semaphore(self.settings.status_concurrency)

        sandboxes: dict[str, Sandbox] = {}
        sandbox_jobs: list[Sandbox] = []
        for sb in listed_sandboxes:
            old = prev.sandboxes.get(sb.id)
            if old is not None and old.state == sb.state and sb.id in self._fresh:
                sandboxes[sb.id] = old
            else:
                sandbox_jobs.append(sb)
                sandboxes[sb.id] = sb

        containers: dict[str, Container] = {}
        container_jobs: list[Container] = []
        for c in listed_containers:
            old_c = prev.containers.get(c.id)
            if old_c is not None and old_c.state == c.state and c.id in self._fresh:
                containers[c.id] = old_c
            else:
                container_jobs.append(c)
                containers[c.id] = c

        # Many new objects at once (a cold start, a mass reschedule): ask for
        # the plain status, which costs the runtime a fraction of the verbose
        # one, take every PID from one scan of /proc, and fill in the verbose
        # details (namespaces, mounts) in the background once the inventory
        # is out. A few objects get their verbose status right away.
        bulk = len(sandbox_jobs) + len(container_jobs) > self.settings.verbose_batch_limit
        pids: dict[str, int] = {}

        async def scan() -> None:
            pids.update(
                await asyncio.to_thread(host.main_pids_by_container, self.settings.proc_root)
            )

        async def fetch_sandbox(listed: Sandbox) -> None:
            async with limit:
                self.status_calls += 1
                try:
                    sandboxes[listed.id] = await client.sandbox_status(listed.id, verbose=not bulk)
                except NotFound:
                    sandboxes.pop(listed.id, None)  # removed since the list
                    return
            self._fresh.add(listed.id)

        async def fetch_container(listed: Container) -> None:
            async with limit:
                self.status_calls += 1
                try:
                    fetched, needs_check = await client.container_status(listed, verbose=not bulk)
                except NotFound:
                    containers.pop(listed.id, None)
                    return
            if needs_check and fetched.pid is not None:
                fetched = self._drop_stale_pid(fetched)
            containers[listed.id] = fetched
            self._fresh.add(listed.id)

        await asyncio.gather(
            *(fetch_sandbox(sb) for sb in sandbox_jobs),
            *(fetch_container(c) for c in container_jobs),
            *((scan(),) if bulk else ()),
        )
        if bulk:
            self._apply_scanned_pids(sandbox_jobs, container_jobs, sandboxes, containers, pids)

        # Objects carried over unchanged are taken from the snapshot as it is
        # now, so verbose details filled in while this refresh awaited stay.
        current = self._snapshot
        if current is not prev:
            for key in sandboxes.keys() - {s.id for s in sandbox_jobs}:
                sandboxes[key] = current.sandboxes.get(key, sandboxes[key])
            for key in containers.keys() - {c.id for c in container_jobs}:
                containers[key] = current.containers.get(key, containers[key])

        # A status fetched before a sandbox's containers were listed may
        # name no sandbox; the list is the authority for membership.
        self._fresh.intersection_update(sandboxes.keys() | containers.keys())
        self._track_pids(prev, sandboxes, containers)
        if self._exit_listeners and prev.taken_at is not None:
            self._announce_exits(
                prev, {c.id: containers[c.id] for c in container_jobs if c.id in containers}
            )

        added = tuple(
            k
            for k in (*sandboxes, *containers)
            if k not in prev.sandboxes and k not in prev.containers
        )
        removed = tuple(
            k
            for k in (*prev.sandboxes, *prev.containers)
            if k not in sandboxes and k not in containers
        )
        changed = tuple(
            k
            for k in (*(s.id for s in sandbox_jobs), *(c.id for c in container_jobs))
            if k not in added and (k in sandboxes or k in containers)
        )
        if not (added or removed or changed) and prev.taken_at is not None:
            return None
        now = _now()
        snapshot = Snapshot(
            version=prev.version + 1, taken_at=now, sandboxes=sandboxes, containers=containers
        )
        change = Change(snapshot.version, now, added, removed, changed)
        self._snapshot = snapshot
        async with self._changed:
            self._changed.notify_all()
        return change

    def _apply_scanned_pids(
        self,
        sandbox_jobs: list[Sandbox],
        container_jobs: list[Container],
        sandboxes: dict[str, Sandbox],
        containers: dict[str, Container],
        pids: Mapping[str, int],
    ) -> None:
        for listed in sandbox_jobs:
            sb = sandboxes.get(listed.id)
            if sb is None:
                continue
            pid = pids.get(sb.id) if sb.state == SandboxState.READY else None
            netns = f"/proc/{pid}/ns/net" if pid is not None and sb.network_mode == "pod" else None
            sandboxes[sb.id] = dataclasses.replace(sb, pause_pid=pid, network_namespace=netns)
            self._needs_verbose.add(sb.id)
        for listed_c in container_jobs:
            c = containers.get(listed_c.id)
            if c is None:
                continue
            pid = pids.get(c.id) if c.state == ContainerState.RUNNING else None
            containers[c.id] = dataclasses.replace(c, pid=pid)
            self._needs_verbose.add(c.id)

    async def _fill_verbose(self, client: RuntimeClient) -> None:
        """Fetch the verbose details a bulk refresh skipped, a few at a time."""
        limit = asyncio.Semaphore(4)
        pending = sorted(self._needs_verbose)
        self._needs_verbose.clear()
        sandboxes: dict[str, Sandbox] = {}
        containers: dict[str, Container] = {}

        async def one(key: str) -> None:
            snap = self._snapshot
            async with limit:
                self.status_calls += 1
                with contextlib.suppress(NotFound):
                    if key in snap.sandboxes:
                        sandboxes[key] = await client.sandbox_status(key)
                    elif key in snap.containers:
                        fetched, needs_check = await client.container_status(snap.containers[key])
                        if needs_check and fetched.pid is not None:
                            fetched = self._drop_stale_pid(fetched)
                        containers[key] = fetched

        await asyncio.gather(*(one(key) for key in pending))
        snap = self._snapshot
        # Keep only answers that still describe what the snapshot holds.
        new_sandboxes = dict(snap.sandboxes)
        for key, sb in sandboxes.items():
            if key in new_sandboxes and new_sandboxes[key].state == sb.state:
                new_sandboxes[key] = sb
        new_containers = dict(snap.containers)
        for key, c in containers.items():
            if key in new_containers and new_containers[key].state == c.state:
                new_containers[key] = c
        self._snapshot = Snapshot(
            version=snap.version + 1,
            taken_at=_now(),
            sandboxes=new_sandboxes,
            containers=new_containers,
        )
        async with self._changed:
            self._changed.notify_all()

    def _drop_stale_pid(self, container: Container) -> Container:
        assert container.pid is not None
        started = host.process_start_time(container.pid, self.settings.proc_root)
        born = container.created_at or container.started_at
        if started is None or (born is not None and started + _START_TIME_SLACK < born):
            return dataclasses.replace(container, pid=None)
        return container

    def _track_pids(
        self,
        prev: Snapshot,
        sandboxes: Mapping[str, Sandbox],
        containers: Mapping[str, Container],
    ) -> None:
        """Watch every live container and pause PID so an exit wakes the loop at once."""
        watcher = self._pid_watcher
        if watcher is None:
            return
        wanted = {
            c.pid
            for c in containers.values()
            if c.pid is not None and c.state == ContainerState.RUNNING
        }
        wanted |= {
            s.pause_pid
            for s in sandboxes.values()
            if s.pause_pid is not None and s.state == SandboxState.READY
        }
        for pid in set(watcher.watched) - wanted:
            watcher.unwatch(pid)
        for pid in wanted - set(watcher.watched):
            started = host.process_start_time(pid, self.settings.proc_root)
            try:
                watcher.watch(pid, started, self._on_pid_exit)
            except Unavailable as exc:  # pidfd_open denied after all: relisting still sees exits
                log.warning("exits are seen by relisting only: %s", exc.message)
                self.pidfd_unavailable = exc.message
                watcher.close()
                self._pid_watcher = None
                return

    def _on_pid_exit(self, pid: int) -> None:
        # The runtime lists the container as exited only after its shim has
        # reaped the process, tens of milliseconds after the pidfd fires: relist
        # now, and again shortly after, rather than waiting for the interval.
        self._wake.set()
        loop = asyncio.get_running_loop()
        for delay in _EXIT_FOLLOW_UPS:
            loop.call_later(delay, self._wake.set)
