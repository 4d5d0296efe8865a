"""Host process view: what runs on the node, seen through ``/proc``.

This package is the agent's only user of psutil; everything it returns is a
model dataclass. Functions take ``proc_root`` so that a host procfs mounted
elsewhere, or a crafted directory, can be read. Pidfd-based calls
(``PidWatcher``, ``signal_pid_checked``) act in the agent's own PID
namespace and need ``proc_root`` to be that namespace's procfs; the
DaemonSet runs with ``hostPID`` so that this is the host's.

Process identity is a PID plus its start time; the start times returned
here come from one boot-time reading per procfs root, so values obtained at
different moments compare equal for the same process.

An adapter: imports psutil, the domain and the errors; no other adapter.
"""

from agent.host._cgroup import container_id_from_cgroup, pod_uid_from_cgroup
from agent.host._netstat import listening_tcp_ports
from agent.host._oom import oom_kill_count
from agent.host._pidfd import (
    PidWatcher,
    SignalledProcess,
    pidfd_unavailable,
    signal_container_process,
    signal_pid_checked,
)
from agent.host._process import find_container_for_pid, process_tree, read_process
from agent.host._procfs import has_capability, process_start_time
from agent.host._procfs import ppid_map as parent_map
from agent.host._scan import main_pids_by_container

__all__ = [
    "PidWatcher",
    "SignalledProcess",
    "container_id_from_cgroup",
    "find_container_for_pid",
    "has_capability",
    "listening_tcp_ports",
    "main_pids_by_container",
    "oom_kill_count",
    "parent_map",
    "pidfd_unavailable",
    "pod_uid_from_cgroup",
    "process_start_time",
    "process_tree",
    "read_process",
    "signal_container_process",
    "signal_pid_checked",
]
