"""``kubectl podlens``: the commands, their flags (kubectl's where it has one), exit statuses.

``main`` builds ``Options`` from the command line (the one settings object,
passed down), connects to the API server with the caller's kubeconfig,
settles which token the agents get, and runs the command through ``run``,
which tests drive with an in-process API server and agents. Exit statuses:
0 a full answer, 1 an error (the message says what and which permission),
2 a bad command line, 3 a partial answer (the unreached nodes are listed).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TextIO
from urllib.parse import quote

from agent.api.schemas import (
    FindingItem,
    ItemList,
    KillAccepted,
    NodeDiagnostics,
    NodeInfo,
    PodDiagnosis,
    PodViewItem,
)
from kubectl_podlens import render
from kubectl_podlens.agents import AgentApi
from kubectl_podlens.errors import (
    EXIT_ERROR,
    EXIT_OK,
    EXIT_PARTIAL,
    MissingPermission,
    NotFound,
    PluginError,
)
from kubectl_podlens.fanout import (
    DEFAULT_CONCURRENCY,
    DEFAULT_DEADLINE_SECONDS,
    AgentRefused,
    gather,
    unreached_before_asking,
)
from kubectl_podlens.model import (
    AGENT_NAMESPACE,
    AGENT_SELECTOR,
    TOKEN_AUDIENCE,
    AgentPod,
    FanOut,
    Reason,
    Target,
)


@dataclass(frozen=True, slots=True)
class Options:
    """Everything the command line says, once."""

    command: str
    kubeconfig: str | None = None
    context: str | None = None
    namespace: str | None = None
    all_namespaces: bool = False
    selector: str | None = None
    output: str | None = None
    nodes: tuple[str, ...] = ()
    concurrency: int = DEFAULT_CONCURRENCY
    node_timeout: float = DEFAULT_DEADLINE_SECONDS
    request_timeout: float = 10.0
    agent_namespace: str = AGENT_NAMESPACE
    agent_selector: str = AGENT_SELECTOR
    as_serviceaccount: str | None = None
    token: str | None = None
    agent_ca: str | None = None
    problems: bool = False
    pod: str | None = None
    node: str | None = None
    container: str | None = None
    sandbox: bool = False
    dry_run: bool = False

    @property
    def wide(self) -> bool:
        """``-o wide``."""
        return self.output == "wide"

    @property
    def document(self) -> bool:
        """``-o json`` or ``-o yaml``."""
        return self.output in ("json", "yaml")


class ApiServer(Protocol):
    """What the commands ask the API server (``cluster.Cluster``, or a test's own)."""

    default_namespace: str

    def agents(self, namespace: str, selector: str) -> list[AgentPod]:
        """The agent pods."""

    def nodes(self) -> list[str] | None:
        """Every node, or None when the caller may not list them."""

    def node_of(self, namespace: str, name: str) -> str:
        """The node of a pod."""

    def matching_pods(self, namespace: str | None, selector: str) -> set[tuple[str, str]]:
        """The pods a label selector picks."""


# --------------------------------------------------------------------------
# The command line
# --------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return value


def parser() -> argparse.ArgumentParser:
    """The command line: kubectl's flags on every command, each command's own after it."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--kubeconfig", help="path to the kubeconfig file (kubectl's default)")
    common.add_argument("--context", help="the kubeconfig context to use")
    common.add_argument("-n", "--namespace", help="namespace of the pods (context's default)")
    common.add_argument(
        "-A", "--all-namespaces", action="store_true", help="pods of every namespace"
    )
    common.add_argument("-l", "--selector", help="label selector of the pods, as kubectl's")
    common.add_argument("-o", "--output", choices=("wide", "json", "yaml"))
    common.add_argument(
        "--node", action="append", default=[], help="ask only this node's agent (repeatable)"
    )
    common.add_argument(
        "--concurrency",
        type=_positive_int,
        default=DEFAULT_CONCURRENCY,
        help=f"agents asked at once (default {DEFAULT_CONCURRENCY})",
    )
    common.add_argument(
        "--node-timeout",
        type=_positive_float,
        default=DEFAULT_DEADLINE_SECONDS,
        help=f"seconds each node's agent has to answer (default {DEFAULT_DEADLINE_SECONDS:g})",
    )
    common.add_argument(
        "--request-timeout",
        type=_positive_float,
        default=10.0,
        help="seconds each API server call may take (default 10)",
    )
    common.add_argument("--agent-namespace", default=AGENT_NAMESPACE)
    common.add_argument("--agent-selector", default=AGENT_SELECTOR)
    common.add_argument(
        "--as-serviceaccount",
        metavar="NS/NAME",
        help="send the agents a token of this ServiceAccount for audience podlens "
        "(TokenRequest; needs create serviceaccounts/token)",
    )
    common.add_argument("--token", help="bearer token to send the agents (audience podlens)")
    common.add_argument("--agent-ca", help="CA file to verify the agents' TLS certificates with")

    top = argparse.ArgumentParser(
        prog="kubectl podlens",
        description="Every node's podlens agent at once, through the API server.",
        epilog="Exit status: 0 full answer, 1 error, 2 bad usage, 3 partial answer "
        "(some nodes did not answer; they are listed with the reason).",
    )
    commands = top.add_subparsers(dest="command", required=True)
    pods = commands.add_parser("pods", parents=[common], help="every pod the agents see")
    pods.add_argument("--problems", action="store_true", help="only pods that need attention")
    diagnose = commands.add_parser(
        "diagnose", parents=[common], help="findings of every node, or of POD's node"
    )
    diagnose.add_argument("pod", nargs="?")
    pod = commands.add_parser("pod", parents=[common], help="one pod, from its node's agent")
    pod.add_argument("pod")
    node = commands.add_parser("node", parents=[common], help="one node and its problem pods")
    node.add_argument("node_name", metavar="NODE")
    kill = commands.add_parser(
        "kill-and-watch",
        parents=[common],
        help="kill a container's process or the pause and watch kubelet heal it",
    )
    kill.add_argument("pod")
    target = kill.add_mutually_exclusive_group(required=True)
    target.add_argument("-c", "--container")
    target.add_argument("--sandbox", action="store_true", help="kill the pause process")
    kill.add_argument("--dry-run", action="store_true", help="show the plan, kill nothing")
    commands.add_parser("agents", parents=[common], help="which nodes have an agent, and why not")
    return top


def options_from(argv: Sequence[str] | None) -> Options:
    """Parse the command line (argparse exits with 2 on bad usage)."""
    ns = parser().parse_args(argv)
    return Options(
        command=ns.command,
        kubeconfig=ns.kubeconfig,
        context=ns.context,
        namespace=ns.namespace,
        all_namespaces=ns.all_namespaces,
        selector=ns.selector,
        output=ns.output,
        nodes=tuple(ns.node),
        concurrency=ns.concurrency,
        node_timeout=ns.node_timeout,
        request_timeout=ns.request_timeout,
        agent_namespace=ns.agent_namespace,
        agent_selector=ns.agent_selector,
        as_serviceaccount=ns.as_serviceaccount,
        token=ns.token,
        agent_ca=ns.agent_ca,
        problems=getattr(ns, "problems", False),
        pod=getattr(ns, "pod", None),
        node=getattr(ns, "node_name", None),
        container=getattr(ns, "container", None),
        sandbox=getattr(ns, "sandbox", False),
        dry_run=getattr(ns, "dry_run", False),
    )


def main(argv: Sequence[str] | None = None) -> int:
    """The ``kubectl-podlens`` console script."""
    options = options_from(argv)
    # The Kubernetes client is imported here, not at the top: ``run`` and the
    # commands need none of it, and a test drives them without a cluster.
    from kubectl_podlens.cluster import Cluster, Connection
    from kubectl_podlens.links import PortForwardLinks

    try:
        cluster = Cluster(Connection(options.kubeconfig, options.context, options.request_timeout))
    except PluginError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return exc.exit_status
    try:
        token = agent_token(cluster, options)
        # The tunnel is a WebSocket, whose upgrade is a GET: the API server
        # authorizes it as get, and (from 1.35) as create too, as a POST would be.
        for verb in ("create", "get"):
            if not cluster.may(verb, "pods", "portforward", options.agent_namespace):
                raise MissingPermission(
                    verb,
                    "pods/portforward",
                    options.agent_namespace,
                    "the agents are reached through port-forwards to their pods",
                )
        links = PortForwardLinks(cluster, token, options.node_timeout, options.agent_ca)
        return asyncio.run(run(options, cluster, AgentApi(links)))
    except PluginError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        return 130
    finally:
        cluster.close()


class TokenSource(Protocol):
    """Where a token for the agents can come from (``cluster.Cluster``)."""

    @property
    def bearer_token(self) -> str | None:
        """The kubeconfig's bearer token."""

    def request_token(self, namespace: str, name: str) -> str:
        """A TokenRequest for audience podlens."""


def agent_token(source: TokenSource, options: Options) -> str:
    """The token the agents get: --token, then --as-serviceaccount, then the kubeconfig's own."""
    if options.token:
        return options.token
    if options.as_serviceaccount:
        namespace, slash, name = options.as_serviceaccount.partition("/")
        if not slash or not namespace or not name:
            raise PluginError("--as-serviceaccount takes NAMESPACE/NAME")
        return source.request_token(namespace, name)
    found = source.bearer_token
    if found:
        audiences = token_audiences(found)
        if audiences is not None and TOKEN_AUDIENCE not in audiences:
            # Every agent would refuse it (401); sending it anyway would hand an
            # API-server credential to whatever listens in the agents' pods.
            raise PluginError(
                f"your kubeconfig's token is for {', '.join(sorted(audiences)) or 'no audience'}"
                f", not {TOKEN_AUDIENCE}: it is not sent to the agents. Use "
                "--as-serviceaccount NAMESPACE/NAME, or --token from "
                f"`kubectl create token NAME --audience {TOKEN_AUDIENCE}`"
            )
        return found
    raise PluginError(
        "your kubeconfig has no bearer token to send the agents (it authenticates with a "
        "client certificate, which a port-forward does not carry): name a ServiceAccount to "
        "request a token for, --as-serviceaccount NAMESPACE/NAME (needs create "
        "serviceaccounts/token there), or pass --token from "
        "`kubectl create token NAME --audience podlens`"
    )


def token_audiences(token: str) -> set[str] | None:
    """The ``aud`` claim of a JWT, read without checking it; None for other tokens.

    Only to keep a token away from the agents when they would refuse it
    anyway: the agents' TokenReview decides everything else.
    """
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        padded = parts[1] + "=" * (-len(parts[1]) % 4)
        claims = json.loads(base64.urlsafe_b64decode(padded))
    except (ValueError, binascii.Error):
        return None
    if not isinstance(claims, dict) or "aud" not in claims:
        return None
    aud = claims["aud"]
    return (
        {aud} if isinstance(aud, str) else {str(a) for a in aud} if isinstance(aud, list) else None
    )


# --------------------------------------------------------------------------
# Running a command
# --------------------------------------------------------------------------


@dataclass(slots=True)
class Session:
    """One command's API server, agents, options and output streams."""

    options: Options
    api_server: ApiServer
    agents: AgentApi
    out: TextIO
    err: TextIO

    @property
    def namespace(self) -> str | None:
        """The pods' namespace; None with -A."""
        if self.options.all_namespaces:
            return None
        return self.options.namespace or self.api_server.default_namespace

    def targets(self, only: Sequence[str] = ()) -> list[Target]:
        """The nodes to ask, each with its agent (or none): ``only``, --node, or every node."""
        agents: dict[str, AgentPod] = {}
        for agent in self.api_server.agents(
            self.options.agent_namespace, self.options.agent_selector
        ):
            # During a rolling update a node may hold two; the ready one answers.
            if agent.node not in agents or (agent.ready and not agents[agent.node].ready):
                agents[agent.node] = agent
        wanted = list(only) or list(self.options.nodes)
        known = self.api_server.nodes()
        if wanted:
            missing = [n for n in wanted if known is not None and n not in known]
            if missing:
                raise NotFound(f'node "{missing[0]}" not found')
            names = wanted
        elif known is not None:
            names = known
        else:
            # Without list nodes, a node without an agent cannot be seen at all: say so.
            print(
                "note: you may not list nodes, so nodes without an agent are not shown",
                file=self.err,
            )
            names = sorted(agents)
        return [Target(n, agents.get(n)) for n in names]

    def finish(self, fan: FanOut[Any], asked: int) -> int:
        """Print the unreached nodes (tables: on stderr) and the exit status."""
        if not fan.partial:
            return EXIT_OK
        if not self.options.document:
            print(render.unreached_note(fan.unreached, asked), file=self.err)
        return EXIT_PARTIAL

    def emit(self, text: str) -> None:
        """Print the answer."""
        print(text, file=self.out, flush=True)

    def emit_document(self, data: Any) -> None:
        """Print the answer as JSON or YAML."""
        self.emit(render.document(data, self.options.output or "json"))


async def run(
    options: Options,
    api_server: ApiServer,
    agents: AgentApi,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Run one command; its exit status."""
    session = Session(options, api_server, agents, out or sys.stdout, err or sys.stderr)
    command = COMMANDS[options.command]
    try:
        return await command(session)
    except AgentRefused as refused:
        # A command about one pod or node has nothing to show without its agent.
        print(f"error: {refused.reason}: {refused.detail}", file=session.err)
        return EXIT_ERROR
    except TimeoutError:
        print(
            f"error: {Reason.TIMED_OUT}: no answer within {options.node_timeout:g}s",
            file=session.err,
        )
        return EXIT_ERROR
    except PluginError as exc:
        print(f"error: {exc.message}", file=session.err)
        return exc.exit_status
    finally:
        await agents.links.aclose()


def _selected(session: Session) -> set[tuple[str, str]] | None:
    if not session.options.selector:
        return None
    return session.api_server.matching_pods(session.namespace, session.options.selector)


def _pods_query(session: Session, problems: bool) -> str:
    params = []
    if session.namespace is not None:
        params.append(f"namespace={quote(session.namespace)}")
    if problems:
        params.append("problems=true")
    return "/v1/pods" + ("?" + "&".join(params) if params else "")


async def cmd_pods(session: Session) -> int:
    """Every pod the agents see, merged across nodes."""
    targets = session.targets()
    path = _pods_query(session, session.options.problems)
    fan = await gather(
        targets,
        lambda agent: session.agents.get(agent, path, ItemList[PodViewItem]),
        concurrency=session.options.concurrency,
        deadline=session.options.node_timeout,
    )
    selected = _selected(session)
    merged = sorted(
        (
            (node, pod)
            for node, answer in fan.answers.items()
            for pod in answer.items
            if selected is None or (pod.namespace, pod.name) in selected
        ),
        key=lambda np: (np[1].namespace, np[1].name, np[0]),
    )
    if session.options.document:
        session.emit_document(
            {
                "items": [{"node": n, **p.model_dump(mode="json")} for n, p in merged],
                "unreached": render.unreached_items(fan.unreached),
            }
        )
    elif merged:
        session.emit(
            render.pods_table(
                merged, all_namespaces=session.namespace is None, wide=session.options.wide
            )
        )
    else:
        where = f" in namespace {session.namespace}" if session.namespace else ""
        print(f"No resources found{where}.", file=session.err)
    return session.finish(fan, len(targets))


def _sorted_findings(found: list[tuple[str, FindingItem]]) -> list[tuple[str, FindingItem]]:
    return sorted(
        found,
        key=lambda nf: (render.severity_rank(nf[1].severity), nf[0], nf[1].namespace, nf[1].pod),
    )


async def cmd_diagnose(session: Session) -> int:
    """Findings of every node (or of the node that runs POD), most severe first."""
    if session.options.pod is not None:
        return await _diagnose_pod(session, session.options.pod)
    targets = session.targets()
    fan = await gather(
        targets,
        lambda agent: session.agents.get(agent, "/v1/diagnostics", NodeDiagnostics),
        concurrency=session.options.concurrency,
        deadline=session.options.node_timeout,
    )
    selected = _selected(session)
    found = _sorted_findings(
        [
            (node, f)
            for node, answer in fan.answers.items()
            for f in answer.items
            if (session.namespace is None or f.namespace == session.namespace)
            and (selected is None or (f.namespace, f.pod) in selected)
        ]
    )
    if session.options.document:
        session.emit_document(
            {
                "items": [{"node": n, **f.model_dump(mode="json")} for n, f in found],
                "nodes": {
                    n: {"pods_checked": a.pods_checked, "pods_with_findings": a.pods_with_findings}
                    for n, a in sorted(fan.answers.items())
                },
                "unreached": render.unreached_items(fan.unreached),
            }
        )
    elif found:
        session.emit(render.findings_table(found, wide=session.options.wide))
    else:
        checked = sum(a.pods_checked for a in fan.answers.values())
        print(
            f"No findings ({checked} pods checked on {len(fan.answers)} nodes).", file=session.err
        )
    return session.finish(fan, len(targets))


async def _one_agent(session: Session, node: str) -> AgentPod:
    target = session.targets(only=[node])[0]
    skipped = unreached_before_asking(target)
    if skipped is not None or target.agent is None:
        reason = skipped.reason if skipped else "no agent"
        detail = skipped.detail if skipped else ""
        raise PluginError(f"node {node}: {reason}: {detail}")
    return target.agent


async def _diagnose_pod(session: Session, pod: str) -> int:
    namespace = session.namespace or session.api_server.default_namespace
    node = session.api_server.node_of(namespace, pod)
    agent = await _one_agent(session, node)
    path = f"/v1/pods/{quote(namespace)}/{quote(pod)}/diagnosis"
    async with asyncio.timeout(session.options.node_timeout):
        answer = await session.agents.get(agent, path, PodDiagnosis)
    found = _sorted_findings([(node, f) for f in answer.findings])
    if session.options.document:
        session.emit_document({"node": node, **answer.model_dump(mode="json")})
    elif found:
        session.emit(render.findings_table(found, wide=session.options.wide))
    else:
        print(
            f"No findings for {namespace}/{pod} on node {node} ({answer.status}).",
            file=session.err,
        )
    return EXIT_OK


async def cmd_pod(session: Session) -> int:
    """One pod: its node found through the API server, the detail from that node's agent only."""
    assert session.options.pod is not None
    namespace = session.namespace or session.api_server.default_namespace
    node = session.api_server.node_of(namespace, session.options.pod)
    agent = await _one_agent(session, node)
    path = f"/v1/pods/{quote(namespace)}/{quote(session.options.pod)}"
    async with asyncio.timeout(session.options.node_timeout):
        if session.options.document:
            item = await session.agents.get(agent, path, PodViewItem)
            session.emit_document({"node": node, **item.model_dump(mode="json")})
        else:
            session.emit(f"Node: {node}\n" + (await session.agents.get_text(agent, path)).rstrip())
    return EXIT_OK


async def cmd_node(session: Session) -> int:
    """One node's ``/v1/node`` and its problem pods."""
    assert session.options.node is not None
    agent = await _one_agent(session, session.options.node)
    pods_path = _pods_query(session, problems=True)
    async with asyncio.timeout(session.options.node_timeout):
        if session.options.document:
            info = await session.agents.get(agent, "/v1/node", NodeInfo)
            pods = await session.agents.get(agent, pods_path, ItemList[PodViewItem])
            session.emit_document(
                {
                    "node": info.model_dump(mode="json"),
                    "problem_pods": [p.model_dump(mode="json") for p in pods.items],
                }
            )
            return EXIT_OK
        text = await session.agents.get_text(agent, "/v1/node")
        pods = await session.agents.get(agent, pods_path, ItemList[PodViewItem])
    session.emit(text.rstrip())
    session.emit("")
    if pods.items:
        session.emit(
            render.pods_table(
                [(agent.node, p) for p in pods.items],
                all_namespaces=session.namespace is None,
                wide=session.options.wide,
            )
        )
    else:
        session.emit("No problem pods.")
    return EXIT_OK


async def cmd_kill_and_watch(session: Session) -> int:
    """Through the pod's node's agent: the plan, then each phase as it happens, then the verdict."""
    options = session.options
    assert options.pod is not None
    namespace = session.namespace or session.api_server.default_namespace
    node = session.api_server.node_of(namespace, options.pod)
    agent = await _one_agent(session, node)
    body: dict[str, Any] = {"dry_run": options.dry_run}
    if options.sandbox:
        body["sandbox"] = True
    else:
        body["container"] = options.container
    path = f"/v1/pods/{quote(namespace)}/{quote(options.pod)}/kill-and-watch"
    async with asyncio.timeout(options.node_timeout):
        accepted = await session.agents.post(agent, path, body, KillAccepted)
    plan = accepted.plan
    if options.document and accepted.dry_run:
        session.emit_document({"node": node, **accepted.model_dump(mode="json")})
        return EXIT_OK
    target = plan.target.container or "the pause process (sandbox)"
    lines = [
        f"node {node}: {namespace}/{options.pod}, {target}, pid {plan.target.pid}, "
        f"signal {plan.signal}",
        f"expected: attempt {plan.expected_attempt} after about "
        f"{plan.expected_delay_seconds:g}s ({plan.expected_delay_reason})",
    ]
    if accepted.dry_run or accepted.events_url is None:
        lines += [f"  {step}" for step in plan.steps]
        lines.append("dry run: nothing was killed")
        session.emit("\n".join(lines))
        return EXIT_OK
    if not options.document:
        session.emit("\n".join([*lines, f"run {accepted.id}:"]))
    phases: list[dict[str, Any]] = []
    verdict: dict[str, Any] = {}
    read_timeout = plan.timeout_seconds + options.node_timeout
    async for event, data in session.agents.events(agent, accepted.events_url, read_timeout):
        if event == "phase":
            phases.append(data)
            if not options.document:
                since = data.get("since_signal_seconds")
                at = f"+{since:.2f}s" if isinstance(since, int | float) else str(data.get("at"))
                session.emit(f"  {at:>9}  {data.get('name')}")
        elif event == "verdict":
            verdict = data
            break
    if options.document:
        session.emit_document({"node": node, "run": accepted.id, "phases": phases, **verdict})
    else:
        # The agent's verdict says the outcome and the time to recover itself.
        session.emit(str(verdict.get("verdict") or verdict.get("state") or "no verdict"))
    return EXIT_OK if verdict.get("state") == "healed" else EXIT_ERROR


async def cmd_agents(session: Session) -> int:
    """Which nodes have an agent, its version, reachable or not and why not."""
    targets = session.targets()

    async def ask(agent: AgentPod) -> NodeInfo:
        info = await session.agents.get(agent, "/v1/node", NodeInfo)
        if info.node_name != agent.node:
            raise AgentRefused(
                Reason.FAILED,
                f"the agent of pod {agent.name} says it is on node {info.node_name}",
            )
        return info

    fan = await gather(
        targets, ask, concurrency=session.options.concurrency, deadline=session.options.node_timeout
    )
    why = {u.node: u for u in fan.unreached}
    rows = []
    for t in targets:
        version = t.agent.image.rsplit(":", 1)[-1] if t.agent and ":" in t.agent.image else ""
        info = fan.answers.get(t.node)
        rows.append(
            {
                "node": t.node,
                "agent": t.agent.name if t.agent else None,
                "ready": bool(t.agent and t.agent.ready),
                "version": version or (t.agent.image if t.agent else None),
                "reachable": info is not None,
                "runtime": (info.runtime.name or "") + " " + (info.runtime.version or "")
                if info
                else None,
                "reason": str(why[t.node].reason) if t.node in why else None,
                "detail": why[t.node].detail if t.node in why else None,
            }
        )
    if session.options.document:
        session.emit_document({"items": rows})
    else:
        session.emit(render.agents_table(rows))
    return EXIT_PARTIAL if fan.partial else EXIT_OK


COMMANDS = {
    "pods": cmd_pods,
    "diagnose": cmd_diagnose,
    "pod": cmd_pod,
    "node": cmd_node,
    "kill-and-watch": cmd_kill_and_watch,
    "agents": cmd_agents,
}
