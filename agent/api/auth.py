"""Who may ask the agent what: the kubelet's door, for the agent's own port.

Every request except the probes carries ``Authorization: Bearer <token>``.
The API server says whose token it is (TokenReview) and whether that user
may do what the request needs (SubjectAccessReview), exactly as the kubelet
guards :10250. What a request needs is a verb on a subresource of the node
the agent runs on (``required_permission``), so a ClusterRole grants it::

    - apiGroups: [""]
      resources: ["nodes/podlens"]        # reads: node, pods, containers, ...
      verbs: ["get"]
    - apiGroups: [""]
      resources: ["nodes/podlens-logs"]   # container logs
      verbs: ["get"]
    - apiGroups: [""]
      resources: ["nodes/podlens-heal"]   # kill-and-watch
      verbs: ["create"]

The subresources are the agent's own (the API server never serves them), so
granting them grants nothing else, and only wildcard rules (``*``,
``nodes/*``, as in cluster-admin) hold them without naming them.
Logs have their own subresource because they hold what applications print,
secrets included; killing has its own because it is the one thing here that
changes the node.

Why a pure ASGI middleware, checked before routing: it covers every route the
same way, the ones added later included, and websocket handshakes too, with
nothing for a route to forget. Deciding before routing could tell anonymous
callers which paths exist; it does not here, because every path but the two
probes needs a valid token, known or not: an anonymous caller gets 401 for
``/v1/pods`` and for ``/nope`` alike, a caller without the read permission
403 for both, and only a caller allowed to read sees the router's 404 or
405. A method the table does not know as a read needs the heal subresource
(with the kubelet's method-to-verb mapping), so a mutating route added
later is closed until someone decides otherwise.

``/metrics`` is a read (``get nodes/podlens``), not open: its series carry
pod and namespace names, and Prometheus scrapes with a service account
token anyway, as it does for the kubelet's ``nodes/metrics``.

On top of the node's subresource, logs and kills need what kubectl would
need for the same pod: ``get pods/log`` (logs, a pod's diagnosis) or
``delete pods`` (kill-and-watch) in the pod's namespace, asked in a second
SubjectAccessReview (``required_pod_access``). A role on the node is then no
role on every tenant's pods: a tenant bound to ``podlens-viewer`` reads the
logs of the namespaces where it may already run ``kubectl logs``, and no
others. ``/v1/diagnostics`` quotes every pod's logs, so it needs ``get
pods/log`` in every namespace.

Loopback (``trust_loopback``, off by default) admits requests from exactly
127.0.0.1 or ::1 without a token, for reads only (``get nodes/podlens``):
logs, diagnoses and kills always need a token. It is off because loopback
proves nothing inside a pod: ``kubectl port-forward`` arrives there for
anyone with ``create pods/portforward`` in the agent's namespace, and a
service mesh's sidecar delivers every caller from 127.0.0.1 or 127.0.0.6.
Requests over a Unix socket have no client address and are never loopback.

Before any review, a token must look like one (RFC 6750 characters, at most
``max_token_length``): anything else is refused without asking the API
server. Token reviews not answered from the cache are budgeted per client
address (a token bucket of ``review_burst`` refilled at
``review_rate_per_second``), so a caller without a token cannot make the
agent flood the API server with reviews of made-up ones; past the budget the
answer is 429 with ``Retry-After``.

Answers are cached for ``cache_seconds`` (allowed and denied alike; failures
to ask never): token reviews by the token's SHA-256, access reviews by user
and attributes, each in a bounded table. Calls to the API server block, so
they run in worker threads of their own (a slow API server cannot take the
threads the routes run in) under a deadline; when the API server cannot be
asked, the request is refused with 503, never let through.

Routes learn who asked from ``CallerDep`` (``request.state.caller``, a
``Caller``); ``request.state.user`` holds the caller's name, which the
kill-and-watch audit trail records. Loopback callers are "local (loopback)".
The door also names the caller to the audit trail (``audit_caller``): uid,
groups, client address and token fingerprint go into every audit record
written while the request runs, and into the records of the run it starts.

The probes stay open, and so do ``/`` (where things are) and the web UI's
static files (``/ui/``, ``/ui/<name>.<ext>``), which hold no data: the page
asks the API with the user's token like any client. Only paths shaped like
one of those files are open, so no ``..`` or second segment rides on them.
``/readyz`` sent with a token that may read is answered
with its details; without one (the kubelet's probes), with the verdict only.

Tokens never appear in logs or answers; logs name a token by the first
twelve hex digits of its SHA-256.

Part of the HTTP edge: imports ``agent.kube`` (the reviews), the audit context of
``agent.services.heal``, the errors, and starlette, fastapi and anyio.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import math
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Generic, Literal, TypeVar

import anyio
import anyio.lowlevel
import anyio.to_thread
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from agent.errors import ApiServerError
from agent.kube import (
    AccessDecision,
    AccessReviewer,
    ResourceAttributes,
    TokenReviewResult,
    UserInfo,
)
from agent.services.heal import audit_caller

log = logging.getLogger(__name__)

AuthMode = Literal["kubernetes", "none"]

LOOPBACK_CALLER_NAME = "local (loopback)"
_REALM = 'Bearer realm="podlens"'
# The client's own timeout normally ends a stuck call first, with a clearer
# error; this margin only matters when it does not (a hung DNS lookup).
_DEADLINE_GRACE_SECONDS = 0.5

K = TypeVar("K")
V = TypeVar("V")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """How the door works; built from the settings at start-up."""

    mode: AuthMode
    node_name: str
    trust_loopback: bool = False
    cache_seconds: float = 10.0
    timeout_seconds: float = 5.0
    cache_entries: int = 4096
    # Reviews in flight at once; more wait for a slot, within their deadline.
    max_concurrent_reviews: int = 16
    # Service account tokens are 1-2 KB; an OIDC token with many groups a few.
    max_token_length: int = 8192
    # Reviews of tokens the cache does not know, per client address.
    review_burst: int = 32
    review_rate_per_second: float = 4.0

    def __post_init__(self) -> None:
        if self.mode not in ("kubernetes", "none"):
            raise ValueError(f"auth mode must be 'kubernetes' or 'none', not {self.mode!r}")
        if self.cache_seconds < 0:
            raise ValueError("auth cache_seconds must not be negative")
        if self.timeout_seconds <= 0:
            raise ValueError("auth timeout_seconds must be positive")
        if self.cache_entries < 1 or self.max_concurrent_reviews < 1:
            raise ValueError("auth cache_entries and max_concurrent_reviews must be at least 1")
        if self.max_token_length < 1 or self.review_burst < 1:
            raise ValueError("auth max_token_length and review_burst must be at least 1")
        if not self.review_rate_per_second > 0:
            raise ValueError("auth review_rate_per_second must be positive")


@dataclass(frozen=True, slots=True)
class Permission:
    """A verb on a subresource of this node: what a SubjectAccessReview asks."""

    verb: str
    subresource: str
    resource: str = "nodes"
    group: str = ""

    def describe(self) -> str:
        """The permission as logs and refusals name it: "get nodes/podlens"."""
        return f"{self.verb} {self.resource}/{self.subresource}"

    def attributes(self, node_name: str) -> ResourceAttributes:
        """The SubjectAccessReview's resource attributes for this node."""
        return ResourceAttributes(
            verb=self.verb,
            group=self.group,
            version="v1",
            resource=self.resource,
            subresource=self.subresource,
            name=node_name,
        )


@dataclass(frozen=True, slots=True)
class PodAccess:
    """What a request needs of the target pods themselves: what kubectl would need."""

    verb: str
    subresource: str
    # "" means every namespace (and then every pod).
    namespace: str
    name: str = ""

    def describe(self) -> str:
        """The access as logs and refusals name it: "get pods/log in namespace web (pod api)"."""
        what = f"{self.verb} pods/{self.subresource}" if self.subresource else f"{self.verb} pods"
        if not self.namespace:
            return f"{what} in every namespace"
        return f"{what} in namespace {self.namespace} (pod {self.name})"

    def attributes(self) -> ResourceAttributes:
        """The SubjectAccessReview's resource attributes for the target pods."""
        return ResourceAttributes(
            verb=self.verb,
            group="",
            version="v1",
            resource="pods",
            subresource=self.subresource,
            namespace=self.namespace,
            name=self.name,
        )


READ = Permission("get", "podlens")
READ_LOGS = Permission("get", "podlens-logs")
HEAL = Permission("create", "podlens-heal")

_OPEN_PATHS = frozenset({"/healthz", "/readyz", "/", "/ui", "/ui/"})
# The web UI's static files, by the shape of their names (one segment, no
# dots but the extension's): they carry no data, the page asks the API with a token.
_OPEN_FILE = re.compile(r"/ui/[a-z0-9-]+\.[a-z]+")
_READ_METHODS = frozenset({"GET", "HEAD"})
# The kubelet's mapping from HTTP method to verb (pkg/kubelet/server/auth.go).
_WRITE_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


def required_permission(method: str, path: str) -> Permission | None:
    """What a request needs; None for the probes, which are open.

    ``path`` is the path the router matches (without any root path).
    """
    method = method.upper()
    if method not in _READ_METHODS:
        return Permission(_WRITE_VERBS.get(method, method.lower()), HEAL.subresource)
    if path in _OPEN_PATHS or _OPEN_FILE.fullmatch(path):
        return None
    # Empty segments are dropped, so "//" cannot make a logs path look like
    # something else; the router never matches such a path anyway.
    parts = [part for part in path.split("/") if part]
    if len(parts) >= 5 and parts[0] == "v1" and parts[1] == "pods" and parts[4] == "logs":
        return READ_LOGS
    # Diagnoses quote the containers' last log lines as evidence.
    if parts[:2] == ["v1", "diagnostics"] or (
        len(parts) == 5 and parts[:2] == ["v1", "pods"] and parts[4] == "diagnosis"
    ):
        return READ_LOGS
    return READ


def required_pod_access(method: str, path: str) -> PodAccess | None:
    """What a request needs in its pod's namespace on top of the node permission; None if nothing.

    Logs and a pod's diagnosis (which quotes its logs) need ``get pods/log``
    in the namespace; a write under a pod (kill-and-watch) ``delete pods``;
    the node-wide diagnostics ``get pods/log`` in every namespace.
    """
    method = method.upper()
    parts = [part for part in path.split("/") if part]
    if method in _READ_METHODS and parts == ["v1", "diagnostics"]:
        return PodAccess("get", "log", "")
    if len(parts) < 4 or parts[:2] != ["v1", "pods"]:
        return None
    namespace, name = parts[2], parts[3]
    if method not in _READ_METHODS:
        return PodAccess("delete", "", namespace, name)
    if (len(parts) >= 5 and parts[4] == "logs") or (len(parts) == 5 and parts[4] == "diagnosis"):
        return PodAccess("get", "log", namespace, name)
    return None


# Kubernetes' own rules for namespace and pod names (DNS-1123 label, subdomain).
_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def _names_a_pod(access: PodAccess) -> bool:
    if not access.namespace:
        return True
    return (
        len(access.namespace) <= 63
        and _LABEL.fullmatch(access.namespace) is not None
        and len(access.name) <= 253
        and _SUBDOMAIN.fullmatch(access.name) is not None
    )


@dataclass(frozen=True, slots=True)
class Caller:
    """Who made a request, for routes and for the audit log."""

    name: str
    # "open": an open path (a probe) asked without a token that may read;
    # "unchecked": no door is installed (auth mode "none").
    via: Literal["token", "loopback", "open", "unchecked"]
    uid: str = ""
    groups: tuple[str, ...] = ()
    # The token's short hash, to find the request in the agent's auth log.
    token_hash: str = ""

    @property
    def may_read(self) -> bool:
        """Whether the caller may read the agent's answers (not only a probe's verdict)."""
        return self.via != "open"


LOOPBACK_CALLER = Caller(LOOPBACK_CALLER_NAME, via="loopback")
OPEN_CALLER = Caller("anonymous", via="open")
# No door installed (auth_mode "none"): nobody was asked who they are.
UNCHECKED_CALLER = Caller("anonymous (authentication off)", via="unchecked")


def get_caller(request: Request) -> Caller:
    """Who asked: set by the door as ``request.state.caller`` (its name as ``.user``)."""
    caller = getattr(request.state, "caller", None)
    return caller if isinstance(caller, Caller) else UNCHECKED_CALLER


async def _caller(request: Request) -> Caller:
    # Async on purpose: FastAPI runs a plain function dependency in a worker
    # thread, and the probes must answer while every worker is busy.
    return get_caller(request)


CallerDep = Annotated[Caller, Depends(_caller)]


def token_fingerprint(token: str) -> str:
    """A short, non-reversible name for a token, fit for logs."""
    digest = hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()
    return f"sha256:{digest[:12]}"


_LOOPBACK_ADDRESSES = frozenset({ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")})


def is_loopback(host: str | None) -> bool:
    """Exactly 127.0.0.1 or ::1 (or 127.0.0.1 mapped into IPv6), never the rest of 127/8.

    A service mesh's sidecar delivers every caller from another address of
    127/8 (Istio: 127.0.0.6), so the whole block proves nothing.
    """
    if not host:
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address in _LOOPBACK_ADDRESSES


def bearer_token(authorization: Sequence[str]) -> tuple[str | None, str]:
    """The token from the Authorization header values, or None and why not."""
    if not authorization:
        return None, "a bearer token is required (Authorization: Bearer <token>)"
    if len(authorization) > 1:
        return None, "more than one Authorization header"
    scheme, _, token = authorization[0].strip().partition(" ")
    if scheme.lower() != "bearer":
        return None, "only bearer tokens are accepted (Authorization: Bearer <token>)"
    token = token.strip()
    if not token:
        return None, "the bearer token is empty"
    return token, ""


# RFC 6750's b64token; a JWT (header.payload.signature) is one.
_TOKEN = re.compile(r"[A-Za-z0-9._~+/-]+=*")


def token_problem(token: str, max_length: int) -> str:
    """Why ``token`` cannot be a bearer token, without quoting it; "" if it can."""
    if len(token) > max_length:
        return f"the bearer token is too long ({len(token)} characters, at most {max_length})"
    if _TOKEN.fullmatch(token) is None:
        return "the bearer token is malformed (RFC 6750 token characters only)"
    return ""


def client_address(scope: Scope) -> str:
    """The client's address as ``host:port``, or "unix socket" when it has none."""
    client = scope.get("client")
    if not client:
        return "unix socket"
    host, port = client[0], client[1]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


def route_path(scope: Scope) -> str:
    """The path the router matches: as Starlette computes it, minus the root path."""
    path: str = scope["path"]
    root = scope.get("root_path", "")
    if root and path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
        return path[len(root) :]
    return path


class _TTLCache(Generic[K, V]):
    """Answers kept ``ttl`` seconds from when they were fetched; oldest dropped first."""

    def __init__(self, ttl: float, max_entries: int, clock: Callable[[], float]) -> None:
        self._ttl = ttl
        self._max = max_entries
        self._clock = clock
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()
        # Tiny critical sections; a TestClient may drive requests from threads.
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            hit = self._entries.get(key)
            if hit is None:
                return None
            if self._clock() - hit[0] >= self._ttl:
                del self._entries[key]
                return None
            return hit[1]

    def put(self, key: K, value: V) -> None:
        if self._ttl <= 0:
            return
        with self._lock:
            self._entries[key] = (self._clock(), value)
            self._entries.move_to_end(key)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


class _Budgets:
    """A token bucket per client address; the least recently used addresses are forgotten."""

    def __init__(
        self, rate: float, burst: int, max_entries: int, clock: Callable[[], float]
    ) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._max = max_entries
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """Spend one unit of ``key``'s budget: 0 if there was one, else seconds until there is."""
        now = self._clock()
        with self._lock:
            level, at = self._buckets.get(key, (self._burst, now))
            level = min(self._burst, level + (now - at) * self._rate)
            spent = level >= 1
            if spent:
                level -= 1
            self._buckets[key] = (level, now)
            self._buckets.move_to_end(key)
            while len(self._buckets) > self._max:
                self._buckets.popitem(last=False)
        return 0.0 if spent else (1 - level) / self._rate


@dataclass(frozen=True, slots=True)
class _Refusal:
    status_code: int
    error: str
    message: str
    detail: dict[str, object] | None = None
    headers: tuple[tuple[str, str], ...] = ()

    async def send_to(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            # Closing before accepting refuses the handshake; 1013 asks the
            # client to try again later, 1008 says it was not allowed.
            reason = self.message.encode()[:123].decode(errors="ignore")
            code = 1013 if self.status_code in (429, 503) else 1008
            await send({"type": "websocket.close", "code": code, "reason": reason})
            return
        body: dict[str, object] = {"error": self.error, "message": self.message}
        if self.detail:
            body["detail"] = self.detail
        await JSONResponse(body, status_code=self.status_code, headers=dict(self.headers))(
            scope, receive, send
        )


def _unauthorized(message: str, *, invalid_token: bool = False) -> _Refusal:
    challenge = f'{_REALM}, error="invalid_token"' if invalid_token else _REALM
    return _Refusal(401, "unauthorized", message, headers=(("WWW-Authenticate", challenge),))


def _audit_fields(caller: Caller, source: str) -> dict[str, object]:
    return {
        "name": caller.name,
        "via": caller.via,
        "uid": caller.uid,
        "groups": list(caller.groups),
        "source": source,
        "token": caller.token_hash,
    }


def _admit(state: dict[str, object], caller: Caller) -> None:
    state["caller"] = caller
    # The plain name too: the kill-and-watch route records ``request.state.user``
    # in its audit trail as who asked.
    state["user"] = caller.name


class AuthMiddleware:
    """Authenticate and authorize every HTTP and websocket request before routing."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        config: AuthConfig,
        reviewer: AccessReviewer,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self._config = config
        self._reviewer = reviewer
        self._tokens: _TTLCache[bytes, TokenReviewResult] = _TTLCache(
            config.cache_seconds, config.cache_entries, clock
        )
        self._decisions: _TTLCache[tuple[UserInfo, ResourceAttributes], AccessDecision] = _TTLCache(
            config.cache_seconds, config.cache_entries, clock
        )
        self._budgets = _Budgets(
            config.review_rate_per_second, config.review_burst, config.cache_entries, clock
        )
        # Per event loop, as anyio keeps its own default limiter: a limiter
        # belongs to the loop that made it.
        self._limiter: anyio.lowlevel.RunVar[anyio.CapacityLimiter] = anyio.lowlevel.RunVar(
            f"podlens-auth-limiter-{id(self)}"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on with its caller in ``scope["state"]``, or answer the refusal."""
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        # A websocket handshake is a GET, as the kubelet treats it.
        method = scope["method"] if scope["type"] == "http" else "GET"
        path = route_path(scope)
        permission = required_permission(method, path)
        state = scope.setdefault("state", {})
        source = client_address(scope)
        client = scope.get("client")
        host = str(client[0]) if client else "unix socket"
        authorization = [
            value.decode("latin-1") for name, value in scope["headers"] if name == b"authorization"
        ]
        if permission is None:
            # A probe: open to all, with its details for a caller who may read.
            caller = OPEN_CALLER
            if authorization:
                outcome = await self.check(authorization, READ, None, host)
                if isinstance(outcome, Caller):
                    caller = outcome
            _admit(state, caller)
            await self.app(scope, receive, send)
            return
        if self._config.trust_loopback and permission == READ and is_loopback(host):
            _admit(state, LOOPBACK_CALLER)
            with audit_caller(_audit_fields(LOOPBACK_CALLER, source)):
                await self.app(scope, receive, send)
            return
        pod_access = required_pod_access(method, path)
        outcome = await self.check(authorization, permission, pod_access, host)
        if isinstance(outcome, _Refusal):
            await outcome.send_to(scope, receive, send)
            return
        _admit(state, outcome)
        with audit_caller(_audit_fields(outcome, source)):
            await self.app(scope, receive, send)

    async def check(
        self,
        authorization: Sequence[str],
        permission: Permission,
        pod_access: PodAccess | None = None,
        client_host: str = "unknown",
    ) -> Caller | _Refusal:
        """Ask (or remember) who the token belongs to and whether they hold ``permission``
        (and ``pod_access`` in the pod's namespace); ``client_host`` pays for new reviews."""
        token, problem = bearer_token(authorization)
        if token is None:
            return _unauthorized(problem)
        problem = token_problem(token, self._config.max_token_length)
        if problem:
            return _unauthorized(problem, invalid_token=True)
        fingerprint = token_fingerprint(token)
        node = self._config.node_name
        try:
            review = await self._review_token(token, client_host)
            if isinstance(review, _Refusal):
                return review
            if review.user is None:
                log.info("token %s not authenticated: %s", fingerprint, review.error)
                return _unauthorized(
                    "the bearer token was not accepted by the API server", invalid_token=True
                )
            user = review.user
            decision = await self._review_access(user, permission.attributes(node))
            if decision.allowed and pod_access is not None:
                if not _names_a_pod(pod_access):
                    return _Refusal(
                        422,
                        "invalid_input",
                        "the path names no pod: a namespace is a DNS-1123 label of at most 63 "
                        "characters, a pod name a DNS-1123 subdomain of at most 253",
                    )
                pod_decision = await self._review_access(user, pod_access.attributes())
                if not pod_decision.allowed:
                    return self._forbidden(
                        user, fingerprint, pod_access.describe(), pod_decision, pod_access
                    )
        except ApiServerError as exc:
            log.warning(
                "cannot check token %s for %s: %s", fingerprint, permission.describe(), exc.message
            )
            return _Refusal(
                503,
                "auth_unavailable",
                "cannot check the caller's credentials, so the request is refused: " + exc.message,
            )
        if not decision.allowed:
            return self._forbidden(
                user, fingerprint, f"{permission.describe()} on node {node}", decision, permission
            )
        log.debug("user %s (token %s) may %s", user.username, fingerprint, permission.describe())
        return Caller(
            user.username, via="token", uid=user.uid, groups=user.groups, token_hash=fingerprint
        )

    def _forbidden(
        self,
        user: UserInfo,
        fingerprint: str,
        what: str,
        decision: AccessDecision,
        needed: Permission | PodAccess,
    ) -> _Refusal:
        log.info(
            "user %s (token %s) may not %s: %s",
            user.username,
            fingerprint,
            what,
            decision.reason or decision.evaluation_error or "no rule allows it",
        )
        detail: dict[str, object] = {"user": user.username, "verb": needed.verb}
        if isinstance(needed, Permission):
            detail["resource"] = f"{needed.resource}/{needed.subresource}"
            detail["node"] = self._config.node_name
        else:
            detail["resource"] = f"pods/{needed.subresource}" if needed.subresource else "pods"
            detail["namespace"] = needed.namespace
            if needed.name:
                detail["pod"] = needed.name
        if decision.reason:
            detail["reason"] = decision.reason
        return _Refusal(403, "forbidden", f"user {user.username} may not {what}", detail)

    async def _review_token(self, token: str, host: str) -> TokenReviewResult | _Refusal:
        key = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
        cached = self._tokens.get(key)
        if cached is not None:
            return cached
        # Only reviews are budgeted: answers from the cache cost the API server nothing.
        wait = self._budgets.take(host)
        if wait > 0:
            retry = max(1, math.ceil(wait))
            log.info("token reviews for %s are over budget; refused for %d s", host, retry)
            return _Refusal(
                429,
                "rate_limited",
                f"too many new tokens from {host}: try again in {retry} s",
                {"retry_after_seconds": retry},
                headers=(("Retry-After", str(retry)),),
            )
        result = await self._blocking(lambda: self._reviewer.review_token(token))
        self._tokens.put(key, result)
        return result

    async def _review_access(
        self, user: UserInfo, attributes: ResourceAttributes
    ) -> AccessDecision:
        key = (user, attributes)
        cached = self._decisions.get(key)
        if cached is not None:
            return cached
        decision = await self._blocking(lambda: self._reviewer.review_access(user, attributes))
        self._decisions.put(key, decision)
        return decision

    async def _blocking(self, call: Callable[[], T]) -> T:
        limiter = self._limiter.get(None)
        if limiter is None:
            limiter = anyio.CapacityLimiter(self._config.max_concurrent_reviews)
            self._limiter.set(limiter)
        deadline = self._config.timeout_seconds + _DEADLINE_GRACE_SECONDS
        try:
            with anyio.fail_after(deadline):
                # Abandoned on the deadline: the thread finishes on its own
                # (the client's timeout ends it) while the request gets its 503.
                return await anyio.to_thread.run_sync(call, abandon_on_cancel=True, limiter=limiter)
        except TimeoutError:
            raise ApiServerError(f"API server: no answer within {deadline:g} s") from None


class _NameTheSource:
    """Without a door, the audit trail still learns where a request came from."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # A door outside this one has named the caller already.
        if scope["type"] not in ("http", "websocket") or "caller" in scope.get("state", {}):
            await self.app(scope, receive, send)
            return
        with audit_caller(_audit_fields(UNCHECKED_CALLER, client_address(scope))):
            await self.app(scope, receive, send)


def install_auth(
    app: FastAPI,
    config: AuthConfig,
    reviewer: AccessReviewer | None,
    *,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Put the door on ``app``; call before the app serves its first request."""
    app.state.auth = config
    if config.mode == "none":
        log.info("authentication is off: whoever reaches the port may use every endpoint")
        app.add_middleware(_NameTheSource)
        return
    if reviewer is None:
        raise ValueError(
            "auth mode 'kubernetes' needs an API server to ask (--api-server, --kubeconfig "
            "or in-cluster config); without one, set the auth mode to 'none'"
        )
    app.add_middleware(AuthMiddleware, config=config, reviewer=reviewer, clock=clock)


__all__ = [
    "HEAL",
    "LOOPBACK_CALLER",
    "LOOPBACK_CALLER_NAME",
    "OPEN_CALLER",
    "READ",
    "READ_LOGS",
    "UNCHECKED_CALLER",
    "AuthConfig",
    "AuthMiddleware",
    "AuthMode",
    "Caller",
    "CallerDep",
    "Permission",
    "PodAccess",
    "bearer_token",
    "client_address",
    "get_caller",
    "install_auth",
    "is_loopback",
    "required_permission",
    "required_pod_access",
    "route_path",
    "token_fingerprint",
    "token_problem",
]
