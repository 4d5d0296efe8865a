"""Findings that need the node's view: API/runtime mismatches, ports, shared volumes.

Part of the rules: imports other rule modules, the domain and the standard library only.
"""

from __future__ import annotations

import functools
import shlex
from collections.abc import Iterable

from agent.diagnose._common import (
    Ctx,
    age,
    dedupe,
    duration,
    since_text,
    targets,
    terminal,
)
from agent.diagnose._types import (
    Evidence,
    EvidenceKind,
    Finding,
)
from agent.domain.kubemodel import ApiPod, ContainerRole, ContainerSpec, VolumeMount
from agent.domain.podview import Mismatch
from agent.domain.times import iso

# Token volumes every container gets; sharing them says nothing.
_IGNORED_MOUNT_PREFIXES = ("/var/run/secrets/", "/run/secrets/", "/dev/termination-log")

_MISMATCH_CAUSES: dict[str, str] = {
    "no-sandbox": (
        "Kubelet has not created the pod's sandbox on this node: it has not picked the pod up "
        "yet, or sandbox creation keeps failing (pod network, runtime)."
    ),
    "orphan-sandbox": (
        "The runtime holds a sandbox of a pod the API server does not know: kubelet's garbage "
        "collection has not removed it yet, or this runtime is not the one kubelet uses."
    ),
    "orphan-container": (
        "The runtime holds a container of a pod the API server does not know: a leftover that "
        "kubelet's garbage collection has not removed, or one created outside kubelet."
    ),
    "multiple-ready-sandboxes": (
        "Kubelet keeps one sandbox per pod; another ready one is left over from a recreation "
        "that did not clean up, and holds an IP and a pause process."
    ),
    "api-running-runtime-exited": (
        "The process has exited but kubelet has not reported it: its pod lifecycle event "
        "generator is behind, or kubelet is busy or stuck; the API's state is stale."
    ),
    "api-not-running-runtime-running": (
        "A container runs that the API says is not running: kubelet has not reported the start "
        "yet, or it lost track of this instance."
    ),
    "unknown-container-id": (
        "The API names a container the runtime no longer holds (removed, or the runtime lost "
        "its state), so the API's status describes something that is gone."
    ),
}
_API_KEYS = frozenset({"phase", "scheduled_at", "api_state", "api_container_id", "api_started_at"})


def _mismatch_steps(ctx: Ctx, m: Mismatch) -> list[str]:
    s = ctx.steps
    ev = m.evidence
    steps: list[str] = []
    cid = ev.get("container_id")
    if isinstance(cid, str):
        steps.append(f"crictl inspect {cid}")
        steps.extend(s.agent_container(cid))
    sid = ev.get("sandbox_id")
    if isinstance(sid, str):
        steps.append(f"crictl inspectp {sid}")
    ids = ev.get("sandbox_ids")
    if isinstance(ids, str):
        steps.extend(f"crictl inspectp {i}" for i in ids.split(",") if i)
    if m.kind == "no-sandbox":
        steps.append(f"crictl pods --name {ctx.name} --namespace {ctx.namespace}")
        steps.append(s.describe())
    if m.kind in ("api-running-runtime-exited", "api-not-running-runtime-running"):
        steps.append("journalctl -u kubelet --since '-10m' | grep -i pleg")
    steps.extend(s.agent_pod())
    return steps


def mismatches(ctx: Ctx) -> list[Finding]:
    view = ctx.inp.view
    if view is None:
        return []
    out: list[Finding] = []
    for m in view.mismatches:
        if m.kind == "volume-not-shared":
            continue  # reported by volume-not-shared with the mounts
        evidence: list[Evidence] = []
        for key, value in m.evidence.items():
            if value is None:
                continue
            kind: EvidenceKind = "api" if key in _API_KEYS else "runtime"
            evidence.append(Evidence(kind, key, str(value)))
        when = since_text(m.since, ctx.now)
        out.append(
            Finding(
                rule=f"mismatch-{m.kind}",
                severity=m.severity,
                container=m.container,
                summary=f"{m.message} ({when})" if when else m.message,
                evidence=tuple(evidence),
                cause=_MISMATCH_CAUSES.get(m.kind, "The API server and the runtime disagree."),
                next_steps=dedupe(_mismatch_steps(ctx, m)),
                since=m.since,
            )
        )
    return out


# --------------------------------------------------------------------------
# port-not-listening
# --------------------------------------------------------------------------


def port_not_listening(ctx: Ctx) -> list[Finding]:
    listening = ctx.inp.listening
    pod = ctx.pod
    if listening is None or pod is None or terminal(pod) or pod.deletion_timestamp is not None:
        return []
    view = ctx.inp.view
    open_ports = sorted(p for p, ok in listening.items() if ok)
    out: list[Finding] = []
    for t in targets(pod):
        if t.role is ContainerRole.INIT or not t.state.is_running:
            continue
        started = t.state.started_at
        pid: int | None = None
        cv = view.container(t.name) if view is not None else None
        if cv is not None and cv.current is not None:
            started = cv.current.started_at or started
            pid = cv.pid
        if started is None or age(started, ctx.now) <= ctx.th.port_grace:
            continue
        closed = [
            p
            for p in t.spec.ports
            if p.protocol.upper() == "TCP" and listening.get(p.container_port) is False
        ]
        if not closed:
            continue
        names = ", ".join(
            f"{p.container_port}" + (f" ({p.name})" if p.name else "") for p in closed
        )
        where = (
            "the host's network namespace" if pod.host_network else "the pod's network namespace"
        )
        evidence = [
            Evidence("api", "declared containerPort", names),
            Evidence(
                "process", f"listening in {where}", ", ".join(map(str, open_ports)) or "nothing"
            ),
            Evidence("api", "running since", since_text(started, ctx.now)),
        ]
        if t.spec.readiness_probe:
            evidence.append(Evidence("api", "readiness probe", t.spec.readiness_probe))
        evidence.extend(ctx.logs(t.name, previous=False))
        elsewhere = f" (the pod listens on {', '.join(map(str, open_ports))})" if open_ports else ""
        s = ctx.steps
        steps = [s.logs(t.name), *s.agent_logs(t.name)]
        if pid is not None:
            steps.append(f"nsenter -t {pid} -n ss -tlnp")
        steps.append(s.kubectl(f"get endpointslices -o wide | grep {closed[0].container_port}"))
        out.append(
            Finding(
                rule="port-not-listening",
                severity="warning",
                container=t.name,
                summary=(
                    f"{t.label} of {ctx.where} declares port {names} but nothing listens on it in "
                    f"{where}, {duration(age(started, ctx.now))} after it started ({iso(started)})"
                ),
                evidence=tuple(evidence),
                cause=(
                    f"The program does not listen on the declared port{elsewhere}: it uses "
                    "another port, listens on a Unix socket, or has not bound yet. Whatever "
                    "connects through this port (a Service's targetPort, a container talking to "
                    "an ambassador on localhost) gets connection refused."
                ),
                next_steps=dedupe(steps),
                since=started,
            )
        )
    return out


# --------------------------------------------------------------------------
# volume-not-shared
# --------------------------------------------------------------------------


def _path_words(spec: ContainerSpec) -> tuple[str, ...]:
    """Absolute paths the container's command line mentions."""
    return _command_paths(spec.command, spec.args)


# Pure, and asked again for the same command lines on every diagnosis.
@functools.lru_cache(maxsize=1024)
def _command_paths(command: tuple[str, ...], args: tuple[str, ...]) -> tuple[str, ...]:
    text = " ".join((*command, *args))
    try:
        words = shlex.split(text)
    except ValueError:
        words = text.split()
    out: list[str] = []
    for w in words:
        for part in w.replace("=", " ").replace(">", " ").replace("<", " ").split():
            part = part.strip(";&|'\"()")
            if part.startswith("/") and len(part) > 1:
                out.append(part)
    return tuple(out)


def _under(path: str, mount_path: str) -> bool:
    base = mount_path.rstrip("/") or "/"
    return base != "/" and (path == base or path.startswith(base + "/"))


def _covering(mounts: Iterable[VolumeMount], path: str) -> VolumeMount | None:
    hits = [m for m in mounts if _under(path, m.mount_path)]
    return max(hits, key=lambda m: len(m.mount_path)) if hits else None


def _spec_gaps(ctx: Ctx, pod: ApiPod) -> list[Finding]:
    """A container uses a path that another container has on a volume, without mounting it."""
    specs = [*pod.init_containers, *pod.containers]
    out: list[Finding] = []
    seen: set[tuple[str, str]] = set()
    for user in specs:
        for path in _path_words(user):
            if path.startswith(_IGNORED_MOUNT_PREFIXES):
                continue
            own = _covering(user.volume_mounts, path)
            for other in specs:
                if other.name == user.name:
                    continue
                theirs = _covering(other.volume_mounts, path)
                if theirs is None or (own is not None and own.name == theirs.name):
                    continue
                key = (user.name, theirs.name)
                if key in seen:
                    continue
                seen.add(key)
                if own is None:
                    have = f"{user.name} mounts nothing there, so the path is its own filesystem"
                else:
                    have = f"{user.name} mounts volume {own.name} there instead"
                out.append(
                    Finding(
                        rule="volume-not-shared",
                        severity="warning",
                        container=user.name,
                        summary=(
                            f"container {user.name} of {ctx.where} uses {path}, which {other.name} "
                            f"has on volume {theirs.name} ({theirs.mount_path}); {have}"
                        ),
                        evidence=(
                            Evidence(
                                "api", f"{user.name} command", " ".join((*user.command, *user.args))
                            ),
                            Evidence(
                                "api",
                                f"{other.name} mounts",
                                f"volume {theirs.name} at {theirs.mount_path}",
                            ),
                            Evidence(
                                "api",
                                f"{user.name} mounts",
                                ", ".join(
                                    f"{m.name} at {m.mount_path}"
                                    for m in user.volume_mounts
                                    if not m.mount_path.startswith(_IGNORED_MOUNT_PREFIXES)
                                )
                                or "none",
                            ),
                        ),
                        cause=(
                            f"Containers see each other's files only through a volume both mount; "
                            f"{user.name} reads or writes {path} without volume {theirs.name}, so "
                            f"what {other.name} puts there never reaches it (or the other way "
                            "round)."
                        ),
                        next_steps=(
                            f"add a volumeMount of {theirs.name} at {theirs.mount_path} to "
                            f"{user.name}",
                            ctx.steps.kubectl(
                                f"get pod {pod.name} -o jsonpath='{{range .spec.containers[*]}}"
                                f'{{.name}}: {{.volumeMounts}}{{"\\n"}}{{end}}\''
                            ),
                        ),
                        since=None,
                    )
                )
    return out


def volume_not_shared(ctx: Ctx) -> list[Finding]:
    out: list[Finding] = []
    pod = ctx.pod
    view = ctx.inp.view
    if view is not None:
        volumes = {v.name: v for v in view.volumes}
        for m in view.mismatches:
            if m.kind != "volume-not-shared":
                continue
            name = str(m.evidence.get("volume") or "")
            evidence = [Evidence("api", "volume", f"{name} ({m.evidence.get('kind')})")]
            vol = volumes.get(name)
            if vol is not None:
                evidence.extend(
                    Evidence(
                        "api",
                        f"{u.container} mounts it at",
                        u.mount_path + (" (ro)" if u.read_only else ""),
                    )
                    for u in vol.mounted_by
                )
            evidence.extend(
                Evidence("runtime", f"host path of {key.removeprefix('source:')}", str(value))
                for key, value in m.evidence.items()
                if key.startswith("source:") and value is not None
            )
            out.append(
                Finding(
                    rule="volume-not-shared",
                    severity="warning" if m.severity != "error" else "error",
                    container=m.container,
                    summary=m.message,
                    evidence=tuple(evidence),
                    cause=(
                        "The containers mount the same volume of the spec, but the runtime "
                        "bind-mounted different host directories, so they do not see each other's "
                        "files: a container created before the volume was set up, or a runtime "
                        "that was handed different mounts."
                    ),
                    next_steps=dedupe(
                        [
                            *(
                                f"crictl inspect {c.id}"
                                for c in (cv.current for cv in view.containers)
                                if c is not None
                            ),
                            *ctx.steps.agent_pod(),
                        ]
                    ),
                    since=m.since,
                )
            )
    if pod is not None:
        out.extend(_spec_gaps(ctx, pod))
    return out


# --------------------------------------------------------------------------
# api-unavailable
# --------------------------------------------------------------------------


def api_unavailable(ctx: Ctx) -> list[Finding]:
    if ctx.pod is not None or ctx.inp.api_available or ctx.inp.view is None:
        return []
    return [
        Finding(
            rule="api-unavailable",
            severity="info",
            container=None,
            summary=(
                f"pod {ctx.where}: the API server cannot be reached, so only the runtime's view "
                "was checked"
            ),
            evidence=(Evidence("check", "API server", "unreachable"),),
            cause=(
                "Without the pod's spec and status, image, configuration, init and probe problems "
                "cannot be told; the runtime's containers and exit codes are all there is."
            ),
            next_steps=(*ctx.steps.agent_pod(), *(["/readyz"] if ctx.inp.agent_urls else [])),
            since=None,
        )
    ]
