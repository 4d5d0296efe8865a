"""The lab's three container runtimes, each started privately: containerd 1.6 (Debian),
containerd 2.x and CRI-O (both built from their Go modules by
``scripts/upstream/build.sh``, cached by version outside the checkout).

Every instance owns one base directory (root, state, socket, runtime state,
CNI config and IPAM data, log) and a bridge and subnet of its own; nothing is
written to a runtime's default paths. ``private_runtime(name, ...)`` gives
any of them behind the same lifecycle as ``PrivateContainerd``: ``start``,
``kill`` (the daemon only; pods keep running), ``restart``, ``stop`` (pods
through CRI first, then everything else), ``adopt`` and ``leftovers``.

Owns which runtimes the lab knows, where their binaries are, and the
containerd 2.x and CRI-O configs. Imports ``lab.containerd`` for the shared
network and teardown pieces, ``lab.images``, ``lab.processes``, ``lab.errors``
and ``cri_proto`` with grpc to drain pods.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Protocol

import grpc

from cri_proto import api_pb2, api_pb2_grpc
from lab.containerd import (
    CNI_BIN_DIR,
    CNI_CACHE_DIR,
    MAX_SOCKET_PATH,
    PrivateContainerd,
    _mounts_under,
    _pick_subnet,
    _proc_cmdlines,
    _umount,
    read_conflist_subnet,
    write_bridge_conflist,
)
from lab.errors import ContainerdFailed, LabError, MissingTool, NotRoot
from lab.images import PAUSE_IMAGE, ImageTar, require_tool
from lab.processes import REPO_ROOT, ProcessRef, log_tail, stop_process

# The names `--runtime` and the test matrix use, in the order they run.
RUNTIMES = ("containerd", "containerd2", "crio")
BUILD_SCRIPT = REPO_ROOT / "scripts" / "upstream" / "build.sh"
# An explicit binary directory wins over the build cache (e.g. a runtime
# built elsewhere): PODLENS_CONTAINERD2_BIN, PODLENS_CRIO_BIN.
BIN_DIR_ENV = {"containerd2": "PODLENS_CONTAINERD2_BIN", "crio": "PODLENS_CRIO_BIN"}

_MNT_DETACH = 2


class RuntimeNotBuilt(LabError):
    """An upstream runtime the lab needs has not been built yet; says how to build it."""


class PrivateRuntime(Protocol):
    """What the lab, its tests and its benchmarks need of any private runtime instance."""

    name: str
    base_dir: Path
    log_path: Path
    bridge_name: str
    last_start_seconds: float | None

    @property
    def endpoint(self) -> str:
        """The CRI endpoint: ``unix://`` and the socket path."""
        ...

    @property
    def token(self) -> bytes:
        """The random bytes that name the instance's bridge and network."""
        ...

    @property
    def pid(self) -> int | None:
        """The daemon's PID while it runs."""
        ...

    @property
    def subnet_text(self) -> str:
        """The pod subnet, or "" before the first start."""
        ...

    def start(self) -> PrivateRuntime:
        """Boot the daemon (images imported on the first start) and wait for CRI."""
        ...

    def kill(self, *, graceful: bool = True, grace: float = 10.0) -> None:
        """Stop the daemon only; pods keep running, as on a node whose runtime restarts."""
        ...

    def restart(self) -> PrivateRuntime:
        """Stop the daemon and start it again on the same directories."""
        ...

    def is_running(self) -> bool:
        """Whether the daemon runs."""
        ...

    def adopt(self, daemon: ProcessRef) -> PrivateRuntime:
        """Take over a daemon an earlier process started on this base directory."""
        ...

    def stop(self, *, remove_dirs: bool = True) -> None:
        """Remove every pod through CRI, stop the daemon, clear what is left; idempotent."""
        ...

    def leftovers(self) -> dict[str, list[str]]:
        """What of this instance is still on the machine."""
        ...


@dataclass(frozen=True, slots=True)
class RuntimeFacts:
    """What tests may expect of a runtime without asking it."""

    name: str
    runtime_name: str  # as CRI Version answers it
    api_id_prefix: str  # kubelet's containerID scheme
    # Whether ordinary pods have a pause process (CRI-O's drop_infra_ctr: no).
    pause_always: bool
    # Whether the agent subscribes to GetContainerEvents here.
    streams_events: bool


FACTS: Mapping[str, RuntimeFacts] = {
    "containerd": RuntimeFacts("containerd", "containerd", "containerd://", True, False),
    "containerd2": RuntimeFacts("containerd2", "containerd", "containerd://", True, True),
    "crio": RuntimeFacts("crio", "cri-o", "cri-o://", False, True),
}


def upstream_bin_dir(component: str) -> Path:
    """Where ``build.sh`` keeps ``component``'s binaries; RuntimeNotBuilt if it has none."""
    override = os.environ.get(BIN_DIR_ENV.get(component, ""), "")
    if override:
        return Path(override)
    how = f"build it with: {BUILD_SCRIPT.relative_to(REPO_ROOT)} {component}"
    if not BUILD_SCRIPT.is_file():
        raise RuntimeNotBuilt(f"{component} is not built and {BUILD_SCRIPT} is missing")
    proc = subprocess.run(
        ["bash", str(BUILD_SCRIPT), "--print-dir", component],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    found = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not found:
        reason = (proc.stderr or proc.stdout).strip().splitlines()
        raise RuntimeNotBuilt(f"{component} is not built ({reason[-1] if reason else '?'}); {how}")
    return Path(found[-1])


def _q(value: str | Path) -> str:
    return json.dumps(str(value))


# --------------------------------------------------------------------------
# containerd 2.x
# --------------------------------------------------------------------------


class PrivateContainerd2(PrivateContainerd):
    """containerd 2.x from the build cache, with a config of its own layout (version 3).

    Everything else (directories, bridge, drain, teardown) is the lab's
    containerd 1.6 instance: the shim, runc's state root and the CNI cache
    work the same way in both.
    """

    name = "containerd2"

    def __init__(self, base_dir: Path, images: Sequence[ImageTar] = (), **kwargs: object) -> None:
        super().__init__(base_dir, images, **kwargs)  # type: ignore[arg-type]
        self._bin_dir: Path | None = None

    @property
    def bin_dir(self) -> Path:
        """The built release's directory (containerd, ctr, the shim)."""
        if self._bin_dir is None:
            self._bin_dir = upstream_bin_dir("containerd2")
        return self._bin_dir

    def _binary(self, name: str) -> str:
        path = self.bin_dir / name
        if not os.access(path, os.X_OK):
            raise RuntimeNotBuilt(
                f"{path} is missing; build it with: scripts/upstream/build.sh containerd2"
            )
        return str(path)

    def _daemon_env(self) -> dict[str, str]:
        # containerd finds its shim on PATH: this release's, not Debian's.
        env = dict(os.environ)
        env["PATH"] = f"{self.bin_dir}{os.pathsep}{env.get('PATH', '')}"
        return env

    def _import_images(self) -> None:
        ctr = self._binary("ctr")
        for image in self.images:
            cmd = [ctr, "-a", self.address, "-n", "k8s.io", "images", "import", str(image.path)]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
            if proc.returncode != 0:
                raise LabError(
                    f"importing {image.ref} into containerd 2.x failed (exit {proc.returncode}): "
                    f"{(proc.stderr or proc.stdout).strip()}"
                )

    def _config_text(self) -> str:
        """containerd 2.x's config: version 3, the CRI plugin split into images and runtime."""
        images = "[plugins.'io.containerd.cri.v1.images'"
        rt = "[plugins.'io.containerd.cri.v1.runtime'"
        return f"""\
version = 3
root = {_q(self.root_dir)}
state = {_q(self.state_dir)}
# Plugins that would reach outside the base dir, or only log noise here.
disabled_plugins = [
  "io.containerd.internal.v1.opt",
  "io.containerd.nri.v1.nri",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.erofs",
  "io.containerd.differ.v1.erofs",
]

[grpc]
  address = {_q(self.address)}

[debug]
  level = {_q(self.log_level)}

[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

{images}]
  snapshotter = "overlayfs"

{images}.pinned_images]
  sandbox = {_q(self.sandbox_image)}

{rt}]
  # Without CAP_SYS_RESOURCE runc cannot lower oom_score_adj.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_selinux = false
  cdi_spec_dirs = []

{rt}.containerd]
  default_runtime_name = "runc"

{rt}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

{rt}.containerd.runtimes.runc.options]
  BinaryName = {_q(require_tool("runc", "runc"))}
  # runc's default root is shared by every containerd on the machine.
  Root = {_q(self.runc_root)}
  SystemdCgroup = false

{rt}.cni]
  bin_dirs = [{_q(CNI_BIN_DIR)}]
  conf_dir = {_q(self.cni_conf_dir)}
  max_conf_num = 1
"""


# --------------------------------------------------------------------------
# CRI-O
# --------------------------------------------------------------------------


# conmon runs the OCI runtime as `runc [global options] create --bundle DIR ... ID`.
# CRI-O gives every infra (pause) container oom_score_adj -998, and without
# CAP_SYS_RESOURCE (as on these machines) runc cannot lower it: every such
# sandbox fails with "failed to update /proc/self/oom_score_adj". containerd
# has restrict_oom_score_adj for this; CRI-O has nothing, so the lab clamps
# the bundle's value to what this process may set, then runs the real runc.
_CLAMPING_WRAPPER = """\
#!/bin/sh
# Written by the podlens lab (lab/runtimes.py): CRI-O's restrict_oom_score_adj.
bundle=""; prev=""
for arg in "$@"; do
    case "$prev" in --bundle|-b) bundle=$arg ;; esac
    case "$arg" in --bundle=*) bundle=${arg#--bundle=} ;; esac
    prev=$arg
done
config="$bundle/config.json"
if [ -n "$bundle" ] && [ -f "$config" ]; then
    floor=$(cat /proc/self/oom_score_adj)
    adj=$(sed -n -E 's/.*"oomScoreAdj":[[:space:]]*(-?[0-9]+).*/\\1/p' "$config" | head -n 1)
    if [ -n "$adj" ] && [ "$adj" -lt "$floor" ]; then
        sed -i -E "s/\\"oomScoreAdj\\":[[:space:]]*-?[0-9]+/\\"oomScoreAdj\\":$floor/" "$config"
    fi
fi
exec {runc} "$@"
"""


def _oci_runtime() -> tuple[str, str]:
    """The OCI runtime CRI-O drives here: Debian's runc.

    Not crun, CRI-O's own default: Debian 12's crun (1.8.1) refuses the OCI
    spec version CRI-O 1.34 writes ("unknown version specified").
    """
    return "runc", require_tool("runc", "runc", "CRI-O's OCI runtime")


class PrivateCrio:
    """CRI-O from the build cache, with Debian's conmon and crun, all under one base dir.

    Images go into its containers-storage with ``skopeo`` before the daemon
    first starts (nothing can be pulled here). ``pod_events`` sets
    ``enable_pod_events`` (CRI-O streams container events only with it);
    ``drop_infra`` is CRI-O's ``drop_infra_ctr`` (true by default, as
    upstream: ordinary pods get no pause process). ``tz`` sets the daemon's
    (and so conmon's) time zone, which CRI-O's log timestamps carry.
    """

    name = "crio"

    def __init__(
        self,
        base_dir: Path,
        images: Sequence[ImageTar] = (),
        *,
        sandbox_image: str = PAUSE_IMAGE,
        start_timeout: float = 60.0,
        log_level: str = "info",
        token: bytes | None = None,
        pod_events: bool = True,
        drop_infra: bool = True,
        tz: str | None = None,
    ) -> None:
        # The network naming, token and subnet rules are containerd's; reuse them.
        names = PrivateContainerd(base_dir, token=token)
        self.base_dir = names.base_dir
        self.images = tuple(images)
        self.sandbox_image = sandbox_image
        self.start_timeout = start_timeout
        self.log_level = log_level
        self.pod_events = pod_events
        self.drop_infra = drop_infra
        self.tz = tz
        self._token = names.token
        self.bridge_name = names.bridge_name
        self.network_name = names.network_name
        self.subnet = names.subnet

        d = self.base_dir
        self.storage_root = d / "storage"
        self.run_root = d / "run"
        self.log_dir = d / "pod-logs"
        self.exits_dir = d / "exits"
        self.attach_dir = d / "attach"
        self.namespaces_dir = d / "netns"
        self.runtime_root = d / "oci"
        self.version_dir = d / "version"
        self.conf_dir = d / "crio.conf.d"
        self.cni_conf_dir = d / "cni" / "net.d"
        self.cni_ipam_dir = d / "cni" / "ipam"
        self.config_path = d / "crio.conf"
        self.policy_path = d / "policy.json"
        self.registries_path = d / "registries.conf"
        self.address = str(d / "crio.sock")
        self.log_path = d / "crio.log"

        self._proc: subprocess.Popen[bytes] | None = None
        self._adopted: ProcessRef | None = None
        self._known_ids: set[str] = set()
        self._stopped = False
        self._bin_dir: Path | None = None
        self.last_start_seconds: float | None = None

    # ------------------------------------------------------------------ props

    @property
    def endpoint(self) -> str:
        """The CRI endpoint clients dial."""
        return "unix://" + self.address

    @property
    def token(self) -> bytes:
        """The random bytes that name this instance's bridge and network."""
        return self._token

    @property
    def subnet_text(self) -> str:
        """The pod subnet, or "" before the first start."""
        return str(self.subnet or "")

    @property
    def pid(self) -> int | None:
        """The daemon's PID while it runs."""
        if not self.is_running():
            return None
        if self._proc is not None:
            return self._proc.pid
        return self._adopted.pid if self._adopted is not None else None

    @property
    def bin_dir(self) -> Path:
        """The built release's directory (crio, pinns)."""
        if self._bin_dir is None:
            self._bin_dir = upstream_bin_dir("crio")
        return self._bin_dir

    def is_running(self) -> bool:
        """Whether the daemon (started here or adopted) runs."""
        if self._proc is not None:
            return self._proc.poll() is None
        return self._adopted is not None and self._adopted.alive()

    def adopt(self, daemon: ProcessRef) -> PrivateCrio:
        """Take over a crio an earlier process started on this base directory."""
        if not daemon.alive():
            raise ContainerdFailed(f"crio (pid {daemon.pid}) is no longer running")
        argv = dict(_proc_cmdlines()).get(daemon.pid, [])
        if str(self.config_path) not in argv:
            raise ContainerdFailed(
                f"pid {daemon.pid} is not the crio of {self.base_dir}: {' '.join(argv)}"
            )
        self._proc = None
        self._adopted = daemon
        self._stopped = False
        self.subnet = read_conflist_subnet(self.cni_conf_dir)
        return self

    def __enter__(self) -> PrivateCrio:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------ lifecycle

    def _binary(self, name: str) -> str:
        path = self.bin_dir / name
        if not os.access(path, os.X_OK):
            raise RuntimeNotBuilt(
                f"{path} is missing; build it with: scripts/upstream/build.sh crio"
            )
        return str(path)

    def _check_environment(self) -> None:
        if os.geteuid() != 0:
            raise NotRoot("the lab's CRI-O needs root (it runs crun, mounts and a bridge)")
        self._binary("crio")
        self._binary("pinns")
        require_tool("conmon", "conmon")
        _oci_runtime()
        require_tool("skopeo", "skopeo", "to put the lab's images into CRI-O's storage")
        require_tool("ip", "iproute2")
        for plugin in ("bridge", "host-local", "loopback"):
            if not (CNI_BIN_DIR / plugin).is_file():
                raise MissingTool(f"{CNI_BIN_DIR / plugin}", "containernetworking-plugins")
        if len(self.address) > MAX_SOCKET_PATH:
            raise LabError(f"socket path too long for a unix socket: {self.address}")

    def _write_config(self) -> None:
        if self.subnet is None:
            self.subnet = _pick_subnet(self._token)
        for d in (
            self.storage_root,
            self.run_root,
            self.log_dir,
            self.exits_dir,
            self.attach_dir,
            self.namespaces_dir,
            self.runtime_root,
            self.version_dir,
            self.conf_dir,
            self.cni_conf_dir,
            self.cni_ipam_dir,
        ):
            d.mkdir(parents=True, exist_ok=True)
        write_bridge_conflist(
            self.cni_conf_dir, self.network_name, self.bridge_name, self.subnet, self.cni_ipam_dir
        )
        # Nothing is pulled and nothing is verified: every image is the lab's own.
        self.policy_path.write_text('{"default": [{"type": "insecureAcceptAnything"}]}\n')
        self.registries_path.write_text("")
        handler, runc = _oci_runtime()
        oci = self.base_dir / "bin" / handler
        oci.parent.mkdir(exist_ok=True)
        oci.write_text(_CLAMPING_WRAPPER.replace("{runc}", runc))
        oci.chmod(0o755)
        d = self.base_dir
        self.config_path.write_text(f"""\
[crio]
root = {_q(self.storage_root)}
runroot = {_q(self.run_root)}
storage_driver = "overlay"
log_dir = {_q(self.log_dir)}
version_file = {_q(self.version_dir / "version")}
version_file_persist = {_q(self.version_dir / "version-persist")}
clean_shutdown_file = {_q(self.version_dir / "clean.shutdown")}

[crio.api]
listen = {_q(self.address)}
stream_address = "127.0.0.1"
stream_port = "0"

[crio.runtime]
default_runtime = {_q(handler)}
cgroup_manager = "cgroupfs"
# Upstream's default: ordinary pods get no pause (infra) process.
drop_infra_ctr = {str(self.drop_infra).lower()}
# CRI-O streams GetContainerEvents only with this; without it the stream ends at once.
enable_pod_events = {str(self.pod_events).lower()}
namespaces_dir = {_q(self.namespaces_dir)}
pinns_path = {_q(self._binary("pinns"))}
container_exits_dir = {_q(self.exits_dir)}
container_attach_socket_dir = {_q(self.attach_dir)}
hooks_dir = [{_q(d / "hooks")}]
decryption_keys_path = {_q(d / "keys")}
cdi_spec_dirs = [{_q(d / "cdi")}]
irqbalance_config_file = {_q(d / "irqbalance")}
irqbalance_config_restore_file = "disable"

[crio.runtime.runtimes.{handler}]
runtime_path = {_q(oci)}
runtime_type = "oci"
runtime_root = {_q(self.runtime_root)}
monitor_path = {_q(require_tool("conmon", "conmon"))}
# With cgroupfs conmon must live in the pod's cgroup.
monitor_cgroup = "pod"
# conmon writes the log timestamps, in its own local time.
monitor_env = {json.dumps(self._monitor_env())}

# CRI-O always knows a crun handler; keep even its state root in the base dir.
[crio.runtime.runtimes.crun]
runtime_path = {_q(shutil.which("crun") or "/usr/bin/crun")}
runtime_type = "oci"
runtime_root = {_q(d / "crun")}
monitor_path = {_q(require_tool("conmon", "conmon"))}
monitor_cgroup = "pod"

[crio.image]
signature_policy = {_q(self.policy_path)}
signature_policy_dir = {_q(d / "policies")}
pause_image = {_q(self.sandbox_image)}
pause_command = "/pause"

[crio.network]
network_dir = {_q(self.cni_conf_dir)}
plugin_dirs = [{_q(CNI_BIN_DIR)}]
cni_default_network = {_q(self.network_name)}

[crio.nri]
enable_nri = false

[crio.metrics]
enable_metrics = false
""")

    def _import_images(self) -> None:
        skopeo = require_tool("skopeo", "skopeo")
        store = f"containers-storage:[overlay@{self.storage_root}+{self.run_root}]"
        for image in self.images:
            for tag in image.tags:
                cmd = [
                    skopeo,
                    "--insecure-policy",
                    "copy",
                    "--quiet",
                    f"docker-archive:{image.path}:{tag}",
                    f"{store}{tag}",
                ]
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
                if proc.returncode != 0:
                    raise LabError(
                        f"copying {tag} into CRI-O's storage failed (exit {proc.returncode}): "
                        f"{(proc.stderr or proc.stdout).strip()}"
                    )

    def _ensure_bridge(self) -> None:
        """The pod bridge, made before CRI-O with a MAC address of its own.

        A bridge the CNI plugin makes takes the lowest MAC of its ports, which
        changes as pods come; CRI-O checks each pod's network (CNI CHECK) right
        after adding it, and with pods started in parallel the check fails
        ("Bridge interface ... Mac doesn't match"). A set address stays put.
        """
        shown = subprocess.run(
            ["ip", "link", "show", self.bridge_name], capture_output=True, check=False
        )
        if shown.returncode == 0:
            return
        mac = "02:70:6c:" + ":".join(f"{b:02x}" for b in self._token)
        for cmd in (
            ["ip", "link", "add", "name", self.bridge_name, "type", "bridge"],
            ["ip", "link", "set", "dev", self.bridge_name, "address", mac],
            ["ip", "link", "set", "dev", self.bridge_name, "up"],
        ):
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
            if done.returncode != 0:
                raise LabError(f"{' '.join(cmd)} failed: {done.stderr.strip()}")

    def _daemon_env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.tz is not None:
            env["TZ"] = self.tz
        return env

    def _monitor_env(self) -> list[str]:
        # CRI-O gives conmon only this environment (upstream's default is PATH alone).
        env = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
        if self.tz is not None:
            env.append(f"TZ={self.tz}")
        return env

    def start(self) -> PrivateCrio:
        """Boot crio (copying the images into its storage first) and wait for CRI."""
        if self.is_running():
            return self
        self._check_environment()
        self._stopped = False
        fresh = not (self.storage_root / "overlay-images").is_dir()
        self._write_config()
        if fresh and self.images:
            # Before the daemon runs: it reads the store it finds at start.
            self._import_images()
        self._ensure_bridge()
        Path(self.address).unlink(missing_ok=True)
        crio = self._binary("crio")
        self._adopted = None
        t0 = time.monotonic()
        with self.log_path.open("ab") as log:
            log.write(f"---- podlens lab: starting crio at {time.ctime()}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                [
                    crio,
                    "--config",
                    str(self.config_path),
                    "--config-dir",
                    str(self.conf_dir),
                    "--registries-conf",
                    str(self.registries_path),
                    "--registries-conf-dir",
                    str(self.conf_dir),
                    "--log-level",
                    self.log_level,
                ],
                env=self._daemon_env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self._wait_ready(t0 + self.start_timeout)
            self.last_start_seconds = time.monotonic() - t0
        except BaseException:
            self._terminate_daemon(grace=5.0)
            raise
        return self

    def _wait_ready(self, deadline: float) -> None:
        last_error = "socket not created"
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise ContainerdFailed(
                    f"crio exited with code {self._proc.returncode} during start; "
                    f"log {self.log_path}:\n{log_tail(self.log_path)}"
                )
            if os.path.exists(self.address):
                try:
                    with grpc.insecure_channel(self.endpoint) as channel:
                        stub = api_pb2_grpc.RuntimeServiceStub(channel)
                        stub.Version(api_pb2.VersionRequest(version="v1"), timeout=1.0)
                    return
                except grpc.RpcError as exc:
                    last_error = f"{exc.code()}: {exc.details()}"
            time.sleep(0.05)
        raise ContainerdFailed(
            f"crio did not answer CRI Version within {self.start_timeout:.0f}s "
            f"({last_error}); log {self.log_path}:\n{log_tail(self.log_path)}"
        )

    def _terminate_daemon(self, grace: float, sig: int = signal.SIGTERM) -> None:
        if self._proc is not None:
            stop_process(self._proc, grace, sig=sig)
        elif self._adopted is not None:
            stop_process(self._adopted, grace, sig=sig)

    def kill(self, *, graceful: bool = True, grace: float = 10.0) -> None:
        """Stop only crio; conmon and the pods keep running, as on a real node."""
        self._terminate_daemon(grace, signal.SIGTERM if graceful else signal.SIGKILL)

    def restart(self) -> PrivateCrio:
        """Stop crio gracefully and start it again on the same dirs; pods keep running."""
        self.kill()
        return self.start()

    # --------------------------------------------------------------- teardown

    def remove_all_pods(self, deadline_seconds: float = 60.0) -> list[str]:
        """Stop and remove every sandbox through CRI; returns the IDs it could not remove."""
        if not self.is_running():
            return []
        deadline = time.monotonic() + deadline_seconds
        failed: list[str] = []
        with grpc.insecure_channel(self.endpoint) as channel:
            stub = api_pb2_grpc.RuntimeServiceStub(channel)
            try:
                sandboxes = stub.ListPodSandbox(api_pb2.ListPodSandboxRequest(), timeout=10).items
            except grpc.RpcError:
                return ["<list failed>"]
            try:
                containers = stub.ListContainers(api_pb2.ListContainersRequest(), timeout=10)
            except grpc.RpcError:
                return ["<list failed>"]
            # CRI-O's StopPodSandbox gives each container its whole grace
            # period (30 s by default); kubelet stops them first, and so do we,
            # at once.
            for container in containers.containers:
                if container.state == api_pb2.CONTAINER_RUNNING:
                    with contextlib.suppress(grpc.RpcError):
                        stub.StopContainer(
                            api_pb2.StopContainerRequest(container_id=container.id, timeout=0),
                            timeout=15,
                        )
            for sb in sandboxes:
                self._known_ids.add(sb.id)
                left = deadline - time.monotonic()
                if left <= 0:
                    failed.append(sb.id)
                    continue
                try:
                    stub.StopPodSandbox(
                        api_pb2.StopPodSandboxRequest(pod_sandbox_id=sb.id), timeout=min(left, 30)
                    )
                    stub.RemovePodSandbox(
                        api_pb2.RemovePodSandboxRequest(pod_sandbox_id=sb.id),
                        timeout=max(min(deadline - time.monotonic(), 30), 1),
                    )
                except grpc.RpcError:
                    failed.append(sb.id)
        return failed

    def _collect_ids(self) -> set[str]:
        for parent in (self.runtime_root, self.exits_dir, self.attach_dir):
            if parent.is_dir():
                self._known_ids.update(p.name for p in parent.iterdir())
        containers = self.storage_root / "overlay-containers"
        if containers.is_dir():
            self._known_ids.update(p.name for p in containers.iterdir() if len(p.name) == 64)
        return self._known_ids

    def _our_processes(self) -> list[int]:
        # conmon and the container processes it monitors carry our dirs in
        # their argv (conmon: -b/-r/--exit-dir under the base dir).
        mine = []
        for pid, argv in _proc_cmdlines():
            if pid == os.getpid():
                continue
            if (
                argv
                and os.path.basename(argv[0]) == "conmon"
                and any(str(self.base_dir) in a for a in argv)
            ):
                mine.append(pid)
        return mine

    def _kill_leftovers(self) -> None:
        for pid in self._our_processes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _handler, oci = _oci_runtime()
        if not self.runtime_root.is_dir():
            return
        base = [oci, "--root", str(self.runtime_root)]
        listing = subprocess.run(
            [*base, "list", "-q"], capture_output=True, text=True, timeout=30, check=False
        )
        for cid in listing.stdout.split():
            subprocess.run(
                [*base, "delete", "--force", cid], capture_output=True, timeout=30, check=False
            )

    def _unmount_all(self) -> list[str]:
        for point in _mounts_under(self.base_dir):
            if not _umount(point):
                _umount(point, _MNT_DETACH)
        return _mounts_under(self.base_dir)

    def _remove_outside_files(self) -> None:
        if CNI_CACHE_DIR.is_dir():
            for entry in CNI_CACHE_DIR.iterdir():
                if entry.name.startswith(self.network_name + "-") or any(
                    f"-{sid}-" in entry.name for sid in self._known_ids
                ):
                    entry.unlink(missing_ok=True)
        for directory in self._cgroup_dirs():
            with contextlib.suppress(OSError):
                for sub in sorted(directory.rglob("*"), key=lambda p: -len(p.parts)):
                    if sub.is_dir():
                        sub.rmdir()
                directory.rmdir()

    def _cgroup_dirs(self) -> list[Path]:
        root = Path("/sys/fs/cgroup")
        if not root.is_dir():
            return []
        found = []
        for hierarchy in root.iterdir():
            if not hierarchy.is_dir() or hierarchy.is_symlink():
                continue
            for sid in self._known_ids:
                for name in (f"crio-{sid}", f"crio-conmon-{sid}", sid):
                    candidate = hierarchy / name
                    if candidate.is_dir():
                        found.append(candidate)
        return found

    def stop(self, *, remove_dirs: bool = True) -> None:
        """Tear everything down: pods, crio, conmon, mounts, bridge, dirs (the log stays)."""
        if self._stopped:
            return
        problems: list[str] = []
        self._collect_ids()
        stuck = self.remove_all_pods()
        if stuck:
            problems.append(f"sandboxes not removed through CRI: {stuck}")
        self._terminate_daemon(grace=15.0)
        self._collect_ids()
        self._kill_leftovers()
        left_mounted = self._unmount_all()
        subprocess.run(
            ["ip", "link", "del", self.bridge_name], capture_output=True, timeout=10, check=False
        )
        self._remove_outside_files()
        if left_mounted:
            problems.append(f"still mounted: {left_mounted}")
        elif remove_dirs:
            for entry in self.base_dir.iterdir() if self.base_dir.is_dir() else ():
                if entry == self.log_path:
                    continue
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
        self._stopped = True
        if not problems:
            deadline = time.monotonic() + 5.0
            left = self.leftovers()
            while any(left.values()) and time.monotonic() < deadline:
                time.sleep(0.1)
                left = self.leftovers()
            problems += [f"{kind} left: {items}" for kind, items in left.items() if items]
        if problems:
            raise ContainerdFailed("lab CRI-O teardown incomplete: " + "; ".join(problems))

    def leftovers(self) -> dict[str, list[str]]:
        """What of this instance is still on the machine (empty lists after ``stop()``)."""
        bridge = subprocess.run(
            ["ip", "link", "show", self.bridge_name], capture_output=True, check=False
        )
        procs = [
            f"{pid} {' '.join(argv)}"
            for pid, argv in _proc_cmdlines()
            if pid != os.getpid() and any(str(self.base_dir) in a for a in argv)
        ]
        ids = self._collect_ids()
        outside: list[str] = []
        if CNI_CACHE_DIR.is_dir():
            outside += [
                str(e)
                for e in CNI_CACHE_DIR.iterdir()
                if e.name.startswith(self.network_name + "-")
                or any(f"-{i}-" in e.name for i in ids)
            ]
        outside += [str(d) for d in self._cgroup_dirs()]
        return {
            "processes": procs,
            "mounts": _mounts_under(self.base_dir),
            "bridge": [self.bridge_name] if bridge.returncode == 0 else [],
            "files": sorted(outside),
        }


# --------------------------------------------------------------------------
# Picking one
# --------------------------------------------------------------------------


def private_runtime(
    name: str,
    base_dir: Path,
    images: Sequence[ImageTar] = (),
    *,
    token: bytes | None = None,
    tz: str | None = None,
) -> PrivateRuntime:
    """A private instance of runtime ``name`` (one of ``RUNTIMES``) under ``base_dir``.

    ``tz`` is CRI-O's time zone (its log timestamps carry the offset); the
    containerds write UTC whatever it is.
    """
    if name == "containerd":
        return PrivateContainerd(base_dir, images, token=token)
    if name == "containerd2":
        return PrivateContainerd2(base_dir, images, token=token)
    if name == "crio":
        return PrivateCrio(base_dir, images, token=token, tz=tz)
    raise LabError(f"unknown runtime {name!r} (known: {', '.join(RUNTIMES)})")


def runtime_problem(name: str) -> str | None:
    """Why runtime ``name`` cannot run on this machine, or None when it can."""
    if os.geteuid() != 0:
        return "not root (the lab starts a container runtime, its OCI runtime and a bridge)"
    try:
        if name == "containerd":
            for tool, package in (("containerd", "containerd"), ("ctr", "containerd")):
                require_tool(tool, package)
            require_tool("runc", "runc")
        elif name == "containerd2":
            upstream_bin_dir("containerd2")
            require_tool("runc", "runc")
        elif name == "crio":
            upstream_bin_dir("crio")
            require_tool("conmon", "conmon")
            require_tool("skopeo", "skopeo")
            _oci_runtime()
        else:
            return f"unknown runtime {name!r}"
    except LabError as exc:
        return str(exc)
    return None


__all__ = [
    "FACTS",
    "RUNTIMES",
    "PrivateContainerd2",
    "PrivateCrio",
    "PrivateRuntime",
    "RuntimeFacts",
    "RuntimeNotBuilt",
    "private_runtime",
    "runtime_problem",
    "upstream_bin_dir",
]
