"""Why a pod is not working: pure rules over what the API server and the node know.

The caller gathers a ``DiagnosisInput`` (the API's pod and events, the joined
``PodView``, the last log lines, and a few host and cluster facts) and calls
``diagnose``; no rule does I/O, and ``now`` comes in with the input. Each
``Finding`` names its rule, the container, since when, the evidence with its
source, the likely cause, and the commands to look further.

Rule ids (stable; clients may match on them):

``init-waiting``
    the init container the pod waits on (Init:i/N) has run too long; what its
    command waits for (``nslookup``/``getent``/``dig`` names, ``wget``/``curl``
    URLs, ``nc`` host and port, files) and whether that Service exists
``init-crashloop``
    Init:CrashLoopBackOff, with exit code, backoff step and next try
``init-failed``
    Init:Error / Init:ExitCode:N / Init:OOMKilled; critical under
    restartPolicy Never, where the pod has failed for good
``stuck-creating``
    a container not created after a while (ContainerCreating,
    PodInitializing, Init:0/N), with FailedMount / FailedCreatePodSandBox
``image-pull``
    ErrImagePull, ImagePullBackOff, InvalidImageName, ErrImageNeverPull,
    classified not-found / unauthorized / network / rate-limited / policy /
    invalid-name, and whether the node holds the image
``config-error``
    CreateContainerConfigError naming the missing ConfigMap, Secret or key
``start-error``
    RunContainerError / CreateContainerError / StartError (exit 128), e.g.
    executable not found in $PATH
``crashloop``
    app containers and sidecars exiting and restarted: exit code decoded,
    restarts, the previous attempt's logs, backoff step and next try
``container-failed``
    an app container that failed and will not be restarted
``oom-killed``
    OOMKilled with the memory limit, or OOM kills the cgroup counted while the
    main process survived
``not-ready``
    running but not ready (failing readiness or startup probe), or a container
    ended for good while the others run (READY 1/2)
``port-not-listening``
    a declared TCP containerPort nothing listens on in the pod's network namespace
``volume-not-shared``
    containers that should share a volume's files and do not: different host
    paths for one volume, or a path used without mounting the volume behind it
``terminating-stuck``
    deletionTimestamp passed: finalizers, containers still running, a lost node
``evicted``
    evicted for node pressure, with the resource
``container-status-unknown``
    kubelet lost track of a container (ContainerStatusUnknown) or the node
    stopped reporting (status Unknown)
``unschedulable``
    PodScheduled False: Unschedulable, with the scheduler's message
``mismatch-<kind>``
    each disagreement between the API and the runtime the pod view found
    (``mismatch-no-sandbox``, ``mismatch-orphan-container``, ...); volume
    disagreements come out as ``volume-not-shared``
``api-unavailable``
    only the runtime's view could be checked

The rules' layer: imports the domain and the standard library only; no adapter, no errors,
no settings.
"""

from agent.diagnose._config import MissingConfig, classify_start, missing_config
from agent.diagnose._engine import RULES, diagnose
from agent.diagnose._exitcodes import ExitMeaning, decode_exit, signal_name
from agent.diagnose._image import classify_pull, registry_of
from agent.diagnose._types import (
    DEFAULT_THRESHOLDS,
    ContainerLogs,
    DiagnosisInput,
    Evidence,
    EvidenceKind,
    Finding,
    Thresholds,
)
from agent.diagnose._waits import WaitPlan, WaitTarget, service_for, wait_plan
from agent.domain.backoff import (
    BACKOFF_RESET,
    INITIAL_BACKOFF,
    MAX_BACKOFF,
    Backoff,
    backoff_for_restarts,
    backoff_from_message,
    current_backoff,
    parse_go_duration,
)
from agent.domain.severity import SEVERITY_RANK, Severity

RULE_IDS: tuple[str, ...] = tuple(rule_id for rule_id, _ in RULES)

__all__ = [
    "BACKOFF_RESET",
    "DEFAULT_THRESHOLDS",
    "INITIAL_BACKOFF",
    "MAX_BACKOFF",
    "RULE_IDS",
    "SEVERITY_RANK",
    "Backoff",
    "ContainerLogs",
    "DiagnosisInput",
    "Evidence",
    "EvidenceKind",
    "ExitMeaning",
    "Finding",
    "MissingConfig",
    "Severity",
    "Thresholds",
    "WaitPlan",
    "WaitTarget",
    "backoff_for_restarts",
    "backoff_from_message",
    "classify_pull",
    "classify_start",
    "current_backoff",
    "decode_exit",
    "diagnose",
    "missing_config",
    "parse_go_duration",
    "registry_of",
    "service_for",
    "signal_name",
    "wait_plan",
]
