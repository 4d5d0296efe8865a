"""The lab kubelet's reading of a pod manifest: what it runs, and what it cannot honour.

One walk over the pod document builds the typed spec the kubelet runs and,
on the way, lists every field the lab cannot honour, with why. Fields are
judged by effect: a field set to its default (``hostPID: false``, an empty
``imagePullSecrets``) changes nothing and is accepted; one that would
change what runs (a ConfigMap volume, added capabilities, an affinity the
lab does not evaluate) is listed; a key the lab does not know at all is
listed too, because it might matter. Nothing is silently dropped.

Fields accepted because they cannot change anything on a one-node lab
without contention: tolerations (the lab node has no taints), priority,
priorityClassName, preemptionPolicy, serviceAccountName (no token is
mounted; nothing in the lab checks one), enableServiceLinks (the lab
injects no Service variables either way), resizePolicy.

Owns ``PodManifest`` and its parts, ``read_pod`` and ``unsupported_fields``.
Imports ``lab.cri_pods`` (the container hash) and ``lab.errors`` only, so the
lab node can refuse a manifest without starting anything.
"""

from __future__ import annotations

import platform
import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Decimal, InvalidOperation
from typing import Any, Final

from lab.cri_pods import DEFAULT_TERMINATION_MESSAGE_PATH, container_hash
from lab.errors import LabError

__all__ = [
    "LAB_HOST_PATH_PREFIX",
    "ContainerManifest",
    "EnvVar",
    "ManifestError",
    "PodManifest",
    "Probe",
    "Unsupported",
    "VolumeManifest",
    "default_node_labels",
    "parse_quantity",
    "read_pod",
    "unsupported_fields",
]

# hostPath volumes are honoured below this directory only: the lab must
# never hand a container the machine's own files.
LAB_HOST_PATH_PREFIX: Final = "/tmp/podlens-lab"
DEFAULT_SCHEDULER: Final = "default-scheduler"

_HOST_PATH_TYPES: Final = frozenset({"", "DirectoryOrCreate", "Directory", "FileOrCreate", "File"})
_RESTART_POLICIES: Final = frozenset({"Always", "OnFailure", "Never"})
_PULL_POLICIES: Final = frozenset({"Always", "IfNotPresent", "Never"})
_PROTOCOLS: Final = frozenset({"TCP", "UDP", "SCTP"})
# The downward API fields kubelet resolves for env valueFrom.fieldRef.
_FIELD_REFS: Final = frozenset(
    {
        "metadata.name",
        "metadata.namespace",
        "metadata.uid",
        "spec.nodeName",
        "spec.serviceAccountName",
        "status.hostIP",
        "status.hostIPs",
        "status.podIP",
        "status.podIPs",
    }
)
_LABEL_REF = re.compile(r"^metadata\.(labels|annotations)\['([^']+)'\]$")

# Volume sources the lab has no way to provide, and why.
_VOLUME_WHY: Final[Mapping[str, str]] = {
    "configMap": "the lab API server has no ConfigMaps",
    "secret": "the lab API server has no Secrets",
    "projected": "the lab API server has no ConfigMaps, Secrets or service account tokens",
    "downwardAPI": "the lab writes no downward API files",
    "persistentVolumeClaim": "the lab has no PersistentVolumes",
    "ephemeral": "the lab has no volume provisioner",
    "csi": "the lab has no CSI drivers",
    "nfs": "the lab mounts no network filesystems",
    "image": "the lab cannot mount images as volumes",
}

# Pod-spec keys that only ever matter when set to something other than their zero value.
_POD_UNSUPPORTED: Final[Mapping[str, str]] = {
    "affinity": "the lab does not evaluate affinity",
    "topologySpreadConstraints": "the lab has one node and does not evaluate spread",
    "imagePullSecrets": "the lab cannot pull images",
    "hostPID": "the lab does not share the node's PID namespace",
    "hostIPC": "the lab does not share the node's IPC namespace",
    "hostAliases": "the lab does not manage /etc/hosts entries",
    "dnsConfig": "the lab has no cluster DNS",
    "readinessGates": "nothing in the lab sets custom pod conditions",
    "runtimeClassName": "the lab runtime has one handler",
    "overhead": "the lab does not account pod overhead",
    "ephemeralContainers": "the lab cannot attach debug containers",
    "subdomain": "the lab has no cluster DNS",
    "setHostnameAsFQDN": "the lab has no cluster DNS",
    "resourceClaims": "the lab has no dynamic resource allocation",
    "resources": "the lab does not enforce pod-level resources",
    "schedulingGates": "",  # honoured: handled below
}
_POD_HARMLESS: Final = frozenset(
    {
        "tolerations",
        "priority",
        "priorityClassName",
        "preemptionPolicy",
        "serviceAccountName",
        "serviceAccount",
        "automountServiceAccountToken",
        "enableServiceLinks",
    }
)
_POD_SECURITY_OK: Final = frozenset(
    {
        "runAsUser",
        "runAsGroup",
        "runAsNonRoot",
        "supplementalGroups",
        "fsGroup",
        "fsGroupChangePolicy",
    }
)
_CONTAINER_SECURITY_OK: Final = frozenset(
    {
        "runAsUser",
        "runAsGroup",
        "runAsNonRoot",
        "readOnlyRootFilesystem",
        "allowPrivilegeEscalation",
    }
)


class ManifestError(LabError, ValueError):
    """The document is not a pod manifest at all."""


@dataclass(frozen=True, slots=True)
class Unsupported:
    """One field the lab cannot honour: its path in the manifest, and why."""

    field: str
    why: str

    def __str__(self) -> str:
        return f"{self.field} ({self.why})" if self.why else self.field


@dataclass(frozen=True, slots=True)
class EnvVar:
    """One ``env`` entry: a value, a downward API field or a ConfigMap/Secret key."""

    name: str
    value: str | None = None
    field_path: str | None = None
    # (kind, object name, key, optional) for configMapKeyRef / secretKeyRef.
    key_ref: tuple[str, str, str, bool] | None = None


@dataclass(frozen=True, slots=True)
class EnvFrom:
    kind: str  # "configmap" or "secret", as kubelet's error messages spell them
    name: str
    optional: bool
    prefix: str


@dataclass(frozen=True, slots=True)
class Probe:
    """One probe as the manifest gives it, with kubelet's defaults filled in."""

    kind: str  # "exec", "httpGet" or "tcpSocket"
    command: tuple[str, ...] = ()
    path: str = "/"
    port: int | str = 0
    headers: tuple[tuple[str, str], ...] = ()
    initial_delay: int = 0
    period: int = 10
    timeout: int = 1
    success_threshold: int = 1
    failure_threshold: int = 3
    termination_grace: int | None = None

    def describe(self) -> str:
        """The probe as kubelet's events name it: ``http-get :8080/healthz``."""
        if self.kind == "exec":
            return f"exec {list(self.command)}"
        if self.kind == "httpGet":
            return f"http-get :{self.port}{self.path}"
        return f"tcp-socket :{self.port}"


@dataclass(frozen=True, slots=True)
class MountManifest:
    volume: str
    mount_path: str
    read_only: bool = False
    sub_path: str = ""


@dataclass(frozen=True, slots=True)
class Resources:
    cpu_request_milli: int = 0
    cpu_limit_milli: int = 0
    memory_request_bytes: int = 0
    memory_limit_bytes: int = 0

    @property
    def empty(self) -> bool:
        return not (
            self.cpu_request_milli
            or self.cpu_limit_milli
            or self.memory_request_bytes
            or self.memory_limit_bytes
        )


@dataclass(frozen=True, slots=True)
class Security:
    run_as_user: int | None = None
    run_as_group: int | None = None
    run_as_non_root: bool = False
    read_only_root: bool = False
    no_new_privs: bool = False


@dataclass(frozen=True, slots=True)
class ContainerManifest:
    """One container of the pod manifest (init, sidecar or app) as the lab kubelet runs it."""

    name: str
    image: str
    field_path: str  # kubelet's event fieldPath: spec.containers{name}
    index_path: str  # where it sits in the manifest: spec.containers[0]
    init: bool = False
    sidecar: bool = False
    pull_policy: str = "IfNotPresent"
    command: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    env: tuple[EnvVar, ...] = ()
    env_from: tuple[EnvFrom, ...] = ()
    working_dir: str = ""
    ports: tuple[tuple[int, str, str], ...] = ()  # (containerPort, name, protocol)
    mounts: tuple[MountManifest, ...] = ()
    readiness: Probe | None = None
    liveness: Probe | None = None
    startup: Probe | None = None
    resources: Resources = field(default_factory=Resources)
    security: Security = field(default_factory=Security)
    termination_message_path: str = DEFAULT_TERMINATION_MESSAGE_PATH
    termination_message_policy: str = "File"
    # Kubelet's container hash: of the whole API container spec.
    spec_hash: str = ""


@dataclass(frozen=True, slots=True)
class VolumeManifest:
    """One pod volume the lab can provide: an emptyDir or a hostPath."""

    name: str
    kind: str  # "emptyDir" or "hostPath"
    medium: str = ""
    size_limit_bytes: int = 0
    host_path: str = ""
    host_type: str = ""


@dataclass(frozen=True, slots=True)
class PodManifest:
    """The pod manifest as the lab kubelet runs it, with the fields it cannot honour."""

    name: str
    namespace: str
    uid: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    node_name: str
    restart_policy: str = "Always"
    grace_period: int = 30
    active_deadline: int | None = None
    host_network: bool = False
    share_process_namespace: bool = False
    hostname: str = ""
    service_account: str = ""
    init_containers: tuple[ContainerManifest, ...] = ()
    containers: tuple[ContainerManifest, ...] = ()
    volumes: tuple[VolumeManifest, ...] = ()
    fs_group: int | None = None
    supplemental_groups: tuple[int, ...] = ()
    node_selector: Mapping[str, str] = field(default_factory=dict)
    scheduling_gates: tuple[str, ...] = ()
    scheduler_name: str = DEFAULT_SCHEDULER
    deletion_timestamp: str = ""
    deletion_grace: int | None = None
    unsupported: tuple[Unsupported, ...] = ()

    @property
    def all_containers(self) -> tuple[ContainerManifest, ...]:
        """Init containers (sidecars among them) first, then app containers."""
        return self.init_containers + self.containers

    def container(self, name: str) -> ContainerManifest | None:
        """The container called ``name``; None if there is none."""
        for spec in self.all_containers:
            if spec.name == name:
                return spec
        return None


def default_node_labels(node_name: str) -> dict[str, str]:
    """The well-known labels a kubelet puts on its Node."""
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    return {
        "kubernetes.io/hostname": node_name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": arch,
        "beta.kubernetes.io/os": "linux",
        "beta.kubernetes.io/arch": arch,
    }


# --------------------------------------------------------------------------
# quantities


_QUANTITY = re.compile(
    r"^([+-]?(?:\d+\.?\d*|\.\d+))(?:([eE][+-]?\d+)|(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E))?$"
)
_BINARY = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}


def parse_quantity(value: object) -> Decimal:
    """A resource quantity (``"500m"``, ``"64Mi"``, ``1``, ``"1e3"``) as a number."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"{value!r} is not a quantity")
    text = str(value).strip()
    m = _QUANTITY.match(text)
    if m is None:
        raise ValueError(f"{text!r} is not a quantity")
    number, exponent, suffix = m.groups()
    try:
        base = Decimal(number)
    except InvalidOperation as exc:
        raise ValueError(f"{text!r} is not a quantity") from exc
    if exponent:
        return base.scaleb(int(exponent[1:]))
    if suffix in _BINARY:
        return base * Decimal(1 << _BINARY[suffix])
    if suffix in _DECIMAL:
        return base.scaleb(_DECIMAL[suffix])
    return base


def _ceil(value: Decimal) -> int:
    return int(value.to_integral_value(rounding=ROUND_CEILING))


# --------------------------------------------------------------------------
# the walk


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


class _Reader:
    """Typed access to the manifest that records what it cannot honour."""

    def __init__(
        self,
        node_name: str | None,
        node_labels: Mapping[str, str] | None,
        host_path_prefixes: Sequence[str],
    ) -> None:
        self.node_name = node_name
        self.node_labels = (
            dict(node_labels) if node_labels is not None else default_node_labels(node_name or "")
        )
        self.prefixes = [posixpath.normpath(p) for p in host_path_prefixes]
        self.found: list[Unsupported] = []
        # Volumes already reported as unsupported; mounts of them are not
        # reported a second time.
        self.refused_volumes: set[str] = set()

    def no(self, path: str, why: str) -> None:
        # One reason per field: the first is the most specific.
        if all(u.field != path for u in self.found):
            self.found.append(Unsupported(path, why))

    # -- typed getters: a wrong type is recorded and the default returned --

    def obj(self, d: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any]:
        value = d.get(key)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.no(_join(path, key), "expected an object")
            return {}
        return value

    def objs(self, d: Mapping[str, Any], key: str, path: str) -> list[Mapping[str, Any]]:
        value = d.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.no(_join(path, key), "expected a list")
            return []
        out: list[Mapping[str, Any]] = []
        for i, item in enumerate(value):
            if isinstance(item, Mapping):
                out.append(item)
            else:
                self.no(f"{_join(path, key)}[{i}]", "expected an object")
                out.append({})
        return out

    def str_(self, d: Mapping[str, Any], key: str, path: str, default: str = "") -> str:
        value = d.get(key)
        if value is None:
            return default
        if not isinstance(value, str):
            self.no(_join(path, key), "expected a string")
            return default
        return value

    def strs(self, d: Mapping[str, Any], key: str, path: str) -> tuple[str, ...]:
        value = d.get(key)
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.no(_join(path, key), "expected a list of strings")
            return ()
        return tuple(value)

    def int_(self, d: Mapping[str, Any], key: str, path: str, default: int | None = None) -> Any:
        value = d.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            self.no(_join(path, key), "expected an integer")
            return default
        return value

    def bool_(self, d: Mapping[str, Any], key: str, path: str) -> bool:
        value = d.get(key)
        if value is None:
            return False
        if not isinstance(value, bool):
            self.no(_join(path, key), "expected true or false")
            return False
        return value

    def str_map(self, d: Mapping[str, Any], key: str, path: str) -> dict[str, str]:
        out: dict[str, str] = {}
        for k, v in self.obj(d, key, path).items():
            if isinstance(v, str):
                out[str(k)] = v
            else:
                self.no(f"{_join(path, key)}.{k}", "expected a string")
        return out

    def unknown(self, d: Mapping[str, Any], path: str, known: frozenset[str] | set[str]) -> None:
        for key in d:
            if key not in known:
                self.no(_join(path, key), "not a field the lab knows")


_CONTAINER_KEYS: Final = frozenset(
    {
        "name",
        "image",
        "imagePullPolicy",
        "command",
        "args",
        "workingDir",
        "env",
        "envFrom",
        "ports",
        "volumeMounts",
        "resources",
        "resizePolicy",
        "readinessProbe",
        "livenessProbe",
        "startupProbe",
        "terminationMessagePath",
        "terminationMessagePolicy",
        "securityContext",
        "restartPolicy",
        "stdin",
        "stdinOnce",
        "tty",
        "lifecycle",
        "volumeDevices",
    }
)


def _read_probe(r: _Reader, c: Mapping[str, Any], key: str, path: str) -> Probe | None:
    probe = r.obj(c, key, path)
    if not probe:
        return None
    p = f"{path}.{key}"
    handlers = [k for k in ("exec", "httpGet", "tcpSocket", "grpc") if probe.get(k) is not None]
    r.unknown(
        probe,
        p,
        {
            "exec",
            "httpGet",
            "tcpSocket",
            "grpc",
            "initialDelaySeconds",
            "periodSeconds",
            "timeoutSeconds",
            "successThreshold",
            "failureThreshold",
            "terminationGracePeriodSeconds",
        },
    )
    timing = {
        "initial_delay": max(0, r.int_(probe, "initialDelaySeconds", p, 0)),
        "period": max(1, r.int_(probe, "periodSeconds", p, 10)),
        "timeout": max(1, r.int_(probe, "timeoutSeconds", p, 1)),
        "success_threshold": max(1, r.int_(probe, "successThreshold", p, 1)),
        "failure_threshold": max(1, r.int_(probe, "failureThreshold", p, 3)),
        "termination_grace": r.int_(probe, "terminationGracePeriodSeconds", p),
    }
    if key != "readinessProbe" and timing["success_threshold"] != 1:
        r.no(f"{p}.successThreshold", "must be 1 for liveness and startup probes")
    if len(handlers) != 1:
        r.no(p, "a probe needs exactly one of exec, httpGet, tcpSocket")
        return None
    kind = handlers[0]
    if kind == "grpc":
        r.no(f"{p}.grpc", "the lab runs exec, httpGet and tcpSocket probes only")
        return None
    if kind == "exec":
        ex = r.obj(probe, "exec", p)
        r.unknown(ex, f"{p}.exec", {"command"})
        command = r.strs(ex, "command", f"{p}.exec")
        if not command:
            r.no(f"{p}.exec.command", "an exec probe needs a command")
        return Probe(kind="exec", command=command, **timing)
    handler = r.obj(probe, kind, p)
    hp = f"{p}.{kind}"
    port = handler.get("port")
    if isinstance(port, bool) or not isinstance(port, int | str) or port in ("", 0):
        r.no(f"{hp}.port", "expected a port number or a container port name")
        port = 0
    if r.str_(handler, "host", hp):
        r.no(f"{hp}.host", "lab probes reach the pod's own address only")
    headers: list[tuple[str, str]] = []
    path_ = "/"
    if kind == "httpGet":
        r.unknown(handler, hp, {"path", "port", "host", "scheme", "httpHeaders"})
        scheme = r.str_(handler, "scheme", hp, "HTTP")
        if scheme.upper() != "HTTP":
            r.no(f"{hp}.scheme", "the lab probes plain HTTP only")
        path_ = r.str_(handler, "path", hp, "/") or "/"
        for i, h in enumerate(r.objs(handler, "httpHeaders", hp)):
            hname = r.str_(h, "name", f"{hp}.httpHeaders[{i}]")
            headers.append((hname, r.str_(h, "value", f"{hp}.httpHeaders[{i}]")))
    else:
        r.unknown(handler, hp, {"port", "host"})
    return Probe(kind=kind, path=path_, port=port, headers=tuple(headers), **timing)


def _read_resources(r: _Reader, c: Mapping[str, Any], path: str) -> Resources:
    res = r.obj(c, "resources", path)
    p = f"{path}.resources"
    r.unknown(res, p, {"limits", "requests", "claims"})
    if res.get("claims"):
        r.no(f"{p}.claims", "the lab has no dynamic resource allocation")
    values: dict[tuple[str, str], Decimal] = {}
    for kind in ("limits", "requests"):
        for name, raw in r.obj(res, kind, p).items():
            if name not in ("cpu", "memory"):
                r.no(f"{p}.{kind}.{name}", "the lab enforces cpu and memory only")
                continue
            try:
                values[(kind, name)] = parse_quantity(raw)
            except ValueError as exc:
                r.no(f"{p}.{kind}.{name}", str(exc))
    cpu_limit = values.get(("limits", "cpu"))
    mem_limit = values.get(("limits", "memory"))
    # The API server defaults a missing request to the limit.
    cpu_request = values.get(("requests", "cpu"), cpu_limit)
    mem_request = values.get(("requests", "memory"), mem_limit)
    return Resources(
        cpu_request_milli=_ceil(cpu_request * 1000) if cpu_request else 0,
        cpu_limit_milli=_ceil(cpu_limit * 1000) if cpu_limit else 0,
        memory_request_bytes=_ceil(mem_request) if mem_request else 0,
        memory_limit_bytes=_ceil(mem_limit) if mem_limit else 0,
    )


def _read_security(
    r: _Reader, sc: Mapping[str, Any], path: str, ok: frozenset[str], pod: Security | None
) -> Security:
    for key, value in sc.items():
        if key in ok or value in (None, False, {}, []):
            continue
        if key == "privileged":
            r.no(f"{path}.{key}", "the lab runs no privileged containers")
        elif key == "capabilities":
            r.no(f"{path}.{key}", "the lab runs containers with the runtime's default capabilities")
        elif key == "procMount" and value == "Default":
            continue
        elif (
            key == "seccompProfile"
            and isinstance(value, Mapping)
            and (value.get("type") == "Unconfined")
        ):
            # The lab runtime applies no seccomp profile, which is Unconfined.
            continue
        else:
            r.no(f"{path}.{key}", "the lab runtime does not apply it")
    base = pod or Security()
    user = r.int_(sc, "runAsUser", path, base.run_as_user)
    group = r.int_(sc, "runAsGroup", path, base.run_as_group)
    non_root = sc.get("runAsNonRoot")
    return Security(
        run_as_user=user,
        run_as_group=group,
        run_as_non_root=r.bool_(sc, "runAsNonRoot", path)
        if non_root is not None
        else base.run_as_non_root,
        read_only_root=r.bool_(sc, "readOnlyRootFilesystem", path),
        # allowPrivilegeEscalation false is what sets no_new_privs.
        no_new_privs=sc.get("allowPrivilegeEscalation") is False,
    )


def _read_env(r: _Reader, c: Mapping[str, Any], path: str) -> tuple[EnvVar, ...]:
    out: list[EnvVar] = []
    for i, e in enumerate(r.objs(c, "env", path)):
        p = f"{path}.env[{i}]"
        r.unknown(e, p, {"name", "value", "valueFrom"})
        name = r.str_(e, "name", p)
        if not name:
            r.no(f"{p}.name", "an environment variable needs a name")
            continue
        source = r.obj(e, "valueFrom", p)
        if not source:
            out.append(EnvVar(name, value=r.str_(e, "value", p)))
            continue
        sp = f"{p}.valueFrom"
        if source.get("fieldRef") is not None:
            ref = r.obj(source, "fieldRef", sp)
            fpath = r.str_(ref, "fieldPath", f"{sp}.fieldRef")
            if fpath not in _FIELD_REFS and not _LABEL_REF.match(fpath):
                r.no(f"{sp}.fieldRef", f"the lab does not resolve fieldPath {fpath!r}")
                continue
            out.append(EnvVar(name, field_path=fpath))
        elif source.get("configMapKeyRef") is not None or source.get("secretKeyRef") is not None:
            key = "configMapKeyRef" if source.get("configMapKeyRef") is not None else "secretKeyRef"
            ref = r.obj(source, key, sp)
            kind = "configmap" if key == "configMapKeyRef" else "secret"
            out.append(
                EnvVar(
                    name,
                    key_ref=(
                        kind,
                        r.str_(ref, "name", f"{sp}.{key}"),
                        r.str_(ref, "key", f"{sp}.{key}"),
                        r.bool_(ref, "optional", f"{sp}.{key}"),
                    ),
                )
            )
        else:
            for other in source:
                r.no(f"{sp}.{other}", "the lab does not resolve this source")
    return tuple(out)


def _read_env_from(r: _Reader, c: Mapping[str, Any], path: str) -> tuple[EnvFrom, ...]:
    out: list[EnvFrom] = []
    for i, e in enumerate(r.objs(c, "envFrom", path)):
        p = f"{path}.envFrom[{i}]"
        r.unknown(e, p, {"configMapRef", "secretRef", "prefix"})
        for key, kind in (("configMapRef", "configmap"), ("secretRef", "secret")):
            if e.get(key) is None:
                continue
            ref = r.obj(e, key, p)
            out.append(
                EnvFrom(
                    kind,
                    r.str_(ref, "name", f"{p}.{key}"),
                    r.bool_(ref, "optional", f"{p}.{key}"),
                    r.str_(e, "prefix", p),
                )
            )
    return tuple(out)


def _read_container(
    r: _Reader,
    c: Mapping[str, Any],
    path: str,
    *,
    init: bool,
    volumes: Mapping[str, VolumeManifest],
    pod_security: Security,
    host_network: bool,
) -> ContainerManifest:
    r.unknown(c, path, _CONTAINER_KEYS)
    name = r.str_(c, "name", path)
    if not name:
        r.no(f"{path}.name", "a container needs a name")
    image = r.str_(c, "image", path)
    if not image:
        r.no(f"{path}.image", "a container needs an image")
    restart_policy = r.str_(c, "restartPolicy", path)
    sidecar = False
    if restart_policy:
        if init and restart_policy == "Always":
            sidecar = True
        else:
            r.no(f"{path}.restartPolicy", "only init containers may set it, and only to Always")
    for flag in ("stdin", "stdinOnce", "tty"):
        if r.bool_(c, flag, path):
            r.no(f"{path}.{flag}", "the lab cannot attach to containers")
    lifecycle = r.obj(c, "lifecycle", path)
    for hook, value in lifecycle.items():
        if value:
            r.no(f"{path}.lifecycle.{hook}", "the lab runs no lifecycle hooks")
    if c.get("volumeDevices"):
        r.no(f"{path}.volumeDevices", "the lab has no block devices")
    pull_policy = r.str_(c, "imagePullPolicy", path)
    if not pull_policy:
        # The API server's defaulting: Always for :latest or no tag.
        last = image.rsplit("/", 1)[-1]
        untagged = "@" not in image and (":" not in last or last.endswith(":latest"))
        pull_policy = "Always" if untagged else "IfNotPresent"
    elif pull_policy not in _PULL_POLICIES:
        r.no(f"{path}.imagePullPolicy", f"unknown policy {pull_policy!r}")

    ports: list[tuple[int, str, str]] = []
    for i, port in enumerate(r.objs(c, "ports", path)):
        pp = f"{path}.ports[{i}]"
        r.unknown(port, pp, {"containerPort", "name", "protocol", "hostPort", "hostIP"})
        number = r.int_(port, "containerPort", pp)
        if not isinstance(number, int) or not 0 < number < 65536:
            r.no(f"{pp}.containerPort", "expected a port number")
            continue
        protocol = r.str_(port, "protocol", pp, "TCP") or "TCP"
        if protocol not in _PROTOCOLS:
            r.no(f"{pp}.protocol", f"unknown protocol {protocol!r}")
        host_port = r.int_(port, "hostPort", pp, 0)
        if host_port and not (host_network and host_port == number):
            r.no(f"{pp}.hostPort", "the lab maps no host ports")
        if r.str_(port, "hostIP", pp):
            r.no(f"{pp}.hostIP", "the lab maps no host ports")
        ports.append((number, r.str_(port, "name", pp), protocol))

    mounts: list[MountManifest] = []
    for i, m in enumerate(r.objs(c, "volumeMounts", path)):
        mp = f"{path}.volumeMounts[{i}]"
        r.unknown(
            m,
            mp,
            {
                "name",
                "mountPath",
                "readOnly",
                "subPath",
                "subPathExpr",
                "mountPropagation",
                "recursiveReadOnly",
            },
        )
        vname = r.str_(m, "name", mp)
        mount_path = r.str_(m, "mountPath", mp)
        if vname not in volumes:
            # A volume the lab refused is reported at the volume already.
            if vname not in r.refused_volumes:
                r.no(f"{mp}.name", f"no volume named {vname!r} in spec.volumes")
            continue
        if not mount_path.startswith("/"):
            r.no(f"{mp}.mountPath", "expected an absolute path")
            continue
        sub_path = r.str_(m, "subPath", mp)
        if sub_path and (sub_path.startswith("/") or ".." in sub_path.split("/")):
            r.no(f"{mp}.subPath", "expected a relative path inside the volume")
            continue
        if r.str_(m, "subPathExpr", mp):
            r.no(f"{mp}.subPathExpr", "the lab does not expand subPathExpr")
        if r.str_(m, "mountPropagation", mp) not in ("", "None"):
            r.no(f"{mp}.mountPropagation", "the lab mounts volumes private")
        if r.str_(m, "recursiveReadOnly", mp) not in ("", "Disabled"):
            r.no(f"{mp}.recursiveReadOnly", "the lab runtime does not support it")
        mounts.append(MountManifest(vname, mount_path, r.bool_(m, "readOnly", mp), sub_path))

    security = _read_security(
        r,
        r.obj(c, "securityContext", path),
        f"{path}.securityContext",
        _CONTAINER_SECURITY_OK,
        pod_security,
    )
    readiness = _read_probe(r, c, "readinessProbe", path)
    liveness = _read_probe(r, c, "livenessProbe", path)
    startup = _read_probe(r, c, "startupProbe", path)
    if init and not sidecar:
        for key, probe in (
            ("readinessProbe", readiness),
            ("livenessProbe", liveness),
            ("startupProbe", startup),
        ):
            if probe is not None:
                r.no(f"{path}.{key}", "init containers cannot have probes")
        readiness = liveness = startup = None
    policy = r.str_(c, "terminationMessagePolicy", path, "File") or "File"
    if policy not in ("File", "FallbackToLogsOnError"):
        r.no(f"{path}.terminationMessagePolicy", f"unknown policy {policy!r}")
    group = "initContainers" if init else "containers"
    return ContainerManifest(
        name=name,
        image=image,
        field_path=f"spec.{group}{{{name}}}",
        index_path=path,
        init=init,
        sidecar=sidecar,
        pull_policy=pull_policy,
        command=r.strs(c, "command", path),
        args=r.strs(c, "args", path),
        env=_read_env(r, c, path),
        env_from=_read_env_from(r, c, path),
        working_dir=r.str_(c, "workingDir", path),
        ports=tuple(ports),
        mounts=tuple(mounts),
        readiness=readiness,
        liveness=liveness,
        startup=startup,
        resources=_read_resources(r, c, path),
        security=security,
        termination_message_path=r.str_(
            c, "terminationMessagePath", path, DEFAULT_TERMINATION_MESSAGE_PATH
        )
        or DEFAULT_TERMINATION_MESSAGE_PATH,
        termination_message_policy=policy,
        spec_hash=container_hash(c),
    )


def _read_volumes(r: _Reader, spec: Mapping[str, Any]) -> dict[str, VolumeManifest]:
    out: dict[str, VolumeManifest] = {}
    refused: set[str] = set()
    for i, v in enumerate(r.objs(spec, "volumes", "spec")):
        p = f"spec.volumes[{i}]"
        name = r.str_(v, "name", p)
        if not name:
            r.no(f"{p}.name", "a volume needs a name")
            continue
        sources = [k for k in v if k != "name" and v[k] is not None]
        if len(sources) != 1:
            r.no(p, "a volume needs exactly one source")
            refused.add(name)
            continue
        kind = sources[0]
        if kind == "emptyDir":
            ed = r.obj(v, "emptyDir", p)
            r.unknown(ed, f"{p}.emptyDir", {"medium", "sizeLimit"})
            medium = r.str_(ed, "medium", f"{p}.emptyDir")
            size = 0
            if medium not in ("", "Memory"):
                r.no(f"{p}.emptyDir.medium", f"the lab has no medium {medium!r}")
            if ed.get("sizeLimit") is not None:
                try:
                    size = _ceil(parse_quantity(ed["sizeLimit"]))
                except ValueError as exc:
                    r.no(f"{p}.emptyDir.sizeLimit", str(exc))
                if medium != "Memory":
                    r.no(
                        f"{p}.emptyDir.sizeLimit",
                        "the lab enforces a size only on medium Memory (a tmpfs)",
                    )
            out[name] = VolumeManifest(name, "emptyDir", medium=medium, size_limit_bytes=size)
        elif kind == "hostPath":
            hp = r.obj(v, "hostPath", p)
            r.unknown(hp, f"{p}.hostPath", {"path", "type"})
            host = r.str_(hp, "path", f"{p}.hostPath")
            host_type = r.str_(hp, "type", f"{p}.hostPath")
            norm = posixpath.normpath(host) if host.startswith("/") else ""
            if not norm or not any(
                norm == pre or norm.startswith(pre.rstrip("/") + "/") for pre in r.prefixes
            ):
                r.no(
                    f"{p}.hostPath",
                    f"the lab mounts host paths under {', '.join(r.prefixes)} only",
                )
                refused.add(name)
                continue
            if host_type not in _HOST_PATH_TYPES:
                r.no(f"{p}.hostPath.type", f"the lab does not check type {host_type!r}")
            out[name] = VolumeManifest(name, "hostPath", host_path=norm, host_type=host_type)
        else:
            r.no(f"{p}.{kind}", _VOLUME_WHY.get(kind, "the lab has no such volume source"))
            refused.add(name)
    r.refused_volumes = refused
    return out


_POD_KEYS: Final = frozenset(
    {
        "containers",
        "initContainers",
        "volumes",
        "restartPolicy",
        "terminationGracePeriodSeconds",
        "activeDeadlineSeconds",
        "hostNetwork",
        "shareProcessNamespace",
        "hostname",
        "nodeName",
        "nodeSelector",
        "schedulerName",
        "dnsPolicy",
        "securityContext",
        "os",
        "hostUsers",
        *_POD_UNSUPPORTED,
        *_POD_HARMLESS,
    }
)


def read_pod(
    pod: Mapping[str, Any],
    *,
    node_name: str | None = None,
    node_labels: Mapping[str, str] | None = None,
    host_path_prefixes: Sequence[str] = (LAB_HOST_PATH_PREFIX,),
) -> PodManifest:
    """The pod as the lab kubelet runs it, with everything it cannot honour.

    ``node_name`` and ``node_labels`` describe the lab node; without a
    name, ``spec.nodeName`` and a hostname selector are not judged.
    """
    if not isinstance(pod, Mapping):
        raise ManifestError(f"a pod manifest is a JSON object, not {type(pod).__name__}")
    kind = pod.get("kind")
    if kind not in (None, "Pod"):
        raise ManifestError(f"expected kind Pod, got {kind!r}")
    r = _Reader(node_name, node_labels, host_path_prefixes)
    meta = r.obj(pod, "metadata", "")
    spec = r.obj(pod, "spec", "")
    r.unknown(pod, "", {"apiVersion", "kind", "metadata", "spec", "status"})
    r.unknown(spec, "spec", _POD_KEYS)

    for key, why in _POD_UNSUPPORTED.items():
        value = spec.get(key)
        if why and value not in (None, False, {}, [], ""):
            if key == "hostUsers":
                continue
            r.no(f"spec.{key}", why)
    if spec.get("hostUsers") is False:
        r.no("spec.hostUsers", "the lab runtime has no user namespaces")

    restart_policy = r.str_(spec, "restartPolicy", "spec", "Always") or "Always"
    if restart_policy not in _RESTART_POLICIES:
        r.no("spec.restartPolicy", f"unknown policy {restart_policy!r}")
        restart_policy = "Always"
    grace = r.int_(spec, "terminationGracePeriodSeconds", "spec", 30)
    if grace < 0:
        r.no("spec.terminationGracePeriodSeconds", "must not be negative")
        grace = 30
    deadline = r.int_(spec, "activeDeadlineSeconds", "spec")
    if deadline is not None and deadline <= 0:
        r.no("spec.activeDeadlineSeconds", "must be positive")
        deadline = None
    host_network = r.bool_(spec, "hostNetwork", "spec")

    node_selector = r.str_map(spec, "nodeSelector", "spec")
    for key, value in node_selector.items():
        if key == "kubernetes.io/hostname" and node_name is None:
            continue
        if r.node_labels.get(key) != value:
            r.no(
                f"spec.nodeSelector.{key}",
                f"the lab node has no label {key}={value}",
            )
    wanted_node = r.str_(spec, "nodeName", "spec")
    if wanted_node and node_name is not None and wanted_node != node_name:
        r.no("spec.nodeName", f"the lab has one node, {node_name!r}")
    scheduler = r.str_(spec, "schedulerName", "spec", DEFAULT_SCHEDULER) or DEFAULT_SCHEDULER
    if scheduler != DEFAULT_SCHEDULER:
        r.no("spec.schedulerName", "the lab binds pods for default-scheduler only")
    dns_policy = r.str_(spec, "dnsPolicy", "spec", "ClusterFirst") or "ClusterFirst"
    if dns_policy not in ("ClusterFirst", "ClusterFirstWithHostNet"):
        r.no("spec.dnsPolicy", "the lab gives pods no DNS server (it has no cluster DNS)")
    os_name = r.str_(r.obj(spec, "os", "spec"), "name", "spec.os", "linux")
    if os_name != "linux":
        r.no("spec.os.name", "the lab node runs linux")
    gates = tuple(
        r.str_(g, "name", f"spec.schedulingGates[{i}]")
        for i, g in enumerate(r.objs(spec, "schedulingGates", "spec"))
    )

    pod_sc = r.obj(spec, "securityContext", "spec")
    pod_security = _read_security(r, pod_sc, "spec.securityContext", _POD_SECURITY_OK, None)
    supplemental = tuple(g for g in pod_sc.get("supplementalGroups") or () if isinstance(g, int))
    fs_group = r.int_(pod_sc, "fsGroup", "spec.securityContext")

    volumes = _read_volumes(r, spec)
    init_raw = r.objs(spec, "initContainers", "spec")
    app_raw = r.objs(spec, "containers", "spec")
    if not app_raw:
        r.no("spec.containers", "a pod needs at least one container")

    def read(c: Mapping[str, Any], path: str, init: bool) -> ContainerManifest:
        return _read_container(
            r,
            c,
            path,
            init=init,
            volumes=volumes,
            pod_security=pod_security,
            host_network=host_network,
        )

    init = tuple(read(c, f"spec.initContainers[{i}]", True) for i, c in enumerate(init_raw))
    apps = tuple(read(c, f"spec.containers[{i}]", False) for i, c in enumerate(app_raw))
    seen: set[str] = set()
    for c in init + apps:
        if c.name and c.name in seen:
            r.no(f"{c.index_path}.name", f"duplicate container name {c.name!r}")
        seen.add(c.name)

    return PodManifest(
        name=r.str_(meta, "name", "metadata"),
        namespace=r.str_(meta, "namespace", "metadata") or "default",
        uid=r.str_(meta, "uid", "metadata"),
        labels=r.str_map(meta, "labels", "metadata"),
        annotations=r.str_map(meta, "annotations", "metadata"),
        node_name=wanted_node,
        restart_policy=restart_policy,
        grace_period=grace,
        active_deadline=deadline,
        host_network=host_network,
        share_process_namespace=r.bool_(spec, "shareProcessNamespace", "spec"),
        hostname=r.str_(spec, "hostname", "spec"),
        service_account=r.str_(spec, "serviceAccountName", "spec")
        or r.str_(spec, "serviceAccount", "spec"),
        init_containers=init,
        containers=apps,
        volumes=tuple(volumes.values()),
        fs_group=fs_group,
        supplemental_groups=supplemental,
        node_selector=node_selector,
        scheduling_gates=gates,
        scheduler_name=scheduler,
        deletion_timestamp=r.str_(meta, "deletionTimestamp", "metadata"),
        deletion_grace=r.int_(meta, "deletionGracePeriodSeconds", "metadata"),
        unsupported=tuple(r.found),
    )


def unsupported_fields(
    pod: Mapping[str, Any],
    *,
    node_name: str | None = None,
    node_labels: Mapping[str, str] | None = None,
    host_path_prefixes: Sequence[str] = (LAB_HOST_PATH_PREFIX,),
) -> list[str]:
    """The manifest fields the lab cannot honour, as paths (``spec.volumes[0].configMap``).

    Empty means the lab runs the pod as a node would. Pure: reads nothing
    but its arguments. Raises ``ManifestError`` when ``pod`` is not a pod
    manifest at all. ``read_pod(pod).unsupported`` has the same fields with
    the reason for each.
    """
    return [
        u.field
        for u in read_pod(
            pod,
            node_name=node_name,
            node_labels=node_labels,
            host_path_prefixes=host_path_prefixes,
        ).unsupported
    ]
