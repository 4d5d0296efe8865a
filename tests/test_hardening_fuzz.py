"""Fuzzing every endpoint of the agent's OpenAPI document, and hostile requests by hand.

The agent runs as a subprocess against the lab: a real containerd, the lab
kubelet and the fake API server, with a few pods. It runs as on a cluster:
TLS (a certificate the client verifies) and every request's bearer token
checked by the API server (TokenReview, then SubjectAccessReviews), so the
fuzzing goes through the door; the same hostile requests without a token
must all be refused with 401. Kills are enabled but can
never succeed: they are allowed only in a namespace with no pods and in one
whose only pod has ``restartPolicy: Never`` (every container and sandbox
kill there is refused by the guards). The last test checks that nothing was
killed and that the audit file holds refusals only.

Every answer must be below 500, carry no traceback, and every 4xx must be
JSON with ``error`` and ``message``; the agent must stay up, answer
``/healthz`` afterwards, and log no traceback.

Set ``PODLENS_FUZZ_SEED`` to replay a run; ``PODLENS_FUZZ_EXAMPLES`` scales
the number of generated cases per operation.
"""

from __future__ import annotations

import functools
import json
import os
import random
import re
import socket
import ssl
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from hypothesis.errors import HypothesisException
from schemathesis import GenerationMode
from schemathesis.core import NOT_SET
from schemathesis.core.result import Ok

from agent.cli._server import self_signed_certificate
from agent.settings import Settings
from lab.containerd import PrivateContainerd
from tests._lab_stack import BUSYBOX, SLEEP, AgentProcess, LabStack, wait_for

pytestmark = pytest.mark.containerd

NODE = "fuzz-node"
NS = "fuzz"
# Kills are allowed here, but its only pod has restartPolicy Never: always refused.
GUARDED_NS = "fuzz-guarded"
# Kills are allowed here too, and no pod lives in it.
EMPTY_NS = "fuzz-empty"
SYSTEM_NS = "kube-system"
# Minted for the agent's audience; the lab's API server allows its user everything.
TOKEN = "fuzz-token-minted-for-podlens"

SEED = int(os.environ.get("PODLENS_FUZZ_SEED") or random.randrange(2**32))
SCALE = float(os.environ.get("PODLENS_FUZZ_EXAMPLES") or 1.0)
# Generated cases per operation: schema-valid, schema-violating, and valid
# ones aimed at the lab's real objects (per set of path parameters).
POSITIVE = max(1, int(20 * SCALE))
NEGATIVE = max(1, int(20 * SCALE))
AIMED = max(1, int(8 * SCALE))

TRACEBACK = re.compile(r'Traceback \(most recent call last\)|File "[^"]+", line \d+')


@dataclass
class Tally:
    """What the fuzzing sent and what came back."""

    cases: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)

    def record(self, what: str, status: int, problems: list[str]) -> None:
        self.cases += 1
        self.statuses[status] += 1
        self.problems.extend(f"{what}: {p}" for p in problems)


def body_problems(
    status: int, content_type: str, body: bytes, *, app_level: bool = True
) -> list[str]:
    """What is wrong with one answer; ``app_level`` False for the HTTP layer's own 400s."""
    found: list[str] = []
    text = body.decode("utf-8", errors="replace")
    if status >= 500:
        found.append(f"status {status}: {text[:300]}")
    if TRACEBACK.search(text):
        found.append(f"traceback in the body: {text[:300]}")
    if 400 <= status < 500 and app_level:
        if not content_type.startswith("application/json"):
            found.append(f"status {status} with content-type {content_type!r}: {text[:200]}")
        else:
            try:
                parsed = json.loads(text)
            except ValueError:
                found.append(f"status {status}: body is not JSON: {text[:200]}")
            else:
                if not (
                    isinstance(parsed, dict)
                    and isinstance(parsed.get("error"), str)
                    and isinstance(parsed.get("message"), str)
                    and parsed["message"]
                ):
                    found.append(f"status {status}: no error/message: {text[:200]}")
    if status < 300 and content_type.startswith("application/json") and body:
        try:
            json.loads(text)
        except ValueError:
            found.append(f"status {status}: JSON content-type, body not JSON: {text[:200]}")
    return found


# --------------------------------------------------------------------- the lab


@pytest.fixture(scope="module")
def stack(
    containerd: PrivateContainerd, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LabStack]:
    lab = LabStack(containerd.endpoint, tmp_path_factory.mktemp("fuzz-lab"), NODE).start()
    lab.api.set_tokens({TOKEN: {"username": "fuzzer", "audiences": ["podlens"]}})
    try:
        sleeper = {"image": BUSYBOX, "command": SLEEP}
        lab.create_pod(
            NS,
            "web",
            [{"name": "app", **sleeper}, {"name": "sidecar", **sleeper}],
            initContainers=[{"name": "prepare", "image": BUSYBOX, "command": ["true"]}],
        )
        lab.create_pod(
            NS,
            "crashy",
            [
                {
                    "name": "app",
                    "image": BUSYBOX,
                    "command": ["sh", "-c", "echo starting; echo 'boom: bad config' >&2; exit 3"],
                }
            ],
        )
        lab.create_pod(GUARDED_NS, "never", [{"name": "c", **sleeper}], restartPolicy="Never")
        lab.create_pod(SYSTEM_NS, "fuzz-sys", [{"name": "c", **sleeper}])
        yield lab
    finally:
        lab.close()


@pytest.fixture(scope="module")
def audit_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-audit") / "audit.jsonl"


@pytest.fixture(scope="module")
def agent(
    containerd: PrivateContainerd,
    stack: LabStack,
    audit_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[AgentProcess]:
    tls = self_signed_certificate(Settings(node_name=NODE), tmp_path_factory.mktemp("fuzz-tls"))
    proc = AgentProcess(
        cri_endpoint=containerd.endpoint,
        api_server=stack.api_url,
        node_name=NODE,
        log_path=tmp_path_factory.mktemp("fuzz-agent") / "agent.log",
        enable_kill=True,
        kill_namespaces=(GUARDED_NS, EMPTY_NS),
        audit_log=audit_path,
        token=TOKEN,
        tls_files=tls,
        log_roots=(stack.root / "kubelet" / "log" / "pods",),
    )
    try:
        proc.start()
        proc.wait_ready()
        for ns, name in ((NS, "web"), (GUARDED_NS, "never"), (SYSTEM_NS, "fuzz-sys")):
            wait_for(functools.partial(running, proc, ns, name), f"{ns}/{name} running", 40)
        wait_for(
            lambda: proc.get(f"/v1/pods/{NS}/crashy").json().get("restarts", "0") != "0",
            "crashy restarted once",
            40,
        )
        yield proc
    finally:
        proc.stop()


def running(agent: AgentProcess, ns: str, name: str) -> dict[str, Any] | None:
    response = agent.get(f"/v1/pods/{ns}/{name}")
    if response.status_code != 200:
        return None
    body: dict[str, Any] = response.json()
    apps = [c for c in body["containers"] if c["role"] != "init"]
    if body["status"] == "Running" and apps and all(c["pid"] for c in apps):
        return body
    return None


@dataclass(frozen=True)
class Targets:
    """Real objects on the lab for aimed cases, and what must survive the fuzzing."""

    pods: list[tuple[str, str]]
    container_ids: list[str]
    sandbox_ids: list[str]
    pids: list[int]
    before: dict[str, list[str]]  # "ns/name" -> container IDs of the pods that must not change


@pytest.fixture(scope="module")
def targets(agent: AgentProcess) -> Targets:
    pods = [(NS, "web"), (NS, "crashy"), (GUARDED_NS, "never"), (SYSTEM_NS, "fuzz-sys")]
    containers = agent.get("/v1/containers").json()["items"]
    sandboxes = agent.get("/v1/sandboxes").json()["items"]
    mine = [c for c in containers if (c["namespace"], c["pod"]) in pods]
    container_ids = sorted({c["id"] for c in mine})
    sandbox_ids = sorted({s["id"] for s in sandboxes if (s["namespace"], s["pod"]) in pods})
    pids = sorted({c["pid"] for c in mine if c.get("pid")})
    pids += [s["pause_pid"] for s in sandboxes if s.get("pause_pid")][:2]
    # Not in any container: init, a kernel thread, the agent, this test, nothing at all.
    pids += [1, 2, agent.pid, os.getpid(), 4_194_304]
    before = {}
    for ns, name in ((NS, "web"), (GUARDED_NS, "never"), (SYSTEM_NS, "fuzz-sys")):
        body = running(agent, ns, name)
        assert body is not None
        before[f"{ns}/{name}"] = sorted(c["id"] for c in body["containers"] if c["role"] != "init")
    return Targets(
        pods=[*pods, (NS, "nobody"), (EMPTY_NS, "nobody")],
        container_ids=[*container_ids, *(i[:12] for i in container_ids[:2]), "a"],
        sandbox_ids=[*sandbox_ids, *(i[:12] for i in sandbox_ids[:2]), "b"],
        pids=pids,
        before=before,
    )


# --------------------------------------------------------------------- fuzzing


def aimed_parameters(path: str, t: Targets) -> list[dict[str, Any]]:
    """Sets of real path parameters for one operation's path template."""
    if "{namespace}" in path:
        return [{"namespace": ns, "name": name} for ns, name in t.pods]
    if "{container_id}" in path:
        return [{"container_id": i} for i in t.container_ids[:3] + t.container_ids[-3:]]
    if "{sandbox_id}" in path:
        return [{"sandbox_id": i} for i in t.sandbox_ids[:3] + t.sandbox_ids[-3:]]
    if "{pid}" in path:
        return [{"pid": p} for p in t.pids]
    if "{run_id}" in path:
        return [{"run_id": "0123456789ab"}]
    return []


def content_type(response: Any) -> str:
    """The content type of a schemathesis response (its headers map to lists)."""
    for name, values in response.headers.items():
        if name.lower() == "content-type":
            return str(values[0] if isinstance(values, list) else values)
    return ""


def run_cases(
    operation: Any,
    mode: GenerationMode,
    examples: int,
    base_url: str,
    session: requests.Session,
    tally: Tally,
    fixed: dict[str, Any] | None = None,
) -> None:
    strategy = operation.as_strategy(generation_mode=mode, path_parameters=fixed)

    @seed(SEED)
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
    )
    @given(case=strategy)
    def one(case: Any) -> None:
        # Problems are collected, not raised: one finding must not end the run.
        what = f"{mode.value} {case.method} {case.formatted_path} query={case.query!r}"
        if case.body is not NOT_SET:
            what += f" body={str(case.body)[:200]!r}"
        try:
            # Passed again: a case's call would otherwise verify against the system CAs.
            response = case.call(
                base_url=base_url, session=session, timeout=15, verify=session.verify
            )
        except requests.RequestException as exc:
            tally.record(what, 599, [f"no answer: {exc!r}"])
            return
        problems = body_problems(response.status_code, content_type(response), response.content)
        tally.record(what, response.status_code, problems)

    try:
        one()
    except HypothesisException as exc:
        # Nothing to generate (e.g. no schema to violate): not a finding about the agent.
        print(f"  {operation.label} {mode.value}: {type(exc).__name__}")


SIGNALS = st.one_of(
    st.sampled_from(["SIGKILL", "KILL", "kill", "9", "SIGTERM", "TERM", "HUP", "SIGRTMIN", "0"]),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.text(max_size=12),
)


def fuzz_kill_bodies(
    agent: AgentProcess, t: Targets, session: requests.Session, tally: Tally
) -> Counter[int]:
    """Plausible kill-and-watch bodies on the real pods: every one must be refused."""
    names = ["app", "sidecar", "prepare", "c", "nope"]
    bodies = st.fixed_dictionaries(
        {},
        optional={
            "container": st.sampled_from(names),
            "sandbox": st.booleans(),
            "signal": SIGNALS,
            "dry_run": st.booleans(),
            "timeout_seconds": st.one_of(
                st.integers(-5, 4000), st.floats(allow_nan=False, allow_infinity=False)
            ),
        },
    )
    refusals: Counter[int] = Counter()

    @seed(SEED)
    @settings(
        max_examples=max(1, int(80 * SCALE)),
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(target=st.sampled_from(t.pods), body=bodies)
    def one(target: tuple[str, str], body: dict[str, Any]) -> None:
        ns, name = target
        what = f"aimed POST /v1/pods/{ns}/{name}/kill-and-watch body={body!r}"
        response = session.post(
            f"{agent.url}/v1/pods/{ns}/{name}/kill-and-watch", json=body, timeout=15
        )
        refusals[response.status_code] += 1
        problems = body_problems(
            response.status_code, response.headers.get("content-type", ""), response.content
        )
        if response.status_code not in (403, 404, 409, 422):
            problems.append(f"status {response.status_code}: not refused: {response.text[:300]}")
        tally.record(what, response.status_code, problems)

    one()
    return refusals


def test_every_operation_fuzzed(agent: AgentProcess, targets: Targets) -> None:
    assert agent.tls_files is not None
    ca = str(agent.tls_files[0])
    schema = schemathesis.openapi.from_url(
        f"{agent.url}/openapi.json", headers=agent.headers, verify=ca
    )
    loaded = list(schema.get_all_operations())
    operations = [op.ok() for op in loaded if isinstance(op, Ok)]
    assert len(operations) == len(loaded), [op for op in loaded if not isinstance(op, Ok)]
    documented = {(op.method.upper(), op.path) for op in operations}
    # Every route the app mounts is in the document, so every route is fuzzed.
    assert ("POST", "/v1/pods/{namespace}/{name}/kill-and-watch") in documented
    assert len(documented) >= 18, documented
    tally = Tally()
    t0 = time.monotonic()
    with requests.Session() as session:
        session.headers.update(agent.headers)
        session.verify = ca
        # Else REQUESTS_CA_BUNDLE, where set, would replace the agent's certificate.
        session.trust_env = False
        for op in operations:
            for mode, examples in ((GenerationMode.POSITIVE, POSITIVE),
                                   (GenerationMode.NEGATIVE, NEGATIVE)):  # fmt: skip
                run_cases(op, mode, examples, agent.url, session, tally)
            for fixed in aimed_parameters(op.path, targets):
                run_cases(op, GenerationMode.POSITIVE, AIMED, agent.url, session, tally, fixed)
        refusals = fuzz_kill_bodies(agent, targets, session, tally)
    elapsed = time.monotonic() - t0
    print(
        f"\nfuzz cases tried: {tally.cases} over {len(operations)} operations in {elapsed:.1f}s "
        f"(seed {SEED}); statuses {dict(sorted(tally.statuses.items()))}"
    )
    assert agent.alive(), agent.log_tail()
    assert agent.get("/healthz").status_code == 200
    assert not tally.problems, "\n".join(tally.problems[:40])
    # The generated cases reached past validation into the handlers.
    assert tally.statuses[200] > 0, tally.statuses
    assert tally.statuses[404] > 0, tally.statuses
    # Plausible kill requests on the real pods reached the guards, and every one was refused.
    assert refusals[202] == 0, refusals
    assert refusals[200] == 0, refusals
    assert refusals[403] > 0, refusals
    assert refusals[422] > 0, refusals


# --------------------------------------------------------------------- hostile requests


@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes


def raw_request(
    agent: AgentProcess, head: bytes, body: bytes = b"", timeout: float = 15
) -> RawResponse:
    """Send bytes as they are (no client-side normalisation of the target) over the
    agent's TLS; read one answer."""
    context = agent.verify()
    assert isinstance(context, ssl.SSLContext)
    with (
        socket.create_connection(("127.0.0.1", agent.port), timeout=timeout) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as sock,
    ):
        sock.sendall(head + body)
        data = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    header_bytes, _, rest = data.partition(b"\r\n\r\n")
    lines = header_bytes.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding") == "chunked":
        decoded = b""
        while rest:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                break
            decoded, rest = decoded + rest[:size], rest[size + 2 :]
        rest = decoded
    return RawResponse(status, headers, rest)


def request_head(method: str, target: bytes, headers: dict[str, str] | None = None) -> bytes:
    lines = [method.encode() + b" " + target + b" HTTP/1.1", b"Host: 127.0.0.1"]
    lines += [f"{k}: {v}".encode() for k, v in (headers or {}).items()]
    lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n"


def send(
    agent: AgentProcess,
    method: str,
    target: str | bytes,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    *,
    with_token: bool = True,
) -> RawResponse:
    raw_target = target.encode() if isinstance(target, str) else target
    all_headers = {**(agent.headers if with_token else {}), **(headers or {})}
    if body or method in ("POST", "PUT", "PATCH"):
        all_headers.setdefault("Content-Type", "application/json")
        all_headers["Content-Length"] = str(len(body))
    return raw_request(agent, request_head(method, raw_target, all_headers), body)


KILL = f"/v1/pods/{GUARDED_NS}/never/kill-and-watch"
BIG = 10 * 1024
MEGABYTE = 1024 * 1024


def hostile_cases() -> list[tuple[str, str, str | bytes, bytes, dict[str, str], set[int] | None]]:
    """(label, method, target, body, headers, expected statuses or None for any 4xx)."""
    json_ct = {"Content-Type": "application/json"}
    nested = b"[" * 100_000 + b"]" * 100_000
    return [
        # Path traversal, encoded and not
        ("traversal in pod path", "GET", "/v1/pods/..%2F..%2Fetc/passwd/logs", b"", {}, None),
        ("dot segments", "GET", "/v1/pods/%2e%2e/%2e%2e/logs", b"", {}, None),
        ("raw dot segments", "GET", "/v1/pods/../../etc/passwd/logs", b"", {}, None),
        ("traversal in container", "GET", f"/v1/pods/{NS}/web/logs?container=../../etc",
         b"", {}, {422}),
        ("encoded traversal in container", "GET",
         f"/v1/pods/{NS}/web/logs?container=..%2F..%2Fetc%2Fshadow", b"", {}, {422}),
        ("traversal as process", "GET", "/v1/processes/..%2F..%2Fproc%2Fself", b"", {}, None),
        ("traversal as container id", "GET", "/v1/containers/..%2F..%2Fetc", b"", {}, None),
        # NULs and odd encodings
        ("encoded NUL in container", "GET", f"/v1/pods/{NS}/web/logs?container=app%00", b"",
         {}, {422}),
        ("encoded NUL in namespace", "GET", f"/v1/pods/{NS}%00/web", b"", {}, {422}),
        ("encoded NUL as container id", "GET", "/v1/containers/%00", b"", {}, None),
        ("encoded NUL in filter", "GET", "/v1/containers?namespace=a%00b", b"", {}, {422}),
        ("bad percent escape", "GET", "/v1/pods/%zz/web", b"", {}, None),
        ("invalid UTF-8 in path", "GET", "/v1/pods/%ff%fe/web", b"", {}, None),
        ("invalid UTF-8 in query", "GET", "/v1/pods?namespace=%ff%fe", b"", {}, {422}),
        ("unicode name", "GET", "/v1/pods/%E2%82%AC/%F0%9F%92%A5", b"", {}, {422}),
        # Oversized parameters
        ("10 KB container id", "GET", "/v1/containers/" + "a" * BIG, b"", {}, {422}),
        ("10 KB sandbox id", "GET", "/v1/sandboxes/" + "b" * BIG, b"", {}, {422}),
        ("10 KB namespace", "GET", f"/v1/pods/{'n' * BIG}/web", b"", {}, {422}),
        ("10 KB pod name in logs", "GET", f"/v1/pods/{NS}/{'p' * BIG}/logs", b"", {}, {422}),
        ("10 KB pid", "GET", "/v1/processes/" + "9" * BIG, b"", {}, {422}),
        ("10 KB filter", "GET", "/v1/containers?pod=" + "x" * BIG, b"", {}, {422}),
        ("10 KB run id", "GET", "/v1/heal/runs/" + "f" * BIG, b"", {}, {422}),
        ("huge tail", "GET", f"/v1/pods/{NS}/web/logs?container=app&tail=" + "9" * 40, b"",
         {}, {422}),
        ("giant tail digits", "GET", f"/v1/pods/{NS}/web/logs?container=app&tail=" + "9" * 5000,
         b"", {}, {422}),
        ("negative tail", "GET", f"/v1/pods/{NS}/web/logs?container=app&tail=-1", b"", {}, {422}),
        ("float tail", "GET", f"/v1/pods/{NS}/web/logs?container=app&tail=1e3", b"", {}, {422}),
        ("max tail", "GET", f"/v1/pods/{NS}/web/logs?container=app&tail=10000", b"", {}, {200}),
        ("pid zero", "GET", "/v1/processes/0", b"", {}, {422}),
        ("pid past pid_max", "GET", "/v1/processes/4194305", b"", {}, {422}),
        ("negative pid", "GET", "/v1/processes/-1", b"", {}, {422}),
        ("1 MB name in body", "POST", KILL, b'{"container": "' + b"a" * MEGABYTE + b'"}',
         json_ct, {422}),
        ("1 MB extra field", "POST", KILL,
         b'{"container": "c", "pad": "' + b"x" * MEGABYTE + b'"}', json_ct, {422}),
        ("1 MB of garbage", "POST", KILL, os.urandom(MEGABYTE), json_ct, None),
        ("1 MB array", "POST", KILL, b"[" + b"1," * (MEGABYTE // 2) + b"1]", json_ct, {422}),
        ("deep nesting", "POST", KILL, nested, json_ct, None),
        # Malformed JSON and odd values
        ("truncated JSON", "POST", KILL, b'{"container": "c"', json_ct, None),
        ("trailing comma", "POST", KILL, b'{"container": "c",}', json_ct, None),
        ("empty body", "POST", KILL, b"", json_ct, {422}),
        ("null body", "POST", KILL, b"null", json_ct, {422}),
        ("string body", "POST", KILL, b'"container"', json_ct, {422}),
        ("NaN timeout", "POST", KILL, b'{"container": "c", "timeout_seconds": NaN}', json_ct,
         {422}),
        ("Infinity timeout", "POST", KILL, b'{"container": "c", "timeout_seconds": Infinity}',
         json_ct, {422}),
        ("4301-digit number", "POST", KILL, b'{"container": "c", "signal": ' + b"9" * 4301 + b"}",
         json_ct, None),
        ("huge signal number", "POST", KILL, b'{"container": "c", "signal": 99999999999}',
         json_ct, {422}),
        ("boolean signal", "POST", KILL, b'{"sandbox": true, "signal": true}', json_ct, None),
        ("NUL in container name", "POST", KILL, b'{"container": "c\\u0000"}', json_ct, {422}),
        ("invalid UTF-8 body", "POST", KILL, b'{"container": "\xff\xfe"}', json_ct, None),
        ("UTF-16 body", "POST", KILL, '{"container": "c"}'.encode("utf-16"), json_ct, None),
        # Wrong content types
        ("text/plain body", "POST", KILL, b'{"container": "c"}', {"Content-Type": "text/plain"},
         None),
        ("form body", "POST", KILL, b"container=c",
         {"Content-Type": "application/x-www-form-urlencoded"}, None),
        ("multipart body", "POST", KILL,
         b"--x\r\nContent-Disposition: form-data; name=\"container\"\r\n\r\nc\r\n--x--\r\n",
         {"Content-Type": "multipart/form-data; boundary=x"}, None),
        ("bogus content type", "POST", KILL, b'{"container": "c"}', {"Content-Type": ";;;=="},
         None),
        # Wrong methods and paths
        ("DELETE a pod", "DELETE", f"/v1/pods/{NS}/web", b"", {}, {405}),
        ("PUT pods", "PUT", "/v1/pods", b"{}", {}, {405}),
        ("PATCH a container", "PATCH", "/v1/containers/a", b"{}", {}, {405}),
        ("POST node", "POST", "/v1/node", b"{}", {}, {405}),
        ("GET kill-and-watch", "GET", KILL, b"", {}, {405}),
        ("TRACE healthz", "TRACE", "/healthz", b"", {}, {405}),
        ("made-up method", "BREW", "/v1/pods", b"", {}, None),
        ("unknown path", "GET", "/v1/nope", b"", {}, {404}),
        ("too many segments", "GET", f"/v1/pods/{NS}/web/logs/more/segments", b"", {}, {404}),
        ("bad output", "GET", "/v1/pods?output=xml", b"", {}, {422}),
        ("repeated filters", "GET", "/v1/containers?state=running&state=exited", b"", {},
         {200}),
        ("body on GET", "GET", "/v1/pods", b'{"x": 1}', json_ct, {200}),
        # The document and its pages
        ("openapi", "GET", "/openapi.json", b"", {}, {200}),
        ("docs", "GET", "/docs", b"", {}, {200}),
        ("redoc", "GET", "/redoc", b"", {}, {200}),
    ]  # fmt: skip


def test_hostile_requests(agent: AgentProcess) -> None:
    problems: list[str] = []
    tried = 0
    for label, method, target, body, headers, expected in hostile_cases():
        try:
            answer = send(agent, method, target, body, headers)
        except (OSError, ValueError, IndexError) as exc:
            problems.append(f"{label}: no answer ({exc!r})")
            continue
        tried += 1
        found = body_problems(answer.status, answer.headers.get("content-type", ""), answer.body)
        if expected is not None and answer.status not in expected:
            found.append(f"status {answer.status}, expected {sorted(expected)}")
        if expected is None and not 400 <= answer.status < 500:
            found.append(f"status {answer.status}, expected a 4xx")
        problems.extend(f"{label}: {p} [{answer.body[:160]!r}]" for p in found)
        # A big request must not echo itself back.
        if (len(body) >= MEGABYTE or len(target) >= BIG) and len(answer.body) > 4096:
            problems.append(f"{label}: {len(answer.body)}-byte answer echoes the input")
    # HTTP-level garbage: answered (or refused) by the server's protocol layer,
    # whose plain-text 400s are not the app's JSON errors.
    protocol = [
        ("raw NUL in target", request_head("GET", b"/v1/pods/a\x00b/web")),
        ("raw space in target", request_head("GET", b"/v1/pods/a b/web")),
        ("raw UTF-8 in target", request_head("GET", "/v1/pods/\u00e9t\u00e9/web".encode())),
        ("100 KB target", request_head("GET", b"/v1/containers/" + b"a" * 100_000)),
        ("64 KB header", request_head("GET", b"/v1/pods", {"X-Big": "h" * 65_536})),
        ("bad content-length", request_head("POST", KILL.encode(), {"Content-Length": "-5"})),
        ("no version", b"GET /v1/pods\r\n\r\n"),
        ("binary noise", os.urandom(512) + b"\r\n\r\n"),
    ]
    for label, head in protocol:
        tried += 1
        try:
            answer = raw_request(agent, head)
        except (OSError, ValueError, IndexError):
            continue  # the server may close without an answer
        found = body_problems(
            answer.status, answer.headers.get("content-type", ""), answer.body, app_level=False
        )
        problems.extend(f"{label}: {p}" for p in found)
    print(f"\nhostile requests tried: {tried}")
    assert agent.alive(), agent.log_tail()
    assert agent.get("/healthz").status_code == 200
    assert not problems, "\n".join(problems)


def test_hostile_requests_without_a_token_are_all_401(agent: AgentProcess) -> None:
    problems: list[str] = []
    for label, method, target, _, headers, _ in hostile_cases():
        # No body: the door answers before reading one, and closes the
        # connection on a client still sending a megabyte.
        answer = send(agent, method, target, b"", headers, with_token=False)
        if answer.status != 401:
            problems.append(f"{label}: status {answer.status} [{answer.body[:160]!r}]")
        problems.extend(
            f"{label}: {p}"
            for p in body_problems(
                answer.status, answer.headers.get("content-type", ""), answer.body
            )
        )
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    "signal",
    ["\u00b2", "\u2460", "9" * 4301],
    ids=["superscript-two", "circled-one", "4301-digits"],
)
def test_signal_strings_int_cannot_read_are_refused_with_422(
    agent: AgentProcess, signal: str
) -> None:
    answer = agent.http.post(KILL, json={"container": "c", "signal": signal})
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"]["rule"] == "bad-signal"


def test_nothing_was_killed_and_nothing_crashed(
    agent: AgentProcess, targets: Targets, audit_path: Path
) -> None:
    for key, ids in targets.before.items():
        ns, name = key.split("/")
        body = running(agent, ns, name)
        assert body is not None, f"{key} is not running any more"
        assert sorted(c["id"] for c in body["containers"] if c["role"] != "init") == ids, key
    records = [json.loads(line) for line in audit_path.read_text().splitlines() if line]
    events = Counter(r["event"] for r in records)
    assert events["kill"] == 0, [r for r in records if r["event"] == "kill"]
    assert events["refused"] > 0, events
    assert agent.get("/v1/heal/runs").json() == {"items": []}
    ready = agent.get("/readyz")
    assert ready.status_code == 200, ready.text
    log = agent.log_text()
    raised = [
        line for line in log.splitlines() if re.match(r"^[A-Za-z_.]*(Error|Exception)\b", line)
    ]
    assert not raised, "\n".join(raised)
    unhandled = [line for line in log.splitlines() if "unhandled error serving" in line]
    assert not unhandled, unhandled
    assert agent.get("/v1/node").status_code == 200
