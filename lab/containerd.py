"""A private containerd for the lab node and the tests.

Everything the instance owns lives under one base directory (root, state,
socket, runc state, CNI config and IPAM data, log), and its pod network is a
bridge with a name and subnet of its own, so two instances (two test runs)
never share state. Teardown removes the pods through CRI first, the way a
kubelet would drain a node, and only then falls back to killing processes
and unmounting by hand.

Owns the daemon's config, start, adoption by a later process and teardown.
Imports ``cri_proto`` and grpc to drain pods, ``lab.images`` to import the
images, ``lab.processes`` to stop the daemon, and ``lab.errors``.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import ipaddress
import json
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType

import grpc

from cri_proto import api_pb2, api_pb2_grpc
from lab.errors import ContainerdFailed, LabError, MissingTool, NotRoot
from lab.images import PAUSE_IMAGE, ImageTar, import_images, require_tool
from lab.processes import ProcessRef, log_tail, stop_process

CNI_BIN_DIR = Path("/usr/lib/cni")
# libcni keeps its result cache here whatever the CRI plugin's config says
# (containerd 1.6 offers no setting for it).
CNI_CACHE_DIR = Path("/var/lib/cni/results")
# containerd 1.6 puts every shim's socket here, named by a hash of the
# daemon address, namespace and task ID (runtime/v2/shim/util_unix.go).
SHIM_SOCKET_DIR = Path("/run/containerd/s")
# sockaddr_un.sun_path is 108 bytes; containerd also appends ".ttrpc".
MAX_SOCKET_PATH = 100

_MNT_DETACH = 2


def _host_networks() -> list[ipaddress.IPv4Network]:
    """IPv4 prefixes the host already routes or owns, to keep pod subnets clear of."""
    nets: list[ipaddress.IPv4Network] = []
    for cmd in (["ip", "-j", "-4", "route", "show", "table", "all"], ["ip", "-j", "-4", "addr"]):
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0 or not proc.stdout.strip():
            continue
        for item in json.loads(proc.stdout):
            candidates = [item.get("dst", "")]
            candidates += [
                f"{a.get('local')}/{a.get('prefixlen')}" for a in item.get("addr_info", [])
            ]
            for cand in candidates:
                if not cand or cand == "default":
                    continue
                with contextlib.suppress(ValueError):
                    nets.append(ipaddress.IPv4Network(cand, strict=False))
    return nets


def _pick_subnet(token: bytes) -> ipaddress.IPv4Network:
    taken = _host_networks()
    # 10.128.0.0/10 is rarely used by hosts; the token spreads concurrent
    # instances over its 16k /24s, and host-routed ones are skipped.
    for i in range(64):
        second = 128 + (token[0] + i) % 64
        third = (token[1] + 37 * i) % 256
        net = ipaddress.IPv4Network(f"10.{second}.{third}.0/24")
        if not any(net.overlaps(t) for t in taken):
            return net
    raise LabError("no free 10.128.0.0/10 subnet for the lab pod network")


CONFLIST_NAME = "10-podlens-lab.conflist"


def write_bridge_conflist(
    conf_dir: Path,
    network_name: str,
    bridge_name: str,
    subnet: ipaddress.IPv4Network,
    ipam_dir: Path,
    service_cidr: str | None = None,
) -> Path:
    """The lab's pod network: a bridge of its own, one address per pod, nothing routed.

    With ``service_cidr``, pods get one route: that range through the
    subnet's first address, which is kept out of allocation. Only the lab's
    gateway namespace holds that address (``lab.upstream.gateway``); the host
    still gets none.
    """
    ipam_range: dict[str, str] = {"subnet": str(subnet)}
    ipam: dict[str, object] = {
        "type": "host-local",
        "ranges": [[ipam_range]],
        "dataDir": str(ipam_dir),
    }
    if service_cidr is not None:
        gateway = str(subnet[1])
        ipam_range["gateway"] = gateway
        ipam["routes"] = [{"dst": service_cidr, "gw": gateway}]
        # The host's address on the bridge (real mode): never handed to a pod.
        ipam_range["rangeEnd"] = str(subnet[-3])
    conflist = {
        "cniVersion": "0.4.0",
        "name": network_name,
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge_name,
                # No gateway and no masquerade: the host gets no address
                # and no route into the pod subnet, so pods reach only
                # each other, never the host's networks.
                "isGateway": False,
                "ipMasq": False,
                "ipam": ipam,
            },
            {"type": "loopback"},
        ],
    }
    path = conf_dir / CONFLIST_NAME
    path.write_text(json.dumps(conflist, indent=2))
    return path


def read_conflist_subnet(conf_dir: Path) -> ipaddress.IPv4Network | None:
    """The subnet a conflist written by ``write_bridge_conflist`` gives pods, if readable."""
    with contextlib.suppress(OSError, ValueError, KeyError, IndexError):
        conflist = json.loads((conf_dir / CONFLIST_NAME).read_text())
        return ipaddress.IPv4Network(conflist["plugins"][0]["ipam"]["ranges"][0][0]["subnet"])
    return None


def _mounts_under(base: Path) -> list[str]:
    """Mount points at or below ``base``, deepest first."""
    prefix = str(base.resolve()).rstrip("/") + "/"
    found: list[str] = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if len(fields) < 5:
                continue
            # mountinfo escapes blanks as octal; undo it to compare paths.
            point = fields[4].encode().decode("unicode_escape")
            if point == prefix.rstrip("/") or point.startswith(prefix):
                found.append(point)
    return sorted(set(found), key=lambda p: (p.count("/"), p), reverse=True)


def _umount(path: str, flags: int = 0) -> bool:
    libc = ctypes.CDLL(None, use_errno=True)
    return int(libc.umount2(path.encode(), flags)) == 0


def _proc_cmdlines() -> Iterator[tuple[int, list[str]]]:
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                raw = f.read()
        except OSError:
            continue
        if raw:
            yield int(entry.name), [a.decode(errors="replace") for a in raw.split(b"\0") if a]


class PrivateContainerd:
    """One containerd instance with its own dirs, socket, runc root and bridge.

    ``start()`` boots it (importing ``images`` on the first start);
    ``kill()`` stops only the daemon, leaving shims and pods running as a
    runtime restart on a real node does; ``start()`` again reattaches on the
    same dirs. ``stop()`` tears everything down and is idempotent.

    The daemon runs in its own session and outlives the process that
    started it. Another process can take it over with ``adopt()``, given the
    same base directory and ``token`` (which names the bridge and network),
    and then ``stop()`` it as if it had started it.
    """

    # The lab's name for this runtime (``lab.runtimes.RUNTIMES``).
    name = "containerd"

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
        self.base_dir = Path(base_dir).resolve()
        # Where pulls from docker.io and registry.k8s.io go (the lab's own
        # registry on loopback); None: nothing can be pulled.
        self.registry_mirror = registry_mirror
        # Routed from every pod through the lab's gateway namespace (real mode).
        self.service_cidr = service_cidr
        self.images = tuple(images)
        self.sandbox_image = sandbox_image
        self.start_timeout = start_timeout
        self.log_level = log_level

        if token is not None and len(token) != 3:
            raise LabError("a containerd token is 3 bytes")
        token = token if token is not None else secrets.token_bytes(3)
        self.bridge_name = "plns" + token.hex()
        self.network_name = "podlens-lab-" + token.hex()
        self._token = token
        self.subnet: ipaddress.IPv4Network | None = None

        self.root_dir = self.base_dir / "root"
        self.state_dir = self.base_dir / "state"
        self.runc_root = self.base_dir / "runc"
        self.cni_conf_dir = self.base_dir / "cni" / "net.d"
        self.cni_ipam_dir = self.base_dir / "cni" / "ipam"
        self.config_path = self.base_dir / "config.toml"
        self.address = str(self.base_dir / "containerd.sock")
        self.log_path = self.base_dir / "containerd.log"

        self._proc: subprocess.Popen[bytes] | None = None
        self._adopted: ProcessRef | None = None
        # Every sandbox/container ID seen under our dirs; outlives the dirs,
        # so leftovers outside them can still be attributed after teardown.
        self._known_ids: set[str] = set()
        self._imported = False
        self._stopped = False
        self.last_start_seconds: float | None = None

    # ------------------------------------------------------------------ props

    @property
    def endpoint(self) -> str:
        """The CRI endpoint clients dial: ``unix://`` and the socket path."""
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
        """The daemon's PID while it runs (started here or adopted); None otherwise."""
        if not self.is_running():
            return None
        if self._proc is not None:
            return self._proc.pid
        return self._adopted.pid if self._adopted is not None else None

    @property
    def runc_state_dir(self) -> Path:
        """Where runc keeps its container state for this instance."""
        # The runc shim appends the containerd namespace to its Root option.
        return self.runc_root / "k8s.io"

    def is_running(self) -> bool:
        """Whether the daemon (started here or adopted) still runs."""
        if self._proc is not None:
            return self._proc.poll() is None
        return self._adopted is not None and self._adopted.alive()

    def adopt(self, daemon: ProcessRef) -> PrivateContainerd:
        """Take over a daemon an earlier process started on this base directory."""
        if not daemon.alive():
            raise ContainerdFailed(f"containerd (pid {daemon.pid}) is no longer running")
        argv = dict(_proc_cmdlines()).get(daemon.pid, [])
        if str(self.config_path) not in argv:
            raise ContainerdFailed(
                f"pid {daemon.pid} is not the containerd of {self.base_dir}: {' '.join(argv)}"
            )
        self._proc = None
        self._adopted = daemon
        self._stopped = False
        self._imported = True
        self.subnet = read_conflist_subnet(self.cni_conf_dir)
        return self

    # ------------------------------------------------------------ lifecycle

    def __enter__(self) -> PrivateContainerd:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------ per release

    def _binary(self, name: str) -> str:
        """Where the daemon, ``ctr`` and the shim of this release are."""
        return require_tool(name, "containerd")

    def _daemon_env(self) -> dict[str, str] | None:
        """The daemon's environment; None inherits this process's."""
        return None

    def _import_images(self) -> None:
        import_images(self.address, self.images)

    def _check_environment(self) -> None:
        if os.geteuid() != 0:
            raise NotRoot("the lab containerd needs root (it runs runc, mounts and a bridge)")
        self._binary("containerd")
        self._binary("ctr")
        self._binary("containerd-shim-runc-v2")
        require_tool("runc", "runc")
        require_tool("ip", "iproute2")
        for plugin in ("bridge", "host-local", "loopback"):
            if not (CNI_BIN_DIR / plugin).is_file():
                raise MissingTool(f"{CNI_BIN_DIR / plugin}", "containernetworking-plugins")
        if len(self.address) + len(".ttrpc") > MAX_SOCKET_PATH:
            raise LabError(f"socket path too long for a unix socket: {self.address}")

    def _write_config(self) -> None:
        if self.subnet is None:
            self.subnet = _pick_subnet(self._token)
        for d in (self.root_dir, self.state_dir, self.runc_root, self.cni_conf_dir):
            d.mkdir(parents=True, exist_ok=True)
        self.cni_ipam_dir.mkdir(parents=True, exist_ok=True)
        write_bridge_conflist(
            self.cni_conf_dir,
            self.network_name,
            self.bridge_name,
            self.subnet,
            self.cni_ipam_dir,
            self.service_cidr,
        )
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

    def start(self) -> PrivateContainerd:
        """Boot the daemon (importing the images first if not yet done) and wait for CRI."""
        if self.is_running():
            return self
        self._check_environment()
        self._stopped = False
        self._write_config()
        # A socket left by a killed daemon would make the new one fail to bind.
        Path(self.address).unlink(missing_ok=True)
        Path(self.address + ".ttrpc").unlink(missing_ok=True)

        containerd = self._binary("containerd")
        self._adopted = None
        t0 = time.monotonic()
        with self.log_path.open("ab") as log:
            log.write(f"---- podlens lab: starting containerd at {time.ctime()}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                [containerd, "--config", str(self.config_path)],
                env=self._daemon_env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Its own session: a Ctrl-C to pytest must not reach it before
                # the teardown has drained the pods.
                start_new_session=True,
            )
        try:
            self._wait_ready(t0 + self.start_timeout)
            self.last_start_seconds = time.monotonic() - t0
            if not self._imported and self.images:
                self._import_images()
                self._imported = True
        except BaseException:
            self._terminate_daemon(grace=2.0)
            raise
        return self

    def _wait_ready(self, deadline: float) -> None:
        last_error = "socket not created"
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise ContainerdFailed(
                    f"containerd exited with code {self._proc.returncode} during start; "
                    f"log {self.log_path}:\n{log_tail(self.log_path)}"
                )
            if os.path.exists(self.address):
                try:
                    with grpc.insecure_channel(self.endpoint) as channel:
                        stub = api_pb2_grpc.RuntimeServiceStub(channel)
                        stub.Version(api_pb2.VersionRequest(version="v1"), timeout=1.0)
                    return
                except grpc.RpcError as exc:
                    code = exc.code()
                    last_error = f"{code}: {exc.details()}"
                    if code == grpc.StatusCode.UNIMPLEMENTED:
                        raise ContainerdFailed(
                            "containerd is up but its CRI plugin is not serving runtime.v1 "
                            f"({last_error}); log {self.log_path}:\n{log_tail(self.log_path)}"
                        ) from exc
            time.sleep(0.05)
        raise ContainerdFailed(
            f"containerd did not answer CRI Version within {self.start_timeout:.0f}s "
            f"({last_error}); log {self.log_path}:\n{log_tail(self.log_path)}"
        )

    def _terminate_daemon(self, grace: float, sig: int = signal.SIGTERM) -> None:
        if self._proc is not None:
            stop_process(self._proc, grace, sig=sig)
        elif self._adopted is not None:
            stop_process(self._adopted, grace, sig=sig)

    def kill(self, *, graceful: bool = True, grace: float = 10.0) -> None:
        """Stop only the daemon; shims and pods keep running, as on a real node."""
        self._terminate_daemon(grace, signal.SIGTERM if graceful else signal.SIGKILL)

    def restart(self) -> PrivateContainerd:
        """Stop the daemon gracefully and start it again on the same dirs; pods keep running."""
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
            for sb in sandboxes:
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
        for parent in (
            self.state_dir / "io.containerd.runtime.v2.task" / "k8s.io",
            self.root_dir / "io.containerd.grpc.v1.cri" / "sandboxes",
            self.root_dir / "io.containerd.grpc.v1.cri" / "containers",
            self.runc_state_dir,
        ):
            if parent.is_dir():
                self._known_ids.update(p.name for p in parent.iterdir() if p.is_dir())
        return self._known_ids

    def _shim_socket(self, task_id: str) -> Path:
        digest = hashlib.sha256(f"{self.address}/k8s.io/{task_id}".encode()).hexdigest()
        return SHIM_SOCKET_DIR / digest

    def _remove_outside_files(self) -> None:
        """Files a killed shim or a skipped CNI DEL leaves outside our dirs."""
        for task_id in self._known_ids:
            self._shim_socket(task_id).unlink(missing_ok=True)
        if CNI_CACHE_DIR.is_dir():
            for entry in CNI_CACHE_DIR.iterdir():
                # Named <network>-<sandbox ID>-<ifname>; containerd's own
                # loopback network uses the name "cni-loopback".
                if entry.name.startswith(self.network_name + "-") or any(
                    f"-{sid}-" in entry.name for sid in self._known_ids
                ):
                    entry.unlink(missing_ok=True)

    def _our_shims(self) -> list[int]:
        pids = []
        for pid, argv in _proc_cmdlines():
            if argv and "containerd-shim" in os.path.basename(argv[0]) and self.address in argv:
                pids.append(pid)
        return pids

    def _kill_leftovers(self) -> None:
        for pid in self._our_shims():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        # Killing a shim leaves its container processes behind; runc, pointed
        # at our own state root, still knows them and can kill and delete them.
        runc = shutil.which("runc")
        if runc is None or not self.runc_state_dir.is_dir():
            return
        base = [runc, "--root", str(self.runc_state_dir)]
        listing = subprocess.run([*base, "list", "-q"], capture_output=True, text=True, check=False)
        for cid in listing.stdout.split():
            subprocess.run(
                [*base, "delete", "--force", cid], capture_output=True, timeout=30, check=False
            )

    def _unmount_all(self) -> list[str]:
        for point in _mounts_under(self.base_dir):
            if not _umount(point):
                _umount(point, _MNT_DETACH)
        return _mounts_under(self.base_dir)

    def _remove_network(self) -> None:
        subprocess.run(
            ["ip", "link", "del", self.bridge_name], capture_output=True, timeout=10, check=False
        )

    def stop(self, *, remove_dirs: bool = True) -> None:
        """Tear everything down: pods, daemon, shims, mounts, bridge, dirs.

        The log file is kept so a failed run can still be read.
        """
        if self._stopped:
            return
        problems: list[str] = []
        self._collect_ids()
        stuck = self.remove_all_pods()
        if stuck:
            problems.append(f"sandboxes not removed through CRI: {stuck}")
        self._terminate_daemon(grace=10.0)
        self._collect_ids()
        self._kill_leftovers()
        left_mounted = self._unmount_all()
        self._remove_network()
        self._remove_outside_files()
        if left_mounted:
            problems.append(f"still mounted: {left_mounted}")
        elif remove_dirs:
            for d in (self.root_dir, self.state_dir, self.runc_root, self.base_dir / "cni"):
                shutil.rmtree(d, ignore_errors=True)
            for f in (Path(self.address), Path(self.address + ".ttrpc"), self.config_path):
                f.unlink(missing_ok=True)
            self._imported = False
        self._stopped = True
        if not problems:
            # Killed processes may linger as zombies for a moment.
            deadline = time.monotonic() + 5.0
            left = self.leftovers()
            while any(left.values()) and time.monotonic() < deadline:
                time.sleep(0.1)
                left = self.leftovers()
            problems += [f"{kind} left: {items}" for kind, items in left.items() if items]
        if problems:
            raise ContainerdFailed("lab containerd teardown incomplete: " + "; ".join(problems))

    def leftovers(self) -> dict[str, list[str]]:
        """What of this instance is still on the machine (empty lists after ``stop()``)."""
        bridge = subprocess.run(
            ["ip", "link", "show", self.bridge_name], capture_output=True, check=False
        )
        procs = [
            f"{pid} {' '.join(argv)}"
            for pid, argv in _proc_cmdlines()
            if any(self.address in a or str(self.base_dir) in a for a in argv)
        ]
        ids = self._collect_ids()
        outside = [str(self._shim_socket(i)) for i in ids if self._shim_socket(i).exists()]
        if CNI_CACHE_DIR.is_dir():
            outside += [
                str(e)
                for e in CNI_CACHE_DIR.iterdir()
                if e.name.startswith(self.network_name + "-")
                or any(f"-{i}-" in e.name for i in ids)
            ]
        cgroup_root = Path("/sys/fs/cgroup")
        if cgroup_root.is_dir():
            outside += [
                str(d)
                for hierarchy in cgroup_root.iterdir()
                for i in ids
                for d in (hierarchy / "k8s.io" / i,)
                if d.is_dir()
            ]
        return {
            "processes": procs,
            "mounts": _mounts_under(self.base_dir),
            "bridge": [self.bridge_name] if bridge.returncode == 0 else [],
            "files": sorted(outside),
        }
