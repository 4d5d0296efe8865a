"""The joined pod views of this node, as every consumer builds them.

One place decides how the runtime snapshot and the pod cache are joined
(which node, whether the API view is current, the mismatch grace period), so
the pod routes, the logs, the diagnosis and kill-and-watch all see the same
pods.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from agent.domain.kubemodel import ApiPod
from agent.domain.podview import PodView, build_pod_view, build_pod_views
from agent.errors import NotFound
from agent.kube import PodCacheLike
from agent.services.node import Snapshot
from agent.settings import Settings


def node_pod_views(
    settings: Settings,
    pods: PodCacheLike,
    snap: Snapshot,
    now: datetime | None = None,
    memo: PodViewMemo | None = None,
) -> list[PodView]:
    """Every pod of this node; with ``memo``, the last join is reused while it holds."""
    now = now or datetime.now(UTC)
    mapping = pods.pods
    api_synced = pods.health.state == "ok"
    second = int(now.timestamp())
    if memo is not None:
        cached = memo.lookup(snap, mapping, api_synced, second)
        if cached is not None:
            return list(cached)
    views = build_pod_views(
        mapping,
        snap.sandboxes,
        snap.containers,
        node_name=settings.node_name,
        api_synced=api_synced,
        now=now,
        grace=timedelta(seconds=settings.mismatch_grace_seconds),
    )
    if memo is not None:
        memo.store(snap, mapping, api_synced, second, views)
    return views


class PodViewMemo:
    """The last node-wide join, kept while its inputs are unchanged.

    Both inputs are replaced, never changed in place: the refresh loop makes
    a new snapshot and the pod cache swaps in a new mapping on every change,
    so identity tells whether they changed. The clock enters at one-second
    resolution, the finest that any age string or grace period shows. Routes
    run in worker threads; the entry is one tuple, replaced whole.
    """

    def __init__(self) -> None:
        self._entry: tuple[Snapshot, Mapping[str, ApiPod], bool, int, tuple[PodView, ...]] | None
        self._entry = None

    def lookup(
        self, snap: Snapshot, pods: Mapping[str, ApiPod], api_synced: bool, second: int
    ) -> tuple[PodView, ...] | None:
        entry = self._entry
        if entry is None:
            return None
        e_snap, e_pods, e_synced, e_second, views = entry
        if e_snap is snap and e_pods is pods and e_synced == api_synced and e_second == second:
            return views
        return None

    def store(
        self,
        snap: Snapshot,
        pods: Mapping[str, ApiPod],
        api_synced: bool,
        second: int,
        views: list[PodView],
    ) -> None:
        self._entry = (snap, pods, api_synced, second, tuple(views))


def node_pod_view(
    settings: Settings,
    pods: PodCacheLike,
    snap: Snapshot,
    namespace: str,
    name: str,
    now: datetime | None = None,
) -> PodView:
    """One pod of this node, or NotFound naming it."""
    view = build_pod_view(
        pods.pods,
        snap.sandboxes,
        snap.containers,
        namespace=namespace,
        name=name,
        node_name=settings.node_name,
        api_synced=pods.health.state == "ok",
        now=now or datetime.now(UTC),
        grace=timedelta(seconds=settings.mismatch_grace_seconds),
    )
    if view is None:
        raise NotFound(
            f"no pod {namespace}/{name} on this node (neither the API server nor the runtime "
            "knows it here)",
            namespace=namespace,
            name=name,
        )
    return view
