"""``podlens diagnose`` on what people paste: fragments, describe text, event tables, dumps.

The corpus is ``tests/fixtures/paste/``: ``kubectl describe pod`` in the
layouts kubectl has printed (v1.7 with FirstSeen/LastSeen/Count events,
v1.14 with ``kubelet, <node>`` sources, v1.28-v1.31), ``kubectl get events``
tables (today's, ``-A -o wide``, the old one with KIND and NAME), status
fragments, odd YAML, and cluster-info dumps (directory as JSON and YAML,
and the JSON printed to stdout).
"""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.cli.diagnose import diagnose_documents, diagnose_dump, main
from agent.cli.pastes import _stream, read_pods
from agent.cli.pastes._text import columns_of, parse_age, parse_age_cell, parse_go_time, split_row
from agent.cli.pastes.dump import find_dump, namespace_pods
from agent.errors import InvalidInput

NOW = datetime(2025, 3, 4, 12, 0, 0, tzinfo=UTC)
PASTE = Path(__file__).parent / "fixtures" / "paste"
DIAG = Path(__file__).parent / "fixtures" / "diagnose"
NOW_FLAG = ["--now", "2025-03-04T12:00:00Z"]


def read(name: str) -> str:
    return (PASTE / name).read_text(encoding="utf-8")


def rules_of(report: dict[str, Any]) -> list[str]:
    return [f["rule"] for f in report["findings"]]


def findings_key(report: dict[str, Any]) -> list[tuple[str, str | None, str]]:
    return [(f["rule"], f["container"], f["severity"]) for f in report["findings"]]


def evidence(finding: dict[str, Any]) -> dict[str, str]:
    return {e["label"]: e["value"] for e in finding["evidence"]}


def whole(name: str) -> dict[str, Any]:
    """The same pod diagnosed from its whole object (tests/fixtures/diagnose)."""
    result = diagnose_documents(
        (DIAG / "pods-list.yaml").read_text(), (DIAG / "events.yaml").read_text(), NOW
    )
    return next(p for p in result["pods"] if p["name"] == name)


# --------------------------------------------------------------------------
# kubectl describe pod
# --------------------------------------------------------------------------


def test_describe_current_layout_gives_what_the_whole_object_gives() -> None:
    result = diagnose_documents(read("describe-crashloop-v1.30.txt"), None, NOW)
    full = whole("api-6d8f7b9c5-q8z2m")
    assert (result["namespace"], result["name"]) == ("shop", "api-6d8f7b9c5-q8z2m")
    for column in ("status", "ready", "restarts"):
        assert result[column] == full[column]
    assert (
        findings_key(result)
        == findings_key(full)
        == [
            ("crashloop", "api", "error"),
            ("oom-killed", "api", "error"),
        ]
    )
    loop = evidence(result["findings"][0])
    assert loop["next restart"] == "2025-03-04T12:04:30Z (in 4m30s)"
    # describe prints no waiting message: the step comes from the restart count.
    assert loop["back-off step"].startswith("5m0s (computed from 6 restarts")
    assert loop["BackOff (x22, 29s ago)"].startswith("Back-off restarting failed container api")
    assert evidence(result["findings"][1])["memory limit"] == "128Mi"
    read_as = result["input"]
    assert read_as["shape"] == "describe"
    assert read_as["recognised"] == "kubectl describe pod text (one pod, current layout)"
    assert result["partial"] is True
    assert read_as["partial"] is True
    assert "metadata.uid" in read_as["missing"]
    assert "spec.restartPolicy" in read_as["missing"]
    assert any("ReplicaSet accepts no other" in note for note in read_as["inferred"])


def test_describe_of_init_containers_matches_the_whole_object() -> None:
    result = diagnose_documents(read("describe-init-waiting-v1.28.txt"), None, NOW)
    full = diagnose_documents((DIAG / "myapp-pod-init.json").read_text(), None, NOW)
    assert (result["status"], result["ready"], result["restarts"]) == ("Init:0/2", "0/1", "0")
    assert result["findings"][0]["summary"] == full["findings"][0]["summary"]
    assert rules_of(result) == rules_of(full) == ["init-waiting"]
    assert "name myservice.default.svc.cluster.local" in result["findings"][0]["summary"]


def test_describe_v1_14_image_pull_is_classified_from_its_events() -> None:
    result = diagnose_documents(read("describe-imagepull-v1.14.txt"), None, NOW)
    assert (result["status"], rules_of(result)) == ("ImagePullBackOff", ["image-pull"])
    pull = evidence(result["findings"][0])
    assert pull["failure class"] == "not-found"
    # Events printed "(x4 over 8m)" from "kubelet, worker-1" are rebuilt with their counts.
    assert "Failed (x4, 6m ago)" in pull


def test_describe_v1_7_with_first_seen_last_seen_count_events() -> None:
    result = diagnose_documents(read("describe-crashloop-v1.7.txt"), None, NOW)
    assert result["input"]["recognised"] == "kubectl describe pod text (one pod, older layout)"
    assert (result["namespace"], result["status"], result["restarts"]) == (
        "batch",
        "CrashLoopBackOff",
        "24 (78s ago)",
    )
    (loop,) = result["findings"]
    assert loop["rule"] == "crashloop"
    # SubObjectPath names the container; FirstSeen "1h" dates the loop.
    assert evidence(loop)["BackOff (x540, 10s ago)"] == "Back-off restarting failed container"
    assert loop["since"] == "2025-03-04T11:00:00Z"


def test_describe_of_many_pods() -> None:
    result = diagnose_documents(read("describe-many-v1.31.txt"), None, NOW)
    assert result["input"]["recognised"] == "kubectl describe pod text (4 pods, current layout)"
    pods = {p["name"]: p for p in result["pods"]}
    assert list(pods) == [
        "big-batch-0",
        "cache-7b9d5c6f8-k2m4p",
        "report-28475520-x7q2z",
        "shop-7c9d8b6f4d-x2lqp",
    ]

    pending = pods["big-batch-0"]
    assert (pending["status"], rules_of(pending)) == ("Pending", ["unschedulable"])
    unsched = pending["findings"][0]
    assert "3 Insufficient cpu" in unsched["summary"]
    # The condition's reason is not printed; the FailedScheduling events stand in.
    assert evidence(unsched)["PodScheduled"] == "False (no reason given)"
    assert unsched["since"] == "2025-03-04T11:43:00Z"

    evicted = pods["cache-7b9d5c6f8-k2m4p"]
    assert "evicted" in rules_of(evicted)
    assert "container-status-unknown" in rules_of(evicted)
    ev = next(f for f in evicted["findings"] if f["rule"] == "evicted")
    assert "its ReplicaSet cache-7b9d5c6f8 creates a replacement" in ev["summary"]
    # Go's zero time (year 1) is an unset time, not a date 2025 years ago.
    unknown = next(f for f in evicted["findings"] if f["rule"] == "container-status-unknown")
    assert unknown["since"] is None

    stuck = pods["report-28475520-x7q2z"]
    assert (stuck["status"], rules_of(stuck)) == ("Terminating", ["terminating-stuck"])
    assert evidence(stuck["findings"][0])["deletionTimestamp"] == "2025-03-04T11:48:00Z (12m ago)"

    sidecar = pods["shop-7c9d8b6f4d-x2lqp"]
    assert (sidecar["status"], sidecar["ready"]) == ("CreateContainerConfigError", "1/2")
    assert any("log-shipper taken as sidecar" in n for n in sidecar["input"]["inferred"])
    config = sidecar["findings"][0]
    assert config["rule"] == "config-error"
    assert evidence(config)["missing"] == "ConfigMap shop-config"
    assert evidence(config)["referenced by"] == "envFrom configMap:shop-config"


def test_describe_of_another_kind_is_refused_by_name() -> None:
    text = (
        "Name:                   web\nNamespace:              shop\n"
        "Replicas:               3 desired | 3 updated\nPod Template:\n"
        "  Containers:\n   web:\n    Image:  nginx\n"
    )
    with pytest.raises(InvalidInput, match="describe text, but not of a Pod"):
        diagnose_documents(text, None, NOW)


def test_describe_text_given_as_events_lends_its_events_table() -> None:
    result = diagnose_documents(
        read("status-web-imagepull.yaml"), read("describe-imagepull-v1.14.txt"), NOW
    )
    assert result["name"] == "web"
    assert evidence(result["findings"][0])["failure class"] == "not-found"
    assert result["input"]["events"].startswith("the Events tables of kubectl describe text")


# --------------------------------------------------------------------------
# Fragments of a pod
# --------------------------------------------------------------------------

CRASH_STATUS: dict[str, Any] = yaml.safe_load(read("pod-without-spec-crashloop.yaml"))["status"]


def test_a_pod_without_spec_gets_its_findings() -> None:
    # The issue's case: a name, no spec, a container in CrashLoopBackOff for hundreds of restarts.
    result = diagnose_documents(read("pod-without-spec-crashloop.yaml"), None, NOW)
    assert (result["status"], result["ready"], result["restarts"]) == (
        "CrashLoopBackOff",
        "0/1",
        "347 (2m2s ago)",
    )
    assert findings_key(result) == [("crashloop", "ingest", "error")]
    assert evidence(result["findings"][0])["last termination message"].startswith("panic: dial")
    assert result["input"]["shape"] == "pod-without-spec"
    assert result["input"]["missing"] == ["spec"]


@pytest.mark.parametrize(
    ("doc", "shape"),
    [
        ({"status": CRASH_STATUS}, "status"),
        (CRASH_STATUS, "status-body"),
        ({"apiVersion": "v1", "kind": "Pod", "status": CRASH_STATUS}, "status"),
        (CRASH_STATUS["containerStatuses"], "container-statuses"),
        ({"containerStatuses": CRASH_STATUS["containerStatuses"]}, "status-body"),
        (CRASH_STATUS["containerStatuses"][0], "container-status"),
    ],
)
def test_every_status_shape_gets_the_crashloop(doc: Any, shape: str) -> None:
    for text in (json.dumps(doc), yaml.safe_dump(doc)):
        result = diagnose_documents(text, None, NOW)
        assert result["input"]["shape"] == shape
        assert result["partial"] is True
        assert result["status"] == "CrashLoopBackOff"
        assert findings_key(result) == [("crashloop", "ingest", "error")]
        assert result["name"] == "<pod>"
        assert (
            "kubectl -n <namespace> logs <pod> -c ingest --previous"
            in (result["findings"][0]["next_steps"])
        )


def test_a_container_status_without_a_name_is_read() -> None:
    status = {k: v for k, v in CRASH_STATUS["containerStatuses"][0].items() if k != "name"}
    result = diagnose_documents(yaml.safe_dump(status), None, NOW)
    assert findings_key(result) == [("crashloop", "<container>", "error")]
    assert "status.containerStatuses[].name" in result["input"]["missing"]


def test_the_pod_name_comes_from_events_about_its_image() -> None:
    result = diagnose_documents(
        read("status-web-imagepull.yaml"), read("events-table-v1.30.txt"), NOW
    )
    assert result["name"] == "web"
    assert evidence(result["findings"][0])["failure class"] == "not-found"
    assert any("name its containers or their images" in n for n in result["input"]["inferred"])


def test_a_pod_with_managed_fields_reads_like_any_pod() -> None:
    result = diagnose_documents(read("pod-o-yaml-managed-fields.yaml"), None, NOW)
    assert "input" not in result  # a whole object, answered as before
    assert (result["status"], result["ready"]) == ("Running", "0/1")
    assert findings_key(result) == [("not-ready", "web", "warning")]
    assert "/ready" in evidence(result["findings"][0])["readiness probe"]


def test_a_list_mixing_whole_pods_and_fragments() -> None:
    full = yaml.safe_load((DIAG / "pods-list.yaml").read_text())
    fragment = {"metadata": {"name": "ingest", "namespace": "data"}, "status": CRASH_STATUS}
    text = yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": [*full["items"], fragment]})
    result = diagnose_documents(text, None, NOW)
    assert result["input"]["shape"] == "mixed"
    by_name = {p["name"]: p for p in result["pods"]}
    assert "input" not in by_name["web"]
    assert by_name["ingest"]["input"]["where"] == "items[3]"
    assert rules_of(by_name["ingest"]) == ["crashloop"]


def test_a_native_sidecar_is_inferred_from_the_statuses() -> None:
    status = {
        "phase": "Running",
        "conditions": [{"type": "Initialized", "status": "True"}],
        "initContainerStatuses": [
            {
                "name": "proxy",
                "ready": True,
                "started": True,
                "restartCount": 0,
                "state": {"running": {"startedAt": "2025-03-04T10:00:00Z"}},
            }
        ],
        "containerStatuses": [
            {
                "name": "app",
                "ready": False,
                "restartCount": 4,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2025-03-04T11:59:00Z"}},
            }
        ],
    }
    result = diagnose_documents(json.dumps({"status": status}), None, NOW)
    assert (result["status"], result["ready"]) == ("CrashLoopBackOff", "1/2")
    assert rules_of(result) == ["crashloop"]


@pytest.mark.parametrize(
    ("status", "policy"),
    [
        ({"phase": "Failed"}, "Never"),
        ({"phase": "Running"}, "Always"),
    ],
)
def test_restart_policy_is_inferred_and_said(status: dict[str, Any], policy: str) -> None:
    doc = {
        "status": {
            **status,
            "containerStatuses": [
                {
                    "name": "job",
                    "restartCount": 0,
                    "ready": False,
                    "state": {"terminated": {"exitCode": 3, "reason": "Error"}},
                }
            ],
        }
    }
    result = diagnose_documents(json.dumps(doc), None, NOW)
    assert any(f"taken as {policy}" in n for n in result["input"]["inferred"])
    expected = "container-failed" if policy == "Never" else "crashloop"
    assert rules_of(result) == [expected]


# --------------------------------------------------------------------------
# kubectl get events
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("events", "layout", "failure"),
    [
        ("events-table-v1.30.txt", "current layout", "not-found"),
        ("events-table-v1.11.txt", "older layout, one row per event with KIND and NAME", "network"),
    ],
)
def test_event_tables_are_matched_to_the_pod(events: str, layout: str, failure: str) -> None:
    pod = yaml.safe_load((DIAG / "pods-list.yaml").read_text())["items"][1]
    result = diagnose_documents(yaml.safe_dump(pod), read(events), NOW)
    assert result["name"] == "web"
    assert layout in result["input"]["events"]
    assert evidence(result["findings"][0])["failure class"] == failure


def test_wide_all_namespace_table_keeps_subobject_and_namespace() -> None:
    pods = (DIAG / "pods-list.yaml").read_text()
    result = diagnose_documents(pods, read("events-table-wide-all-namespaces.txt"), NOW)
    assert "all namespaces" in result["input"]["events"]
    api = next(p for p in result["pods"] if p["name"] == "api-6d8f7b9c5-q8z2m")
    loop = evidence(api["findings"][0])
    assert loop["BackOff (x22, 30s ago)"].startswith("Back-off restarting failed container api")


def test_events_of_another_namespace_are_not_matched() -> None:
    table = read("events-table-v1.30.txt").replace("pod/web ", "pod/web ")
    table = "NAMESPACE   " + table.replace("\n", "\nother       ", table.count("\n") - 1)
    pod = yaml.safe_load((DIAG / "pods-list.yaml").read_text())["items"][1]
    result = diagnose_documents(yaml.safe_dump(pod), table, NOW)
    assert evidence(result["findings"][0])["failure class"] == "unknown"


def test_events_tables_given_with_f_are_refused() -> None:
    with pytest.raises(InvalidInput, match="kubectl get events table, not a pod; give it with"):
        diagnose_documents(read("events-table-v1.30.txt"), None, NOW)


# --------------------------------------------------------------------------
# What is not a pod, and odd YAML
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "NAME   READY   STATUS    RESTARTS   AGE\nweb    0/1     Error     3          5m\n",
            "pod input: recognised a kubectl get pods table",
        ),
        ("phase: Running\nfoo: bar\n", "pod input: it is not a pod in any shape read here"),
        ("name: web\nready: true\n", "recognised: a mapping with keys name, ready"),
        (json.dumps({"kind": "EventList", "items": []}), "pod input: the List holds no Pod"),
        (json.dumps({"kind": "Event", "metadata": {"name": "x"}}), "give events with --events"),
        (json.dumps({"metadata": {"name": "x"}}), "recognised a Pod named x with neither spec"),
        ("just some words\n", "got text that is no shape read here"),
        ("[" * 5000 + "]" * 5000, "nested too deeply"),
    ],
)
def test_what_is_not_a_pod_gets_one_clear_error(text: str, message: str) -> None:
    with pytest.raises(InvalidInput) as err:
        diagnose_documents(text, None, NOW)
    assert message in err.value.message
    assert "\n" not in err.value.message


def test_odd_yaml_is_read() -> None:
    result = diagnose_documents(read("odd.yaml"), None, NOW)
    names = [f["container"] for f in result["findings"]]
    assert names == ["café-api", "café-api"]
    assert rules_of(result) == ["crashloop", "oom-killed"]
    oom = evidence(result["findings"][1])
    # A folded string, an unquoted timestamp without zone, and a date-only one.
    assert oom["last termination message"] == "the kernel killed it"
    assert oom["last finished at"].endswith("(60s ago, after running 60s)")
    assert result["ready"] == "1/2"


def test_tabs_in_the_indentation_are_read_and_said() -> None:
    text = yaml.safe_dump({"status": CRASH_STATUS}, indent=2).replace("  ", "\t")
    result = diagnose_documents(text, None, NOW)
    assert rules_of(result) == ["crashloop"]
    assert "tabs in the indentation were read as 2 spaces each" in result["input"]["notes"]


def test_bom_and_crlf_are_read() -> None:
    text = "\ufeff" + read("describe-crashloop-v1.30.txt").replace("\n", "\r\n")
    assert rules_of(diagnose_documents(text, None, NOW)) == ["crashloop", "oom-killed"]
    text = "\ufeff" + yaml.safe_dump({"status": CRASH_STATUS}).replace("\n", "\r\n")
    assert rules_of(diagnose_documents(text, None, NOW)) == ["crashloop"]


def test_read_pods_names_every_shape() -> None:
    got = read_pods(read("describe-many-v1.31.txt"), NOW)
    assert (got.shape, len(got.pods), got.single) == ("describe", 4, False)
    got = read_pods(json.dumps({"status": CRASH_STATUS}), NOW)
    assert (got.shape, got.pods[0].missing[:3]) == (
        "status",
        ["metadata.name", "metadata.namespace", "spec"],
    )


# --------------------------------------------------------------------------
# Text helpers
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("10s", 10), ("2m30s", 150), ("5h3m", 18180), ("3d4h", 273600), ("2y10d", 63936000)],
)
def test_ages_read_back(text: str, seconds: int) -> None:
    age = parse_age(text)
    assert age is not None
    assert age.total_seconds() == seconds


def test_age_cells() -> None:
    cell = parse_age_cell("29s (x22 over 28m)")
    assert cell is not None
    assert (cell.count, cell.first) == (22, parse_age("28m"))
    assert parse_age_cell("<unknown>") is not None
    assert parse_age_cell("Normal") is None


def test_go_times() -> None:
    assert parse_go_time("Tue, 04 Mar 2025 11:50:04 +0100")[0] == datetime(
        2025, 3, 4, 10, 50, 4, tzinfo=UTC
    )
    assert parse_go_time("Tue, 04 Mar 2025 11:50:04 UTC") == (
        datetime(2025, 3, 4, 11, 50, 4, tzinfo=UTC),
        None,
    )
    parsed, note = parse_go_time("Tue, 04 Mar 2025 11:50:04 CET")
    assert parsed is not None
    assert note is not None
    assert "CET" in note
    assert parse_go_time("Mon, 01 Jan 0001 00:00:00 +0000") == (None, None)


def test_rows_that_lost_their_alignment_are_split_on_wide_gaps() -> None:
    columns = columns_of("LAST SEEN   TYPE      REASON   OBJECT    MESSAGE")
    assert split_row("2m   Warning   Failed   pod/web   Error: x  y", columns) == [
        "2m",
        "Warning",
        "Failed",
        "pod/web",
        "Error: x  y",
    ]


# --------------------------------------------------------------------------
# cluster-info dumps
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "recognised"),
    [
        ("dump-json", "a kubectl cluster-info dump directory (-o json), 2 namespaces"),
        ("dump-yaml", "a kubectl cluster-info dump directory (-o yaml), 2 namespaces"),
        ("dump-stdout.json", "a kubectl cluster-info dump written to standard output (JSON)"),
    ],
)
def test_every_pod_of_a_dump_most_severe_first(path: str, recognised: str) -> None:
    result = diagnose_dump(PASTE / path, NOW)
    assert result["input"]["recognised"].startswith(recognised)
    assert result["summary"] == {
        "pods": 4,
        "with_findings": 2,
        "by_worst_severity": {"critical": 0, "error": 2, "warning": 0, "info": 0},
    }
    names = [p["name"] for p in result["pods"]]
    assert names == ["api-6d8f7b9c5-q8z2m", "web", "coredns-5d78c9869d-7xq2z", "cache-0"]
    api = result["pods"][0]
    assert findings_key(api) == findings_key(whole("api-6d8f7b9c5-q8z2m"))
    logs = [e for e in api["findings"][0]["evidence"] if e["kind"] == "log"]
    # kubectl logs of a container backing off shows its last attempt.
    assert logs
    assert logs[0]["label"].startswith("last 3 log lines of api (previous attempt)")
    assert logs[0]["value"].endswith("cache warm-up 97%")
    web = evidence(result["pods"][1]["findings"][0])
    assert web["failure class"] == "not-found"


def test_dump_pods_are_streamed_one_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    # A tiny read size makes every item span many reads of the file.
    monkeypatch.setattr(_stream, "_CHUNK", 64)
    layout = find_dump(PASTE / "dump-json")
    shop = next(ns for ns in layout.namespaces if ns.name == "shop")
    pods = namespace_pods(shop)
    assert isinstance(pods, Iterator)
    assert [p["metadata"]["name"] for p in pods] == ["api-6d8f7b9c5-q8z2m", "web", "cache-0"]
    result = diagnose_dump(PASTE / "dump-stdout.json", NOW)
    assert result["summary"]["with_findings"] == 2


def test_yaml_items_are_read_without_their_managed_fields() -> None:
    pod = yaml.safe_load(read("pod-o-yaml-managed-fields.yaml"))
    items = [json.loads(json.dumps(pod)) for _ in range(2)]
    text = yaml.safe_dump({"apiVersion": "v1", "items": items, "kind": "PodList"})
    # kubectl's layout: items at the margin, a pod's keys two spaces in.
    assert "\n    managedFields:\n    - apiVersion" in text
    read_back = [v for _, v in _stream.yaml_list_items(io.StringIO(text), "pods.yaml")]
    assert read_back[-1] == "PodList"
    for item in read_back[:-1]:
        assert "managedFields" not in item["metadata"]
        assert {k: v for k, v in item.items() if k != "metadata"} == {
            k: v for k, v in pod.items() if k != "metadata"
        }
        assert item["metadata"]["name"] == "probe-demo"
        assert item["metadata"]["uid"] == pod["metadata"]["uid"]


def test_a_bad_pod_in_a_dump_is_listed_not_fatal(tmp_path: Path) -> None:
    ns = tmp_path / "shop"
    ns.mkdir()
    good = yaml.safe_load((DIAG / "pods-list.yaml").read_text())["items"][0]
    bad = {"metadata": {"name": "bad"}, "status": {"startTime": "yesterday"}}
    (ns / "pods.json").write_text(json.dumps({"kind": "PodList", "items": [bad, good]}))
    result = diagnose_dump(tmp_path, NOW)
    assert [p["name"] for p in result["pods"]] == ["api-6d8f7b9c5-q8z2m"]
    assert result["unreadable"][0]["where"].endswith("pods.json: item 0")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p, "not a kubectl cluster-info dump directory"),
        (lambda p: p / "missing", "no such file or directory"),
        (lambda p: (p / "x.txt").write_text("hello") and p / "x.txt", "a file, but not"),
    ],
)
def test_what_is_not_a_dump(tmp_path: Path, make: Any, message: str) -> None:
    (tmp_path / "README").write_text("notes")
    with pytest.raises(InvalidInput, match=message):
        diagnose_dump(make(tmp_path), NOW)


# --------------------------------------------------------------------------
# The command line
# --------------------------------------------------------------------------


def test_main_dump(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--dump", str(PASTE / "dump-yaml"), *NOW_FLAG]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["pods"][0]["name"] == "api-6d8f7b9c5-q8z2m"


def test_main_describe_from_stdin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(read("describe-many-v1.31.txt")))
    assert main(["-f", "-", *NOW_FLAG]) == 0
    assert len(json.loads(capsys.readouterr().out)["pods"]) == 4


@pytest.mark.parametrize(
    ("argv", "stderr"),
    [
        (
            ["--dump", "x", "-f", "y"],
            "podlens diagnose: --dump reads pods and events from the dump: no -f or --events "
            "with it (see --help)\n",
        ),
        (
            ["-f", str(PASTE)],
            f"podlens diagnose: cannot read {PASTE}: a directory (a cluster-info dump is read "
            "with --dump)\n",
        ),
    ],
)
def test_main_dump_usage_errors(
    argv: list[str], stderr: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert capsys.readouterr().err == stderr
