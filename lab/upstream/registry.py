"""A read-only image registry on loopback that serves the lab's own images.

The real kubelet pulls: ``image: busybox`` means ``busybox:latest``, whose
default pull policy is Always, and nothing outside this machine can be
reached. The lab's containerd names this server as the mirror of
``docker.io`` and ``registry.k8s.io``, so every pull kubelet asks for is
answered from the images the lab built, and an image the lab does not have
fails to pull exactly as it would on a cluster (404, ``ErrImagePull``).

It speaks the part of the OCI distribution API a pull uses: ``/v2/``, and
GET/HEAD of manifests (by tag or digest) and blobs. Manifests are OCI
image manifests made from the docker-archive tars in ``lab.images``; the
uncompressed layer is the blob, so its digest is the diff ID the config
already names. Standard library only, plus ``lab.images``' tar format.

Run as ``python -m lab.upstream.registry --image TAR ...``; it prints its URL
on the first line of stdout once it accepts connections.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import tarfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar"
# Registries whose pulls the lab's containerd sends here.
MIRRORED = ("docker.io", "registry.k8s.io")

_MANIFEST_PATH = re.compile(r"^/v2/(?P<repo>[a-z0-9._/-]+)/manifests/(?P<ref>[A-Za-z0-9._:-]+)$")
_BLOB_PATH = re.compile(r"^/v2/(?P<repo>[a-z0-9._/-]+)/blobs/(?P<digest>sha256:[0-9a-f]{64})$")


@dataclass(frozen=True, slots=True)
class Blob:
    """Where a blob's bytes are: a member of an image tar."""

    tar: Path
    member: str
    size: int


def repository_and_tag(reference: str) -> tuple[str, str] | None:
    """``docker.io/library/busybox:latest`` -> ``("library/busybox", "latest")``, if mirrored."""
    name, _, tag = reference.rpartition(":")
    if not name or "/" in tag:
        return None
    host, _, path = name.partition("/")
    if host not in MIRRORED or not path:
        return None
    return path, tag


class Catalog:
    """Manifests by repository and tag (and digest), blobs by digest."""

    def __init__(self) -> None:
        self.manifests: dict[tuple[str, str], bytes] = {}
        self.blobs: dict[str, Blob | bytes] = {}

    def add_archive(self, tar_path: Path) -> list[str]:
        """Index one docker-archive tar; returns the references it serves."""
        with tarfile.open(tar_path) as tar:
            member = tar.extractfile("manifest.json")
            if member is None:
                raise ValueError(f"{tar_path}: no manifest.json")
            entries = json.loads(member.read())
            served: list[str] = []
            for entry in entries:
                config_member = tar.extractfile(str(entry["Config"]))
                if config_member is None:
                    raise ValueError(f"{tar_path}: no {entry['Config']}")
                config = config_member.read()
                layers = []
                for name in entry["Layers"]:
                    info = tar.getmember(str(name))
                    digest = "sha256:" + _member_sha256(tar, info)
                    self.blobs[digest] = Blob(tar_path, info.name, info.size)
                    layers.append({"mediaType": LAYER_TYPE, "digest": digest, "size": info.size})
                config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
                self.blobs[config_digest] = config
                manifest = json.dumps(
                    {
                        "schemaVersion": 2,
                        "mediaType": MANIFEST_TYPE,
                        "config": {
                            "mediaType": CONFIG_TYPE,
                            "digest": config_digest,
                            "size": len(config),
                        },
                        "layers": layers,
                    },
                    separators=(",", ":"),
                ).encode()
                manifest_digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
                for reference in entry.get("RepoTags") or ():
                    where = repository_and_tag(str(reference))
                    if where is None:
                        continue
                    repo, tag = where
                    self.manifests[(repo, tag)] = manifest
                    self.manifests[(repo, manifest_digest)] = manifest
                    served.append(str(reference))
        return served


def _member_sha256(tar: tarfile.TarFile, info: tarfile.TarInfo) -> str:
    data = tar.extractfile(info)
    if data is None:
        raise ValueError(f"{info.name} is not a file")
    h = hashlib.sha256()
    for chunk in iter(lambda: data.read(1 << 20), b""):
        h.update(chunk)
    return h.hexdigest()


def _error(code: str, message: str) -> bytes:
    return json.dumps({"errors": [{"code": code, "message": message}]}).encode()


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        sys.stderr.write(f"registry: {self.command} {self.path} {format % args}\n")

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def do_GET(self) -> None:
        self._serve(body=True)

    def _send(self, status: int, content_type: str, data: bytes, *, body: bool) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Docker-Distribution-API-Version", "registry/2.0")
        if status == 200 and content_type != "application/json":
            self.send_header("Docker-Content-Digest", "sha256:" + hashlib.sha256(data).hexdigest())
        self.end_headers()
        if body:
            self.wfile.write(data)

    def _serve(self, *, body: bool) -> None:
        path = self.path.split("?", 1)[0]
        catalog = self.server.catalog
        if path in ("/v2", "/v2/"):
            self._send(200, "application/json", b"{}", body=body)
            return
        m = _MANIFEST_PATH.match(path)
        if m:
            manifest = catalog.manifests.get((m["repo"], m["ref"]))
            if manifest is None:
                what = f"manifest {m['repo']}:{m['ref']} is not in the lab's images"
                self._send(404, "application/json", _error("MANIFEST_UNKNOWN", what), body=body)
                return
            self._send(200, MANIFEST_TYPE, manifest, body=body)
            return
        m = _BLOB_PATH.match(path)
        if m:
            blob = catalog.blobs.get(m["digest"])
            if blob is None:
                self._send(404, "application/json", _error("BLOB_UNKNOWN", path), body=body)
                return
            self._send_blob(m["digest"], blob, body=body)
            return
        self._send(404, "application/json", _error("NAME_UNKNOWN", path), body=body)

    def _send_blob(self, digest: str, blob: Blob | bytes, *, body: bool) -> None:
        if isinstance(blob, bytes):
            self._send(200, "application/octet-stream", blob, body=body)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(blob.size))
        self.send_header("Docker-Content-Digest", digest)
        self.end_headers()
        if not body:
            return
        with tarfile.open(blob.tar) as tar:
            data = tar.extractfile(blob.member)
            if data is None:
                return
            for chunk in iter(lambda: data.read(1 << 20), b""):
                self.wfile.write(chunk)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], catalog: Catalog) -> None:
        super().__init__(address, _Handler)
        self.catalog = catalog


def serve(images: Iterable[Path], host: str = "127.0.0.1", port: int = 0) -> _Server:
    """A registry serving ``images`` (docker-archive tars), bound but not yet serving."""
    catalog = Catalog()
    for tar_path in images:
        catalog.add_archive(tar_path)
    return _Server((host, port), catalog)


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the given image tars until stopped; print the URL first."""
    parser = argparse.ArgumentParser(
        prog="python -m lab.upstream.registry",
        description="Serve the lab's images to the lab's containerd as a registry mirror.",
    )
    parser.add_argument("--image", action="append", type=Path, required=True, metavar="TAR")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    server = serve(args.image, args.host, args.port)
    print(f"http://{args.host}:{server.server_port}", flush=True)
    for repository in sorted({repo for repo, _ in server.catalog.manifests}):
        print(f"serving {repository}", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
