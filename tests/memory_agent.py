"""An agent process over pods with hostile logs, for memory tests: ``python -m tests.memory_agent``.

It serves the real app (uvicorn, HTTP on loopback, authentication off) over
a node fixed by hand: ``--pods`` pods, each with one exited container (a
crash loop, so the diagnosis reads its log) whose log is ``LOG_MIB`` MiB of
lines of control characters (each escaped to six bytes in JSON), plus one
pod whose log is a single line of many MiB written as 16 KiB ``P`` records.
``write_logs`` makes those files; the process prints ``READY <port>`` once
it serves.
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from pathlib import Path

import uvicorn

from agent.api.app import create_app
from tests.still_node import StillContainer, StillPods, still_node, still_pod, still_settings

UID_PREFIX = "0b5c7d3e-1111-2222-3333-"
LOG_MIB = 10
# Every control character but the newline, which ends a record.
CONTROL = bytes(c for c in range(1, 32) if c != 10)
STAMP = b"2026-11-21T12:00:00.000000001Z"


def log_path(root: Path, index: int) -> Path:
    name = f"web-{index}"
    return root / f"shop_{name}_{UID_PREFIX}{index:012d}" / "app" / "0.log"


def _control_lines(size: int) -> bytes:
    content = (CONTROL * 40)[:800]
    record = STAMP + b" stdout F " + content + b"\n"
    return record * (size // len(record) + 1)


def _one_long_line(size: int) -> bytes:
    chunk = STAMP + b" stdout P " + b"x" * (16 * 1024) + b"\n"
    return chunk * (size // len(chunk)) + STAMP + b" stdout F end\n"


def write_logs(root: Path, pods: int) -> None:
    """The log files of ``pods`` control-character pods and of the long-line pod (the last)."""
    for index in range(pods + 1):
        path = log_path(root, index)
        path.parent.mkdir(parents=True, exist_ok=True)
        body = _one_long_line if index == pods else _control_lines
        path.write_bytes(body(LOG_MIB * 1024 * 1024))


def main() -> None:
    """Serve the agent over the fixed node until killed."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--logs", type=Path, required=True)
    parser.add_argument("--pods", type=int, default=8)
    args = parser.parse_args()
    pods = [
        still_pod(
            f"web-{i}",
            [StillContainer("app", exit_code=1, restarts=3, log_path=str(log_path(args.logs, i)))],
            index=i,
        )
        for i in range(args.pods + 1)
    ]
    settings = still_settings(log_roots=(args.logs,), auth_mode="none")
    app = create_app(settings, still_node(settings, pods), StillPods([p.api for p in pods]))
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)

    def announce() -> None:
        while not server.started:
            time.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        print(f"READY {port} {os.getpid()}", flush=True)

    threading.Thread(target=announce, daemon=True).start()
    server.run()


if __name__ == "__main__":
    main()
