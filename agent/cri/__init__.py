"""The container runtime adapter: CRI gRPC in, the agent's own types out.

The only package that imports grpc and the generated CRI stubs.
"""

from agent.cri._client import CriClient, EventsUnsupported, RuntimeCondition, map_grpc_error
from agent.cri._endpoints import KNOWN_ENDPOINTS, KnownEndpoint, discover_endpoint, socket_path

__all__ = [
    "KNOWN_ENDPOINTS",
    "CriClient",
    "EventsUnsupported",
    "KnownEndpoint",
    "RuntimeCondition",
    "discover_endpoint",
    "map_grpc_error",
    "socket_path",
]
