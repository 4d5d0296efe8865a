"""The harness every benchmark runs in.

Results (targets and checks, the summary and the exit status), printed
output (sections, tables, progress), statistics, HTTP latency sampling,
waiting for a condition, child processes started in their own session and
stopped by their PIDs, and teardown that neither Ctrl-C nor SIGTERM cuts
short. Stopping a process is ``lab.processes.stop_process``, the one
SIGTERM, wait, SIGKILL sequence of the lab, its tests and the benchmarks
(that module starts nothing of the lab). ``bench._lab`` builds on this one.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TypeVar

import httpx

from lab.processes import REPO_ROOT, log_tail, python_child_env, stop_process

T = TypeVar("T")

MIB = 1024 * 1024

_T0 = time.monotonic()


def log(message: str) -> None:
    """Progress for the person watching; the results go to stdout."""
    print(f"[{time.monotonic() - _T0:6.1f}s] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------- results


@dataclass
class Outcome:
    """Targets and checks, collected as the run goes."""

    summary: list[tuple[str, str, str, str]] = field(default_factory=list)
    missed: list[str] = field(default_factory=list)
    failed_checks: list[str] = field(default_factory=list)
    passed_checks: list[str] = field(default_factory=list)

    def target(self, metric: str, measured: str, target: str, ok: bool) -> None:
        """A figure against its target; a miss makes the exit status 1."""
        self.summary.append((metric, measured, target, "ok" if ok else "MISSED"))
        if not ok:
            self.missed.append(f"{metric}: {measured} (target {target})")

    def info(self, metric: str, measured: str) -> None:
        """A figure for the summary with no target."""
        self.summary.append((metric, measured, "(information)", ""))

    def check(self, what: str, ok: bool, detail: str = "") -> bool:
        """A correctness check; a failure makes the exit status 2. Returns ``ok``."""
        if ok:
            self.passed_checks.append(what)
        else:
            self.failed_checks.append(f"{what}: {detail}" if detail else what)
        return ok


def finish(outcome: Outcome, elapsed: float) -> int:
    """Print the summary table, the checks and the verdict; return the exit status."""
    section("Summary")
    print(format_table(["metric", "measured", "target", "result"], outcome.summary))
    print(
        f"\nchecks passed: {len(outcome.passed_checks)}, failed: {len(outcome.failed_checks)}"
        f"\nwhole run: {elapsed:.0f} s on {os.cpu_count()} CPUs; load average at the end "
        f"{load_average()}"
    )
    status = 0
    if outcome.failed_checks:
        print("\nCHECKS FAILED:")
        for item in outcome.failed_checks:
            print(f"  - {item}")
        status = 2
    if outcome.missed:
        print("\nTARGETS MISSED:")
        for item in outcome.missed:
            print(f"  - {item}")
        status = status or 1
    if status == 0:
        print("\nall targets met, all checks passed")
    sys.stdout.flush()
    return status


def run_benchmark(
    name: str,
    run: Callable[[], Outcome],
    *,
    cannot_run: str | None = None,
    errors: tuple[type[BaseException], ...] = (),
) -> int:
    """Run one benchmark to its exit status: 2 when it cannot run, is stopped or breaks.

    SIGTERM is turned into an exception, so the ``finally`` blocks and the
    context managers of ``run`` tear down what it started.
    """
    if cannot_run:
        print(f"{name}: cannot run: {cannot_run}", file=sys.stderr)
        return 2
    raise_on_sigterm()
    started = time.monotonic()
    try:
        outcome = run()
    except (Terminated, KeyboardInterrupt):
        print(f"{name}: interrupted; everything it started is stopped", file=sys.stderr)
        return 2
    except (RuntimeError, httpx.HTTPError, *errors) as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 2
    return finish(outcome, time.monotonic() - started)


# --------------------------------------------------------------------- output


def section(title: str) -> None:
    """A numbered part of the report, underlined."""
    print()
    print(title)
    print("=" * len(title))
    sys.stdout.flush()


def format_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Columns padded to their widest cell, a rule under the header."""
    cells = [[str(h) for h in header], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = []
    for n, row in enumerate(cells):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, for figures that share the machine."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f} (1/5/15 min)"


def machine() -> str:
    """CPUs and load average, for a benchmark's first line."""
    return f"{os.cpu_count()} CPUs, load average {load_average()}"


# --------------------------------------------------------------------- statistics


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (``q`` in 0..100), as numpy's default."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = math.ceil(pos)
    if lo == hi:
        return ordered[lo]
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def median(values: Sequence[float]) -> float:
    """The median of ``values``."""
    return statistics.median(values)


def ms(seconds: float) -> str:
    """Seconds as milliseconds, one decimal."""
    return f"{seconds * 1000:.1f} ms"


def ratio(numerator: float, denominator: float) -> str:
    """``numerator / denominator`` as ``1.23x``; a dash when the denominator is 0."""
    return f"{numerator / denominator:.2f}x" if denominator > 0 else "-"


# The columns ``latency_cells`` fills, after a benchmark's own label columns.
LATENCY_HEADER = ["n", "p50", "p90", "p99", "min", "max"]


def latency_cells(samples: Sequence[float]) -> list[str]:
    """Count, p50, p90, p99, min and max of ``samples`` (seconds), for ``LATENCY_HEADER``."""
    return [
        str(len(samples)),
        ms(percentile(samples, 50)),
        ms(percentile(samples, 90)),
        ms(percentile(samples, 99)),
        ms(min(samples)),
        ms(max(samples)),
    ]


# --------------------------------------------------------------------- HTTP timing


@dataclass
class Timed:
    """What ``time_get`` measured: seconds per request, and the answers that failed."""

    samples: list[float]
    bad: list[str]
    body_bytes: int


def time_get(
    http: httpx.Client,
    path: str,
    requests: int,
    warmup: int,
    *,
    params: dict[str, str] | None = None,
    check: Callable[[httpx.Response], str | None] | None = None,
) -> Timed:
    """``requests`` timed GETs after ``warmup`` untimed ones, every answer checked.

    An answer is bad when it is not 200 or ``check`` (called outside the
    timed part) returns what is wrong with it.
    """
    for _ in range(warmup):
        http.get(path, params=params)
    samples = []
    bad = []
    size = 0
    for _ in range(requests):
        t0 = time.perf_counter()
        response = http.get(path, params=params)
        samples.append(time.perf_counter() - t0)
        size = len(response.content)
        if response.status_code != 200:
            bad.append(f"{response.status_code} {response.text[:200]}")
        elif check is not None and (problem := check(response)) is not None:
            bad.append(problem)
    return Timed(samples, bad, size)


# --------------------------------------------------------------------- waiting


def wait_until(
    what: str, probe: Callable[[], T | None], timeout: float, interval: float = 0.2
) -> tuple[T, float]:
    """Poll ``probe`` until it returns something other than None/False; (value, seconds)."""
    t0 = time.monotonic()
    last_error = ""
    while True:
        try:
            value = probe()
        except (httpx.HTTPError, KeyError, ValueError) as exc:
            value = None
            last_error = f" (last error: {exc!r})"
        if value is not None and value is not False:
            return value, time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise RuntimeError(f"{what}: not reached within {timeout:.0f}s{last_error}")
        time.sleep(interval)


# --------------------------------------------------------------------- signals and teardown


class Terminated(Exception):
    """SIGTERM arrived: unwind so every ``finally`` runs."""


def raise_on_sigterm() -> None:
    """Turn SIGTERM into ``Terminated`` in the main thread."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise Terminated(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Ignore Ctrl-C and SIGTERM while tearing down, so teardown is never cut short."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in saved:
        signal.signal(sig, signal.SIG_IGN)
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


# --------------------------------------------------------------------- child processes


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Child:
    """A Python module run as a child process, in its own session, stopped by its PID.

    Its own session keeps a Ctrl-C in the terminal from reaching it: the
    benchmark stops its children itself, in order. ``sys.executable`` is the
    interpreter (not a shim), so the PID recorded is the process that gets
    the signal. ``http``, when a subclass sets it, is closed on the way out.
    """

    def __init__(
        self,
        name: str,
        module_args: Sequence[str],
        log_path: Path,
        *,
        pipe_stdout: bool = False,
        grace: float = 15.0,
    ) -> None:
        self.name = name
        self.log_path = log_path
        self.grace = grace
        self.http: httpx.Client | None = None
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", *module_args],
            cwd=REPO_ROOT,
            env=python_child_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if pipe_stdout else self._log,
            stderr=self._log,
            start_new_session=True,
        )
        self.pid = self.proc.pid

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of its log, for an error message."""
        return log_tail(self.log_path, lines)

    def alive(self) -> bool:
        """Whether it has not exited."""
        return self.proc.poll() is None

    def terminate(self) -> None:
        """Stop it (``stop_process``) and close its pipes, log and HTTP client."""
        with signals_held():
            try:
                if self.http is not None:
                    with contextlib.suppress(Exception):
                        self.http.close()
                if not stop_process(self.proc, self.grace):
                    log(f"{self.name} (PID {self.pid}) still there after SIGKILL")
            finally:
                if self.proc.stdout is not None:
                    with contextlib.suppress(OSError):
                        self.proc.stdout.close()
                with contextlib.suppress(OSError):
                    self._log.close()


@contextlib.contextmanager
def stopped_on_exit() -> Iterator[list[Child]]:
    """A list to put started children in; each is stopped, newest first, on the way out."""
    started: list[Child] = []
    try:
        yield started
    finally:
        with signals_held():
            for child in reversed(started):
                child.terminate()
