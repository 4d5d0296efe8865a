"""Container logs read straight from the CRI log files on the node.

Works with the API server down: the files kubelet and the runtime write
under ``/var/log/pods`` are the source. What this package offers:

* ``tail(path, lines, allowed_roots=...)`` reads a log backwards from its
  end in blocks, bounded by lines and bytes, joins partial (``P``) records,
  and continues into kubelet's rotated files (plain, then gzipped) when the
  live file is too short; results are oldest first. Malformed lines are kept
  as text. Every reader here names the log directories it may read
  (``allowed_roots``, no default): nothing outside them is opened. A line
  longer than ``MAX_LINE_BYTES`` (16 KiB) keeps its beginning and is marked
  ``cut``.
* ``container_log_dir``, ``log_path_for``, ``previous_log_path`` build the
  kubelet paths from names that are checked first, and ``safe_open_log``
  opens only files that resolve under the allowed roots.
* ``LastWords`` keeps the last lines of dead attempts, so a crash loop's
  output survives kubelet's garbage collection of the dead container.
* ``TailMemo`` keeps the last lines of files read before, while each file
  is unchanged (one ``stat`` instead of a read).

Nothing here raises anything but ``agent.errors`` types: ``InvalidInput``
for bad names or paths outside the roots, ``NotFound`` naming the file when
nothing could be read, ``Forbidden`` when the agent may not read it.

An adapter: imports the errors and the standard library only; no other adapter.
"""

from agent.logs._cri import MAX_LINE_BYTES, LogLine, Stream, parse_log
from agent.logs._lastwords import AttemptKey, LastWords
from agent.logs._memo import TailMemo
from agent.logs._paths import (
    container_log_dir,
    log_path_for,
    previous_log_path,
    resolve_within,
    safe_open_log,
)
from agent.logs._tail import DEFAULT_MAX_BYTES, MAX_LINES, TailResult, tail

__all__ = [
    "DEFAULT_MAX_BYTES",
    "MAX_LINES",
    "MAX_LINE_BYTES",
    "AttemptKey",
    "LastWords",
    "LogLine",
    "Stream",
    "TailMemo",
    "TailResult",
    "container_log_dir",
    "log_path_for",
    "parse_log",
    "previous_log_path",
    "resolve_within",
    "safe_open_log",
    "tail",
]
