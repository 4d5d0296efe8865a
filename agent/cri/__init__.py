"""The container runtime adapter: CRI gRPC in, the agent's own types out.

The only package that imports grpc and the generated CRI stubs.

An adapter: besides those, it imports the domain and the errors; no other adapter.
"""

from agent.cri._client import CriClient, RuntimeCondition, map_grpc_error
from agent.cri._endpoints import KNOWN_ENDPOINTS, KnownEndpoint, discover_endpoint, socket_path
from agent.cri._events import EventPolicy, event_policy, major_minor
from agent.cri._protocol import CallUnimplemented, EventsUnsupported, RuntimeClient

__all__ = [
    "KNOWN_ENDPOINTS",
    "CallUnimplemented",
    "CriClient",
    "EventPolicy",
    "EventsUnsupported",
    "KnownEndpoint",
    "RuntimeClient",
    "RuntimeCondition",
    "discover_endpoint",
    "event_policy",
    "major_minor",
    "map_grpc_error",
    "socket_path",
]
