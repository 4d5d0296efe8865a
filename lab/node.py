"""The lab node: a container runtime, an API server, a kubelet and the agent on this machine.

``up`` builds the images, starts a private container runtime (containerd 1.6
by default; ``--runtime containerd2|crio`` for the upstream builds), the lab API server,
the lab kubelet and the agent as detached processes (each in its own
session, logging into the lab directory) and returns once the agent serves.
They outlive the command that started them; what later commands need to
find and stop them is kept in ``state.json`` in the lab directory: every
PID with its start time (so ``down`` can never signal a recycled PID), the
ports, the endpoints and the containerd token that names its bridge.

``apply`` creates Pods in the lab API server, bound to the lab node as a
scheduler would bind them; the lab kubelet runs them. ``down`` stops the
agent, the kubelet and the API server, removes every sandbox through CRI,
stops containerd and removes its bridge, mounts and directories, then
checks that nothing is left.

Run as ``python -m lab up|apply -f FILE|delete NAME|status|down|walkthrough``.
Exit codes: 0 done; 1 a request was refused (a manifest, an unknown pod);
2 the lab cannot do it (not root, a package missing, a port in use, not up,
a component that failed).

Owns ``LabNode``, ``state.json`` and the command line. Imports the rest of
the lab except the kubelet and the API server (those run as processes), and
of the agent only ``agent.domain.podstatus`` with its converter
``agent.kube.convert`` (and ``agent.errors`` it raises), so ``status`` prints
kubectl's columns exactly as the agent computes them.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import errno
import fcntl
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import yaml

from agent.domain.podstatus import status_strings
from agent.errors import InvalidInput
from agent.kube.convert import pod_from_dict
from lab.apitime import rfc3339
from lab.containerd import PrivateContainerd
from lab.errors import ContainerdFailed, LabError, MissingTool, NotRoot
from lab.images import (
    BUSYBOX_PATH,
    NGINX_BINARY,
    build_images,
    default_cache_dir,
    lab_node_recipes,
    require_tool,
)
from lab.private_runtime import mounts_under, require_cni_plugins, unmount_under
from lab.processes import ProcessRef, log_tail, python_child_env, stop_process
from lab.runtimes import (
    RUNTIMES,
    PrivateContainerd2,
    PrivateCrio,
    PrivateRuntime,
    private_runtime,
    runtime_problem,
)
from lab.upstream import deploy, nodes, realnode
from lab.upstream.pki import SERVICE_CIDR
from lab.upstream.realnode import REAL_COMPONENTS, RealState

DEFAULT_LAB_DIR = Path("/var/lib/podlens-lab")
LAB_DIR_ENV = "PODLENS_LAB_DIR"
DEFAULT_PORT = 8470
# Where the lab's agent allows kill-and-watch (the exercises run in default).
LAB_KILL_NAMESPACES = "default"
NODE_NAME = "lab-node"
# How long past a pod's grace period ``delete`` waits for it to be gone.
DELETE_MARGIN = 30.0
STATE_FILE = "state.json"
# Everything the lab puts in its directory; `down` removes these and the
# directory only if nothing else is in it (it may be one the user named).
_OWN_ENTRIES = (
    STATE_FILE,
    "state.tmp",
    ".lock",
    "containerd",
    "containerd2",
    "crio",
    "kubelet",
    "apiserver.log",
    "kubelet.log",
    "agent.log",
    "audit.jsonl",
    "kubeconfig",
    "kubelet.token",
    # Real mode's own.
    "real",
    "registry.log",
    "etcd.log",
    "controller-manager.log",
    "scheduler.log",
    "gateway.log",
)
STATE_VERSION = 1
# Stopped in this order: nothing must act on pods while they are removed.
COMPONENTS = ("agent", "kubelet", "apiserver", "containerd")
# The container runtime `up` starts unless told (lab.runtimes.RUNTIMES), and
# for CRI-O whether every pod gets an infra (pause) process; the walkthrough
# passes them on through these.
RUNTIME_ENV = "PODLENS_LAB_RUNTIME"
CRIO_INFRA_ENV = "PODLENS_LAB_CRIO_INFRA"


def daemon_component(runtime: str) -> str:
    """The runtime daemon's name among the lab's components."""
    return "crio" if runtime == "crio" else "containerd"


EXIT_REFUSED = 1
EXIT_LAB = 2

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_URL_LINE = re.compile(r"^(http://[0-9.]+:\d+)\s*$", re.MULTILINE)


class LabNotUp(LabError):
    """A command needs the lab and it is not up."""


class AlreadyUp(LabError):
    """``up`` found the lab already running."""

    def __init__(self, status: dict[str, Any]) -> None:
        super().__init__(f"the lab is already up (agent at {status.get('agent_url')})")
        self.status = status


class PortInUse(LabError):
    """The agent's port is taken."""


class RequestRefused(LabError):
    """A request the lab understood and will not carry out (exit code 1)."""


class ComponentFailed(LabError):
    """A lab process did not start or stopped answering."""


# --------------------------------------------------------------------------
# State
# --------------------------------------------------------------------------


@dataclass(slots=True)
class Component:
    """One lab process in the state file: its PID, start time and log."""

    pid: int
    start_ticks: int
    log: str

    @property
    def ref(self) -> ProcessRef:
        """The process itself, so a recycled PID is never taken for it."""
        return ProcessRef(self.pid, self.start_ticks)

    def to_json(self) -> dict[str, Any]:
        """As kept in ``state.json``."""
        return {"pid": self.pid, "start_ticks": self.start_ticks, "log": self.log}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Component:
        """From its ``state.json`` form."""
        return cls(int(d["pid"]), int(d["start_ticks"]), str(d["log"]))


@dataclass(slots=True)
class LabState:
    """What ``state.json`` keeps of a lab that is up: processes, ports, endpoints, network."""

    lab_dir: str
    node_name: str
    port: int
    containerd_token: str
    containerd_dir: str
    cri_endpoint: str
    started_at: str
    time_scale: float | None = None
    api_server_url: str = ""
    bridge: str = ""
    subnet: str = ""
    images: list[str] = field(default_factory=list)
    components: dict[str, Component] = field(default_factory=dict)
    # "lab" (the stand-ins) or "real" (upstream control plane and kubelet).
    mode: str = "lab"
    # Real mode's own state (lab.upstream.realnode.RealState as JSON).
    real: dict[str, Any] = field(default_factory=dict)
    # Which container runtime runs the pods (lab.runtimes.RUNTIMES); its
    # directory and token are containerd_dir and containerd_token.
    runtime: str = "containerd"

    @property
    def kubeconfig(self) -> str:
        """The kubeconfig kubectl uses to reach this lab's API server."""
        if self.mode == "real":
            return RealState.from_json(self.real).kubeconfig
        return str(Path(self.lab_dir) / "kubeconfig")

    @property
    def agent_url(self) -> str:
        """Where the lab's agent serves (in real mode: its pod, through kubectl port-forward)."""
        scheme = "https" if self.mode == "real" else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def to_json(self) -> dict[str, Any]:
        """As kept in ``state.json`` (and shown, with the pods, by ``status``)."""
        return {
            "version": STATE_VERSION,
            "lab_dir": self.lab_dir,
            "node_name": self.node_name,
            "port": self.port,
            "agent_url": self.agent_url,
            "api_server_url": self.api_server_url,
            "cri_endpoint": self.cri_endpoint,
            "containerd_token": self.containerd_token,
            "containerd_dir": self.containerd_dir,
            "bridge": self.bridge,
            "subnet": self.subnet,
            "started_at": self.started_at,
            "time_scale": self.time_scale,
            "images": list(self.images),
            "components": {k: v.to_json() for k, v in self.components.items()},
            "mode": self.mode,
            "real": self.real,
            "runtime": self.runtime,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> LabState:
        """From ``state.json``; LabError for a file another version of the lab wrote."""
        if d.get("version") != STATE_VERSION:
            raise LabError(f"lab state version {d.get('version')!r} is not {STATE_VERSION}")
        scale = d.get("time_scale")
        return cls(
            lab_dir=str(d["lab_dir"]),
            node_name=str(d["node_name"]),
            port=int(d["port"]),
            containerd_token=str(d["containerd_token"]),
            containerd_dir=str(d["containerd_dir"]),
            cri_endpoint=str(d["cri_endpoint"]),
            started_at=str(d["started_at"]),
            time_scale=None if scale is None else float(scale),
            api_server_url=str(d.get("api_server_url") or ""),
            bridge=str(d.get("bridge") or ""),
            subnet=str(d.get("subnet") or ""),
            images=[str(i) for i in d.get("images") or []],
            components={
                str(k): Component.from_json(v) for k, v in (d.get("components") or {}).items()
            },
            mode=str(d.get("mode") or "lab"),
            real=dict(d.get("real") or {}),
            runtime=str(d.get("runtime") or "containerd"),
        )


@dataclass(frozen=True, slots=True)
class PodRow:
    """One pod as kubectl's ``get pods`` row shows it."""

    namespace: str
    name: str
    status: str
    ready: str
    restarts: str
    age: str

    def to_json(self) -> dict[str, str]:
        """The row as ``status`` prints it."""
        return {
            "namespace": self.namespace,
            "name": self.name,
            "status": self.status,
            "ready": self.ready,
            "restarts": self.restarts,
            "age": self.age,
        }


@dataclass(slots=True)
class UpReport:
    """What ``up`` did and how long each part took, in seconds."""

    state: LabState
    timings: dict[str, float] = field(default_factory=dict)
    images: list[tuple[str, bool]] = field(default_factory=list)

    @property
    def total(self) -> float:
        """Seconds ``up`` took in all."""
        return sum(self.timings.values())


# --------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether ``port`` can be bound on ``host`` now, as the agent will bind it."""
    with socket.socket() as probe:
        # As uvicorn binds: a socket of a stopped agent in TIME_WAIT is no obstacle.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def http_json(
    method: str, url: str, body: Mapping[str, Any] | None = None, timeout: float = 10.0
) -> tuple[int, Any]:
    """One JSON request: the status code and the decoded body (text if it is not JSON)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Accept", "application/json")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
            code = int(response.status)
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        code = exc.code
    try:
        return code, json.loads(raw) if raw else None
    except ValueError:
        return code, raw.decode(errors="replace")


def _status_message(payload: Any, code: int) -> str:
    if isinstance(payload, dict) and payload.get("message"):
        return str(payload["message"])
    return f"HTTP {code}"


def _require_root() -> None:
    if os.geteuid() != 0:
        raise NotRoot("the lab node needs root: it starts containerd, runc and a pod network")


def preflight(port: int) -> None:
    """Say what keeps the lab from starting, before anything is started."""
    _require_root()
    for tool, package in (
        ("containerd", "containerd"),
        ("ctr", "containerd"),
        ("containerd-shim-runc-v2", "containerd"),
        ("runc", "runc"),
        ("ip", "iproute2"),
        ("gcc", "gcc libc6-dev"),
    ):
        require_tool(tool, package)
    require_cni_plugins()
    if not BUSYBOX_PATH.is_file():
        raise MissingTool(str(BUSYBOX_PATH), "busybox-static", "the busybox image")
    if not NGINX_BINARY.is_file():
        raise MissingTool(str(NGINX_BINARY), "nginx", "the nginx image")
    if not 0 < port < 65536:
        raise PortInUse(f"port {port} is not a TCP port (1-65535)")
    if not port_free(port):
        raise PortInUse(f"port {port} on 127.0.0.1 is in use; pick another with --port")


# --------------------------------------------------------------------------
# Manifests
# --------------------------------------------------------------------------


def _kubelet_unsupported(pod: Mapping[str, Any], node_name: str) -> list[str]:
    """What the lab kubelet says it cannot honour in ``pod`` (field paths)."""
    from lab.kubelet import unsupported_fields

    try:
        fields = unsupported_fields(dict(pod), node_name=node_name)
    except LabError as exc:
        return [f"the lab kubelet cannot read it: {exc}"]
    return [f"{f} is not supported by the lab kubelet" for f in fields]


def parse_manifests(text: str, source: str = "-") -> list[dict[str, Any]]:
    """The Pods in a YAML stream (documents and v1 Lists); RequestRefused with the reason if not."""
    try:
        documents = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise RequestRefused(f"{source}: not valid YAML{where}: {problem}") from None
    pods: list[dict[str, Any]] = []

    def take(obj: Any, where: str) -> None:
        if obj is None:
            return
        if not isinstance(obj, dict):
            raise RequestRefused(f"{where}: expected an object, got {type(obj).__name__}")
        kind = obj.get("kind")
        if kind in ("List", "PodList"):
            items = obj.get("items")
            if not isinstance(items, list):
                raise RequestRefused(f"{where}: a {kind} needs an items list")
            for i, item in enumerate(items):
                take(item, f"{where} item {i + 1}")
            return
        if kind != "Pod":
            what = f"a {kind}" if kind else "an object without kind"
            raise RequestRefused(f"{where}: {what}; the lab node runs Pods only")
        if obj.get("apiVersion") not in (None, "v1"):
            raise RequestRefused(
                f"{where}: Pod apiVersion must be v1, not {obj.get('apiVersion')!r}"
            )
        pods.append(obj)

    for index, document in enumerate(documents):
        take(document, f"{source} document {index + 1}")
    if not pods:
        raise RequestRefused(f"{source}: no Pod in it")
    return pods


def check_pod(pod: Mapping[str, Any], node_name: str) -> list[str]:
    """Why this Pod cannot be created or run on the lab node (empty when it can)."""
    problems: list[str] = []
    meta = pod.get("metadata")
    if not isinstance(meta, dict):
        return ["metadata is missing"]
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        problems.append("metadata.name is missing (generateName is not supported)")
    elif len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
        problems.append(f"metadata.name {name!r} is not a lowercase DNS-1123 subdomain")
    namespace = meta.get("namespace", "default")
    if not isinstance(namespace, str) or not _DNS_LABEL.match(namespace) or len(namespace) > 63:
        problems.append(f"metadata.namespace {namespace!r} is not a lowercase DNS-1123 label")
    spec = pod.get("spec")
    if not isinstance(spec, dict):
        return [*problems, "spec is missing"]
    containers = spec.get("containers")
    if not isinstance(containers, list) or not containers:
        problems.append("spec.containers must list at least one container")
    seen: set[str] = set()
    for key in ("initContainers", "containers"):
        listed = spec.get(key) or []
        if not isinstance(listed, list):
            problems.append(f"spec.{key} must be a list")
            continue
        for i, c in enumerate(listed):
            where = f"spec.{key}[{i}]"
            if not isinstance(c, dict):
                problems.append(f"{where} must be an object")
                continue
            cname = c.get("name")
            if not isinstance(cname, str) or not _DNS_LABEL.match(cname):
                problems.append(f"{where}.name {cname!r} is not a lowercase DNS-1123 label")
            elif cname in seen:
                problems.append(f"{where}.name {cname!r} is used twice")
            else:
                seen.add(cname)
            if not isinstance(c.get("image"), str) or not c.get("image"):
                problems.append(f"{where}.image is missing")
    bound = spec.get("nodeName")
    if bound not in (None, "", node_name):
        problems.append(f"spec.nodeName is {bound!r}; the lab has one node, {node_name!r}")
    if problems:
        return problems
    try:
        pod_from_dict(pod)
    except InvalidInput as exc:
        problems.append(exc.message)
    return problems


# --------------------------------------------------------------------------
# The lab node
# --------------------------------------------------------------------------


class LabNode:
    """Brings the lab node up and down, and drives it; see the module docstring."""

    def __init__(
        self,
        lab_dir: Path | str = DEFAULT_LAB_DIR,
        *,
        port: int = DEFAULT_PORT,
        time_scale: float | None = None,
        image_cache: Path | None = None,
        node_name: str = NODE_NAME,
        ready_timeout: float = 60.0,
        progress: Callable[[str], None] | None = None,
        real: bool = False,
        runtime: str | None = None,
        crio_infra: bool | None = None,
    ) -> None:
        self.lab_dir = Path(lab_dir).absolute()
        # Upstream control plane and kubelet (lab.upstream) instead of the stand-ins.
        self.real = real
        self.runtime = runtime or os.environ.get(RUNTIME_ENV) or "containerd"
        if self.runtime not in RUNTIMES:
            raise RequestRefused(
                f"unknown runtime {self.runtime!r}; the lab runs {', '.join(RUNTIMES)}"
            )
        # CRI-O only: an infra (pause) process for every pod (drop_infra_ctr = false)
        # rather than upstream's default of one only where a pod needs it.
        self.crio_infra = (
            crio_infra if crio_infra is not None else os.environ.get(CRIO_INFRA_ENV) == "1"
        )
        self.port = port
        self.time_scale = time_scale
        self.image_cache = image_cache
        self.node_name = node_name
        self.ready_timeout = ready_timeout
        self._progress = progress or (lambda _message: None)

    # ------------------------------------------------------------ state file

    @property
    def state_path(self) -> Path:
        """The lab's ``state.json``."""
        return self.lab_dir / STATE_FILE

    def load_state(self) -> LabState | None:
        """The state of a lab that is up; None when there is none."""
        try:
            raw = self.state_path.read_text()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise LabError(f"cannot read {self.state_path}: {exc}") from exc
        try:
            return LabState.from_json(json.loads(raw))
        except (ValueError, KeyError, TypeError) as exc:
            raise LabError(
                f"{self.state_path} is damaged ({exc}); remove the lab directory by hand "
                "once nothing of the lab runs"
            ) from exc

    def _save(self, state: LabState) -> None:
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state.to_json(), indent=2) + "\n")
        os.replace(tmp, self.state_path)

    def progress(self, message: str) -> None:
        """Say how the start goes (the CLI prints it; tests may not)."""
        self._progress(message)

    def save_real(self, state: LabState, real: RealState) -> None:
        """Keep real mode's state in the state file."""
        state.real = real.to_json()
        self._save(state)

    def require_state(self) -> LabState:
        """The state of a lab that is up; LabNotUp saying how to start one otherwise."""
        state = self.load_state()
        if state is None:
            raise LabNotUp(
                f"the lab is not up (no {self.state_path}); start it with: python -m lab up"
            )
        return state

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.lab_dir.mkdir(parents=True, exist_ok=True)
        with open(self.lab_dir / ".lock", "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise LabError(
                    f"another lab command is running on {self.lab_dir}; wait for it"
                ) from None
            yield

    # ------------------------------------------------------------ processes

    def spawn(
        self, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None
    ) -> tuple[subprocess.Popen[bytes], Path]:
        """Start one component detached, logging into ``<lab>/<name>.log``."""
        log_path = self.lab_dir / f"{name}.log"
        # Truncated: the API server's URL is read back from its log.
        with log_path.open("wb") as log:
            log.write(f"---- podlens lab: starting {name} at {time.ctime()}\n".encode())
            log.flush()
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.lab_dir,
                env={**python_child_env(), **(env or {})},
                # Its own session: it outlives this command and a Ctrl-C here.
                start_new_session=True,
            )
        return proc, log_path

    def record(
        self, state: LabState, name: str, proc: subprocess.Popen[bytes], log_path: Path
    ) -> None:
        """Keep a started component's PID and start time in the state file."""
        ref = ProcessRef.of(proc.pid)
        if ref is None:
            raise ComponentFailed(
                f"{name} exited at once (code {proc.poll()}); log {log_path}:\n"
                + log_tail(log_path, 30, indent="    ")
            )
        state.components[name] = Component(ref.pid, ref.start_ticks, str(log_path))
        self._save(state)

    def wait(
        self,
        name: str,
        proc: subprocess.Popen[bytes],
        log_path: Path,
        ready: Callable[[], bool],
    ) -> None:
        """Wait until ``ready()``; ComponentFailed with the log's tail if it exits or times out."""
        deadline = time.monotonic() + self.ready_timeout
        while True:
            code = proc.poll()
            if code is not None:
                raise ComponentFailed(
                    f"{name} exited with code {code} while starting; log {log_path}:\n"
                    + log_tail(log_path, 30, indent="    ")
                )
            if ready():
                return
            if time.monotonic() > deadline:
                raise ComponentFailed(
                    f"{name} was not ready within {self.ready_timeout:.0f}s; log {log_path}:\n"
                    + log_tail(log_path, 30, indent="    ")
                )
            time.sleep(0.02)

    # ------------------------------------------------------------ up

    def up(self) -> UpReport:
        """Build the images and start the runtime, the API server, the kubelet and the agent."""
        _require_root()
        if self.runtime != "containerd":
            problem = runtime_problem(self.runtime)
            if problem:
                raise LabError(f"{self.runtime} cannot run here: {problem}")
        with self._locked():
            existing = self.load_state()
            if existing is not None:
                if any(c.ref.alive() for c in existing.components.values()):
                    raise AlreadyUp(self._status(existing))
                # A lab whose processes are all gone (a crash, a reboot):
                # clear what it left before starting afresh.
                self._progress("a previous lab left state behind; cleaning it up first")
                problems = self._teardown(existing)
                if problems:
                    raise ComponentFailed(
                        "could not clear what a previous lab left: " + "; ".join(problems)
                    )
                self.state_path.unlink(missing_ok=True)
            try:
                preflight(self.port)
            except LabError:
                self._remove_lab_dir()
                raise
            return self._up()

    def _up(self) -> UpReport:
        started_at = rfc3339()
        t0 = time.monotonic()
        cache = self.image_cache or default_cache_dir()
        images = build_images(cache, lab_node_recipes())
        report_images = [(i.ref, i.cached) for i in images]
        t_images = time.monotonic()
        self._progress(
            "images: " + ", ".join(f"{r}{' (cached)' if c else ''}" for r, c in report_images)
        )

        if self.real:
            # Before anything starts: no binaries, nothing to tear down.
            realnode.binaries()
        containerd: PrivateContainerd | PrivateCrio
        # Real mode routes the service range from every pod through the lab's gateway.
        service_cidr = SERVICE_CIDR if self.real else None
        if self.runtime == "containerd":
            containerd = PrivateContainerd(
                self.lab_dir / "containerd", images, service_cidr=service_cidr
            )
        elif self.runtime == "crio":
            containerd = PrivateCrio(
                self.lab_dir / "crio",
                images,
                drop_infra=not self.crio_infra,
                service_cidr=service_cidr,
            )
        else:
            containerd = PrivateContainerd2(
                self.lab_dir / self.runtime, images, service_cidr=service_cidr
            )
        daemon_name = daemon_component(self.runtime)
        state = LabState(
            lab_dir=str(self.lab_dir),
            node_name=self.node_name,
            port=self.port,
            containerd_token=containerd.token.hex(),
            containerd_dir=str(containerd.base_dir),
            cri_endpoint=containerd.endpoint,
            started_at=started_at,
            time_scale=self.time_scale,
            bridge=containerd.bridge_name,
            images=[t for i in images for t in i.tags],
            mode="real" if self.real else "lab",
            runtime=self.runtime,
        )
        # Saved before anything starts, so a `down` after a crash here still
        # knows which bridge and directories are the lab's.
        self._save(state)
        report = UpReport(state, images=report_images)
        report.timings["images"] = t_images - t0
        try:
            if self.real:
                # Host paths the agent's pod mounts with propagation must be on
                # a shared mount; the lab directory is made one.
                realnode.share_mounts(self.lab_dir)
                # The real kubelet pulls (busybox means busybox:latest, pulled
                # Always); the lab's registry answers for docker.io and registry.k8s.io.
                containerd.registry_mirror = realnode.start_registry(self, state, images)
            containerd.start()
            ref = ProcessRef.of(containerd.pid) if containerd.pid is not None else None
            if ref is None:
                raise ContainerdFailed(
                    f"{daemon_name} exited right after starting; see {containerd.log_path}"
                )
            state.components[daemon_name] = Component(
                ref.pid, ref.start_ticks, str(containerd.log_path)
            )
            state.subnet = containerd.subnet_text
            self._save(state)
            t_containerd = time.monotonic()
            report.timings[self.runtime] = t_containerd - t_images
            self._progress(f"{self.runtime}: {containerd.endpoint} (pid {ref.pid})")

            if self.real:
                real = RealState()
                realnode.start_control_plane(self, state, real)
                realnode.start_gateway(self, state, real)
                realnode.start_kubelet(self, state, real)
                # As users run it: the image, the DaemonSet, a port-forward.
                deploy.deploy_agent(self, state, real)
            else:
                self._start_apiserver(state)
                self._start_kubelet(state)
                self._start_agent(state)
            report.timings["control_plane"] = time.monotonic() - t_containerd
        except BaseException:
            problems = self._teardown(state)
            if not problems:
                # Nothing runs any more: the logs stay for reading, the state
                # goes, so the lab does not look half up.
                self.state_path.unlink(missing_ok=True)
            if problems:
                self._progress(
                    "cleanup after the failed start was incomplete: " + "; ".join(problems)
                )
            raise
        return report

    @property
    def _kubelet_token_file(self) -> Path:
        return self.lab_dir / "kubelet.token"

    def _start_apiserver(self, state: LabState) -> None:
        # The API server reaches the kubelet (logs, exec, port-forward) with
        # this token; whoever could read it could exec into any pod.
        token_file = self._kubelet_token_file
        fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
        argv = [sys.executable, "-m", "lab.apiserver", "--host", "127.0.0.1", "--port", "0"]
        argv += ["--kubelet-token-file", str(token_file), "--graceful-delete"]
        proc, log_path = self.spawn("apiserver", argv)
        self.record(state, "apiserver", proc, log_path)
        url: list[str] = []

        def announced() -> bool:
            with contextlib.suppress(OSError):
                found = _URL_LINE.search(log_path.read_text(errors="replace"))
                if found:
                    url.append(found.group(1))
                    return True
            return False

        self.wait("the lab API server", proc, log_path, announced)
        state.api_server_url = url[0]
        write_kubeconfig(Path(state.kubeconfig), state.api_server_url)
        self._save(state)
        self._progress(f"API server: {state.api_server_url} (pid {proc.pid})")

    def _start_kubelet(self, state: LabState) -> None:
        argv = [
            sys.executable,
            "-m",
            "lab.kubelet",
            "--api-server",
            state.api_server_url,
            "--cri-endpoint",
            state.cri_endpoint,
            "--node-name",
            state.node_name,
            "--root",
            str(self.lab_dir / "kubelet"),
            "--server-token-file",
            str(self._kubelet_token_file),
        ]
        if state.time_scale is not None:
            argv += ["--time-scale", repr(state.time_scale)]
        proc, log_path = self.spawn("kubelet", argv)
        self.record(state, "kubelet", proc, log_path)

        def started() -> bool:
            # Logged once its pod watch, relist and scheduler loops run.
            with contextlib.suppress(OSError):
                return "lab kubelet for node" in log_path.read_text(errors="replace")
            return False

        self.wait("the lab kubelet", proc, log_path, started)
        self._progress(f"kubelet: node {state.node_name} (pid {proc.pid})")

    def _start_agent(self, state: LabState) -> None:
        api = ["--api-server", state.api_server_url]
        log_root = self.lab_dir / "kubelet" / "log" / "pods"
        if state.mode == "real":
            api = ["--kubeconfig", RealState.from_json(state.real).kubeconfig]
            log_root = Path("/var/log/pods")
        argv = [
            sys.executable,
            "-m",
            "agent",
            "serve",
            "--cri-endpoint",
            state.cri_endpoint,
            *api,
            "--node-name",
            state.node_name,
            "--host",
            "127.0.0.1",
            "--port",
            str(state.port),
            # The lab is one machine's sandbox, reached on its loopback only:
            # plain HTTP and no token checks, said here rather than left to
            # defaults that are right for a shared cluster and wrong for it.
            "--tls",
            "off",
            "--auth-mode",
            "none",
            # The lab is where the self-healing demo runs: kills are on for
            # the namespace the exercises use, and every one is audited.
            "--enable-kill",
            "--kill-namespaces",
            LAB_KILL_NAMESPACES,
            "--audit-log",
            str(self.lab_dir / "audit.jsonl"),
        ]
        # The agent reads logs only under its log roots: the lab kubelet's.
        logs = {"PODLENS_LOG_ROOTS": str(log_root)}
        proc, log_path = self.spawn("agent", argv, logs)
        self.record(state, "agent", proc, log_path)

        def ready() -> bool:
            with contextlib.suppress(OSError, ValueError):
                code, _ = http_json("GET", state.agent_url + "/readyz", timeout=2.0)
                return code == 200
            return False

        self.wait("the agent", proc, log_path, ready)
        self._progress(f"agent: {state.agent_url} (pid {proc.pid})")

    def restart(self, component: str) -> float:
        """Restart one component of the real node as it ran; seconds until it is ready again.

        ``realnode.RESTARTABLE`` names which; the port-forward to the agent is opened again.
        """
        # Asked before the lock, whose file would make the directory of a lab never up.
        self.require_state()
        with self._locked():
            state = self.require_state()
            if state.mode != "real":
                raise RequestRefused("restarting a component is for the real node (lab up --real)")
            return realnode.restart_component(self, state, component)

    # ------------------------------------------------------------ down

    def down(self) -> bool:
        """Stop everything and remove the lab directory; False if the lab was not up."""
        _require_root()
        if not self.lab_dir.exists():
            return False
        with self._locked():
            state = self.load_state()
            if state is None:
                self._remove_lab_dir()
                return False
            problems = self._teardown(state)
            if problems:
                raise ComponentFailed(
                    "the lab was not fully removed (state kept in "
                    f"{self.state_path} for another `down`): " + "; ".join(problems)
                )
            self._remove_lab_dir()
        return True

    def _remove_lab_dir(self) -> None:
        if not self.lab_dir.exists():
            return
        left = mounts_under(self.lab_dir)
        if left:
            raise ComponentFailed(f"still mounted under {self.lab_dir}: {left}")
        for name in _OWN_ENTRIES:
            path = self.lab_dir / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self.lab_dir.rmdir()

    def _teardown(self, state: LabState) -> list[str]:
        problems: list[str] = []
        # The kubelet gets a short grace: it would wait out pods in the middle
        # of their own termination grace periods, and every pod is removed
        # through CRI right after anyway.
        real = RealState.from_json(state.real) if state.mode == "real" else None
        stops: tuple[tuple[str, float], ...] = (
            ("agent", 10.0),
            ("kubelet", 3.0),
            ("apiserver", 10.0),
        )
        if real is not None:
            # Nodes joined to this API server (lab.upstream.nodes) first, while it answers.
            problems += nodes.remove_nodes(self.lab_dir, real)
            agent = state.components.get("agent")
            if agent is not None and not stop_process(agent.ref, 10.0):
                problems.append(f"agent (pid {agent.pid}) did not exit")
            # While the kubelet runs: it removes the pods' containers and logs.
            apiserver = state.components.get("apiserver")
            if apiserver is not None and apiserver.ref.alive():
                problems += realnode.delete_all_pods(real)
                self.save_real(state, real)
            stops = tuple((name, 10.0) for name in REAL_COMPONENTS if name != "containerd")
        for name, grace in stops:
            if name == "registry":
                continue
            component = state.components.get(name)
            if component is not None and not stop_process(component.ref, grace):
                problems.append(f"{name} (pid {component.pid}) did not exit")
        containerd = _runtime_of(state)
        daemon = state.components.get(daemon_component(state.runtime))
        if daemon is not None and daemon.ref.alive():
            try:
                containerd.adopt(daemon.ref)
            except ContainerdFailed as exc:
                problems.append(str(exc))
        try:
            containerd.stop()
        except ContainerdFailed as exc:
            problems.append(str(exc))
        unmount_under(self.lab_dir)
        registry = state.components.get("registry")
        if registry is not None and not stop_process(registry.ref, 5.0):
            problems.append(f"registry (pid {registry.pid}) did not exit")
        if real is not None and state.subnet:
            problems += realnode.gateway_of(state).remove()
        if real is not None:
            problems += realnode.clean_host(real)
            unmount_under(self.lab_dir)
        leftovers = containerd.leftovers()
        problems += [f"{kind} left: {items}" for kind, items in leftovers.items() if items]
        alive = [n for n, c in state.components.items() if c.ref.alive()]
        if alive:
            problems.append(f"still running: {', '.join(alive)}")
        mounted = mounts_under(self.lab_dir)
        if mounted:
            problems.append(f"still mounted: {mounted}")
        return problems

    def leftovers(self, state: LabState) -> dict[str, list[str]]:
        """What of a lab described by ``state`` is still on the machine."""
        found = _runtime_of(state).leftovers()
        found["components"] = [
            f"{n} (pid {c.pid})" for n, c in state.components.items() if c.ref.alive()
        ]
        found["lab_dir"] = [str(self.lab_dir)] if self.lab_dir.exists() else []
        found["mounts"] = sorted(set(found["mounts"]) | set(mounts_under(Path(state.lab_dir))))
        return found

    # ------------------------------------------------------------ status

    def status(self) -> dict[str, Any]:
        """The ``status`` JSON: endpoints, components and whether they run, the pods."""
        return self._status(self.require_state())

    def _status(self, state: LabState) -> dict[str, Any]:
        components = {
            name: {
                "pid": c.pid,
                "running": c.ref.alive(),
                "log": c.log,
            }
            for name, c in state.components.items()
        }
        out: dict[str, Any] = {
            "node_name": state.node_name,
            "agent_url": state.agent_url,
            "api_server_url": state.api_server_url,
            "cri_endpoint": state.cri_endpoint,
            "lab_dir": state.lab_dir,
            "started_at": state.started_at,
            "bridge": state.bridge,
            "pod_subnet": state.subnet,
            "time_scale": state.time_scale,
            "healthy": bool(components)
            and all(c["running"] for c in components.values())
            and set(components) == _expected(state),
            "components": components,
            "mode": state.mode,
            "runtime": state.runtime,
            "kubeconfig": state.kubeconfig,
        }
        if state.mode == "real":
            real = RealState.from_json(state.real)
            out["versions"] = real.versions
            out["agent_token_file"] = real.agent_token_file
        try:
            out["pods"] = [row.to_json() for row in self._pods(state)]
        except LabError as exc:
            out["pods"] = []
            out["pods_error"] = str(exc)
        return out

    def pods(self) -> list[PodRow]:
        """The lab's pods with kubectl's STATUS, READY, RESTARTS and AGE."""
        return self._pods(self.require_state())

    def _api(self, state: LabState) -> str:
        component = state.components.get("apiserver")
        if not state.api_server_url or component is None or not component.ref.alive():
            raise ComponentFailed(
                "the lab API server is not running; see "
                f"{self.lab_dir / 'apiserver.log'} and restart the lab (down, then up)"
            )
        return state.api_server_url

    def _request(
        self, state: LabState, method: str, path: str, body: Mapping[str, Any] | None = None
    ) -> tuple[int, Any]:
        url = self._api(state) + path
        try:
            if state.mode == "real":
                return realnode.admin_client(RealState.from_json(state.real)).request(
                    method, path, body
                )
            return http_json(method, url, body)
        except (OSError, urllib.error.URLError) as exc:
            raise ComponentFailed(f"the lab API server at {url} did not answer: {exc}") from exc

    def _pods(self, state: LabState) -> list[PodRow]:
        code, payload = self._request(state, "GET", "/api/v1/pods")
        if code != 200 or not isinstance(payload, dict):
            raise ComponentFailed(f"listing pods failed: {_status_message(payload, code)}")
        now = datetime.now(UTC)
        rows = []
        for item in payload.get("items") or []:
            try:
                pod = pod_from_dict(item)
            except InvalidInput as exc:
                name = (item.get("metadata") or {}).get("name", "?")
                rows.append(PodRow("?", str(name), f"<unreadable: {exc.message}>", "", "", ""))
                continue
            s = status_strings(pod, now)
            rows.append(PodRow(pod.namespace, pod.name, s.status, s.ready, s.restarts, s.age))
        return sorted(rows, key=lambda r: (r.namespace, r.name))

    def pod(self, name: str, namespace: str = "default") -> dict[str, Any] | None:
        """The Pod object as the API server holds it, or None."""
        state = self.require_state()
        code, payload = self._request(
            state, "GET", f"/api/v1/namespaces/{_q(namespace)}/pods/{_q(name)}"
        )
        if code == 404:
            return None
        if code != 200 or not isinstance(payload, dict):
            raise ComponentFailed(
                f"reading pod {namespace}/{name}: {_status_message(payload, code)}"
            )
        return payload

    def events(self, name: str, namespace: str = "default") -> list[dict[str, Any]]:
        """The events about pod ``name``, as the API server holds them."""
        state = self.require_state()
        selector = urllib.parse.quote(f"involvedObject.name={name}", safe="")
        code, payload = self._request(
            state, "GET", f"/api/v1/namespaces/{_q(namespace)}/events?fieldSelector={selector}"
        )
        if code != 200 or not isinstance(payload, dict):
            raise ComponentFailed(f"listing events: {_status_message(payload, code)}")
        return [e for e in payload.get("items") or [] if isinstance(e, dict)]

    def wait_for_status(
        self,
        name: str,
        status: str,
        ready: str | None = None,
        *,
        namespace: str = "default",
        timeout: float = 30.0,
        interval: float = 0.05,
    ) -> PodRow:
        """Poll until ``kubectl get pod`` would print ``status`` (and ``ready``)."""
        deadline = time.monotonic() + timeout
        last: PodRow | None = None
        while True:
            state = self.require_state()
            for row in self._pods(state):
                if row.namespace == namespace and row.name == name:
                    last = row
                    if row.status == status and (ready is None or row.ready == ready):
                        return row
            if time.monotonic() > deadline:
                seen = f"{last.status} {last.ready}" if last else "no such pod"
                raise LabError(
                    f"pod {namespace}/{name} did not reach {status} {ready or ''} "
                    f"within {timeout:.0f}s (last seen: {seen})"
                )
            time.sleep(interval)

    # ------------------------------------------------------------ apply/delete

    def apply(self, text: str, *, source: str = "-", namespace: str | None = None) -> list[str]:
        """Create every Pod in ``text``; refuses them all if any cannot run here."""
        state = self.require_state()
        self._api(state)
        pods = parse_manifests(text, source)
        refusals: list[str] = []
        prepared: list[tuple[str, str, dict[str, Any]]] = []
        for pod in pods:
            raw_meta = pod.get("metadata")
            meta: dict[str, Any] = raw_meta if isinstance(raw_meta, dict) else {}
            label = f"pod/{meta.get('name') or '?'}"
            if namespace is not None:
                given = meta.get("namespace")
                if given not in (None, namespace):
                    refusals.append(
                        f"{label}: its namespace {given!r} does not match -n {namespace!r}"
                    )
                    continue
            problems = check_pod(pod, state.node_name)
            if not problems and state.mode != "real":
                problems = _kubelet_unsupported(pod, state.node_name)
            if problems:
                refusals.append(f"{label}: " + "; ".join(problems))
                continue
            body = copy.deepcopy(pod)
            body.setdefault("apiVersion", "v1")
            ns = namespace or body["metadata"].get("namespace") or "default"
            body["metadata"]["namespace"] = ns
            # Left unbound, as kubectl apply leaves it: the scheduler (the lab
            # kubelet's stand-in for it) binds it and records Scheduled.
            body.pop("status", None)
            prepared.append((ns, body["metadata"]["name"], body))
        if refusals:
            raise RequestRefused(
                "nothing was created; the lab node cannot run:\n  " + "\n  ".join(refusals)
            )
        results = []
        for ns, name, body in prepared:
            code, payload = self._request(state, "POST", f"/api/v1/namespaces/{_q(ns)}/pods", body)
            if code in (200, 201):
                results.append(f"pod/{name} created")
                continue
            if code == 409:
                existing = self.pod(name, ns)
                spec = dict((existing or {}).get("spec") or {})
                if "nodeName" not in body["spec"]:
                    # The binding is the scheduler's, not a change of spec.
                    spec.pop("nodeName", None)
                if existing is not None and spec == body["spec"]:
                    results.append(f"pod/{name} unchanged")
                    continue
                raise RequestRefused(
                    f'pod "{name}" already exists in namespace {ns} with another spec; '
                    "a pod's spec cannot be changed: delete it first"
                    + (f" (done so far: {', '.join(results)})" if results else "")
                )
            raise ComponentFailed(
                f"creating pod {ns}/{name} failed: {_status_message(payload, code)}"
            )
        return results

    def delete(
        self, name: str, namespace: str = "default", *, grace_period: int | None = None
    ) -> str:
        """Delete pod ``name``; the message to print, or RequestRefused if there is no such pod."""
        state = self.require_state()
        options = None if grace_period is None else {"gracePeriodSeconds": grace_period}
        code, payload = self._request(
            state, "DELETE", f"/api/v1/namespaces/{_q(namespace)}/pods/{_q(name)}", options
        )
        if code == 404:
            raise RequestRefused(f'pods "{name}" not found in namespace {namespace}')
        if code not in (200, 202):
            raise ComponentFailed(
                f"deleting pod {namespace}/{name} failed: {_status_message(payload, code)}"
            )
        # As kubectl delete does: wait until the kubelet has stopped the pod
        # and the API server has let it go (its grace period, scaled, and a margin).
        meta = payload.get("metadata") if isinstance(payload, dict) else None
        grace = (meta or {}).get("deletionGracePeriodSeconds") or 0
        deadline = time.monotonic() + grace * (state.time_scale or 1.0) + DELETE_MARGIN
        path = f"/api/v1/namespaces/{_q(namespace)}/pods/{_q(name)}"
        while self._request(state, "GET", path)[0] != 404:
            if time.monotonic() > deadline:
                raise ComponentFailed(
                    f"pod {namespace}/{name} is still Terminating {DELETE_MARGIN:.0f}s after its "
                    f"grace period; see {self.lab_dir / 'kubelet.log'}"
                )
            time.sleep(0.1)
        return f'pod "{name}" deleted'


def write_kubeconfig(path: Path, server: str) -> Path:
    """A kubeconfig for kubectl to reach the stand-in API server (plain HTTP on the loopback)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "podlens-lab", "cluster": {"server": server}}],
        "users": [{"name": "podlens-lab", "user": {}}],
        "contexts": [
            {
                "name": "podlens-lab",
                "context": {
                    "cluster": "podlens-lab",
                    "user": "podlens-lab",
                    "namespace": "default",
                },
            }
        ],
        "current-context": "podlens-lab",
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _runtime_of(state: LabState) -> PrivateRuntime:
    """The lab's runtime instance as ``state`` names it, to adopt, stop or inspect."""
    return private_runtime(
        state.runtime, Path(state.containerd_dir), token=bytes.fromhex(state.containerd_token)
    )


def _expected(state: LabState) -> set[str]:
    """The components of a healthy lab (stand-in or real) on ``state``'s runtime."""
    parts = REAL_COMPONENTS if state.mode == "real" else COMPONENTS
    return {*(p for p in parts if p != "containerd"), daemon_component(state.runtime)}


def _q(part: str) -> str:
    return urllib.parse.quote(part, safe="")


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------


def _default_dir() -> Path:
    return Path(os.environ.get(LAB_DIR_ENV) or DEFAULT_LAB_DIR)


def build_parser(prog: str = "python -m lab") -> argparse.ArgumentParser:
    """The ``python -m lab`` command line: up, apply, delete, status, down, restart, walkthrough."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--dir",
        type=Path,
        help=f"the lab directory (default ${LAB_DIR_ENV} or {DEFAULT_LAB_DIR})",
    )
    parser = argparse.ArgumentParser(
        prog=prog,
        description="The lab node: a private containerd, an API server, a kubelet and the "
        "agent on this machine (needs root).",
        epilog="The guided tour: `python -m lab walkthrough [--port P] [--keep]` brings "
        "the lab up, applies the exercise pods, shows what the agent sees, and takes it down "
        "(--keep leaves it up).",
    )
    sub = parser.add_subparsers(dest="lab_command", required=True)
    up = sub.add_parser("up", parents=[common], help="start the lab node")
    up.add_argument("--port", type=int, default=DEFAULT_PORT, help="agent port (default 8470)")
    up.add_argument(
        "--time-scale",
        type=float,
        help="multiply the kubelet's durations (back-off, probes, grace periods) by this, "
        "e.g. 0.05 in tests; default 1",
    )
    up.add_argument("--image-cache", type=Path, help="where built images are cached")
    up.add_argument(
        "--real",
        action="store_true",
        help="upstream etcd, kube-apiserver, kube-controller-manager, kube-scheduler and "
        "kubelet (built once by scripts/upstream/build.sh) instead of the stand-ins",
    )
    _runtime_options(up)
    apply = sub.add_parser("apply", parents=[common], help="create the Pods in a YAML file")
    apply.add_argument("-f", "--filename", required=True, help="a YAML file, or - for stdin")
    apply.add_argument("-n", "--namespace", help="namespace (default: the manifest's, or default)")
    delete = sub.add_parser("delete", parents=[common], help="delete a pod")
    delete.add_argument("name")
    delete.add_argument("-n", "--namespace", default="default")
    sub.add_parser("status", parents=[common], help="the lab's endpoints, components and pods")
    sub.add_parser("down", parents=[common], help="stop everything and remove the lab")
    restart = sub.add_parser(
        "restart",
        parents=[common],
        help="restart one component of the real node as it ran (lab up --real)",
    )
    restart.add_argument("component", choices=realnode.RESTARTABLE)
    walk = sub.add_parser(
        "walkthrough",
        help="bring the lab up, apply the exercises, show what the agent sees, take it down",
    )
    walk.add_argument("--port", type=int, default=DEFAULT_PORT, help="agent port (default 8470)")
    walk.add_argument(
        "--keep", action="store_true", help="leave the lab up at the end (stop it with `lab down`)"
    )
    walk.add_argument(
        "--real",
        action="store_true",
        help="on the upstream control plane and kubelet, the agent deployed by its DaemonSet",
    )
    walk.add_argument(
        "--runtime",
        choices=RUNTIMES,
        default="containerd",
        help="the container runtime (default containerd); on crio every pod gets an infra "
        "process, since the walkthrough shows pause processes",
    )
    return parser


def _runtime_options(up: argparse.ArgumentParser) -> None:
    up.add_argument(
        "--runtime",
        choices=RUNTIMES,
        default=None,
        help="the container runtime: containerd (Debian's 1.6, the default), containerd2 or "
        "crio (both built once by scripts/upstream/build.sh)",
    )
    up.add_argument(
        "--crio-infra",
        action="store_true",
        help="CRI-O only: an infra (pause) process for every pod (drop_infra_ctr = false); "
        "upstream's default gives one only to pods that share their PID namespace",
    )


def _read_manifest(filename: str, stdin: TextIO) -> tuple[str, str]:
    if filename == "-":
        return stdin.read(), "<stdin>"
    path = Path(filename)
    try:
        return path.read_text(), filename
    except FileNotFoundError:
        raise RequestRefused(f"{filename}: no such file") from None
    except IsADirectoryError:
        raise RequestRefused(f"{filename}: is a directory; give one YAML file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RequestRefused(f"{filename}: cannot read it: {exc}") from None


def main(argv: Sequence[str] | None = None, *, prog: str = "python -m lab") -> int:
    """Run one ``lab`` command; the exit code says done (0), refused (1) or cannot (2)."""
    args = build_parser(prog).parse_args(argv)
    if args.lab_command == "walkthrough":
        if args.runtime != "containerd":
            # The walkthrough makes its own LabNode; it takes the runtime from here.
            os.environ[RUNTIME_ENV] = args.runtime
            os.environ[CRIO_INFRA_ENV] = "1"
        return _walkthrough(args.port, keep=args.keep, real=args.real, prog=prog)
    lab_dir = args.dir or _default_dir()

    def say(message: str) -> None:
        print(message, flush=True)

    try:
        if args.lab_command == "up":
            if args.time_scale is not None and not args.time_scale > 0:
                raise RequestRefused("--time-scale must be greater than 0")
            node = LabNode(
                lab_dir,
                port=args.port,
                time_scale=args.time_scale,
                image_cache=args.image_cache,
                progress=say,
                real=args.real,
                runtime=args.runtime,
                crio_infra=True if args.crio_infra else None,
            )
            try:
                report = node.up()
            except AlreadyUp as exc:
                print(f"{prog}: {exc}", file=sys.stderr)
                print(json.dumps(exc.status, indent=2))
                return 0
            parts = ", ".join(f"{k} {v:.1f}s" for k, v in report.timings.items())
            say(f"lab up in {report.total:.1f}s ({parts})")
            say(f"agent: {report.state.agent_url}   e.g. curl -s {report.state.agent_url}/v1/pods")
            say(f"kubectl: export KUBECONFIG={report.state.kubeconfig}")
            return 0
        node = LabNode(lab_dir)
        if args.lab_command == "apply":
            text, source = _read_manifest(args.filename, sys.stdin)
            for line in node.apply(text, source=source, namespace=args.namespace):
                say(line)
            return 0
        if args.lab_command == "delete":
            say(node.delete(args.name, args.namespace))
            return 0
        if args.lab_command == "status":
            print(json.dumps(node.status(), indent=2))
            return 0
        if args.lab_command == "restart":
            seconds = node.restart(args.component)
            say(f"{args.component} restarted: ready again in {seconds:.1f}s")
            return 0
        if args.lab_command == "down":
            if node.down():
                say(f"lab down: processes stopped, pods removed, {lab_dir} removed")
            else:
                print(f"{prog}: the lab is not up; nothing to stop", file=sys.stderr)
            return 0
    except RequestRefused as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except LabError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return EXIT_LAB
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        if exc.errno == errno.EACCES:
            print(f"{prog}: permission denied: {exc.filename or exc}", file=sys.stderr)
        else:
            print(f"{prog}: {exc}", file=sys.stderr)
        return EXIT_LAB
    raise AssertionError(f"unhandled command {args.lab_command!r}")


def _walkthrough(port: int, *, keep: bool, real: bool, prog: str) -> int:
    # Imported here: the walkthrough is a client of this module.
    from lab import walkthrough

    try:
        walkthrough.preflight(port)
        return walkthrough.run(port=port, keep=keep, real=real)
    except LabError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return EXIT_LAB
