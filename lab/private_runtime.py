"""What every private container runtime of the lab has in common, whichever it is.

A private runtime owns one base directory (root, state, socket, OCI runtime
state, CNI config and IPAM data, log) and a bridge and subnet named by a
random 3-byte token, so two instances (two test runs, a lab beside a test)
never share anything. ``PrivateRuntime`` is its lifecycle, written once:

- ``start`` writes the config, boots the daemon in its own session and waits
  until CRI ``Version`` answers; ``kill`` stops the daemon only (shims or
  conmon and the pods keep running, as when a node's runtime restarts);
  ``restart``; ``adopt`` takes over a daemon an earlier process started;
- ``stop`` drains the node as a kubelet would (containers, then sandboxes,
  through CRI), stops the daemon, and only then kills what is left, unmounts,
  removes the bridge and the files a killed runtime leaves outside its base
  directory; ``leftovers`` says what of the instance is still on the machine.

A runtime supplies what differs (``lab.containerd`` for containerd 1.6,
``lab.runtimes`` for containerd 2.x and CRI-O): its binaries, config and
daemon argv, image import, where its IDs, monitor processes and OCI state
are, and which of its files live outside the base directory.

The module also holds the host pieces those need and ``lab.node`` reuses:
the pod network's conflist, the subnet choice, mounts and process argv.
Imports ``cri_proto`` with grpc, ``lab.processes`` and ``lab.errors``.
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Self

import grpc

from cri_proto import api_pb2, api_pb2_grpc
from lab.errors import ContainerdFailed, LabError, MissingTool
from lab.processes import ProcessRef, log_tail, stop_process

CNI_BIN_DIR = Path("/usr/lib/cni")
# libcni keeps its result cache here whatever the runtime's config says
# (containerd 1.6 offers no setting for it).
CNI_CACHE_DIR = Path("/var/lib/cni/results")
# sockaddr_un.sun_path is 108 bytes; containerd also appends ".ttrpc".
MAX_SOCKET_PATH = 100
CONFLIST_NAME = "10-podlens-lab.conflist"

_MNT_DETACH = 2


# --------------------------------------------------------------------------
# Host pieces
# --------------------------------------------------------------------------


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


def pick_subnet(token: bytes) -> ipaddress.IPv4Network:
    """A /24 for the pod network that nothing on the host routes or owns."""
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


def mounts_under(base: Path) -> list[str]:
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


def unmount_under(base: Path) -> list[str]:
    """Unmount everything at or below ``base`` (lazily if busy); what is still mounted."""
    for point in mounts_under(base):
        if not _umount(point):
            _umount(point, _MNT_DETACH)
    return mounts_under(base)


def proc_cmdlines() -> Iterator[tuple[int, list[str]]]:
    """Every process's PID and argv (processes gone meanwhile, or kernel threads, skipped)."""
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


def require_cni_plugins() -> None:
    """MissingTool unless the CNI plugins the pod network uses are installed."""
    for plugin in ("bridge", "host-local", "loopback"):
        if not (CNI_BIN_DIR / plugin).is_file():
            raise MissingTool(f"{CNI_BIN_DIR / plugin}", "containernetworking-plugins")


# --------------------------------------------------------------------------
# The lifecycle
# --------------------------------------------------------------------------


class PrivateRuntime:
    """One runtime daemon with its own directories, socket, bridge and subnet.

    The daemon runs in its own session and outlives the process that
    started it. Another process can take it over with ``adopt()``, given the
    same base directory and ``token``, and then ``stop()`` it as if it had
    started it. ``stop()`` is idempotent.
    """

    # The lab's name for the runtime (``lab.runtimes.RUNTIMES``).
    name: ClassVar[str]
    # The daemon's name in messages ("containerd", "crio", "CRI-O").
    daemon_name: ClassVar[str]
    display_name: ClassVar[str]
    # How long ``stop`` lets the daemon exit before it is killed.
    stop_grace: ClassVar[float] = 10.0

    def __init__(
        self,
        base_dir: Path,
        images: Sequence[object],
        *,
        socket_name: str,
        config_name: str,
        sandbox_image: str,
        start_timeout: float,
        log_level: str,
        token: bytes | None,
        registry_mirror: str | None,
        service_cidr: str | None,
    ) -> None:
        self.base_dir = Path(base_dir).resolve()
        # Where pulls from docker.io and registry.k8s.io go (the lab's own
        # registry on loopback, real mode); None: nothing can be pulled.
        self.registry_mirror = registry_mirror
        # Routed from every pod through the lab's gateway namespace (real mode).
        self.service_cidr = service_cidr
        self.images = tuple(images)
        self.sandbox_image = sandbox_image
        self.start_timeout = start_timeout
        self.log_level = log_level

        if token is not None and len(token) != 3:
            raise LabError("a runtime token is 3 bytes")
        self._token = token if token is not None else os.urandom(3)
        self.bridge_name = "plns" + self._token.hex()
        self.network_name = "podlens-lab-" + self._token.hex()
        self.subnet: ipaddress.IPv4Network | None = None

        self.cni_conf_dir = self.base_dir / "cni" / "net.d"
        self.cni_ipam_dir = self.base_dir / "cni" / "ipam"
        self.config_path = self.base_dir / config_name
        self.address = str(self.base_dir / socket_name)
        self.log_path = self.base_dir / f"{self.daemon_name}.log"

        self._proc: subprocess.Popen[bytes] | None = None
        self._adopted: ProcessRef | None = None
        # Every sandbox/container ID seen under our dirs; outlives the dirs,
        # so leftovers outside them can still be attributed after teardown.
        self._known_ids: set[str] = set()
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

    def is_running(self) -> bool:
        """Whether the daemon (started here or adopted) still runs."""
        if self._proc is not None:
            return self._proc.poll() is None
        return self._adopted is not None and self._adopted.alive()

    def adopt(self, daemon: ProcessRef) -> Self:
        """Take over a daemon an earlier process started on this base directory."""
        if not daemon.alive():
            raise ContainerdFailed(f"{self.daemon_name} (pid {daemon.pid}) is no longer running")
        argv = dict(proc_cmdlines()).get(daemon.pid, [])
        if str(self.config_path) not in argv:
            raise ContainerdFailed(
                f"pid {daemon.pid} is not the {self.daemon_name} of {self.base_dir}: "
                f"{' '.join(argv)}"
            )
        self._proc = None
        self._adopted = daemon
        self._stopped = False
        self.subnet = read_conflist_subnet(self.cni_conf_dir)
        self._adopted_running()
        return self

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------ what differs

    def _check_environment(self) -> None:
        """Raise a LabError naming what is missing to run this runtime here."""
        raise NotImplementedError

    def _prepare(self) -> None:
        """Everything on disk the daemon reads at start: config, network, images."""
        raise NotImplementedError

    def _daemon_argv(self) -> list[str]:
        raise NotImplementedError

    def _daemon_env(self) -> dict[str, str] | None:
        """The daemon's environment; None inherits this process's."""
        return None

    def _socket_files(self) -> list[Path]:
        """Sockets a killed daemon leaves, which would make the next one fail to bind."""
        return [Path(self.address)]

    def _after_ready(self) -> None:
        """Work that needs the daemon serving (e.g. an image import through its API)."""

    def _adopted_running(self) -> None:
        """State to restore when a running daemon is adopted."""

    def _id_dirs(self) -> list[Path]:
        """Directories whose entries are named by sandbox or container IDs."""
        raise NotImplementedError

    def _monitor_pids(self) -> list[int]:
        """The per-container monitors (shims, conmon) of this instance."""
        raise NotImplementedError

    def _oci_command(self) -> list[str] | None:
        """The OCI runtime pointed at this instance's state root, if it has any state."""
        raise NotImplementedError

    def _outside_files(self) -> list[Path]:
        """This instance's files outside its base directory, beyond the CNI cache."""
        raise NotImplementedError

    def _remove_dirs(self) -> None:
        """Remove what ``start`` created in the base directory; the log stays."""
        raise NotImplementedError

    def _write_pod_network(self) -> None:
        """The CNI config and IPAM directory of the pod network ``start`` picked."""
        assert self.subnet is not None
        self.cni_conf_dir.mkdir(parents=True, exist_ok=True)
        self.cni_ipam_dir.mkdir(parents=True, exist_ok=True)
        write_bridge_conflist(
            self.cni_conf_dir,
            self.network_name,
            self.bridge_name,
            self.subnet,
            self.cni_ipam_dir,
            self.service_cidr,
        )

    # ------------------------------------------------------------ lifecycle

    def start(self) -> Self:
        """Boot the daemon and wait for CRI (the images imported on the first start)."""
        if self.is_running():
            return self
        self._check_environment()
        if len(self.address) + len(".ttrpc") > MAX_SOCKET_PATH:
            raise LabError(f"socket path too long for a unix socket: {self.address}")
        self._stopped = False
        if self.subnet is None:
            self.subnet = pick_subnet(self._token)
        self._prepare()
        for socket in self._socket_files():
            socket.unlink(missing_ok=True)
        argv = self._daemon_argv()
        self._adopted = None
        t0 = time.monotonic()
        with self.log_path.open("ab") as log:
            log.write(f"---- podlens lab: starting {self.daemon_name} at {time.ctime()}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                argv,
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
            self._after_ready()
        except BaseException:
            self._terminate_daemon(grace=2.0)
            raise
        return self

    def _wait_ready(self, deadline: float) -> None:
        last_error = "socket not created"
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise ContainerdFailed(
                    f"{self.daemon_name} exited with code {self._proc.returncode} during start; "
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
                            f"{self.daemon_name} is up but is not serving CRI runtime.v1 "
                            f"({last_error}); log {self.log_path}:\n{log_tail(self.log_path)}"
                        ) from exc
            time.sleep(0.05)
        raise ContainerdFailed(
            f"{self.daemon_name} did not answer CRI Version within {self.start_timeout:.0f}s "
            f"({last_error}); log {self.log_path}:\n{log_tail(self.log_path)}"
        )

    def _terminate_daemon(self, grace: float, sig: int = signal.SIGTERM) -> None:
        if self._proc is not None:
            stop_process(self._proc, grace, sig=sig)
        elif self._adopted is not None:
            stop_process(self._adopted, grace, sig=sig)

    def kill(self, *, graceful: bool = True, grace: float = 10.0) -> None:
        """Stop only the daemon; shims or conmon and the pods keep running, as on a real node."""
        self._terminate_daemon(grace, signal.SIGTERM if graceful else signal.SIGKILL)

    def restart(self) -> Self:
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
                containers = stub.ListContainers(api_pb2.ListContainersRequest(), timeout=10)
            except grpc.RpcError:
                return ["<list failed>"]
            # A sandbox's stop gives each of its containers the whole grace
            # period (CRI-O: 30 s); kubelet stops the containers first, and so
            # do we, at once.
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
        for parent in self._id_dirs():
            if parent.is_dir():
                self._known_ids.update(p.name for p in parent.iterdir())
        return self._known_ids

    def _kill_leftovers(self) -> None:
        for pid in self._monitor_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        # Killing a monitor leaves its container processes behind; the OCI
        # runtime, pointed at our own state root, still knows them.
        oci = self._oci_command()
        if oci is None:
            return
        listing = subprocess.run(
            [*oci, "list", "-q"], capture_output=True, text=True, timeout=30, check=False
        )
        for cid in listing.stdout.split():
            subprocess.run(
                [*oci, "delete", "--force", cid], capture_output=True, timeout=30, check=False
            )

    def _cni_cache_files(self) -> list[Path]:
        if not CNI_CACHE_DIR.is_dir():
            return []
        # Named <network>-<sandbox ID>-<ifname>; a runtime's own loopback
        # network has another name, hence the ID match as well.
        return [
            entry
            for entry in CNI_CACHE_DIR.iterdir()
            if entry.name.startswith(self.network_name + "-")
            or any(f"-{sid}-" in entry.name for sid in self._known_ids)
        ]

    def _remove_outside_files(self) -> None:
        for path in [*self._cni_cache_files(), *self._outside_files()]:
            if path.is_dir() and not path.is_symlink():
                # Cgroup directories: children first, each removable only when empty.
                with contextlib.suppress(OSError):
                    for sub in sorted(path.rglob("*"), key=lambda p: -len(p.parts)):
                        if sub.is_dir():
                            sub.rmdir()
                    path.rmdir()
            else:
                path.unlink(missing_ok=True)

    def _remove_network(self) -> None:
        subprocess.run(
            ["ip", "link", "del", self.bridge_name], capture_output=True, timeout=10, check=False
        )

    def stop(self, *, remove_dirs: bool = True) -> None:
        """Tear everything down: pods, daemon, monitors, mounts, bridge, dirs.

        The log file is kept so a failed run can still be read.
        """
        if self._stopped:
            return
        problems: list[str] = []
        self._collect_ids()
        stuck = self.remove_all_pods()
        if stuck:
            problems.append(f"sandboxes not removed through CRI: {stuck}")
        self._terminate_daemon(grace=self.stop_grace)
        self._collect_ids()
        self._kill_leftovers()
        left_mounted = unmount_under(self.base_dir)
        self._remove_network()
        self._remove_outside_files()
        if left_mounted:
            problems.append(f"still mounted: {left_mounted}")
        elif remove_dirs:
            self._remove_dirs()
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
            raise ContainerdFailed(
                f"lab {self.display_name} teardown incomplete: " + "; ".join(problems)
            )

    def leftovers(self) -> dict[str, list[str]]:
        """What of this instance is still on the machine (empty lists after ``stop()``)."""
        bridge = subprocess.run(
            ["ip", "link", "show", self.bridge_name], capture_output=True, check=False
        )
        me = os.getpid()
        procs = [
            f"{pid} {' '.join(argv)}"
            for pid, argv in proc_cmdlines()
            if pid != me and any(self.address in a or str(self.base_dir) in a for a in argv)
        ]
        self._collect_ids()
        outside = [*self._cni_cache_files(), *self._outside_files()]
        return {
            "processes": procs,
            "mounts": mounts_under(self.base_dir),
            "bridge": [self.bridge_name] if bridge.returncode == 0 else [],
            "files": sorted(str(p) for p in outside),
        }


def remove_tree_entries(base: Path, keep: Sequence[Path]) -> None:
    """Remove everything directly under ``base`` except ``keep``."""
    for entry in base.iterdir() if base.is_dir() else ():
        if entry in keep:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
