"""How pods of the real node reach the API server: the lab's gateway namespace.

In-cluster clients (the agent's DaemonSet pod among them) dial the
``kubernetes`` Service, 10.96.0.1:443. On a cluster, kube-proxy turns that
into the API server's address. Here the API server listens on loopback only,
and nothing may reach the host from the pod network (no address on the host
side of the bridge), so kube-proxy has nowhere to send it. The lab instead
puts one network namespace of its own on the pod bridge: it holds the pod
subnet's first address (the gateway of the one route pods get, to the
service range) and the Service's address, and a small proxy there forwards
each connection to the API server on the host's loopback. Traffic stays
between namespaces the lab made and the host's loopback.

``python -m lab.upstream.gateway --netns PATH --listen IP:PORT --to PORT``
runs the proxy. Imports ``lab.netns``, ``lab.errors`` and the standard library.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import socket
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lab.errors import LabError
from lab.netns import socket_in_netns

NETNS_DIR = Path("/run/netns")


@dataclass(frozen=True, slots=True)
class Gateway:
    """The gateway namespace of one lab: its names and addresses."""

    token: str  # the lab containerd's token: names the bridge and this namespace
    bridge: str
    subnet: ipaddress.IPv4Network
    service_ip: str

    @property
    def netns(self) -> str:
        """The namespace's name (``ip netns``)."""
        return f"plnsgw-{self.token}"

    @property
    def netns_path(self) -> Path:
        """The namespace's bind mount, which ``setns`` opens."""
        return NETNS_DIR / self.netns

    @property
    def host_link(self) -> str:
        """The host end of the veth pair, on the bridge."""
        return f"plnsg{self.token}"

    @property
    def address(self) -> str:
        """The subnet's first address: the pods' gateway to the service range."""
        return str(self.subnet[1])

    @property
    def host_address(self) -> str:
        """The subnet's last address, on the bridge: the host's way to the pods.

        The real kubelet probes pods from the host (httpGet, tcpSocket), as on
        any node; without this address the host has no route to pod IPs and a
        probe would follow the default route off the machine. Pods get no
        route through it: theirs go to each other and to the service range.
        """
        return str(self.subnet[-2])

    def create(self) -> None:
        """Make the namespace, its veth on the bridge, and its two addresses."""
        peer = f"plnsq{self.token}"
        steps = [
            ["ip", "netns", "add", self.netns],
            ["ip", "link", "add", self.host_link, "type", "veth", "peer", "name", peer],
            ["ip", "link", "set", peer, "netns", self.netns],
            ["ip", "-n", self.netns, "link", "set", peer, "name", "eth0"],
            [
                "ip",
                "-n",
                self.netns,
                "addr",
                "add",
                f"{self.address}/{self.subnet.prefixlen}",
                "dev",
                "eth0",
            ],
            ["ip", "-n", self.netns, "addr", "add", f"{self.service_ip}/32", "dev", "lo"],
            ["ip", "-n", self.netns, "link", "set", "lo", "up"],
            ["ip", "-n", self.netns, "link", "set", "eth0", "up"],
        ]
        if not _link_exists(self.bridge):
            # The CNI bridge plugin adopts a bridge that exists by its name.
            steps.insert(0, ["ip", "link", "add", self.bridge, "type", "bridge"])
            steps.insert(1, ["ip", "link", "set", self.bridge, "up"])
        steps += [
            ["ip", "link", "set", self.host_link, "master", self.bridge],
            ["ip", "link", "set", self.host_link, "up"],
            [
                "ip",
                "addr",
                "add",
                f"{self.host_address}/{self.subnet.prefixlen}",
                "dev",
                self.bridge,
            ],
        ]
        for argv in steps:
            _ip(argv)

    def remove(self) -> list[str]:
        """Delete the namespace (and with it the veth pair); what could not be removed."""
        problems: list[str] = []
        if self.netns_path.exists():
            done = subprocess.run(
                ["ip", "netns", "del", self.netns],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            if done.returncode != 0:
                problems.append(f"netns {self.netns} left: {done.stderr.strip()}")
        if _link_exists(self.host_link):
            subprocess.run(
                ["ip", "link", "del", self.host_link], capture_output=True, timeout=30, check=False
            )
            if _link_exists(self.host_link):
                problems.append(f"link {self.host_link} left")
        return problems


def _link_exists(name: str) -> bool:
    return (Path("/sys/class/net") / name).exists()


def _ip(argv: list[str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        raise LabError(f"`{' '.join(argv)}` failed: {done.stderr.strip()}")


# --------------------------------------------------------------------------
# The proxy
# --------------------------------------------------------------------------


def _pump(src: socket.socket, dst: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := src.recv(65536):
            dst.sendall(data)
    with contextlib.suppress(OSError):
        dst.shutdown(socket.SHUT_WR)


def _serve_one(client: socket.socket, target: tuple[str, int]) -> None:
    try:
        upstream = socket.create_connection(target, timeout=10)
    except OSError as exc:
        print(f"gateway: cannot reach {target}: {exc}", file=sys.stderr, flush=True)
        client.close()
        return
    upstream.settimeout(None)
    back = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
    back.start()
    _pump(client, upstream)
    back.join()
    client.close()
    upstream.close()


def serve(netns: str, listen: tuple[str, int], target: tuple[str, int]) -> None:
    """Accept in ``netns`` on ``listen``; forward each connection to ``target`` here."""
    server = socket_in_netns(netns)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(listen)
    server.listen(128)
    print(f"gateway: {listen[0]}:{listen[1]} -> {target[0]}:{target[1]}", flush=True)
    while True:
        client, _ = server.accept()
        threading.Thread(target=_serve_one, args=(client, target), daemon=True).start()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the proxy until stopped."""
    parser = argparse.ArgumentParser(
        prog="python -m lab.upstream.gateway",
        description="Forward the kubernetes Service's address in the lab's gateway namespace "
        "to the API server on the host's loopback.",
    )
    parser.add_argument("--netns", required=True, help="the namespace's path (/run/netns/...)")
    parser.add_argument("--listen", required=True, metavar="IP:PORT")
    parser.add_argument("--to", required=True, type=int, metavar="PORT", dest="port")
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    with contextlib.suppress(KeyboardInterrupt):
        serve(args.netns, (host, int(port)), ("127.0.0.1", args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
