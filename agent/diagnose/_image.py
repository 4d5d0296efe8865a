"""Images that cannot be pulled, classified from the runtime's own words.

Part of the rules: imports other rule modules, the domain and the standard library only.
"""

from __future__ import annotations

import re
from typing import Literal

from agent.diagnose._bounds import bounded
from agent.diagnose._common import (
    Ctx,
    dedupe,
    earliest_event,
    event_evidence,
    raw_container,
    raw_names,
    raw_str,
    targets,
)
from agent.diagnose._types import (
    Evidence,
    Finding,
)
from agent.domain.kubemodel import ApiEvent

PULL_REASONS = frozenset(
    {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"}
)

PullClass = Literal[
    "not-found", "unauthorized", "network", "rate-limited", "policy", "invalid-name", "unknown"
]

# Docker Hub answers this for a repository that does not exist and for a
# private one asked for without credentials alike.
_HUB_AMBIGUOUS = re.compile(r"repository does not exist or may require authorization", re.I)
_PATTERNS: tuple[tuple[PullClass, re.Pattern[str]], ...] = (
    (
        "policy",
        re.compile(r"ErrImageNeverPull|pull policy of Never|imagePullPolicy.{0,20}Never", re.I),
    ),
    (
        "invalid-name",
        re.compile(r"InvalidImageName|invalid reference format|couldn't parse image", re.I),
    ),
    ("rate-limited", re.compile(r"toomanyrequests|too many requests|\b429\b|rate limit", re.I)),
    (
        "not-found",
        re.compile(
            r"code = NotFound|: not found|manifest unknown|name unknown|not found: manifest"
            r"|manifest for \S+ not found|repository \S+ not found",
            re.I,
        ),
    ),
    (
        "unauthorized",
        re.compile(
            r"\b401\b|\b403\b|unauthorized|authorization failed|authentication required"
            r"|access denied|forbidden|insufficient_scope|no basic auth credentials",
            re.I,
        ),
    ),
    (
        "network",
        re.compile(
            r"no such host|i/o timeout|connection refused|connection reset|network is unreachable"
            r"|no route to host|TLS handshake timeout|context deadline exceeded|dial tcp"
            r"|x509:|certificate|server misbehaving|temporary failure in name resolution",
            re.I,
        ),
    ),
)
_PULL_EVENT_REASONS = frozenset({"Failed", "BackOff", "ErrImageNeverPull", "InspectFailed"})


def classify_pull(reason: str | None, messages: list[str]) -> PullClass:
    """The kind of pull failure: the waiting reason first, then the runtime's messages."""
    if reason == "ErrImageNeverPull":
        return "policy"
    if reason == "InvalidImageName":
        return "invalid-name"
    text = "\n".join(bounded(m) for m in messages)
    if _HUB_AMBIGUOUS.search(text):
        return "not-found"
    for cls, pattern in _PATTERNS:
        if pattern.search(text):
            return cls
    return "unknown"


def registry_of(image: str) -> str:
    """The registry host an image reference pulls from (Docker Hub for bare names)."""
    first, sep, _ = image.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


def _cause(cls: PullClass, image: str, registry: str, secrets: tuple[str, ...], text: str) -> str:
    if cls == "not-found":
        extra = ""
        if _HUB_AMBIGUOUS.search(text):
            extra = (
                " Docker Hub gives the same answer for a private repository pulled without "
                "credentials."
            )
        return (
            f"The registry {registry} has no image {image}: the repository or the tag is "
            f"misspelt, or the tag was never pushed.{extra}"
        )
    if cls == "unauthorized":
        have = (
            f"the pod's imagePullSecrets ({', '.join(secrets)}) are wrong, expired or for "
            "another registry"
            if secrets
            else "the pod has no imagePullSecrets (and the node has no credentials for it)"
        )
        return f"The registry {registry} refused the pull for lack of valid credentials: {have}."
    if cls == "network":
        if re.search(r"no such host|server misbehaving|name resolution", text, re.I):
            return (
                f"The node cannot resolve the registry's name {registry}: a typo in the "
                "registry host, or the node's DNS does not know it."
            )
        if re.search(r"x509|certificate", text, re.I):
            return (
                f"The node does not trust the TLS certificate of {registry} (a private CA or a "
                "self-signed registry not configured in the runtime)."
            )
        return (
            f"The node cannot reach the registry {registry}: a firewall, a proxy the runtime "
            "does not use, or the registry being down."
        )
    if cls == "rate-limited":
        return (
            f"The registry {registry} rate-limits pulls (Docker Hub limits anonymous pulls per "
            "IP); authenticate or use a mirror."
        )
    if cls == "policy":
        return (
            f"imagePullPolicy is Never and the node does not hold {image}, so kubelet will not "
            "pull it; load the image onto the node or change the policy."
        )
    if cls == "invalid-name":
        return (
            f"The image reference {image!r} is not valid (uppercase letters, a bad tag or "
            "digest, a stray space)."
        )
    return "The pull failed; the runtime's message above says how."


def _steps(
    ctx: Ctx, cls: PullClass, image: str, registry: str, secrets: tuple[str, ...]
) -> list[str]:
    s = ctx.steps
    steps = [s.describe(), s.events()]
    if cls in ("not-found", "unauthorized", "network", "rate-limited", "unknown"):
        steps.append(f"crictl pull {image}")
    if cls == "unauthorized":
        steps.extend(s.kubectl(f"get secret {name}") for name in secrets)
        if not secrets:
            steps.append(
                s.kubectl(
                    f"create secret docker-registry <name> --docker-server={registry} "
                    "--docker-username=<user> --docker-password=<password>"
                )
            )
    if cls == "network":
        steps.append(f"curl -sSI https://{registry}/v2/")
    if cls == "policy":
        steps.append(f"crictl images {image}")
    return steps


def image_pull(ctx: Ctx) -> list[Finding]:
    pod = ctx.pod
    if pod is None or pod.deletion_timestamp is not None:
        return []
    out: list[Finding] = []
    for t in targets(pod):
        state = t.state
        if not state.is_waiting or state.reason not in PULL_REASONS:
            continue
        image = t.spec.image or (t.status.image if t.status else None) or ""
        events: list[ApiEvent] = [
            ev
            for ev in ctx.events(pod, t.name, reasons=_PULL_EVENT_REASONS)
            if ev.reason != "BackOff" or "pull" in (ev.message or "").lower()
        ]
        failed = [ev for ev in events if ev.reason != "BackOff"]
        messages = [bounded(m) for m in (state.message, *(ev.message for ev in failed)) if m]
        cls = classify_pull(state.reason, messages)
        registry = registry_of(image)
        raw = raw_container(pod, t.name)
        policy = raw_str(raw, "imagePullPolicy")
        secrets = raw_names(pod.raw, "spec", "imagePullSecrets")
        evidence = [
            Evidence("api", "waiting reason", state.reason or ""),
            Evidence("api", "image", image),
            Evidence("check", "failure class", cls),
        ]
        if state.message:
            evidence.append(Evidence("api", "waiting message", state.message))
        if policy:
            evidence.append(Evidence("api", "imagePullPolicy", policy))
        evidence.append(Evidence("api", "imagePullSecrets", ", ".join(secrets) or "none"))
        evidence.extend(event_evidence(ev, ctx.now) for ev in failed[:2])
        present = ctx.inp.images_present.get(image) if ctx.inp.images_present is not None else None
        cause = _cause(cls, image, registry, secrets, "\n".join(messages))
        if present is not None:
            evidence.append(
                Evidence(
                    "runtime",
                    "image on this node",
                    "present (CRI ImageStatus)" if present else "absent (CRI ImageStatus)",
                )
            )
            if present and cls != "policy":
                cause += (
                    " The node already holds the image; kubelet pulls anyway because of "
                    f"imagePullPolicy {policy or 'Always'} (a :latest tag defaults to Always)."
                )
        summary = f"{t.label} of {ctx.where} cannot get image {image}: {state.reason} ({cls})"
        out.append(
            Finding(
                rule="image-pull",
                severity="error",
                container=t.name,
                summary=summary,
                evidence=tuple(evidence),
                cause=cause,
                next_steps=dedupe(_steps(ctx, cls, image, registry, secrets)),
                since=earliest_event(events),
            )
        )
    return out
