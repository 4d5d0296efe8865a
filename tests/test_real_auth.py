"""Auth for real, through ``kubectl port-forward``: the real API server reviews every token.

The agent runs from its DaemonSet; the requests reach it through the lab's
port-forward, as people reach it. Each caller is a ServiceAccount of its
own, bound to the example roles of ``daemonset/examples/`` exactly as
``daemonset/README.md`` says, with a token minted for audience ``podlens``.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.real_cluster import RealCluster, wait_for

pytest_plugins = ("tests.real_cluster",)
pytestmark = [pytest.mark.containerd, pytest.mark.real]

NS = "default"
POD = "auth-target"
AGENT_SA = "system:serviceaccount:podlens-system:podlens-agent"


def _account(cluster: RealCluster, name: str, bindings: list[tuple[str, str, str | None]]) -> str:
    """A ServiceAccount bound to ``(kind, role, namespace)`` bindings; its podlens token."""
    objects: list[dict[str, object]] = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": NS}}
    ]
    for kind, role, namespace in bindings:
        meta: dict[str, object] = {"name": f"{name}-{role}"}
        if namespace is not None:
            meta["namespace"] = namespace
        objects.append(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": kind,
                "metadata": meta,
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": role,
                },
                "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": NS}],
            }
        )
    cluster.apply(objects)
    done = cluster.kubectl("create", "token", name, "-n", NS, "--audience", "podlens")
    return done.stdout.strip()


def _ask(cluster: RealCluster, method: str, path: str, token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    body = {"container": "app", "dry_run": True} if method == "POST" else None
    with httpx.Client(base_url=cluster.agent_url, verify=False, timeout=20) as client:
        return client.request(method, path, headers=headers, json=body)


@pytest.fixture(scope="module")
def target(real_cluster: RealCluster) -> Iterator[str]:
    real_cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": POD, "namespace": NS},
            "spec": {
                "containers": [
                    {
                        "name": "app",
                        "image": "busybox",
                        "command": ["sh", "-c", "echo hello from auth-target; sleep 3600"],
                    }
                ]
            },
        }
    )
    wait_for(
        "auth-target running in the agent's view",
        lambda: any(
            p["name"] == POD and p["status"] == "Running"
            for p in real_cluster.agent_json(f"/v1/pods?namespace={NS}")["items"]
        ),
        90,
    )
    yield POD
    real_cluster.delete_pods([POD])


def test_no_token_is_401_and_a_token_for_the_api_server_is_401(
    real_cluster: RealCluster, target: str
) -> None:
    assert _ask(real_cluster, "GET", "/v1/pods", None).status_code == 401
    # A token minted for the API server's own audience is not one for podlens.
    api_token = real_cluster.kubectl("create", "token", "default", "-n", NS).stdout.strip()
    answer = _ask(real_cluster, "GET", "/v1/pods", api_token)
    assert answer.status_code == 401, answer.text


def test_a_token_without_the_permission_is_403(real_cluster: RealCluster, target: str) -> None:
    token = _account(real_cluster, "nobody", [])
    answer = _ask(real_cluster, "GET", "/v1/pods", token)
    assert answer.status_code == 403, answer.text
    assert "nodes/podlens" in answer.json()["message"]


def test_the_viewer_role_reads_and_does_nothing_more(
    real_cluster: RealCluster, target: str
) -> None:
    token = _account(real_cluster, "viewer", [("ClusterRoleBinding", "podlens-viewer", None)])
    assert _ask(real_cluster, "GET", "/v1/pods", token).status_code == 200
    assert _ask(real_cluster, "GET", "/v1/node", token).status_code == 200
    # Logs quote what the pod printed: the namespace's pods/log is needed too.
    logs = _ask(real_cluster, "GET", f"/v1/pods/{NS}/{target}/logs", token)
    assert logs.status_code == 403, logs.text
    kill = _ask(real_cluster, "POST", f"/v1/pods/{NS}/{target}/kill-and-watch", token)
    assert kill.status_code == 403, kill.text


def test_the_viewer_with_pods_log_in_the_namespace_reads_its_logs(
    real_cluster: RealCluster, target: str
) -> None:
    token = _account(
        real_cluster,
        "log-reader",
        [
            ("ClusterRoleBinding", "podlens-viewer", None),
            ("RoleBinding", "podlens-pod-logs", NS),
        ],
    )
    logs = _ask(real_cluster, "GET", f"/v1/pods/{NS}/{target}/logs", token)
    assert logs.status_code == 200, logs.text
    assert any("hello from auth-target" in line["text"] for line in logs.json()["lines"])
    # Another namespace's pods stay closed to it.
    other = _ask(real_cluster, "GET", "/v1/pods/podlens-system/nothing-here/logs", token)
    assert other.status_code == 403, other.text


def test_the_operator_role_may_plan_a_kill_where_it_may_delete_pods(
    real_cluster: RealCluster, target: str
) -> None:
    no_delete = _account(
        real_cluster, "op-nodelete", [("ClusterRoleBinding", "podlens-operator", None)]
    )
    refused = _ask(real_cluster, "POST", f"/v1/pods/{NS}/{target}/kill-and-watch", no_delete)
    assert refused.status_code == 403, refused.text
    token = _account(
        real_cluster,
        "operator",
        [
            ("ClusterRoleBinding", "podlens-operator", None),
            ("RoleBinding", "podlens-pod-kill", NS),
        ],
    )
    plan = _ask(real_cluster, "POST", f"/v1/pods/{NS}/{target}/kill-and-watch", token)
    assert plan.status_code == 200, plan.text
    assert plan.json()["dry_run"] is True
    assert plan.json()["plan"]["target"]["container"] == "app"


def _can(cluster: RealCluster, verb: str, resource: str, namespace: str | None = None) -> bool:
    args = ["auth", "can-i", verb, resource, f"--as={AGENT_SA}"]
    args += ["-n", namespace] if namespace else ["--all-namespaces"]
    done = cluster.kubectl(*args, check=False)
    return done.stdout.strip() == "yes"


def _granted(cluster: RealCluster, user: str) -> set[tuple[str, str]]:
    """(resource, verb) pairs ``kubectl auth can-i --list`` shows for ``user``."""
    listed = cluster.kubectl("auth", "can-i", "--list", f"--as={user}")
    granted: set[tuple[str, str]] = set()
    # Resource rows start at the first column; non-resource URLs are indented.
    for line in listed.stdout.splitlines()[1:]:
        if not line or line[0].isspace():
            continue
        resource = line.split()[0]
        verbs = line[line.rindex("[") + 1 : line.rindex("]")].split()
        granted |= {(resource, verb) for verb in verbs}
    return granted


def test_the_agents_own_account_can_review_and_read_pods_and_nothing_more(
    real_cluster: RealCluster,
) -> None:
    for verb, resource in (
        ("create", "tokenreviews.authentication.k8s.io"),
        ("create", "subjectaccessreviews.authorization.k8s.io"),
        ("list", "pods"),
        ("watch", "pods"),
        ("get", "events"),
    ):
        assert _can(real_cluster, verb, resource), f"the agent may not {verb} {resource}"
    for verb, resource in (
        ("get", "secrets"),
        ("list", "secrets"),
        ("create", "pods"),
        ("delete", "pods"),
        ("create", "pods/exec"),
        ("create", "events"),
        ("update", "pods"),
        ("get", "nodes/proxy"),
        ("create", "serviceaccounts/token"),
        ("list", "configmaps"),
    ):
        assert not _can(real_cluster, verb, resource), f"the agent may {verb} {resource}"
    # What every authenticated account has (self reviews, trust bundles) aside,
    # exactly the agent's ClusterRole: pods, events, services, the two reviews.
    own = _granted(real_cluster, AGENT_SA) - _granted(
        real_cluster, "system:serviceaccount:default:podlens-baseline"
    )
    assert own == {
        ("pods", "get"),
        ("pods", "list"),
        ("pods", "watch"),
        ("events", "get"),
        ("events", "list"),
        ("services", "get"),
        ("services", "list"),
        ("tokenreviews.authentication.k8s.io", "create"),
        ("subjectaccessreviews.authorization.k8s.io", "create"),
    }, sorted(own)
