"""Container log tail benchmark: reading from the end vs reading the whole file, size by size.

Run from the repository root (no root, no services)::

    python -m bench.bench_logs [--sizes 4,16,64,256,1024] [--runs 20] [--cold-runs 5] [--dir DIR]

For each size in ``--sizes`` (MiB) it writes one CRI log of that size in a
temporary directory (removed before the next size is written, so the disk
holds one file at a time), then times both ways on that same file:

* ``agent.logs.tail(path, 100)``: reads backwards from the end in blocks;
* the naive way: read the whole file, split the lines, parse the last ones;

each with the file in the page cache (``--runs`` runs) and with its pages
dropped before every run (``--cold-runs`` runs; ``posix_fadvise`` DONTNEED
after an fsync, so the disk is read again). Every answer of both ways is
checked against the lines the file ends with. Printed per size: p50 and p99
of each way, the bytes each read, and naive/tail ratios.

Target: tail p50 <= 20 ms on the largest file, cached and with its pages
dropped. Exit status: 0 when the target is met, 1 when it is missed, 2 when
an answer was wrong or the files could not be written.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from agent.logs import LogLine, parse_log, tail
from bench._harness import (
    MIB,
    Outcome,
    format_table,
    log,
    machine,
    ms,
    percentile,
    ratio,
    run_benchmark,
    section,
)

TAIL_LINES = 100
TARGET_P50_SECONDS = 0.020
DEFAULT_SIZES = "4,16,64,256,1024"


def _block(start: datetime, lines: int, first_number: int) -> bytes:
    """Realistic records: mostly stdout, some stderr, now and then a long line in P chunks."""
    out = []
    for i in range(lines):
        n = first_number + i
        ts = (start + timedelta(microseconds=37 * n)).strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z"
        if n % 97 == 0:
            out.append(f'{ts} stdout P {"{"}"request":{n},"payload":"{"x" * 200}'.encode() + b"\n")
            out.append(f'{ts} stdout F {"y" * 120}"{"}"}\n'.encode())
        elif n % 13 == 0:
            out.append(f'{ts} stderr F level=warn msg="slow upstream" request={n}\n'.encode())
        else:
            out.append(
                f'{ts} stdout F level=info msg="handled request" request={n} '
                f"path=/api/v1/items/{n % 1000} status=200 duration_ms={n % 250}\n".encode()
            )
    return b"".join(out)


def write_log(path: Path, size: int) -> int:
    """A CRI log of about ``size`` bytes, on disk; returns the number of the last line.

    The bulk repeats one block of at most 4 MiB (fast to write); the end is
    generated with unique numbers so the lines a tail returns can be checked.
    The file is fsynced: dirty pages cannot be dropped from the page cache.
    """
    start = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    bulk = _block(start, 30_000, 0)
    bulk = bulk[: bulk.rfind(b"\n", 0, 4 * MIB) + 1]
    tail_block = _block(start + timedelta(hours=1), 5_000, 10_000_000)
    with open(path, "wb") as f:
        written = 0
        while written + len(bulk) + len(tail_block) <= size:
            f.write(bulk)
            written += len(bulk)
        rest = size - written - len(tail_block)
        if rest > 0:
            f.write(bulk[: bulk.rfind(b"\n", 0, rest) + 1])
        f.write(tail_block)
        f.flush()
        os.fsync(f.fileno())
    return 10_000_000 + 5_000 - 1


def drop_cache(path: Path) -> None:
    """Drop the file's pages from the page cache, so the next read goes to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def naive_tail(path: Path, lines: int) -> list[LogLine]:
    """What a first version would do: read everything, keep the last records."""
    with open(path, "rb") as f:
        data = f.read()
    records = data.split(b"\n")
    if records and records[-1] == b"":
        records.pop()
    # A few records more than asked, so that P chunks of the oldest line
    # are there to be joined, then the last ``lines`` lines.
    return parse_log(b"\n".join(records[-(lines * 2) :]) + b"\n")[-lines:]


def agent_tail(path: Path, lines: int) -> list[LogLine]:
    """The agent's tail, as a list to compare."""
    return list(tail(path, lines, allowed_roots=[path.parent]).lines)


def measure(
    fn: Callable[[], list[LogLine]],
    runs: int,
    expected: list[LogLine],
    wrong: list[str],
    what: str,
    before: Callable[[], None] | None = None,
) -> list[float]:
    """Seconds per run; an answer other than ``expected`` is noted in ``wrong``."""
    times = []
    for n in range(runs):
        if before is not None:
            before()
        t0 = time.perf_counter()
        got = fn()
        times.append(time.perf_counter() - t0)
        if got != expected:
            wrong.append(f"{what}, run {n + 1}: {len(got)} lines, not the file's last ones")
    return times


@dataclass(frozen=True)
class SizeResult:
    """Both ways on one file: seconds per run, cached and with pages dropped, and bytes read."""

    mib: int
    file_bytes: int
    tail_bytes: int
    tail_cached: list[float]
    naive_cached: list[float]
    tail_cold: list[float]
    naive_cold: list[float]


def bench_size(workdir: Path, mib: int, args: argparse.Namespace, outcome: Outcome) -> SizeResult:
    """Write one file of ``mib`` MiB, time both ways on it, remove it."""
    path = workdir / f"{mib}.log"
    try:
        t0 = time.perf_counter()
        last = write_log(path, mib * MIB)
        log(f"{mib} MiB written in {time.perf_counter() - t0:.1f} s; timing both ways")
        first = tail(path, TAIL_LINES, allowed_roots=[workdir])
        expected = list(first.lines)
        # The reference: the number written last ends the last line, and the
        # naive read agrees line for line.
        outcome.check(
            f"{mib} MiB: tail ends with the last line written",
            len(expected) == TAIL_LINES and f"request={last} " in expected[-1].text,
            f"{len(expected)} lines, last {expected[-1] if expected else None}",
        )
        wrong: list[str] = []

        def dropped() -> None:
            drop_cache(path)

        def agent() -> list[LogLine]:
            return agent_tail(path, TAIL_LINES)

        def naive() -> list[LogLine]:
            return naive_tail(path, TAIL_LINES)

        naive_tail(path, TAIL_LINES)  # both ways start with the file in the page cache
        result = SizeResult(
            mib=mib,
            file_bytes=path.stat().st_size,
            tail_bytes=first.bytes_read,
            tail_cached=measure(agent, args.runs, expected, wrong, "tail cached"),
            naive_cached=measure(naive, args.runs, expected, wrong, "naive cached"),
            tail_cold=measure(agent, args.cold_runs, expected, wrong, "tail dropped", dropped),
            naive_cold=measure(naive, args.cold_runs, expected, wrong, "naive dropped", dropped),
        )
        outcome.check(
            f"{mib} MiB: every answer of both ways is the file's last {TAIL_LINES} lines",
            not wrong,
            f"{len(wrong)} wrong, e.g. {wrong[:3]}",
        )
        return result
    finally:
        path.unlink(missing_ok=True)


def report(results: list[SizeResult], args: argparse.Namespace, outcome: Outcome) -> None:
    """Both ways side by side, per size and per cache state, with the ratios."""
    section(
        f"Last {TAIL_LINES} lines of a CRI log, both ways on the same file "
        f"({args.runs} runs cached, {args.cold_runs} with pages dropped)"
    )
    rows = []
    for r in results:
        for state, tail_s, naive_s in (
            ("cached", r.tail_cached, r.naive_cached),
            ("pages dropped", r.tail_cold, r.naive_cold),
        ):
            t50, n50 = percentile(tail_s, 50), percentile(naive_s, 50)
            rows.append(
                (
                    f"{r.mib} MiB",
                    state,
                    ms(t50),
                    ms(percentile(tail_s, 99)),
                    ms(n50),
                    ms(percentile(naive_s, 99)),
                    ratio(n50, t50),
                )
            )
    print(
        format_table(
            ["file", "page cache", "tail p50", "tail p99", "naive p50", "naive p99", "naive/tail"],
            rows,
        )
    )
    print()
    print(
        format_table(
            ["file", "bytes", "tail read", "naive read"],
            [
                (f"{r.mib} MiB", f"{r.file_bytes:,}", f"{r.tail_bytes:,}", f"{r.file_bytes:,}")
                for r in results
            ],
        )
    )
    if len(results) > 1:
        small, big = results[0], results[-1]
        growth = big.file_bytes / small.file_bytes
        for name, of in (("tail", "tail_cached"), ("naive", "naive_cached")):
            before = percentile(getattr(small, of), 50)
            after = percentile(getattr(big, of), 50)
            print(
                f"{name}, cached p50 from {small.mib} MiB to {big.mib} MiB "
                f"(a file {growth:.0f}x as large): {ms(before)} -> {ms(after)} "
                f"({ratio(after, before)})"
            )
    big = results[-1]
    for state, samples in (("cached", big.tail_cached), ("pages dropped", big.tail_cold)):
        p50 = percentile(samples, 50)
        outcome.target(
            f"tail p50, {big.mib} MiB, {state}",
            ms(p50),
            f"<= {TARGET_P50_SECONDS * 1000:.0f} ms",
            p50 <= TARGET_P50_SECONDS,
        )
    for r in results:
        outcome.info(
            f"naive/tail p50, {r.mib} MiB, cached",
            ratio(percentile(r.naive_cached, 50), percentile(r.tail_cached, 50)),
        )


def run(args: argparse.Namespace) -> Outcome:
    """Every size in turn, then the report."""
    outcome = Outcome()
    print(f"podlens log tail benchmark: sizes {args.sizes} MiB; {machine()}")
    workdir = Path(tempfile.mkdtemp(prefix="podlens-bench-logs-", dir=args.dir))
    try:
        need = max(args.sizes) * MIB + 64 * MIB
        free = shutil.disk_usage(workdir).free
        if not outcome.check(
            f"room for the largest file in {workdir}",
            free >= need,
            f"{free // MIB} MiB free, {need // MIB} MiB needed",
        ):
            return outcome
        results = [bench_size(workdir, mib, args, outcome) for mib in args.sizes]
    except OSError as exc:
        outcome.check("the benchmark files could be written and read", False, repr(exc))
        return outcome
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report(results, args, outcome)
    return outcome


def sizes(text: str) -> list[int]:
    """``4,16,64`` -> [4, 16, 64], ascending, each a positive number of MiB."""
    try:
        values = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of MiB: {text!r}") from None
    if not values or values[0] < 1:
        raise argparse.ArgumentTypeError("sizes are whole MiB, at least 1")
    return values


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the options and run."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.bench_logs", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument(
        "--sizes",
        type=sizes,
        default=sizes(DEFAULT_SIZES),
        help=f"file sizes in MiB, comma-separated (default {DEFAULT_SIZES})",
    )
    parser.add_argument("--runs", type=int, default=20, help="runs per way, file cached")
    parser.add_argument(
        "--cold-runs", type=int, default=5, help="runs per way, pages dropped before each"
    )
    parser.add_argument("--dir", type=Path, default=None, help="where to write the files")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.cold_runs < 1:
        parser.error("--runs and --cold-runs must be positive")
    return run_benchmark("bench_logs", lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
