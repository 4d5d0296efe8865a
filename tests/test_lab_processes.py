"""lab.processes: the one stop sequence, for a child and for a process named by PID and start."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.processes import ProcessRef, log_tail, process_start_ticks, stop_process

# Ignores SIGTERM, so only the SIGKILL after the grace period ends it; prints
# once the handler is set, so the test never signals it too early.
STUBBORN = (
    "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('ready', flush=True); time.sleep(60)"
)


@pytest.fixture
def stubborn() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-c", STUBBORN], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"ready\n"
    yield proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_a_child_that_exits_on_sigterm_needs_no_sigkill() -> None:
    proc = subprocess.Popen(["sleep", "60"])
    assert stop_process(proc, grace=10)
    assert proc.returncode == -signal.SIGTERM


def test_a_child_ignoring_sigterm_is_killed_after_the_grace(
    stubborn: subprocess.Popen[bytes],
) -> None:
    t0 = time.monotonic()
    assert stop_process(stubborn, grace=0.3)
    assert time.monotonic() - t0 >= 0.3
    assert stubborn.returncode == -signal.SIGKILL


def test_a_child_already_gone_is_left_alone() -> None:
    proc = subprocess.Popen(["true"])
    proc.wait()
    assert stop_process(proc)
    assert proc.returncode == 0


def test_a_process_ref_is_stopped_through_its_pidfd(stubborn: subprocess.Popen[bytes]) -> None:
    ref = ProcessRef.of(stubborn.pid)
    assert ref is not None
    assert ref.alive()
    assert stop_process(ref, grace=0.2)
    # Gone, and reaped too (it was our child), so no zombie keeps its PID.
    assert not ref.alive()
    assert not Path(f"/proc/{stubborn.pid}").exists()


def test_a_process_ref_with_another_start_is_never_signalled(
    stubborn: subprocess.Popen[bytes],
) -> None:
    # The same PID with another start time stands for a process that has
    # gone and whose PID was given to this one.
    ticks = process_start_ticks(stubborn.pid)
    assert ticks is not None
    stale = ProcessRef(stubborn.pid, ticks - 1)
    assert not stale.alive()
    assert stop_process(stale, grace=0.1)
    assert stubborn.poll() is None


def test_log_tail_quotes_the_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    assert log_tail(log) == "(no log)"
    log.write_text("")
    assert log_tail(log, indent="  ") == "  (empty log)"
    log.write_text("".join(f"line {i}\n" for i in range(50)))
    assert log_tail(log, 2, indent="  ") == "  line 48\n  line 49"
