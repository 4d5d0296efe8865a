"""``lab up --real``: the lab node with the upstream control plane and kubelet.

``lab.node.LabNode`` drives both modes; in real mode it calls these to start
the parts that differ: the image registry the real kubelet pulls from, etcd,
kube-apiserver, kube-controller-manager, kube-scheduler and the kubelet, and
to stop and clean what only they leave (cgroups, kernel tunables, pod log
directories, ``/var/log/containers`` links). The binaries come from
``scripts/upstream/build.sh`` (built once per machine, cached by version);
when they cannot be had, ``NotBuilt`` says how to build them and how to use
the stand-in lab instead.

Also restarts one component as it ran (``restart_component``), for what a
node's operator does to a live node. Imports ``lab.upstream``'s modules,
``lab.errors``, ``lab.processes``, grpc with the CRI stubs (to see a
restarted runtime answer) and the standard library; ``lab.node`` only for
its types, at type-checking time.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc

from cri_proto import api_pb2, api_pb2_grpc
from lab.errors import LabError
from lab.processes import stop_process
from lab.upstream import cluster, deploy
from lab.upstream.gateway import Gateway
from lab.upstream.pki import KUBERNETES_SERVICE_IP, Pki, make_pki

if TYPE_CHECKING:
    from lab.images import ImageTar
    from lab.node import LabNode, LabState

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "scripts" / "upstream" / "build.sh"
# Real mode's components, stopped in this order (the reverse of starting).
REAL_COMPONENTS = (
    "agent",
    "kubelet",
    "gateway",
    "scheduler",
    "controller-manager",
    "apiserver",
    "etcd",
    "containerd",
    "registry",
)
CGROUP_HIERARCHIES = Path("/sys/fs/cgroup")
CONTAINER_LOG_LINKS = Path("/var/log/containers")


@dataclass(slots=True)
class RealState:
    """What real mode keeps in the lab's state file, beside the common fields."""

    layout: dict[str, Any] = field(default_factory=dict)
    registry_url: str = ""
    kubeconfig: str = ""
    versions: dict[str, str] = field(default_factory=dict)
    sysctls: dict[str, str] = field(default_factory=dict)
    agent_token_file: str = ""
    # The pods seen at teardown, whose log directories are the lab's.
    pod_uids: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """As kept in ``state.json``."""
        return {
            "layout": self.layout,
            "registry_url": self.registry_url,
            "kubeconfig": self.kubeconfig,
            "versions": dict(self.versions),
            "sysctls": dict(self.sysctls),
            "agent_token_file": self.agent_token_file,
            "pod_uids": list(self.pod_uids),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> RealState:
        """From ``state.json``."""
        return cls(
            layout=dict(d.get("layout") or {}),
            registry_url=str(d.get("registry_url") or ""),
            kubeconfig=str(d.get("kubeconfig") or ""),
            versions={str(k): str(v) for k, v in (d.get("versions") or {}).items()},
            sysctls={str(k): str(v) for k, v in (d.get("sysctls") or {}).items()},
            agent_token_file=str(d.get("agent_token_file") or ""),
            pod_uids=[str(u) for u in d.get("pod_uids") or []],
        )


# --------------------------------------------------------------------------
# Binaries
# --------------------------------------------------------------------------


def _build_dir(component: str) -> Path:
    if not BUILD_SCRIPT.is_file():
        raise cluster.NotBuilt(f"{BUILD_SCRIPT} is missing")
    answer = subprocess.run(
        ["bash", str(BUILD_SCRIPT), "--print-dir", component],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if answer.returncode != 0:
        raise cluster.NotBuilt(
            f"{component} is not built on this machine: run `scripts/upstream/build.sh "
            f"kubernetes etcd` first (it needs Go and the Go module proxy; about 20 minutes "
            "on 2 cores, once per machine), or use the stand-in lab: `python -m lab up` "
            f"without --real. ({answer.stderr.strip() or answer.stdout.strip()})"
        )
    return Path(answer.stdout.strip())


def binaries() -> cluster.Binaries:
    """The built upstream binaries, or NotBuilt saying what to do."""
    return cluster.Binaries.in_dirs(_build_dir("kubernetes"), _build_dir("etcd"))


def versions(bins: cluster.Binaries) -> dict[str, str]:
    """Each component's own answer to ``--version``."""
    found: dict[str, str] = {}
    for path in bins.all():
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            answer = subprocess.run(
                [str(path), "--version"], capture_output=True, text=True, timeout=20, check=False
            )
            text = (answer.stdout or answer.stderr).strip().splitlines()
            found[path.name] = text[0] if text else ""
    return found


# --------------------------------------------------------------------------
# Starting
# --------------------------------------------------------------------------


def start_registry(node: LabNode, state: LabState, images: list[ImageTar]) -> str:
    """Start the lab's image registry; returns its URL for containerd's mirror config."""
    argv = [sys.executable, "-m", "lab.upstream.registry"]
    for image in images:
        argv += ["--image", str(image.path)]
    proc, log_path = node.spawn("registry", argv)
    node.record(state, "registry", proc, log_path)
    url: list[str] = []

    def announced() -> bool:
        with contextlib.suppress(OSError):
            for line in log_path.read_text(errors="replace").splitlines():
                if line.startswith("http://"):
                    url.append(line.strip())
                    return True
        return False

    node.wait("the lab's image registry", proc, log_path, announced)
    return url[0]


def start_control_plane(node: LabNode, state: LabState, real: RealState) -> None:
    """etcd, kube-apiserver, kube-controller-manager and kube-scheduler, each once ready."""
    bins = binaries()
    real.versions = versions(bins)
    layout = cluster.Layout.fresh(
        node.lab_dir / "real",
        state.node_name,
        state.cri_endpoint,
        Path("/var/log/pods"),
        state.containerd_token,
    )
    pki = make_pki(layout.pki_dir, layout.node_name)
    cluster.write_configs(layout, pki)
    real.layout = layout.to_json()
    real.kubeconfig = str(layout.admin_kubeconfig)
    state.api_server_url = layout.api_server_url
    node.save_real(state, real)

    proc, log_path = node.spawn("etcd", cluster.etcd_argv(bins, layout))
    node.record(state, "etcd", proc, log_path)
    node.wait("etcd", proc, log_path, lambda: _port_open(layout.etcd_port))
    node.progress(f"etcd: 127.0.0.1:{layout.etcd_port} (pid {proc.pid})")

    admin = cluster.AdminClient(layout, pki)
    proc, log_path = node.spawn("apiserver", cluster.apiserver_argv(bins, layout, pki))
    node.record(state, "apiserver", proc, log_path)
    node.wait("kube-apiserver", proc, log_path, admin.ready)
    node.progress(f"kube-apiserver: {layout.api_server_url} (pid {proc.pid})")

    for name, argv, port in (
        (
            "controller-manager",
            cluster.controller_manager_argv(bins, layout, pki),
            layout.controller_manager_port,
        ),
        ("scheduler", cluster.scheduler_argv(bins, layout), layout.scheduler_port),
    ):
        proc, log_path = node.spawn(name, argv)
        node.record(state, name, proc, log_path)
        node.wait(f"kube-{name}", proc, log_path, functools.partial(_port_open, port))
        node.progress(f"kube-{name}: (pid {proc.pid})")


def share_mounts(directory: Path) -> None:
    """Make ``directory`` a shared mount of its own, as kubelet's host paths want it.

    Volumes that ask for mount propagation (the agent's view of the runtime's
    directory) need their host path on a shared or slave mount; a node booted
    by systemd has / shared, this machine's / is private.
    """
    directory.mkdir(parents=True, exist_ok=True)
    for argv in (
        ["mount", "--bind", str(directory), str(directory)],
        ["mount", "--make-rshared", str(directory)],
    ):
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
        if done.returncode != 0:
            raise LabError(f"`{' '.join(argv)}` failed: {done.stderr.strip()}")


def gateway_of(state: LabState) -> Gateway:
    """The gateway namespace of the lab described by ``state``."""
    return Gateway(
        token=state.containerd_token,
        bridge=state.bridge,
        subnet=ipaddress.IPv4Network(state.subnet),
        service_ip=KUBERNETES_SERVICE_IP,
    )


def gateway_argv(netns_path: Path, apiserver_port: int) -> list[str]:
    """The proxy that serves the ``kubernetes`` Service's address in a gateway namespace."""
    return [
        sys.executable,
        "-m",
        "lab.upstream.gateway",
        "--netns",
        str(netns_path),
        "--listen",
        f"{KUBERNETES_SERVICE_IP}:443",
        "--to",
        str(apiserver_port),
    ]


def start_gateway(node: LabNode, state: LabState, real: RealState) -> None:
    """The pods' way to the API server: the gateway namespace and its proxy."""
    gateway = gateway_of(state)
    gateway.create()
    layout = cluster.Layout.from_json(real.layout)
    argv = gateway_argv(gateway.netns_path, layout.apiserver_port)
    proc, log_path = node.spawn("gateway", argv)
    node.record(state, "gateway", proc, log_path)

    def listening() -> bool:
        with contextlib.suppress(OSError):
            return "gateway: " in log_path.read_text(errors="replace")
        return False

    node.wait("the gateway to the API server", proc, log_path, listening)
    node.progress(f"gateway: pods reach the API server at {KUBERNETES_SERVICE_IP}:443")


def start_kubelet(node: LabNode, state: LabState, real: RealState) -> None:
    """The kubelet, until node ``lab-node`` is registered, addressed and Ready."""
    bins = binaries()
    layout = cluster.Layout.from_json(real.layout)
    pki = Pki.at(layout.pki_dir)
    for hierarchy in _hierarchies():
        (hierarchy / layout.cgroup_root.lstrip("/")).mkdir(exist_ok=True)
    real.sysctls = _read_sysctls()
    node.save_real(state, real)
    proc, log_path = node.spawn("kubelet", cluster.kubelet_argv(bins, layout))
    node.record(state, "kubelet", proc, log_path)
    admin = cluster.AdminClient(layout, pki)
    node.wait(
        f"the kubelet registering node {layout.node_name}",
        proc,
        log_path,
        lambda: cluster.initialize_node(admin, layout.node_name),
    )
    node.wait(
        f"node {layout.node_name} Ready",
        proc,
        log_path,
        lambda: cluster.node_ready(admin, layout.node_name),
    )
    node.progress(f"kubelet: node {layout.node_name} Ready (pid {proc.pid})")


def admin_client(real: RealState) -> cluster.AdminClient:
    """The lab's admin client of the real API server."""
    layout = cluster.Layout.from_json(real.layout)
    return cluster.AdminClient(layout, Pki.at(layout.pki_dir))


def pods_can_be_made(state: LabState) -> bool:
    """Whether the controller manager made default's ServiceAccount and root CA ConfigMap.

    Until then the API server refuses pods in ``default`` (no ServiceAccount)
    and a pod's token volume waits (no ``kube-root-ca.crt``).
    """
    client = admin_client(RealState.from_json(state.real))
    return all(
        client.request("GET", f"/api/v1/namespaces/default/{kind}/{name}")[0] == 200
        for kind, name in (("serviceaccounts", "default"), ("configmaps", "kube-root-ca.crt"))
    )


def _port_open(port: int) -> bool:
    import socket

    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _hierarchies() -> list[Path]:
    found = []
    for entry in sorted(CGROUP_HIERARCHIES.iterdir()):
        # v1 controllers (and the named systemd one); the unified mount is not kubelet's here.
        if entry.is_dir() and not entry.is_symlink() and entry.name != "unified":
            found.append(entry)
    return found


def _read_sysctls() -> dict[str, str]:
    saved: dict[str, str] = {}
    for key in cluster.KUBELET_SYSCTLS:
        path = Path("/proc/sys") / key.replace(".", "/")
        with contextlib.suppress(OSError):
            saved[key] = path.read_text().strip()
    return saved


# --------------------------------------------------------------------------
# Restarting one component
# --------------------------------------------------------------------------

# What ``restart_component`` restarts: the API server, the kubelet and the
# runtime daemon, the parts a node's operator restarts (an upgrade, a config
# change, a crash) while pods keep running.
RESTARTABLE = ("apiserver", "kubelet", "containerd", "crio")


def restart_component(node: LabNode, state: LabState, name: str) -> float:
    """Stop one component and start it again as it ran; seconds until it is ready again.

    It gets the same command line and environment (read from the running
    process, so whatever started it is reproduced exactly) and appends to
    its log. ``kubectl port-forward`` to the agent runs through kube-apiserver,
    the kubelet and the runtime's streaming server, so it is opened again
    afterwards, on the same local port.
    """
    if name not in RESTARTABLE:
        raise LabError(f"cannot restart {name!r}: the lab restarts {', '.join(RESTARTABLE)}")
    component = state.components.get(name)
    if component is None or not component.ref.alive():
        raise LabError(f"{name} is not running in this lab; nothing to restart")
    real = RealState.from_json(state.real)
    argv, env = _command_of(component.pid)
    log_path = Path(component.log)
    t0 = time.monotonic()
    # SIGTERM, then SIGKILL: kube-apiserver holds open watches until its own
    # 60 s shutdown deadline, which a restart need not wait for; a runtime
    # gets the time to write its clean-shutdown mark.
    grace = 5.0 if name == "apiserver" else 15.0
    if not stop_process(component.ref, grace):
        raise LabError(f"{name} (pid {component.pid}) did not stop")
    with log_path.open("ab") as log:
        log.write(f"---- podlens lab: restarting {name} at {time.ctime()}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=node.lab_dir,
            env=env,
            start_new_session=True,
        )
    # Recorded at once, so `lab down` stops the new process whatever happens next.
    node.record(state, name, proc, log_path)
    node.wait(name, proc, log_path, _readiness(name, state, real))
    took = time.monotonic() - t0
    node.progress(f"{name}: restarted (pid {proc.pid}), ready in {took:.1f}s")
    reopen_port_forward(node, state, real)
    return took


def reopen_port_forward(node: LabNode, state: LabState, real: RealState) -> None:
    """Stop the lab's ``kubectl port-forward`` to the agent (if it still runs) and open it again."""
    forward = state.components.get("agent")
    if forward is not None and not stop_process(forward.ref, 5.0):
        raise LabError(f"kubectl port-forward (pid {forward.pid}) did not stop")
    deadline = time.monotonic() + node.ready_timeout
    pod: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        pod = deploy.agent_pod(real.kubeconfig)
        if deploy.is_ready(pod):
            break
        time.sleep(0.25)
    else:
        raise LabError("the agent's pod is not Ready; the port-forward cannot be opened again")
    assert pod is not None
    # A kubelet just restarted answers its health check before it has its
    # pods back from the API server, and refuses a port-forward to one it
    # does not know yet ("pod does not exist"): try again until it does.
    while True:
        try:
            deploy.start_port_forward(node, state, real, pod["metadata"]["name"])
            return
        except LabError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _command_of(pid: int) -> tuple[list[str], dict[str, str]]:
    proc = Path(f"/proc/{pid}")
    try:
        argv = [a.decode() for a in (proc / "cmdline").read_bytes().rstrip(b"\0").split(b"\0")]
        pairs = [e.decode().split("=", 1) for e in (proc / "environ").read_bytes().split(b"\0")]
    except OSError as exc:
        raise LabError(f"cannot read the command line of pid {pid}: {exc}") from exc
    return argv, {p[0]: p[1] for p in pairs if len(p) == 2}


def _readiness(name: str, state: LabState, real: RealState) -> Callable[[], bool]:
    layout = cluster.Layout.from_json(real.layout)
    if name == "apiserver":
        return cluster.AdminClient(layout, Pki.at(layout.pki_dir)).ready
    if name == "kubelet":
        return functools.partial(_healthz_ok, layout.kubelet_healthz_port)
    return functools.partial(_cri_answers, state.cri_endpoint)


def _healthz_ok(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def _cri_answers(endpoint: str) -> bool:
    # The runtime has bound its socket and answers CRI Version.
    try:
        with grpc.insecure_channel(endpoint) as channel:
            stub = api_pb2_grpc.RuntimeServiceStub(channel)
            stub.Version(api_pb2.VersionRequest(version="v1"), timeout=1.0)
    except grpc.RpcError:
        return False
    return True


# --------------------------------------------------------------------------
# Stopping
# --------------------------------------------------------------------------


def delete_all_pods(real: RealState, timeout: float = 60.0) -> list[str]:
    """Delete every pod at once and wait until the API server holds none.

    The pods' UIDs are kept in ``real`` so that ``clean_host`` removes their
    log directories even where the kubelet stopped before its housekeeping.
    """
    if not real.layout:
        return []
    client = admin_client(real)
    try:
        # Controllers first, or they make the pods again (the agent's DaemonSet).
        status, sets = client.request("GET", "/apis/apps/v1/daemonsets")
        if status == 200 and isinstance(sets, dict):
            for item in sets.get("items") or []:
                meta = item.get("metadata") or {}
                client.request(
                    "DELETE",
                    f"/apis/apps/v1/namespaces/{meta.get('namespace')}/daemonsets/"
                    f"{meta.get('name')}?propagationPolicy=Background",
                )
        status, pods = client.request("GET", "/api/v1/pods")
        if status != 200 or not isinstance(pods, dict):
            return [f"listing pods before teardown: HTTP {status}"]
        for item in pods.get("items") or []:
            meta = item.get("metadata") or {}
            real.pod_uids.append(str(meta.get("uid")))
            path = f"/api/v1/namespaces/{meta.get('namespace')}/pods/{meta.get('name')}"
            client.request("DELETE", path + "?gracePeriodSeconds=0")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, pods = client.request("GET", "/api/v1/pods")
            if status == 200 and isinstance(pods, dict) and not pods.get("items"):
                return []
            time.sleep(0.2)
    except OSError as exc:
        return [f"deleting the pods before teardown: {exc}"]
    return ["pods were still there after the teardown's wait"]


def clean_host(real: RealState) -> list[str]:
    """Remove what the kubelet leaves on the machine: cgroups, tunables, log dirs and links."""
    problems: list[str] = []
    if not real.layout:
        return problems
    layout = cluster.Layout.from_json(real.layout)
    # The kubelet also makes its root in the unified (v2) mount of a hybrid host.
    for hierarchy in [*_hierarchies(), CGROUP_HIERARCHIES / "unified"]:
        root = hierarchy / layout.cgroup_root.lstrip("/")
        if root.is_dir():
            for d in sorted(root.rglob("*"), key=lambda p: len(p.parts), reverse=True):
                if d.is_dir():
                    with contextlib.suppress(OSError):
                        d.rmdir()
            try:
                root.rmdir()
            except OSError as exc:
                problems.append(f"cgroup {root} left: {exc.strerror}")
    for key, value in real.sysctls.items():
        path = Path("/proc/sys") / key.replace(".", "/")
        with contextlib.suppress(OSError):
            if path.read_text().strip() != value:
                path.write_text(value)
    pods_dir = layout.pod_logs_dir
    ours = [d for uid in real.pod_uids for d in pods_dir.glob(f"*_{uid}") if uid]
    # The kubelet links every container log into /var/log/containers (a path
    # it does not let one choose); links into the lab's pods are the lab's.
    if CONTAINER_LOG_LINKS.is_dir():
        for link in CONTAINER_LOG_LINKS.iterdir():
            if not link.is_symlink():
                continue
            target = Path(os.readlink(link))
            if any(target.is_relative_to(d) for d in ours) or not link.exists():
                with contextlib.suppress(OSError):
                    link.unlink()
    for d in ours:
        shutil.rmtree(d, ignore_errors=True)
    base = Path(real.layout["base"])
    if base.exists():
        shutil.rmtree(base / "etcd", ignore_errors=True)
    return problems
