"""Command line: ``podlens serve|diagnose`` (and ``python -m agent ...``).

The wiring layer: settings from flags and the environment, then the app.
The node lab is a separate program (``python -m lab``): the agent's image
cannot run it, so its CLI does not offer it.

It imports the settings and pydantic's error type, and, once a command is chosen, the
app factory and ``_server`` or the offline ``diagnose``.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from agent.settings import Settings


def _serve_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = sub.add_parser(
        "serve",
        help="run the agent's HTTP API",
        description="Serve the node's pods, containers and processes over HTTP. "
        "Every flag can also be set as PODLENS_<FLAG> in the environment.",
    )
    serve.add_argument(
        "--cri-endpoint",
        help="CRI socket (unix:///... or a path); auto-detected from the known sockets when absent",
    )
    serve.add_argument("--host", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to bind (default 8470)")
    serve.add_argument(
        "--tls",
        dest="tls_mode",
        choices=["auto", "on", "off"],
        help="serve TLS: auto (default) on every address but loopback, on, or off",
    )
    serve.add_argument(
        "--tls-cert-file",
        help="PEM certificate (with --tls-key-file); without, a self-signed one is made at start",
    )
    serve.add_argument("--tls-key-file", help="PEM private key of --tls-cert-file")
    serve.add_argument(
        "--auth-mode",
        choices=["kubernetes", "none"],
        help="kubernetes: bearer tokens checked by the API server (the default with one); "
        "none: no checks, whoever reaches the port may do everything",
    )
    serve.add_argument(
        "--trust-loopback",
        action="store_true",
        default=None,
        help="let 127.0.0.1 and ::1 read without a token (never logs, never kill)",
    )
    serve.add_argument("--node-name", help="this node's name (default: NODE_NAME or hostname)")
    serve.add_argument(
        "--relist-interval",
        type=float,
        dest="relist_interval_seconds",
        help="seconds between runtime relists (default 1.0)",
    )
    serve.add_argument(
        "--cri-timeout",
        type=float,
        dest="cri_timeout_seconds",
        help="deadline for each CRI call in seconds (default 2.0)",
    )
    serve.add_argument(
        "--api-server",
        help="Kubernetes API server URL (e.g. the lab's); without it and without "
        "--kubeconfig, in-cluster config is used when running in a pod, else CRI-only mode",
    )
    serve.add_argument("--kubeconfig", help="kubeconfig file for the API server")
    kill = serve.add_argument_group("kill-and-watch (off unless --enable-kill)")
    kill.add_argument(
        "--enable-kill",
        action="store_true",
        default=None,
        help="allow POST /v1/pods/{ns}/{name}/kill-and-watch",
    )
    kill.add_argument(
        "--kill-namespaces",
        metavar="NS[,NS...]",
        help="namespaces whose pods may be killed (default: none)",
    )
    kill.add_argument(
        "--kill-opt-in-label",
        metavar="LABEL",
        help="a pod with LABEL=true may be killed (default podlens.io/allow-kill)",
    )
    kill.add_argument(
        "--kill-allow-system",
        action="store_true",
        default=None,
        help="also allow kube-system and static (mirror) pods",
    )
    kill.add_argument("--kill-rate-per-minute", type=int, help="node-wide kill rate (default 6)")
    kill.add_argument(
        "--audit-log",
        dest="audit_log_path",
        help="append every kill and refusal to this file (JSON lines)",
    )
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])


def _diagnose_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    diag = sub.add_parser(
        "diagnose",
        help="run the diagnosis rules on saved `kubectl get pod -o yaml` output, offline",
        description="Prints JSON findings; see `podlens diagnose -h`.",
    )
    # Listed for the top-level help; main() hands the arguments to the
    # diagnose command's own parser.
    del diag


def build_parser() -> argparse.ArgumentParser:
    """``podlens`` with its two subcommands; ``diagnose`` is listed here, parsed by its own."""
    parser = argparse.ArgumentParser(
        prog="podlens", description="Node-level pod troubleshooting agent."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _serve_parser(sub)
    _diagnose_parser(sub)
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    """The settings from the environment, with every flag given on the command line on top."""
    fields = set(Settings.model_fields)
    overrides = {k: v for k, v in vars(args).items() if k in fields and v is not None}
    return Settings(**overrides)


def _serve(args: argparse.Namespace) -> int:
    from agent.api.app import create_app
    from agent.cli._server import build_server, serves_tls

    settings = settings_from_args(args)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        # Checked before anything starts, so a wrong combination fails at once.
        serves_tls(settings)
        server = build_server(create_app(settings), settings, log_level=args.log_level)
    except ValueError as exc:
        print(f"podlens: {exc}", file=sys.stderr)
        return 2
    # uvicorn re-raises SIGTERM after its own clean shutdown, which would end
    # the process with 143; a handler of our own makes that re-raise a no-op.
    signal.signal(signal.SIGTERM, lambda _signum, _frame: None)
    server.run()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``podlens`` with these arguments (``sys.argv`` by default); the exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["diagnose"]:
        from agent.cli.diagnose import main as diagnose_main

        return diagnose_main(args_list[1:])
    parser = build_parser()
    args = parser.parse_args(args_list)
    try:
        if args.command == "serve":
            return _serve(args)
    except ValidationError as exc:
        for error in exc.errors():
            where = ".".join(str(p) for p in error["loc"])
            print(f"podlens: invalid setting {where}: {error['msg']}", file=sys.stderr)
        return 2
    parser.error(f"unknown command {args.command!r}")
