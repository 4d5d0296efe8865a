"""The real node's certificates: one CA, each component's serving or client certificate.

Kubernetes identifies components by their client certificates (the common
name is the user, each organisation a group), so every component gets its
own: the admin (``system:masters``), the kubelet as ``system:node:<node>`` in
``system:nodes`` (what the Node authorizer expects), the controller manager
and scheduler under their ``system:`` names, and the API server's own client
for talking to kubelets. The service-account signing key is an RSA pair.
Keys are written 0600 in the lab directory and never leave it.

Imports ``cryptography`` and the standard library only.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Long enough for any lab session, short enough not to matter if a key leaks.
_VALIDITY = dt.timedelta(days=30)
# The first address of the service range: the in-cluster `kubernetes` Service.
SERVICE_CIDR = "10.96.0.0/24"
KUBERNETES_SERVICE_IP = "10.96.0.1"


@dataclass(frozen=True, slots=True)
class CertPair:
    """A certificate and its key, as PEM files."""

    cert: Path
    key: Path


@dataclass(frozen=True, slots=True)
class Pki:
    """Every file the real node's components are started with."""

    ca: CertPair
    apiserver: CertPair
    apiserver_kubelet_client: CertPair
    admin: CertPair
    kubelet: CertPair
    kubelet_serving: CertPair
    controller_manager: CertPair
    scheduler: CertPair
    service_account_key: Path
    service_account_pub: Path

    @classmethod
    def at(cls, directory: Path) -> Pki:
        """The files ``make_pki`` writes under ``directory``, by their names."""

        def pair(stem: str) -> CertPair:
            return CertPair(directory / f"{stem}.crt", directory / f"{stem}.key")

        return cls(
            ca=pair("ca"),
            apiserver=pair("apiserver"),
            apiserver_kubelet_client=pair("apiserver-kubelet-client"),
            admin=pair("admin"),
            kubelet=pair("kubelet"),
            kubelet_serving=pair("kubelet-serving"),
            controller_manager=pair("controller-manager"),
            scheduler=pair("scheduler"),
            service_account_key=directory / "sa.key",
            service_account_pub=directory / "sa.pub",
        )


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_bytes(data)


def _key_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _name(common_name: str, groups: tuple[str, ...] = ()) -> x509.Name:
    parts = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in groups]
    parts.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(parts)


class _Authority:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        name = _name("podlens-lab-ca")
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self.key, hashes.SHA256())
        )

    @classmethod
    def loaded(cls, directory: Path) -> _Authority:
        """The CA that ``save`` wrote under ``directory``, to issue more certificates."""
        authority = cls.__new__(cls)
        authority.directory = directory
        key = serialization.load_pem_private_key((directory / "ca.key").read_bytes(), None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{directory / 'ca.key'} is not the lab CA's key")
        authority.key = key
        authority.cert = x509.load_pem_x509_certificate((directory / "ca.crt").read_bytes())
        return authority

    def save(self) -> CertPair:
        pair = CertPair(self.directory / "ca.crt", self.directory / "ca.key")
        _write(pair.cert, self.cert.public_bytes(serialization.Encoding.PEM))
        _write(pair.key, _key_pem(self.key))
        return pair

    def issue(
        self,
        stem: str,
        common_name: str,
        *,
        groups: tuple[str, ...] = (),
        server_names: tuple[str, ...] = (),
        server_ips: tuple[str, ...] = (),
        client: bool = True,
    ) -> CertPair:
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH] if client else []
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name, groups))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        )
        if server_names or server_ips:
            usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
            alt: list[x509.GeneralName] = [x509.DNSName(n) for n in server_names]
            alt += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in server_ips]
            builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        pair = CertPair(self.directory / f"{stem}.crt", self.directory / f"{stem}.key")
        _write(pair.cert, cert.public_bytes(serialization.Encoding.PEM))
        _write(pair.key, _key_pem(key))
        return pair


def make_pki(directory: Path, node_name: str) -> Pki:
    """A fresh CA and every certificate the real node needs, written under ``directory``."""
    ca = _Authority(directory)
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pki = Pki.at(directory)
    _write(pki.service_account_key, _key_pem(sa_key))
    _write(
        pki.service_account_pub,
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    )
    names = (
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    )
    ca.save()
    ca.issue(
        "apiserver",
        "kube-apiserver",
        server_names=names,
        server_ips=("127.0.0.1", KUBERNETES_SERVICE_IP),
        client=False,
    )
    ca.issue(
        "apiserver-kubelet-client", "kube-apiserver-kubelet-client", groups=("system:masters",)
    )
    ca.issue("admin", "lab-admin", groups=("system:masters",))
    ca.issue("kubelet", f"system:node:{node_name}", groups=("system:nodes",))
    ca.issue(
        "kubelet-serving",
        f"system:node:{node_name}",
        groups=("system:nodes",),
        server_names=("localhost", node_name),
        server_ips=("127.0.0.1",),
        client=False,
    )
    ca.issue("controller-manager", "system:kube-controller-manager")
    ca.issue("scheduler", "system:kube-scheduler")
    return pki


def node_certificates(pki: Pki, directory: Path, node_name: str) -> Pki:
    """``pki`` with a kubelet client and serving certificate of another node, from the same CA.

    The certificates are written under ``directory``; everything else is ``pki``'s.
    """
    authority = _Authority.loaded(pki.ca.cert.parent)
    authority.directory = directory
    client = authority.issue("kubelet", f"system:node:{node_name}", groups=("system:nodes",))
    serving = authority.issue(
        "kubelet-serving",
        f"system:node:{node_name}",
        groups=("system:nodes",),
        server_names=("localhost", node_name),
        server_ips=("127.0.0.1",),
        client=False,
    )
    return dataclasses.replace(pki, kubelet=client, kubelet_serving=serving)


def kubeconfig(path: Path, server: str, ca: Path, client: CertPair, *, user: str) -> Path:
    """A kubeconfig that reaches ``server`` as the holder of ``client``."""
    text = f"""apiVersion: v1
kind: Config
clusters:
- name: lab
  cluster:
    server: {server}
    certificate-authority: {ca}
users:
- name: {user}
  user:
    client-certificate: {client.cert}
    client-key: {client.key}
contexts:
- name: lab
  context:
    cluster: lab
    user: {user}
current-context: lab
"""
    _write(path, text.encode())
    return path
