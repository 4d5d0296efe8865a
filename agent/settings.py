"""The agent's one settings object.

Built once at start-up (environment variables ``PODLENS_*``, then CLI flags
on top) and passed down. Nothing reads the environment at import time.
"""

from __future__ import annotations

import socket
from pathlib import Path

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_node_name() -> str:
    return socket.gethostname()


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PODLENS_", extra="ignore", frozen=True)

    # --- where the agent listens
    host: str = "127.0.0.1"
    port: int = Field(default=8470, ge=0, le=65535)

    # --- which node this is; NODE_NAME is what the downward API usually sets
    node_name: str = Field(
        default_factory=_default_node_name,
        validation_alias=AliasChoices("PODLENS_NODE_NAME", "NODE_NAME", "node_name"),
    )

    # --- the container runtime
    cri_endpoint: str | None = None
    cri_timeout_seconds: float = Field(default=2.0, gt=0)
    cri_connect_timeout_seconds: float = Field(default=2.0, gt=0)
    # How often the runtime is relisted. Exits are also caught at once via
    # pidfds, and by container events where the runtime has them.
    relist_interval_seconds: float = Field(default=1.0, gt=0)
    # How many status calls may be in flight at once when many objects
    # appear together (cold start).
    status_concurrency: int = Field(default=16, ge=1, le=512)
    # Back-off between reconnect attempts when the runtime is down.
    reconnect_min_seconds: float = Field(default=0.5, gt=0)
    reconnect_max_seconds: float = Field(default=10.0, gt=0)

    # --- the host
    proc_root: Path = Path("/proc")

    # --- the Kubernetes API server (absent: CRI-only mode)
    kubeconfig: Path | None = None
    api_server: str | None = None
    api_timeout_seconds: float = Field(default=5.0, gt=0)
    api_watch_timeout_seconds: int = Field(default=300, ge=1)
    events_cache_seconds: float = Field(default=5.0, ge=0)
    # The API server learns of runtime changes from kubelet a little later;
    # disagreements younger than this are not reported.
    mismatch_grace_seconds: float = Field(default=30.0, ge=0)
    # Set by Kubernetes in every pod; its presence selects in-cluster config.
    kubernetes_service_host: str | None = Field(
        default=None, validation_alias=AliasChoices("KUBERNETES_SERVICE_HOST")
    )

    @field_validator("cri_endpoint")
    @classmethod
    def _endpoint_has_scheme_or_path(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if value.startswith(("unix://", "/")) or "://" not in value:
            return value
        if value.startswith(("tcp://", "dns:", "ipv4:", "ipv6:")):
            return value
        raise ValueError(
            f"unsupported CRI endpoint scheme in {value!r} (use unix:///path or a path)"
        )
