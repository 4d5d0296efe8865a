"""More nodes for the real cluster: each an upstream kubelet on a containerd of its own.

``lab up --real`` runs one node, ``lab-node``. ``add_nodes`` joins more to
its API server (``lab-node-2``, ``lab-node-3``, ...), each with:

* its own private containerd (directories, socket, bridge, pod subnet) and
  its own cgroup root;
* its own kubelet, with a client and a serving certificate of its own node
  identity (the Node authorizer keeps each kubelet to its node's objects);
* its own gateway namespace on its bridge, so its pods reach the API server;
* a mount namespace of its own for its containerd and kubelet, in which the
  host paths the DaemonSet mounts lead to this node's: the lab's containerd
  directory to this node's containerd, ``/var/log/pods`` and
  ``/var/log/containers`` to this node's log directories. So one DaemonSet,
  unchanged, runs one agent per node, each on its own node's runtime, as on
  a cluster where every machine has its own ``/run/containerd``; and no
  kubelet's log housekeeping removes another node's pod logs.

Each node runs under a supervisor (``python -m lab.upstream.nodes serve``,
started by ``unshare --mount --propagation slave``): it makes the mounts,
starts containerd, imports the images, starts the kubelet once the host has
made the node's gateway, and on SIGTERM stops the kubelet and tears its
containerd down (pods, mounts, bridge, directories). ``remove_nodes`` does
the rest from the host: the Node object and its pods, the gateway, the
cgroup root. The extra nodes carry the NoSchedule taint ``EXTRA_NODE_TAINT``:
pods that do not tolerate it stay on ``lab-node`` (the agent's DaemonSet
tolerates every taint).

Imports ``lab.upstream``'s modules, ``lab.containerd``, ``lab.images``,
``lab.errors``, ``lab.processes`` and the standard library; ``lab.node``
only for its types, at type-checking time.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from lab.containerd import PrivateContainerd
from lab.errors import LabError
from lab.images import build_images, default_cache_dir, lab_node_recipes
from lab.processes import ProcessRef, log_tail, stop_process
from lab.upstream import cluster, realnode
from lab.upstream.gateway import Gateway
from lab.upstream.image import import_image, normalize_ref
from lab.upstream.pki import KUBERNETES_SERVICE_IP, SERVICE_CIDR, Pki, kubeconfig, node_certificates
from lab.upstream.realnode import RealState

if TYPE_CHECKING:
    from lab.node import LabNode

EXTRA_NODE_TAINT = "podlens.lab/extra-node"
AGENT_NAMESPACE = "podlens-system"
AGENT_DAEMONSET = "podlens-agent"
NODES_DIR = "nodes"
RECORDS = "nodes.json"
# What the host's tools need to find inside a node's directory.
STATUS_FILE = "status.json"
GO_FILE = "go"
START_TIMEOUT = 180.0


class NodeFailed(LabError):
    """An extra node did not come up; names the step and its log's last lines."""


@dataclasses.dataclass(slots=True)
class ExtraNode:
    """One extra node as the host keeps it: where it lives, its processes, its layout."""

    name: str
    base: str
    token: str
    layout: dict[str, Any]
    supervisor_pid: int = 0
    supervisor_ticks: int = 0
    gateway_pid: int = 0
    gateway_ticks: int = 0
    subnet: str = ""

    @property
    def bridge(self) -> str:
        """The node's pod bridge (the containerd's, named by its token)."""
        return "plns" + self.token


# --------------------------------------------------------------------------
# The host's side
# --------------------------------------------------------------------------


def _records_path(lab_dir: Path) -> Path:
    return lab_dir / NODES_DIR / RECORDS


def load_nodes(lab_dir: Path) -> list[ExtraNode]:
    """The extra nodes of the lab in ``lab_dir`` (none when there are none)."""
    try:
        raw = json.loads(_records_path(lab_dir).read_text())
    except FileNotFoundError:
        return []
    return [ExtraNode(**item) for item in raw]


def _save_nodes(lab_dir: Path, nodes: Sequence[ExtraNode]) -> None:
    path = _records_path(lab_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([dataclasses.asdict(n) for n in nodes], indent=2) + "\n")


def _wait(what: str, check: Callable[[], bool], alive: Callable[[], bool], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while not check():
        if not alive():
            raise NodeFailed(f"{what}: the process exited; last lines of {log}:\n{log_tail(log)}")
        if time.monotonic() > deadline:
            raise NodeFailed(f"{what}: not within {START_TIMEOUT:.0f}s; see {log}")
        time.sleep(0.3)


def _spawn(argv: Sequence[str], log_path: Path) -> tuple[subprocess.Popen[bytes], ProcessRef]:
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            # Its own session: it outlives the command that started it.
            start_new_session=True,
        )
    ref = ProcessRef.of(proc.pid)
    if ref is None:
        raise NodeFailed(f"`{' '.join(argv)}` exited at once; see {log_path}")
    return proc, ref


def add_nodes(node: LabNode, count: int) -> list[str]:
    """Join ``count`` more nodes to the real lab's API server; their names, agents Ready.

    On failure everything this call started is removed again.
    """
    state = node.require_state()
    if state.mode != "real":
        raise LabError("more nodes are for the real node (lab up --real)")
    if state.runtime != "containerd":
        # Each extra node runs Debian's containerd; the DaemonSet's runtime
        # endpoint is lab-node's, and must be the same on every node.
        raise LabError(f"more nodes need lab-node on containerd, not {state.runtime}")
    real = RealState.from_json(state.real)
    main = cluster.Layout.from_json(real.layout)
    pki = Pki.at(main.pki_dir)
    bins = realnode.binaries()
    # Built (or found in the cache) here, so the nodes' supervisors only read them.
    build_images(node.image_cache or default_cache_dir(), lab_node_recipes())
    # The very image lab-node runs, not a new build: one DaemonSet, one image.
    admin = realnode.admin_client(real)
    agent_tar = _export_agent_image(node.lab_dir, admin, state.cri_endpoint)
    known = load_nodes(node.lab_dir)
    names: list[str] = []
    try:
        for _ in range(count):
            name = f"{state.node_name}-{len(known) + 2}"
            names.append(name)
            extra = _start_node(
                node.lab_dir,
                name,
                main,
                pki,
                bins,
                real,
                containerd_dir=Path(state.containerd_dir),
                image_cache=str(node.image_cache or default_cache_dir()),
                agent_tar=str(agent_tar),
                known=known,
            )
            node.progress(f"node {name}: kubelet (supervisor pid {extra.supervisor_pid})")
            _wait(
                f"node {name} registered",
                lambda n=name: cluster.initialize_node(admin, n),  # type: ignore[misc]
                lambda e=extra: _alive(e),  # type: ignore[misc]
                Path(extra.base) / "node.log",
            )
            _wait(
                f"node {name} Ready",
                lambda n=name: cluster.node_ready(admin, n),  # type: ignore[misc]
                lambda e=extra: _alive(e),  # type: ignore[misc]
                Path(extra.base) / "kubelet.log",
            )
            node.progress(f"node {name}: Ready")
        for name in names:
            _wait(
                f"the agent on node {name} Ready",
                lambda n=name: _agent_ready(admin, n),  # type: ignore[misc]
                lambda: True,
                node.lab_dir / NODES_DIR / name / "kubelet.log",
            )
            node.progress(f"node {name}: agent Ready")
    except BaseException:
        remove_nodes(node.lab_dir, real, only=names)
        raise
    return names


def _export_agent_image(lab_dir: Path, admin: cluster.AdminClient, cri_endpoint: str) -> Path:
    status, daemonset = admin.request(
        "GET", f"/apis/apps/v1/namespaces/{AGENT_NAMESPACE}/daemonsets/{AGENT_DAEMONSET}"
    )
    if status != 200 or not isinstance(daemonset, dict):
        raise NodeFailed(f"reading the agent's DaemonSet: HTTP {status}: {daemonset}")
    image = normalize_ref(daemonset["spec"]["template"]["spec"]["containers"][0]["image"])
    tar = lab_dir / NODES_DIR / "agent-image.tar"
    tar.parent.mkdir(parents=True, exist_ok=True)
    address = cri_endpoint.removeprefix("unix://")
    argv = ["ctr", "-a", address, "-n", "k8s.io", "images", "export", str(tar), image]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0:
        raise NodeFailed(f"`{' '.join(argv)}` failed: {done.stderr.strip()}")
    return tar


def _registry_url(lab_dir: Path) -> str:
    """The lab registry's URL, as it announced it in its log (what lab-node's mirror uses)."""
    with contextlib.suppress(OSError):
        for line in (lab_dir / "registry.log").read_text(errors="replace").splitlines():
            if line.startswith("http://"):
                return line.strip()
    raise NodeFailed(f"the lab's image registry announced no URL in {lab_dir / 'registry.log'}")


def _agent_ready(admin: cluster.AdminClient, node_name: str) -> bool:
    """The DaemonSet's agent pod on ``node_name`` is Ready."""
    status, listed = admin.request(
        "GET",
        f"/api/v1/namespaces/{AGENT_NAMESPACE}/pods?fieldSelector=spec.nodeName%3D{node_name}",
    )
    if status != 200 or not isinstance(listed, dict):
        return False
    return any(
        condition.get("type") == "Ready" and condition.get("status") == "True"
        for item in listed.get("items") or []
        if not (item.get("metadata") or {}).get("deletionTimestamp")
        for condition in (item.get("status") or {}).get("conditions") or []
    )


def _alive(extra: ExtraNode) -> bool:
    ref = ProcessRef(extra.supervisor_pid, extra.supervisor_ticks)
    return ref.alive()


def _start_node(
    lab_dir: Path,
    name: str,
    main: cluster.Layout,
    pki: Pki,
    bins: cluster.Binaries,
    real: RealState,
    *,
    containerd_dir: Path,
    image_cache: str,
    agent_tar: str,
    known: list[ExtraNode],
) -> ExtraNode:
    token = os.urandom(3).hex()
    base = (lab_dir / NODES_DIR / name).resolve()
    if base.exists():
        shutil.rmtree(base)
    base.mkdir(parents=True)
    runtime_dir = base / "containerd"
    fresh = cluster.Layout.fresh(
        base, name, f"unix://{runtime_dir / 'containerd.sock'}", Path("/var/log/pods"), token
    )
    # The cluster's API server, not a port of its own.
    layout = dataclasses.replace(fresh, apiserver_port=main.apiserver_port)
    node_pki = node_certificates(pki, base / "pki", name)
    for sub in ("manifests", "volume-plugins", "kubelet"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    kubeconfig(
        base / "kubelet.kubeconfig",
        layout.api_server_url,
        node_pki.ca.cert,
        node_pki.kubelet,
        user=f"system:node:{name}",
    )
    config = cluster.kubelet_config(layout, node_pki)
    config["registerWithTaints"] = [{"key": EXTRA_NODE_TAINT, "effect": "NoSchedule"}]
    (base / "kubelet.yaml").write_text(json.dumps(config, indent=2) + "\n")
    spec = {
        "name": name,
        "base": str(base),
        "token": token,
        "registry_url": real.registry_url or _registry_url(lab_dir),
        "image_cache": image_cache,
        "agent_tar": agent_tar,
        "binds": {
            str(runtime_dir): str(containerd_dir),
            str(base / "pod-logs"): "/var/log/pods",
            str(base / "container-logs"): realnode.CONTAINER_LOG_LINKS.as_posix(),
        },
        "cgroup_root": layout.cgroup_root,
        "kubelet_argv": cluster.kubelet_argv(bins, layout),
    }
    (base / "spec.json").write_text(json.dumps(spec, indent=2) + "\n")
    argv = ["unshare", "--mount", "--propagation", "slave", "--"]
    argv += [sys.executable, "-m", "lab.upstream.nodes", "serve", str(base / "spec.json")]
    _, ref = _spawn(argv, base / "node.log")
    extra = ExtraNode(name, str(base), token, layout.to_json(), ref.pid, ref.start_ticks)
    known.append(extra)
    _save_nodes(lab_dir, known)

    status_path = base / STATUS_FILE
    _wait(
        f"node {name}: containerd",
        status_path.is_file,
        lambda: _alive(extra),
        base / "node.log",
    )
    extra.subnet = str(json.loads(status_path.read_text())["subnet"])
    gateway = _gateway(extra)
    gateway.create()
    gateway_log = base / "gateway.log"
    gateway_cmd = realnode.gateway_argv(gateway.netns_path, main.apiserver_port)
    _, gateway_ref = _spawn(gateway_cmd, gateway_log)
    extra.gateway_pid, extra.gateway_ticks = gateway_ref.pid, gateway_ref.start_ticks
    _save_nodes(lab_dir, known)

    def listening() -> bool:
        with contextlib.suppress(OSError):
            return "gateway: " in gateway_log.read_text(errors="replace")
        return False

    _wait(f"node {name}: gateway", listening, gateway_ref.alive, gateway_log)
    (base / GO_FILE).touch()
    return extra


def _gateway(extra: ExtraNode) -> Gateway:
    import ipaddress

    return Gateway(
        token=extra.token,
        bridge=extra.bridge,
        subnet=ipaddress.IPv4Network(extra.subnet),
        service_ip=KUBERNETES_SERVICE_IP,
    )


def remove_nodes(lab_dir: Path, real: RealState, only: Sequence[str] | None = None) -> list[str]:
    """Remove the extra nodes (``only`` those named): kubelet, runtime, pods, Node, gateway.

    Returns what could not be removed; an empty list when nothing is left.
    """
    problems: list[str] = []
    nodes = load_nodes(lab_dir)
    admin = realnode.admin_client(real) if real.layout else None
    kept: list[ExtraNode] = []
    for extra in nodes:
        if only is not None and extra.name not in only:
            kept.append(extra)
            continue
        problems += _remove_node(extra, admin, real)
    if kept:
        _save_nodes(lab_dir, kept)
    else:
        shutil.rmtree(lab_dir / NODES_DIR, ignore_errors=True)
    return problems


def _remove_node(extra: ExtraNode, admin: cluster.AdminClient | None, real: RealState) -> list[str]:
    problems: list[str] = []
    uids: list[str] = []
    pods: list[tuple[str, str]] = []
    if admin is not None:
        with contextlib.suppress(OSError):
            status, listed = admin.request(
                "GET", f"/api/v1/pods?fieldSelector=spec.nodeName%3D{extra.name}"
            )
            if status == 200 and isinstance(listed, dict):
                for item in listed.get("items") or []:
                    meta = item.get("metadata") or {}
                    uids.append(str(meta.get("uid")))
                    pods.append((str(meta.get("namespace")), str(meta.get("name"))))
    # The supervisor stops the kubelet, then removes every pod through CRI and
    # tears its containerd down, mounts and bridge included.
    supervisor = ProcessRef(extra.supervisor_pid, extra.supervisor_ticks)
    if supervisor.alive() and not stop_process(supervisor, 120.0):
        problems.append(f"node {extra.name}: supervisor (pid {extra.supervisor_pid}) did not exit")
    if admin is not None:
        with contextlib.suppress(OSError):
            admin.request("DELETE", f"/api/v1/nodes/{extra.name}")
            # The kubelet is gone: nothing would confirm these pods' end.
            for namespace, name in pods:
                admin.request(
                    "DELETE", f"/api/v1/namespaces/{namespace}/pods/{name}?gracePeriodSeconds=0"
                )
    gateway_ref = ProcessRef(extra.gateway_pid, extra.gateway_ticks)
    if extra.gateway_pid and gateway_ref.alive() and not stop_process(gateway_ref, 5.0):
        problems.append(f"node {extra.name}: gateway (pid {extra.gateway_pid}) did not exit")
    if extra.subnet:
        problems += _gateway(extra).remove()
    leftover = RealState(layout=extra.layout, pod_uids=uids)
    problems += [f"node {extra.name}: {p}" for p in realnode.clean_host(leftover)]
    base = Path(extra.base)
    left = [m for m in _mounts() if Path(m).is_relative_to(base)]
    if left:
        problems.append(f"node {extra.name}: still mounted: {left}")
    else:
        shutil.rmtree(base, ignore_errors=True)
    return problems


def _mounts() -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f]


# --------------------------------------------------------------------------
# The supervisor, inside the node's mount namespace
# --------------------------------------------------------------------------


class _Stop(Exception):
    pass


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise _Stop


def _run(argv: Sequence[str]) -> None:
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        raise NodeFailed(f"`{' '.join(argv)}` failed: {done.stderr.strip()}")


def serve(spec_path: Path) -> int:
    """Run one node until SIGTERM: mounts, containerd, kubelet; then tear them down."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    spec = json.loads(spec_path.read_text())
    base = Path(spec["base"])
    runtime: PrivateContainerd | None = None
    kubelet: subprocess.Popen[bytes] | None = None
    try:
        for source, target in spec["binds"].items():
            Path(source).mkdir(parents=True, exist_ok=True)
            Path(target).mkdir(parents=True, exist_ok=True)
            _run(["mount", "--bind", source, target])
            # Shared inside this namespace only (it is a slave of the host's):
            # the agent's volumes ask for HostToContainer propagation.
            _run(["mount", "--make-rshared", target])
        runtime = PrivateContainerd(
            base / "containerd",
            build_images(Path(spec["image_cache"]), lab_node_recipes()),
            registry_mirror=spec["registry_url"] or None,
            service_cidr=SERVICE_CIDR,
            token=bytes.fromhex(spec["token"]),
        )
        runtime.start()
        import_image("ctr", runtime.address, Path(spec["agent_tar"]))
        (base / STATUS_FILE).write_text(
            json.dumps({"subnet": runtime.subnet_text, "containerd_pid": runtime.pid}) + "\n"
        )
        print(f"containerd: {runtime.endpoint} (pid {runtime.pid})", flush=True)
        while not (base / GO_FILE).exists():
            time.sleep(0.2)
        for hierarchy in Path("/sys/fs/cgroup").iterdir():
            if hierarchy.is_dir() and not hierarchy.is_symlink() and hierarchy.name != "unified":
                (hierarchy / spec["cgroup_root"].lstrip("/")).mkdir(exist_ok=True)
        with (base / "kubelet.log").open("ab") as log:
            kubelet = subprocess.Popen(
                spec["kubelet_argv"], stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )
        print(f"kubelet: pid {kubelet.pid}", flush=True)
        while kubelet.poll() is None:
            time.sleep(1.0)
        print(f"kubelet exited with {kubelet.returncode}", flush=True)
        return 1
    except _Stop:
        print("stopping", flush=True)
        return 0
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if kubelet is not None:
            stop_process(kubelet, 5.0)
        if runtime is not None:
            runtime.stop()
        for target in reversed(list(spec["binds"].values())):
            subprocess.run(["umount", "-l", target], capture_output=True, timeout=30, check=False)


def main(argv: Sequence[str] | None = None) -> int:
    """``serve SPEC`` (the supervisor); ``add``/``remove`` for a person with a real lab up."""
    parser = argparse.ArgumentParser(prog="python -m lab.upstream.nodes", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve_parser = sub.add_parser("serve")
    serve_parser.add_argument("spec", type=Path)
    add = sub.add_parser("add", help="join more nodes to a running `lab up --real`")
    add.add_argument("--dir", type=Path, required=True, help="the lab's directory")
    add.add_argument("--count", type=int, default=2)
    remove = sub.add_parser("remove", help="remove the extra nodes")
    remove.add_argument("--dir", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.command == "serve":
        return serve(args.spec)
    from lab.node import LabNode

    node = LabNode(args.dir)
    if args.command == "add":
        print("\n".join(add_nodes(node, args.count)))
        return 0
    real = RealState.from_json(node.require_state().real)
    problems = remove_nodes(args.dir, real)
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
