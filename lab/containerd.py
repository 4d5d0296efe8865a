"""A private containerd 1.6 (Debian's) for the lab node and the tests.

Everything the instance owns lives under one base directory (root, state,
socket, runc state, CNI config and IPAM data, log), and its pod network is a
bridge with a name and subnet of its own, so two instances (two test runs)
never share state. The lifecycle (start, adopt, kill, drain-then-teardown,
leftovers) is every private runtime's, in ``lab.private_runtime``; this
module adds containerd's binaries, config, image import, and where its IDs,
shims and runc state are.

Imports ``lab.private_runtime``, ``lab.images`` to import the images and
``lab.errors``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from lab.errors import NotRoot
from lab.images import PAUSE_IMAGE, ImageTar, import_images, require_tool
from lab.private_runtime import (
    CNI_BIN_DIR,
    PrivateRuntime,
    proc_cmdlines,
    require_cni_plugins,
)

# containerd puts every shim's socket here, named by a hash of the
# daemon address, namespace and task ID (runtime/v2/shim/util_unix.go).
SHIM_SOCKET_DIR = Path("/run/containerd/s")


class PrivateContainerd(PrivateRuntime):
    """One containerd instance with its own dirs, socket, runc root and bridge.

    ``start()`` boots it (importing ``images`` on the first start);
    ``kill()`` stops only the daemon, leaving shims and pods running as a
    runtime restart on a real node does; ``start()`` again reattaches on the
    same dirs. ``stop()`` tears everything down and is idempotent.
    """

    name = "containerd"
    daemon_name = "containerd"
    display_name = "containerd"

    def __init__(
        self,
        base_dir: Path,
        images: Sequence[ImageTar] = (),
        *,
        sandbox_image: str = PAUSE_IMAGE,
        start_timeout: float = 30.0,
        log_level: str = "info",
        token: bytes | None = None,
        registry_mirror: str | None = None,
        service_cidr: str | None = None,
    ) -> None:
        super().__init__(
            base_dir,
            images,
            socket_name="containerd.sock",
            config_name="config.toml",
            sandbox_image=sandbox_image,
            start_timeout=start_timeout,
            log_level=log_level,
            token=token,
            registry_mirror=registry_mirror,
            service_cidr=service_cidr,
        )
        self.images: tuple[ImageTar, ...] = tuple(images)
        self.root_dir = self.base_dir / "root"
        self.state_dir = self.base_dir / "state"
        self.runc_root = self.base_dir / "runc"
        self._imported = False

    @property
    def runc_state_dir(self) -> Path:
        """Where runc keeps its container state for this instance."""
        # The runc shim appends the containerd namespace to its Root option.
        return self.runc_root / "k8s.io"

    # ------------------------------------------------------------ per release

    def _binary(self, name: str) -> str:
        """Where the daemon, ``ctr`` and the shim of this release are."""
        return require_tool(name, "containerd")

    def _import_images(self) -> None:
        import_images(self.address, self.images)

    def ctr_binary(self) -> str:
        """This release's ``ctr``, which imports archives into it (the agent's image)."""
        return self._binary("ctr")

    def _check_environment(self) -> None:
        if os.geteuid() != 0:
            raise NotRoot("the lab containerd needs root (it runs runc, mounts and a bridge)")
        self._binary("containerd")
        self._binary("ctr")
        self._binary("containerd-shim-runc-v2")
        require_tool("runc", "runc")
        require_tool("ip", "iproute2")
        require_cni_plugins()

    def _prepare(self) -> None:
        for d in (self.root_dir, self.state_dir, self.runc_root):
            d.mkdir(parents=True, exist_ok=True)
        self._write_pod_network()
        self.config_path.write_text(self._config_text())

    def _config_text(self) -> str:
        """The daemon's config.toml (containerd 1.6's version 2 layout)."""

        def q(value: str | Path) -> str:
            return json.dumps(str(value))

        cri = '[plugins."io.containerd.grpc.v1.cri"'
        config = f"""\
version = 2
root = {q(self.root_dir)}
state = {q(self.state_dir)}
# Plugins that would reach outside the base dir, or only log noise here.
disabled_plugins = [
  "io.containerd.internal.v1.opt",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs",
]

[grpc]
  address = {q(self.address)}

[debug]
  level = {q(self.log_level)}

{cri}]
  sandbox_image = {q(self.sandbox_image)}
  # Without CAP_SYS_RESOURCE runc cannot lower oom_score_adj, and every
  # sandbox would fail with "can't get final child's PID from pipe".
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false

{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

{cri}.containerd.runtimes.runc.options]
  # runc's default root is shared by every containerd on the machine.
  Root = {q(self.runc_root)}

{cri}.cni]
  bin_dir = {q(CNI_BIN_DIR)}
  conf_dir = {q(self.cni_conf_dir)}
  max_conf_num = 1
"""
        if self.registry_mirror is not None:
            for registry in ("docker.io", "registry.k8s.io"):
                config += f"""
{cri}.registry.mirrors."{registry}"]
  endpoint = [{q(self.registry_mirror)}]
"""
        return config

    def _daemon_argv(self) -> list[str]:
        return [self._binary("containerd"), "--config", str(self.config_path)]

    def _socket_files(self) -> list[Path]:
        return [Path(self.address), Path(self.address + ".ttrpc")]

    def _after_ready(self) -> None:
        if not self._imported and self.images:
            self._import_images()
            self._imported = True

    def _adopted_running(self) -> None:
        self._imported = True

    # --------------------------------------------------------------- teardown

    def _id_dirs(self) -> list[Path]:
        return [
            self.state_dir / "io.containerd.runtime.v2.task" / "k8s.io",
            self.root_dir / "io.containerd.grpc.v1.cri" / "sandboxes",
            self.root_dir / "io.containerd.grpc.v1.cri" / "containers",
            self.runc_state_dir,
        ]

    def _shim_socket(self, task_id: str) -> Path:
        digest = hashlib.sha256(f"{self.address}/k8s.io/{task_id}".encode()).hexdigest()
        return SHIM_SOCKET_DIR / digest

    def _monitor_pids(self) -> list[int]:
        return [
            pid
            for pid, argv in proc_cmdlines()
            if argv and "containerd-shim" in os.path.basename(argv[0]) and self.address in argv
        ]

    def _oci_command(self) -> list[str] | None:
        runc = shutil.which("runc")
        if runc is None or not self.runc_state_dir.is_dir():
            return None
        return [runc, "--root", str(self.runc_state_dir)]

    def _outside_files(self) -> list[Path]:
        """Shim sockets a killed shim leaves, and the runtime's per-container cgroups."""
        found = [self._shim_socket(i) for i in self._known_ids]
        cgroup_root = Path("/sys/fs/cgroup")
        if cgroup_root.is_dir():
            found += [
                hierarchy / "k8s.io" / i
                for hierarchy in cgroup_root.iterdir()
                for i in self._known_ids
            ]
        return [p for p in found if p.exists()]

    def _remove_dirs(self) -> None:
        for d in (self.root_dir, self.state_dir, self.runc_root, self.base_dir / "cni"):
            shutil.rmtree(d, ignore_errors=True)
        for f in (*self._socket_files(), self.config_path):
            f.unlink(missing_ok=True)
        self._imported = False


__all__ = ["SHIM_SOCKET_DIR", "PrivateContainerd"]
