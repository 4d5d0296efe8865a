"""Reading container logs from the CRI log files: format, tail, rotation, paths, crash memory."""

from __future__ import annotations

import gzip
import os
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

import agent.logs._tail as tail_module
from agent.errors import InvalidInput, NotFound
from agent.logs import (
    MAX_LINE_BYTES,
    AttemptKey,
    LastWords,
    LogLine,
    TailMemo,
    container_log_dir,
    log_path_for,
    parse_log,
    previous_log_path,
    safe_open_log,
    tail,
)
from agent.logs._paths import RotatedFile, real_path, rotated_files
from cri_proto import api_pb2
from lab.cri_pods import ContainerDef, CriPodDriver, PodHandle

CONTAINERD_TS = "2024-05-06T07:08:09.123456789Z"


def rec(text: str, *, stream: str = "stdout", tag: str = "F", ts: str = CONTAINERD_TS) -> bytes:
    return f"{ts} {stream} {tag} {text}\n".encode()


def numbered(n: int, *, start: int = 0, stream: str = "stdout") -> bytes:
    return b"".join(rec(f"line {i}", stream=stream) for i in range(start, start + n))


def texts(lines: tuple[LogLine, ...] | list[LogLine]) -> list[str]:
    return [line.text for line in lines]


@pytest.fixture
def pod_dir(tmp_path: Path) -> Path:
    d = tmp_path / "pods" / "default_web-0_0b4c2f1e-1111-2222-3333-444455556666" / "app"
    d.mkdir(parents=True)
    return d


@pytest.fixture
def pread_bytes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Bytes the tail code asked the kernel for, counted outside the code under test."""
    counted: list[int] = []
    real = os.pread

    def counting(fd: int, n: int, offset: int) -> bytes:
        data = real(fd, n, offset)
        counted.append(len(data))
        return data

    monkeypatch.setattr(os, "pread", counting)
    return counted


# ------------------------------------------------------------------ line format


def test_containerd_timestamps_with_variable_fraction_are_utc() -> None:
    data = (
        b"2024-05-06T07:08:09.123456789Z stdout F nine\n"
        b"2024-05-06T07:08:09.5Z stdout F one\n"
        b"2024-05-06T07:08:09Z stderr F none\n"
    )
    lines = parse_log(data)
    assert [line.at for line in lines] == [
        datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC),
        datetime(2024, 5, 6, 7, 8, 9, 500000, tzinfo=UTC),
        datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC),
    ]
    assert [line.stream for line in lines] == ["stdout", "stdout", "stderr"]
    assert texts(lines) == ["nine", "one", "none"]


@pytest.mark.parametrize(
    "stamp",
    [
        b"2024-05-06T07:08:09123Z",  # fraction digits without the dot
        b"2024-05-06T07:08:09.Z",
        b"2024-05-06T07:08:09.1234567890Z",  # ten digits: not RFC 3339 as runtimes write it
        b"2024-13-06T07:08:09Z",
        b"2024-05-06 07:08:09Z",
        b"2024-05-06T07:08:09",
    ],
)
def test_malformed_timestamps_make_the_line_malformed(stamp: bytes) -> None:
    (line,) = parse_log(stamp + b" stdout F text\n")
    assert line.at is None
    assert line.stream == "unknown"


def test_crio_local_time_with_offset_is_aware_and_compares_in_utc() -> None:
    (line,) = parse_log(b"2024-05-06T09:08:09.000000001+02:00 stdout F from cri-o\n")
    assert line.at is not None
    assert line.at.utcoffset() == timedelta(hours=2)
    assert line.at == datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    assert line.text == "from cri-o"


def test_negative_offset() -> None:
    (line,) = parse_log(b"2024-05-06T02:08:09.250000000-05:00 stderr F west\n")
    assert line.at == datetime(2024, 5, 6, 2, 8, 9, 250000, tzinfo=timezone(timedelta(hours=-5)))


def test_content_keeps_spaces_and_extra_tags_are_ignored() -> None:
    lines = parse_log(
        rec("  two  spaces  ", tag="F:x:y")
        + b"2024-05-06T07:08:09Z stdout F\n"
        + b"2024-05-06T07:08:09Z stdout F \n"
    )
    assert texts(lines) == ["  two  spaces  ", "", ""]
    assert all(line.stream == "stdout" and not line.partial for line in lines)


@pytest.mark.parametrize(
    "raw",
    [
        "not a cri line at all",
        "2024-05-06T07:08:09Z stdin F wrong stream",
        "2024-05-06T07:08:09Z stdout X unknown tag",
        "2024-05-06 07:08:09Z stdout F space instead of T",
        "2024-13-06T07:08:09Z stdout F month thirteen",
        "2024-05-06T07:08:09 stdout F no zone",
        "2024-05-06T07:08:09Z",
        "",
    ],
)
def test_malformed_lines_are_kept_as_text(raw: str) -> None:
    data = rec("before") + raw.encode() + b"\n" + rec("after")
    lines = parse_log(data)
    assert texts(lines) == ["before", raw, "after"]
    assert lines[1].at is None
    assert lines[1].stream == "unknown"
    assert not lines[1].partial


def test_invalid_utf8_is_replaced_not_raised() -> None:
    (line,) = parse_log(b"2024-05-06T07:08:09Z stdout F caf\xe9 \xff\n")
    assert line.text == "caf\ufffd \ufffd"


def test_partial_records_join_and_take_the_first_timestamp() -> None:
    data = (
        rec("hel", tag="P", ts="2024-05-06T07:08:01Z")
        + rec("lo ", tag="P", ts="2024-05-06T07:08:02Z")
        + rec("world", ts="2024-05-06T07:08:03Z")
    )
    (line,) = parse_log(data)
    assert line.text == "hello world"
    assert line.at == datetime(2024, 5, 6, 7, 8, 1, tzinfo=UTC)
    assert not line.partial


def test_a_multibyte_character_split_between_records_survives() -> None:
    euro = "€".encode()
    data = (
        b"2024-05-06T07:08:09Z stdout P price " + euro[:1] + b"\n"
        b"2024-05-06T07:08:09Z stdout F " + euro[1:] + b"5\n"
    )
    assert texts(parse_log(data)) == ["price €5"]


def test_partials_join_per_stream_when_streams_interleave() -> None:
    data = (
        rec("out-a ", tag="P")
        + rec("err-1", stream="stderr")
        + rec("out-b ", tag="P")
        + rec("err-2 ", stream="stderr", tag="P")
        + rec("out-c")
        + rec("err-3", stream="stderr")
    )
    lines = parse_log(data)
    assert [(line.stream, line.text) for line in lines] == [
        ("stderr", "err-1"),
        ("stdout", "out-a out-b out-c"),
        ("stderr", "err-2 err-3"),
    ]


def test_trailing_partial_and_unterminated_record_are_marked_partial(tmp_path: Path) -> None:
    data = rec("done") + rec("still writ", tag="P") + b"2024-05-06T07:08:09Z stderr F no newline"
    lines = parse_log(data)
    assert [(line.text, line.partial) for line in lines] == [
        ("done", False),
        ("still writ", True),
        ("no newline", True),
    ]
    path = tmp_path / "0.log"
    path.write_bytes(data)
    assert list(tail(path, 10, allowed_roots=[tmp_path]).lines) == lines


# ------------------------------------------------------------------------- tail


def test_tail_returns_the_last_lines_oldest_first(pod_dir: Path) -> None:
    path = pod_dir / "0.log"
    path.write_bytes(numbered(1000))
    result = tail(path, 3, allowed_roots=[pod_dir])
    assert texts(result.lines) == ["line 997", "line 998", "line 999"]
    assert not result.truncated
    assert result.files == (str(path),)
    assert result.note is None


def test_tail_of_a_short_file_returns_all_of_it(pod_dir: Path) -> None:
    path = pod_dir / "0.log"
    path.write_bytes(numbered(4))
    assert texts(tail(path, 100, allowed_roots=[pod_dir]).lines) == [f"line {i}" for i in range(4)]


def test_tail_of_an_empty_file_is_empty_not_an_error(pod_dir: Path) -> None:
    path = pod_dir / "0.log"
    path.write_bytes(b"")
    result = tail(path, 10, allowed_roots=[pod_dir])
    assert result.lines == ()
    assert not result.truncated


def test_partial_sequence_straddling_block_boundaries_is_joined(pod_dir: Path) -> None:
    path = pod_dir / "0.log"
    head = rec("first")
    long_line = rec("a" * 40, tag="P") + rec("b" * 40, tag="P") + rec("c" * 40)
    path.write_bytes(head + long_line + rec("last"))
    # Every block size puts the block boundaries somewhere else in the P/P/F run.
    for block in range(1, 130):
        result = tail(path, 2, block_size=block, allowed_roots=[pod_dir])
        assert texts(result.lines) == ["a" * 40 + "b" * 40 + "c" * 40, "last"], block


def test_tail_agrees_with_a_whole_file_parse_on_random_logs(tmp_path: Path) -> None:
    rnd = random.Random(20240506)
    for case in range(150):
        parts = []
        for i in range(rnd.randint(0, 25)):
            kind = rnd.random()
            stream = rnd.choice(["stdout", "stderr"])
            if kind < 0.1:
                parts.append(f"junk {i} ".encode() * rnd.randint(0, 3) + b"\n")
            else:
                tag = "P" if kind < 0.5 else "F"
                parts.append(rec(f"{stream[3]}{i}" * rnd.randint(0, 4), stream=stream, tag=tag))
        data = b"".join(parts)
        if data and rnd.random() < 0.3:
            data = data[:-1]  # the runtime is in the middle of a write
        path = tmp_path / f"{case}.log"
        path.write_bytes(data)
        everything = parse_log(data)
        for want in (1, 3, 7, 100):
            block = rnd.randint(1, 64)
            got = tail(path, want, block_size=block, allowed_roots=[tmp_path])
            assert list(got.lines) == everything[-want:], (case, want, block, data)


def test_tail_of_a_large_file_reads_only_its_end(pod_dir: Path, pread_bytes: list[int]) -> None:
    path = pod_dir / "0.log"
    # 256 MiB of NUL bytes without a single newline (sparse, so cheap), then
    # real lines: reading the beginning would show up as a giant junk line
    # and as hundreds of MiB read.
    with open(path, "wb") as f:
        f.truncate(256 * 1024 * 1024)
        f.seek(0, os.SEEK_END)
        f.write(b"\n" + numbered(500))
    result = tail(path, 100, allowed_roots=[pod_dir])
    assert texts(result.lines) == [f"line {i}" for i in range(400, 500)]
    assert sum(pread_bytes) == result.bytes_read
    assert result.bytes_read <= 64 * 1024


def test_max_bytes_bounds_the_read_and_says_truncated(
    pod_dir: Path, pread_bytes: list[int]
) -> None:
    path = pod_dir / "0.log"
    path.write_bytes(numbered(10_000))
    line_size = len(rec("line 9999"))
    result = tail(
        path, 1000, max_bytes=50 * line_size, block_size=7 * line_size, allowed_roots=[pod_dir]
    )
    assert result.truncated
    assert sum(pread_bytes) <= 50 * line_size
    assert texts(result.lines)[-1] == "line 9999"
    assert 45 <= len(result.lines) <= 50
    # The lines shown are the newest ones and in order.
    numbers = [int(t.split()[1]) for t in texts(result.lines)]
    assert numbers == list(range(10_000 - len(numbers), 10_000))


def test_a_line_longer_than_max_bytes_gives_an_explained_empty_result(pod_dir: Path) -> None:
    path = pod_dir / "0.log"
    path.write_bytes(rec("short") + rec("x" * 100_000))
    result = tail(path, 5, max_bytes=10_000, block_size=1000, allowed_roots=[pod_dir])
    assert result.lines == ()
    assert result.truncated
    assert result.note is not None
    assert "10000 bytes" in result.note


def test_a_lone_stderr_line_among_stdout_lines_is_not_lost(pod_dir: Path) -> None:
    path = pod_dir / "0.log"
    path.write_bytes(
        numbered(50_000) + rec("panic: boom", stream="stderr") + numbered(5, start=50_000)
    )
    result = tail(path, 6, allowed_roots=[pod_dir])
    assert [(line.stream, line.text) for line in result.lines] == [
        ("stderr", "panic: boom"),
        *[("stdout", f"line {i}") for i in range(50_000, 50_005)],
    ]
    # Looking for an older stderr record to be sure where the panic line
    # starts stays bounded well below the file size.
    assert result.bytes_read < path.stat().st_size // 4


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"lines": -1}, "lines"),
        ({"lines": 100_001}, "lines"),
        ({"lines": True}, "lines"),
        ({"lines": 5, "max_bytes": 0}, "max_bytes"),
    ],
)
def test_bad_arguments_are_invalid_input(
    pod_dir: Path, kwargs: dict[str, object], field: str
) -> None:
    path = pod_dir / "0.log"
    path.write_bytes(numbered(3))
    with pytest.raises(InvalidInput) as caught:
        tail(path, **kwargs, allowed_roots=[pod_dir])  # type: ignore[arg-type]
    assert caught.value.detail["field"] == field


def test_missing_file_is_not_found_naming_it(pod_dir: Path) -> None:
    path = pod_dir / "7.log"
    with pytest.raises(NotFound) as caught:
        tail(path, 10, allowed_roots=[pod_dir])
    assert str(path) in caught.value.message


def test_zero_lines_of_a_missing_file_is_still_not_found(pod_dir: Path) -> None:
    with pytest.raises(NotFound):
        tail(pod_dir / "7.log", 0, allowed_roots=[pod_dir])


# --------------------------------------------------------------------- rotation


def _rotated_set(pod_dir: Path) -> Path:
    """0.log (live) + two rotations, the older one compressed, as kubelet leaves them."""
    live = pod_dir / "0.log"
    (pod_dir / "0.log.20240506-070000.gz").write_bytes(gzip.compress(numbered(10, start=0)))
    (pod_dir / "0.log.20240506-071000").write_bytes(numbered(10, start=10))
    live.write_bytes(numbered(5, start=20))
    return live


def test_live_file_alone_when_it_holds_enough(pod_dir: Path) -> None:
    live = _rotated_set(pod_dir)
    result = tail(live, 5, allowed_roots=[pod_dir])
    assert texts(result.lines) == [f"line {i}" for i in range(20, 25)]
    assert result.files == (str(live),)


def test_rotation_spans_live_plain_and_gzipped_files_oldest_first(pod_dir: Path) -> None:
    live = _rotated_set(pod_dir)
    result = tail(live, 22, allowed_roots=[pod_dir])
    assert texts(result.lines) == [f"line {i}" for i in range(3, 25)]
    assert result.files == (
        str(pod_dir / "0.log.20240506-070000.gz"),
        str(pod_dir / "0.log.20240506-071000"),
        str(live),
    )
    assert not result.truncated
    assert texts(tail(live, 1000, allowed_roots=[pod_dir]).lines) == [
        f"line {i}" for i in range(25)
    ]


def test_rotation_ignores_tmp_and_a_plain_copy_being_compressed(pod_dir: Path) -> None:
    live = _rotated_set(pod_dir)
    # kubelet compresses X to X.tmp, renames it X.gz, then removes X: while
    # both exist they hold the same lines.
    (pod_dir / "0.log.20240506-070000").write_bytes(numbered(10, start=0))
    (pod_dir / "0.log.20240506-071000.gz.tmp").write_bytes(b"half written")
    (pod_dir / "1.log.20240506-072000").write_bytes(rec("another attempt"))
    result = tail(live, 1000, allowed_roots=[pod_dir])
    assert texts(result.lines) == [f"line {i}" for i in range(25)]


def test_a_long_line_cut_by_rotation_is_joined_across_files(pod_dir: Path) -> None:
    (pod_dir / "0.log.20240506-071000").write_bytes(rec("old") + rec("begin-", tag="P"))
    live = pod_dir / "0.log"
    live.write_bytes(rec("middle-", tag="P") + rec("end") + rec("new"))
    result = tail(live, 2, allowed_roots=[pod_dir])
    assert texts(result.lines) == ["begin-middle-end", "new"]


def test_gzip_rotation_is_bounded_by_max_bytes_of_decompressed_data(pod_dir: Path) -> None:
    live = pod_dir / "0.log"
    live.write_bytes(numbered(2, start=100_000))
    (pod_dir / "0.log.20240506-070000.gz").write_bytes(gzip.compress(numbered(100_000)))
    budget = 4096
    result = tail(live, 1000, max_bytes=budget, allowed_roots=[pod_dir])
    assert result.truncated
    assert result.bytes_read <= budget
    numbers = [int(t.split()[1]) for t in texts(result.lines)]
    assert numbers[-2:] == [100_000, 100_001]
    assert numbers == list(range(numbers[0], 100_002))
    assert len(numbers) < 1000


def test_corrupt_gzip_rotation_is_reported_not_raised(pod_dir: Path) -> None:
    live = pod_dir / "0.log"
    live.write_bytes(numbered(2, start=10))
    (pod_dir / "0.log.20240506-070000.gz").write_bytes(b"\x1f\x8b\x08not gzip at all")
    result = tail(live, 100, allowed_roots=[pod_dir])
    assert texts(result.lines) == ["line 10", "line 11"]
    assert result.note is not None
    assert "0.log.20240506-070000.gz" in result.note


def test_rotated_file_removed_between_listing_and_reading(
    pod_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    live = _rotated_set(pod_dir)
    listed = rotated_files

    def list_then_gc(current: Path) -> list[RotatedFile]:
        found = listed(current)
        for rotated in found:
            rotated.path.unlink()  # kubelet's removeExcessLogs got there first
        return found

    monkeypatch.setattr(tail_module, "rotated_files", list_then_gc)
    result = tail(live, 100, allowed_roots=[pod_dir])
    assert texts(result.lines) == [f"line {i}" for i in range(20, 25)]
    assert result.note is not None
    assert "vanished while reading" in result.note
    assert "0.log.20240506-071000" in result.note


def test_live_file_missing_during_rotation_falls_back_to_rotated_files(pod_dir: Path) -> None:
    live = _rotated_set(pod_dir)
    live.unlink()
    result = tail(live, 3, allowed_roots=[pod_dir])
    assert texts(result.lines) == ["line 17", "line 18", "line 19"]
    assert result.note is not None
    assert "missing" in result.note


def test_live_file_rotated_while_reading_keeps_what_was_read(
    pod_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    live = pod_dir / "0.log"
    live.write_bytes(numbered(200))
    real = os.pread
    rotated = pod_dir / "0.log.20240506-080000"

    def rotate_on_first_read(fd: int, n: int, offset: int) -> bytes:
        if not rotated.exists():
            live.rename(rotated)
            live.write_bytes(rec("written after rotation"))
        return real(fd, n, offset)

    monkeypatch.setattr(os, "pread", rotate_on_first_read)
    result = tail(live, 300, block_size=512, allowed_roots=[pod_dir])
    # The open file is the rotated one now: all of it, and it is not read twice.
    assert texts(result.lines) == [f"line {i}" for i in range(200)]
    assert result.note is not None
    assert "rotated while reading" in result.note


def test_live_file_truncated_while_reading_keeps_what_was_read(
    pod_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    live = pod_dir / "0.log"
    live.write_bytes(numbered(200))
    real = os.pread
    calls = []

    def truncate_after_first_read(fd: int, n: int, offset: int) -> bytes:
        data = real(fd, n, offset)
        calls.append(n)
        if len(calls) == 1:
            os.truncate(live, 100)  # copytruncate-style rotation
        return data

    monkeypatch.setattr(os, "pread", truncate_after_first_read)
    result = tail(live, 300, block_size=512, allowed_roots=[pod_dir])
    assert result.lines
    assert texts(result.lines)[-1] == "line 199"
    assert result.note is not None
    assert "truncated while reading" in result.note


# ------------------------------------------------------------------------ paths


@pytest.mark.parametrize(
    ("namespace", "pod", "uid"),
    [
        ("..", "web", "u1"),
        ("default", "..", "u1"),
        ("default", "web", ".."),
        ("a/b", "web", "u1"),
        ("default", "web/../../etc", "u1"),
        ("default", "web", "u1/../x"),
        ("", "web", "u1"),
        ("default", "", "u1"),
        ("default", "web", ""),
        ("de\0fault", "web", "u1"),
        ("Default", "web", "u1"),
        ("my_ns", "web", "u1"),
        ("default", "web_1", "u1"),
        ("default", "/etc", "u1"),
        ("default", "web", "u1_x"),
        ("x" * 64, "web", "u1"),
    ],
)
def test_container_log_dir_refuses_bad_names(
    tmp_path: Path, namespace: str, pod: str, uid: str
) -> None:
    with pytest.raises(InvalidInput):
        container_log_dir(tmp_path, namespace, pod, uid)


def test_container_log_dir_builds_kubelets_layout(tmp_path: Path) -> None:
    got = container_log_dir(tmp_path, "kube-system", "coredns-5d78c.x", "0b4c2f1e-1111-2222")
    assert got == tmp_path.resolve() / "kube-system_coredns-5d78c.x_0b4c2f1e-1111-2222"


def test_container_log_dir_refuses_a_symlink_out_of_the_root(tmp_path: Path) -> None:
    root = tmp_path / "pods"
    root.mkdir()
    outside = tmp_path / "secrets"
    outside.mkdir()
    (root / "default_web_u1").symlink_to(outside)
    with pytest.raises(InvalidInput) as caught:
        container_log_dir(root, "default", "web", "u1")
    assert str(outside) in caught.value.message


@pytest.mark.parametrize("name", ["..", ".", "a/b", "/", "", "app\0", "App", "a_b", "-app"])
def test_log_path_for_refuses_bad_container_names(pod_dir: Path, name: str) -> None:
    with pytest.raises(InvalidInput):
        log_path_for(pod_dir.parent, name, 0)


@pytest.mark.parametrize("count", [-1, True, 1.0, "1"])
def test_log_path_for_refuses_bad_restart_counts(pod_dir: Path, count: object) -> None:
    with pytest.raises(InvalidInput):
        log_path_for(pod_dir.parent, "app", count)  # type: ignore[arg-type]


def test_log_path_for_builds_kubelets_layout(pod_dir: Path) -> None:
    assert log_path_for(pod_dir.parent, "app", 3) == pod_dir.resolve() / "3.log"


def test_log_path_for_refuses_a_container_dir_symlinked_outside(tmp_path: Path) -> None:
    pod = tmp_path / "pods" / "default_web_u1"
    pod.mkdir(parents=True)
    (pod / "app").symlink_to("/etc")
    with pytest.raises(InvalidInput):
        log_path_for(pod, "app", 0)


def test_safe_open_log_reads_a_file_under_the_roots(pod_dir: Path) -> None:
    path = pod_dir / "0.log"
    path.write_bytes(b"x")
    with safe_open_log(path, [pod_dir.parent.parent]) as f:
        assert f.read() == b"x"


def test_safe_open_log_refuses_a_symlink_pointing_outside(tmp_path: Path, pod_dir: Path) -> None:
    secret = tmp_path / "shadow"
    secret.write_text("root:x")
    link = pod_dir / "0.log"
    link.symlink_to(secret)
    with pytest.raises(InvalidInput):
        safe_open_log(link, [pod_dir])
    with pytest.raises(InvalidInput):
        tail(link, 10, allowed_roots=[pod_dir])


def test_safe_open_log_refuses_dotdot_escapes(pod_dir: Path) -> None:
    (pod_dir.parent / "other.log").write_bytes(b"x")
    with pytest.raises(InvalidInput):
        safe_open_log(pod_dir / ".." / "other.log", [pod_dir])


def test_safe_open_log_accepts_a_symlink_into_another_allowed_root(
    tmp_path: Path, pod_dir: Path
) -> None:
    # /var/log/containers/<pod>_<ns>_<container>-<id>.log -> /var/log/pods/...
    (pod_dir / "0.log").write_bytes(numbered(2))
    containers = tmp_path / "containers"
    containers.mkdir()
    link = containers / "web-0_default_app-abc.log"
    link.symlink_to(pod_dir / "0.log")
    roots = [tmp_path / "pods", containers]
    with safe_open_log(link, roots) as f:
        assert f.read() == numbered(2)
    assert texts(tail(link, 5, allowed_roots=roots).lines) == ["line 0", "line 1"]


def test_safe_open_log_refuses_non_regular_files(pod_dir: Path) -> None:
    fifo = pod_dir / "0.log"
    os.mkfifo(fifo)
    with pytest.raises(InvalidInput):
        safe_open_log(fifo, [pod_dir])
    with pytest.raises(InvalidInput):
        safe_open_log(pod_dir, [pod_dir.parent])


def test_safe_open_log_refuses_nul_and_missing_roots(pod_dir: Path) -> None:
    with pytest.raises(InvalidInput):
        safe_open_log(str(pod_dir / "0.log") + "\0", [pod_dir])
    with pytest.raises(InvalidInput):
        safe_open_log(pod_dir / "0.log", [])


def test_safe_open_log_missing_file_is_not_found_naming_it(pod_dir: Path) -> None:
    with pytest.raises(NotFound) as caught:
        safe_open_log(pod_dir / "9.log", [pod_dir])
    assert "9.log" in caught.value.message


def test_previous_log_path(pod_dir: Path) -> None:
    (pod_dir / "1.log").write_bytes(rec("previous attempt"))
    current = pod_dir / "2.log"
    current.write_bytes(rec("this attempt"))
    previous = previous_log_path(current, 2, allowed_roots=[pod_dir])
    assert previous == (pod_dir / "1.log").resolve()
    assert previous is not None
    assert texts(tail(previous, 5, allowed_roots=[pod_dir]).lines) == ["previous attempt"]
    assert (
        previous_log_path(pod_dir / "1.log", 1, allowed_roots=[pod_dir]) is None
    )  # 0.log was removed by GC
    assert previous_log_path(pod_dir / "0.log", 0, allowed_roots=[pod_dir]) is None
    with pytest.raises(InvalidInput):
        previous_log_path(current, -1, allowed_roots=[pod_dir])


def test_previous_log_path_refuses_a_symlink_out(tmp_path: Path, pod_dir: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("x")
    (pod_dir / "0.log").symlink_to(secret)
    with pytest.raises(InvalidInput):
        previous_log_path(pod_dir / "1.log", 1, allowed_roots=[pod_dir])


# -------------------------------------------------------------------- LastWords


def _attempt_log(pod_dir: Path, attempt: int, body: bytes) -> Path:
    path = pod_dir / f"{attempt}.log"
    path.write_bytes(body)
    return path


def test_last_words_survive_the_log_file(pod_dir: Path) -> None:
    memory = LastWords(allowed_roots=[pod_dir])
    path = _attempt_log(pod_dir, 0, numbered(200) + rec("fatal: config missing", stream="stderr"))
    key = AttemptKey("uid-1", "app", 0)
    kept = memory.remember(key, path)
    assert kept is not None
    path.unlink()  # kubelet's container GC
    recalled = memory.recall("uid-1", "app", 0)
    assert recalled == kept
    assert len(recalled.lines) == 50
    assert recalled.lines[-1].text == "fatal: config missing"
    assert recalled.lines[0].text == "line 151"
    assert memory.recall("uid-1", "app", 1) is None


def test_last_words_of_a_vanished_file_are_none(pod_dir: Path) -> None:
    memory = LastWords(allowed_roots=[pod_dir])
    assert memory.remember(AttemptKey("uid-1", "app", 3), pod_dir / "3.log") is None
    assert len(memory) == 0


def test_last_words_keep_a_bounded_number_of_attempts_lru(pod_dir: Path) -> None:
    memory = LastWords(allowed_roots=[pod_dir], lines=5, max_attempts=3)
    for attempt in range(3):
        memory.remember(
            AttemptKey("uid-1", "app", attempt), _attempt_log(pod_dir, attempt, numbered(9))
        )
    assert memory.recall("uid-1", "app", 0) is not None  # now the most recently used
    memory.remember(AttemptKey("uid-1", "app", 3), _attempt_log(pod_dir, 3, numbered(9)))
    assert len(memory) == 3
    assert memory.recall("uid-1", "app", 1) is None
    assert memory.attempts("uid-1", "app") == [0, 2, 3]


def test_last_words_total_size_is_bounded(pod_dir: Path) -> None:
    memory = LastWords(allowed_roots=[pod_dir], lines=10, max_total_bytes=20_000)
    for attempt in range(40):
        path = _attempt_log(pod_dir, attempt, b"".join(rec("y" * 500) for _ in range(10)))
        memory.remember(AttemptKey("uid-1", "app", attempt), path)
    assert memory.approx_bytes <= 20_000
    assert 1 <= len(memory) < 40
    assert memory.recall("uid-1", "app", 39) is not None


def test_last_words_per_attempt_bytes_are_bounded(pod_dir: Path) -> None:
    memory = LastWords(allowed_roots=[pod_dir], lines=50, max_bytes_per_attempt=1024)
    path = _attempt_log(pod_dir, 0, b"".join(rec("z" * 300) for _ in range(50)))
    kept = memory.remember(AttemptKey("uid-1", "app", 0), path)
    assert kept is not None
    assert kept.truncated
    assert kept.bytes_read <= 1024
    assert sum(len(line.text) for line in kept.lines) <= 1024


def test_last_words_forget_a_pod(pod_dir: Path) -> None:
    memory = LastWords(allowed_roots=[pod_dir])
    memory.remember(AttemptKey("uid-1", "app", 0), _attempt_log(pod_dir, 0, numbered(3)))
    memory.remember(AttemptKey("uid-2", "app", 0), _attempt_log(pod_dir, 1, numbered(3)))
    assert memory.forget_pod("uid-1") == 1
    assert memory.recall("uid-1", "app", 0) is None
    assert memory.recall("uid-2", "app", 0) is not None


@pytest.mark.parametrize(
    "key",
    [AttemptKey("", "app", 0), AttemptKey("uid", "", 0), AttemptKey("uid", "app", -1)],
)
def test_last_words_refuse_bad_keys(pod_dir: Path, key: AttemptKey) -> None:
    with pytest.raises(InvalidInput):
        LastWords(allowed_roots=[pod_dir]).remember(key, _attempt_log(pod_dir, 0, numbered(1)))


def test_last_words_respect_allowed_roots(tmp_path: Path, pod_dir: Path) -> None:
    outside = tmp_path / "elsewhere.log"
    outside.write_bytes(numbered(3))
    memory = LastWords(allowed_roots=[pod_dir])
    with pytest.raises(InvalidInput):
        memory.remember(AttemptKey("uid-1", "app", 0), outside)


def test_safe_open_log_catches_a_directory_swapped_for_a_symlink_while_opening(
    tmp_path: Path, pod_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (pod_dir / "0.log").write_bytes(b"inside")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "0.log").write_bytes(b"outside")
    real_open = os.open

    def swap_then_open(path: str, flags: int, *args: int) -> int:
        # After the path was resolved and checked, the directory becomes a
        # symlink; O_NOFOLLOW only guards the last component.
        if not pod_dir.is_symlink():
            pod_dir.rename(tmp_path / "moved-away")
            pod_dir.symlink_to(outside)
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", swap_then_open)
    with pytest.raises(InvalidInput) as caught:
        safe_open_log(pod_dir / "0.log", [pod_dir.parent])
    assert str(outside) in caught.value.message


# ---------------------------------------------------------- against containerd


@pytest.mark.containerd
def test_logs_written_by_a_real_containerd(
    cri_driver: CriPodDriver, lab_pod: Callable[..., PodHandle]
) -> None:
    # 40000 bytes without a newline: containerd cuts it into P records
    # (16 KiB buffer) and ends it with an F record.
    script = (
        "echo out-1; echo err-1 >&2; head -c 40000 /dev/zero | tr '\\0' a; echo; "
        "echo out-2; echo 'last words' >&2; exit 3"
    )
    talker = ContainerDef("talker", "busybox", command=["sh", "-c", script])
    handle = lab_pod("logs-talker", containers=[talker])
    first = handle.containers["talker"]
    cri_driver.wait_container_state(first.id, api_pb2.CONTAINER_EXITED)

    pod_dir = container_log_dir(cri_driver.log_root, handle.namespace, handle.name, handle.uid)
    path = log_path_for(pod_dir, "talker", 0, allowed_roots=[cri_driver.log_root])
    assert path == Path(os.path.realpath(first.log_path))
    raw = path.read_bytes()
    assert b" stdout P " in raw  # the long line really was split by the runtime

    result = tail(path, 10, allowed_roots=[cri_driver.log_root])
    assert result.note is None
    assert not result.truncated
    assert all(line.at is not None and line.at.tzinfo is not None for line in result.lines)
    assert not any(line.partial for line in result.lines)
    by_stream = {
        stream: [line.text for line in result.lines if line.stream == stream]
        for stream in ("stdout", "stderr")
    }
    # The long line keeps its first 16 KiB, and says it was cut.
    assert by_stream == {
        "stdout": ["out-1", "a" * MAX_LINE_BYTES, "out-2"],
        "stderr": ["err-1", "last words"],
    }
    assert [line.text[:1] for line in result.lines if line.cut] == ["a"]
    assert list(result.lines) == parse_log(raw)

    memory = LastWords(allowed_roots=[cri_driver.log_root])
    memory.remember(AttemptKey(handle.uid, "talker", 0), path)
    cri_driver.restart_container(handle, "talker")
    current = log_path_for(pod_dir, "talker", 1, allowed_roots=[cri_driver.log_root])
    assert previous_log_path(current, 1, allowed_roots=[cri_driver.log_root]) == path
    recalled = memory.recall(handle.uid, "talker", 0)
    assert recalled is not None
    # stdout and stderr are separate pipes: only the order within one holds.
    assert list(recalled.lines) == list(result.lines)


def test_real_path_agrees_with_os_realpath_without_touching_the_file(tmp_path: Path) -> None:
    real_dir = tmp_path / "var" / "log" / "pods"
    real_dir.mkdir(parents=True)
    (tmp_path / "logs").symlink_to(real_dir)
    fifo = real_dir / "0.log"
    os.mkfifo(fifo)  # opening a FIFO for reading would block; O_PATH does not
    link = tmp_path / "logs" / "current.log"
    link.symlink_to("0.log")
    cases = [link, tmp_path / "logs" / ".." / "logs" / "0.log", tmp_path / "logs" / "missing.log"]
    for path in cases:
        assert real_path(str(path)) == os.path.realpath(path)
    assert real_path(str(link)) == str(fifo)
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "nowhere" / "x.log")
    assert real_path(str(dangling)) == os.path.realpath(dangling)


def test_tail_memo_reads_a_file_again_only_when_it_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[Path] = []
    real_tail = tail_module.tail

    def counting(path: Path, lines: int, **kw: Any) -> object:
        reads.append(path)
        return real_tail(path, lines, **kw)

    monkeypatch.setattr("agent.logs._memo.tail", counting)
    memo = TailMemo([tmp_path])
    log = tmp_path / "0.log"
    log.write_bytes(b"2024-05-06T07:08:09Z stdout F one\n2024-05-06T07:08:10Z stdout F two\n")

    assert memo.lines(log, 1) == ("two",)
    assert memo.lines(log, 1) == ("two",)
    assert memo.lines(log, 2) == ("one", "two")  # another count is another read
    assert len(reads) == 2

    with log.open("ab") as f:  # the runtime appends
        f.write(b"2024-05-06T07:08:11Z stdout F three\n")
    assert memo.lines(log, 1) == ("three",)
    rotated = tmp_path / "0.log.20240506-070812"
    log.rename(rotated)  # kubelet rotates: a new file takes the name
    log.write_bytes(b"2024-05-06T07:08:13Z stderr F four\n")
    assert memo.lines(log, 2) == ("three", "four")
    st = os.stat(log)
    log.write_bytes(b"2024-05-06T07:08:14Z stderr F FIVE\n")  # same size, new content
    os.utime(log, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert memo.lines(log, 1) == ("FIVE",)
    assert len(reads) == 5

    log.unlink()
    rotated.unlink()
    with pytest.raises(NotFound):
        memo.lines(log, 1)


# ------------------------------------------------------------------ line cap


def test_a_line_longer_than_the_cap_is_cut_to_its_beginning_and_marked(pod_dir: Path) -> None:
    path = pod_dir / "0.log"
    long = "".join(f"{i:08d}" for i in range(100_000 // 8))
    path.write_bytes(rec("before") + rec(long) + rec("after"))
    lines = tail(path, 3, allowed_roots=[pod_dir]).lines
    assert [line.cut for line in lines] == [False, True, False]
    assert lines[1].text == long[:MAX_LINE_BYTES]
    assert parse_log(path.read_bytes()) == list(lines)


def test_a_long_line_of_partial_records_keeps_only_its_first_bytes(pod_dir: Path) -> None:
    path = pod_dir / "0.log"
    pieces = [f"<{i:05d}>" + "x" * (16 * 1024 - 7) for i in range(12)]  # 192 KiB, P records
    path.write_bytes(b"".join(rec(p, tag="P") for p in pieces) + rec("!") + rec("next"))
    for block in (4096, 64 * 1024):
        lines = tail(path, 2, allowed_roots=[pod_dir], block_size=block).lines
        kept = [(len(line.text), line.cut) for line in lines]
        assert kept == [(MAX_LINE_BYTES, True), (4, False)]
        assert lines[0].text.startswith("<00000>")
    assert parse_log(path.read_bytes()) == list(lines)


def test_the_cut_never_splits_a_character(pod_dir: Path) -> None:
    path = pod_dir / "0.log"
    text = "x" * (MAX_LINE_BYTES - 1) + "€" * 10  # the cut falls inside the first euro sign
    path.write_bytes(rec(text))
    (line,) = tail(path, 1, allowed_roots=[pod_dir]).lines
    assert line.cut
    assert line.text == "x" * (MAX_LINE_BYTES - 1)


def test_a_long_malformed_line_is_cut_too(pod_dir: Path) -> None:
    path = pod_dir / "0.log"
    path.write_bytes(b"\x01" * 200_000 + b"\n" + rec("ok"))
    first, second = tail(path, 2, allowed_roots=[pod_dir]).lines
    assert (first.stream, len(first.text), first.cut) == ("unknown", MAX_LINE_BYTES, True)
    assert (second.text, second.cut) == ("ok", False)
