"""The last lines of log files, kept while a file stays the same."""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

from agent.logs._tail import tail

# Device, inode, size, modification time: the runtime only appends to a live
# log, and kubelet's rotation puts a new file (a new inode) in its place.
_Identity = tuple[int, int, int, int]


class TailMemo:
    """``tail`` for callers that ask again and again, as a node's diagnosis does.

    One ``stat`` tells whether the file changed since its lines were read; the
    logs of exited containers, which a crash loop's diagnosis reads on every
    request, then cost no read and no parsing. Reads only files under
    ``allowed_roots``. Safe to share between threads.
    """

    def __init__(self, allowed_roots: Sequence[Path | str], entries: int = 1024) -> None:
        self._roots = tuple(allowed_roots)
        self._entries = entries
        self._lock = threading.Lock()
        self._kept: OrderedDict[tuple[str, int], tuple[_Identity, tuple[str, ...]]] = OrderedDict()

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
        text = tuple(line.text for line in tail(path, count, allowed_roots=self._roots).lines)
        if identity is not None:
            with self._lock:
                self._kept[key] = (identity, text)
                self._kept.move_to_end(key)
                while len(self._kept) > self._entries:
                    self._kept.popitem(last=False)
        return text
