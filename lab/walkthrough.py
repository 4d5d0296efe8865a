"""The lab walkthrough: the lab node, the CKAD exercises, and what the agent sees.

It brings the lab node up, applies every exercise through the lab API
server (the lab kubelet runs them over CRI as kubelet does), waits until
each pod shows the STATUS ``kubectl get pods`` would print, and then asks
the agent, printing each ``curl`` and its answer: the node, the pods, the
sandboxes with their pause processes, one pod's containers sharing the
pause process's network namespace, a sidecar reading nginx's access log
through a shared volume, a stuck init container and a crash loop. The lab
is taken down at the end unless ``keep`` is set.

Owns the walkthrough's script and what it prints. Imports ``lab.node``,
``lab.exercises`` and ``lab.errors``; it reads the agent only over HTTP.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.errors import LabError
from lab.exercises import EXERCISES, Exercise
from lab.node import (
    DEFAULT_LAB_DIR,
    LAB_DIR_ENV,
    LabNode,
    PodRow,
)
from lab.node import (
    preflight as node_preflight,
)

BOLD = "\033[1m" if sys.stdout.isatty() else ""
RESET = "\033[0m" if sys.stdout.isatty() else ""

# Run inside the pod's network namespace, as `curl -s localhost` would be.
FETCH = (
    "import urllib.request as u; r = u.urlopen('http://localhost/', timeout=5); "
    "b = r.read().decode(); print(r.status, b[b.find('<title>'):b.find('</title>') + 8])"
)
SETTLE_TIMEOUT = 90.0


def lab_dir() -> Path:
    """The lab directory the walkthrough uses: ``$PODLENS_LAB_DIR`` or the default."""
    return Path(os.environ.get(LAB_DIR_ENV) or DEFAULT_LAB_DIR)


def say(text: str) -> None:
    """Print a step's heading."""
    print(f"\n{BOLD}== {text}{RESET}", flush=True)


def note(text: str) -> None:
    """Print ``text`` indented under the current step."""
    for line in text.strip("\n").splitlines():
        print(f"   {line}", flush=True)


@dataclass(slots=True)
class _Door:
    """How the walkthrough reaches the agent: plain on the stand-in lab; TLS and a token on
    the real node, as through any ``kubectl port-forward``."""

    token_file: str = ""
    context: ssl.SSLContext | None = None

    def headers(self) -> dict[str, str]:
        """The Authorization header, where a token is needed."""
        if not self.token_file:
            return {}
        return {"Authorization": "Bearer " + Path(self.token_file).read_text().strip()}

    def curl(self) -> str:
        """What a person adds to curl for it."""
        if not self.token_file:
            return "curl -s"
        return f'curl -sk -H "Authorization: Bearer $(cat {self.token_file})"'


# The real node's agent serves TLS with a certificate it made at start (its
# fingerprint is in its log); the walkthrough, like `curl -k`, does not pin it.
_DOOR = _Door()


def _open(request: urllib.request.Request, timeout: float) -> Any:
    for name, value in _DOOR.headers().items():
        request.add_header(name, value)
    return urllib.request.urlopen(request, timeout=timeout, context=_DOOR.context)


def _get(url: str, *, text: bool) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Accept": "text/plain" if text else "*/*"})
    try:
        with _open(request, 15) as response:
            return int(response.status), response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")
    except OSError as exc:
        raise LabError(f"the agent did not answer {url}: {exc}") from exc


def show(base: str, path: str) -> str:
    """Print the curl a person would type and the agent's text answer."""
    sep = "&" if "?" in path else "?"
    url = f"{base}{path}{sep}output=text"
    print(f"$ {_DOOR.curl()} '{url}'", flush=True)
    code, body = _get(url, text=True)
    print(body.rstrip(), flush=True)
    if code != 200:
        raise LabError(f"the agent answered {code} to {path}")
    return body


def fetch_json(base: str, path: str) -> Any:
    """GET ``path`` from the agent at ``base``; LabError unless it answers 200."""
    code, body = _get(base + path, text=False)
    if code != 200:
        raise LabError(f"the agent answered {code} to {path}: {body[:300]}")
    return json.loads(body)


def _netns(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return "(gone)"


def _tail(path: str, lines: int) -> list[str]:
    try:
        return Path(path).read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return []


def _table(rows: list[PodRow]) -> str:
    header = ("NAME", "READY", "STATUS", "RESTARTS", "AGE")
    cells = [header, *((r.name, r.ready, r.status, r.restarts, r.age) for r in rows)]
    widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
    return "\n".join(
        "   ".join(c[i].ljust(widths[i]) for i in range(len(header))).rstrip() for c in cells
    )


def wait_settled(lab: LabNode, exercises: tuple[Exercise, ...]) -> dict[str, float]:
    """Wait until every exercise shows its expected STATUS and READY; seconds for each."""
    pending = {e.name: e for e in exercises}
    start = time.monotonic()
    reached: dict[str, float] = {}
    while pending:
        for row in lab.pods():
            e = pending.get(row.name)
            if (
                e is not None
                and row.namespace == "default"
                and (row.status, row.ready)
                == (
                    e.status,
                    e.ready,
                )
            ):
                reached[e.name] = time.monotonic() - start
                del pending[e.name]
        if pending and time.monotonic() - start > SETTLE_TIMEOUT:
            rows = {r.name: r for r in lab.pods()}
            late = ", ".join(
                f"{n} is {rows[n].status} {rows[n].ready} (wanted {e.status} {e.ready})"
                if n in rows
                else f"{n} is missing"
                for n, e in pending.items()
            )
            raise LabError(f"pods did not settle within {SETTLE_TIMEOUT:.0f}s: {late}")
        time.sleep(0.1)
    return reached


def _container(pod: dict[str, Any], name: str) -> dict[str, Any]:
    for c in pod.get("containers") or []:
        if c.get("name") == name:
            return dict(c)
    raise LabError(f"pod {pod.get('name')} has no container {name} in the agent's view")


def runtime_words(runtime: str) -> str:
    """The runtime ``lab up --runtime`` names, as the walkthrough's text calls it."""
    return {"containerd": "containerd 1.6", "containerd2": "containerd 2.x", "crio": "CRI-O"}.get(
        runtime, runtime
    )


def run(port: int = 8470, keep: bool = False, real: bool = False) -> int:
    """Bring the lab up, show each exercise through the agent, then take it down unless ``keep``."""
    directory = lab_dir()
    lab = LabNode(directory, port=port, progress=note, real=real)
    runtime = runtime_words(lab.runtime)
    if real:
        say(
            f"Bringing the real node up: images, {runtime}, etcd, kube-apiserver, "
            "kube-controller-manager, kube-scheduler, kubelet, and the agent's DaemonSet"
        )
    else:
        say(f"Bringing the lab node up: images, {runtime}, an API server, a kubelet, the agent")
    flags = (" --real" if real else "") + (
        f" --runtime {lab.runtime}" if lab.runtime != "containerd" else ""
    )
    print(f"$ python -m lab up --port {port}{flags}", flush=True)
    report = lab.up()
    if real:
        _DOOR.token_file = str(lab.status().get("agent_token_file") or "")
        _DOOR.context = ssl._create_unverified_context()
    parts = ", ".join(f"{k} {v:.1f}s" for k, v in report.timings.items())
    note(f"lab up in {report.total:.1f}s ({parts})")
    state = report.state
    base = state.agent_url
    try:
        _lesson(lab, base)
        if keep:
            say("The lab stays up")
            note(
                f"agent {base}, API server {state.api_server_url}, CRI {state.cri_endpoint}\n"
                "python -m lab status      # endpoints, components, pods\n"
                "python -m lab apply -f FILE\n"
                "python -m lab down        # stops everything and removes the lab"
            )
    finally:
        if not keep:
            say(f"Taking the lab down: agent, kubelet, API server, sandboxes, {runtime}, bridge")
            print("$ python -m lab down", flush=True)
            lab.down()
            note(f"nothing left behind: processes stopped, {directory} removed")
    return 0


def _lesson(lab: LabNode, base: str) -> None:
    say("Applying the exercises (CKAD multi-container pods, plus two failures)")
    for e in EXERCISES:
        rel = f"lab/exercises/{e.path.name}"
        print(f"$ python -m lab apply -f {rel}", flush=True)
        for line in lab.apply(e.text(), source=rel):
            note(line)

    say("Waiting until each pod shows what `kubectl get pods` would print")
    reached = wait_settled(lab, EXERCISES)
    rows = [r for r in lab.pods() if r.namespace == "default"]
    print(_table(rows), flush=True)
    slowest = max(reached, key=lambda n: reached[n])
    note(f"all {len(reached)} settled; the last, {slowest}, after {reached[slowest]:.1f}s")

    say("What node is this? Which runtime, which CRI API, is the API server watched?")
    show(base, "/v1/node")

    say("The pods, joined from the API server and the runtime (kubectl's STATUS/READY/RESTARTS)")
    show(base, "/v1/pods")

    say("Pod sandboxes: one per pod, each held open by a pause process")
    show(base, "/v1/sandboxes")

    _shared_namespace(base)
    _sidecar_reads_access_log(base)
    _stuck_init(base)
    _crash_loop(base)
    _diagnosis(base)
    _self_healing(base)

    say("Where the lab differs from a cluster")
    if lab.real:
        note(
            "- The control plane and the kubelet are upstream's, on one node; there is no\n"
            "  kube-proxy and no cluster DNS: pods reach the API server through the lab's\n"
            "  gateway namespace, and init-demo's `nslookup myservice` never succeeds.\n"
            "- Pulls are answered by the lab's registry on loopback, from images built from\n"
            "  this machine's packages; any other image fails to pull, as it would offline.\n"
            "- The agent's image is built on a local stand-in for its Python base image."
        )
        return
    note(
        "- No cluster DNS and no Services: init-demo's `nslookup myservice` never succeeds,\n"
        "  so it waits at Init:0/2 forever, as it would on a cluster with no such Service.\n"
        "- One node, no scheduler: `lab apply` binds each pod to lab-node itself.\n"
        "- Images are built from this machine's packages (busybox, nginx); nothing is pulled.\n"
        "- The pod network is a bridge with no route from the host: requests to a pod go\n"
        "  through its own network namespace (nsenter), as `kubectl exec ... curl` would."
    )


def _shared_namespace(base: str) -> None:
    name = "nginx-with-sidecar"
    say(f"One pod up close: {name}, two containers in the pause process's namespaces")
    show(base, f"/v1/pods/default/{name}")
    pod = fetch_json(base, f"/v1/pods/default/{name}")
    sandbox = pod["sandboxes"][0]
    pause_pid = sandbox["pause_pid"]
    containers = [_container(pod, cname) for cname in ("nginx", "sidecar")]
    paths = " ".join(f"/proc/{pid}/ns/net" for pid in [pause_pid, *(c["pid"] for c in containers)])
    print(f"\n$ readlink {paths}", flush=True)
    note(f"pause    pid {pause_pid:<7} {_netns(pause_pid)}")
    host_wide = set(pod.get("pause_shares_with_host") or ())
    for c in containers:
        shared = ", ".join(
            k for k, v in (c.get("shares_with_pause") or {}).items() if v and k not in host_wide
        )
        note(f"{c['name']:<8} pid {c['pid']:<7} {_netns(c['pid'])}   shares with pause: {shared}")
    note(
        f"-> both containers answer on the same localhost and the same pod IP ({sandbox.get('ip')})"
    )


def _sidecar_reads_access_log(base: str) -> None:
    name = "nginx-with-sidecar"
    say("The sidecar reads nginx's access log through the shared emptyDir")
    pod = fetch_json(base, f"/v1/pods/default/{name}")
    pause_pid = pod["sandboxes"][0]["pause_pid"]
    command = ["nsenter", f"--net=/proc/{pause_pid}/ns/net", sys.executable, "-c", FETCH]
    print(
        f"$ nsenter --net=/proc/{pause_pid}/ns/net curl -s localhost   # nginx, inside the pod",
        flush=True,
    )
    answer = ""
    deadline = time.monotonic() + 10
    while not answer:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=20, check=False)
        if proc.returncode == 0:
            answer = proc.stdout.strip()
        elif time.monotonic() > deadline:
            raise LabError(f"nginx in {name} did not answer: {proc.stderr.strip()[-300:]}")
        else:
            time.sleep(0.2)
    note(answer)

    sidecar = _container(pod, "sidecar")
    detail = fetch_json(base, f"/v1/containers/{sidecar['id']}")
    log_path = detail["log_path"]
    print(f"$ curl -s {base}/v1/containers/{sidecar['id'][:12]}   # its log_path", flush=True)
    note(f'"log_path": "{log_path}"')
    lines: list[str] = []
    deadline = time.monotonic() + 10
    while not any("GET / " in line for line in lines):
        if time.monotonic() > deadline:
            raise LabError(f"the access line did not reach the sidecar's log {log_path}")
        time.sleep(0.1)
        lines = _tail(log_path, 3)
    print(f"$ tail -n 3 {log_path}", flush=True)
    for line in lines:
        note(line)
    note(
        "-> nginx wrote /var/log/nginx/access.log into the emptyDir; the sidecar's tail -F\n"
        "   printed it on its stdout, which the runtime keeps in the CRI log file above."
    )


def _stuck_init(base: str) -> None:
    name = "init-demo"
    say(f"A stuck init container: {name} waits for a Service name that never resolves")
    show(base, f"/v1/pods/default/{name}")
    pod = fetch_json(base, f"/v1/pods/default/{name}")
    wait = _container(pod, "init-wait")
    if wait.get("id"):
        detail = fetch_json(base, f"/v1/containers/{wait['id']}")
        print(f"$ tail -n 4 {detail['log_path']}", flush=True)
        for line in _tail(detail["log_path"], 4):
            note(line)
    note(
        "-> init-wait still runs (no restarts: it never exits), so init-setup and main\n"
        "   were never created and the pod stays Init:0/2. On a cluster, creating the\n"
        "   Service (kubectl create svc clusterip myservice --tcp=80:80) would unblock it."
    )


def _crash_loop(base: str) -> None:
    for name, cname in (("crashloop-demo", "app"), ("init-fail-demo", "migrate")):
        say(f"A crash loop: {name} ({cname} exits 1, kubelet restarts it after a back-off)")
        show(base, f"/v1/pods/default/{name}")
        attempts = fetch_json(base, f"/v1/containers?pod={name}&name={cname}")["items"]
        exited = [c for c in attempts if c["state"] == "exited"]
        if exited:
            newest = max(exited, key=lambda c: c["attempt"])
            print(
                f"$ cat {newest['log_path']}   # attempt {newest['attempt']}, exit "
                f"{newest['exit_code']} ({newest['reason']})",
                flush=True,
            )
            for line in _tail(newest["log_path"], 3):
                note(line)


def _diagnosis(base: str) -> None:
    say("What is wrong on this node, and why: the agent's diagnosis, with the evidence")
    show(base, "/v1/diagnostics")
    note(
        "-> each finding names the container, since when, the evidence and where it\n"
        "   came from (API, runtime, logs, events), the likely cause and what to run next.\n"
        "   init-demo's wait becomes a finding after a minute (Init:0/2 for a few seconds\n"
        "   is normal); /v1/pods/default/init-demo/diagnosis shows it then."
    )


def _post(url: str, body: dict[str, Any]) -> tuple[int, Any]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with _open(request, 15) as response:
            return int(response.status), json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, json.loads(raw)
        except ValueError:
            return exc.code, raw.decode(errors="replace")
    except OSError as exc:
        raise LabError(f"the agent did not answer {url}: {exc}") from exc


def _follow(base: str, events_url: str) -> None:
    """Print each phase as the agent streams it, as `curl -N` shows them."""
    print(f"$ {_DOOR.curl()} -N {base}{events_url}", flush=True)
    kind = ""
    with _open(urllib.request.Request(base + events_url), 180) as stream:
        for raw in stream:
            line = raw.decode(errors="replace").rstrip("\n")
            if line.startswith("event: "):
                kind = line.removeprefix("event: ")
            elif line.startswith("data: "):
                data = json.loads(line.removeprefix("data: "))
                if kind == "phase":
                    since = data.get("since_signal_seconds") or 0.0
                    note(f"+{since:7.3f}s  {data['name']}")
                elif kind == "verdict":
                    note(f"verdict: {data['verdict']}")
                    return


def _kill_and_watch(base: str, name: str, target: dict[str, Any], what: str) -> None:
    path = f"/v1/pods/default/{name}/kill-and-watch"
    print(f"$ {_DOOR.curl()} -X POST {base}{path} -d '{json.dumps(target)}'", flush=True)
    code, body = _post(base + path, target)
    if code != 202:
        message = body.get("message") if isinstance(body, dict) else body
        raise LabError(f"kill-and-watch of {what} was refused ({code}): {message}")
    plan = body["plan"]
    note(
        f"run {body['id']}: {plan['signal']} to PID {plan['target']['pid']} ({what}); "
        f"kubelet should create attempt {plan['expected_attempt']}"
    )
    _follow(base, body["events_url"])
    show(base, body["run_url"])


def _self_healing(base: str) -> None:
    name = "nginx-with-sidecar"
    say(f"Self-healing, measured: kill {name}'s sidecar and watch kubelet bring it back")
    note(
        "The agent checks the PID is still the sidecar's process (start time, cgroup),\n"
        "signals it through a pidfd, and records each phase from the source that sees it:\n"
        "the pidfd, the runtime (with the runtime's own timestamps), and the API server."
    )
    _kill_and_watch(base, name, {"container": "sidecar"}, "the sidecar's process")
    _wait_ready(base, name)
    say(f"Now kill {name}'s pause process: the whole sandbox goes, kubelet recreates it")
    _kill_and_watch(base, name, {"sandbox": True}, "the pause process")
    show(base, f"/v1/pods/default/{name}")
    note(
        "-> a new sandbox (attempt + 1) with a new pause PID and pod IP; both containers\n"
        "   were created again inside it. A sandbox heals slower than one container:\n"
        "   kubelet first stops the old containers, waiting up to the pod's grace period\n"
        "   (30 s) for one that ignores SIGTERM (tail -F as PID 1 does), and a container\n"
        "   that exited in the last ten minutes waits its backoff. Every kill is in the\n"
        "   lab's audit log."
    )


def _wait_ready(base: str, name: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pod = fetch_json(base, f"/v1/pods/default/{name}")
        if pod["status"] == "Running" and pod["ready"] == "2/2":
            return
        time.sleep(0.2)
    raise LabError(f"{name} did not come back to Running 2/2 in {timeout:.0f}s")


def preflight(port: int) -> None:
    """Say clearly what stops the walkthrough from running, before starting anything."""
    lab = LabNode(lab_dir(), port=port)
    if lab.load_state() is not None:
        raise LabError(
            f"a lab is already up in {lab.lab_dir}; see `python -m lab status`, "
            "or take it down first with `python -m lab down`"
        )
    node_preflight(port)
