"""The yardstick of the real-cluster tests, checked without a cluster.

``tests/real_cluster.py`` reads kubectl's columns and decides when the agent's
row and kubectl's agree; a mistake there would pass or fail the comparison
for the wrong reason. The rows below are kubectl's own output.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from agent.domain.podstatus import human_duration
from tests.real_cluster import (
    Reading,
    Row,
    agrees,
    changed,
    disagreeing,
    duration_seconds,
    parse_table,
    settles,
)

WIDE = """\
NAME                 READY   STATUS                       RESTARTS        AGE     IP               NODE       NOMINATED NODE   READINESS GATES
cfgkey               0/1     CreateContainerConfigError   0               16s     10.157.207.161   lab-node   <none>           <none>
crashloop-demo       0/1     CrashLoopBackOff             5 (2m12s ago)   5m14s   10.157.207.148   lab-node   <none>           <none>
init-demo            0/1     Init:0/2                     1 (3m40s ago)   5m11s   10.157.207.156   lab-node   <none>           <none>
"""  # noqa: E501

ALL = """\
NAMESPACE        NAME                  READY   STATUS    RESTARTS   AGE   IP             NODE       NOMINATED NODE   READINESS GATES
podlens-system   podlens-agent-44mvg   1/1     Running   0          11s   10.174.174.2   lab-node   <none>           <none>
"""  # noqa: E501


def test_columns_are_read_where_their_headers_start() -> None:
    rows = parse_table(WIDE)
    assert [r["NAME"] for r in rows] == ["cfgkey", "crashloop-demo", "init-demo"]
    assert rows[0]["STATUS"] == "CreateContainerConfigError"
    assert rows[1]["RESTARTS"] == "5 (2m12s ago)"
    assert rows[2]["NOMINATED NODE"] == "<none>"
    assert rows[2]["READINESS GATES"] == "<none>"
    (agent,) = parse_table(ALL)
    assert (agent["NAMESPACE"], agent["READY"], agent["NODE"]) == (
        "podlens-system",
        "1/1",
        "lab-node",
    )
    assert parse_table("") == []


def test_restarts_column() -> None:
    assert Row("Error", "0/1", "4 (1m5s ago)").restart_count == 4
    assert Row("Error", "0/1", "4 (1m5s ago)").restart_ago == 65
    assert Row("Running", "1/1", "0").restart_ago is None


@pytest.mark.parametrize("seconds", [0, 59, 119, 120, 150, 599, 600, 10799, 10800, 30000, 172800])
def test_durations_read_back_as_the_agent_prints_them(seconds: int) -> None:
    text = human_duration(timedelta(seconds=seconds))
    read = duration_seconds(text)
    # Rounded down to the unit printed last: seconds, minutes from 10m, hours from 8h.
    unit = 1 if seconds < 600 else 60 if seconds < 8 * 3600 else 3600
    assert read <= seconds < read + unit


def test_a_duration_that_is_not_kubectls_is_refused() -> None:
    for text in ("", "5", "2m 3s", "1.5s", "<invalid>"):
        with pytest.raises(ValueError, match="not a kubectl duration"):
            duration_seconds(text)


RUNNING = Row("Running", "1/1", "0")
LOOP = Row("CrashLoopBackOff", "0/1", "3 (10s ago)")


def test_kubectl_must_equal_one_of_the_two_agent_readings() -> None:
    assert agrees(RUNNING, RUNNING, RUNNING)
    assert agrees(LOOP, RUNNING, LOOP)
    assert not agrees(LOOP, RUNNING, RUNNING)
    assert not agrees(Row("Running", "0/1", "0"), RUNNING, RUNNING)
    assert not agrees(Row("Error", "0/1", "3 (10s ago)"), LOOP, LOOP)


def test_the_restart_age_may_tick_between_the_readings_but_not_beyond() -> None:
    later = Row("CrashLoopBackOff", "0/1", "3 (12s ago)")
    assert agrees(Row("CrashLoopBackOff", "0/1", "3 (11s ago)"), LOOP, later)
    assert not agrees(Row("CrashLoopBackOff", "0/1", "3 (13s ago)"), LOOP, later)
    assert not agrees(Row("CrashLoopBackOff", "0/1", "4 (11s ago)"), LOOP, later)


def test_a_pod_one_side_lacks() -> None:
    # Made or deleted between the readings: kubectl may have it or not.
    assert agrees(None, RUNNING, None)
    assert agrees(RUNNING, None, RUNNING)
    # Never for both agent readings against kubectl.
    assert not agrees(None, RUNNING, RUNNING)
    assert not agrees(RUNNING, None, None)


def test_disagreeing_names_the_pods_that_do_not_fit() -> None:
    reading = Reading(
        0.0,
        before={"a/x": RUNNING, "a/y": RUNNING},
        kubectl={"a/x": RUNNING, "a/y": LOOP, "a/z": RUNNING},
        after={"a/x": RUNNING, "a/y": RUNNING},
    )
    assert disagreeing(reading) == {"a/y", "a/z"}
    assert disagreeing(reading, {"a/x"}) == set()


def test_a_retry_settles_only_timing() -> None:
    init, starting, running = (
        Row("Init:0/1", "0/1", "0"),
        Row("PodInitializing", "0/1", "0"),
        RUNNING,
    )
    # The agent moved across kubectl's moment: kubectl caught the step between.
    straddled = Reading(0.0, {"p": init}, {"p": starting}, {"p": running})
    assert settles(straddled, Reading(1.0, {"p": running}, {"p": running}, {"p": running}), "p")
    # The agent a little behind, then showing exactly what kubectl showed.
    behind = Reading(0.0, {"p": init}, {"p": starting}, {"p": init})
    assert settles(behind, Reading(1.0, {"p": starting}, {"p": starting}, {"p": starting}), "p")
    # The agent never showed kubectl's state; agreeing on a later one is no excuse.
    assert not settles(behind, Reading(1.0, {"p": running}, {"p": running}, {"p": running}), "p")
    # Still apart.
    assert not settles(behind, Reading(1.0, {"p": init}, {"p": starting}, {"p": init}), "p")


def test_changed_ignores_only_the_restart_age() -> None:
    assert not changed(LOOP, Row("CrashLoopBackOff", "0/1", "3 (40s ago)"))
    assert changed(LOOP, Row("CrashLoopBackOff", "0/1", "4 (1s ago)"))
    assert changed(None, RUNNING)
    assert not changed(None, None)
