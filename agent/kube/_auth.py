"""TokenReview and SubjectAccessReview: who a caller is, and what they may do.

The agent's HTTP door asks the API server the two questions the kubelet asks
for its own port: "whose bearer token is this?" (``TokenReview``) and "may
that user do this to this node?" (``SubjectAccessReview``). The answers are
the API server's, so the cluster's RBAC decides, and revoking a token or a
role binding takes effect here too (after the HTTP edge's short cache).

Like ``KubeSource``, the official client is used with raw JSON in and out
(``_preload_content=False``), every call has a deadline, and every failure
becomes an ``ApiServerError``. A failure is never an answer: the caller of
this module must refuse the request (fail closed), not treat it as "denied"
or, worse, "allowed".

The agent's own identity needs ``create`` on ``tokenreviews`` and
``subjectaccessreviews``; the built-in ClusterRole ``system:auth-delegator``
grants exactly that.

Tokens are secrets: they go into the TokenReview body and nowhere else. The
API server echoes the review's spec (token included) in its answer, so
errors are built from the status code and reason only, never from a body.

Part of the Kubernetes adapter: imports ``_source``, the kubernetes client, the errors and
the settings.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from agent.errors import ApiServerError
from agent.kube._source import _api_error, api_client_from_settings
from agent.settings import Settings

TOKEN_REVIEW_API_VERSION = "authentication.k8s.io/v1"
ACCESS_REVIEW_API_VERSION = "authorization.k8s.io/v1"


@dataclass(frozen=True, slots=True)
class UserInfo:
    """An authenticated user as the API server names it. Hashable: it keys caches."""

    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    # Sorted (key, values) pairs rather than a dict, so the whole value hashes.
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def extra_dict(self) -> dict[str, list[str]]:
        return {key: list(values) for key, values in self.extra}


@dataclass(frozen=True, slots=True)
class TokenReviewResult:
    """The API server's verdict on a token: a user, or why there is none."""

    user: UserInfo | None
    error: str = ""

    @property
    def authenticated(self) -> bool:
        return self.user is not None


@dataclass(frozen=True, slots=True)
class ResourceAttributes:
    """``spec.resourceAttributes`` of a SubjectAccessReview."""

    verb: str
    resource: str
    name: str = ""
    subresource: str = ""
    group: str = ""
    version: str = ""
    namespace: str = ""


@dataclass(frozen=True, slots=True)
class AccessDecision:
    allowed: bool
    reason: str = ""
    # Set when an authorizer failed part-way; the answer is still a denial
    # unless ``allowed`` says otherwise, as the kubelet treats it.
    evaluation_error: str = ""


class AccessReviewer(Protocol):
    """Authentication and authorization by the API server (blocking calls)."""

    def review_token(self, token: str) -> TokenReviewResult: ...

    def review_access(self, user: UserInfo, attributes: ResourceAttributes) -> AccessDecision: ...

    def close(self) -> None: ...


def _review_error(exc: BaseException, what: str) -> ApiServerError:
    base = _api_error(exc, what)
    status = getattr(exc, "status", None)
    # The two ways the agent's own setup is wrong, spelled out, because the
    # person reading a 503 would otherwise go looking at the API server.
    hint = ""
    if status == 401:
        hint = " (the agent's own credentials were refused)"
    elif status == 403:
        hint = (
            " (the agent's service account may not create tokenreviews and"
            " subjectaccessreviews: bind it to the ClusterRole system:auth-delegator)"
        )
    return ApiServerError(base.message + hint, status=status)


def _status_of(body: Any, kind: str) -> Mapping[str, Any]:
    if not isinstance(body, dict):
        raise ApiServerError(f"API server: {kind} answer is not a JSON object")
    status = body.get("status")
    if not isinstance(status, dict):
        raise ApiServerError(f"API server: {kind} answer has no status")
    return status


def _strings(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(str(item) for item in value)


def user_from_status(user: Mapping[str, Any]) -> UserInfo:
    """``status.user`` of a TokenReview as the agent's own type."""
    raw_extra = user.get("extra")
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()
    if isinstance(raw_extra, dict):
        extra = tuple(sorted((str(key), _strings(values)) for key, values in raw_extra.items()))
    return UserInfo(
        username=str(user.get("username") or ""),
        uid=str(user.get("uid") or ""),
        groups=_strings(user.get("groups")),
        extra=extra,
    )


def token_review_result(status: Mapping[str, Any], audiences: Sequence[str]) -> TokenReviewResult:
    """Read a TokenReview's status; with ``audiences`` asked for, one must come back."""
    error = str(status.get("error") or "")
    if status.get("authenticated") is not True:
        return TokenReviewResult(None, error or "the token was not authenticated")
    user = status.get("user")
    if not isinstance(user, dict) or not user.get("username"):
        return TokenReviewResult(None, "the token review named no user")
    if audiences:
        # The API server checks the token against the audiences in the spec
        # and answers the ones that matched; an empty intersection means the
        # token was minted for someone else (the webhook authenticator in
        # k8s.io/apiserver applies the same check).
        granted = set(_strings(status.get("audiences")))
        if not granted & set(audiences):
            return TokenReviewResult(None, "the token is not meant for this audience")
    return TokenReviewResult(user_from_status(user))


def access_decision(status: Mapping[str, Any]) -> AccessDecision:
    # "denied" short-circuits other authorizers on the API server; here both
    # "not allowed" and "denied" are a no, so only ``allowed`` matters.
    return AccessDecision(
        allowed=status.get("allowed") is True and status.get("denied") is not True,
        reason=str(status.get("reason") or ""),
        evaluation_error=str(status.get("evaluationError") or ""),
    )


class KubeAccessReviewer:
    """The official kubernetes client behind the AccessReviewer protocol."""

    def __init__(
        self, api_client: Any, *, timeout_seconds: float, audiences: Sequence[str] = ()
    ) -> None:
        from kubernetes import client

        self._api_client = api_client
        self._authn = client.AuthenticationV1Api(api_client)
        self._authz = client.AuthorizationV1Api(api_client)
        self._timeout = timeout_seconds
        self._audiences = tuple(audiences)

    @property
    def timeout_seconds(self) -> float:
        return self._timeout

    def _json(self, response: Any) -> Any:
        try:
            return json.loads(response.data)
        finally:
            response.release_conn()

    def review_token(self, token: str) -> TokenReviewResult:
        from kubernetes import client

        # The request is built from the client's models, which every client
        # version accepts; the answer is read as raw JSON like everything else.
        body = client.V1TokenReview(
            api_version=TOKEN_REVIEW_API_VERSION,
            kind="TokenReview",
            spec=client.V1TokenReviewSpec(token=token, audiences=list(self._audiences) or None),
        )
        try:
            response = self._authn.create_token_review(
                body, _preload_content=False, _request_timeout=self._timeout
            )
            answer = self._json(response)
        except Exception as exc:  # ApiException, urllib3 errors, timeouts, bad JSON
            raise _review_error(exc, "token review") from None
        return token_review_result(_status_of(answer, "token review"), self._audiences)

    def review_access(self, user: UserInfo, attributes: ResourceAttributes) -> AccessDecision:
        from kubernetes import client

        body = client.V1SubjectAccessReview(
            api_version=ACCESS_REVIEW_API_VERSION,
            kind="SubjectAccessReview",
            spec=client.V1SubjectAccessReviewSpec(
                user=user.username,
                uid=user.uid or None,
                groups=list(user.groups),
                extra=user.extra_dict() or None,
                # Empty strings mean what omitted fields mean to the API
                # server (group "" is the core group).
                resource_attributes=client.V1ResourceAttributes(
                    verb=attributes.verb,
                    group=attributes.group,
                    version=attributes.version,
                    resource=attributes.resource,
                    subresource=attributes.subresource,
                    name=attributes.name,
                    namespace=attributes.namespace,
                ),
            ),
        )
        try:
            response = self._authz.create_subject_access_review(
                body, _preload_content=False, _request_timeout=self._timeout
            )
            answer = self._json(response)
        except Exception as exc:
            raise _review_error(exc, "subject access review") from None
        return access_decision(_status_of(answer, "subject access review"))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._api_client.close()


def access_reviewer_from_settings(
    settings: Settings,
    *,
    timeout_seconds: float | None = None,
    audiences: Sequence[str] = (),
) -> KubeAccessReviewer | None:
    """A reviewer on its own client (so pod watches never hold up a review); None for CRI-only."""
    api_client = api_client_from_settings(settings)
    if api_client is None:
        return None
    timeout = timeout_seconds if timeout_seconds is not None else settings.api_timeout_seconds
    return KubeAccessReviewer(api_client, timeout_seconds=timeout, audiences=audiences)
