"""Container log tail benchmark: reading from the end vs reading the whole file.

Run from the repository root::

    python -m bench.bench_logs [--runs 50] [--big-mib 1024] [--small-mib 64] [--dir DIR]

Writes a CRI log of ``--big-mib`` MiB (default 1 GiB) and one of
``--small-mib`` MiB in a temporary directory (removed afterwards), then
times, over ``--runs`` runs each:

1. ``agent.logs.tail(path, 100)`` on the big file, with the file in the page
   cache and with its pages dropped before every run (``posix_fadvise``
   DONTNEED, so the disk is read again);
2. the same tail on the small file;
3. the naive way on the small file: read it all, split the lines, parse the
   last 100.

It checks that both ways return the same lines, and prints p50/p99, the
bytes each way read, and the ratios. Target: tail p50 <= 20 ms on the big
file. Exit status: 0 when the target is met, 1 when it is missed, 2 when the
two ways disagree or the files could not be written.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from agent.logs import LogLine, parse_log, tail

MIB = 1024 * 1024
TAIL_LINES = 100
TARGET_P50_MS = 20.0


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


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
    """A CRI log of about ``size`` bytes; returns the number of the last line.

    The bulk repeats one 4 MiB block (fast to write); the end is generated
    with unique numbers so the lines a tail returns can be checked.
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
    return 10_000_000 + 5_000 - 1


def drop_cache(path: Path) -> None:
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


def measure(
    fn: Callable[[], object], runs: int, before: Callable[[], None] | None = None
) -> list[float]:
    times = []
    for _ in range(runs):
        if before is not None:
            before()
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return times


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--big-mib", type=int, default=1024)
    parser.add_argument("--small-mib", type=int, default=64)
    parser.add_argument("--dir", type=Path, default=None, help="where to write the files")
    args = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="podlens-bench-logs-", dir=args.dir))
    try:
        need = (args.big_mib + args.small_mib) * MIB + 64 * MIB
        free = shutil.disk_usage(workdir).free
        if free < need:
            print(
                f"not enough space in {workdir}: {free // MIB} MiB free, {need // MIB} MiB needed"
            )
            return 2
        big, small = workdir / "0.log", workdir / "small.log"
        t0 = time.perf_counter()
        last_big = write_log(big, args.big_mib * MIB)
        last_small = write_log(small, args.small_mib * MIB)
        print(
            f"wrote {big.stat().st_size / MIB:.0f} MiB and {small.stat().st_size / MIB:.0f} MiB "
            f"in {time.perf_counter() - t0:.1f} s ({workdir})"
        )

        # Correctness first: both ways, same lines, the expected last line.
        ours = tail(big, TAIL_LINES)
        theirs = naive_tail(small, TAIL_LINES)
        ours_small = tail(small, TAIL_LINES)
        if list(ours_small.lines) != theirs:
            print("MISMATCH: tail and the naive read disagree on the small file")
            return 2
        for result, last in ((ours, last_big), (ours_small, last_small)):
            if len(result.lines) != TAIL_LINES or f"request={last} " not in result.lines[-1].text:
                print(f"MISMATCH: unexpected tail {result.lines[-1] if result.lines else None}")
                return 2

        warm_big = measure(lambda: tail(big, TAIL_LINES), args.runs)
        cold_big = measure(lambda: tail(big, TAIL_LINES), args.runs, before=lambda: drop_cache(big))
        warm_small = measure(lambda: tail(small, TAIL_LINES), args.runs)
        naive_small = measure(lambda: naive_tail(small, TAIL_LINES), args.runs)

        small_size = small.stat().st_size
        rows = [
            (f"tail, {args.big_mib} MiB, cached", warm_big, ours.bytes_read),
            (f"tail, {args.big_mib} MiB, pages dropped", cold_big, ours.bytes_read),
            (f"tail, {args.small_mib} MiB, cached", warm_small, ours_small.bytes_read),
            (f"naive read-all, {args.small_mib} MiB, cached", naive_small, small_size),
        ]
        width = max(len(r[0]) for r in rows)
        print(f"\n{TAIL_LINES} lines, {args.runs} runs each")
        print(f"{'':{width}}  {'p50 ms':>8}  {'p99 ms':>8}  {'bytes read':>12}")
        for name, times, read in rows:
            print(
                f"{name:{width}}  {percentile(times, 50):8.3f}  {percentile(times, 99):8.3f}  "
                f"{read:12,d}"
            )
        p50_big = percentile(warm_big, 50)
        p50_small = percentile(warm_small, 50)
        p50_naive = percentile(naive_small, 50)
        print(
            f"\nnaive {args.small_mib} MiB p50 / tail {args.small_mib} MiB p50: "
            f"{p50_naive / p50_small:,.0f}x"
        )
        print(
            f"naive {args.small_mib} MiB p50 / tail {args.big_mib} MiB p50: "
            f"{p50_naive / p50_big:,.0f}x (the naive read grows with the file; tail does not)"
        )
        met = p50_big <= TARGET_P50_MS and percentile(cold_big, 50) <= TARGET_P50_MS
        print(
            f"target: tail p50 on {args.big_mib} MiB <= {TARGET_P50_MS:.0f} ms: "
            f"{'met' if met else 'MISSED'} "
            f"(cached {p50_big:.3f} ms, pages dropped {percentile(cold_big, 50):.3f} ms)"
        )
        return 0 if met else 1
    except OSError as exc:
        print(f"could not write or read the benchmark files: {exc}")
        return 2
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
