"""The Kubernetes API adapter: the node's pods (list + watch), their events.

Also the API server's answers to "whose token is this?" and "may they do
this?" (TokenReview, SubjectAccessReview) for the agent's HTTP door.

The only package that imports the ``kubernetes`` client. Objects leave it as
the agent's own types (``agent.domain.kubemodel``).

An adapter: besides the client, it imports the domain, the errors and the settings; no
other adapter.
"""

from agent.kube._auth import (
    AccessDecision,
    AccessReviewer,
    KubeAccessReviewer,
    ResourceAttributes,
    TokenReviewResult,
    UserInfo,
    access_reviewer_from_settings,
)
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
    "AccessDecision",
    "AccessReviewer",
    "ApiHealth",
    "DisabledPodCache",
    "EventCache",
    "Gone",
    "KubeAccessReviewer",
    "KubeSource",
    "PodCache",
    "PodCacheLike",
    "PodList",
    "PodSource",
    "ResourceAttributes",
    "StreamBroken",
    "TokenReviewResult",
    "UserInfo",
    "WatchEvent",
    "WatchStats",
    "access_reviewer_from_settings",
    "api_client_from_settings",
    "pod_cache_from_settings",
]
