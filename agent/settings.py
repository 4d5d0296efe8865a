"""The agent's one settings object.

Built once at start-up (environment variables ``PODLENS_*``, then CLI flags
on top) and passed down. Nothing reads the environment at import time.

The bottom layer: imports pydantic, pydantic-settings and the standard library, no other
part of the agent.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def _default_node_name() -> str:
    return socket.gethostname()


class Settings(BaseSettings):
    """Every knob of the agent, from ``PODLENS_*`` variables and flags; frozen once built."""

    model_config = SettingsConfigDict(env_prefix="PODLENS_", extra="ignore", frozen=True)

    # --- where the agent listens
    host: str = "127.0.0.1"
    port: int = Field(default=8470, ge=0, le=65535)
    # TLS: "auto" serves it on every address but loopback, "on" everywhere,
    # "off" nowhere (refused on other addresses while tokens are checked).
    # With no certificate files, a self-signed one is made at start and its
    # fingerprints logged.
    tls_mode: Literal["auto", "on", "off"] = "auto"
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    # Bounds for callers without a token: connections and requests served at
    # once (more get 503), seconds to send a request's head, idle seconds
    # between requests, and the largest request head in bytes.
    http_limit_concurrency: int = Field(default=64, ge=1)
    http_header_timeout_seconds: float = Field(default=10.0, gt=0)
    http_keep_alive_seconds: int = Field(default=5, ge=1)
    http_max_header_bytes: int = Field(default=16384, ge=4096)

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
    status_concurrency: int = Field(default=32, ge=1, le=512)
    # Above this many new objects in one refresh, PIDs come from one scan of
    # /proc and the verbose status follows in the background.
    verbose_batch_limit: int = Field(default=32, ge=0)
    # Back-off between reconnect attempts when the runtime is down.
    reconnect_min_seconds: float = Field(default=0.5, gt=0)
    reconnect_max_seconds: float = Field(default=10.0, gt=0)
    # While the runtime's container events are followed, a relist this often
    # is only the safety net for an event that never came.
    events_relist_interval_seconds: float = Field(default=10.0, gt=0)
    # How long a request may wait for the refresh asked for when the API
    # server names a container or sandbox the snapshot does not hold yet.
    pod_view_wait_seconds: float = Field(default=0.5, ge=0)
    # False: never subscribe to the runtime's container events, relist only
    # (where another subscriber must not be added, or to compare the two).
    follow_container_events: bool = True

    # --- the host
    proc_root: Path = Path("/proc")

    # --- logs: files outside these directories are never opened, wherever the
    # runtime says a container's log is
    log_roots: Annotated[tuple[Path, ...], NoDecode] = (Path("/var/log/pods"),)
    # Lines kept per dead attempt, so a crash's output outlives kubelet's GC.
    last_words_lines: int = Field(default=50, ge=0, le=1000)
    # Memory bounds, so that no mix of requests outgrows the pod's limit:
    # log reads and diagnoses (which read logs) served at once (more wait
    # their turn), the size of one logs answer (older lines are left out
    # past it, and the answer says so), and the log lines the diagnosis
    # keeps between requests.
    log_reads_concurrent: int = Field(default=4, ge=1, le=64)
    log_response_max_bytes: int = Field(default=4 * 1024 * 1024, ge=64 * 1024)
    log_memo_max_bytes: int = Field(default=8 * 1024 * 1024, ge=0)

    @field_validator("log_roots", mode="before")
    @classmethod
    def _split_roots(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(Path(part) for part in value.split(",") if part.strip())
        return value

    # --- diagnosis: how long a state may last before it is a finding
    diagnosis_init_waiting_seconds: float = Field(default=60.0, ge=0)
    diagnosis_creating_seconds: float = Field(default=120.0, ge=0)
    diagnosis_not_ready_seconds: float = Field(default=60.0, ge=0)
    diagnosis_port_grace_seconds: float = Field(default=30.0, ge=0)

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

    # --- who may ask: bearer tokens checked with TokenReview, then a
    # SubjectAccessReview per request, as the kubelet does. None picks
    # "kubernetes" when an API server is configured, else "none".
    auth_mode: Literal["kubernetes", "none"] | None = None
    # Off: inside a pod, loopback is where kubectl port-forward and a mesh
    # sidecar deliver anyone. On, 127.0.0.1 and ::1 may read without a token
    # (never logs, never kill).
    trust_loopback: bool = False
    auth_cache_seconds: float = Field(default=10.0, ge=0)
    auth_timeout_seconds: float = Field(default=5.0, gt=0)
    # Only tokens minted for the agent (kubectl create token --audience podlens);
    # empty accepts the API server's own audience too.
    auth_token_audiences: Annotated[tuple[str, ...], NoDecode] = ("podlens",)
    auth_max_token_length: int = Field(default=8192, ge=1)
    # Token reviews the cache cannot answer, per client address.
    auth_review_burst: int = Field(default=32, ge=1)
    auth_review_rate_per_second: float = Field(default=4.0, gt=0)

    @field_validator("auth_token_audiences", mode="before")
    @classmethod
    def _split_audiences(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @property
    def api_configured(self) -> bool:
        """Whether an API server is named (server, kubeconfig, or in-cluster); else CRI-only."""
        return bool(self.api_server or self.kubeconfig or self.kubernetes_service_host)

    @property
    def resolved_auth_mode(self) -> Literal["kubernetes", "none"]:
        """``auth_mode`` as set, or else "kubernetes" with an API server and "none" without."""
        if self.auth_mode is not None:
            return self.auth_mode
        return "kubernetes" if self.api_configured else "none"

    # --- the agent's own pod (downward API), so it never kills itself
    pod_name: str | None = Field(
        default=None, validation_alias=AliasChoices("PODLENS_POD_NAME", "POD_NAME", "pod_name")
    )
    pod_namespace: str | None = Field(
        default=None,
        validation_alias=AliasChoices("PODLENS_POD_NAMESPACE", "POD_NAMESPACE", "pod_namespace"),
    )

    # --- kill-and-watch: off unless enabled, and then only where allowed
    enable_kill: bool = False
    # Namespaces where any pod may be targeted; empty means none (opt-in label only).
    kill_namespaces: Annotated[tuple[str, ...], NoDecode] = ()
    # A pod carrying this label with value "true" may be targeted in any namespace
    # the guards otherwise allow.
    kill_opt_in_label: str = "podlens.io/allow-kill"
    # kube-system and static (mirror) pods are refused unless this is set.
    kill_allow_system: bool = False
    kill_rate_per_minute: int = Field(default=6, ge=1, le=600)
    kill_timeout_seconds: float = Field(default=120.0, gt=0, le=1800)
    # Every kill and every refusal is appended here (JSON lines, fsynced) as
    # well as logged; None logs only.
    audit_log_path: Path | None = None

    @field_validator("kill_namespaces", mode="before")
    @classmethod
    def _split_namespaces(cls, value: object) -> object:
        # Environment variables and flags give "a,b,c".
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

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
