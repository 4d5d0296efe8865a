"""Host process view against real processes (and crafted procfs trees)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import pwd
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil
import pytest

from agent.api.errors import status_for
from agent.domain.model import ProcessInfo, ProcessNode
from agent.errors import InvalidInput, ProcessGone
from agent.host import (
    PidWatcher,
    container_id_from_cgroup,
    find_container_for_pid,
    has_capability,
    process_start_time,
    process_tree,
    read_process,
    signal_pid_checked,
)

CID = hashlib.sha256(b"app container").hexdigest()
UID_ = "0c8a3b5e_2d4f_4a6b_9c1d_7e8f90a1b2c3"
SLEEP = ["sleep", "60"]


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def stat_state(pid: int) -> str:
    data = Path(f"/proc/{pid}/stat").read_bytes()
    return data[data.rindex(b")") + 2 :].split()[0].decode()


def children_of(pid: int) -> list[int]:
    return sorted(p.pid for p in psutil.Process(pid).children())


def own_cgroup_names_container() -> bool:
    return container_id_from_cgroup(Path("/proc/self/cgroup").read_text().splitlines()) is not None


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@pytest.fixture
def spawn() -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []

    def _spawn(*argv: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(argv)
        started.append(proc)
        return proc

    yield _spawn
    for proc in started:
        # Shell trees: take the children down with the shell.
        try:
            kids = psutil.Process(proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            kids = []
        for kid in kids:
            with contextlib.suppress(psutil.NoSuchProcess):
                kid.kill()
        if proc.poll() is None:
            proc.kill()
        proc.wait()


@pytest.fixture
def sleeper(spawn: Callable[..., subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
    proc = spawn(*SLEEP)
    wait_for(lambda: stat_state(proc.pid) == "S")
    return proc


@pytest.fixture
def shell_tree(spawn: Callable[..., subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
    proc = spawn("sh", "-c", "sleep 60 & sleep 60 & wait")
    wait_for(lambda: len(children_of(proc.pid)) == 2)
    return proc


@pytest.fixture
def zombie(spawn: Callable[..., subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
    proc = spawn("true")
    wait_for(lambda: stat_state(proc.pid) == "Z")
    return proc


def ns_inode(pid: int, ns: str) -> int:
    target = os.readlink(f"/proc/{pid}/ns/{ns}")
    return int(target.split("[", 1)[1].rstrip("]"))


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


# --------------------------------------------------------------------------
# read_process
# --------------------------------------------------------------------------


def test_read_process_of_a_sleeping_process(sleeper: subprocess.Popen[bytes]) -> None:
    info = read_process(sleeper.pid)

    assert info.pid == sleeper.pid
    assert info.ppid == os.getpid()
    assert info.name == "sleep"
    assert info.cmdline == ("sleep", "60")
    assert info.state == "sleeping"
    assert info.started_at.tzinfo is not None
    assert abs(datetime.now(UTC) - info.started_at) < timedelta(seconds=5)
    assert info.user == pwd.getpwuid(os.getuid()).pw_name
    assert info.rss_bytes > 0
    assert 0 <= info.cpu_user_seconds < 1
    assert 0 <= info.cpu_system_seconds < 1

    expected_ns = set(os.listdir(f"/proc/{sleeper.pid}/ns"))
    assert set(info.namespaces) == expected_ns
    for ns in ("net", "mnt", "pid", "uts", "ipc", "user", "cgroup"):
        assert info.namespaces[ns] == ns_inode(sleeper.pid, ns)

    cgroup_lines = tuple(Path(f"/proc/{sleeper.pid}/cgroup").read_text().splitlines())
    assert info.cgroup == cgroup_lines
    assert info.container_id == container_id_from_cgroup(cgroup_lines)


def test_read_process_counts_cpu_time(spawn: Callable[..., subprocess.Popen[bytes]]) -> None:
    burner = spawn(
        sys.executable,
        "-c",
        "import time\n"
        "t = time.process_time()\n"
        "while time.process_time() - t < 0.3: pass\n"
        "time.sleep(60)\n",
    )
    wait_for(
        lambda: stat_state(burner.pid) == "S" and read_process(burner.pid).cpu_user_seconds > 0
    )
    info = read_process(burner.pid)
    assert info.cpu_user_seconds + info.cpu_system_seconds >= 0.25
    assert info.name.startswith("python")


def test_stopped_process_state(sleeper: subprocess.Popen[bytes]) -> None:
    os.kill(sleeper.pid, signal.SIGSTOP)
    wait_for(lambda: stat_state(sleeper.pid) == "T")
    assert read_process(sleeper.pid).state == "stopped"
    os.kill(sleeper.pid, signal.SIGCONT)


def test_init_process_is_readable() -> None:
    # Namespace links need ptrace-read access, which some init processes
    # deny even to root; the snapshot then carries what could be read.
    info = read_process(1)
    assert info.ppid == 0
    readable = {}
    for ns in os.listdir("/proc/1/ns"):
        with contextlib.suppress(PermissionError):
            readable[ns] = ns_inode(1, ns)
    assert info.namespaces == readable


def test_start_time_helper_agrees_with_read_process(sleeper: subprocess.Popen[bytes]) -> None:
    start = process_start_time(sleeper.pid)
    assert start is not None
    assert start == read_process(sleeper.pid).started_at
    own = process_start_time(os.getpid())
    assert own is not None
    assert own <= start


def test_zombie_is_reported(zombie: subprocess.Popen[bytes]) -> None:
    info = read_process(zombie.pid)
    assert info.state == "zombie"
    assert info.ppid == os.getpid()
    assert info.name == "true"
    assert info.cmdline == ()
    # Exiting releases the namespaces a process holds through its nsproxy;
    # the PID and user namespaces stay attached until it is reaped.
    assert "net" not in info.namespaces
    assert "mnt" not in info.namespaces
    assert info.namespaces.get("pid") == ns_inode(os.getpid(), "pid")
    assert abs(datetime.now(UTC) - info.started_at) < timedelta(seconds=5)
    assert process_start_time(zombie.pid) == info.started_at


def test_reaped_process_is_gone(zombie: subprocess.Popen[bytes]) -> None:
    zombie.wait()
    with pytest.raises(ProcessGone) as excinfo:
        read_process(zombie.pid)
    assert excinfo.value.detail["pid"] == zombie.pid
    assert status_for(excinfo.value) == 404
    assert process_start_time(zombie.pid) is None


def test_pid_that_never_existed_is_gone() -> None:
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    with pytest.raises(ProcessGone):
        read_process(pid_max + 1)


@pytest.mark.parametrize("pid", [0, -1])
def test_invalid_pid(pid: int) -> None:
    with pytest.raises(InvalidInput):
        read_process(pid)
    with pytest.raises(InvalidInput):
        process_tree(pid)


# --------------------------------------------------------------------------
# crafted procfs trees
# --------------------------------------------------------------------------

BTIME = 1_700_000_000


def stat_line(pid: int, comm: str, state: str, ppid: int, start_ticks: int) -> str:
    fields = ["0"] * 50
    fields[0] = state
    fields[1] = str(ppid)
    fields[11] = "250"  # utime ticks
    fields[12] = "130"  # stime ticks
    fields[19] = str(start_ticks)
    return f"{pid} ({comm}) {' '.join(fields)}\n"


def fake_process(
    root: Path,
    pid: int,
    *,
    ppid: int = 1,
    start_ticks: int = 1000,
    comm: str = "fake proc",
    cgroup: str = "0::/\n",
    uid: int = 0,
    minimal: bool = False,
) -> None:
    """A process directory with what read_process needs; ``minimal`` leaves
    out the optional cgroup file and namespace links."""
    d = root / str(pid)
    d.mkdir()
    (d / "stat").write_text(stat_line(pid, comm, "S", ppid, start_ticks))
    (d / "cmdline").write_bytes(b"/bin/fake\0--flag\0")
    (d / "statm").write_text("1000 300 100 10 0 200 0\n")
    (d / "status").write_text(f"Name:\t{comm}\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\n")
    if minimal:
        return
    (d / "cgroup").write_text(cgroup)
    (d / "ns").mkdir()
    os.symlink("net:[4026532000]", d / "ns" / "net")
    os.symlink("pid:[4026532001]", d / "ns" / "pid")


@pytest.fixture
def fake_proc(tmp_path: Path) -> Path:
    (tmp_path / "stat").write_text(f"cpu  1 2 3 4\nbtime {BTIME}\n")
    return tmp_path


def test_read_process_honours_proc_root(fake_proc: Path) -> None:
    cgroup = f"0::/kubepods.slice/kubepods-pod{UID_}.slice/cri-containerd-{CID}.scope\n"
    fake_process(fake_proc, 4242, ppid=77, start_ticks=12345, cgroup=cgroup)

    info = read_process(4242, fake_proc)

    assert info == ProcessInfo(
        pid=4242,
        ppid=77,
        name="fake proc",
        cmdline=("/bin/fake", "--flag"),
        state="sleeping",
        started_at=datetime.fromtimestamp(BTIME + 123.45, tz=UTC),
        user=pwd.getpwuid(0).pw_name,
        rss_bytes=300 * os.sysconf("SC_PAGE_SIZE"),
        cpu_user_seconds=2.5,
        cpu_system_seconds=1.3,
        namespaces={"net": 4026532000, "pid": 4026532001},
        cgroup=(cgroup.strip(),),
        container_id=CID,
    )
    assert info.namespaces == {"net": 4026532000, "pid": 4026532001}
    # The procfs location psutil uses is restored for everyone else.
    assert psutil.PROCFS_PATH == "/proc"


def test_minimal_process_dir_reads_with_empty_optional_fields(fake_proc: Path) -> None:
    fake_process(fake_proc, 10, minimal=True)
    info = read_process(10, fake_proc)
    assert info.cgroup == ()
    assert info.namespaces == {}
    assert info.container_id is None
    assert info.cmdline == ("/bin/fake", "--flag")


def test_unresolvable_uid_falls_back_to_its_number(fake_proc: Path) -> None:
    uid = 54321
    try:
        pwd.getpwuid(uid)
        pytest.skip(f"uid {uid} resolves on this machine")
    except KeyError:
        pass
    fake_process(fake_proc, 10, uid=uid)
    assert read_process(10, fake_proc).user == str(uid)


def test_process_gone_under_a_crafted_root(fake_proc: Path) -> None:
    with pytest.raises(ProcessGone):
        read_process(10, fake_proc)
    assert process_start_time(10, fake_proc) is None


# --------------------------------------------------------------------------
# process_tree
# --------------------------------------------------------------------------


def test_process_tree_has_both_children(shell_tree: subprocess.Popen[bytes]) -> None:
    tree = process_tree(shell_tree.pid)

    assert tree.process.pid == shell_tree.pid
    assert tree.process.cmdline == ("sh", "-c", "sleep 60 & sleep 60 & wait")
    assert [c.process.pid for c in tree.children] == children_of(shell_tree.pid)
    for child in tree.children:
        assert child.process.cmdline == ("sleep", "60")
        assert child.process.ppid == shell_tree.pid
        assert child.children == ()


def test_process_tree_reaches_grandchildren(spawn: Callable[..., subprocess.Popen[bytes]]) -> None:
    # The inner shell has a command after sleep, so it cannot exec into it.
    outer = spawn("sh", "-c", "sh -c 'sleep 60; true' & wait")
    wait_for(lambda: len(psutil.Process(outer.pid).children(recursive=True)) == 2)

    tree = process_tree(outer.pid)
    (inner,) = tree.children
    (grandchild,) = inner.children
    assert inner.process.name == "sh"
    assert grandchild.process.cmdline == ("sleep", "60")
    assert grandchild.process.ppid == inner.process.pid

    shallow = process_tree(outer.pid, max_depth=1)
    assert [c.process.pid for c in shallow.children] == [inner.process.pid]
    assert shallow.children[0].children == ()


def test_process_tree_is_bounded(shell_tree: subprocess.Popen[bytes]) -> None:
    tree = process_tree(shell_tree.pid, max_processes=2)
    assert len(tree.children) == 1
    assert process_tree(shell_tree.pid, max_depth=0).children == ()


def test_process_tree_of_a_leaf(sleeper: subprocess.Popen[bytes]) -> None:
    tree = process_tree(sleeper.pid)
    assert tree.children == ()
    assert tree.process.cmdline == ("sleep", "60")


def test_process_tree_of_a_dead_pid() -> None:
    with pytest.raises(ProcessGone):
        process_tree(dead_pid())


def test_process_tree_skips_children_whose_parent_changed(fake_proc: Path) -> None:
    fake_process(fake_proc, 100, ppid=1, start_ticks=10)
    fake_process(fake_proc, 101, ppid=100, start_ticks=20)
    # A stat file without its other files: psutil cannot read it, so it
    # counts as a process that vanished during the walk.
    (fake_proc / "102").mkdir()
    (fake_proc / "102" / "stat").write_text(stat_line(102, "gone", "S", 100, 30))
    fake_process(fake_proc, 103, ppid=101, start_ticks=40)

    tree = process_tree(100, fake_proc)
    assert tree == ProcessNode(
        process=read_process(100, fake_proc),
        children=(
            ProcessNode(
                process=read_process(101, fake_proc),
                children=(ProcessNode(process=read_process(103, fake_proc)),),
            ),
        ),
    )


def test_deep_chain_builds_without_recursion(fake_proc: Path) -> None:
    depth = sys.getrecursionlimit() + 100
    for pid in range(2, 2 + depth):
        fake_process(fake_proc, pid, ppid=pid - 1, start_ticks=pid, minimal=True)
    tree = process_tree(2, fake_proc, max_depth=depth, max_processes=depth)
    levels = 0
    node: ProcessNode | None = tree
    while node is not None:
        levels += 1
        node = node.children[0] if node.children else None
    assert levels == depth


# --------------------------------------------------------------------------
# find_container_for_pid
# --------------------------------------------------------------------------

needs_plain_cgroup = pytest.mark.skipif(
    own_cgroup_names_container(),
    reason="the test processes' own cgroup names a container, so 'cgroup' would always win",
)


@needs_plain_cgroup
def test_find_container_via_ancestor(shell_tree: subprocess.Popen[bytes]) -> None:
    main_pids = {shell_tree.pid: CID, 999_999_999: "unrelated"}
    for child in children_of(shell_tree.pid):
        assert find_container_for_pid(child, main_pids) == (CID, "ancestor")
    # The main process itself belongs to its container.
    assert find_container_for_pid(shell_tree.pid, main_pids) == (CID, "ancestor")


@needs_plain_cgroup
def test_find_container_via_grandparent(spawn: Callable[..., subprocess.Popen[bytes]]) -> None:
    outer = spawn("sh", "-c", "sh -c 'sleep 60; true' & wait")
    wait_for(lambda: len(psutil.Process(outer.pid).children(recursive=True)) == 2)
    (inner,) = children_of(outer.pid)
    (grandchild,) = children_of(inner)
    assert find_container_for_pid(grandchild, {outer.pid: CID}) == (CID, "ancestor")


@needs_plain_cgroup
def test_find_container_outside_any_container(sleeper: subprocess.Popen[bytes]) -> None:
    assert find_container_for_pid(sleeper.pid, {}) is None
    # A sibling's main PID is not an ancestor.
    assert find_container_for_pid(sleeper.pid, {sleeper.pid + 100_000: CID}) is None


def test_find_container_via_cgroup(fake_proc: Path) -> None:
    cgroup = (
        f"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/"
        f"cri-containerd-{CID}.scope/init.scope\n"
    )
    (fake_proc / "4242").mkdir()
    (fake_proc / "4242" / "cgroup").write_text(cgroup)
    # The cgroup answer is used even when an ancestor is a known main PID.
    assert find_container_for_pid(4242, {1: "x" * 64}, fake_proc) == (CID, "cgroup")


def test_find_container_walks_a_crafted_chain(fake_proc: Path) -> None:
    fake_process(fake_proc, 1, ppid=0, start_ticks=1)
    fake_process(fake_proc, 50, ppid=1, start_ticks=100)
    fake_process(fake_proc, 60, ppid=50, start_ticks=200)
    fake_process(fake_proc, 70, ppid=60, start_ticks=300)
    assert find_container_for_pid(70, {50: CID}, fake_proc) == (CID, "ancestor")
    assert find_container_for_pid(70, {}, fake_proc) is None


def test_find_container_ignores_a_recycled_ancestor(fake_proc: Path) -> None:
    # PID 60 started after its supposed child 70: the real parent is gone
    # and 60 now belongs to an unrelated process that must not be matched.
    fake_process(fake_proc, 60, ppid=1, start_ticks=500)
    fake_process(fake_proc, 70, ppid=60, start_ticks=300)
    assert find_container_for_pid(70, {60: CID}, fake_proc) is None


def test_find_container_for_a_dead_pid() -> None:
    with pytest.raises(ProcessGone):
        find_container_for_pid(dead_pid(), {})


# --------------------------------------------------------------------------
# PidWatcher and signal_pid_checked
# --------------------------------------------------------------------------


async def test_watcher_reports_a_kill_quickly(sleeper: subprocess.Popen[bytes]) -> None:
    watcher = PidWatcher()
    exited: asyncio.Queue[tuple[int, float]] = asyncio.Queue()
    loop = asyncio.get_running_loop()
    fds_before = open_fds()
    try:
        assert watcher.watch(
            sleeper.pid,
            process_start_time(sleeper.pid),
            lambda pid: exited.put_nowait((pid, loop.time())),
        )
        assert watcher.watched == frozenset({sleeper.pid})

        killed_at = loop.time()
        sleeper.kill()
        pid, seen_at = await asyncio.wait_for(exited.get(), timeout=2)

        assert pid == sleeper.pid
        assert seen_at - killed_at < 0.1
        assert watcher.watched == frozenset()
        assert open_fds() == fds_before
    finally:
        watcher.close()


async def test_watcher_fires_for_each_watch(sleeper: subprocess.Popen[bytes]) -> None:
    watcher = PidWatcher()
    calls: list[str] = []
    done = asyncio.Event()

    def record(tag: str) -> Callable[[int], None]:
        def callback(pid: int) -> None:
            calls.append(tag)
            if len(calls) == 2:
                done.set()

        return callback

    try:
        assert watcher.watch(sleeper.pid, None, record("a"))
        assert watcher.watch(sleeper.pid, None, record("b"))
        sleeper.kill()
        await asyncio.wait_for(done.wait(), timeout=2)
        assert sorted(calls) == ["a", "b"]
    finally:
        watcher.close()


async def test_watcher_refuses_a_start_time_mismatch(sleeper: subprocess.Popen[bytes]) -> None:
    watcher = PidWatcher()
    start = process_start_time(sleeper.pid)
    assert start is not None
    fds_before = open_fds()
    try:
        assert not watcher.watch(sleeper.pid, start + timedelta(seconds=1), lambda pid: None)
        assert not watcher.watch(sleeper.pid, start - timedelta(milliseconds=20), lambda pid: None)
        assert watcher.watched == frozenset()
        assert open_fds() == fds_before
    finally:
        watcher.close()


async def test_watcher_refuses_a_gone_process() -> None:
    watcher = PidWatcher()
    assert not watcher.watch(dead_pid(), None, lambda pid: None)
    assert watcher.watched == frozenset()


async def test_watcher_rejects_a_naive_start_time(sleeper: subprocess.Popen[bytes]) -> None:
    watcher = PidWatcher()
    fds_before = open_fds()
    with pytest.raises(InvalidInput):
        watcher.watch(sleeper.pid, datetime.now(), lambda pid: None)
    assert open_fds() == fds_before


async def test_watching_a_zombie_calls_back(zombie: subprocess.Popen[bytes]) -> None:
    watcher = PidWatcher()
    exited = asyncio.Event()
    try:
        assert watcher.watch(zombie.pid, process_start_time(zombie.pid), lambda pid: exited.set())
        await asyncio.wait_for(exited.wait(), timeout=1)
    finally:
        watcher.close()


async def test_unwatch_and_close(spawn: Callable[..., subprocess.Popen[bytes]]) -> None:
    first = spawn(*SLEEP)
    second = spawn(*SLEEP)
    watcher = PidWatcher()
    calls: list[int] = []
    fds_before = open_fds()

    assert watcher.watch(first.pid, None, calls.append)
    assert watcher.watch(second.pid, None, calls.append)
    assert watcher.unwatch(first.pid)
    assert not watcher.unwatch(first.pid)
    assert watcher.watched == frozenset({second.pid})

    first.kill()
    first.wait()
    await asyncio.sleep(0.2)
    assert calls == []

    watcher.close()
    assert watcher.watched == frozenset()
    assert open_fds() == fds_before
    second.kill()
    second.wait()
    await asyncio.sleep(0.1)
    assert calls == []


async def test_a_failing_callback_does_not_stop_others(
    spawn: Callable[..., subprocess.Popen[bytes]],
) -> None:
    first = spawn(*SLEEP)
    second = spawn(*SLEEP)
    watcher = PidWatcher()
    seen = asyncio.Event()

    def broken(pid: int) -> None:
        raise RuntimeError("callback bug")

    try:
        assert watcher.watch(first.pid, None, broken)
        assert watcher.watch(second.pid, None, lambda pid: seen.set())
        first.kill()
        await asyncio.sleep(0.1)
        second.kill()
        await asyncio.wait_for(seen.wait(), timeout=2)
        assert watcher.watched == frozenset()
    finally:
        watcher.close()


def test_signal_refuses_a_start_time_mismatch(sleeper: subprocess.Popen[bytes]) -> None:
    start = process_start_time(sleeper.pid)
    assert start is not None
    with pytest.raises(ProcessGone) as excinfo:
        signal_pid_checked(sleeper.pid, start + timedelta(seconds=1), signal.SIGKILL)
    assert excinfo.value.detail["pid"] == sleeper.pid
    time.sleep(0.1)
    assert sleeper.poll() is None
    assert stat_state(sleeper.pid) == "S"


def test_signal_kills_a_matching_process(sleeper: subprocess.Popen[bytes]) -> None:
    start = read_process(sleeper.pid).started_at
    signal_pid_checked(sleeper.pid, start, signal.SIGKILL)
    assert sleeper.wait(timeout=2) == -signal.SIGKILL


def test_signal_accepts_a_start_time_that_went_through_json(
    sleeper: subprocess.Popen[bytes],
) -> None:
    start = read_process(sleeper.pid).started_at
    round_tripped = datetime.fromisoformat(start.isoformat(timespec="milliseconds"))
    signal_pid_checked(sleeper.pid, round_tripped, signal.SIGTERM)
    assert sleeper.wait(timeout=2) == -signal.SIGTERM


def test_signal_to_a_reaped_process_is_gone(zombie: subprocess.Popen[bytes]) -> None:
    start = process_start_time(zombie.pid)
    assert start is not None
    zombie.wait()
    with pytest.raises(ProcessGone):
        signal_pid_checked(zombie.pid, start, signal.SIGKILL)


def test_signal_rejects_bad_input(sleeper: subprocess.Popen[bytes]) -> None:
    start = process_start_time(sleeper.pid)
    assert start is not None
    with pytest.raises(InvalidInput):
        signal_pid_checked(sleeper.pid, start.replace(tzinfo=None), signal.SIGKILL)
    with pytest.raises(InvalidInput):
        signal_pid_checked(sleeper.pid, start, 1000)
    assert sleeper.poll() is None


@pytest.mark.parametrize(
    ("cap_eff", "name", "held"),
    [
        ("0000000000080000", "SYS_PTRACE", True),
        ("0000000000000020", "SYS_PTRACE", False),
        ("0000000000000020", "KILL", True),
        ("000001ffffffffff", "KILL", True),
        ("0000000000000000", "KILL", False),
    ],
)
def test_has_capability_reads_the_effective_set(
    tmp_path: Path, cap_eff: str, name: str, held: bool
) -> None:
    (tmp_path / "self").mkdir()
    (tmp_path / "self" / "status").write_text(f"Name:\tpython3\nCapEff:\t{cap_eff}\n")
    assert has_capability(name, tmp_path) is held


def test_has_capability_is_unknown_without_a_status(tmp_path: Path) -> None:
    assert has_capability("SYS_PTRACE", tmp_path) is None
    with pytest.raises(InvalidInput):
        has_capability("SYS_NOPE", tmp_path)
