"""Under the DaemonSet's memory limit, no mix of requests gets the agent OOM-killed.

The agent runs as its own process in a memory cgroup (v1) limited to what
``daemonset.yaml`` gives it, over pods whose logs are the worst the review
found: lines of control characters (six bytes each in JSON) and one line of
many MiB. Many clients then ask at once for ``?tail=10000`` of each log (JSON
and text) and for the diagnoses, which read the same logs. The agent must
still answer ``/healthz`` afterwards, and the cgroup must show no OOM kill
(daemonset/SECURITY.md, M2). The cgroup is removed afterwards.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests.memory_agent import write_logs

ROOT = Path(__file__).resolve().parent.parent
CGROUP_V1 = Path("/sys/fs/cgroup/memory")
PODS = 8
CLIENTS = 24
SECONDS = 20.0
_UNITS = {"Ki": 1024, "Mi": 1024**2, "Gi": 1024**3}


def daemonset_memory_limit() -> int:
    """resources.limits.memory of the agent's container, in bytes."""
    doc = yaml.safe_load((ROOT / "daemonset" / "daemonset.yaml").read_text())
    (container,) = doc["spec"]["template"]["spec"]["containers"]
    text = str(container["resources"]["limits"]["memory"])
    number, unit = re.fullmatch(r"(\d+)(Ki|Mi|Gi)", text).groups()  # type: ignore[union-attr]
    return int(number) * _UNITS[unit]


def unavailable(reason: str) -> None:
    """Fail under CI (the machines there have cgroup v1 and root), skip elsewhere."""
    if os.environ.get("CI"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def cgroup() -> Iterator[Path]:
    """A fresh memory cgroup limited like the DaemonSet's pod; removed afterwards."""
    if os.geteuid() != 0 or not (CGROUP_V1 / "cgroup.procs").exists():
        unavailable("needs root and the cgroup v1 memory controller at /sys/fs/cgroup/memory")
    group = CGROUP_V1 / f"podlens-memtest-{os.getpid()}"
    group.mkdir()
    try:
        (group / "memory.limit_in_bytes").write_text(str(daemonset_memory_limit()))
        with contextlib.suppress(OSError):  # no swap accounting on this kernel
            (group / "memory.memsw.limit_in_bytes").write_text(str(daemonset_memory_limit()))
        yield group
    finally:
        for pid in (group / "cgroup.procs").read_text().split():
            with contextlib.suppress(OSError):
                os.kill(int(pid), 9)
        deadline = time.monotonic() + 10
        while (group / "cgroup.procs").read_text().strip() and time.monotonic() < deadline:
            time.sleep(0.05)
        group.rmdir()


def _stats(group: Path) -> dict[str, int]:
    control = dict(line.split() for line in (group / "memory.oom_control").read_text().splitlines())
    return {
        "failcnt": int((group / "memory.failcnt").read_text()),
        "max_usage": int((group / "memory.max_usage_in_bytes").read_text()),
        "oom_kill": int(control.get("oom_kill", 0)),
        "under_oom": int(control["under_oom"]),
    }


def _peak_rss(pid: int) -> int:
    """The process's high-water resident size (VmHWM), in bytes; 0 once it is gone."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def hammer(url: str, seconds: float, clients: int) -> Counter[str]:
    """The worst mix, from ``clients`` threads at once, for ``seconds``."""
    paths = [f"/v1/pods/shop/web-{i}/logs?tail=10000" for i in range(PODS + 1)]
    paths += [p + "&output=text" for p in paths]
    paths += ["/v1/diagnostics"] + [f"/v1/pods/shop/web-{i}/diagnosis" for i in range(PODS)]
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def client(offset: int) -> None:
        with httpx.Client(base_url=url, timeout=60) as http:
            n = offset
            while time.monotonic() < stop:
                path = paths[n % len(paths)]
                n += 1
                try:
                    outcome = str(http.get(path).status_code)
                except httpx.HTTPError as exc:
                    outcome = type(exc).__name__
                with lock:
                    outcomes[outcome] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return outcomes


def test_the_worst_request_mix_does_not_oom_kill_the_agent(cgroup: Path, tmp_path: Path) -> None:
    logs = tmp_path / "pods"
    write_logs(logs, PODS)
    procs = str(cgroup / "cgroup.procs")

    def join_cgroup() -> None:  # in the child, before exec: all its memory is charged there
        with open(procs, "w") as f:
            f.write(str(os.getpid()))

    agent = subprocess.Popen(
        [sys.executable, "-m", "tests.memory_agent", "--logs", str(logs), "--pods", str(PODS)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=join_cgroup,
    )
    try:
        assert agent.stdout is not None
        ready = agent.stdout.readline().split()
        assert ready[:1] == ["READY"], ready
        url = f"http://127.0.0.1:{ready[1]}"
        outcomes = hammer(url, SECONDS, CLIENTS)
        peak = _peak_rss(agent.pid)
        stats = _stats(cgroup)
        alive = agent.poll() is None
        healthy = alive and httpx.get(url + "/healthz", timeout=10).status_code == 200
        print(
            f"\nworst mix for {SECONDS:.0f}s from {CLIENTS} clients: {dict(outcomes)}; "
            f"peak RSS {peak / 2**20:.0f} MiB; cgroup max usage {stats['max_usage'] / 2**20:.0f} "
            f"MiB of {daemonset_memory_limit() / 2**20:.0f}; failcnt {stats['failcnt']}; "
            f"oom_kill {stats['oom_kill']}"
        )
        assert alive, f"the agent died (exit {agent.returncode}): {stats}"
        assert healthy
        assert stats["oom_kill"] == 0, stats
        assert stats["under_oom"] == 0, stats
        assert outcomes["200"] > 0, outcomes
        # Every answer is an answer: a 503 from the agent's own limits is
        # fine, a dropped connection (the process gone) is not.
        assert set(outcomes) <= {"200", "503", "429"}, outcomes
    finally:
        agent.kill()
        agent.wait()
