"""The one seam to the API server: list, watch and events as plain JSON.

``KubeSource`` wraps the official client once. It asks for raw JSON
(``_preload_content=False``) so objects go straight to ``agent.kube.convert``
without the client's slow model classes, and every call carries a deadline.
Tests replace the whole seam with a scripted ``PodSource``.

Part of the Kubernetes adapter: imports the kubernetes client, the errors and the settings.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from agent.errors import ApiServerError
from agent.settings import Settings


class Gone(Exception):
    """The resourceVersion asked for is too old (HTTP 410): list again."""


class StreamBroken(Exception):
    """An established watch stream was cut: resume from the last version."""


@dataclass(frozen=True, slots=True)
class PodList:
    items: list[dict[str, Any]]
    resource_version: str


@dataclass(frozen=True, slots=True)
class WatchEvent:
    type: str  # ADDED, MODIFIED, DELETED, BOOKMARK
    object: dict[str, Any]


class PodSource(Protocol):
    def list_pods(self, field_selector: str) -> PodList: ...

    def watch_pods(
        self, field_selector: str, resource_version: str, timeout_seconds: int
    ) -> Iterator[WatchEvent]: ...

    def list_events(self, namespace: str, field_selector: str) -> list[dict[str, Any]]: ...

    def list_services(self, namespace: str) -> list[dict[str, Any]]: ...

    def close(self) -> None: ...


def _api_error(exc: BaseException, what: str) -> ApiServerError:
    status = getattr(exc, "status", None)
    reason = getattr(exc, "reason", None) or type(exc).__name__
    text = f"API server: {what} failed: {status or ''} {reason}".replace("  ", " ")
    return ApiServerError(text.strip(), status=status)


class KubeSource:
    """The official kubernetes client behind the PodSource protocol."""

    def __init__(self, api_client: Any, settings: Settings) -> None:
        from kubernetes import client

        self._api_client = api_client
        self._core = client.CoreV1Api(api_client)
        self._timeout = settings.api_timeout_seconds
        self._open: set[Any] = set()
        self._lock = threading.Lock()

    def _json(self, response: Any) -> Any:
        try:
            return json.loads(response.data)
        finally:
            response.release_conn()

    def list_pods(self, field_selector: str) -> PodList:
        from kubernetes.client.exceptions import ApiException

        try:
            response = self._core.list_pod_for_all_namespaces(
                field_selector=field_selector,
                _preload_content=False,
                _request_timeout=self._timeout,
            )
            body = self._json(response)
        except ApiException as exc:
            if exc.status == 410:
                raise Gone(str(exc.reason)) from None
            raise _api_error(exc, "list pods") from None
        except Exception as exc:  # urllib3 connection errors, timeouts, bad JSON
            raise _api_error(exc, "list pods") from None
        return PodList(
            items=list(body.get("items") or []),
            resource_version=str(body.get("metadata", {}).get("resourceVersion", "")),
        )

    def watch_pods(
        self, field_selector: str, resource_version: str, timeout_seconds: int
    ) -> Iterator[WatchEvent]:
        from kubernetes.client.exceptions import ApiException

        response: Any
        try:
            response = self._core.list_pod_for_all_namespaces(
                field_selector=field_selector,
                watch=True,
                resource_version=resource_version,
                allow_watch_bookmarks=True,
                timeout_seconds=timeout_seconds,
                _preload_content=False,
                # The server ends the watch at timeout_seconds; the read
                # timeout only catches a server that went silent.
                _request_timeout=(self._timeout, timeout_seconds + 30),
            )
        except ApiException as exc:
            if exc.status == 410:
                raise Gone(str(exc.reason)) from None
            raise _api_error(exc, "watch pods") from None
        except Exception as exc:
            raise _api_error(exc, "watch pods") from None
        with self._lock:
            self._open.add(response)
        try:
            for line in _lines(response):
                event = json.loads(line)
                kind = event.get("type", "")
                obj = event.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        raise Gone(str(obj.get("message", "resource version too old")))
                    raise ApiServerError(
                        f"API server: watch error {obj.get('code')}: {obj.get('message')}",
                        status=obj.get("code"),
                    )
                yield WatchEvent(kind, obj)
        except (Gone, ApiServerError):
            raise
        except Exception as exc:  # urllib3 ProtocolError / ReadTimeoutError, truncated JSON
            raise StreamBroken(f"watch stream cut: {exc!r}") from None
        finally:
            with self._lock:
                self._open.discard(response)
            response.close()

    def list_events(self, namespace: str, field_selector: str) -> list[dict[str, Any]]:
        try:
            response = self._core.list_namespaced_event(
                namespace,
                field_selector=field_selector,
                _preload_content=False,
                _request_timeout=self._timeout,
            )
            return list(self._json(response).get("items") or [])
        except Exception as exc:
            raise _api_error(exc, "list events") from None

    def list_services(self, namespace: str) -> list[dict[str, Any]]:
        try:
            response = self._core.list_namespaced_service(
                namespace, _preload_content=False, _request_timeout=self._timeout
            )
            return list(self._json(response).get("items") or [])
        except Exception as exc:
            raise _api_error(exc, "list services") from None

    def close(self) -> None:
        """Abort open watches (unblocks the watch thread) and close the client."""
        with self._lock:
            open_now = list(self._open)
        for response in open_now:
            # shutdown() interrupts a blocked read; older urllib3 lacks it.
            with contextlib.suppress(Exception):
                response.shutdown()
            with contextlib.suppress(Exception):
                response.close()
        with contextlib.suppress(Exception):
            self._api_client.close()


def _lines(response: Any) -> Iterator[bytes]:
    """Newline-delimited JSON from a streamed response, whatever the chunking."""
    pending = b""
    for chunk in response.stream(amt=None, decode_content=True):
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            if line.strip():
                yield line
    if pending.strip():
        yield pending


def api_client_from_settings(settings: Settings) -> Any | None:
    """Build a kubernetes ApiClient: explicit URL, kubeconfig, in-cluster; None for CRI-only."""
    from kubernetes import client, config

    if settings.api_server:
        configuration = client.Configuration()
        configuration.host = settings.api_server.rstrip("/")
        return client.ApiClient(configuration)
    if settings.kubeconfig is not None:
        return config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(settings.kubeconfig)
        )
    if settings.kubernetes_service_host:
        configuration = client.Configuration()
        config.load_incluster_config(  # type: ignore[no-untyped-call]
            client_configuration=configuration
        )
        return client.ApiClient(configuration)
    return None
