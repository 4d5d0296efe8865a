"""How the agent listens: TLS or not, the certificate, and uvicorn's bounds.

TLS is served wherever the port can be reached from another host (``auto``:
every bind address but loopback), so bearer tokens never cross a network in
clear; plain HTTP off loopback is refused while tokens are checked. The
certificate comes from files (a mounted Secret) or is made at start: a
self-signed ECDSA certificate whose SHA-256 fingerprint and public-key pin
are logged, so a client can pin it (``curl --pinnedpubkey sha256//...``).
Its key exists on disk only while uvicorn loads it, in a private temporary
directory.

Before any token is looked at, uvicorn bounds what a caller can hold: the
connections and requests served at once (more are answered 503), the size
of a request head, the idle time between requests, and (added here, as
uvicorn has none) the time to send a request head, so a client that
connects and trickles cannot keep a slot.

The wiring layer: imports the settings, uvicorn and cryptography only.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import hashlib
import ipaddress
import logging
import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from agent.settings import Settings

log = logging.getLogger(__name__)

# TLS 1.2 suites with forward secrecy and AEAD only (TLS 1.3's are fixed).
_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"
_SELF_SIGNED_DAYS = 365


def _loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serves_tls(settings: Settings) -> bool:
    """Whether the agent serves TLS; ``ValueError`` when the settings contradict each other."""
    files = (settings.tls_cert_file, settings.tls_key_file)
    if (files[0] is None) != (files[1] is None):
        raise ValueError("TLS needs both a certificate file and its key file, or neither")
    loopback = _loopback_host(settings.host)
    if settings.tls_mode == "off":
        if files[0] is not None:
            raise ValueError("TLS certificate files are given but TLS is off")
        if not loopback and settings.resolved_auth_mode == "kubernetes":
            raise ValueError(
                f"plain HTTP on {settings.host} would carry bearer tokens in clear: "
                "serve TLS (tls_mode auto or on) or bind a loopback address"
            )
        return False
    return settings.tls_mode == "on" or files[0] is not None or not loopback


def self_signed_certificate(settings: Settings, directory: Path) -> tuple[Path, Path]:
    """Write a fresh self-signed certificate and its key (mode 0600) into ``directory``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    dns = dict.fromkeys(
        n for n in ("localhost", settings.node_name, settings.pod_name, socket.gethostname()) if n
    )
    ips = [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")]
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"podlens {settings.node_name}")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=_SELF_SIGNED_DAYS))
        .add_extension(
            x509.SubjectAlternativeName(
                [*(x509.DNSName(n) for n in dns), *(x509.IPAddress(ip) for ip in ips)]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        # What strict verifiers (OpenSSL's X509_STRICT, which urllib3 and
        # Python 3.13 turn on) want of a certificate a client trusts as itself.
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "tls.crt", directory / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return cert_path, key_path


def _log_fingerprints(cert_path: Path, where: str) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    digest = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    pin = base64.b64encode(hashlib.sha256(spki).digest()).decode()
    colons = ":".join(digest[i : i + 2] for i in range(0, len(digest), 2)).upper()
    log.info(
        "serving TLS with %s: SHA-256 fingerprint %s; pin with curl --pinnedpubkey sha256//%s",
        where,
        colons,
        pin,
    )


def bounded_h11(head_timeout: float) -> type[H11Protocol]:
    """uvicorn's h11 protocol with a deadline for every request head."""

    class BoundedH11(H11Protocol):
        """Closes a connection whose request head is not complete ``head_timeout`` s after
        it connected or started sending it; idle keep-alive is uvicorn's own timer."""

        _head_deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            cycle = self.cycle
            super().data_received(data)
            if self.cycle is not cycle:
                self._disarm()
            elif self._head_deadline is None and (cycle is None or cycle.response_complete):
                self._arm()

        def handle_websocket_upgrade(self, event: Any) -> None:
            self._disarm()
            super().handle_websocket_upgrade(event)

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._head_deadline = self.loop.call_later(head_timeout, self._expired)

        def _disarm(self) -> None:
            if self._head_deadline is not None:
                self._head_deadline.cancel()
                self._head_deadline = None

        def _expired(self) -> None:
            self._head_deadline = None
            if self.cycle is None or self.cycle.response_complete:
                self.transport.close()

    return BoundedH11


def build_server(app: Any, settings: Settings, *, log_level: str) -> uvicorn.Server:
    """A uvicorn server for ``app`` as the settings say, TLS loaded; ``ValueError`` if it cannot."""
    tls = serves_tls(settings)
    options: dict[str, Any] = {}
    scratch: Path | None = None
    if tls:
        cert, key = settings.tls_cert_file, settings.tls_key_file
        if cert is None or key is None:
            scratch = Path(tempfile.mkdtemp(prefix="podlens-tls-"))
            cert, key = self_signed_certificate(settings, scratch)
            where = "a self-signed certificate made at start"
        else:
            where = f"the certificate in {cert}"
        options = {"ssl_certfile": str(cert), "ssl_keyfile": str(key), "ssl_ciphers": _CIPHERS}
    else:
        log.warning("serving plain HTTP on %s: TLS is off", settings.host)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        access_log=False,
        http=bounded_h11(settings.http_header_timeout_seconds),
        limit_concurrency=settings.http_limit_concurrency,
        timeout_keep_alive=settings.http_keep_alive_seconds,
        h11_max_incomplete_event_size=settings.http_max_header_bytes,
        # Open streams (a followed heal run) must not hold shutdown up: the
        # lifespan then abandons runs and writes their audit records.
        timeout_graceful_shutdown=5,
        **options,
    )
    try:
        # Loads the certificate and key into an SSL context now, so a
        # self-signed key is on disk for this call only.
        config.load()
        if tls:
            _log_fingerprints(Path(options["ssl_certfile"]), where)
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot load the TLS certificate: {exc}") from None
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    return uvicorn.Server(config)


__all__ = ["bounded_h11", "build_server", "self_signed_certificate", "serves_tls"]
