"""The joined pod views of this node, as every consumer builds them.

One place decides how the runtime snapshot and the pod cache are joined
(which node, whether the API view is current, the mismatch grace period), so
the pod routes, the logs, the diagnosis and kill-and-watch all see the same
pods.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from agent.errors import NotFound
from agent.kube import PodCacheLike
from agent.node import Snapshot
from agent.podview import PodView, build_pod_view, build_pod_views
from agent.settings import Settings


def node_pod_views(
    settings: Settings, pods: PodCacheLike, snap: Snapshot, now: datetime | None = None
) -> list[PodView]:
    return build_pod_views(
        pods.pods,
        snap.sandboxes,
        snap.containers,
        node_name=settings.node_name,
        api_synced=pods.health.state == "ok",
        now=now or datetime.now(UTC),
        grace=timedelta(seconds=settings.mismatch_grace_seconds),
    )


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
