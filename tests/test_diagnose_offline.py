"""``podlens diagnose -f``: findings from saved kubectl output, without a node."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.cli.diagnose import diagnose_documents, main
from agent.errors import InvalidInput

NOW = datetime(2025, 3, 4, 12, 0, 0, tzinfo=UTC)
FIX = Path(__file__).parent / "fixtures" / "diagnose"
INIT_JSON = FIX / "myapp-pod-init.json"
LIST_YAML = FIX / "pods-list.yaml"
EVENTS_YAML = FIX / "events.yaml"
NOW_FLAG = ["--now", "2025-03-04T12:00:00Z"]


def rules_of(report: dict[str, Any]) -> list[str]:
    return [f["rule"] for f in report["findings"]]


def by_name(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in result["pods"]}


# --------------------------------------------------------------------------
# diagnose_documents
# --------------------------------------------------------------------------


def test_one_pod_as_json_gives_one_object() -> None:
    result = diagnose_documents(INIT_JSON.read_text(), None, NOW)
    assert set(result) == {"namespace", "name", "status", "ready", "restarts", "findings"}
    assert (result["namespace"], result["name"]) == ("default", "myapp-pod")
    assert (result["status"], result["ready"], result["restarts"]) == ("Init:0/2", "0/1", "0")
    assert rules_of(result) == ["init-waiting"]
    finding = result["findings"][0]
    assert finding["container"] == "init-myservice"
    assert finding["since"] == "2025-03-04T11:50:04Z"
    assert "name myservice.default.svc.cluster.local" in finding["summary"]
    # offline: no URLs of a running agent
    assert not any(step.startswith("/v1/") for step in finding["next_steps"])


def test_the_same_pod_as_yaml_gives_the_same_answer() -> None:
    as_yaml = yaml.safe_dump(json.loads(INIT_JSON.read_text()))
    assert diagnose_documents(as_yaml, None, NOW) == diagnose_documents(
        INIT_JSON.read_text(), None, NOW
    )


def test_a_list_of_pods_with_events() -> None:
    result = diagnose_documents(LIST_YAML.read_text(), EVENTS_YAML.read_text(), NOW)
    assert set(result) == {"pods"}
    pods = by_name(result)
    assert list(pods) == ["api-6d8f7b9c5-q8z2m", "web", "cache-0"]

    api = pods["api-6d8f7b9c5-q8z2m"]
    assert (api["status"], api["ready"], api["restarts"]) == (
        "CrashLoopBackOff",
        "0/1",
        "6 (30s ago)",
    )
    assert rules_of(api) == ["crashloop", "oom-killed"]
    loop = api["findings"][0]
    evidence = {e["label"]: e["value"] for e in loop["evidence"]}
    assert evidence["next restart"] == "2025-03-04T12:04:30Z (in 4m30s)"
    assert evidence["BackOff (x22, 29s ago)"].startswith("Back-off restarting failed container api")
    assert loop["since"] == "2025-03-04T11:31:40Z"

    web = pods["web"]
    assert rules_of(web) == ["image-pull"]
    classes = [e["value"] for e in web["findings"][0]["evidence"] if e["label"] == "failure class"]
    assert classes == ["not-found"]

    assert pods["cache-0"]["findings"] == []
    assert pods["cache-0"]["status"] == "Running"


def test_without_events_the_pull_failure_cannot_be_classified() -> None:
    web = by_name(diagnose_documents(LIST_YAML.read_text(), None, NOW))["web"]
    classes = [e["value"] for e in web["findings"][0]["evidence"] if e["label"] == "failure class"]
    assert classes == ["unknown"]


def test_events_of_another_pod_incarnation_are_ignored() -> None:
    events = yaml.safe_load(EVENTS_YAML.read_text())
    for item in events["items"]:
        item["involvedObject"]["uid"] = "00000000-0000-4000-8000-000000000000"
    web = by_name(diagnose_documents(LIST_YAML.read_text(), yaml.safe_dump(events), NOW))["web"]
    classes = [e["value"] for e in web["findings"][0]["evidence"] if e["label"] == "failure class"]
    assert classes == ["unknown"]


def test_several_yaml_documents_give_a_list() -> None:
    pod = json.loads(INIT_JSON.read_text())
    text = (
        yaml.safe_dump(pod)
        + "---\n"
        + yaml.safe_dump({**pod, "metadata": {**pod["metadata"], "name": "other"}})
    )
    result = diagnose_documents(text, None, NOW)
    assert [p["name"] for p in result["pods"]] == ["myapp-pod", "other"]


def test_events_k8s_io_events_are_understood() -> None:
    new_style = {
        "apiVersion": "events.k8s.io/v1",
        "kind": "EventList",
        "items": [
            {
                "apiVersion": "events.k8s.io/v1",
                "kind": "Event",
                "metadata": {"name": "web.1", "namespace": "shop"},
                "regarding": {
                    "kind": "Pod",
                    "name": "web",
                    "namespace": "shop",
                    "uid": "2b3c4d5e-6f7a-4b8c-9d0e-1f2a3b4c5d6e",
                    "fieldPath": "spec.containers{web}",
                },
                "reason": "Failed",
                "note": (
                    'Failed to pull image "registry.example.com/shop/web:1.9": 401 Unauthorized'
                ),
                "type": "Warning",
                "eventTime": "2025-03-04T11:55:00.000000Z",
                "reportingController": "kubelet",
                "reportingInstance": "worker-1",
                "action": "Pulling",
            }
        ],
    }
    web = by_name(diagnose_documents(LIST_YAML.read_text(), json.dumps(new_style), NOW))["web"]
    classes = [e["value"] for e in web["findings"][0]["evidence"] if e["label"] == "failure class"]
    assert classes == ["unauthorized"]


def test_unquoted_yaml_timestamps_are_read_too() -> None:
    text = INIT_JSON.read_text()
    doc = yaml.safe_load(text)  # JSON is YAML; timestamps stay strings here
    as_yaml = yaml.safe_dump(doc).replace("'2025-03-04T11:50:04Z'", "2025-03-04T11:50:04Z")
    assert "startedAt: 2025-03-04T11:50:04Z" in as_yaml
    assert rules_of(diagnose_documents(as_yaml, None, NOW)) == ["init-waiting"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "pod input: the input is empty"),
        ("   \n", "pod input: the input is empty"),
        ("{not: [valid", "pod input: neither JSON nor YAML (line"),
        ("42", "pod input: expected a Pod or a List, got int"),
        (
            json.dumps(
                {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}}
            ),
            "pod input: it is a Deployment, not a Pod",
        ),
        (
            json.dumps(
                {"kind": "List", "items": [{"kind": "Service", "metadata": {"name": "db"}}]}
            ),
            "pod input: items[0] is a Service, not a Pod",
        ),
        (json.dumps({"kind": "List", "items": []}), "pod input: the List holds no Pod"),
        (
            json.dumps({"kind": "Pod", "metadata": {}}),
            "pod input: not a Pod: metadata.name is missing",
        ),
        (
            json.dumps(
                {"kind": "Pod", "metadata": {"name": "x"}, "status": {"startTime": "yesterday"}}
            ),
            "pod input: status.startTime: 'yesterday' is not an RFC 3339 timestamp",
        ),
    ],
)
def test_unreadable_pod_input(text: str, message: str) -> None:
    with pytest.raises(InvalidInput) as err:
        diagnose_documents(text, None, NOW)
    assert err.value.message.startswith(message)


def test_unreadable_events_input() -> None:
    with pytest.raises(InvalidInput) as err:
        diagnose_documents(
            INIT_JSON.read_text(), json.dumps({"kind": "List", "items": [{"kind": "Pod"}]}), NOW
        )
    assert err.value.message == "events input: items[0] is a Pod, not an Event"


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------


def test_main_on_a_json_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-f", str(INIT_JSON), *NOW_FLAG]) == 0
    out = capsys.readouterr()
    assert out.err == ""
    assert rules_of(json.loads(out.out)) == ["init-waiting"]


def test_main_on_yaml_with_events_and_a_leading_subcommand(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["diagnose", "-f", str(LIST_YAML), "--events", str(EVENTS_YAML), *NOW_FLAG]
    assert main(argv) == 0
    pods = by_name(json.loads(capsys.readouterr().out))
    assert rules_of(pods["web"]) == ["image-pull"]


def test_main_exits_zero_for_a_healthy_pod(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    healthy = yaml.safe_load(LIST_YAML.read_text())["items"][2]
    path = tmp_path / "cache.yaml"
    path.write_text(yaml.safe_dump(healthy))
    assert main(["-f", str(path), *NOW_FLAG]) == 0
    assert json.loads(capsys.readouterr().out)["findings"] == []


def test_main_reads_stdin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(LIST_YAML.read_text()))
    assert main(["-f", "-", *NOW_FLAG]) == 0
    assert len(json.loads(capsys.readouterr().out)["pods"]) == 3


def test_stdin_through_a_real_pipe() -> None:
    code = "import sys; from agent.cli.diagnose import main; sys.exit(main(sys.argv[1:]))"
    done = subprocess.run(
        [sys.executable, "-c", code, "-f", "-", *NOW_FLAG],
        input=INIT_JSON.read_text(),
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).parent.parent,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "Init:0/2"


@pytest.mark.parametrize(
    ("argv", "stderr"),
    [
        (
            ["-f", "/nonexistent/pod.yaml"],
            "podlens diagnose: cannot read /nonexistent/pod.yaml: no such file\n",
        ),
        (
            ["-f", str(INIT_JSON), "--events", "/nonexistent/ev.yaml"],
            "podlens diagnose: cannot read /nonexistent/ev.yaml: no such file\n",
        ),
        (
            ["-f", str(INIT_JSON), "--now", "noon"],
            "podlens diagnose: --now: 'noon' is not an RFC 3339 timestamp\n",
        ),
        (
            ["-f", "-", "--events", "-"],
            "podlens diagnose: only one of -f and --events can read standard input\n",
        ),
        (
            [],
            "podlens diagnose: the following arguments are required: -f/--filename (see --help)\n",
        ),
        (
            ["-f", str(INIT_JSON), "--bogus"],
            "podlens diagnose: unrecognized arguments: --bogus (see --help)\n",
        ),
    ],
)
def test_main_usage_and_file_errors_exit_2_with_one_line(
    argv: list[str], stderr: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err == stderr


def test_main_bad_content_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "deploy.yaml"
    path.write_text("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n")
    assert main(["-f", str(path)]) == 2
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err.count("\n") == 1
    assert out.err.startswith("podlens diagnose: pod input: it is a Deployment, not a Pod")


def test_main_binary_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "pod.bin"
    path.write_bytes(b"\xff\xfe\x00garbage")
    assert main(["-f", str(path)]) == 2
    assert capsys.readouterr().err == f"podlens diagnose: cannot read {path}: not UTF-8 text\n"


def test_main_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "--events" in capsys.readouterr().out
