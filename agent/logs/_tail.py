"""Tailing a container's CRI log from the end, across kubelet's rotations.

The live file can be hundreds of MiB (``containerLogMaxSize`` is per node
and often raised), so it is read backwards in blocks with ``pread`` until
enough lines are complete; older rotated files are read only when the live
one does not hold enough. Records are fed newest-first to an assembler that
joins ``P`` records into lines per stream.

Part of the log adapter: imports ``_cri``, ``_paths``, the errors and the standard library
only.
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import zlib
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from agent.errors import AgentError, InvalidInput, NotFound
from agent.logs._cri import (
    MAX_LINE_BYTES,
    LogLine,
    Stream,
    head,
    line_of,
    malformed,
    parse_record,
)
from agent.logs._paths import RotatedFile, real_path, rotated_files, safe_open_log

MIB = 1024 * 1024
DEFAULT_MAX_BYTES = 8 * MIB
DEFAULT_BLOCK_SIZE = 64 * 1024
# Every line kept is a Python object; a log of empty records would otherwise
# turn max_bytes into millions of them.
MAX_LINES = 100_000

# After enough lines are found, how much further back to look for the start
# of a line whose stream has no older record nearby. The runtime writes the
# P records of one long line back to back (16 KiB each by default in
# containerd and CRI-O); only the other stream can land in between.
HEAD_LOOKBACK = 256 * 1024

# A compressed rotation is decompressed from its start (gzip cannot be read
# backwards); this caps the work a hostile or misconfigured file can cause.
GZIP_SCAN_LIMIT = 256 * MIB


@dataclass(frozen=True, slots=True)
class TailResult:
    """The last lines of a container log, oldest first.

    ``truncated`` is True when ``max_bytes`` stopped the read before the
    requested number of lines was complete, so older lines exist that are
    not shown (and the oldest line shown may lack its beginning).
    ``files`` are the files the lines came from, oldest first. ``note`` says
    what went unusually (a rotation or truncation while reading, a vanished
    or unreadable rotated file).
    """

    lines: tuple[LogLine, ...]
    truncated: bool
    files: tuple[str, ...]
    note: str | None = None
    bytes_read: int = 0


class _FileShrank(Exception):
    pass


@dataclass(slots=True)
class _Budget:
    limit: int
    used: int = 0
    exhausted: bool = False

    @property
    def remaining(self) -> int:
        return self.limit - self.used


@dataclass(slots=True)
class _Line:
    stream: Stream
    at: datetime | None
    chunks: list[bytes]  # newest first
    partial: bool
    malformed: LogLine | None = None  # the whole line, for one that is not CRI
    held: int = 0
    cut: bool = False

    def add(self, chunk: bytes) -> None:
        """Take the next older chunk; keep no more than the line's first ``MAX_LINE_BYTES``.

        Chunks come newest first, so the line's beginning is whatever comes
        last: newer chunks are dropped once the older ones fill the limit.
        """
        # What lies past the chunk's first MAX_LINE_BYTES is past the line's too.
        chunk, cut = head(chunk)
        self.cut = self.cut or cut
        self.chunks.append(chunk)
        self.held += len(chunk)
        while len(self.chunks) > 1 and self.held - len(self.chunks[0]) >= MAX_LINE_BYTES:
            self.held -= len(self.chunks.pop(0))
            self.cut = True


@dataclass(slots=True)
class _Assembler:
    """Joins records fed newest-first into the ``want`` newest lines.

    A line is placed where its last record is, so lines are discovered in
    order. A discovered line stays open until an older record of its stream
    shows where it starts: a ``P`` is one more chunk of it, an ``F`` ends
    the line before it.
    """

    want: int
    lines: list[_Line] = field(default_factory=list)
    open: dict[Stream, _Line] = field(default_factory=dict)

    @property
    def discovering(self) -> bool:
        return len(self.lines) < self.want

    @property
    def done(self) -> bool:
        return not self.discovering and not self.open

    def feed(self, raw: bytes, terminated: bool) -> bool:
        """Take one record; True when it became part of a line kept."""
        rec = parse_record(raw)
        if rec is None:
            if not self.discovering:
                return False
            whole = malformed(raw, partial=not terminated)
            self.lines.append(_Line("unknown", None, [], whole.partial, whole))
            return True
        held = self.open.get(rec.stream)
        if rec.partial:
            if held is not None:
                held.add(rec.content)
                held.at = rec.at
                return True
            if not self.discovering:
                return False
            # No F of this stream after it: the line is still being written.
            line = _Line(rec.stream, rec.at, [], partial=True)
            line.add(rec.content)
            self.lines.append(line)
            self.open[rec.stream] = line
            return True
        if held is not None:
            del self.open[rec.stream]
        if not self.discovering:
            return False
        line = _Line(rec.stream, rec.at, [], partial=not terminated)
        line.add(rec.content)
        self.lines.append(line)
        self.open[rec.stream] = line
        return True

    def result(self) -> tuple[LogLine, ...]:
        out = []
        for line in reversed(self.lines):
            if line.malformed is not None:
                out.append(line.malformed)
                continue
            joined = line_of(line.at, line.stream, b"".join(reversed(line.chunks)), line.partial)
            out.append(joined if not line.cut else dataclasses.replace(joined, cut=True))
            line.chunks.clear()  # the bytes go as soon as their text exists
        return tuple(out)


def records_backward(
    read_at: Callable[[int, int], bytes],
    size: int,
    *,
    block_size: int,
    budget: _Budget,
    starts_at_record: bool = True,
    last_may_be_open: bool = True,
) -> Iterator[tuple[bytes, bool]]:
    """Records of a file, newest first, each with whether it ends in a newline.

    Reads ``block_size`` bytes at a time from the end, charging ``budget``;
    when the budget runs out the record being assembled is dropped (its
    start is unknown) and ``budget.exhausted`` is set. Pieces of a record
    longer than a block are kept in a list and joined once, so a huge record
    costs linear time.
    """
    pos = size
    carry: list[bytes] = []  # pieces of the oldest record so far, newest piece first
    terminated = True
    first = True
    while pos > 0:
        if budget.remaining <= 0:
            budget.exhausted = True
            return
        n = min(block_size, pos, budget.remaining)
        pos -= n
        chunk = read_at(pos, n)
        budget.used += len(chunk)
        if len(chunk) != n:
            raise _FileShrank
        if first:
            first = False
            if chunk.endswith(b"\n"):
                chunk = chunk[:-1]
            else:
                terminated = not last_may_be_open
        cut = chunk.rfind(b"\n")
        if cut < 0:
            carry.append(chunk)
            continue
        newest = chunk[cut + 1 :]
        if carry:
            carry.append(newest)
            newest = b"".join(reversed(carry))
        yield newest, terminated
        terminated = True
        parts = chunk[:cut].split(b"\n")
        for index in range(len(parts) - 1, 0, -1):
            yield parts[index], True
        carry = [parts[0]]
    if carry and starts_at_record:
        yield b"".join(reversed(carry)), terminated


@dataclass(slots=True)
class _Reading:
    asm: _Assembler
    budget: _Budget
    block_size: int
    roots: Sequence[Path | str]
    files: list[str] = field(default_factory=list)
    opened: bool = False
    notes: list[str] = field(default_factory=list)
    seen: set[tuple[int, int]] = field(default_factory=set)
    lookback_from: int | None = None  # budget.used when enough lines were found

    def wants_more(self) -> bool:
        if self.asm.done or self.budget.exhausted:
            return False
        if self.asm.discovering:
            return True
        if self.lookback_from is None:
            self.lookback_from = self.budget.used
        return self.budget.used - self.lookback_from < HEAD_LOOKBACK

    def consume(self, path: Path, records: Iterator[tuple[bytes, bool]]) -> None:
        used = False
        try:
            for raw, terminated in records:
                used = self.asm.feed(raw, terminated) or used
                if not self.wants_more():
                    return
        finally:
            # Only files that gave lines are named; a rotation read just to
            # see where the oldest line starts is not.
            if used:
                self.files.append(str(path))

    def read_plain(self, path: Path, *, live: bool, real: Path | None = None) -> bool:
        """Feed one uncompressed file; False when reading must stop here.

        ``real`` is ``path`` already resolved, when the caller has it.
        """
        with safe_open_log(real or path, self.roots, resolved=real is not None) as f:
            st = os.fstat(f.fileno())
            identity = (st.st_dev, st.st_ino)
            if identity in self.seen:
                return True
            self.seen.add(identity)
            self.opened = True
            fd = f.fileno()

            def read_at(offset: int, n: int) -> bytes:
                return os.pread(fd, n, offset)

            try:
                self.consume(
                    path,
                    records_backward(
                        read_at,
                        st.st_size,
                        block_size=self.block_size,
                        budget=self.budget,
                        last_may_be_open=live,
                    ),
                )
            except _FileShrank:
                self.notes.append(
                    f"log file {path} was truncated while reading; showing what was read"
                )
                return False
        if live:
            self._check_rotated(path, identity, st.st_size)
        return True

    def _check_rotated(self, path: Path, identity: tuple[int, int], size: int) -> None:
        try:
            now = os.stat(path)
        except OSError:
            self.notes.append(f"log file {path} was rotated while reading; showing what was read")
            return
        if (now.st_dev, now.st_ino) != identity:
            self.notes.append(f"log file {path} was rotated while reading; showing what was read")
        elif now.st_size < size:
            self.notes.append(f"log file {path} was truncated while reading; showing what was read")

    def read_gzip(self, path: Path) -> bool:
        """Feed one compressed rotation (a path already resolved); False to stop here."""
        with safe_open_log(path, self.roots, resolved=True) as f:
            st = os.fstat(f.fileno())
            identity = (st.st_dev, st.st_ino)
            if identity in self.seen:
                return True
            self.seen.add(identity)
            self.opened = True
            keep = self.budget.remaining
            window: deque[bytes] = deque()
            held = 0
            total = 0
            cut = False
            try:
                with gzip.GzipFile(fileobj=f, mode="rb") as z:
                    while True:
                        piece = z.read(DEFAULT_BLOCK_SIZE)
                        if not piece:
                            break
                        total += len(piece)
                        if total > GZIP_SCAN_LIMIT:
                            self.notes.append(
                                f"rotated log file {path} decompresses to more than "
                                f"{GZIP_SCAN_LIMIT // MIB} MiB; not read"
                            )
                            return False
                        window.append(piece)
                        held += len(piece)
                        while window and held - len(window[0]) >= keep:
                            held -= len(window.popleft())
                            cut = True
            except (OSError, EOFError, zlib.error) as exc:
                self.notes.append(
                    f"rotated log file {path} is not readable gzip ({exc}); stopped there"
                )
                return False
        data = b"".join(window)
        if len(data) > keep:
            data = data[len(data) - keep :]
            cut = True
        # The window is charged as it is read back; what was decompressed
        # and dropped before it cost time, not memory, and is capped above.
        before = self.budget.used
        self.consume(
            path,
            records_backward(
                lambda offset, n: data[offset : offset + n],
                len(data),
                block_size=max(self.block_size, len(data)),
                budget=self.budget,
                starts_at_record=not cut,
                last_may_be_open=False,
            ),
        )
        if cut and self.budget.used - before >= len(data) and self.asm.discovering:
            self.budget.exhausted = True
        return True


def tail(
    path: Path,
    lines: int,
    *,
    allowed_roots: Sequence[Path | str],
    max_bytes: int = DEFAULT_MAX_BYTES,
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> TailResult:
    """The last ``lines`` lines of the container log at ``path``, oldest first.

    Continues into rotated files (``<path>.<stamp>``, then ``.gz``) when the
    live file holds fewer lines. At most ``max_bytes`` are read (for gzip
    files: kept after decompression). ``allowed_roots`` are the directories
    every file read must resolve under (the node's log directories); there is
    no default, because "the directory the file is in" is wherever a symlink
    points.

    Raises ``NotFound`` naming the file when nothing could be read at all,
    ``InvalidInput`` for bad arguments or a path outside the roots.
    """
    if isinstance(lines, bool) or not isinstance(lines, int) or not 0 <= lines <= MAX_LINES:
        raise InvalidInput(
            f"lines must be an integer from 0 to {MAX_LINES}, not {lines!r}", field="lines"
        )
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes <= 0:
        raise InvalidInput(
            f"max_bytes must be a positive integer, not {max_bytes!r}", field="max_bytes"
        )
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size <= 0:
        raise InvalidInput(f"block_size must be a positive integer, not {block_size!r}")
    if not isinstance(path, str | os.PathLike):
        raise InvalidInput(f"log path must be a path, not {type(path).__name__}")
    if "\0" in os.fspath(path):
        raise InvalidInput("log path contains a NUL byte")
    path = Path(os.path.abspath(path))
    real = Path(real_path(os.fspath(path)))
    roots = allowed_roots
    if lines == 0:
        # Asking for no lines of a missing or forbidden file is still an error.
        safe_open_log(path, roots).close()
        return TailResult((), False, ())

    reading = _Reading(_Assembler(lines), _Budget(max_bytes), block_size, roots)
    go_on = True
    try:
        go_on = reading.read_plain(path, live=True, real=real)
    except NotFound:
        # Between kubelet's rename and the runtime reopening the file there
        # is briefly no live file; the rotated ones still answer.
        rotations = rotated_files(real)
        if not rotations:
            raise
        reading.notes.append(f"log file {path} is missing (being rotated?); showing rotated files")
    else:
        rotations = rotated_files(real) if go_on and reading.wants_more() else []
    for rotated in rotations:
        if not go_on or not reading.wants_more():
            break
        go_on = _read_rotated(reading, rotated)

    if not reading.opened:
        raise NotFound(
            f"log file {path} could not be read: {'; '.join(reading.notes) or 'no file found'}",
            path=str(path),
        )
    found = reading.asm.result()
    truncated = reading.budget.exhausted and len(found) < lines
    if truncated and not found:
        reading.notes.append(
            f"no complete line in the last {max_bytes} bytes; the newest line is longer than that"
        )
    return TailResult(
        lines=found,
        truncated=truncated,
        files=tuple(reversed(reading.files)),
        note="; ".join(reading.notes) or None,
        bytes_read=reading.budget.used,
    )


def _read_rotated(reading: _Reading, rotated: RotatedFile) -> bool:
    if reading.budget.remaining <= 0:
        reading.budget.exhausted = True
        return False
    try:
        if rotated.compressed:
            return reading.read_gzip(rotated.path)
        return reading.read_plain(rotated.path, live=False, real=rotated.path)
    except NotFound:
        # kubelet removes the oldest rotations first, so nothing older is left.
        reading.notes.append(f"rotated log file {rotated.path} vanished while reading")
        return False
    except AgentError as exc:
        reading.notes.append(f"rotated log file {rotated.path} skipped: {exc.message}")
        return False
