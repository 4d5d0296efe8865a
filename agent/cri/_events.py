"""Whether to follow a runtime's container events, decided from its name and version.

``GetContainerEvents`` is a broadcast only on some runtimes. containerd 1.7
hands each event to one subscriber: every stream reads the same queue
(pkg/cri/server/container_events.go ranges over one shared channel), so a
second subscriber takes events away from kubelet's evented PLEG. containerd
2.0 and later fan each event out to every subscriber (internal/eventq), and
CRI-O broadcasts to every stream (server/container_events.go) when
``enable_pod_events`` is on. containerd 1.6 does not implement the call.

Part of the CRI adapter: imports the domain model and the standard library only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from agent.domain.model import RuntimeInfo, RuntimeKind

_VERSION = re.compile(r"v?(\d+)\.(\d+)")

CONTAINERD_17_SHARED_QUEUE = (
    "containerd 1.7 hands each container event to only one GetContainerEvents subscriber "
    "(all streams read one queue): subscribing would take events away from kubelet's "
    "evented PLEG, so the agent relists instead"
)


@dataclass(frozen=True, slots=True)
class EventPolicy:
    """Whether to subscribe to container events, and why not when not."""

    subscribe: bool
    reason: str | None = None


def major_minor(version: str) -> tuple[int, int] | None:
    """(major, minor) of a runtime version such as ``v2.4.2`` or ``1.6.20~ds1``."""
    found = _VERSION.search(version)
    if found is None:
        return None
    return int(found.group(1)), int(found.group(2))


def event_policy(info: RuntimeInfo) -> EventPolicy:
    """Follow events where the runtime broadcasts them; never where it would steal them."""
    if info.kind is not RuntimeKind.CONTAINERD:
        # CRI-O broadcasts (or ends the stream at once when pod events are
        # off); other runtimes answer UNIMPLEMENTED if they lack it.
        return EventPolicy(subscribe=True)
    version = major_minor(info.runtime_version)
    if version is None:
        return EventPolicy(
            subscribe=False,
            reason=f"containerd version {info.runtime_version!r} is not one the agent can read; "
            "it could be 1.7, where " + CONTAINERD_17_SHARED_QUEUE.removeprefix("containerd 1.7 "),
        )
    if version == (1, 7):
        return EventPolicy(subscribe=False, reason=CONTAINERD_17_SHARED_QUEUE)
    # 1.6 and older answer UNIMPLEMENTED, which says so; 2.0+ broadcast.
    return EventPolicy(subscribe=True)
