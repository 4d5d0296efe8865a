"""The lab's three container runtimes, each started privately: containerd 1.6 (Debian),
containerd 2.x and CRI-O (both built from their Go modules by
``scripts/upstream/build.sh``, cached by version outside the checkout).

Every instance owns one base directory and a bridge and subnet of its own;
nothing is written to a runtime's default paths. All three share one
lifecycle, ``lab.private_runtime.PrivateRuntime`` (``start``, ``kill`` of the
daemon only, ``restart``, ``adopt``, ``stop`` with the pods drained through
CRI first, ``leftovers``); ``private_runtime(name, ...)`` gives any of them.

Owns which runtimes the lab knows, what tests may expect of each
(``FACTS``), where the upstream binaries are, and the containerd 2.x and
CRI-O specifics. Imports ``lab.private_runtime``, ``lab.containerd`` (which
containerd 2.x extends), ``lab.images``, ``lab.processes`` and ``lab.errors``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from lab.containerd import PrivateContainerd
from lab.errors import LabError, NotRoot
from lab.images import PAUSE_IMAGE, ImageTar, require_tool
from lab.private_runtime import (
    CNI_BIN_DIR,
    PrivateRuntime,
    proc_cmdlines,
    remove_tree_entries,
    require_cni_plugins,
)
from lab.processes import REPO_ROOT

# The names `--runtime` and the test matrix use, in the order they run.
RUNTIMES = ("containerd", "containerd2", "crio")
BUILD_SCRIPT = REPO_ROOT / "scripts" / "upstream" / "build.sh"
# An explicit binary directory wins over the build cache (e.g. a runtime
# built elsewhere): PODLENS_CONTAINERD2_BIN, PODLENS_CRIO_BIN.
BIN_DIR_ENV = {"containerd2": "PODLENS_CONTAINERD2_BIN", "crio": "PODLENS_CRIO_BIN"}


# The registries the real node's images come from, each with its upstream
# address: the lab's registry on loopback stands in for them (``lab up --real``).
MIRRORED_REGISTRIES = {
    "docker.io": "https://registry-1.docker.io",
    "registry.k8s.io": "https://registry.k8s.io",
}


class RuntimeNotBuilt(LabError):
    """An upstream runtime the lab needs has not been built yet; says how to build it."""


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

    @property
    def hosts_dir(self) -> Path:
        """Where containerd 2.x reads each registry's hosts.toml (``config_path``)."""
        return self.base_dir / "certs.d"

    def _prepare(self) -> None:
        super()._prepare()
        if self.registry_mirror is not None:
            for registry, upstream in MIRRORED_REGISTRIES.items():
                host_dir = self.hosts_dir / registry
                host_dir.mkdir(parents=True, exist_ok=True)
                (host_dir / "hosts.toml").write_text(
                    f"server = {_q(upstream)}\n\n"
                    f"[host.{_q(self.registry_mirror)}]\n"
                    '  capabilities = ["pull", "resolve"]\n'
                )

    def _registry_config(self, images: str) -> str:
        # 2.x dropped the 1.6 mirrors table: each registry's hosts.toml says where to pull.
        if self.registry_mirror is None:
            return ""
        return f"\n{images}.registry]\n  config_path = {_q(self.hosts_dir)}\n"

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
{self._registry_config(images)}
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
# containerd's tolerate_missing_hugetlb_controller (on by default): without a
# hugetlb hierarchy to set them in, the kubelet's hugepage limits are dropped.
# CRI-O has no such setting and passes them on whenever the kernel lists the
# controller, and runc then fails every container ("cannot set hugetlb limit:
# container could not join or create cgroup"). JSON strings hold no raw
# newline, so joining the lines leaves the document as it was.
if [ -n "$bundle" ] && [ -f "$config" ] && grep -q '"hugepageLimits"' "$config" \\
        && ! grep -Eq '^[^ ]+ [^ ]+ cgroup [^ ]*hugetlb' /proc/self/mounts; then
    tr -d '\\n' <"$config" | sed -E \\
        -e 's/,[[:space:]]*"hugepageLimits":[[:space:]]*\\[[^]]*\\]//' \\
        -e 's/"hugepageLimits":[[:space:]]*\\[[^]]*\\][[:space:]]*,?//' >"$config.podlens" \\
        && mv "$config.podlens" "$config"
fi
exec {runc} "$@"
"""


def _oci_runtime() -> tuple[str, str]:
    """The OCI runtime CRI-O drives here: Debian's runc.

    Not crun, CRI-O's own default: Debian 12's crun (1.8.1) refuses the OCI
    spec version CRI-O 1.34 writes ("unknown version specified").
    """
    return "runc", require_tool("runc", "runc", "CRI-O's OCI runtime")


class PrivateCrio(PrivateRuntime):
    """CRI-O from the build cache, with Debian's conmon and runc, all under one base dir.

    Images go into its containers-storage with ``skopeo`` before the daemon
    first starts (nothing can be pulled here). ``pod_events`` sets
    ``enable_pod_events`` (CRI-O streams container events only with it);
    ``drop_infra`` is CRI-O's ``drop_infra_ctr`` (true by default, as
    upstream: ordinary pods get no pause process). ``tz`` sets the daemon's
    (and so conmon's) time zone, which CRI-O's log timestamps carry.
    """

    name = "crio"
    daemon_name = "crio"
    display_name = "CRI-O"
    stop_grace = 15.0

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
        registry_mirror: str | None = None,
        service_cidr: str | None = None,
    ) -> None:
        super().__init__(
            base_dir,
            images,
            socket_name="crio.sock",
            config_name="crio.conf",
            sandbox_image=sandbox_image,
            start_timeout=start_timeout,
            log_level=log_level,
            token=token,
            registry_mirror=registry_mirror,
            service_cidr=service_cidr,
        )
        self.images: tuple[ImageTar, ...] = tuple(images)
        self.pod_events = pod_events
        self.drop_infra = drop_infra
        self.tz = tz

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
        self.policy_path = d / "policy.json"
        self.registries_path = d / "registries.conf"
        self._bin_dir: Path | None = None

    @property
    def bin_dir(self) -> Path:
        """The built release's directory (crio, pinns)."""
        if self._bin_dir is None:
            self._bin_dir = upstream_bin_dir("crio")
        return self._bin_dir

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
        require_cni_plugins()

    def _prepare(self) -> None:
        assert self.subnet is not None
        fresh = not (self.storage_root / "overlay-images").is_dir()
        self._write_config()
        if fresh and self.images:
            # Before the daemon runs: it reads the store it finds at start.
            self._import_images()
        self._ensure_bridge()

    def _write_config(self) -> None:
        assert self.subnet is not None
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
        ):
            d.mkdir(parents=True, exist_ok=True)
        self._write_pod_network()
        # Nothing is verified: every image is the lab's own.
        self.policy_path.write_text('{"default": [{"type": "insecureAcceptAnything"}]}\n')
        self.registries_path.write_text(self._registries_conf())
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

    def _registries_conf(self) -> str:
        """containers-registries.conf: short names are docker.io's; pulls go to the mirror."""
        if self.registry_mirror is None:
            return ""
        # The lab's registry speaks plain HTTP on loopback: "insecure" lets the pull use it.
        mirror = self.registry_mirror.removeprefix("http://")
        text = 'unqualified-search-registries = ["docker.io"]\n'
        for registry in MIRRORED_REGISTRIES:
            text += (
                f"\n[[registry]]\nprefix = {_q(registry)}\nlocation = {_q(registry)}\n"
                f"[[registry.mirror]]\nlocation = {_q(mirror)}\ninsecure = true\n"
            )
        return text

    def _import_images(self) -> None:
        for image in self.images:
            self.copy_archive(image.path, image.tags)

    def copy_archive(self, archive: Path, tags: Sequence[str], timeout: float = 300.0) -> None:
        """Copy each of ``tags`` from a docker-archive into CRI-O's storage with skopeo.

        Safe while CRI-O runs: both take the storage's locks.
        """
        skopeo = require_tool("skopeo", "skopeo")
        store = f"containers-storage:[overlay@{self.storage_root}+{self.run_root}]"
        for tag in tags:
            cmd = [
                skopeo,
                "--insecure-policy",
                "copy",
                "--quiet",
                f"docker-archive:{archive}:{tag}",
                f"{store}{tag}",
            ]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
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

    def _daemon_argv(self) -> list[str]:
        return [
            self._binary("crio"),
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
        ]

    # --------------------------------------------------------------- teardown

    def _id_dirs(self) -> list[Path]:
        return [self.runtime_root, self.exits_dir, self.attach_dir]

    def _collect_ids(self) -> set[str]:
        super()._collect_ids()
        containers = self.storage_root / "overlay-containers"
        if containers.is_dir():
            # Beside the IDs it keeps its containers.json and lock file.
            self._known_ids.update(p.name for p in containers.iterdir() if len(p.name) == 64)
        return self._known_ids

    def _monitor_pids(self) -> list[int]:
        # conmon carries our dirs in its argv (-b/-r/--exit-dir under the base dir).
        me = os.getpid()
        return [
            pid
            for pid, argv in proc_cmdlines()
            if pid != me
            and argv
            and os.path.basename(argv[0]) == "conmon"
            and any(str(self.base_dir) in a for a in argv)
        ]

    def _oci_command(self) -> list[str] | None:
        if not self.runtime_root.is_dir():
            return None
        _handler, oci = _oci_runtime()
        return [oci, "--root", str(self.runtime_root)]

    def _outside_files(self) -> list[Path]:
        """The cgroups CRI-O's cgroupfs manager makes per sandbox, container and conmon."""
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

    def _remove_dirs(self) -> None:
        remove_tree_entries(self.base_dir, keep=[self.log_path])


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
