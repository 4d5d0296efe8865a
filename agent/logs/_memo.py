"""The last lines of log files, kept while a file stays the same.

Part of the log adapter: imports ``_tail``, the errors and the standard library only.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

from agent.errors import InvalidInput
from agent.logs._tail import tail

# Device, inode, size, modification time: the runtime only appends to a live
# log, and kubelet's rotation puts a new file (a new inode) in its place.
_Identity = tuple[int, int, int, int]
# Rough cost of an entry beyond its text: the key, the tuple, the str headers.
_ENTRY_OVERHEAD = 256
_LINE_OVERHEAD = 64
CUT_MARK = " [...]"


class TailMemo:
    """``tail`` for callers that ask again and again, as a node's diagnosis does.

    One ``stat`` tells whether the file changed since its lines were read; the
    logs of exited containers, which a crash loop's diagnosis reads on every
    request, then cost no read and no parsing. Reads only files under
    ``allowed_roots``. Safe to share between threads.

    Bounded three ways, since every pod's logs pass through it: ``entries``
    files, about ``max_total_bytes`` of text in all (least recently used
    dropped first), and per read ``max_bytes_per_read`` of file and
    ``max_line_chars`` of each line (a diagnosis quotes lines, it does not
    need 16 KiB of one; a cut line ends with ``CUT_MARK``).
    """

    def __init__(
        self,
        allowed_roots: Sequence[Path | str],
        *,
        entries: int = 1024,
        max_total_bytes: int = 8 * 1024 * 1024,
        max_bytes_per_read: int = 1024 * 1024,
        max_line_chars: int = 2048,
    ) -> None:
        for name, value in (
            ("entries", entries),
            ("max_bytes_per_read", max_bytes_per_read),
            ("max_line_chars", max_line_chars),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise InvalidInput(f"{name} must be a positive integer, not {value!r}")
        if isinstance(max_total_bytes, bool) or not isinstance(max_total_bytes, int):
            raise InvalidInput(f"max_total_bytes must be an integer, not {max_total_bytes!r}")
        self._roots = tuple(allowed_roots)
        self._entries = entries
        self._max_total = max_total_bytes
        self._max_read = max_bytes_per_read
        self._max_line = max_line_chars
        self._lock = threading.Lock()
        self._kept: OrderedDict[tuple[str, int], tuple[_Identity, tuple[str, ...], int]]
        self._kept = OrderedDict()
        self._total = 0

    def lines(self, path: Path, count: int) -> tuple[str, ...]:
        """The text of the last ``count`` lines; raises as ``tail`` does."""
        try:
            st = os.stat(path)
        except OSError:
            st = None
        key = (os.fspath(path), count)
        identity = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) if st else None
        if identity is not None:
            with self._lock:
                hit = self._kept.get(key)
                if hit is not None and hit[0] == identity:
                    self._kept.move_to_end(key)
                    return hit[1]
        read = tail(path, count, allowed_roots=self._roots, max_bytes=self._max_read)
        text = tuple(self._shown(line.text, line.cut) for line in read.lines)
        if identity is not None:
            self._keep(key, identity, text)
        return text

    def _shown(self, text: str, cut: bool) -> str:
        if len(text) > self._max_line:
            return text[: self._max_line] + CUT_MARK
        return text + CUT_MARK if cut else text

    def _keep(self, key: tuple[str, int], identity: _Identity, text: tuple[str, ...]) -> None:
        size = _ENTRY_OVERHEAD + len(key[0]) + sum(len(t) + _LINE_OVERHEAD for t in text)
        with self._lock:
            old = self._kept.pop(key, None)
            if old is not None:
                self._total -= old[2]
            if size > self._max_total:
                return  # larger than the whole memo: answered, not kept
            self._kept[key] = (identity, text, size)
            self._total += size
            while len(self._kept) > self._entries or self._total > self._max_total:
                _, (_, _, dropped) = self._kept.popitem(last=False)
                self._total -= dropped

    def __len__(self) -> int:
        with self._lock:
            return len(self._kept)

    @property
    def approx_bytes(self) -> int:
        """The memo's size estimate: its text and a per-entry overhead."""
        with self._lock:
            return self._total
