"""The lab API server as the process ``lab up`` runs: it outlives clients that hang up.

A watch client that disconnects while the server writes (an agent restarted,
``kubectl get -w`` interrupted, a benchmark's agent stopped) must cost the
server that one connection, never its life: the node's kubelet, agent and
every other watcher depend on it.
"""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
import time

import httpx


def test_a_watcher_that_hangs_up_mid_stream_does_not_take_the_server_down() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "lab.apiserver", "--port", "0", "--bookmark-interval", "0.05"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().decode().strip()
        host, port = url.removeprefix("http://").split(":")
        for abrupt in (False, True, False):
            watcher = socket.create_connection((host, int(port)), timeout=5)
            watcher.sendall(
                b"GET /api/v1/namespaces/default/pods?watch=1&allowWatchBookmarks=true HTTP/1.1\r\n"
                b"Host: lab\r\n\r\n"
            )
            assert watcher.recv(4096).startswith(b"HTTP/1.1 200")
            # An abrupt close (RST) or an orderly one: either way the
            # server's writes that follow fail (EPIPE after the peer's RST).
            if abrupt:
                watcher.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            watcher.close()
            time.sleep(0.3)
            assert proc.poll() is None, f"the API server exited with {proc.returncode}"
        answer = httpx.get(f"{url}/api/v1/namespaces/default/pods", timeout=5)
        assert answer.status_code == 200
        assert answer.json()["kind"] == "PodList"
    finally:
        proc.terminate()
        proc.wait(10)
