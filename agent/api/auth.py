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

Loopback (``trust_loopback``, on by default): requests from 127.0.0.0/8 or
::1 skip authentication and authorization and are recorded as
"local (loopback)". Inside the agent's own pod network namespace, loopback is
reached only through ``kubectl port-forward`` (which the API server already
authorized as ``create pods/portforward`` in the agent's namespace) or by a
process in the agent's own pod (``pods/exec`` again goes through the API
server). Both are then as powerful as the agent: keep those verbs in the
agent's namespace to people who may kill containers. This holds ONLY
without ``hostNetwork``: on the host network, loopback is the node's, and
every process on the node and every hostNetwork pod reaches it; turn
``trust_loopback`` off there. Requests over a Unix socket have no client
address and are never trusted as loopback.

Answers are cached for ``cache_seconds`` (allowed and denied alike; failures
to ask never): token reviews by the token's SHA-256, access reviews by user
and attributes, each in a bounded table. Calls to the API server block, so
they run in worker threads of their own (a slow API server cannot take the
threads the routes run in) under a deadline; when the API server cannot be
asked, the request is refused with 503, never let through.

Routes learn who asked from ``CallerDep`` (``request.state.caller``, a
``Caller``); ``request.state.user`` holds the caller's name, which the
kill-and-watch audit trail records. Loopback callers are "local (loopback)".

Tokens never appear in logs or answers; logs name a token by the first
twelve hex digits of its SHA-256.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
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
    trust_loopback: bool = True
    cache_seconds: float = 10.0
    timeout_seconds: float = 5.0
    cache_entries: int = 4096
    # Reviews in flight at once; more wait for a slot, within their deadline.
    max_concurrent_reviews: int = 16

    def __post_init__(self) -> None:
        if self.mode not in ("kubernetes", "none"):
            raise ValueError(f"auth mode must be 'kubernetes' or 'none', not {self.mode!r}")
        if self.cache_seconds < 0:
            raise ValueError("auth cache_seconds must not be negative")
        if self.timeout_seconds <= 0:
            raise ValueError("auth timeout_seconds must be positive")
        if self.cache_entries < 1 or self.max_concurrent_reviews < 1:
            raise ValueError("auth cache_entries and max_concurrent_reviews must be at least 1")


@dataclass(frozen=True, slots=True)
class Permission:
    """A verb on a subresource of this node: what a SubjectAccessReview asks."""

    verb: str
    subresource: str
    resource: str = "nodes"
    group: str = ""

    def describe(self) -> str:
        return f"{self.verb} {self.resource}/{self.subresource}"

    def attributes(self, node_name: str) -> ResourceAttributes:
        return ResourceAttributes(
            verb=self.verb,
            group=self.group,
            version="v1",
            resource=self.resource,
            subresource=self.subresource,
            name=node_name,
        )


READ = Permission("get", "podlens")
READ_LOGS = Permission("get", "podlens-logs")
HEAL = Permission("create", "podlens-heal")

_OPEN_PATHS = frozenset({"/healthz", "/readyz"})
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
    if path in _OPEN_PATHS:
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


@dataclass(frozen=True, slots=True)
class Caller:
    """Who made a request, for routes and for the audit log."""

    name: str
    via: Literal["token", "loopback", "open"]
    uid: str = ""
    groups: tuple[str, ...] = ()
    # The token's short hash, to find the request in the agent's auth log.
    token_hash: str = ""


LOOPBACK_CALLER = Caller(LOOPBACK_CALLER_NAME, via="loopback")
OPEN_CALLER = Caller("anonymous", via="open")
# No door installed (auth_mode "none"): nobody was asked who they are.
UNCHECKED_CALLER = Caller("anonymous (authentication off)", via="open")


def get_caller(request: Request) -> Caller:
    """Who asked: set by the door as ``request.state.caller`` (its name as ``.user``)."""
    caller = getattr(request.state, "caller", None)
    return caller if isinstance(caller, Caller) else UNCHECKED_CALLER


CallerDep = Annotated[Caller, Depends(get_caller)]


def token_fingerprint(token: str) -> str:
    """A short, non-reversible name for a token, fit for logs."""
    digest = hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()
    return f"sha256:{digest[:12]}"


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


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


@dataclass(frozen=True, slots=True)
class _Refusal:
    status_code: int
    error: str
    message: str
    detail: dict[str, object] | None = None
    www_authenticate: str | None = None

    async def send_to(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            # Closing before accepting refuses the handshake; 1013 asks the
            # client to try again later, 1008 says it was not allowed.
            reason = self.message.encode()[:123].decode(errors="ignore")
            code = 1013 if self.status_code == 503 else 1008
            await send({"type": "websocket.close", "code": code, "reason": reason})
            return
        body: dict[str, object] = {"error": self.error, "message": self.message}
        if self.detail:
            body["detail"] = self.detail
        headers = {"WWW-Authenticate": self.www_authenticate} if self.www_authenticate else None
        await JSONResponse(body, status_code=self.status_code, headers=headers)(
            scope, receive, send
        )


def _unauthorized(message: str, *, invalid_token: bool = False) -> _Refusal:
    challenge = f'{_REALM}, error="invalid_token"' if invalid_token else _REALM
    return _Refusal(401, "unauthorized", message, www_authenticate=challenge)


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
        # Per event loop, as anyio keeps its own default limiter: a limiter
        # belongs to the loop that made it.
        self._limiter: anyio.lowlevel.RunVar[anyio.CapacityLimiter] = anyio.lowlevel.RunVar(
            f"podlens-auth-limiter-{id(self)}"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        # A websocket handshake is a GET, as the kubelet treats it.
        method = scope["method"] if scope["type"] == "http" else "GET"
        permission = required_permission(method, route_path(scope))
        state = scope.setdefault("state", {})
        if permission is None:
            state["caller"] = OPEN_CALLER
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        if self._config.trust_loopback and is_loopback(client[0] if client else None):
            _admit(state, LOOPBACK_CALLER)
            await self.app(scope, receive, send)
            return
        authorization = [
            value.decode("latin-1") for name, value in scope["headers"] if name == b"authorization"
        ]
        outcome = await self.check(authorization, permission)
        if isinstance(outcome, _Refusal):
            await outcome.send_to(scope, receive, send)
            return
        _admit(state, outcome)
        await self.app(scope, receive, send)

    async def check(
        self, authorization: Sequence[str], permission: Permission
    ) -> Caller | _Refusal:
        """Ask (or remember) who the token belongs to and whether they hold ``permission``."""
        token, problem = bearer_token(authorization)
        if token is None:
            return _unauthorized(problem)
        fingerprint = token_fingerprint(token)
        node = self._config.node_name
        try:
            review = await self._review_token(token)
            if review.user is None:
                log.info("token %s not authenticated: %s", fingerprint, review.error)
                return _unauthorized(
                    "the bearer token was not accepted by the API server", invalid_token=True
                )
            user = review.user
            decision = await self._review_access(user, permission.attributes(node))
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
            log.info(
                "user %s (token %s) may not %s on node %s: %s",
                user.username,
                fingerprint,
                permission.describe(),
                node,
                decision.reason or decision.evaluation_error or "no rule allows it",
            )
            detail: dict[str, object] = {
                "user": user.username,
                "verb": permission.verb,
                "resource": f"{permission.resource}/{permission.subresource}",
                "node": node,
            }
            if decision.reason:
                detail["reason"] = decision.reason
            return _Refusal(
                403,
                "forbidden",
                f"user {user.username} may not {permission.describe()} on node {node}",
                detail,
            )
        log.debug("user %s (token %s) may %s", user.username, fingerprint, permission.describe())
        return Caller(
            user.username, via="token", uid=user.uid, groups=user.groups, token_hash=fingerprint
        )

    async def _review_token(self, token: str) -> TokenReviewResult:
        key = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
        cached = self._tokens.get(key)
        if cached is not None:
            return cached
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
    "bearer_token",
    "get_caller",
    "install_auth",
    "is_loopback",
    "required_permission",
    "route_path",
    "token_fingerprint",
]
