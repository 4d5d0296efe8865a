"""What a cluster serves and the stand-in lab does not, and how the lab says so.

kubectl only sends a request for a resource that discovery lists; for any
other name it answers "the server doesn't have a resource type" on its own,
which reads like a typo. So discovery lists the resources a CKAD exercise
reaches for (Deployments, Jobs, ConfigMaps, Secrets, Ingresses, ...), and every
request for one is a 404 whose message names what the lab lacks and what to
do instead, never a bare NotFound. Services are stored (the agent reads
them) but nothing serves them; creating one says so in a warning kubectl
prints.

Owns the list of unserved resources and their messages. Imports
``lab.apiserver.status`` only.
"""

from __future__ import annotations

from typing import Any, Final

from lab.apiserver.status import ApiStatusError

JSON = dict[str, Any]

_NO_CONTROLLERS: Final = (
    "it runs no controller manager, so nothing would make their pods; apply the Pod "
    "itself, or use the real node (python -m lab up --real)"
)
_NO_STORE: Final = (
    "it stores Pods, Events, Services and its Node only; a pod that refers to one waits "
    "with CreateContainerConfigError as when it is missing (python -m lab up --real has them)"
)
_NO_NETWORK: Final = (
    "it has no cluster network services (no kube-proxy, no cluster DNS, no ingress or policy "
    "controller); reach a pod by its IP (kubectl get pods -o wide), or use the real node "
    "(python -m lab up --real)"
)
_NO_STORAGE: Final = (
    "it has no volume provisioning; use emptyDir or hostPath (under /tmp/podlens-lab), or "
    "the real node (python -m lab up --real)"
)
_NO_AUTHZ: Final = (
    "it authorizes every request and keeps no accounts or roles; use the real node "
    "(python -m lab up --real) to try RBAC"
)

# (group, version) -> resource -> (kind, namespaced, why)
_UNSERVED: Final[dict[tuple[str, str], dict[str, tuple[str, bool, str]]]] = {
    ("", "v1"): {
        "configmaps": ("ConfigMap", True, _NO_STORE),
        "secrets": ("Secret", True, _NO_STORE),
        "serviceaccounts": ("ServiceAccount", True, _NO_AUTHZ),
        "persistentvolumeclaims": ("PersistentVolumeClaim", True, _NO_STORAGE),
        "persistentvolumes": ("PersistentVolume", False, _NO_STORAGE),
        "endpoints": ("Endpoints", True, _NO_NETWORK),
        "replicationcontrollers": ("ReplicationController", True, _NO_CONTROLLERS),
        "resourcequotas": ("ResourceQuota", True, _NO_CONTROLLERS),
        "limitranges": ("LimitRange", True, _NO_CONTROLLERS),
    },
    ("apps", "v1"): {
        "deployments": ("Deployment", True, _NO_CONTROLLERS),
        "replicasets": ("ReplicaSet", True, _NO_CONTROLLERS),
        "statefulsets": ("StatefulSet", True, _NO_CONTROLLERS),
        "daemonsets": ("DaemonSet", True, _NO_CONTROLLERS),
    },
    ("batch", "v1"): {
        "jobs": ("Job", True, _NO_CONTROLLERS),
        "cronjobs": ("CronJob", True, _NO_CONTROLLERS),
    },
    ("networking.k8s.io", "v1"): {
        "ingresses": ("Ingress", True, _NO_NETWORK),
        "networkpolicies": ("NetworkPolicy", True, _NO_NETWORK),
    },
    ("autoscaling", "v2"): {
        "horizontalpodautoscalers": ("HorizontalPodAutoscaler", True, _NO_CONTROLLERS),
    },
    ("policy", "v1"): {
        "poddisruptionbudgets": ("PodDisruptionBudget", True, _NO_CONTROLLERS),
    },
    ("coordination.k8s.io", "v1"): {
        "leases": (
            "Lease",
            True,
            "its kubelet registers the Node and keeps no heartbeat Lease; the Node's Ready "
            "condition says whether it runs",
        ),
    },
    ("rbac.authorization.k8s.io", "v1"): {
        "roles": ("Role", True, _NO_AUTHZ),
        "rolebindings": ("RoleBinding", True, _NO_AUTHZ),
        "clusterroles": ("ClusterRole", False, _NO_AUTHZ),
        "clusterrolebindings": ("ClusterRoleBinding", False, _NO_AUTHZ),
    },
}
_SHORT_NAMES: Final = {
    "configmaps": ["cm"],
    "serviceaccounts": ["sa"],
    "persistentvolumeclaims": ["pvc"],
    "persistentvolumes": ["pv"],
    "endpoints": ["ep"],
    "replicationcontrollers": ["rc"],
    "resourcequotas": ["quota"],
    "limitranges": ["limits"],
    "deployments": ["deploy"],
    "replicasets": ["rs"],
    "statefulsets": ["sts"],
    "daemonsets": ["ds"],
    "cronjobs": ["cj"],
    "ingresses": ["ing"],
    "networkpolicies": ["netpol"],
    "horizontalpodautoscalers": ["hpa"],
    "poddisruptionbudgets": ["pdb"],
}

UNSERVED_CORE: Final = frozenset(_UNSERVED[("", "v1")])
UNSERVED_GROUPS: Final[dict[str, str]] = {g: v for g, v in _UNSERVED if g}
SERVICE_WARNING: Final = (
    "the stand-in lab stores this Service but nothing serves it: no cluster IP, kube-proxy "
    "or cluster DNS; reach pods by their IPs, or use the real node (python -m lab up --real)"
)


def unserved(resource: str, group: str) -> ApiStatusError:
    """The 404 for a request on a resource the lab does not serve, saying why."""
    version = UNSERVED_GROUPS.get(group, "v1")
    entry = _UNSERVED.get((group, version), {}).get(resource)
    qualified = f"{resource}.{group}" if group else resource
    if entry is None:
        message = f"the stand-in lab does not serve {qualified or 'this resource'}"
        kind = resource
    else:
        kind, _, why = entry
        message = f"the stand-in lab does not serve {qualified}: {why}"
    return ApiStatusError(404, "NotFound", message, {"group": group, "kind": kind})


def unserved_kinds(group: str, version: str) -> list[tuple[str, str, bool]]:
    """(kind, plural, namespaced) of every unserved resource of one group version."""
    return [
        (kind, name, namespaced)
        for name, (kind, namespaced, _) in sorted(_UNSERVED.get((group, version), {}).items())
    ]


def unserved_discovery_groups() -> list[tuple[str, str]]:
    """(group, version) of every named group that is listed but not served."""
    return sorted((g, v) for g, v in _UNSERVED if g)


def unserved_group_resources(group: str, version: str) -> JSON:
    """The discovery list of a group's unserved resources (``kubectl api-resources`` shows them)."""
    resources = [
        {
            "name": name,
            "singularName": kind.lower(),
            "namespaced": namespaced,
            "kind": kind,
            "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
            "shortNames": _SHORT_NAMES.get(name, []),
        }
        for name, (kind, namespaced, _) in sorted(_UNSERVED.get((group, version), {}).items())
    ]
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": resources,
    }
