"""What a container's exit code says.

Shells and container runtimes report a process killed by signal ``n`` as
``128 + n``; containerd reports a process it could not start at all as 128
with reason ``StartError``. Signal numbers are Linux's (x86 and arm share
them for everything listed here).

Part of the rules: imports the standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass

SIGNAL_NAMES: dict[int, str] = {
    1: "SIGHUP",
    2: "SIGINT",
    3: "SIGQUIT",
    4: "SIGILL",
    5: "SIGTRAP",
    6: "SIGABRT",
    7: "SIGBUS",
    8: "SIGFPE",
    9: "SIGKILL",
    10: "SIGUSR1",
    11: "SIGSEGV",
    12: "SIGUSR2",
    13: "SIGPIPE",
    14: "SIGALRM",
    15: "SIGTERM",
    16: "SIGSTKFLT",
    17: "SIGCHLD",
    18: "SIGCONT",
    19: "SIGSTOP",
    20: "SIGTSTP",
    21: "SIGTTIN",
    22: "SIGTTOU",
    23: "SIGURG",
    24: "SIGXCPU",
    25: "SIGXFSZ",
    26: "SIGVTALRM",
    27: "SIGPROF",
    28: "SIGWINCH",
    29: "SIGIO",
    30: "SIGPWR",
    31: "SIGSYS",
}
_SIGRTMIN = 34
_SIGRTMAX = 64

_SIGNAL_CAUSES: dict[int, str] = {
    1: "It received SIGHUP: its controlling terminal or parent went away, or someone sent it.",
    2: (
        "It received SIGINT (what Ctrl-C sends); in a pod that comes from a wrapper script "
        "or someone signalling the process."
    ),
    3: "It received SIGQUIT and quit (some runtimes print a thread dump first).",
    4: "It executed an illegal instruction: a binary built for another CPU level, or a crash.",
    6: (
        "It aborted itself (abort(), a failed assertion, a fatal runtime error, heap "
        "corruption detected by the C library)."
    ),
    7: "It hit a bus error: often a memory-mapped file truncated under it, or a full /dev/shm.",
    8: "It hit an arithmetic fault (an integer division by zero).",
    11: (
        "It crashed with a segmentation fault: a bug in the program or a native library, "
        "or a binary built for another C library or CPU."
    ),
    13: "It wrote to a pipe or socket whose reader had gone.",
    15: (
        "It was asked to stop with SIGTERM and exited on it: kubelet stopping it (pod "
        "deletion, a failed liveness probe, a preStop/termination sequence) or someone's kill."
    ),
}


@dataclass(frozen=True, slots=True)
class ExitMeaning:
    code: int
    # The signal that ended the process, when the code (or the runtime) says so.
    signal: int | None
    signal_name: str | None
    meaning: str  # a few words: "command not found", "SIGKILL: OOM-killed"
    cause: str  # one or two sentences


def signal_name(n: int) -> str:
    if n in SIGNAL_NAMES:
        return SIGNAL_NAMES[n]
    if _SIGRTMIN <= n <= _SIGRTMAX:
        return f"SIGRTMIN+{n - _SIGRTMIN}" if n != _SIGRTMIN else "SIGRTMIN"
    return f"signal {n}"


def _killed(signal: int, *, oom: bool, code: int) -> ExitMeaning:
    name = signal_name(signal)
    if signal == 9:
        if oom:
            return ExitMeaning(
                code,
                9,
                name,
                "SIGKILL: OOM-killed",
                "The kernel's OOM killer ended it: the container used all the memory its "
                "limit allows (or the node ran out of memory).",
            )
        return ExitMeaning(
            code,
            9,
            name,
            "SIGKILL: killed from outside",
            "Something killed it with SIGKILL without an OOM kill being recorded: kubelet "
            "after the grace period of a stop (a failed liveness probe, a deletion) ran out, "
            "or someone's kill -9.",
        )
    cause = _SIGNAL_CAUSES.get(signal, f"It was killed by signal {signal} ({name}).")
    return ExitMeaning(code, signal, name, f"{name}: killed by signal {signal}", cause)


def decode_exit(
    code: int,
    *,
    reason: str | None = None,
    signal: int | None = None,
    restart_policy: str = "Always",
    oom_kills: int | None = None,
) -> ExitMeaning:
    """The meaning of ``code``; ``reason``/``signal`` as the runtime reported them.

    ``oom_kills`` is the container's cgroup OOM counter when known: with a
    SIGKILL it tells an OOM kill from a kill from outside even when the
    runtime did not say OOMKilled.
    """
    oom = reason == "OOMKilled" or bool(oom_kills)
    if signal:
        return _killed(signal, oom=oom, code=code)
    if reason == "OOMKilled":
        if code in (0, 128 + 9):
            return _killed(9, oom=True, code=code)
        # The runtime says OOMKilled whenever the cgroup saw an OOM kill, also
        # when the victim was a child and the main process exited on its own.
        return ExitMeaning(
            code,
            None,
            None,
            f"exited {code} after an OOM kill",
            "The kernel's OOM killer killed a process inside the container (reason OOMKilled), "
            f"and the main process then exited with {code}.",
        )
    if code == 0:
        if restart_policy == "Always":
            return ExitMeaning(
                0,
                None,
                None,
                "exited successfully, but restartPolicy is Always",
                "The main process ended with 0, and restartPolicy Always restarts any exit: a "
                "container meant to keep running (a server, a sidecar) needs a command that does "
                "not return, e.g. one that tails or serves instead of running once.",
            )
        return ExitMeaning(
            0, None, None, "completed successfully", "The process finished its work."
        )
    if code == 1:
        return ExitMeaning(
            1,
            None,
            None,
            "application error",
            "The program exited with a general error; its last log lines usually say why "
            "(a missing setting, a failed connection, an exception).",
        )
    if code == 2:
        return ExitMeaning(
            2,
            None,
            None,
            "usage or shell error",
            "Exit 2 usually means invalid command-line arguments or a shell syntax error "
            "(misuse of a shell builtin).",
        )
    if code == 126:
        return ExitMeaning(
            126,
            None,
            None,
            "command not executable",
            "The command was found but could not be run: it lacks execute permission, is a "
            "directory, or is a script whose interpreter line is wrong.",
        )
    if code == 127:
        return ExitMeaning(
            127,
            None,
            None,
            "command not found",
            "The shell could not find the command: a typo, a program missing from the image or "
            "from $PATH, or a script interpreter (e.g. bash on a busybox or Alpine image) that "
            "the image does not have.",
        )
    if code == 128:
        if reason in ("StartError", "ContainerCannotRun"):
            return ExitMeaning(
                128,
                None,
                None,
                "the process could not be started",
                "The runtime could not start the process (exit 128, StartError): the command or "
                "the working directory does not exist in the image, or it is not executable.",
            )
        return ExitMeaning(
            128,
            None,
            None,
            "invalid exit argument or start failure",
            "Exit 128 comes from a shell given an invalid exit argument, or from a runtime "
            "that could not start the process.",
        )
    if 128 < code <= 128 + _SIGRTMAX:
        return _killed(code - 128, oom=oom, code=code)
    if code == 255:
        return ExitMeaning(
            255,
            None,
            None,
            "exit status 255 (-1)",
            "The program exited with -1 (255), usually on a fatal error of its own; some "
            "tools (ssh, a failed exec of an image built for another CPU) report this too.",
        )
    return ExitMeaning(
        code,
        None,
        None,
        f"application-specific exit code {code}",
        f"The program chose exit code {code}; its documentation and last log lines say what "
        "it means.",
    )


def exit_text(m: ExitMeaning) -> str:
    """ "137 (SIGKILL: OOM-killed)" """
    return f"{m.code} ({m.meaning})"
