"""The real node's components: how each upstream binary is configured and started.

Everything here is pure or file-writing: the command line of etcd, the API
server, the controller manager, the scheduler and the kubelet, the kubelet's
configuration file, the kubeconfigs, and the checks that tell each is ready.
``lab.node`` spawns, records and stops the processes as it does the stand-ins.

What the real node is, in one place:

* etcd on loopback (plain HTTP, as ``hack/local-up-cluster.sh`` runs it);
* kube-apiserver with TLS, the Node and RBAC authorizers, service-account
  tokens (so TokenReview and SubjectAccessReview answer for real), and its
  own client certificate for kubelets;
* kube-controller-manager (DaemonSets are its controller) and kube-scheduler,
  each with its own ``system:`` identity, no leader election;
* the kubelet as node ``lab-node`` on the lab's private containerd, cgroupfs
  under its own cgroup root (this machine is cgroup v1: ``failCgroupV1:
  false``), webhook authentication and authorization against the API server.

The kubelet refuses a loopback node IP, and the only address the API server
may dial here is loopback, so the kubelet runs with ``--cloud-provider
external`` and the lab does the one thing a cloud controller would: it sets
the node's address to 127.0.0.1 and lifts the "uninitialized" taint
(``initialize_node``). Imports ``lab.upstream.pki``, ``lab.errors`` and the
standard library.
"""

from __future__ import annotations

import json
import socket
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.errors import LabError
from lab.upstream.pki import SERVICE_CIDR, Pki, kubeconfig

SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
UNINITIALIZED_TAINT = "node.cloudprovider.kubernetes.io/uninitialized"
# Kernel tunables kubelet sets at start (protectKernelDefaults is false): the
# lab puts them back when it goes down.
KUBELET_SYSCTLS = (
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "kernel.panic",
    "kernel.panic_on_oops",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
)


class NotBuilt(LabError):
    """An upstream binary is missing: say how to build it, and the stand-in lab."""


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass(frozen=True, slots=True)
class Binaries:
    """Where the upstream binaries are."""

    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path
    kube_scheduler: Path
    kubelet: Path

    @classmethod
    def in_dirs(cls, kubernetes: Path, etcd: Path) -> Binaries:
        """The binaries in the build script's output directories; NotBuilt names what lacks."""
        found = cls(
            etcd=etcd / "etcd",
            kube_apiserver=kubernetes / "kube-apiserver",
            kube_controller_manager=kubernetes / "kube-controller-manager",
            kube_scheduler=kubernetes / "kube-scheduler",
            kubelet=kubernetes / "kubelet",
        )
        missing = [str(p) for p in found.all() if not p.is_file()]
        if missing:
            raise NotBuilt("upstream binaries missing: " + ", ".join(missing))
        return found

    def all(self) -> tuple[Path, ...]:
        """Every binary, in start order."""
        return (
            self.etcd,
            self.kube_apiserver,
            self.kube_controller_manager,
            self.kube_scheduler,
            self.kubelet,
        )


@dataclass(frozen=True, slots=True)
class Layout:
    """The real node's files and ports, all under the lab directory."""

    base: Path
    node_name: str
    cri_endpoint: str
    pod_logs_dir: Path
    etcd_port: int
    etcd_peer_port: int
    apiserver_port: int
    controller_manager_port: int
    scheduler_port: int
    kubelet_port: int
    kubelet_healthz_port: int
    # The kubelet's cgroup root, so its pods stay out of the machine's own
    # hierarchy and out of another lab's (one per lab: the containerd token).
    cgroup_root: str

    @classmethod
    def fresh(
        cls, base: Path, node_name: str, cri_endpoint: str, pod_logs_dir: Path, token: str
    ) -> Layout:
        """A layout with free ports picked now."""
        return cls(
            base=base,
            node_name=node_name,
            cri_endpoint=cri_endpoint,
            pod_logs_dir=pod_logs_dir,
            etcd_port=free_port(),
            etcd_peer_port=free_port(),
            apiserver_port=free_port(),
            controller_manager_port=free_port(),
            scheduler_port=free_port(),
            kubelet_port=free_port(),
            kubelet_healthz_port=free_port(),
            cgroup_root=f"/podlens-lab-{token}",
        )

    @property
    def pki_dir(self) -> Path:
        """Certificates and keys."""
        return self.base / "pki"

    @property
    def api_server_url(self) -> str:
        """The API server's HTTPS address."""
        return f"https://127.0.0.1:{self.apiserver_port}"

    @property
    def admin_kubeconfig(self) -> Path:
        """The kubeconfig ``lab status`` gives to people and to kubectl."""
        return self.base / "admin.kubeconfig"

    def to_json(self) -> dict[str, Any]:
        """As kept in the lab's state file."""
        return {
            "base": str(self.base),
            "node_name": self.node_name,
            "cri_endpoint": self.cri_endpoint,
            "pod_logs_dir": str(self.pod_logs_dir),
            "etcd_port": self.etcd_port,
            "etcd_peer_port": self.etcd_peer_port,
            "apiserver_port": self.apiserver_port,
            "controller_manager_port": self.controller_manager_port,
            "scheduler_port": self.scheduler_port,
            "kubelet_port": self.kubelet_port,
            "kubelet_healthz_port": self.kubelet_healthz_port,
            "cgroup_root": self.cgroup_root,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Layout:
        """From the lab's state file."""
        return cls(
            base=Path(d["base"]),
            node_name=str(d["node_name"]),
            cri_endpoint=str(d["cri_endpoint"]),
            pod_logs_dir=Path(d["pod_logs_dir"]),
            cgroup_root=str(d["cgroup_root"]),
            **{k: int(d[k]) for k in d if k.endswith("_port")},
        )


def etcd_argv(bins: Binaries, layout: Layout) -> list[str]:
    """etcd on loopback, plain HTTP, its data in the lab directory."""
    client = f"http://127.0.0.1:{layout.etcd_port}"
    peer = f"http://127.0.0.1:{layout.etcd_peer_port}"
    return [
        str(bins.etcd),
        "--name",
        "lab",
        "--data-dir",
        str(layout.base / "etcd"),
        "--listen-client-urls",
        client,
        "--advertise-client-urls",
        client,
        "--listen-peer-urls",
        peer,
        "--initial-advertise-peer-urls",
        peer,
        "--initial-cluster",
        f"lab={peer}",
        "--listen-metrics-urls",
        "",
        "--log-level",
        "warn",
    ]


def apiserver_argv(bins: Binaries, layout: Layout, pki: Pki) -> list[str]:
    """kube-apiserver: TLS, Node and RBAC authorization, service-account tokens."""
    return [
        str(bins.kube_apiserver),
        "--etcd-servers",
        f"http://127.0.0.1:{layout.etcd_port}",
        "--bind-address",
        "127.0.0.1",
        "--advertise-address",
        "127.0.0.1",
        "--secure-port",
        str(layout.apiserver_port),
        "--tls-cert-file",
        str(pki.apiserver.cert),
        "--tls-private-key-file",
        str(pki.apiserver.key),
        "--client-ca-file",
        str(pki.ca.cert),
        "--service-account-key-file",
        str(pki.service_account_pub),
        "--service-account-signing-key-file",
        str(pki.service_account_key),
        "--service-account-issuer",
        SERVICE_ACCOUNT_ISSUER,
        "--service-cluster-ip-range",
        SERVICE_CIDR,
        "--authorization-mode",
        "Node,RBAC",
        "--enable-admission-plugins",
        "NodeRestriction",
        "--allow-privileged=true",
        "--kubelet-client-certificate",
        str(pki.apiserver_kubelet_client.cert),
        "--kubelet-client-key",
        str(pki.apiserver_kubelet_client.key),
        "--kubelet-certificate-authority",
        str(pki.ca.cert),
        "--kubelet-preferred-address-types",
        "InternalIP",
        # One API server, no Service routing to it: nothing to reconcile.
        "--endpoint-reconciler-type",
        "none",
        "--cert-dir",
        str(layout.base / "apiserver-certs"),
        "--profiling=false",
    ]


def _controller_argv(binary: Path, config: Path, port: int) -> list[str]:
    """What the controller manager and the scheduler share: one identity, loopback, no election."""
    return [
        str(binary),
        "--kubeconfig",
        str(config),
        "--authentication-kubeconfig",
        str(config),
        "--authorization-kubeconfig",
        str(config),
        "--bind-address",
        "127.0.0.1",
        "--secure-port",
        str(port),
        "--leader-elect=false",
        "--profiling=false",
    ]


def controller_manager_argv(bins: Binaries, layout: Layout, pki: Pki) -> list[str]:
    """kube-controller-manager: DaemonSets, service-account tokens, garbage collection."""
    config = layout.base / "controller-manager.kubeconfig"
    return [
        *_controller_argv(bins.kube_controller_manager, config, layout.controller_manager_port),
        "--service-account-private-key-file",
        str(pki.service_account_key),
        "--root-ca-file",
        str(pki.ca.cert),
        "--use-service-account-credentials=true",
        "--cert-dir",
        str(layout.base / "controller-manager-certs"),
    ]


def scheduler_argv(bins: Binaries, layout: Layout) -> list[str]:
    """kube-scheduler, binding the lab's pods to its one node."""
    config = layout.base / "scheduler.kubeconfig"
    return _controller_argv(bins.kube_scheduler, config, layout.scheduler_port)


def kubelet_argv(bins: Binaries, layout: Layout) -> list[str]:
    """The kubelet, registering as ``layout.node_name``."""
    return [
        str(bins.kubelet),
        "--config",
        str(layout.base / "kubelet.yaml"),
        "--kubeconfig",
        str(layout.base / "kubelet.kubeconfig"),
        "--root-dir",
        str(layout.base / "kubelet"),
        "--hostname-override",
        layout.node_name,
        # See the module docstring: the lab sets the node's address itself.
        "--cloud-provider",
        "external",
        "--v",
        "2",
    ]


def kubelet_config(layout: Layout, pki: Pki) -> dict[str, Any]:
    """The KubeletConfiguration of the real node."""
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        # These machines are cgroup v1 (hybrid); kubelet 1.35+ refuses that unless told.
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": layout.cgroup_root,
        "failSwapOn": False,
        "address": "127.0.0.1",
        "port": layout.kubelet_port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": layout.kubelet_healthz_port,
        "tlsCertFile": str(pki.kubelet_serving.cert),
        "tlsPrivateKeyFile": str(pki.kubelet_serving.key),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(pki.ca.cert)},
        },
        "authorization": {"mode": "Webhook"},
        "containerRuntimeEndpoint": layout.cri_endpoint,
        "imageServiceEndpoint": layout.cri_endpoint,
        "podLogsDir": str(layout.pod_logs_dir),
        "staticPodPath": str(layout.base / "manifests"),
        "volumePluginDir": str(layout.base / "volume-plugins"),
        "makeIPTablesUtilChains": False,
        "clusterDomain": "cluster.local",
        "resolvConf": "/etc/resolv.conf",
        "serializeImagePulls": False,
        # A lab machine's disk and memory are shared with other work: evict
        # only when truly short, never because the machine is busy elsewhere.
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
            "nodefs.inodesFree": "1%",
        },
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
    }


def write_configs(layout: Layout, pki: Pki) -> None:
    """Every kubeconfig and the kubelet's configuration, under the lab directory."""
    for sub in ("manifests", "volume-plugins", "kubelet"):
        (layout.base / sub).mkdir(parents=True, exist_ok=True)
    url = layout.api_server_url
    kubeconfig(layout.admin_kubeconfig, url, pki.ca.cert, pki.admin, user="lab-admin")
    kubeconfig(
        layout.base / "controller-manager.kubeconfig",
        url,
        pki.ca.cert,
        pki.controller_manager,
        user="system:kube-controller-manager",
    )
    kubeconfig(
        layout.base / "scheduler.kubeconfig",
        url,
        pki.ca.cert,
        pki.scheduler,
        user="system:kube-scheduler",
    )
    kubeconfig(
        layout.base / "kubelet.kubeconfig",
        url,
        pki.ca.cert,
        pki.kubelet,
        user=f"system:node:{layout.node_name}",
    )
    config = json.dumps(kubelet_config(layout, pki), indent=2)
    (layout.base / "kubelet.yaml").write_text(config + "\n")


class AdminClient:
    """The lab's own HTTPS client of the API server, as the admin (client certificate)."""

    def __init__(self, layout: Layout, pki: Pki, timeout: float = 5.0) -> None:
        self.url = layout.api_server_url
        self.timeout = timeout
        context = ssl.create_default_context(cafile=str(pki.ca.cert))
        context.load_cert_chain(str(pki.admin.cert), str(pki.admin.key))
        self._context = context

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
    ) -> tuple[int, Any]:
        """One request; the status and the decoded JSON (or text) answer."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", content_type)
        req.add_header("Accept", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout, context=self._context) as r:
                raw = r.read()
                status = int(r.status)
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            status = exc.code
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw.decode(errors="replace")

    def ready(self) -> bool:
        """The API server answers /readyz with ok."""
        try:
            status, _ = self.request("GET", "/readyz")
        except OSError:
            return False
        return status == 200


def initialize_node(client: AdminClient, node_name: str) -> bool:
    """Do a cloud controller's part for the node: address 127.0.0.1, the taint lifted.

    True once done (or already done); False while the node is not registered.
    """
    status, node = client.request("GET", f"/api/v1/nodes/{node_name}")
    if status == 404:
        return False
    if status != 200 or not isinstance(node, dict):
        raise LabError(f"reading node {node_name}: HTTP {status}: {node}")
    addresses = node.get("status", {}).get("addresses") or []
    if not any(a.get("type") == "InternalIP" for a in addresses):
        patch = {
            "status": {
                "addresses": [
                    {"type": "InternalIP", "address": "127.0.0.1"},
                    {"type": "Hostname", "address": node_name},
                ]
            }
        }
        status, answer = client.request(
            "PATCH",
            f"/api/v1/nodes/{node_name}/status",
            patch,
            "application/strategic-merge-patch+json",
        )
        if status != 200:
            raise LabError(f"setting the address of node {node_name}: HTTP {status}: {answer}")
    taints = node.get("spec", {}).get("taints") or []
    kept = [t for t in taints if t.get("key") != UNINITIALIZED_TAINT]
    if len(kept) != len(taints):
        status, answer = client.request(
            "PATCH",
            f"/api/v1/nodes/{node_name}",
            {"spec": {"taints": kept or None}},
            "application/merge-patch+json",
        )
        if status != 200:
            raise LabError(f"lifting the taint of node {node_name}: HTTP {status}: {answer}")
    return True


def node_ready(client: AdminClient, node_name: str) -> bool:
    """The node's Ready condition is True."""
    status, node = client.request("GET", f"/api/v1/nodes/{node_name}")
    if status != 200 or not isinstance(node, dict):
        return False
    for condition in node.get("status", {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return bool(condition.get("status") == "True")
    return False
