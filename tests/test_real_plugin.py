"""kubectl podlens against the real API server and three real nodes, one agent each.

The real node of ``lab up --real`` gets two more (``lab.upstream.nodes``):
upstream kubelets, each with its own containerd, cgroup root and bridge, the
agent on each from the same DaemonSet. The plugin runs as people run it,
``kubectl podlens ...`` (kubectl finds ``kubectl-podlens`` on the PATH), and
its answers are compared with each agent's own, asked through
``kubectl port-forward`` to that agent's pod.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from kubectl_podlens import cli
from kubectl_podlens.agents import AgentApi
from kubectl_podlens.cluster import Cluster, Connection
from kubectl_podlens.errors import EXIT_ERROR, EXIT_OK, EXIT_PARTIAL
from kubectl_podlens.links import PortForwardLinks
from lab.upstream import nodes
from lab.upstream.cluster import SERVICE_ACCOUNT_ISSUER
from lab.upstream.realnode import RealState
from tests.real_cluster import REPO, RealCluster, note, wait_for

pytest_plugins = ("tests.real_cluster",)
pytestmark = [pytest.mark.containerd, pytest.mark.real]

AGENT_NS = "podlens-system"
SELECTOR = "app.kubernetes.io/name=podlens,app.kubernetes.io/component=agent"
OPERATOR = ["--as-serviceaccount", "default/lab-operator"]
NS = "default"


def _pod(name: str, node: str, command: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "labels": {"app": "plugin-test"}},
        "spec": {
            "nodeName": node,
            "tolerations": [{"key": nodes.EXTRA_NODE_TAINT, "operator": "Exists"}],
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "app", "image": "busybox", "command": ["sh", "-c", command]}],
        },
    }


def _agents(cluster: RealCluster) -> dict[str, dict[str, Any]]:
    out = cluster.kubectl("get", "pods", "-n", AGENT_NS, "-l", SELECTOR, "-o", "json").stdout
    return {
        p["spec"]["nodeName"]: p
        for p in json.loads(out)["items"]
        if not p["metadata"].get("deletionTimestamp")
    }


def _ready(pod: dict[str, Any]) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in pod.get("status", {}).get("conditions") or []
    )


@pytest.fixture(scope="module")
def three_nodes(real_cluster: RealCluster) -> Iterator[list[str]]:
    """lab-node and two more, each with a Ready agent; removed after the module."""
    real = RealState.from_json(real_cluster.node.require_state().real)
    try:
        added = nodes.add_nodes(real_cluster.node, 2)
        names = [real_cluster.node_name, *added]
        wait_for(
            "an agent Ready on each of the three nodes",
            lambda: all(
                n in _agents(real_cluster) and _ready(_agents(real_cluster)[n]) for n in names
            ),
            180,
            interval=1.0,
        )
        yield names
    finally:
        problems = nodes.remove_nodes(real_cluster.lab_dir, real)
        assert not problems, problems


@pytest.fixture(scope="module")
def workloads(real_cluster: RealCluster, three_nodes: list[str]) -> Iterator[dict[str, str]]:
    """A sleeping pod on every node and a crash-looping one on the second: pod -> node."""
    placed = {f"plugin-sleep-{i}": node for i, node in enumerate(three_nodes)}
    pods = [_pod(name, node, "sleep 3600") for name, node in placed.items()]
    pods.append(_pod("plugin-crash", three_nodes[1], "echo about to fail; exit 3"))
    placed["plugin-crash"] = three_nodes[1]
    real_cluster.apply(pods)

    def started() -> bool:
        for name in placed:
            pod = real_cluster.pod(name) or {}
            statuses = pod.get("status", {}).get("containerStatuses") or []
            if not statuses or (name == "plugin-crash" and not statuses[0].get("restartCount")):
                return False
            if name != "plugin-crash" and "running" not in (statuses[0].get("state") or {}):
                return False
        return True

    wait_for("the plugin's test pods started on their nodes", started, 120, interval=1.0)
    yield placed
    real_cluster.delete_pods(list(placed))


def podlens(
    cluster: RealCluster, *args: str, kubeconfig: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``kubectl podlens ...``, found by kubectl on the PATH as users run it."""
    # The installed script, with this checkout's code (an editable install may
    # point at another copy of the project).
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "KUBECONFIG": kubeconfig or cluster.kubeconfig, "PYTHONPATH": path}
    return subprocess.run(
        ["kubectl", "podlens", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


class OwnAnswers:
    """Each agent asked on its own, through ``kubectl port-forward`` to its pod."""

    def __init__(self, cluster: RealCluster) -> None:
        self.cluster = cluster
        self.token = Path(str(cluster.status["agent_token_file"])).read_text().strip()

    def get(self, agent_pod: str, path: str) -> Any:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        forward = subprocess.Popen(
            [
                "kubectl",
                "--kubeconfig",
                self.cluster.kubeconfig,
                "port-forward",
                "-n",
                AGENT_NS,
                f"pod/{agent_pod}",
                f"{port}:8470",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert forward.stdout is not None
            line = forward.stdout.readline()
            assert "Forwarding from" in line, line + (
                forward.stderr.read() if forward.stderr else ""
            )
            with httpx.Client(
                base_url=f"https://127.0.0.1:{port}",
                verify=False,
                timeout=20,
                headers={"Authorization": f"Bearer {self.token}"},
            ) as client:
                answer = client.get(path)
                assert answer.status_code == 200, answer.text
                return answer.json()
        finally:
            forward.terminate()
            forward.wait(10)

    def union(self, path: str, key: Any) -> set[tuple[str, ...]]:
        found: set[tuple[str, ...]] = set()
        for node, pod in _agents(self.cluster).items():
            found |= {
                (node, *key(item)) for item in self.get(pod["metadata"]["name"], path)["items"]
            }
        return found


def test_merged_pods_and_findings_are_the_union_of_each_agents_own_answer(
    real_cluster: RealCluster, three_nodes: list[str], workloads: dict[str, str]
) -> None:
    own = OwnAnswers(real_cluster)

    def pod_key(p: dict[str, Any]) -> tuple[str, ...]:
        return (p["namespace"], p["name"], p["uid"])

    def finding_key(f: dict[str, Any]) -> tuple[str, ...]:
        return (f["namespace"], f["pod"], f["rule"])

    def merged(command: str, key: Any) -> set[tuple[str, ...]]:
        done = podlens(real_cluster, command, "-A", "-o", "json", *OPERATOR)
        assert done.returncode == EXIT_OK, done.stderr
        doc = json.loads(done.stdout)
        assert doc["unreached"] == []
        return {(i["node"], *key(i)) for i in doc["items"]}

    pods = merged("pods", pod_key)
    assert pods == own.union("/v1/pods", pod_key)
    # Every node answered with its own pods: the test pods where they were put.
    assert {n for n, _, name, _ in pods if name in workloads} == set(three_nodes)
    for node, _, name, _ in pods:
        if name in workloads:
            assert workloads[name] == node, (name, node)

    # Findings change as the crash loop goes on: equal when read between two unions.
    def agrees() -> bool:
        before = own.union("/v1/diagnostics", finding_key)
        plugin = merged("diagnose", finding_key)
        after = own.union("/v1/diagnostics", finding_key)
        return before == plugin == after and (three_nodes[1], NS, "plugin-crash") in {
            (n, ns, p) for n, ns, p, _ in plugin
        }

    wait_for("diagnose -A equal to the agents' own findings", agrees, 120, interval=2.0)


def test_one_agent_stopped_gives_a_partial_answer_naming_its_node(
    real_cluster: RealCluster, three_nodes: list[str], workloads: dict[str, str]
) -> None:
    stopped = three_nodes[2]
    agent_pod = _agents(real_cluster)[stopped]["metadata"]["name"]
    done = podlens(real_cluster, "pod", agent_pod, "-n", AGENT_NS, "-o", "json", *OPERATOR)
    assert done.returncode == EXIT_OK, done.stderr
    pid = json.loads(done.stdout)["containers"][0]["pid"]
    os.kill(pid, signal.SIGSTOP)
    try:
        done = podlens(real_cluster, "pods", "-A", "--node-timeout", "3", *OPERATOR)
    finally:
        os.kill(pid, signal.SIGCONT)
    assert done.returncode == EXIT_PARTIAL, done.stderr
    assert "partial answer: 1 of 3 nodes did not answer" in done.stderr
    unreached = [line.split() for line in done.stderr.splitlines() if line.startswith(stopped)]
    assert unreached, done.stderr
    assert unreached[0][:3] == [stopped, "timed", "out"]
    answered = {name for name, node in workloads.items() if node != stopped}
    assert all(name in done.stdout for name in answered), done.stdout
    assert "plugin-sleep-2" not in done.stdout
    note(f"kubectl podlens with the agent of {stopped} stopped: exit {done.returncode}")


def _kubeconfig_for(
    cluster: RealCluster,
    tmp: Path,
    account: str,
    bindings: list[dict[str, Any]],
    audiences: tuple[str, ...] = (SERVICE_ACCOUNT_ISSUER, "podlens"),
) -> str:
    """A kubeconfig with a bearer token of ``account`` minted for ``audiences``."""
    cluster.apply(
        [
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": account, "namespace": NS},
            },
            *bindings,
        ]
    )
    flags = [f"--audience={a}" for a in audiences]
    token = cluster.kubectl("create", "token", account, "-n", NS, *flags).stdout.strip()
    admin = yaml.safe_load(Path(cluster.kubeconfig).read_text())
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": admin["clusters"],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [
            {
                "name": account,
                "context": {
                    "cluster": admin["clusters"][0]["name"],
                    "user": account,
                    "namespace": NS,
                },
            }
        ],
        "current-context": account,
    }
    path = tmp / f"{account}-{len(audiences)}.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def _binding(
    kind: str, name: str, role_kind: str, role: str, account: str, namespace: str | None = None
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": kind,
        "metadata": meta,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role},
        "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": NS}],
    }


def test_a_user_without_pods_portforward_is_told_which_permission_is_missing(
    real_cluster: RealCluster, three_nodes: list[str], tmp_path: Path
) -> None:
    # The viewer role on every node, but no way through the API server to the agents.
    kubeconfig = _kubeconfig_for(
        real_cluster,
        tmp_path,
        "plugin-no-forward",
        [
            _binding(
                "ClusterRoleBinding",
                "plugin-no-forward-viewer",
                "ClusterRole",
                "podlens-viewer",
                "plugin-no-forward",
            )
        ],
    )
    done = podlens(real_cluster, "pods", "-A", kubeconfig=kubeconfig)
    assert done.returncode == EXIT_ERROR, done.stdout
    assert done.stderr.startswith(
        "error: you may not create pods/portforward in namespace podlens-system"
    ), done.stderr
    assert "kubectl auth can-i create pods/portforward -n podlens-system" in done.stderr


def test_a_kubeconfig_bearer_token_reaches_every_agent_and_a_token_request_needs_its_permission(
    real_cluster: RealCluster, three_nodes: list[str], workloads: dict[str, str], tmp_path: Path
) -> None:
    account = "plugin-user"
    real_cluster.apply(
        [
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": {"name": "plugin-reach-agents", "namespace": AGENT_NS},
                "rules": [
                    {"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "get"]},
                    # A WebSocket tunnel: its upgrade is a GET, authorized as get and create.
                    {
                        "apiGroups": [""],
                        "resources": ["pods/portforward"],
                        "verbs": ["get", "create"],
                    },
                ],
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": {"name": "plugin-list-nodes"},
                "rules": [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["list"]}],
            },
        ]
    )
    kubeconfig = _kubeconfig_for(
        real_cluster,
        tmp_path,
        account,
        [
            _binding(
                "RoleBinding", f"{account}-reach", "Role", "plugin-reach-agents", account, AGENT_NS
            ),
            _binding(
                "ClusterRoleBinding",
                f"{account}-nodes",
                "ClusterRole",
                "plugin-list-nodes",
                account,
            ),
            _binding(
                "ClusterRoleBinding", f"{account}-viewer", "ClusterRole", "podlens-viewer", account
            ),
        ],
    )
    done = podlens(real_cluster, "agents", kubeconfig=kubeconfig)
    assert done.returncode == EXIT_OK, done.stderr
    rows = [line.split() for line in done.stdout.splitlines()[1:]]
    assert sorted(r[0] for r in rows) == sorted(three_nodes)
    assert all(r[4] == "yes" for r in rows), done.stdout
    done = podlens(real_cluster, "pods", "-n", NS, "-o", "json", kubeconfig=kubeconfig)
    assert done.returncode == EXIT_OK, done.stderr
    assert {i["name"] for i in json.loads(done.stdout)["items"]} >= set(workloads)
    # The same account's token for the API server alone is never sent to the agents.
    api_only = _kubeconfig_for(real_cluster, tmp_path, account, [], (SERVICE_ACCOUNT_ISSUER,))
    done = podlens(real_cluster, "pods", kubeconfig=api_only)
    assert done.returncode == EXIT_ERROR
    assert f"is for {SERVICE_ACCOUNT_ISSUER}, not podlens: it is not sent" in done.stderr
    # Without create serviceaccounts/token, no TokenRequest: the message says so.
    done = podlens(real_cluster, "pods", *OPERATOR, kubeconfig=kubeconfig)
    assert done.returncode == EXIT_ERROR
    assert done.stderr.startswith(
        "error: you may not create serviceaccounts/token in namespace default"
    ), done.stderr


def test_a_client_certificate_kubeconfig_takes_the_token_request_path(
    real_cluster: RealCluster, three_nodes: list[str], workloads: dict[str, str]
) -> None:
    admin = yaml.safe_load(Path(real_cluster.kubeconfig).read_text())
    assert "client-certificate" in admin["users"][0]["user"]
    done = podlens(real_cluster, "pods", "-A")
    assert done.returncode == EXIT_ERROR
    assert "--as-serviceaccount NAMESPACE/NAME" in done.stderr
    done = podlens(real_cluster, "pod", "plugin-sleep-1", *OPERATOR)
    assert done.returncode == EXIT_OK, done.stderr
    assert done.stdout.startswith(f"Node: {three_nodes[1]}\n"), done.stdout
    assert "plugin-sleep-1" in done.stdout


def test_connections_are_reused_and_pod_commands_reach_one_node(
    real_cluster: RealCluster, three_nodes: list[str], workloads: dict[str, str]
) -> None:
    async def forwards(argv: list[str]) -> tuple[int, int]:
        options = cli.options_from([*argv, "--kubeconfig", real_cluster.kubeconfig, *OPERATOR])
        cluster = Cluster(Connection(options.kubeconfig, None, options.request_timeout))
        try:
            token = cli.agent_token(cluster, options)
            links = PortForwardLinks(cluster, token, options.node_timeout)
            sink = io.StringIO()
            status = await cli.run(options, cluster, AgentApi(links), sink, sink)
            return status, links.forwards_opened
        finally:
            cluster.close()

    # Two requests to one node (its /v1/node and its problem pods): one port-forward.
    assert asyncio.run(forwards(["node", three_nodes[1]])) == (EXIT_OK, 1)
    assert asyncio.run(forwards(["pod", "plugin-sleep-2"])) == (EXIT_OK, 1)
    assert asyncio.run(forwards(["pods", "-A"])) == (EXIT_OK, 3)


def test_kill_and_watch_through_the_pods_node_streams_every_phase(
    real_cluster: RealCluster, three_nodes: list[str], workloads: dict[str, str]
) -> None:
    done = podlens(real_cluster, "kill-and-watch", "plugin-sleep-2", "-c", "app", *OPERATOR)
    assert done.returncode == EXIT_OK, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"node {three_nodes[2]}: default/plugin-sleep-2, app, pid ")
    phases = [line.split()[1] for line in lines if line.startswith("  ")]
    assert "signal_sent" in phases, lines
    assert len(phases) >= 3, lines
    assert lines[-1].startswith("healed in "), lines
    note(f"kubectl podlens kill-and-watch on {three_nodes[2]}: {lines[-1]}")
