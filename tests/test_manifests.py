"""The deployment in daemonset/: rendered, validated, and held to what the agent needs.

No cluster and no kustomize binary are needed. The kustomizations are
rendered here by a small renderer that handles exactly the kustomize fields
they use (resources, components, JSON 6902 patches, labels, images) and
refuses any other, so a kustomization that grows a feature this renderer
does not model fails loudly instead of being checked wrongly; where kubectl
or kustomize is installed, its rendering must equal this one. Every rendered
object is validated strictly against the Kubernetes OpenAPI schemas shipped
by kubernetes-validate, for the newest Kubernetes version it knows and for
the oldest, and then checked against the agent itself: its settings, its
routes, its CRI sockets.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from agent.api.app import create_app
from agent.cri import KNOWN_ENDPOINTS, socket_path
from agent.kube import DisabledPodCache
from agent.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "daemonset"
COMPONENT = DEPLOY / "components" / "kill-and-watch"
EXAMPLES = DEPLOY / "examples"
NAMESPACE = "podlens-system"
AGENT = "podlens-agent"

Doc = dict[str, Any]


def _project_version() -> str:
    with (ROOT / "pyproject.toml").open("rb") as f:
        version: str = tomllib.load(f)["project"]["version"]
    return version


def tool_missing(reason: str) -> None:
    """Fail under CI, skip elsewhere: CI installs every checker."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must have it: scripts/install-deps.sh)", pytrace=False)
    pytest.skip(reason)


# --------------------------------------------------------------- the renderer

_KUSTOMIZATION_FIELDS = {
    "apiVersion",
    "kind",
    "resources",
    "components",
    "patches",
    "labels",
    "images",
}
_PATCH_TARGET_FIELDS = {"group", "version", "kind", "name", "namespace"}


def load_docs(path: Path) -> list[Doc]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _kustomization(directory: Path, kind: str) -> Doc:
    k: Doc = yaml.safe_load((directory / "kustomization.yaml").read_text())
    assert k["kind"] == kind, f"{directory}: expected a {kind}"
    unknown = set(k) - _KUSTOMIZATION_FIELDS
    assert not unknown, f"{directory}: kustomize fields the test renderer does not model: {unknown}"
    return k


def kustomize(directory: Path, k: Doc | None = None) -> list[Doc]:
    """Render a kustomization directory the way `kubectl kustomize` would
    (with ``k`` in place of its kustomization.yaml when given)."""
    k = k if k is not None else _kustomization(directory, "Kustomization")
    docs = _load_resources(directory, k)
    for component in k.get("components", []):
        # A component's own resources join the accumulated ones, then its
        # transformers run over all of them.
        comp_dir = (directory / component).resolve()
        ck = _kustomization(comp_dir, "Component")
        docs += _load_resources(comp_dir, ck)
        docs = _transform(comp_dir, ck, docs)
    return _transform(directory, k, docs)


def _load_resources(directory: Path, k: Doc) -> list[Doc]:
    docs: list[Doc] = []
    for entry in k.get("resources", []):
        path = (directory / entry).resolve()
        docs += kustomize(path) if path.is_dir() else load_docs(path)
    return docs


def _transform(directory: Path, k: Doc, docs: list[Doc]) -> list[Doc]:
    docs = copy.deepcopy(docs)
    for patch in k.get("patches", []):
        _apply_patch(directory, patch, docs)
    for label in k.get("labels", []):
        _apply_labels(label, docs)
    for image in k.get("images", []):
        _apply_image(image, docs)
    return docs


def _group_version(doc: Doc) -> tuple[str, str]:
    group, _, version = doc["apiVersion"].rpartition("/")
    return group, version


def _matches(target: Doc, doc: Doc) -> bool:
    unknown = set(target) - _PATCH_TARGET_FIELDS
    assert not unknown, f"patch target selectors the test renderer does not model: {unknown}"
    group, version = _group_version(doc)
    actual = {
        "group": group,
        "version": version,
        "kind": doc["kind"],
        "name": doc["metadata"]["name"],
        "namespace": doc["metadata"].get("namespace"),
    }
    return all(actual[key] == value for key, value in target.items())


def _apply_patch(directory: Path, patch: Doc, docs: list[Doc]) -> None:
    assert set(patch) == {"path", "target"}, f"unsupported patch form: {patch}"
    ops = yaml.safe_load((directory / patch["path"]).read_text())
    assert isinstance(ops, list), "only JSON 6902 patches (a list of operations) are modelled"
    targets = [d for d in docs if _matches(patch["target"], d)]
    assert targets, f"patch {patch['path']} matches nothing"
    for doc in targets:
        for op in ops:
            _json_patch(doc, op)


def _pointer(path: str) -> list[str]:
    assert path.startswith("/"), path
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _json_patch(doc: Doc, op: Doc) -> None:
    *parents, last = _pointer(op["path"])
    node: Any = doc
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    kind = op["op"]
    if isinstance(node, list):
        if kind == "add":
            if last == "-":
                node.append(copy.deepcopy(op["value"]))
            else:
                node.insert(int(last), copy.deepcopy(op["value"]))
        elif kind == "replace":
            node[int(last)] = copy.deepcopy(op["value"])
        elif kind == "remove":
            del node[int(last)]
        else:
            raise AssertionError(f"JSON patch op not modelled: {kind}")
    elif kind in ("add", "replace"):
        assert kind == "add" or last in node, f"replace of a missing member: {op['path']}"
        node[last] = copy.deepcopy(op["value"])
    elif kind == "remove":
        del node[last]
    else:
        raise AssertionError(f"JSON patch op not modelled: {kind}")


def _apply_labels(label: Doc, docs: list[Doc]) -> None:
    assert not label.get("includeSelectors"), "selector labels are not modelled (nor wanted)"
    assert set(label) <= {"pairs", "includeSelectors", "includeTemplates"}, label
    pairs = {str(k): str(v) for k, v in label["pairs"].items()}
    for doc in docs:
        doc["metadata"].setdefault("labels", {}).update(pairs)
        template = doc.get("spec", {}).get("template", {}).get("metadata", {})
        if label.get("includeTemplates") and "labels" in template:
            template["labels"].update(pairs)


def _image_name(image: str) -> str:
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return name[: len(name) - len(last)] + last.split(":", 1)[0]


def _apply_image(entry: Doc, docs: list[Doc]) -> None:
    assert set(entry) <= {"name", "newName", "newTag", "digest"}, entry
    for container in _all_containers(docs):
        if _image_name(container["image"]) != entry["name"]:
            continue
        name = entry.get("newName", entry["name"])
        if "digest" in entry:
            container["image"] = f"{name}@{entry['digest']}"
        elif "newTag" in entry:
            container["image"] = f"{name}:{entry['newTag']}"
        else:
            tag = container["image"][len(_image_name(container["image"])) :]
            container["image"] = name + tag


def _pod_spec(doc: Doc) -> Doc | None:
    if doc["kind"] == "Pod":
        spec: Doc = doc["spec"]
        return spec
    template = doc.get("spec", {}).get("template")
    return template["spec"] if template else None


def _all_containers(docs: list[Doc]) -> Iterator[Doc]:
    for doc in docs:
        spec = _pod_spec(doc)
        if spec is not None:
            yield from spec.get("initContainers", [])
            yield from spec.get("containers", [])


# ------------------------------------------------------------------ fixtures

# How the kustomization says to turn kill-and-watch on: uncomment these.
_COMMENTED_COMPONENT = "# components:\n#   - components/kill-and-watch\n"


def with_kill_and_watch_text() -> str:
    text = (DEPLOY / "kustomization.yaml").read_text()
    assert _COMMENTED_COMPONENT in text
    return text.replace(_COMMENTED_COMPONENT, "components:\n  - components/kill-and-watch\n")


def render_base() -> list[Doc]:
    return kustomize(DEPLOY)


def render_kill_and_watch() -> list[Doc]:
    k = yaml.safe_load(with_kill_and_watch_text())
    assert k["components"] == ["components/kill-and-watch"]
    return kustomize(DEPLOY, k)


@pytest.fixture(scope="module")
def base() -> list[Doc]:
    return render_base()


@pytest.fixture(scope="module")
def overlay() -> list[Doc]:
    return render_kill_and_watch()


def examples() -> list[Doc]:
    return [d for path in sorted(EXAMPLES.glob("*.yaml")) for d in load_docs(path)]


def find(docs: list[Doc], kind: str, name: str) -> Doc:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def daemonset(docs: list[Doc]) -> Doc:
    return find(docs, "DaemonSet", AGENT)


def agent_container(docs: list[Doc]) -> Doc:
    spec = daemonset(docs)["spec"]["template"]["spec"]
    assert not spec.get("initContainers")
    assert [c["name"] for c in spec["containers"]] == ["agent"]
    container: Doc = spec["containers"][0]
    return container


def env_of(container: Doc) -> dict[str, Doc]:
    names = [e["name"] for e in container.get("env", [])]
    assert len(names) == len(set(names)), f"duplicate env vars: {names}"
    return {e["name"]: e for e in container.get("env", [])}


# ---------------------------------------------------------- schema validation


def _kubernetes_validate() -> ModuleType:
    try:
        import kubernetes_validate
    except ImportError:
        tool_missing("kubernetes-validate is not installed (pip install kubernetes-validate)")
        raise
    module: ModuleType = kubernetes_validate
    return module


def _versions() -> list[str]:
    try:
        import kubernetes_validate.utils as utils
    except ImportError:
        return ["newest"]
    known = sorted(set(utils.all_versions()), key=lambda v: tuple(int(p) for p in v.split(".")))
    return [known[-1], known[0]]


@pytest.mark.parametrize("version", _versions())
@pytest.mark.parametrize("which", ["base", "kill-and-watch", "examples"])
def test_every_object_validates_strictly(which: str, version: str) -> None:
    kv = _kubernetes_validate()
    docs = {
        "base": render_base(),
        "kill-and-watch": render_kill_and_watch(),
        "examples": examples(),
    }
    problems = []
    for doc in docs[which]:
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        try:
            kv.validate(doc, version if version != "newest" else kv.latest_version(), strict=True)
        except kv.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            problems.append(f"{where}: {path}: {exc.message}")
        except kv.SchemaNotFoundError as exc:
            problems.append(f"{where}: {exc.message}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("which", ["base", "kill-and-watch"])
def test_renderer_agrees_with_kubectl(which: str, tmp_path: Path) -> None:
    """Where kubectl (or kustomize) is installed, its rendering is the reference."""
    if shutil.which("kubectl"):
        command = ["kubectl", "kustomize"]
    elif shutil.which("kustomize"):
        command = ["kustomize", "build"]
    else:
        tool_missing("neither kubectl nor kustomize is installed")
    copy_dir = tmp_path / "daemonset"
    shutil.copytree(DEPLOY, copy_dir)
    if which == "kill-and-watch":
        (copy_dir / "kustomization.yaml").write_text(with_kill_and_watch_text())
    done = subprocess.run(
        [*command, str(copy_dir)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    reference = [d for d in yaml.safe_load_all(done.stdout) if d is not None]
    ours = render_base() if which == "base" else render_kill_and_watch()

    def key(doc: Doc) -> str:
        return f"{doc['kind']}/{doc['metadata']['name']}"

    assert sorted(ours, key=key) == sorted(reference, key=key)


# ------------------------------------------------------------- the kustomize base


def test_kustomization_lists_every_manifest_and_no_example() -> None:
    k = _kustomization(DEPLOY, "Kustomization")
    on_disk = {p.name for p in DEPLOY.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(k["resources"]) == on_disk
    assert not any("examples" in r for r in k["resources"])


def test_base_holds_exactly_the_agents_objects(base: list[Doc]) -> None:
    kinds = sorted((d["kind"], d["metadata"]["name"]) for d in base)
    assert kinds == sorted(
        [
            ("Namespace", NAMESPACE),
            ("ServiceAccount", AGENT),
            ("ClusterRole", AGENT),
            ("ClusterRoleBinding", AGENT),
            ("DaemonSet", AGENT),
            ("NetworkPolicy", AGENT),
        ]
    )
    for doc in base:
        if doc["kind"] in ("ServiceAccount", "DaemonSet", "NetworkPolicy"):
            assert doc["metadata"]["namespace"] == NAMESPACE


def test_namespace_admits_the_agent(base: list[Doc]) -> None:
    # hostPID and hostPath are refused by the "baseline" level.
    labels = find(base, "Namespace", NAMESPACE)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "privileged"


def test_labels_reach_every_object_and_the_pods_but_not_the_selector(base: list[Doc]) -> None:
    version = _project_version()
    for doc in base:
        labels = doc["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "podlens"
        assert labels["app.kubernetes.io/part-of"] == "podlens"
        assert labels["app.kubernetes.io/version"] == version
    ds = daemonset(base)
    selector = ds["spec"]["selector"]["matchLabels"]
    assert selector == {"app.kubernetes.io/name": "podlens", "app.kubernetes.io/component": "agent"}
    template_labels = ds["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= template_labels.items()
    assert template_labels["app.kubernetes.io/version"] == version


def test_image_is_the_projects_version(base: list[Doc]) -> None:
    container = agent_container(base)
    assert container["image"] == f"podlens:{_project_version()}"
    assert container["imagePullPolicy"] == "IfNotPresent"


# ---------------------------------------------------------------------- RBAC


def rule_set(role: Doc) -> set[tuple[str, str, str]]:
    out = set()
    for rule in role["rules"]:
        assert "nonResourceURLs" not in rule
        assert "resourceNames" not in rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    out.add((group, resource, verb))
    return out


AGENT_RULES = {
    ("", "pods", "get"),
    ("", "pods", "list"),
    ("", "pods", "watch"),
    ("", "events", "get"),
    ("", "events", "list"),
    ("", "services", "get"),
    ("", "services", "list"),
    ("authentication.k8s.io", "tokenreviews", "create"),
    ("authorization.k8s.io", "subjectaccessreviews", "create"),
}
VIEWER_RULES = {("", "nodes/podlens", "get"), ("", "nodes/podlens-logs", "get")}
OPERATOR_RULES = VIEWER_RULES | {("", "nodes/podlens-heal", "create")}
POD_LOGS_RULES = {("", "pods/log", "get")}
POD_KILL_RULES = POD_LOGS_RULES | {("", "pods", "delete")}


def _all_roles(base: list[Doc]) -> list[Doc]:
    return [d for d in base + examples() if d["kind"] in ("ClusterRole", "Role")]


def test_no_role_has_a_wildcard_or_touches_secrets(base: list[Doc]) -> None:
    roles = _all_roles(base)
    assert len(roles) == 5
    for role in roles:
        for group, resource, verb in rule_set(role):
            assert "*" not in (group + resource + verb), role["metadata"]["name"]
            assert resource.split("/")[0] != "secrets", role["metadata"]["name"]


def test_agent_role_is_exactly_what_it_needs(base: list[Doc]) -> None:
    assert rule_set(find(base, "ClusterRole", AGENT)) == AGENT_RULES


def test_binding_gives_the_role_to_the_agents_service_account(base: list[Doc]) -> None:
    binding = find(base, "ClusterRoleBinding", AGENT)
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": AGENT,
    }
    subject = {"kind": "ServiceAccount", "name": AGENT, "namespace": NAMESPACE}
    assert binding["subjects"] == [subject]
    pod = daemonset(base)["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == AGENT
    assert pod["automountServiceAccountToken"] is True
    # Only the pod that asks for the token mounts it.
    assert find(base, "ServiceAccount", AGENT)["automountServiceAccountToken"] is False


def test_example_roles_grant_exactly_the_agents_subresources() -> None:
    docs = examples()
    assert rule_set(find(docs, "ClusterRole", "podlens-viewer")) == VIEWER_RULES
    assert rule_set(find(docs, "ClusterRole", "podlens-operator")) == OPERATOR_RULES


def test_example_namespace_roles_grant_what_the_agent_asks_in_a_pods_namespace() -> None:
    from agent.api import auth

    docs = examples()
    logs = auth.required_pod_access("GET", "/v1/pods/shop/web/logs")
    kill = auth.required_pod_access("POST", "/v1/pods/shop/web/kill-and-watch")
    assert logs is not None
    assert kill is not None
    asked_logs = {("", f"pods/{logs.subresource}", logs.verb)}
    asked_kill = asked_logs | {("", "pods", kill.verb)}
    assert rule_set(find(docs, "ClusterRole", "podlens-pod-logs")) == asked_logs == POD_LOGS_RULES
    assert rule_set(find(docs, "ClusterRole", "podlens-pod-kill")) == asked_kill == POD_KILL_RULES


def test_example_roles_name_what_the_agent_asks_for() -> None:
    try:
        from agent.api import auth
    except ImportError:
        pytest.skip("the agent has no request authorization module")
    asked = {
        ("", f"{p.resource}/{p.subresource}", p.verb)
        for p in (auth.READ, auth.READ_LOGS, auth.HEAL)
    }
    assert asked == OPERATOR_RULES


# ------------------------------------------------------------- the agent's pod


def test_pod_shares_the_hosts_pids_and_nothing_else(base: list[Doc]) -> None:
    pod = daemonset(base)["spec"]["template"]["spec"]
    assert pod["hostPID"] is True
    assert not pod.get("hostNetwork")
    assert not pod.get("hostIPC")
    assert not pod.get("shareProcessNamespace")


def test_runs_on_every_node(base: list[Doc]) -> None:
    pod = daemonset(base)["spec"]["template"]["spec"]
    assert {"operator": "Exists"} in pod["tolerations"]
    assert pod.get("nodeSelector", {}) == {"kubernetes.io/os": "linux"}
    assert "affinity" not in pod


def test_security_context_is_root_without_capabilities(base: list[Doc]) -> None:
    sc = agent_container(base)["securityContext"]
    assert sc["runAsUser"] == 0
    assert not sc.get("privileged")
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert sc["capabilities"]["drop"] == ["ALL"]
    # SYS_PTRACE is opt-in (components/ptrace; tests/test_security_node.py).
    assert sc["capabilities"]["add"] == []


def test_kill_capability_comes_only_with_the_component(overlay: list[Doc]) -> None:
    sc = agent_container(overlay)["securityContext"]
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert sc["capabilities"]["add"] == ["KILL"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False


def test_component_changes_nothing_but_kill(base: list[Doc], overlay: list[Doc]) -> None:
    expected = copy.deepcopy(base)
    container = agent_container(expected)
    container["securityContext"]["capabilities"]["add"].append("KILL")
    container["env"] += [
        {"name": "PODLENS_ENABLE_KILL", "value": "true"},
        {"name": "PODLENS_KILL_NAMESPACES", "value": "podlens-demo"},
    ]
    assert overlay == expected


def _volumes(docs: list[Doc]) -> tuple[dict[str, Doc], dict[str, Doc]]:
    pod = daemonset(docs)["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["name"]: m for m in agent_container(docs)["volumeMounts"]}
    assert set(mounts) == set(volumes)
    return volumes, mounts


AUDIT_DIR = "/var/log/podlens"


def test_host_directories_are_read_only_at_their_own_paths(base: list[Doc]) -> None:
    volumes, mounts = _volumes(base)
    host = {name: v["hostPath"]["path"] for name, v in volumes.items() if "hostPath" in v}
    assert sorted(host.values()) == ["/run/containerd", "/run/crio", AUDIT_DIR, "/var/log/pods"]
    for name, path in host.items():
        assert mounts[name].get("readOnly", False) is (path != AUDIT_DIR), name
        assert mounts[name]["mountPath"] == path, name


def test_tmp_and_the_audit_log_are_the_only_writable_places(base: list[Doc]) -> None:
    volumes, mounts = _volumes(base)
    writable = sorted(m["mountPath"] for m in mounts.values() if not m.get("readOnly"))
    assert writable == ["/tmp", AUDIT_DIR]
    tmp = next(n for n, m in mounts.items() if m["mountPath"] == "/tmp")
    assert "emptyDir" in volumes[tmp]


def test_the_audit_log_outlives_the_pod(base: list[Doc], monkeypatch: pytest.MonkeyPatch) -> None:
    volumes, mounts = _volumes(base)
    settings = _settings_from(agent_container(base), monkeypatch)
    assert settings.audit_log_path is not None
    assert str(settings.audit_log_path.parent) == AUDIT_DIR
    name = next(n for n, m in mounts.items() if m["mountPath"] == AUDIT_DIR)
    assert volumes[name]["hostPath"] == {"path": AUDIT_DIR, "type": "DirectoryOrCreate"}


def test_the_pod_is_kept_out_of_a_service_mesh(base: list[Doc]) -> None:
    annotations = daemonset(base)["spec"]["template"]["metadata"]["annotations"]
    assert annotations["sidecar.istio.io/inject"] == "false"
    assert annotations["linkerd.io/inject"] == "disabled"


def test_the_agents_are_reached_only_from_named_namespaces(base: list[Doc]) -> None:
    policy = find(base, "NetworkPolicy", AGENT)["spec"]
    selector = daemonset(base)["spec"]["selector"]["matchLabels"]
    assert policy["podSelector"] == {"matchLabels": selector}
    assert policy["policyTypes"] == ["Ingress"]
    (rule,) = policy["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": Settings.model_fields["port"].default}]
    (source,) = rule["from"]
    # Namespaces by the name the API server sets, not a label their owners could add.
    assert set(source) == {"namespaceSelector"}
    (expression,) = source["namespaceSelector"]["matchExpressions"]
    assert expression["key"] == "kubernetes.io/metadata.name"
    assert expression["operator"] == "In"
    assert expression["values"]
    assert not (EXAMPLES / "networkpolicy.yaml").exists()


def _mounted_dirs(docs: list[Doc]) -> set[str]:
    _, mounts = _volumes(docs)
    return {m["mountPath"] for m in mounts.values()}


def test_containerd_and_crio_sockets_are_mounted(base: list[Doc]) -> None:
    mounted = _mounted_dirs(base)
    runtimes = {"containerd", "cri-o"}
    wanted = [e for e in KNOWN_ENDPOINTS if e.runtime in runtimes]
    assert {e.runtime for e in wanted} == runtimes
    for endpoint in wanted:
        assert str(Path(endpoint.path).parent) in mounted, endpoint


def test_cri_endpoint_is_a_known_mounted_socket(base: list[Doc]) -> None:
    env = env_of(agent_container(base))
    path = socket_path(env["PODLENS_CRI_ENDPOINT"]["value"])
    assert path in {e.path for e in KNOWN_ENDPOINTS}
    assert str(Path(path).parent) in _mounted_dirs(base)


def _accepted_env_names() -> set[str]:
    names = set()
    for field, info in Settings.model_fields.items():
        alias = info.validation_alias
        if alias is None:
            names.add(f"PODLENS_{field}".upper())
        else:
            choices = getattr(alias, "choices", [alias])
            names |= {c.upper() for c in choices if isinstance(c, str)}
    return names


@pytest.mark.parametrize("which", ["base", "kill-and-watch"])
def test_env_vars_are_settings(which: str) -> None:
    docs = render_base() if which == "base" else render_kill_and_watch()
    unknown = set(env_of(agent_container(docs))) - _accepted_env_names()
    assert not unknown, f"env vars the agent's Settings do not read: {sorted(unknown)}"


_DOWNWARD = {
    "spec.nodeName": "node-a",
    "metadata.name": "podlens-agent-x7k2p",
    "metadata.namespace": NAMESPACE,
}


def _settings_from(container: Doc, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in list(os.environ):
        if name.startswith("PODLENS_") or name in ("NODE_NAME", "POD_NAME", "POD_NAMESPACE"):
            monkeypatch.delenv(name)
    for name, entry in env_of(container).items():
        if "value" in entry:
            monkeypatch.setenv(name, entry["value"])
        else:
            monkeypatch.setenv(name, _DOWNWARD[entry["valueFrom"]["fieldRef"]["fieldPath"]])
    return Settings()


def test_settings_from_the_manifest(base: list[Doc], monkeypatch: pytest.MonkeyPatch) -> None:
    # Kubernetes sets it in every pod: the agent then checks tokens.
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    settings = _settings_from(agent_container(base), monkeypatch)
    # Inside the pod's own network namespace; see the manifest's comment.
    assert settings.host == "0.0.0.0"
    assert settings.tls_mode == "on"
    assert settings.trust_loopback is False
    assert settings.auth_token_audiences == ("podlens",)
    assert settings.resolved_auth_mode == "kubernetes"
    assert settings.node_name == "node-a"
    assert (settings.pod_namespace, settings.pod_name) == (NAMESPACE, "podlens-agent-x7k2p")
    assert settings.cri_endpoint == "unix:///run/containerd/containerd.sock"
    assert settings.enable_kill is False


def test_settings_with_kill_and_watch(overlay: list[Doc], monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings_from(agent_container(overlay), monkeypatch)
    assert settings.enable_kill is True
    assert tuple(settings.kill_namespaces) == ("podlens-demo",)
    assert settings.kill_allow_system is False


def test_demo_pod_is_allowed_by_the_component(overlay: list[Doc]) -> None:
    pod = find(examples(), "Pod", "web")
    label = Settings.model_fields["kill_opt_in_label"].default
    assert pod["metadata"]["labels"][label] == "true"
    env = env_of(agent_container(overlay))
    assert pod["metadata"]["namespace"] in env["PODLENS_KILL_NAMESPACES"]["value"].split(",")


def test_port_is_the_agents_default(base: list[Doc]) -> None:
    ports = agent_container(base)["ports"]
    assert ports == [{"name": "https", "containerPort": 8470, "protocol": "TCP"}]
    assert ports[0]["containerPort"] == Settings.model_fields["port"].default


@pytest.fixture
def app_client(monkeypatch: pytest.MonkeyPatch) -> TestClient:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    settings = Settings(cri_endpoint="unix:///nonexistent.sock")
    app = create_app(settings, pod_cache=DisabledPodCache())
    # Not entered as a context manager: the lifespan (runtime refresh, pod
    # watch) is not started; the probes answer from the initial state.
    return TestClient(app)


def test_probes_hit_the_agents_routes_without_credentials(
    base: list[Doc], app_client: TestClient
) -> None:
    container = agent_container(base)
    app = app_client.app
    # Included routers are not flattened into app.routes in every FastAPI
    # version; the OpenAPI document lists every path the app serves.
    routes = {getattr(r, "path", None) for r in app.routes} | set(app.openapi()["paths"])  # type: ignore[attr-defined]
    liveness = container["livenessProbe"]["httpGet"]
    readiness = container["readinessProbe"]["httpGet"]
    assert (liveness["path"], readiness["path"]) == ("/healthz", "/readyz")
    assert {liveness["path"], readiness["path"]} <= routes
    assert liveness["port"] == readiness["port"] == "https"
    assert liveness["scheme"] == readiness["scheme"] == "HTTPS"
    # Kubelet probes send no token: the probe paths must answer without one.
    # Alive now; not ready (no runtime), which is a 503, not a refusal.
    assert app_client.get(liveness["path"]).status_code == 200
    assert app_client.get(readiness["path"]).status_code == 503


_QUANTITY = re.compile(r"^(\d+(?:\.\d+)?)(m|Ki|Mi|Gi)?$")
_FACTORS = {None: 1.0, "m": 0.001, "Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30}


def quantity(text: str | int) -> float:
    match = _QUANTITY.match(str(text))
    assert match, f"unparsed quantity {text!r}"
    return float(match.group(1)) * _FACTORS[match.group(2)]


def test_resources_are_set(base: list[Doc]) -> None:
    resources = agent_container(base)["resources"]
    requests, limits = resources["requests"], resources["limits"]
    assert quantity(requests["cpu"]) > 0
    # The measured RSS (bench/bench_inventory.py: 89 MiB synced with 220
    # containers) must fit under the request with room to spare.
    assert quantity(requests["memory"]) >= 96 * 2**20
    assert quantity(limits["memory"]) >= 1.5 * quantity(requests["memory"])
    # No CPU limit (throttling would only delay short bursts), or a generous one.
    assert "cpu" not in limits or quantity(limits["cpu"]) >= 1
