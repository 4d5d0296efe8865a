"""The node-wide join is reused only while snapshot, pod cache and second are unchanged."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import cast

from agent.domain.kubemodel import ApiPod
from agent.domain.podview import PodView
from agent.kube import ApiHealth, PodCacheLike
from agent.services import pods as pod_service
from agent.services.node import Snapshot
from agent.services.pods import PodViewMemo
from agent.settings import Settings
from tests.test_podview import NODE, NOW, api, by_id, cstatus, ctr, pod_doc, running, sandbox


class Cache:
    """The two things the join reads from a pod cache, replaced whole as PodCache does."""

    def __init__(self, pods: Mapping[str, ApiPod]) -> None:
        self.pods: Mapping[str, ApiPod] = MappingProxyType(dict(pods))
        self.health = ApiHealth(state="ok", since=NOW)


SETTINGS = Settings(node_name=NODE)


def node_pod_views(
    settings: Settings,
    cache: Cache,
    snap: Snapshot,
    now: datetime | None = None,
    memo: PodViewMemo | None = None,
) -> list[PodView]:
    """The join, given this module's stand-in for the pod cache (it has what the join reads)."""
    return pod_service.node_pod_views(settings, cast(PodCacheLike, cache), snap, now, memo)


def inputs() -> tuple[Cache, Snapshot]:
    sb = sandbox("sb")
    web = ctr("c1", "web", sb)
    doc = pod_doc("web", statuses=[cstatus("web", web.id, state=running())])
    snap = Snapshot(version=1, taken_at=NOW, sandboxes=by_id(sb), containers=by_id(web))
    return Cache(api(doc)), snap


def test_same_inputs_in_the_same_second_reuse_the_join() -> None:
    cache, snap = inputs()
    memo = PodViewMemo()
    first = node_pod_views(SETTINGS, cache, snap, NOW, memo)
    again = node_pod_views(SETTINGS, cache, snap, NOW + timedelta(milliseconds=400), memo)
    assert [v.status for v in first] == ["Running"]
    assert again[0] is first[0]
    # Callers get their own list: filtering one cannot change another's.
    again.clear()
    assert node_pod_views(SETTINGS, cache, snap, NOW, memo)[0] is first[0]


def test_any_changed_input_rebuilds() -> None:
    cache, snap = inputs()
    memo = PodViewMemo()
    first = node_pod_views(SETTINGS, cache, snap, NOW, memo)[0]

    newer = dataclasses.replace(snap, version=2)
    assert node_pod_views(SETTINGS, cache, newer, NOW, memo)[0] is not first

    exited = dataclasses.replace(
        newer,
        version=3,
        containers={
            cid: dataclasses.replace(c, state=c.state.EXITED, exit_code=1, reason="Error", pid=None)
            for cid, c in newer.containers.items()
        },
    )
    view = node_pod_views(SETTINGS, cache, exited, NOW, memo)[0]
    assert view.containers[0].current is not None
    assert view.containers[0].current.state.name == "EXITED"

    cache.pods = MappingProxyType({})  # the pod was deleted from the API
    assert node_pod_views(SETTINGS, cache, exited, NOW, memo)[0].api_known is False

    cache.health = ApiHealth(state="unavailable", since=NOW)
    before = node_pod_views(SETTINGS, cache, exited, NOW, memo)[0]
    assert node_pod_views(SETTINGS, cache, exited, NOW, memo)[0] is before
    assert (
        node_pod_views(SETTINGS, cache, exited, NOW + timedelta(seconds=1), memo)[0] is not before
    )


def test_without_a_memo_every_call_builds() -> None:
    cache, snap = inputs()
    assert (
        node_pod_views(SETTINGS, cache, snap, NOW)[0]
        is not node_pod_views(SETTINGS, cache, snap, NOW)[0]
    )
