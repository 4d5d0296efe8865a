"""The Kubernetes API adapter: the node's pods (list + watch), their events.

The only package that imports the ``kubernetes`` client. Objects leave it as
the agent's own types (``agent.kubemodel``).
"""

from agent.kube._events import EventCache
from agent.kube._source import (
    Gone,
    KubeSource,
    PodList,
    PodSource,
    StreamBroken,
    WatchEvent,
    api_client_from_settings,
)
from agent.kube._watch import (
    ApiHealth,
    DisabledPodCache,
    PodCache,
    PodCacheLike,
    WatchStats,
    pod_cache_from_settings,
)

__all__ = [
    "ApiHealth",
    "DisabledPodCache",
    "EventCache",
    "Gone",
    "KubeSource",
    "PodCache",
    "PodCacheLike",
    "PodList",
    "PodSource",
    "StreamBroken",
    "WatchEvent",
    "WatchStats",
    "api_client_from_settings",
    "pod_cache_from_settings",
]
