"""Probes as kubelet's prober runs them: one worker per container and probe kind.

exec probes go through CRI ExecSync. httpGet and tcpSocket probes connect
to the pod's own address from inside the pod's network namespace: the
socket is created by a short-lived thread that has entered the namespace of
the pod's pause process (``setns``), and a socket stays in the namespace it
was created in. So a probe reaches exactly what kubelet's would (a server
that listens on the pod IP, not one bound to 127.0.0.1 only) and can never
reach any other network. Host-network pods are probed on 127.0.0.1.

Owns ``ProbeWorker`` and the three probe kinds. Imports ``lab.cri_pods``
(ExecSync), ``lab.kubelet.spec`` and ``lab.errors``.
"""

from __future__ import annotations

import http.client
import logging
import math
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from lab.cri_pods import CriPodDriver
from lab.errors import CriCallFailed
from lab.kubelet.spec import Probe
from lab.netns import socket_in_netns

_log = logging.getLogger("lab.kubelet")

PROBE_USER_AGENT: Final = "kube-probe/1.31"
_MAX_BODY: Final = 10 * 1024

READINESS: Final = "Readiness"
LIVENESS: Final = "Liveness"
STARTUP: Final = "Startup"


@dataclass(frozen=True, slots=True)
class ProbeTarget:
    """Where a probe reaches its container: the CRI ID for exec, the address and netns otherwise."""

    container_id: str
    ip: str  # where httpGet/tcpSocket connect
    netns: str | None  # /proc/<pause pid>/ns/net; None for host network
    ports: dict[str, int]  # container port names -> numbers


def _port(probe: Probe, target: ProbeTarget) -> int:
    if isinstance(probe.port, int):
        return probe.port
    if probe.port.isdigit():
        return int(probe.port)
    if probe.port in target.ports:
        return target.ports[probe.port]
    raise ValueError(f"no container port named {probe.port!r}")


def _connect(target: ProbeTarget, port: int, timeout: float) -> socket.socket:
    sock = socket_in_netns(target.netns)
    sock.settimeout(timeout)
    try:
        sock.connect((target.ip, port))
    except OSError:
        sock.close()
        raise
    return sock


def _dial_error(target: ProbeTarget, port: int, exc: OSError) -> str:
    if isinstance(exc, TimeoutError | socket.timeout):
        return f"dial tcp {target.ip}:{port}: i/o timeout"
    detail = exc.strerror or str(exc)
    if isinstance(exc, ConnectionRefusedError):
        detail = "connection refused"
    return f"dial tcp {target.ip}:{port}: connect: {detail}"


def run_probe(
    driver: CriPodDriver, probe: Probe, target: ProbeTarget, timeout: float
) -> tuple[bool, str]:
    """One probe attempt: (success, the output or error kubelet would report)."""
    if probe.kind == "exec":
        try:
            result = driver.exec_sync(
                target.container_id, probe.command, timeout=max(1, math.ceil(timeout))
            )
        except CriCallFailed as exc:
            if "DEADLINE" in str(exc) or "timeout" in str(exc).lower():
                return False, f"command {list(probe.command)} timed out"
            return False, str(exc)
        output = (result.stdout + result.stderr).decode(errors="replace").strip()
        if result.exit_code == 0:
            return True, output
        return False, output or f"command {list(probe.command)} exited with {result.exit_code}"
    try:
        port = _port(probe, target)
    except ValueError as exc:
        return False, str(exc)
    url = f"http://{target.ip}:{port}{probe.path}"
    try:
        sock = _connect(target, port, timeout)
    except OSError as exc:
        err = _dial_error(target, port, exc)
        return False, err if probe.kind == "tcpSocket" else f'Get "{url}": {err}'
    if probe.kind == "tcpSocket":
        sock.close()
        return True, ""
    conn = http.client.HTTPConnection(target.ip, port, timeout=timeout)
    conn.sock = sock
    try:
        headers = {
            "Host": f"{target.ip}:{port}",
            "User-Agent": PROBE_USER_AGENT,
            "Accept": "*/*",
            "Connection": "close",
        }
        headers.update(dict(probe.headers))
        conn.request("GET", probe.path, headers=headers)
        resp = conn.getresponse()
        body = resp.read(_MAX_BODY)
    except (OSError, http.client.HTTPException) as exc:
        return False, f'Get "{url}": {exc}'
    finally:
        conn.close()
    # kubelet: 2xx and 3xx are success.
    if 200 <= resp.status < 400:
        return True, body.decode(errors="replace")
    return False, f"HTTP probe failed with statuscode: {resp.status}"


class ProbeWorker:
    """Runs one probe of one container until stopped or the container is gone.

    ``result`` follows kubelet's: readiness starts False, liveness True,
    startup None (unknown); it flips only after ``successThreshold``
    successes or ``failureThreshold`` failures in a row.
    """

    def __init__(
        self,
        kind: str,
        probe: Probe,
        target: ProbeTarget,
        started_at: float,
        *,
        driver: CriPodDriver,
        time_scale: float,
        may_run: Callable[[], bool],
        on_change: Callable[[], None],
        on_failure: Callable[[str, str], None],
    ) -> None:
        self.kind = kind
        self.probe = probe
        self.target = target
        self.started_at = started_at
        self.driver = driver
        self.scale = time_scale
        self.may_run = may_run
        self.on_change = on_change
        self.on_failure = on_failure
        self.result: bool | None = {READINESS: False, LIVENESS: True, STARTUP: None}[kind]
        self._successes = 0
        self._failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"probe-{kind}-{target.container_id[:8]}", daemon=True
        )

    def start(self) -> ProbeWorker:
        """Start probing on a thread of its own."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop probing; the thread ends after its current probe."""
        self._stop.set()

    @property
    def stopped(self) -> bool:
        """Whether ``stop()`` was called."""
        return self._stop.is_set()

    def _run(self) -> None:
        period = self.probe.period * self.scale
        first = self.started_at + self.probe.initial_delay * self.scale
        wait = first - time.time()
        if wait > 0 and self._stop.wait(wait):
            return
        while not self._stop.is_set():
            if self.may_run():
                self._once()
                if self.kind == STARTUP and self.result is True:
                    return
                if self.kind in (LIVENESS, STARTUP) and self.result is False:
                    # The container is about to be killed; a new instance
                    # gets a new worker.
                    return
            self._stop.wait(period)

    def _once(self) -> None:
        # The timeout is scaled like every period, but never below a second
        # (or the probe's own timeout when shorter): a shrunken timeout would
        # fail healthy containers on a busy machine, which no node would do.
        timeout = max(self.probe.timeout * self.scale, min(float(self.probe.timeout), 1.0))
        try:
            ok, output = run_probe(self.driver, self.probe, self.target, timeout)
        except Exception as exc:  # a probe must never take the worker down
            _log.exception("probe %s of %s failed to run", self.kind, self.target.container_id)
            ok, output = False, str(exc)
        if self._stop.is_set():
            return
        if ok:
            self._successes += 1
            self._failures = 0
            flip = self.result is not True and self._successes >= self.probe.success_threshold
            new: bool | None = True if flip else self.result
        else:
            self._failures += 1
            self._successes = 0
            self.on_failure(self.kind, output)
            flip = self.result is not False and self._failures >= self.probe.failure_threshold
            new = False if flip else self.result
        if new != self.result:
            self.result = new
            self.on_change()
