"""The lab's stand-in kubelet: runs the pods bound to the lab node through CRI, as kubelet does.

Owns ``kubelet`` (the node loop and ``LabKubelet``), ``pod`` (one pod's
worker: sandbox, init ordering, sidecars, restarts, status), ``spec`` (the
manifest reader that refuses what it cannot honour), ``runtime`` (what CRI
says of a pod), ``probe``, ``backoff``, ``events`` and ``api`` (its client of
the API server). Imports ``lab.cri_pods`` for CRI, ``lab.apitime`` and
``lab.errors``; of the agent only ``agent.domain.backoff`` (kubelet's back-off
numbers), never its runtime code. It talks to the API server over HTTP only.
"""

from lab.kubelet.kubelet import LabKubelet
from lab.kubelet.spec import LAB_HOST_PATH_PREFIX, ManifestError, read_pod, unsupported_fields

__all__ = ["LAB_HOST_PATH_PREFIX", "LabKubelet", "ManifestError", "read_pod", "unsupported_fields"]
