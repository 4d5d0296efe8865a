"""``diagnose --dump`` over a large ``kubectl cluster-info dump``: wall time and peak RSS.

Run from the repository root (no root, no services)::

    python -m bench.bench_dump [--pods 5000] [--namespaces 5] [--formats json,yaml] [--dir DIR]

It writes a dump the way ``kubectl cluster-info dump --output-directory``
lays it out (``nodes``, per namespace ``events``, ``pods`` and the other
Lists, ``<pod>/logs.txt`` per pod), ``--pods`` pods spread over
``--namespaces`` namespaces, as JSON and as YAML. Pods carry what a real
dump holds (managedFields, probes, volumes); one in ten is in trouble
(crash loop with an OOM kill, image pull, an init container waiting,
unschedulable, evicted, a missing ConfigMap) with the events that go with it.

Each way runs as its own process: wall time, its CPU time, and peak RSS as
the process itself reports it at exit (``VmHWM``; ``ru_maxrss`` would count
the forked benchmark's own pages too).

* ``--dump`` streamed, JSON and YAML: ``python -m agent diagnose --dump``;
* the same with a fifth of the pods, to see what memory grows with;
* the naive way, for comparison: every ``pods.json`` and ``events.json``
  read whole with ``json.load``, then the same rules over every pod;
* the same command on a one-pod file: the floor (interpreter and imports).

Checks: every pod is in the answer, the pods in trouble are the ones with
findings and come first, and the naive way finds the same. Target: what
the streamed JSON run adds to the one-pod floor's peak RSS is at most a
quarter of what the naive way adds. Exit status 0 when met, 1 when missed,
2 when a check failed.
"""

from __future__ import annotations

import argparse
import calendar
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bench._harness import (
    MIB,
    Outcome,
    format_table,
    log,
    machine,
    ratio,
    run_benchmark,
    section,
)

NOW = "2025-03-04T12:00:00Z"
ROOT = Path(__file__).resolve().parent.parent
TROUBLES = ("crashloop", "imagepull", "initwait", "unschedulable", "evicted", "config")
# What reading the dump adds to the interpreter's own memory, against reading it whole.
TARGET_GROWTH_SHARE = 0.25

# The naive way: every List read whole, then the same rules over every pod.
_NAIVE = """
import json, sys
from datetime import datetime, timezone
from pathlib import Path
from agent.cli._report import pod_report
from agent.diagnose._types import DEFAULT_THRESHOLDS
from agent.kube.convert import event_from_dict, pod_from_dict
now = datetime(2025, 3, 4, 12, tzinfo=timezone.utc)
root = Path(sys.argv[-1])
spaces = sorted(p for p in root.iterdir() if (p / "pods.json").is_file())
pods = {ns.name: json.loads((ns / "pods.json").read_text())["items"] for ns in spaces}
events = {ns.name: json.loads((ns / "events.json").read_text())["items"] for ns in spaces}
found = 0
total = 0
for ns, items in pods.items():
    evs = tuple(event_from_dict(e) for e in events[ns])
    for item in items:
        report = pod_report(pod_from_dict(item), evs, now, DEFAULT_THRESHOLDS)
        total += 1
        found += bool(report["findings"])
print(json.dumps({"pods": total, "with_findings": found}))
"""


def stamp(minutes_ago: float) -> str:
    """A time ``minutes_ago`` before the dump was taken."""
    taken = calendar.timegm(time.strptime(NOW, "%Y-%m-%dT%H:%M:%SZ"))
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(taken - minutes_ago * 60))


# --------------------------------------------------------------------- the dump


def _managed_fields() -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "v1",
            "fieldsType": "FieldsV1",
            "fieldsV1": {
                "f:metadata": {"f:labels": {".": {}, "f:app": {}, "f:pod-template-hash": {}}},
                "f:spec": {
                    "f:containers": {
                        'k:{"name":"app"}': {
                            ".": {},
                            "f:image": {},
                            "f:name": {},
                            "f:ports": {".": {}, 'k:{"containerPort":8080}': {".": {}}},
                            "f:readinessProbe": {".": {}, "f:httpGet": {".": {}}},
                        }
                    }
                },
            },
            "manager": "kube-controller-manager",
            "operation": "Update",
            "time": stamp(600),
        },
        {
            "apiVersion": "v1",
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:status": {"f:conditions": {".": {}}, "f:containerStatuses": {}}},
            "manager": "kubelet",
            "operation": "Update",
            "subresource": "status",
            "time": stamp(590),
        },
    ]


def _container(name: str, image: str) -> dict[str, Any]:
    return {
        "name": name,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"containerPort": 8080, "name": "http", "protocol": "TCP"}],
        "readinessProbe": {
            "httpGet": {"path": "/ready", "port": 8080, "scheme": "HTTP"},
            "periodSeconds": 10,
            "timeoutSeconds": 1,
            "successThreshold": 1,
            "failureThreshold": 3,
        },
        "resources": {"limits": {"memory": "256Mi"}, "requests": {"cpu": "100m"}},
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "volumeMounts": [
            {
                "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
                "name": "kube-api-access",
                "readOnly": True,
            }
        ],
    }


def _running(name: str, image: str) -> dict[str, Any]:
    return {
        "name": name,
        "image": image,
        "imageID": f"{image}@sha256:{'ab' * 32}",
        "containerID": f"containerd://{'cd' * 32}",
        "ready": True,
        "started": True,
        "restartCount": 0,
        "lastState": {},
        "state": {"running": {"startedAt": stamp(590)}},
    }


def _conditions(ready: bool, scheduled: bool = True) -> list[dict[str, Any]]:
    if not scheduled:
        return [
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": "0/40 nodes are available: 40 Insufficient cpu.",
                "lastTransitionTime": stamp(30),
            }
        ]
    flag = "True" if ready else "False"
    return [
        {"type": "PodReadyToStartContainers", "status": "True", "lastTransitionTime": stamp(599)},
        {"type": "Initialized", "status": "True", "lastTransitionTime": stamp(599)},
        {"type": "Ready", "status": flag, "lastTransitionTime": stamp(580)},
        {"type": "ContainersReady", "status": flag, "lastTransitionTime": stamp(580)},
        {"type": "PodScheduled", "status": "True", "lastTransitionTime": stamp(600)},
    ]


def make_pod(ns: str, n: int, trouble: str | None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One pod of the dump, healthy or in ``trouble``, and the events about it."""
    name = f"app-{n:05d}-7c9d8b6f4d-x{n % 97:02d}q"
    image = f"registry.example.com/{ns}/app:{n % 7}.1"
    pod: dict[str, Any] = {
        "metadata": {
            "name": name,
            "namespace": ns,
            "uid": f"{n:08x}-2b7a-4d64-8f0e-1a2b3c4d5e6f",
            "resourceVersion": str(100000 + n),
            "creationTimestamp": stamp(600),
            "generateName": name[:-4],
            "labels": {"app": "app", "pod-template-hash": "7c9d8b6f4d"},
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": "app-7c9d8b6f4d",
                    "uid": "5b0a2f0e-8d7b-4e8a-9f43-0c1d2e3f4a5b",
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
            "managedFields": _managed_fields(),
        },
        "spec": {
            "containers": [_container("app", image)],
            "nodeName": f"worker-{n % 40}",
            "restartPolicy": "Always",
            "schedulerName": "default-scheduler",
            "serviceAccountName": "default",
            "terminationGracePeriodSeconds": 30,
            "tolerations": [
                {
                    "effect": "NoExecute",
                    "key": "node.kubernetes.io/not-ready",
                    "operator": "Exists",
                    "tolerationSeconds": 300,
                }
            ],
            "volumes": [
                {
                    "name": "kube-api-access",
                    "projected": {
                        "sources": [
                            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                            {"configMap": {"name": "kube-root-ca.crt"}},
                        ]
                    },
                }
            ],
        },
        "status": {
            "phase": "Running",
            "conditions": _conditions(True),
            "containerStatuses": [_running("app", image)],
            "hostIP": f"10.0.{n % 40}.1",
            "podIP": f"10.244.{n % 250}.{n % 200 + 2}",
            "qosClass": "Burstable",
            "startTime": stamp(600),
        },
    }
    events: list[dict[str, Any]] = []
    status = pod["status"]
    app = status["containerStatuses"][0]

    def event(reason: str, message: str, kind: str = "Warning", container: bool = True) -> None:
        """An event about this pod, as kubelet or the scheduler records it."""
        involved: dict[str, Any] = {"kind": "Pod", "name": name, "namespace": ns}
        involved["uid"] = pod["metadata"]["uid"]
        if container:
            involved["fieldPath"] = "spec.containers{app}"
        events.append(
            {
                "metadata": {"name": f"{name}.{len(events):016x}", "namespace": ns},
                "involvedObject": involved,
                "reason": reason,
                "message": message,
                "type": kind,
                "count": 12,
                "firstTimestamp": stamp(20),
                "lastTimestamp": stamp(1),
                "source": (
                    {"component": "kubelet", "host": pod["spec"]["nodeName"]}
                    if container
                    else {"component": "default-scheduler"}
                ),
            }
        )

    if trouble == "crashloop":
        app.update(ready=False, started=False, restartCount=9)
        app["state"] = {"waiting": {"reason": "CrashLoopBackOff"}}
        app["lastState"] = {
            "terminated": {
                "exitCode": 137,
                "reason": "OOMKilled",
                "startedAt": stamp(1.5),
                "finishedAt": stamp(1),
            }
        }
        event("BackOff", f"Back-off restarting failed container app in pod {name}_{ns}")
    elif trouble == "imagepull":
        app.update(ready=False, started=False)
        app["state"] = {"waiting": {"reason": "ImagePullBackOff"}}
        event("Failed", f'Failed to pull image "{image}": {image}: not found')
    elif trouble == "initwait":
        pod["spec"]["initContainers"] = [
            {
                **_container("wait-db", "busybox:1.36"),
                "command": ["sh", "-c", "until nslookup db; do sleep 2; done"],
            }
        ]
        status["phase"] = "Pending"
        status["conditions"][1]["status"] = "False"
        status["initContainerStatuses"] = [
            {
                **_running("wait-db", "busybox:1.36"),
                "ready": False,
                "state": {"running": {"startedAt": stamp(30)}},
            }
        ]
        app.update(ready=False, started=False)
        app["state"] = {"waiting": {"reason": "PodInitializing"}}
    elif trouble == "unschedulable":
        del pod["spec"]["nodeName"]
        pod["status"] = {
            "phase": "Pending",
            "conditions": _conditions(False, scheduled=False),
            "qosClass": "Burstable",
        }
        event("FailedScheduling", "0/40 nodes are available: 40 Insufficient cpu.", container=False)
    elif trouble == "evicted":
        status.update(
            phase="Failed", reason="Evicted", message="The node was low on resource: memory. "
        )
        app.update(ready=False)
        app["state"] = {"terminated": {"exitCode": 137, "reason": "ContainerStatusUnknown"}}
    elif trouble == "config":
        pod["spec"]["containers"][0]["envFrom"] = [{"configMapRef": {"name": "app-config"}}]
        app.update(ready=False, started=False)
        app["state"] = {"waiting": {"reason": "CreateContainerConfigError"}}
        event("Failed", 'Error: configmap "app-config" not found')
    return pod, events


def _list(kind: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"kind": kind, "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": items}


def write_dump(root: Path, pods: int, namespaces: int, fmt: str) -> tuple[int, set[str]]:
    """Write a dump under ``root``; its size in bytes and the names of the pods in trouble."""

    def write(path: Path, obj: dict[str, Any]) -> int:
        """One List file in the dump's format; its size."""
        path.parent.mkdir(parents=True, exist_ok=True)
        target = path.with_suffix(f".{fmt}")
        with target.open("w", encoding="utf-8") as f:
            if fmt == "json":
                json.dump(obj, f, indent=4)
            else:
                yaml.dump(obj, f, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper))
        return target.stat().st_size

    size = write(
        root / "nodes",
        _list("NodeList", [{"metadata": {"name": f"worker-{i}"}} for i in range(40)]),
    )
    troubled: set[str] = set()
    for k in range(namespaces):
        ns = f"team-{k}"
        items: list[dict[str, Any]] = []
        events: list[dict[str, Any]] = []
        for n in range(k, pods, namespaces):
            trouble = TROUBLES[(n // 10) % len(TROUBLES)] if n % 10 == 3 else None
            pod, evs = make_pod(ns, n, trouble)
            if trouble is not None:
                troubled.add(pod["metadata"]["name"])
            items.append(pod)
            events.extend(evs)
            logs = root / ns / pod["metadata"]["name"] / "logs.txt"
            logs.parent.mkdir(parents=True, exist_ok=True)
            body = "\n".join(f"2025-03-04T11:5{i}:00Z request {i} served" for i in range(8))
            where = f"container app of pod {ns}/{pod['metadata']['name']}"
            logs.write_text(
                f"==== START logs for {where} ====\n{body}\n==== END logs for {where} ====\n"
            )
        size += write(root / ns / "events", _list("EventList", events))
        for other in (
            "replication-controllers",
            "services",
            "daemonsets",
            "deployments",
            "replicasets",
        ):
            size += write(root / ns / other, _list("List", []))
        size += write(root / ns / "pods", _list("PodList", items))
    return size, troubled


# --------------------------------------------------------------------- measuring


@dataclass
class Run:
    """One measured process: what it was, its wall time, peak RSS and output."""

    label: str
    pods: int
    seconds: float
    peak_rss: int
    output: str
    returncode: int
    cpu_seconds: float = 0.0


# Runs a module or code in this interpreter and reports the process's own peak
# RSS at exit: VmHWM belongs to the memory map made at exec, while ru_maxrss
# (rusage, wait4) also keeps the high-water mark of the forked parent's image.
# Its CPU time too, which a busy machine disturbs less than wall time.
_PEAK = """
import atexit, resource, runpy, sys
def peak():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                sys.stderr.write("PEAK_RSS_KIB " + line.split()[1] + chr(10))
    used = resource.getrusage(resource.RUSAGE_SELF)
    sys.stderr.write("CPU_SECONDS " + str(used.ru_utime + used.ru_stime) + chr(10))
atexit.register(peak)
how, what, *rest = sys.argv[1:]
if how == "-m":
    sys.argv = [what, *rest]
    runpy.run_module(what, run_name="__main__", alter_sys=True)
else:
    sys.argv = ["-c", *rest]
    exec(compile(what, "<bench>", "exec"), {"__name__": "__main__"})
"""


def measure(label: str, pods: int, how: str, what: str, args: list[str]) -> Run:
    """Run ``python -m what`` or ``python -c what`` with ``args``: wall time and peak RSS."""
    argv = [sys.executable, "-c", _PEAK, how, what, *args]
    with tempfile.TemporaryFile("w+") as out:
        t0 = time.monotonic()
        done = subprocess.run(argv, stdout=out, stderr=subprocess.PIPE, cwd=ROOT, check=False)
        seconds = time.monotonic() - t0
        out.seek(0)
        text = out.read()
    err = done.stderr.decode(errors="replace")
    peak = [ln for ln in err.splitlines() if ln.startswith("PEAK_RSS_KIB ")]
    if done.returncode != 0:
        log(f"{label}: exit {done.returncode}: {err.strip()[:300]}")
    kib = int(peak[-1].split()[1]) if peak else 0
    cpu = [float(ln.split()[1]) for ln in err.splitlines() if ln.startswith("CPU_SECONDS ")]
    return Run(label, pods, seconds, kib * 1024, text, done.returncode, cpu[-1] if cpu else 0.0)


def check_answer(run: Run, pods: int, troubled: set[str], outcome: Outcome) -> None:
    """The answer lists every pod, the troubled ones with findings, and them first."""
    if not outcome.check(f"{run.label}: exits 0", run.returncode == 0, f"exit {run.returncode}"):
        return
    answer = json.loads(run.output)
    listed = answer["pods"]
    outcome.check(
        f"{run.label}: every pod answered", len(listed) == pods, f"{len(listed)} of {pods}"
    )
    found = {p["name"] for p in listed if p["findings"]}
    outcome.check(
        f"{run.label}: findings exactly for the pods in trouble",
        found == troubled,
        f"{len(found ^ troubled)} differ",
    )
    head = [p["name"] for p in listed[: len(troubled)]]
    outcome.check(f"{run.label}: pods in trouble first", set(head) == troubled)


def run(args: argparse.Namespace) -> Outcome:
    """Write the dumps, measure every way, print the figures."""
    outcome = Outcome()
    print(f"bench_dump: {args.pods} pods in {args.namespaces} namespaces; {machine()}")
    base = Path(tempfile.mkdtemp(prefix="podlens-dump-", dir=args.dir))
    runs: list[Run] = []
    sizes: dict[str, int] = {}
    try:
        small = max(1, args.pods // 5)
        for fmt in args.formats:
            for count in (args.pods, small):
                root = base / f"{fmt}-{count}"
                log(f"writing a {fmt} dump of {count} pods in {root}")
                size, troubled = write_dump(root, count, args.namespaces, fmt)
                sizes[f"{fmt}-{count}"] = size
                argv = ["diagnose", "--dump", str(root), "--now", NOW]
                log(f"diagnose --dump ({fmt}, {count} pods)")
                measured = measure(f"--dump {fmt}", count, "-m", "agent", argv)
                check_answer(measured, count, troubled, outcome)
                runs.append(measured)
                if fmt == "json" and count == args.pods:
                    log("the naive way: every file read whole")
                    naive = measure("naive json.load", count, "-c", _NAIVE, [str(root)])
                    runs.append(naive)
                    if outcome.check("naive way exits 0", naive.returncode == 0):
                        counted = json.loads(naive.output)
                        outcome.check(
                            "naive way finds the same pods in trouble",
                            counted == {"pods": count, "with_findings": len(troubled)},
                            str(counted),
                        )
        one = base / "one-pod.json"
        one.write_text(json.dumps({"kind": "Pod", **make_pod("team-0", 0, None)[0]}))
        floor_argv = ["diagnose", "-f", str(one), "--now", NOW]
        runs.append(measure("the same command on one pod", 0, "-m", "agent", floor_argv))
    finally:
        if args.keep:
            log(f"dumps kept in {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)

    section("Wall time and peak RSS, each way in its own process")
    rows = []
    for r in runs:
        key = f"{'json' if 'json' in r.label else 'yaml'}-{r.pods}"
        mib = f"{sizes[key] / MIB:.1f}" if key in sizes else "-"
        rate = f"{r.pods / r.seconds:.0f}" if r.pods else "-"
        rows.append(
            [
                r.label,
                r.pods,
                mib,
                f"{r.seconds:.2f}",
                f"{r.cpu_seconds:.2f}",
                rate,
                f"{r.peak_rss / MIB:.1f}",
            ]
        )
    header = ["way", "pods", "files MiB", "wall s", "CPU s", "pods/s (wall)", "peak RSS MiB"]
    print(format_table(header, rows))

    by_label = {(r.label, r.pods): r for r in runs}
    streamed = by_label.get(("--dump json", args.pods))
    read_whole = by_label.get(("naive json.load", args.pods))
    floor = by_label.get(("the same command on one pod", 0))
    for fmt in args.formats:
        whole_run = by_label.get((f"--dump {fmt}", args.pods))
        if whole_run is not None:
            outcome.info(
                f"--dump {fmt}, {args.pods} pods: wall (CPU)",
                f"{whole_run.seconds:.2f} s ({whole_run.cpu_seconds:.2f} s)",
            )
            outcome.info(
                f"--dump {fmt}, {args.pods} pods: peak RSS",
                f"{whole_run.peak_rss / MIB:.1f} MiB",
            )
    if streamed is not None and read_whole is not None and floor is not None:
        grown = streamed.peak_rss - floor.peak_rss
        naive_grown = read_whole.peak_rss - floor.peak_rss
        outcome.info("naive / streamed peak RSS", ratio(read_whole.peak_rss, streamed.peak_rss))
        outcome.info(
            "peak RSS above the one-pod floor",
            f"streamed {grown / MIB:.1f} MiB, naive {naive_grown / MIB:.1f} MiB",
        )
        share = grown / naive_grown if naive_grown > 0 else float("inf")
        outcome.target(
            "streamed growth / naive growth over the floor",
            f"{share:.2f}",
            f"<= {TARGET_GROWTH_SHARE}",
            share <= TARGET_GROWTH_SHARE,
        )
    return outcome


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the options and run the benchmark to its exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.bench_dump", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--pods", type=int, default=5000, help="pods in the dump (default 5000)")
    parser.add_argument("--namespaces", type=int, default=5, help="namespaces (default 5)")
    parser.add_argument(
        "--formats",
        type=lambda s: [f for f in s.split(",") if f],
        default=["json", "yaml"],
        help="dump formats to measure, of json,yaml (default both)",
    )
    parser.add_argument(
        "--dir", default=None, help="where to write the dumps (default: a temp dir)"
    )
    parser.add_argument("--keep", action="store_true", help="leave the dumps behind")
    args = parser.parse_args(argv)
    if args.pods < 1 or args.namespaces < 1 or not set(args.formats) <= {"json", "yaml"}:
        parser.error("--pods and --namespaces at least 1; --formats of json,yaml")
    return run_benchmark("bench_dump", lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
