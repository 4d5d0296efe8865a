"""Container images for the lab node, built from the machine's own packages.

No registry is reachable, so every image the lab runs is assembled here as a
docker-archive tar (``manifest.json`` + config JSON + one layer tar), the
format ``ctr images import`` accepts. Builds are reproducible (fixed mtimes,
owners and entry order), so an image's ID only changes when its inputs do,
and they are cached under a directory keyed by a hash of those inputs.

Adding an image means adding an :class:`ImageRecipe`: a cheap fingerprint of
its inputs, a function that produces its files, and its config.

Owns the image recipes, the archive format and the cache. Imports
``lab.errors`` only.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from lab.errors import LabError, MissingTool

# Any fixed value makes layer digests stable across builds; this one is
# far enough from 0 that no tool mistakes it for "unset".
FIXED_MTIME = 1_704_067_200  # 2024-01-01T00:00:00Z
FIXED_CREATED = "2024-01-01T00:00:00Z"

# Bumped whenever the tar layout written here changes, so stale cache
# entries are never reused.
ARCHIVE_FORMAT_VERSION = "1"

DEFAULT_PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

PAUSE_IMAGE = "registry.k8s.io/pause:3.10"
PAUSE_IMAGE_LAB_ALIAS = "localhost/podlens/pause:lab"
BUSYBOX_IMAGE = "docker.io/library/busybox:latest"
BUSYBOX_IMAGE_1_37 = "docker.io/library/busybox:1.37"
NGINX_IMAGE = "docker.io/library/nginx:latest"
NGINX_IMAGE_1_27 = "docker.io/library/nginx:1.27"


def default_cache_dir() -> Path:
    """Where built image tars are cached: ``$XDG_CACHE_HOME/podlens/images`` or ``~/.cache``'s."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "podlens" / "images"


# --------------------------------------------------------------------------
# Builder: entries + config -> docker-archive tar
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LayerFile:
    """A regular file in an image layer."""

    path: str
    data: bytes
    mode: int = 0o644


@dataclass(frozen=True, slots=True)
class LayerDir:
    """A directory in an image layer."""

    path: str
    mode: int = 0o755


@dataclass(frozen=True, slots=True)
class LayerSymlink:
    """A symlink in an image layer."""

    path: str
    target: str


LayerEntry = LayerFile | LayerDir | LayerSymlink


@dataclass(frozen=True, slots=True)
class ImageConfig:
    """The runtime part of an image config (the ``config`` object in it)."""

    env: tuple[str, ...] = (DEFAULT_PATH_ENV,)
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    working_dir: str = ""
    user: str = ""
    stop_signal: str = ""
    exposed_ports: tuple[str, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()

    def to_json(self) -> dict[str, object]:
        """The config object as it goes into the OCI image config."""
        out: dict[str, object] = {"Env": list(self.env)}
        if self.entrypoint:
            out["Entrypoint"] = list(self.entrypoint)
        if self.cmd:
            out["Cmd"] = list(self.cmd)
        if self.working_dir:
            out["WorkingDir"] = self.working_dir
        if self.user:
            out["User"] = self.user
        if self.stop_signal:
            out["StopSignal"] = self.stop_signal
        if self.exposed_ports:
            out["ExposedPorts"] = {p: {} for p in self.exposed_ports}
        if self.labels:
            out["Labels"] = dict(self.labels)
        return out


def _norm(path: str) -> str:
    p = PurePosixPath("/" + path.lstrip("/"))
    if ".." in p.parts:
        raise LabError(f"image entry path must not contain '..': {path!r}")
    return str(p).lstrip("/")


def _tarinfo(name: str, kind: bytes, mode: int, size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.size = size
    info.mtime = FIXED_MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def build_layer(entries: Iterable[LayerEntry]) -> bytes:
    """One uncompressed layer tar; missing parent directories are added."""
    by_path: dict[str, LayerEntry] = {}
    for entry in entries:
        path = _norm(entry.path)
        if not path:
            continue
        if path in by_path:
            raise LabError(f"image entry {path!r} given twice")
        by_path[path] = entry
    for path in list(by_path):
        parent = PurePosixPath(path).parent
        while str(parent) not in (".", ""):
            by_path.setdefault(str(parent), LayerDir(str(parent)))
            parent = parent.parent

    buf = io.BytesIO()
    # GNU format: no pax headers carrying per-build values.
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for path in sorted(by_path):
            entry = by_path[path]
            if isinstance(entry, LayerDir):
                tar.addfile(_tarinfo(path + "/", tarfile.DIRTYPE, entry.mode))
            elif isinstance(entry, LayerSymlink):
                info = _tarinfo(path, tarfile.SYMTYPE, 0o777)
                info.linkname = entry.target
                tar.addfile(info)
            else:
                info = _tarinfo(path, tarfile.REGTYPE, entry.mode, len(entry.data))
                tar.addfile(info, io.BytesIO(entry.data))
    return buf.getvalue()


def _oci_arch() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(
        machine, machine
    )


def write_docker_archive(
    dest: Path, tags: Sequence[str], entries: Iterable[LayerEntry], config: ImageConfig
) -> str:
    """Write a single-layer docker-archive tar to ``dest``; returns the image ID."""
    layer = build_layer(entries)
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    image_config = {
        "architecture": _oci_arch(),
        "os": "linux",
        "created": FIXED_CREATED,
        "config": config.to_json(),
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": FIXED_CREATED, "created_by": "podlens lab image builder"}],
    }
    config_bytes = json.dumps(image_config, sort_keys=True, separators=(",", ":")).encode()
    config_hex = hashlib.sha256(config_bytes).hexdigest()
    layer_name = f"{diff_id.removeprefix('sha256:')}/layer.tar"
    manifest = [{"Config": f"{config_hex}.json", "RepoTags": list(tags), "Layers": [layer_name]}]
    manifest_bytes = json.dumps(manifest, separators=(",", ":")).encode()

    dest.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(dest, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in (
            (f"{config_hex}.json", config_bytes),
            (layer_name, layer),
            ("manifest.json", manifest_bytes),
        ):
            if "/" in name:
                tar.addfile(_tarinfo(name.split("/")[0] + "/", tarfile.DIRTYPE, 0o755))
            tar.addfile(_tarinfo(name, tarfile.REGTYPE, 0o644, len(data)), io.BytesIO(data))
    return "sha256:" + config_hex


# --------------------------------------------------------------------------
# Recipes and the cache
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ImageRecipe:
    """How to build one image.

    ``fingerprint`` must be cheap (hash sources and tool versions, do not
    compile): it decides whether the cached tar can be reused.
    ``entries`` gets a scratch directory and may be expensive.
    """

    name: str
    tags: tuple[str, ...]
    fingerprint: Callable[[], bytes]
    entries: Callable[[Path], list[LayerEntry]]
    config: ImageConfig

    def cache_key(self) -> str:
        """A key that changes whenever the image would: format, tags, config, arch, sources."""
        h = hashlib.sha256()
        for part in (
            ARCHIVE_FORMAT_VERSION.encode(),
            self.name.encode(),
            json.dumps(list(self.tags)).encode(),
            json.dumps(self.config.to_json(), sort_keys=True).encode(),
            _oci_arch().encode(),
            self.fingerprint(),
        ):
            h.update(len(part).to_bytes(8, "big"))
            h.update(part)
        return h.hexdigest()


@dataclass(frozen=True, slots=True)
class ImageTar:
    """A built image archive, ready to import, and the tags it carries."""

    name: str
    path: Path
    tags: tuple[str, ...]
    image_id: str
    cache_key: str
    cached: bool = field(default=False, compare=False)

    @property
    def ref(self) -> str:
        """The primary reference (first tag)."""
        return self.tags[0]


def _read_image_id(path: Path) -> str:
    with tarfile.open(path) as tar:
        member = tar.extractfile("manifest.json")
        if member is None:
            raise LabError(f"{path} has no manifest.json")
        manifest = json.loads(member.read())
    config_name = str(manifest[0]["Config"])
    return "sha256:" + config_name.removesuffix(".json")


def build_image(recipe: ImageRecipe, cache_dir: Path) -> ImageTar:
    """Build ``recipe`` into ``cache_dir``, or reuse the cached tar whose key matches."""
    key = recipe.cache_key()
    dest = cache_dir / f"{recipe.name}-{key[:24]}.tar"
    if dest.is_file():
        try:
            image_id = _read_image_id(dest)
        except (tarfile.TarError, OSError, ValueError, KeyError, IndexError):
            dest.unlink(missing_ok=True)
        else:
            return ImageTar(recipe.name, dest, recipe.tags, image_id, key, cached=True)

    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LabError(f"cannot create the image cache {cache_dir}: {exc}") from exc
    with tempfile.TemporaryDirectory(prefix=f"podlens-{recipe.name}-") as scratch:
        entries = recipe.entries(Path(scratch))
        # Written beside the destination and renamed, so a concurrent test
        # run never sees a half-written tar.
        tmp = cache_dir / f".{dest.name}.{os.getpid()}.tmp"
        try:
            image_id = write_docker_archive(tmp, recipe.tags, entries, recipe.config)
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
    return ImageTar(recipe.name, dest, recipe.tags, image_id, key, cached=False)


def build_images(
    cache_dir: Path | None = None, recipes: Sequence[ImageRecipe] | None = None
) -> list[ImageTar]:
    """Build (or reuse from the cache) every lab image."""
    directory = cache_dir if cache_dir is not None else default_cache_dir()
    return [build_image(r, directory) for r in (recipes or default_recipes())]


def import_images(ctr_address: str, tars: Iterable[ImageTar], *, timeout: float = 120.0) -> None:
    """Import image tars into the CRI namespace of the containerd at ``ctr_address``."""
    ctr = require_tool("ctr", "containerd")
    for image in tars:
        cmd = [ctr, "-a", ctr_address, "-n", "k8s.io", "images", "import", str(image.path)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            raise LabError(f"importing {image.ref} timed out after {timeout:.0f}s") from exc
        if proc.returncode != 0:
            raise LabError(
                f"importing {image.ref} from {image.path} failed "
                f"(exit {proc.returncode}): {(proc.stderr or proc.stdout).strip()}"
            )


# --------------------------------------------------------------------------
# The lab's images
# --------------------------------------------------------------------------


def require_tool(name: str, apt_package: str, why: str = "") -> str:
    """The path of ``name``; MissingTool naming the Debian package that has it otherwise."""
    found = shutil.which(name)
    if found is None:
        raise MissingTool(name, apt_package, why)
    return found


def _file_sha256(path: Path) -> bytes:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.digest()


def minimal_rootfs() -> list[LayerEntry]:
    """What a small distro-less image still needs for ordinary tools to behave."""
    return [
        LayerDir("tmp", 0o1777),
        LayerDir("root", 0o700),
        LayerDir("proc", 0o555),
        LayerDir("sys", 0o555),
        LayerDir("dev"),
        LayerDir("etc"),
        LayerDir("var"),
        LayerDir("var/run"),
        LayerFile(
            "etc/passwd",
            b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        ),
        LayerFile("etc/group", b"root:x:0:\nnobody:x:65534:\n"),
    ]


# Reaps orphans too: with a shared PID namespace pause is PID 1 of the pod.
PAUSE_SOURCE = b"""\
#include <signal.h>
#include <stddef.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_term(int sig) { (void)sig; _exit(0); }
static void on_chld(int sig) { (void)sig; while (waitpid(-1, NULL, WNOHANG) > 0) {} }

int main(void) {
    struct sigaction term = {0}, chld = {0};
    term.sa_handler = on_term;
    sigaction(SIGINT, &term, NULL);
    sigaction(SIGTERM, &term, NULL);
    chld.sa_handler = on_chld;
    chld.sa_flags = SA_NOCLDSTOP;
    sigaction(SIGCHLD, &chld, NULL);
    for (;;) pause();
    return 42;
}
"""

_GCC_ARGS = ("-static", "-O2", "-s", "-Wall", "-Werror")


def _gcc_version() -> bytes:
    gcc = require_tool("gcc", "gcc libc6-dev", "to build the pause binary")
    proc = subprocess.run([gcc, "--version"], capture_output=True, check=False)
    return proc.stdout


def _pause_fingerprint() -> bytes:
    return PAUSE_SOURCE + b"\0" + " ".join(_GCC_ARGS).encode() + b"\0" + _gcc_version()


def _pause_entries(scratch: Path) -> list[LayerEntry]:
    gcc = require_tool("gcc", "gcc libc6-dev", "to build the pause binary")
    src = scratch / "pause.c"
    out = scratch / "pause"
    src.write_bytes(PAUSE_SOURCE)
    proc = subprocess.run(
        [gcc, *_GCC_ARGS, "-o", str(out), str(src)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        hint = ""
        if "cannot find -lc" in proc.stderr:
            hint = " (static libc missing: apt-get install -y libc6-dev)"
        raise LabError(f"compiling the pause binary failed{hint}: {proc.stderr.strip()}")
    return [LayerFile("pause", out.read_bytes(), 0o755), LayerDir("dev"), LayerDir("proc")]


def pause_recipe() -> ImageRecipe:
    """The pause image: a small static C program that waits for signals and reaps children."""
    return ImageRecipe(
        name="pause",
        tags=(PAUSE_IMAGE, PAUSE_IMAGE_LAB_ALIAS),
        fingerprint=_pause_fingerprint,
        entries=_pause_entries,
        # Upstream's pause image runs as 65535 too; keeping it shows the
        # agent the same sandbox process owner as a real node.
        config=ImageConfig(env=(DEFAULT_PATH_ENV,), entrypoint=("/pause",), user="65535:65535"),
    )


BUSYBOX_PATH = Path("/bin/busybox")


def _busybox_binary() -> Path:
    if not BUSYBOX_PATH.is_file():
        raise MissingTool(str(BUSYBOX_PATH), "busybox-static", "the busybox image is made from it")
    return BUSYBOX_PATH


def _busybox_applets(binary: Path) -> list[str]:
    proc = subprocess.run([str(binary), "--list"], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise LabError(f"{binary} --list failed: {proc.stderr.strip()}")
    applets = sorted({a.strip() for a in proc.stdout.split() if a.strip()})
    # A dynamically linked busybox would not run in an image with no libc.
    if "sh" not in applets or "sleep" not in applets:
        raise MissingTool("a static busybox with sh and sleep", "busybox-static")
    return applets


def _busybox_fingerprint() -> bytes:
    return _file_sha256(_busybox_binary())


def _busybox_entries(_scratch: Path) -> list[LayerEntry]:
    binary = _busybox_binary()
    entries = minimal_rootfs()
    entries.append(LayerFile("bin/busybox", binary.read_bytes(), 0o755))
    # Like the upstream image: every applet lives in /bin.
    entries.extend(
        LayerSymlink(f"bin/{applet}", "busybox")
        for applet in _busybox_applets(binary)
        if applet != "busybox" and "/" not in applet
    )
    return entries


def busybox_recipe() -> ImageRecipe:
    """A busybox image from this machine's busybox-static."""
    return ImageRecipe(
        name="busybox",
        tags=(BUSYBOX_IMAGE, BUSYBOX_IMAGE_1_37),
        fingerprint=_busybox_fingerprint,
        entries=_busybox_entries,
        config=ImageConfig(env=(DEFAULT_PATH_ENV,), cmd=("sh",)),
    )


NGINX_BINARY = Path("/usr/sbin/nginx")
NGINX_MIME_TYPES = Path("/etc/nginx/mime.types")
NGINX_WELCOME_PAGE = Path("/usr/share/nginx/html/index.html")

# The main config stays generic and pulls the server from conf.d, the layout
# people know from the upstream image, so a mounted default.conf replaces it.
# No "daemon off;" here: the image's command passes it with -g, and nginx
# refuses a directive given twice.
NGINX_CONF = b"""\
user www-data;
# One worker keeps a lab node with a dozen nginx pods small.
worker_processes 1;
error_log /var/log/nginx/error.log notice;
pid /run/nginx.pid;

events {
    worker_connections 1024;
}

http {
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    log_format main '$remote_addr - $remote_user [$time_local] "$request" '
                    '$status $body_bytes_sent "$http_referer" '
                    '"$http_user_agent" "$http_x_forwarded_for"';
    # Real files, not /dev/stdout: a sidecar sharing /var/log/nginx reads them.
    access_log /var/log/nginx/access.log main;
    sendfile on;
    keepalive_timeout 65;
    include /etc/nginx/conf.d/*.conf;
}
"""

NGINX_DEFAULT_SERVER = b"""\
server {
    listen 80;
    listen [::]:80;
    server_name localhost;

    location / {
        root /usr/share/nginx/html;
        index index.html index.htm;
    }

    error_page 500 502 503 504 /50x.html;
    location = /50x.html {
        root /usr/share/nginx/html;
    }
}
"""

NGINX_ERROR_PAGE = b"""\
<!DOCTYPE html>
<html>
<head><title>Error</title></head>
<body>
<h1>An error occurred.</h1>
<p>The page you are looking for is currently unavailable.</p>
</body>
</html>
"""

# glibc 2.34+ has the "files" service built in, so no libnss_* is needed.
NSSWITCH_CONF = b"passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n"


def _nginx_binary() -> Path:
    if not NGINX_BINARY.is_file():
        raise MissingTool(str(NGINX_BINARY), "nginx", "the nginx image is made from it")
    return NGINX_BINARY


def shared_libraries(binary: Path) -> list[Path]:
    """The dynamic loader and every library ``binary`` links, as the loader finds them.

    Paths are the ones ``ldd`` prints (symlinks included), since those are
    the names the loader looks up inside the image too.
    """
    ldd = require_tool("ldd", "libc-bin")
    proc = subprocess.run([ldd, str(binary)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise LabError(f"ldd {binary} failed: {(proc.stderr or proc.stdout).strip()}")
    found: list[Path] = []
    missing: list[str] = []
    for line in proc.stdout.splitlines():
        line = line.strip()
        if not line or line.startswith("linux-vdso") or line.startswith("linux-gate"):
            continue
        name, arrow, rest = line.partition("=>")
        target = (rest if arrow else name).strip().split(" (", 1)[0].strip()
        if target == "not found" or not target.startswith("/"):
            missing.append(name.strip())
            continue
        found.append(Path(target))
    if missing:
        raise LabError(f"{binary} links libraries this machine lacks: {', '.join(missing)}")
    if not any("ld-linux" in p.name or p.name.startswith("ld-") for p in found):
        raise LabError(f"ldd {binary} named no dynamic loader; is it statically linked?")
    return sorted(set(found))


def _nginx_inputs() -> list[tuple[str, Path]]:
    """(path in the image, file on this machine) for every host file the image copies."""
    binary = _nginx_binary()
    for needed, why in ((NGINX_MIME_TYPES, "its mime.types"), (NGINX_WELCOME_PAGE, "its page")):
        if not needed.is_file():
            raise MissingTool(str(needed), "nginx", f"the nginx image copies {why}")
    inputs = [(str(binary), binary), (str(NGINX_MIME_TYPES), NGINX_MIME_TYPES)]
    inputs.append((str(NGINX_WELCOME_PAGE), NGINX_WELCOME_PAGE))
    inputs += [(str(lib), lib) for lib in shared_libraries(binary)]
    return inputs


def _nginx_fingerprint() -> bytes:
    h = hashlib.sha256()
    for inside, source in _nginx_inputs():
        h.update(inside.encode() + b"\0" + _file_sha256(source))
    h.update(_busybox_fingerprint())
    for text in (NGINX_CONF, NGINX_DEFAULT_SERVER, NGINX_ERROR_PAGE, NSSWITCH_CONF):
        h.update(hashlib.sha256(text).digest())
    return h.digest()


def _nginx_entries(_scratch: Path) -> list[LayerEntry]:
    # /etc/passwd and /etc/group come from here, with the worker's user.
    entries = [e for e in minimal_rootfs() if e.path not in ("etc/passwd", "etc/group")]
    entries += [
        LayerFile(
            "etc/passwd",
            b"root:x:0:0:root:/root:/bin/sh\n"
            b"www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin\n"
            b"nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
        ),
        LayerFile("etc/group", b"root:x:0:\nwww-data:x:33:\nnobody:x:65534:\n"),
        LayerFile("etc/nsswitch.conf", NSSWITCH_CONF),
        LayerFile("etc/nginx/nginx.conf", NGINX_CONF),
        LayerFile("etc/nginx/conf.d/default.conf", NGINX_DEFAULT_SERVER),
        LayerFile("usr/share/nginx/html/50x.html", NGINX_ERROR_PAGE),
        # The master (root) creates the temp dirs below and hands them to
        # the worker user; logs are opened by the master before it forks.
        LayerDir("var/lib/nginx"),
        LayerDir("var/log/nginx"),
        LayerDir("var/cache/nginx"),
        LayerDir("run"),
    ]
    for inside, source in _nginx_inputs():
        # Read through symlinks: the image holds a plain file under each name.
        entries.append(LayerFile(inside, source.read_bytes(), source.stat().st_mode & 0o755))
    # A shell and the usual tools, so `exec -c nginx -- sh` and wget work,
    # as they do in the upstream image.
    busybox = _busybox_binary()
    entries.append(LayerFile("bin/busybox", busybox.read_bytes(), 0o755))
    entries.extend(
        LayerSymlink(f"bin/{applet}", "busybox")
        for applet in _busybox_applets(busybox)
        if applet != "busybox" and "/" not in applet
    )
    return entries


def nginx_recipe() -> ImageRecipe:
    """nginx from this machine's Debian package, serving the welcome page on port 80."""
    return ImageRecipe(
        name="nginx",
        tags=(NGINX_IMAGE, NGINX_IMAGE_1_27),
        fingerprint=_nginx_fingerprint,
        entries=_nginx_entries,
        config=ImageConfig(
            env=(DEFAULT_PATH_ENV,),
            cmd=("nginx", "-g", "daemon off;"),
            # SIGQUIT lets nginx finish the requests in flight.
            stop_signal="SIGQUIT",
            exposed_ports=("80/tcp",),
        ),
    )


def default_recipes() -> list[ImageRecipe]:
    """The images the tests need: pause and busybox."""
    return [pause_recipe(), busybox_recipe()]


def lab_node_recipes() -> list[ImageRecipe]:
    """Every image the lab node offers to its pods (needs the nginx package)."""
    return [*default_recipes(), nginx_recipe()]
