"""How the agent listens: TLS wherever tokens could cross a network, a
certificate from files or made at start (its fingerprint logged), and the
bounds a caller without a token meets first (daemonset/SECURITY.md, H2, M4)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import re
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from agent.api.app import create_app
from agent.cli._server import build_server, self_signed_certificate, serves_tls
from agent.cli.serve import main
from agent.kube import DisabledPodCache
from agent.settings import Settings
from tests.test_auth import NODE, QuietNode


def settings_for(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "node_name": NODE,
        "host": "127.0.0.1",
        "port": 0,
        "cri_endpoint": "/run/containerd/containerd.sock",
        "auth_mode": "none",
    }
    values.update(overrides)
    return Settings(**values)


@contextlib.contextmanager
def running(settings: Settings) -> Iterator[tuple[uvicorn.Server, int]]:
    node = QuietNode(settings)
    node.load_empty()
    app = create_app(settings, node, DisabledPodCache())
    server = build_server(app, settings, log_level="warning")
    thread = threading.Thread(target=server.run, name="tls-test-agent", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("agent did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield server, port
    finally:
        server.should_exit = True
        thread.join(10)


# -- H2: when TLS is served ----------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "mode", "tls"),
    [
        ("0.0.0.0", "auto", True),
        ("::", "auto", True),
        ("10.244.1.7", "auto", True),
        ("127.0.0.1", "auto", False),
        ("::1", "auto", False),
        ("localhost", "auto", False),
        ("127.0.0.1", "on", True),
        ("0.0.0.0", "off", False),
    ],
)
def test_tls_is_served_wherever_the_port_leaves_the_host(host: str, mode: str, tls: bool) -> None:
    assert serves_tls(settings_for(host=host, tls_mode=mode)) is tls


def test_the_default_is_tls_off_loopback() -> None:
    assert Settings(node_name=NODE).tls_mode == "auto"
    assert serves_tls(Settings(node_name=NODE, host="0.0.0.0"))


def test_plain_http_off_loopback_is_refused_while_tokens_are_checked() -> None:
    settings = settings_for(
        host="0.0.0.0", tls_mode="off", api_server="http://127.0.0.1:1", auth_mode=None
    )
    with pytest.raises(ValueError, match="in clear"):
        serves_tls(settings)


@pytest.mark.parametrize(
    "overrides",
    [
        {"tls_cert_file": Path("/etc/podlens/tls/tls.crt")},
        {"tls_key_file": Path("/etc/podlens/tls/tls.key")},
        {
            "tls_mode": "off",
            "tls_cert_file": Path("/etc/podlens/tls/tls.crt"),
            "tls_key_file": Path("/etc/podlens/tls/tls.key"),
        },
    ],
)
def test_certificate_settings_must_make_sense(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="TLS"):
        serves_tls(settings_for(host="0.0.0.0", **overrides))


def test_the_command_line_says_what_is_wrong(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["serve", "--host", "0.0.0.0", "--tls", "off", "--api-server", "http://127.0.0.1:1"]
    )
    assert code == 2
    assert "in clear" in capsys.readouterr().err


# -- H2: the certificate --------------------------------------------------------------


def peer_certificate(port: int) -> x509.Certificate:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def test_a_self_signed_certificate_is_made_and_its_fingerprints_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="agent.cli")
    with running(settings_for(tls_mode="on")) as (_, port):
        cert = peer_certificate(port)
        # Plain HTTP to the TLS port gets no answer from the app.
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).raise_for_status()
    der = cert.public_bytes(serialization.Encoding.DER)
    fingerprint = hashlib.sha256(der).hexdigest()
    text = caplog.text.lower()
    assert ":".join(re.findall("..", fingerprint)) in text
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    pin = base64.b64encode(hashlib.sha256(spki).digest()).decode()
    assert f"sha256//{pin}" in caplog.text
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    assert NODE in names.get_values_for_type(x509.DNSName)


def test_the_self_signed_key_leaves_nothing_on_disk(tmp_path: Path) -> None:
    cert, key = self_signed_certificate(settings_for(), tmp_path)
    assert key.stat().st_mode & 0o077 == 0
    assert cert.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")


def test_a_certificate_from_files_verifies(tmp_path: Path) -> None:
    cert, key = self_signed_certificate(settings_for(), tmp_path)
    settings = settings_for(tls_cert_file=cert, tls_key_file=key)
    with running(settings) as (_, port):
        context = ssl.create_default_context(cafile=str(cert))
        # As strict as urllib3 and Python 3.13 verify.
        context.verify_flags |= ssl.VERIFY_X509_STRICT | ssl.VERIFY_X509_PARTIAL_CHAIN
        with httpx.Client(verify=context, timeout=5) as client:
            response = client.get(f"https://localhost:{port}/healthz")
    assert response.status_code == 200
    assert response.url.scheme == "https"


# -- M4: bounds before any token ---------------------------------------------------------


def test_a_client_that_never_finishes_its_head_is_cut_off() -> None:
    with running(settings_for(http_header_timeout_seconds=0.5)) as (_, port):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as silent:
            started = time.monotonic()
            assert silent.recv(1) == b""
            assert time.monotonic() - started < 3
        with socket.create_connection(("127.0.0.1", port), timeout=5) as trickle:
            started = time.monotonic()
            for piece in (b"GET /healthz HTTP/1.1\r\n", b"Host: x\r\n"):
                trickle.sendall(piece)
                time.sleep(0.2)
            data = b""
            with contextlib.suppress(ConnectionResetError):
                while chunk := trickle.recv(4096):
                    data += chunk
            assert data == b""
            assert time.monotonic() - started < 3
        # A client that keeps to the deadline is served, twice on one connection.
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            assert client.get("/healthz").status_code == 200
            time.sleep(0.2)
            assert client.get("/healthz").status_code == 200


def test_connections_beyond_the_limit_are_answered_503() -> None:
    with running(settings_for(http_limit_concurrency=2)) as (_, port):
        held = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(2)]
        try:
            time.sleep(0.1)
            response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
            assert response.status_code == 503
        finally:
            for conn in held:
                conn.close()
        time.sleep(0.1)
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200


def test_a_request_head_growing_past_the_bound_is_refused() -> None:
    with running(settings_for(http_max_header_bytes=8192)) as (_, port):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            for _ in range(3):
                conn.sendall(b"X-Pad: " + b"p" * 4000 + b"\r\n")
                time.sleep(0.05)
            answer = b""
            with contextlib.suppress(ConnectionResetError):
                while chunk := conn.recv(4096):
                    answer += chunk
        assert answer.startswith(b"HTTP/1.1 400 "), answer[:100]
