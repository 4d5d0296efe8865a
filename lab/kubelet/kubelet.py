"""The lab kubelet: runs the pods bound to the lab node through CRI, as kubelet does.

It lists and watches the API server for the pods with
``spec.nodeName=<node>``, and runs each on its own worker: one sandbox per pod
(pod network, or the node's with ``hostNetwork``), init containers one at a
time, native sidecars, app containers, restarts as new containers with
attempt + 1 under the restart policy and kubelet's CrashLoopBackOff
(10 s doubling to 300 s, reset after 10 minutes), exec/httpGet/tcpSocket
probes, emptyDir and hostPath volumes as bind mounts, the termination
message, a recreated sandbox when the pause process dies. It writes the pod
status back as kubelet writes it and records kubelet's events. A relist of
the runtime every sync period (1 s by default) notices what changed behind
its back. The lab has one node, so the lab kubelet also binds pods that have
no node yet, as the scheduler would (event ``Scheduled`` from
``default-scheduler``).

Everything the agent reads from the runtime (labels, annotations, attempts,
log paths, namespaces) and from the API server (status, conditions, events)
therefore looks as it would on a real node.

What a cluster has and the lab does not:

* cluster DNS: there is no CoreDNS and no Service IPs. Pods get a resolver
  on their own loopback with the cluster's search path, so a Service name
  never resolves; ``until nslookup myservice; do sleep 2; done`` waits
  forever, as it would in a cluster with no such Service (pods whose init
  containers run nslookup get a ``LabNote`` event saying so). No Service
  environment variables are injected either;
* a registry: images come from the lab's own image store only. A missing
  image gives ErrImagePull / ImagePullBackOff with events saying the lab
  cannot pull; ``imagePullPolicy: Always`` is served from the local store;
* ConfigMaps and Secrets: the lab API server stores none, so a reference to
  one fails as a missing one does (CreateContainerConfigError,
  ``configmap "x" not found``) unless it is optional;
* volume sources other than emptyDir and hostPath (under
  ``/tmp/podlens-lab`` only), lifecycle hooks, grpc probes, capabilities,
  privileged containers, affinity, image pull secrets and the other fields
  ``unsupported_fields`` lists: a pod that uses one is not started and each
  container waits with CreateContainerConfigError naming the fields;
* time: ``time_scale`` multiplies every kubelet duration (backoff, probe
  periods and delays, grace periods, active deadlines) so tests run fast;
  messages keep kubelet's nominal values (``back-off 1m20s``), and probe
  timeouts are not shrunk below a second, which would fail healthy
  containers on a busy machine.

Run as a process of the lab::

    python -m lab.kubelet --api-server URL --cri-endpoint unix:///... \\
        --node-name NAME --root DIR [--time-scale F] [--sync-period S]

It logs to stderr and exits 0 on SIGTERM once its loops have stopped; the
pods keep running, as with a kubelet restart, and the next start adopts them.

It registers its Node (``lab.kubelet.node``) and, given a server token,
serves logs, exec and port-forward to the API server (``lab.kubelet.server``).

Owns ``LabKubelet`` (the pod watch, the relist, the scheduler stand-in, the
orphan cleanup) and the process's command line. Imports the rest of
``lab.kubelet``, ``lab.cri_pods``, ``lab.apitime`` and ``lab.errors``.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, Final

from cri_proto import api_pb2
from lab.apitime import rfc3339
from lab.cri_pods import LABEL_POD_NAME, LABEL_POD_NAMESPACE, LABEL_POD_UID, CriPodDriver
from lab.errors import CriCallFailed, LabError
from lab.kubelet.api import ApiClient, ApiError, Watch
from lab.kubelet.backoff import RestartBackoff, RetryDelay
from lab.kubelet.events import EventRecorder, InvolvedPod
from lab.kubelet.node import node_object
from lab.kubelet.pod import KubeletContext, PodWorker, remove_pod_files
from lab.kubelet.runtime import StatusCache
from lab.kubelet.server import KubeletServer, PodRef
from lab.kubelet.spec import (
    DEFAULT_SCHEDULER,
    LAB_HOST_PATH_PREFIX,
    ManifestError,
    Unsupported,
    default_node_labels,
    read_pod,
    unsupported_fields,
)

__all__ = [
    "LAB_HOST_PATH_PREFIX",
    "LabKubelet",
    "ManifestError",
    "Unsupported",
    "main",
    "read_pod",
    "unsupported_fields",
]

_log = logging.getLogger("lab.kubelet")

JSON = dict[str, Any]

DEFAULT_SYNC_PERIOD: Final = 1.0
WATCH_TIMEOUT: Final = 300.0
# kubelet's --runtime-request-timeout default. A shorter deadline turns a
# slow runtime (a burst of pod starts on a loaded node) into StartErrors and
# restarts that a real kubelet would not cause.
CRI_TIMEOUT: Final = 120.0
# Only names the runtime for container IDs; not worth holding start-up for.
VERSION_TIMEOUT: Final = 10.0


def _node_ip() -> str:
    """The node's first global IPv4 address, as kubelet picks an InternalIP."""
    try:
        out = subprocess.run(
            ["ip", "-j", "-4", "addr", "show", "scope", "global"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout
        for link in json.loads(out or "[]"):
            for addr in link.get("addr_info") or []:
                if addr.get("local"):
                    return str(addr["local"])
    except (OSError, ValueError, subprocess.SubprocessError):
        pass
    return "127.0.0.1"


class LabKubelet:
    """The lab kubelet in-process: ``start()`` its loops, ``stop()`` them (pods keep running)."""

    def __init__(
        self,
        api_url: str,
        cri_endpoint: str,
        node_name: str,
        root: Path | str,
        time_scale: float = 1.0,
        *,
        sync_period: float = DEFAULT_SYNC_PERIOD,
        node_ip: str | None = None,
        node_labels: Mapping[str, str] | None = None,
        host_path_prefixes: Sequence[str] = (LAB_HOST_PATH_PREFIX,),
        schedule: bool = True,
        token: str | None = None,
        server_token: str | None = None,
    ) -> None:
        if not time_scale > 0:
            raise LabError(f"time_scale must be positive, got {time_scale}")
        if not sync_period > 0:
            raise LabError(f"sync_period must be positive, got {sync_period}")
        if not node_name:
            raise LabError("node_name must not be empty")
        self.api_url = api_url
        self.cri_endpoint = cri_endpoint
        self.node_name = node_name
        self.root = Path(root).resolve()
        self.time_scale = time_scale
        self.sync_period = sync_period
        self.node_ip = node_ip or _node_ip()
        self.node_labels = dict(node_labels or default_node_labels(node_name))
        self.host_path_prefixes = tuple(host_path_prefixes)
        self.schedule = schedule
        self.api = ApiClient(api_url, token=token)
        self.driver: CriPodDriver | None = None
        self._ctx: KubeletContext | None = None
        self._workers: dict[str, PodWorker] = {}
        self._workers_lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._watches: set[Watch] = set()
        self._watches_lock = threading.Lock()
        self._listed = threading.Event()
        self._fingerprints: dict[str, tuple[tuple[str, int], ...]] = {}
        self._binding: set[str] = set()
        # The kubelet's own endpoints (logs, exec, port-forward) are served
        # only when the API server is given the token to call them with.
        self.server_token = server_token
        self.server: KubeletServer | None = None

    # -- lifecycle -------------------------------------------------------------

    @property
    def synced(self) -> bool:
        """True once the first list of the node's pods has been handled."""
        return self._listed.is_set()

    def wait_synced(self, timeout: float = 10.0) -> bool:
        """Wait up to ``timeout`` seconds for the first list; True once it was handled."""
        return self._listed.wait(timeout)

    def start(self) -> LabKubelet:
        """Start the pod watch, the relist and (unless told not to) the scheduler loop."""
        if self._threads:
            raise LabError("the lab kubelet is already started")
        self._stop.clear()
        for d in (self.root / "pods", self.root / "log" / "pods", self.root / "log" / "containers"):
            d.mkdir(parents=True, exist_ok=True)
        self.driver = CriPodDriver(
            self.cri_endpoint, self.root / "log" / "pods", timeout=CRI_TIMEOUT
        )
        events = EventRecorder(self.api, self.node_name)
        events.start()
        self._ctx = KubeletContext(
            driver=self.driver,
            api=self.api,
            events=events,
            node_name=self.node_name,
            node_ip=self.node_ip,
            node_labels=self.node_labels,
            root=self.root,
            time_scale=self.time_scale,
            host_path_prefixes=self.host_path_prefixes,
            backoff=RestartBackoff(self.time_scale),
            cache=StatusCache(),
            runtime_name=self._runtime_name(),
            stop=self._stop,
        )
        if self.server_token:
            self.server = KubeletServer(self.driver, self._find_pod, self.server_token).start()
        self._register_node()
        loops = [("kubelet-pods", self._pod_loop), ("kubelet-relist", self._relist_loop)]
        if self.schedule:
            loops.append(("kubelet-scheduler", self._schedule_loop))
        for name, target in loops:
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        _log.info(
            "lab kubelet for node %s: API %s, CRI %s, root %s, time scale %g",
            self.node_name,
            self.api_url,
            self.cri_endpoint,
            self.root,
            self.time_scale,
        )
        return self

    def stop(self) -> None:
        """Stop every loop and worker; containers and sandboxes are left running."""
        self._stop.set()
        with self._watches_lock:
            watches = list(self._watches)
        for watch in watches:
            watch.close()
        for thread in self._threads:
            thread.join(10)
        self._threads.clear()
        if self.server is not None:
            self.server.stop()
            self.server = None
        with self._workers_lock:
            workers = list(self._workers.values())
            self._workers.clear()
        for worker in workers:
            worker.stop()
        for worker in workers:
            worker.join(10)
        if self._ctx is not None:
            self._ctx.events.stop()
            self._ctx = None
        if self.driver is not None:
            self.driver.close()
            self.driver = None
        self._listed.clear()
        _log.info("lab kubelet for node %s stopped; pods keep running", self.node_name)

    def __enter__(self) -> LabKubelet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _runtime_name(self) -> str:
        assert self.driver is not None
        try:
            version = self.driver.runtime.Version(
                api_pb2.VersionRequest(), timeout=VERSION_TIMEOUT, wait_for_ready=True
            )
            return str(version.runtime_name) or "containerd"
        except Exception as exc:  # the runtime may come later; the prefix is a default
            _log.warning("CRI Version failed (%s); assuming containerd", exc)
            return "containerd"

    def _register_node(self) -> None:
        """Create (or refresh) the Node object, as kubelet registers its node."""
        port = self.server.port if self.server is not None else 0
        assert self._ctx is not None
        node = node_object(
            self.node_name,
            self.node_ip,
            self.node_labels,
            kubelet_port=port,
            runtime_version=self._runtime_version(),
        )
        try:
            self.api.register_node(node)
        except ApiError as exc:
            # Pods still run without a Node object; kubectl get nodes will miss it.
            _log.warning("could not register node %s: %s", self.node_name, exc)

    def _runtime_version(self) -> str:
        assert self.driver is not None
        try:
            version = self.driver.runtime.Version(api_pb2.VersionRequest(), timeout=VERSION_TIMEOUT)
        except Exception as exc:  # only shown on the Node; not worth failing for
            _log.warning("CRI Version failed (%s)", exc)
            return ""
        return f"{version.runtime_name}://{version.runtime_version}"

    def _find_pod(self, namespace: str, name: str) -> PodRef | None:
        with self._workers_lock:
            workers = list(self._workers.values())
        for worker in workers:
            if worker.namespace == namespace and worker.name == name:
                return PodRef(namespace, name, worker.uid, worker.pod)
        return None

    @property
    def pod_uids(self) -> list[str]:
        """The UIDs of the pods that have a worker now."""
        with self._workers_lock:
            return list(self._workers)

    def pod_dir(self, uid: str) -> Path:
        """The directory kept for pod ``uid`` (its volumes and termination message files)."""
        return self.root / "pods" / uid

    # -- the pod watch -----------------------------------------------------------

    def _open_watch(self, selector: str, rv: str) -> Watch:
        watch = self.api.watch_pods(selector, rv, WATCH_TIMEOUT)
        with self._watches_lock:
            self._watches.add(watch)
        if self._stop.is_set():
            watch.close()
        return watch

    def _close_watch(self, watch: Watch) -> None:
        watch.close()
        with self._watches_lock:
            self._watches.discard(watch)

    def _list_watch(self, selector: str, on_list: Any, on_event: Any, what: str) -> None:
        """List then watch ``selector``; relist on 410; reconnect with backoff."""
        rv = ""
        backoff = RetryDelay()
        while not self._stop.is_set():
            try:
                if not rv:
                    items, rv = self.api.list_pods(selector)
                    on_list(items)
                watch = self._open_watch(selector, rv)
                try:
                    for kind, obj in watch:
                        backoff.reset()
                        if kind == "ERROR":
                            if obj.get("code") == 410:
                                _log.info("%s: watch expired (410); relisting", what)
                                rv = ""
                                break
                            raise ApiError(f"watch error: {obj.get('message')}", obj.get("code"))
                        rv = str((obj.get("metadata") or {}).get("resourceVersion") or rv)
                        if kind != "BOOKMARK":
                            on_event(kind, obj)
                finally:
                    self._close_watch(watch)
            except ApiError as exc:
                if self._stop.is_set():
                    return
                delay = backoff.next()
                _log.warning("%s: %s; retrying in %.1fs", what, exc, delay)
                self._stop.wait(delay)
            except Exception:
                if self._stop.is_set():
                    return
                _log.exception("%s: unexpected failure", what)
                self._stop.wait(backoff.next())

    def _pod_loop(self) -> None:
        self._list_watch(
            f"spec.nodeName={self.node_name}", self._on_pod_list, self._on_pod_event, "pods"
        )

    def _on_pod_list(self, items: list[JSON]) -> None:
        seen = set()
        for pod in items:
            uid = (pod.get("metadata") or {}).get("uid")
            if uid:
                seen.add(uid)
                self._upsert(pod)
        with self._workers_lock:
            gone = [w for uid, w in self._workers.items() if uid not in seen]
        for worker in gone:
            worker.delete()
        self._listed.set()

    def _on_pod_event(self, kind: str, pod: JSON) -> None:
        uid = (pod.get("metadata") or {}).get("uid")
        if not uid:
            return
        if kind == "DELETED":
            with self._workers_lock:
                worker = self._workers.get(uid)
            if worker is not None:
                worker.delete()
            else:
                self._cleanup_orphan(uid)
        else:
            self._upsert(pod)

    def _upsert(self, pod: JSON) -> None:
        uid = pod["metadata"]["uid"]
        with self._workers_lock:
            worker = self._workers.get(uid)
            if worker is None:
                assert self._ctx is not None
                self.pod_dir(uid).mkdir(parents=True, exist_ok=True)
                worker = PodWorker(self._ctx, pod)
                self._workers[uid] = worker
                worker.start()
                threading.Thread(
                    target=self._reap, args=(uid, worker), name="kubelet-reap", daemon=True
                ).start()
                worker.wake()
                return
        worker.update(pod)

    def _reap(self, uid: str, worker: PodWorker) -> None:
        while not worker.finished.wait(1.0):
            if self._stop.is_set():
                return
        with self._workers_lock:
            if self._workers.get(uid) is worker:
                del self._workers[uid]

    # -- the relist (kubelet's PLEG) ------------------------------------------------

    def _relist_loop(self) -> None:
        failing = False
        while not self._stop.wait(self.sync_period):
            driver = self.driver
            if driver is None:
                return
            try:
                sandboxes = driver.list_sandboxes()
                containers = driver.list_containers()
            except CriCallFailed as exc:
                if not failing:
                    _log.warning("relist: the runtime does not answer: %s", exc)
                failing = True
                continue
            if failing:
                _log.info("relist: the runtime answers again")
                failing = False
            by_uid: dict[str, list[tuple[str, int]]] = {}
            names: dict[str, tuple[str, str]] = {}
            for sb in sandboxes:
                uid = sb.labels.get(LABEL_POD_UID, "")
                by_uid.setdefault(uid, []).append((sb.id, int(sb.state)))
                names[uid] = (
                    sb.labels.get(LABEL_POD_NAMESPACE, ""),
                    sb.labels.get(LABEL_POD_NAME, ""),
                )
            for c in containers:
                uid = c.labels.get(LABEL_POD_UID, "")
                by_uid.setdefault(uid, []).append((c.id, int(c.state)))
            with self._workers_lock:
                workers = dict(self._workers)
            prints = {uid: tuple(sorted(v)) for uid, v in by_uid.items()}
            for uid, worker in workers.items():
                if prints.get(uid) != self._fingerprints.get(uid):
                    worker.wake()
            self._fingerprints = prints
            if self._listed.is_set():
                self._collect_orphans(set(by_uid), workers)

    def _collect_orphans(self, runtime_uids: set[str], workers: Mapping[str, PodWorker]) -> None:
        """Pods this kubelet ran whose API object is gone: kill and remove them.

        Only pods with a directory under ``root/pods`` are this kubelet's;
        anything else in the runtime belongs to someone else and is left alone.
        """
        pods_dir = self.root / "pods"
        try:
            ours = {p.name for p in pods_dir.iterdir() if p.is_dir()}
        except OSError:
            return
        for uid in ours - set(workers):
            with self._workers_lock:
                if uid in self._workers:
                    continue
            self._cleanup_orphan(uid, in_runtime=uid in runtime_uids)

    def _cleanup_orphan(self, uid: str, *, in_runtime: bool = True) -> None:
        ctx, driver = self._ctx, self.driver
        if ctx is None or driver is None or not self.pod_dir(uid).exists():
            return
        namespace = name = ""
        try:
            if in_runtime:
                for sb in driver.list_sandboxes({LABEL_POD_UID: uid}):
                    namespace = sb.metadata.namespace
                    name = sb.metadata.name
                    for c in driver.list_containers({LABEL_POD_UID: uid}):
                        if c.state == api_pb2.CONTAINER_RUNNING:
                            driver.stop_container(c.id, 0)
                    driver.stop_sandbox(sb.id)
                    driver.remove_sandbox(sb.id)
        except CriCallFailed as exc:
            _log.warning("orphaned pod %s: %s", uid, exc)
            return
        _log.info("removed orphaned pod %s/%s (%s)", namespace, name, uid)
        remove_pod_files(ctx, uid)

    # -- binding (the lab's scheduler) ---------------------------------------------

    def _schedule_loop(self) -> None:
        def on_list(items: list[JSON]) -> None:
            for pod in items:
                self._bind(pod)

        def on_event(kind: str, pod: JSON) -> None:
            if kind in ("ADDED", "MODIFIED"):
                self._bind(pod)
            else:
                # Bound (it left the unbound selection) or deleted.
                self._binding.discard((pod.get("metadata") or {}).get("uid", ""))

        self._list_watch("spec.nodeName=", on_list, on_event, "scheduler")

    def _bind(self, pod: JSON) -> None:
        meta = pod.get("metadata") or {}
        spec = pod.get("spec") or {}
        namespace, name, uid = (
            meta.get("namespace", "default"),
            meta.get("name", ""),
            meta.get("uid", ""),
        )
        if not name or spec.get("nodeName") or meta.get("deletionTimestamp"):
            return
        if (spec.get("schedulerName") or DEFAULT_SCHEDULER) != DEFAULT_SCHEDULER:
            return
        ctx = self._ctx
        if ctx is None:
            return
        ref = InvolvedPod(namespace, name, uid)
        manifest = read_pod(pod, node_name=self.node_name, node_labels=self.node_labels)
        conditions = [
            c
            for c in (pod.get("status") or {}).get("conditions") or []
            if isinstance(c, dict) and c.get("type") != "PodScheduled"
        ]
        try:
            if manifest.scheduling_gates:
                self._set_scheduled(
                    pod,
                    conditions,
                    "False",
                    "SchedulingGated",
                    "Scheduling is blocked due to non-empty scheduling gates",
                )
                return
            mismatch = [
                f"{k}={v}"
                for k, v in manifest.node_selector.items()
                if self.node_labels.get(k) != v
            ]
            if mismatch:
                message = (
                    "0/1 nodes are available: 1 node(s) didn't match Pod's node "
                    "affinity/selector. preemption: 0/1 nodes are available: 1 Preemption "
                    "is not helpful for scheduling."
                )
                if self._set_scheduled(pod, conditions, "False", "Unschedulable", message):
                    ctx.events.emit(
                        ref, "Warning", "FailedScheduling", message, component=DEFAULT_SCHEDULER
                    )
                return
            if uid in self._binding:
                return
            self._binding.add(uid)
            # The condition first, so the kubelet's first sight of the pod has it.
            self._set_scheduled(pod, conditions, "True", "", "")
            self.api.patch_pod(
                namespace, name, {"metadata": {"uid": uid}, "spec": {"nodeName": self.node_name}}
            )
            ctx.events.emit(
                ref,
                "Normal",
                "Scheduled",
                f"Successfully assigned {namespace}/{name} to {self.node_name}",
                component=DEFAULT_SCHEDULER,
            )
        except ApiError as exc:
            self._binding.discard(uid)
            if exc.code not in (404, 409):
                _log.warning("scheduler: binding %s/%s: %s", namespace, name, exc)

    def _set_scheduled(
        self, pod: JSON, others: list[JSON], status: str, reason: str, message: str
    ) -> bool:
        """Write the PodScheduled condition; False when it already said so."""
        meta = pod["metadata"]
        for c in (pod.get("status") or {}).get("conditions") or []:
            if (
                isinstance(c, dict)
                and c.get("type") == "PodScheduled"
                and c.get("status") == status
                and (c.get("reason") or "") == reason
            ):
                return False
        cond: JSON = {
            "type": "PodScheduled",
            "status": status,
            "lastProbeTime": None,
            "lastTransitionTime": rfc3339(),
        }
        if reason:
            cond["reason"] = reason
        if message:
            cond["message"] = message
        self.api.patch_pod_status(
            meta.get("namespace", "default"), meta["name"], {"conditions": [*others, cond]}
        )
        return True


# -- process entry point -----------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m lab.kubelet``: run until SIGTERM or SIGINT, leaving the pods running."""
    parser = argparse.ArgumentParser(
        prog="python -m lab.kubelet",
        description="Run the pods bound to the lab node through CRI, as kubelet does.",
    )
    parser.add_argument("--api-server", required=True, metavar="URL", help="http://HOST:PORT")
    parser.add_argument("--cri-endpoint", required=True, metavar="unix:///PATH")
    parser.add_argument("--node-name", required=True, metavar="NAME")
    parser.add_argument(
        "--root", required=True, type=Path, metavar="DIR", help="volumes, logs and pod dirs"
    )
    parser.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        metavar="F",
        help="multiply every kubelet duration by F (e.g. 0.05 in tests); default 1",
    )
    parser.add_argument(
        "--sync-period",
        type=float,
        default=DEFAULT_SYNC_PERIOD,
        metavar="S",
        help="seconds between relists of the runtime (not scaled); default 1",
    )
    parser.add_argument("--node-ip", help="the node address reported as hostIP (default: found)")
    parser.add_argument(
        "--host-path-prefix",
        action="append",
        metavar="DIR",
        help=f"allow hostPath volumes under DIR (default {LAB_HOST_PATH_PREFIX}); repeatable",
    )
    parser.add_argument("--token-file", type=Path, help="bearer token for the API server")
    parser.add_argument(
        "--server-token-file",
        type=Path,
        help="serve logs, exec and port-forward on the loopback to holders of this token",
    )
    parser.add_argument("--no-schedule", action="store_true", help="do not bind unbound pods")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    args = parser.parse_args(argv)
    if not args.time_scale > 0:
        parser.error(f"--time-scale must be positive, got {args.time_scale}")
    if not args.sync_period > 0:
        parser.error(f"--sync-period must be positive, got {args.sync_period}")
    if not args.cri_endpoint.startswith("unix://"):
        parser.error(f"--cri-endpoint must be unix:///PATH, got {args.cri_endpoint!r}")

    logging.basicConfig(
        stream=sys.stderr,
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    token = None
    if args.token_file is not None:
        try:
            token = args.token_file.read_text().strip()
        except OSError as exc:
            parser.error(f"--token-file: {exc}")
    server_token = None
    if args.server_token_file is not None:
        try:
            server_token = args.server_token_file.read_text().strip()
        except OSError as exc:
            parser.error(f"--server-token-file: {exc}")
    try:
        kubelet = LabKubelet(
            args.api_server,
            args.cri_endpoint,
            args.node_name,
            args.root,
            args.time_scale,
            sync_period=args.sync_period,
            node_ip=args.node_ip,
            host_path_prefixes=tuple(args.host_path_prefix or (LAB_HOST_PATH_PREFIX,)),
            schedule=not args.no_schedule,
            token=token,
            server_token=server_token,
        )
    except LabError as exc:
        parser.error(str(exc))

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        kubelet.start()
    except (LabError, OSError) as exc:
        print(f"lab kubelet: cannot start: {exc}", file=sys.stderr)
        return 1
    try:
        while not stop.wait(1.0):
            pass
    finally:
        kubelet.stop()
    return 0
