"""kubectl podlens over in-process agents: merging, partial answers, limits, reuse, auth choice.

The agents answer with the agent's own wire models over httpx transports
(tests/plugin_fakes.py); faults are injected per node. The real cluster's
tests are in tests/test_real_plugin.py.
"""

from __future__ import annotations

import asyncio
import io
import json
import socket
import time

import httpx
import pytest

from agent.api.schemas import NodeInfo
from kubectl_podlens import cli
from kubectl_podlens.agents import AgentApi
from kubectl_podlens.cli import Options, agent_token, run
from kubectl_podlens.errors import EXIT_ERROR, EXIT_OK, EXIT_PARTIAL, PluginError
from kubectl_podlens.fanout import gather
from kubectl_podlens.model import AgentPod, Reason, Target
from kubectl_podlens.render import human_duration
from kubectl_podlens.tunnel import Tunnel
from tests.plugin_fakes import FakeAgent, Fleet, finding, pod_item


def three_nodes() -> Fleet:
    return Fleet(
        {
            "node-a": FakeAgent("node-a", pods=[pod_item("node-a", "default", "web-1")]),
            "node-b": FakeAgent(
                "node-b",
                pods=[
                    pod_item("node-b", "default", "web-2"),
                    pod_item("node-b", "default", "crash-1", status="CrashLoopBackOff"),
                ],
                findings=[finding("default", "crash-1", "error", "crashloop")],
            ),
            "node-c": FakeAgent(
                "node-c",
                pods=[pod_item("node-c", "other", "db-1")],
                findings=[
                    finding("other", "db-1", "warning", "not-ready"),
                    finding("other", "db-1", "critical", "oom-killed"),
                ],
            ),
        }
    )


async def command(
    fleet: Fleet, argv: list[str], api: AgentApi | None = None
) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = await run(cli.options_from(argv), fleet, api or fleet.api(), out, err)
    return status, out.getvalue(), err.getvalue()


async def test_pods_merges_every_node_and_tags_each_row_with_its_node() -> None:
    fleet = three_nodes()
    status, out, _ = await command(fleet, ["pods", "-A", "-o", "json"])
    assert status == EXIT_OK
    got = {(i["node"], i["namespace"], i["name"]) for i in json.loads(out)["items"]}
    union = {(a.node, p.namespace, p.name) for a in fleet.by_node.values() for p in a.pods}
    assert got == union
    assert json.loads(out)["unreached"] == []


async def test_pods_in_a_namespace_asks_the_agents_for_that_namespace_only() -> None:
    fleet = three_nodes()
    status, out, _ = await command(fleet, ["pods", "-n", "other"])
    assert status == EXIT_OK
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["NAME", "READY", "STATUS"]
    assert [line.split()[0] for line in lines[1:]] == ["db-1"]
    assert "GET /v1/pods" in fleet.by_node["node-a"].requests


async def test_a_slow_node_times_out_and_the_answer_is_partial_naming_it() -> None:
    fleet = three_nodes()
    fleet.by_node["node-b"].delay = 30
    started = time.monotonic()
    status, out, err = await command(fleet, ["pods", "-A", "--node-timeout", "0.5"])
    took = time.monotonic() - started
    assert status == EXIT_PARTIAL
    assert took < 5, took
    assert "web-1" in out
    assert "db-1" in out
    assert "web-2" not in out
    assert "partial answer: 1 of 3 nodes did not answer" in err
    assert "node-b" in err
    assert "timed out" in err


@pytest.mark.parametrize(
    ("fault", "reason"),
    [(401, Reason.UNAUTHORIZED), (403, Reason.FORBIDDEN), (503, Reason.NOT_READY)],
)
async def test_an_agent_refusing_is_listed_with_its_status(fault: int, reason: Reason) -> None:
    fleet = three_nodes()
    fleet.by_node["node-c"].status = fault
    status, out, _ = await command(fleet, ["diagnose", "-A", "-o", "json"])
    assert status == EXIT_PARTIAL
    doc = json.loads(out)
    assert doc["unreached"] == [
        {
            "node": "node-c",
            "reason": str(reason),
            "detail": pytest.approx(doc["unreached"][0]["detail"]),
        }
    ]
    assert f"injected {fault} on node-c" in doc["unreached"][0]["detail"]
    assert {i["node"] for i in doc["items"]} == {"node-b"}


async def test_a_dropped_connection_is_unreachable() -> None:
    fleet = three_nodes()
    fleet.by_node["node-a"].drop = True
    status, out, _ = await command(fleet, ["pods", "-A", "-o", "yaml"])
    assert status == EXIT_PARTIAL
    assert "reason: unreachable" in out


async def test_an_answer_past_the_size_limit_is_not_read_and_the_node_is_listed() -> None:
    fleet = three_nodes()
    big = pod_item("node-a", "default", "x" * 200)
    fleet.by_node["node-a"].pods = [big] * 50
    api = AgentApi(fleet.links(), max_answer_bytes=8 << 10)
    status, out, _ = await command(fleet, ["pods", "-A", "-o", "json"], api)
    assert status == EXIT_PARTIAL
    (unreached,) = json.loads(out)["unreached"]
    assert unreached["node"] == "node-a"
    assert unreached["detail"].startswith("answer larger than")


async def test_agents_lists_every_node_with_its_agent_and_why_not() -> None:
    fleet = three_nodes()
    fleet.without_agent = ["node-d"]
    fleet.by_node["node-b"].status = 401
    status, out, _ = await command(fleet, ["agents", "-o", "json"])
    assert status == EXIT_PARTIAL
    rows = {r["node"]: r for r in json.loads(out)["items"]}
    assert sorted(rows) == ["node-a", "node-b", "node-c", "node-d"]
    assert (rows["node-a"]["reachable"], rows["node-a"]["version"]) == (True, "0.1.0")
    assert (rows["node-b"]["reachable"], rows["node-b"]["reason"]) == (False, "401 unauthorized")
    assert (rows["node-d"]["agent"], rows["node-d"]["reason"]) == (None, "no agent")


async def test_nodes_without_an_agent_or_with_one_not_ready_are_listed_and_not_contacted() -> None:
    fleet = three_nodes()
    fleet.without_agent = ["node-d"]
    fleet.not_ready = ["node-a"]
    status, out, _ = await command(fleet, ["pods", "-A", "-o", "json"])
    assert status == EXIT_PARTIAL
    unreached = {u["node"]: u["reason"] for u in json.loads(out)["unreached"]}
    assert unreached == {"node-a": "agent not ready", "node-d": "no agent"}
    assert fleet.by_node["node-a"].requests == []


async def test_diagnose_merges_findings_most_severe_first_each_with_its_node() -> None:
    fleet = three_nodes()
    status, out, _ = await command(fleet, ["diagnose", "-A"])
    assert status == EXIT_OK
    rows = [[*line.split()[:2], line.split()[5]] for line in out.splitlines()[1:]]
    assert rows == [
        ["critical", "node-c", "oom-killed"],
        ["error", "node-b", "crashloop"],
        ["warning", "node-c", "not-ready"],
    ]


async def test_label_selector_keeps_only_the_pods_the_api_server_picks() -> None:
    fleet = three_nodes()
    status, out, _ = await command(fleet, ["pods", "-A", "-l", "app=web", "-o", "json"])
    assert status == EXIT_OK
    assert sorted(i["name"] for i in json.loads(out)["items"]) == ["web-1", "web-2"]


async def test_at_most_n_agents_are_asked_at_once() -> None:
    fleet = Fleet({f"n{i:02}": FakeAgent(f"n{i:02}", delay=0.05) for i in range(20)})
    status, _, _ = await command(fleet, ["pods", "-A", "--concurrency", "3"])
    assert status == EXIT_OK
    assert fleet.most_in_flight == 3


async def test_total_time_is_bounded_by_deadline_and_concurrency() -> None:
    # 12 nodes that never answer, 4 at a time, 0.3 s each: three rounds of one deadline.
    targets = [
        Target(f"n{i}", AgentPod(f"n{i}", "ns", f"a{i}", True, "", 8470, "img")) for i in range(12)
    ]

    async def never(agent: AgentPod) -> None:
        await asyncio.sleep(60)

    started = time.monotonic()
    fan = await gather(targets, never, concurrency=4, deadline=0.3)
    took = time.monotonic() - started
    assert len(fan.unreached) == 12
    assert {u.reason for u in fan.unreached} == {Reason.TIMED_OUT}
    assert 0.85 < took < 0.3 * 3 + 1.0, took


async def test_pod_asks_only_the_agent_of_the_pods_node() -> None:
    fleet = three_nodes()
    api = fleet.api()
    status, out, _ = await command(fleet, ["pod", "web-2"], api)
    assert status == EXIT_OK
    assert out.startswith("Node: node-b")
    assert fleet.by_node["node-a"].requests == fleet.by_node["node-c"].requests == []
    assert fleet.by_node["node-b"].requests == ["GET /v1/pods/default/web-2"]


async def test_a_command_reuses_one_connection_per_node() -> None:
    fleet = three_nodes()
    links = fleet.links()
    # `node` asks its agent twice; `pods` once per node.
    status, _, _ = await command(fleet, ["node", "node-b"], AgentApi(links))
    assert status == EXIT_OK
    assert len(fleet.by_node["node-b"].requests) == 2
    assert links.made == 1


async def test_pod_not_found_and_node_not_found_are_errors() -> None:
    fleet = three_nodes()
    status, out, err = await command(fleet, ["pod", "nope"])
    assert (status, out) == (EXIT_ERROR, "")
    assert err == 'error: pod "nope" not found in namespace default\n'
    status, out, err = await command(fleet, ["node", "node-x"])
    assert (status, out) == (EXIT_ERROR, "")
    assert err == 'error: node "node-x" not found\n'
    fleet.without_agent = ["node-d"]
    status, out, err = await command(fleet, ["node", "node-d"])
    assert status == EXIT_ERROR
    assert err == "error: node node-d: no agent: no agent pod on this node\n"


async def test_kill_and_watch_streams_each_phase_as_it_comes() -> None:
    plan = {
        "target": {
            "kind": "container",
            "namespace": "default",
            "pod": "web-1",
            "pod_uid": "u",
            "container": "app",
            "container_id": "c",
            "sandbox_id": "s",
            "pid": 42,
            "attempt": 0,
            "restart_count": 0,
        },
        "signal": "SIGKILL",
        "timeout_seconds": 5,
        "expected_attempt": 1,
        "expected_delay_seconds": 0,
        "expected_delay_reason": "first restart",
        "restart_policy": "Always",
        "steps": ["kill", "watch"],
    }
    stream_started = asyncio.Event()
    seen_first_phase = asyncio.Event()

    async def events():
        stream_started.set()
        yield b'event: phase\ndata: {"name": "signal_sent", "since_signal_seconds": 0.0}\n\n'
        # The next phase waits until the plugin has printed the first one.
        await asyncio.wait_for(seen_first_phase.wait(), 5)
        yield b'event: phase\ndata: {"name": "container_started", "since_signal_seconds": 1.5}\n\n'
        verdict = {"state": "healed", "time_to_recover_seconds": 1.5, "verdict": "healed in 1.50s"}
        yield f"event: verdict\ndata: {json.dumps(verdict)}\n\n".encode()

    async def handle(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            body = json.loads(request.content)
            assert body == {"dry_run": False, "container": "app"}
            accepted = {
                "id": "abcdef012345",
                "dry_run": False,
                "state": "running",
                "plan": plan,
                "run_url": "/v1/heal/runs/abcdef012345",
                "events_url": "/v1/heal/runs/abcdef012345/events",
            }
            return httpx.Response(202, json=accepted)
        return httpx.Response(200, content=events(), headers={"content-type": "text/event-stream"})

    fleet = three_nodes()

    class Watching(io.StringIO):
        def write(self, s: str) -> int:
            if "signal_sent" in s:
                seen_first_phase.set()
            return super().write(s)

    from kubectl_podlens.agents import TransportLinks

    api = AgentApi(TransportLinks(lambda agent: httpx.MockTransport(handle)))
    out = Watching()
    status = await run(cli.options_from(["kill-and-watch", "web-1", "-c", "app"]), fleet, api, out)
    assert status == EXIT_OK
    text = out.getvalue()
    assert text.index("signal_sent") < text.index("container_started") < text.index("healed in")
    assert text.splitlines()[-1] == "healed in 1.50s"
    assert stream_started.is_set()


class Source:
    def __init__(self, bearer: str | None) -> None:
        self.bearer_token = bearer
        self.requested: list[tuple[str, str]] = []

    def request_token(self, namespace: str, name: str) -> str:
        self.requested.append((namespace, name))
        return "minted"


def test_the_kubeconfig_token_is_sent_when_there_is_one() -> None:
    assert agent_token(Source("mine"), Options("pods")) == "mine"


def _jwt(claims: dict) -> str:
    import base64

    def part(d: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(d).encode()).decode().rstrip("=")

    return f"{part({'alg': 'RS256'})}.{part(claims)}.c2lnbmF0dXJl"


def test_a_kubeconfig_token_for_another_audience_is_never_sent() -> None:
    api_token = _jwt({"aud": ["https://kubernetes.default.svc.cluster.local"], "sub": "x"})
    with pytest.raises(PluginError, match="not podlens: it is not sent to the agents"):
        agent_token(Source(api_token), Options("pods"))
    both = _jwt({"aud": ["https://kubernetes.default.svc.cluster.local", "podlens"]})
    assert agent_token(Source(both), Options("pods")) == both
    only = _jwt({"aud": "podlens"})
    assert agent_token(Source(only), Options("pods")) == only
    # Not a JWT (a static token): the agents' review decides.
    assert agent_token(Source("abc123"), Options("pods")) == "abc123"


def test_a_client_certificate_kubeconfig_needs_a_serviceaccount_and_says_so() -> None:
    with pytest.raises(PluginError, match="--as-serviceaccount NAMESPACE/NAME"):
        agent_token(Source(None), Options("pods"))
    source = Source(None)
    assert agent_token(source, Options("pods", as_serviceaccount="ops/viewer")) == "minted"
    assert source.requested == [("ops", "viewer")]
    with pytest.raises(PluginError, match="NAMESPACE/NAME"):
        agent_token(source, Options("pods", as_serviceaccount="viewer"))


def test_bad_flags_exit_with_usage_status() -> None:
    with pytest.raises(SystemExit) as exited:
        cli.options_from(["pods", "--concurrency", "0"])
    assert exited.value.code == 2
    with pytest.raises(SystemExit):
        cli.options_from(["kill-and-watch", "web"])  # neither -c nor --sandbox


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (5, "5s"),
        (119, "119s"),
        (150, "2m30s"),
        (600, "10m"),
        (3 * 3600 + 60, "3h1m"),
        (30 * 3600, "30h"),
        (3 * 86400, "3d"),
        (400 * 86400, "400d"),
        (800 * 86400, "2y70d"),
    ],
)
def test_age_is_written_as_kubectl_writes_it(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


async def test_the_tunnel_carries_http_through_a_forwarded_socket() -> None:
    opened: list[socket.socket] = []
    forwarded = asyncio.Event()

    class Forward:
        def __init__(self) -> None:
            self.sock, far = socket.socketpair()
            opened.append(far)
            loop.call_soon_threadsafe(forwarded.set)

        error = None

        def close(self) -> None:
            self.sock.close()

    loop = asyncio.get_running_loop()
    tunnel = Tunnel(Forward, timeout=5)
    port = await tunnel.start()

    async def agent_side(far: socket.socket) -> None:
        reader, writer = await asyncio.open_connection(sock=far)
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        request = asyncio.ensure_future(client.get("/healthz"))
        await asyncio.wait_for(forwarded.wait(), 5)
        await agent_side(opened[0])
        answer = await request
    assert answer.text == "ok"
    assert len(opened) == 1
    await tunnel.close()


async def test_a_refused_port_forward_is_a_403_naming_the_permission_or_unreachable() -> None:
    from kubectl_podlens.cluster import PortForwardRefused
    from kubectl_podlens.links import PortForwardLinks

    class Refusing:
        def __init__(self, status: int) -> None:
            self.status = status

        def forward(self, agent: AgentPod) -> None:
            raise PortForwardRefused(self.status, f"Handshake status {self.status}")

    agent = AgentPod("node-a", "podlens-system", "podlens-agent-x", True, "", 8470, "img")
    targets = [Target("node-a", agent)]
    for status, reason, says in (
        (403, Reason.FORBIDDEN, "you need get and create pods/portforward in namespace"),
        (500, Reason.UNREACHABLE, "port-forward to podlens-agent-x failed"),
    ):
        links = PortForwardLinks(Refusing(status), "token", timeout=5)  # type: ignore[arg-type]
        api = AgentApi(links)

        async def ask(agent: AgentPod, api: AgentApi = api) -> NodeInfo:
            return await api.get(agent, "/v1/node", NodeInfo)

        fan = await gather(targets, ask, deadline=5)
        await links.aclose()
        (unreached,) = fan.unreached
        assert unreached.reason == reason
        assert says in unreached.detail
