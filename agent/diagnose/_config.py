"""Containers kubelet cannot create or start: missing configuration, bad commands.

Part of the rules: imports other rule modules, the domain and the standard library only.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from agent.diagnose._bounds import bounded
from agent.diagnose._common import (
    Ctx,
    Target,
    age,
    dedupe,
    earliest_event,
    event_evidence,
    raw_container,
    targets,
)
from agent.diagnose._crash import runtime_id
from agent.diagnose._types import (
    Evidence,
    Finding,
)
from agent.domain.kubemodel import ApiPod, ContainerRole, ContainerStateInfo

CONFIG_REASONS = frozenset({"CreateContainerConfigError"})
START_WAITING_REASONS = frozenset(
    {"RunContainerError", "CreateContainerError", "PreStartHookError", "PostStartHookError"}
)
START_TERMINATED_REASONS = frozenset({"StartError", "ContainerCannotRun"})


# --------------------------------------------------------------------------
# What configuration is missing
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MissingConfig:
    kind: Literal["ConfigMap", "Secret", "securityContext", "other"]
    name: str | None = None
    key: str | None = None
    namespace: str | None = None

    @property
    def what(self) -> str:
        if self.kind in ("ConfigMap", "Secret"):
            where = f"{self.namespace}/{self.name}" if self.namespace else self.name
            if self.key:
                return f"key {self.key} of {self.kind} {where}"
            return f"{self.kind} {where}"
        return self.kind


_NOT_FOUND = re.compile(r'\b(?P<kind>configmaps?|secrets?) "(?P<name>[^"]+)" not found', re.I)
_NO_KEY = re.compile(
    r"couldn't find key (?P<key>\S+) in (?P<kind>ConfigMap|Secret) "
    r"(?:(?P<ns>[^/\s]+)/)?(?P<name>\S+)",
    re.I,
)
_NON_ROOT = re.compile(r"runAsNonRoot", re.I)


def _kind(text: str) -> Literal["ConfigMap", "Secret"]:
    return "ConfigMap" if text.lower().startswith("configmap") else "Secret"


def missing_config(message: str) -> MissingConfig | None:
    """The ConfigMap, Secret or key a kubelet message says is missing."""
    message = bounded(message)
    if m := _NO_KEY.search(message):
        return MissingConfig(_kind(m.group("kind")), m.group("name"), m.group("key"), m.group("ns"))
    if m := _NOT_FOUND.search(message):
        return MissingConfig(_kind(m.group("kind")), m.group("name"))
    if _NON_ROOT.search(message):
        return MissingConfig("securityContext")
    return None


def _references(pod: ApiPod, container: str, missing: MissingConfig) -> list[str]:
    """Where the container's spec refers to the missing object: env names, envFrom, volumes."""
    raw = raw_container(pod, container)
    ref_key = "configMapKeyRef" if missing.kind == "ConfigMap" else "secretKeyRef"
    out: list[str] = []
    env = raw.get("env")
    for item in env if isinstance(env, Sequence) else ():
        if not isinstance(item, Mapping):
            continue
        value_from: Any = item.get("valueFrom")
        ref = value_from.get(ref_key) if isinstance(value_from, Mapping) else None
        if not isinstance(ref, Mapping) or ref.get("name") != missing.name:
            continue
        if missing.key is not None and ref.get("key") != missing.key:
            continue
        optional = " (optional)" if ref.get("optional") else ""
        key = ref.get("key")
        out.append(f"env {item.get('name')} <- {missing.kind} {missing.name} key {key}{optional}")
    prefix = "configMap:" if missing.kind == "ConfigMap" else "secret:"
    spec = pod.container_spec(container)
    if spec is not None:
        out.extend(
            f"envFrom {source}"
            for source in spec.env_from
            if source.split(" ")[0] == f"{prefix}{missing.name}"
        )
        kind = "configMap" if missing.kind == "ConfigMap" else "secret"
        mounted = {m.name for m in spec.volume_mounts}
        out.extend(
            f"volume {v.name} ({kind} {v.detail})"
            for v in pod.volumes
            if v.name in mounted and v.kind == kind and v.detail == missing.name
        )
    return out


def config_error(ctx: Ctx) -> list[Finding]:
    pod = ctx.pod
    if pod is None or pod.deletion_timestamp is not None:
        return []
    out: list[Finding] = []
    for t in targets(pod):
        state = t.state
        if not state.is_waiting or state.reason not in CONFIG_REASONS:
            continue
        events = [
            ev
            for ev in ctx.events(pod, t.name, reasons=frozenset({"Failed"}))
            if "error" in (ev.message or "").lower()
        ]
        messages = [m for m in (state.message, *(ev.message for ev in events)) if m]
        missing = next((mc for m in messages if (mc := missing_config(m)) is not None), None)
        evidence = [Evidence("api", "waiting reason", state.reason or "")]
        if state.message:
            evidence.append(Evidence("api", "waiting message", state.message))
        evidence.extend(event_evidence(ev, ctx.now) for ev in events[:2])
        s = ctx.steps
        steps: list[str] = []
        if missing is not None and missing.kind in ("ConfigMap", "Secret"):
            ns = missing.namespace or pod.namespace
            kind_cmd = "configmap" if missing.kind == "ConfigMap" else "secret"
            evidence.append(Evidence("check", "missing", missing.what))
            evidence.extend(
                Evidence("api", "referenced by", ref) for ref in _references(pod, t.name, missing)
            )
            if missing.key:
                cause = (
                    f"{missing.kind} {missing.name} exists but has no key {missing.key}, which "
                    f"{t.label} needs; kubelet does not start the container until the key is "
                    "there (or the reference is marked optional)."
                )
                # describe lists a Secret's keys without printing their values.
                steps.append(f"kubectl -n {ns} describe {kind_cmd} {missing.name}")
            else:
                cause = (
                    f"{missing.kind} {missing.name} does not exist in namespace {ns}; kubelet "
                    "keeps retrying and starts the container once it is created."
                )
                steps.append(f"kubectl -n {ns} get {kind_cmd} {missing.name}")
                steps.append(f"kubectl -n {ns} get {kind_cmd}s")
            headline = f"is missing {missing.what}"
        elif missing is not None and missing.kind == "securityContext":
            evidence.append(Evidence("check", "missing", "a non-root user"))
            cause = (
                "The pod requires runAsNonRoot but the image runs as root (or as a user name "
                "kubelet cannot check); set securityContext.runAsUser to a non-zero UID or use "
                "an image with a numeric non-root USER."
            )
            steps.append(f"crictl inspecti {t.spec.image or '<image>'}")
            headline = "cannot satisfy runAsNonRoot"
        else:
            cause = (
                "Kubelet cannot build the container's configuration; the message says what is "
                "wrong."
            )
            headline = "has a configuration error"
        steps.extend([s.describe(), s.events()])
        out.append(
            Finding(
                rule="config-error",
                severity="error",
                container=t.name,
                summary=f"{t.label} of {ctx.where} {headline} ({state.reason})",
                evidence=tuple(evidence),
                cause=cause,
                next_steps=dedupe(steps),
                since=earliest_event(events),
            )
        )
    return out


# --------------------------------------------------------------------------
# Start errors
# --------------------------------------------------------------------------

StartClass = Literal[
    "not-found",
    "no-such-file",
    "permission",
    "wrong-arch",
    "name-conflict",
    "mount",
    "hook",
    "unknown",
]
# A quoted name runs to its closing quote, a bare one to the first blank, so
# no part of the message is scanned again from each "exec" in it.
_EXEC_TARGET = re.compile(
    r'exec(?::| user process caused:)? (?:"(?P<quoted>[^"]*)"|(?P<what>[^\s":]+)): '
)
_START_PATTERNS: tuple[tuple[StartClass, re.Pattern[str]], ...] = (
    ("not-found", re.compile(r"executable file not found in \$PATH", re.I)),
    ("wrong-arch", re.compile(r"exec format error", re.I)),
    ("permission", re.compile(r"permission denied", re.I)),
    ("name-conflict", re.compile(r"failed to reserve container name|is reserved for", re.I)),
    # "mount ... onto a file" or "mount ... failed|error" on one line. Only the
    # first "mount" of a line is tried (a later one cannot match where the
    # first did not), so a line is scanned once, not once per "mount" in it.
    (
        "mount",
        re.compile(
            r"not a directory"
            r"|^(?:(?!mount ).)*mount .* onto a file"
            r"|^(?:(?!mount).)*mount.*(?:failed|error)",
            re.I | re.M,
        ),
    ),
    ("no-such-file", re.compile(r"no such file or directory", re.I)),
)


def classify_start(reason: str | None, message: str) -> StartClass:
    for cls, pattern in _START_PATTERNS:
        if pattern.search(message):
            return cls
    if reason in ("PreStartHookError", "PostStartHookError"):
        return "hook"
    return "unknown"


def _start_cause(cls: StartClass, what: str | None, command: str) -> str:
    named = f" {what!r}" if what else ""
    if cls == "not-found":
        return (
            f"The command{named} is not in the image's $PATH: a typo, a program the image does "
            'not ship, or a shell form (e.g. "sh -c") written as one word.'
        )
    if cls == "no-such-file":
        return (
            f"A path the start needs does not exist in the image: the command{named}, a "
            "script's interpreter (its #! line), or the working directory."
        )
    if cls == "permission":
        return (
            f"The command{named} is not executable (missing execute bit, or a mount with noexec)."
        )
    if cls == "wrong-arch":
        return f"The command{named} is built for another CPU architecture than the node's."
    if cls == "name-conflict":
        return (
            "A container with the same name is still being created or removed; kubelet usually "
            "gets past this by itself on a later sync."
        )
    if cls == "mount":
        return (
            "A volume mount cannot be set up: a file mounted onto a directory or the other way "
            "round (often a subPath or a ConfigMap key), or a mount path that cannot be created."
        )
    if cls == "hook":
        return "A lifecycle hook (postStart/preStart) failed, so kubelet killed the container."
    shown = f" ({command})" if command else ""
    return f"The runtime could not create or start the container{shown}."


def _start_state(t: Target, ctx: Ctx) -> ContainerStateInfo | None:
    state, last = t.state, t.last_state
    if state.is_waiting and state.reason in START_WAITING_REASONS:
        return state
    if state.is_terminated and state.reason in START_TERMINATED_REASONS:
        return state
    # Between attempts the start error sits in lastState while the state is a back-off.
    if (
        state.is_waiting
        and last.is_terminated
        and last.reason in START_TERMINATED_REASONS
        and (last.finished_at is None or age(last.finished_at, ctx.now) <= ctx.th.recent_exit)
    ):
        return last
    return None


def start_error(ctx: Ctx) -> list[Finding]:
    pod = ctx.pod
    if pod is None or pod.deletion_timestamp is not None:
        return []
    out: list[Finding] = []
    for t in targets(pod):
        st = _start_state(t, ctx)
        if st is None:
            continue
        events = ctx.events(
            pod, t.name, reasons=frozenset({"Failed", "FailedPostStartHook", "FailedPreStopHook"})
        )
        messages = [m for m in (st.message, *(ev.message for ev in events)) if m]
        text = "\n".join(bounded(m) for m in messages)
        cls = classify_start(st.reason, text)
        m = _EXEC_TARGET.search(text)
        what = (m.group("what") or m.group("quoted")).strip() if m else None
        command = shlex.join((*t.spec.command, *t.spec.args))
        evidence = [Evidence("api", "reason", f"{st.kind}:{st.reason}")]
        if st.is_terminated:
            evidence.append(
                Evidence("exit-code", "exit code", f"{st.exit_code} (the process never ran)")
            )
        if st.message:
            evidence.append(Evidence("api", "message", st.message))
        evidence.append(Evidence("api", "command", command or "(the image's entrypoint)"))
        evidence.append(Evidence("check", "failure class", cls))
        evidence.extend(event_evidence(ev, ctx.now) for ev in events[:2])
        s = ctx.steps
        group = "initContainers" if t.role is not ContainerRole.APP else "containers"
        steps = [
            s.describe(),
            s.kubectl(
                f"get pod {s.name} -o jsonpath='{{.spec.{group}[?(@.name==\"{t.name}\")].command}}'"
            ),
        ]
        if t.spec.image:
            steps.append(f"crictl inspecti {t.spec.image}")
        if (rid := runtime_id(st.container_id)) is not None:
            steps.append(f"crictl inspect {rid}")
        out.append(
            Finding(
                rule="start-error",
                severity="error",
                container=t.name,
                summary=(
                    f"{t.label} of {ctx.where} cannot be started ({st.reason}, {cls})"
                    + (f": {what}" if what else "")
                ),
                evidence=tuple(evidence),
                cause=_start_cause(cls, what, command),
                next_steps=dedupe(steps),
                since=st.finished_at or earliest_event(events),
            )
        )
    return out
