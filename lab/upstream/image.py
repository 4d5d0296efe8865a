"""The agent's image, built from the project's own Dockerfile with buildah, and its import.

No registry is reachable and there is no Docker engine. The base image the
Dockerfile names (``python:3.11.11-slim-bookworm``) is therefore made here as
a stand-in: a Debian bookworm root filesystem (debootstrap, from the mirror
apt already uses) with Debian's python3, which is 3.11.2, not 3.11.11. It is
tagged with the Dockerfile's base name in a buildah storage of the lab's own
under ``/var/cache/podlens/agent-image``. The Dockerfile is built on it as
written, except that a base pinned by digest is named by its tag in a copy
(no stand-in can have the upstream digest); its builder stage installs the
dependencies from PyPI. The result leaves as a docker-archive tar that
``ctr -n k8s.io images import`` takes. The stand-in is cached by a key of the
Debian release and its package list, the build by buildah's layer cache, the
tar by image ID.

Owns the stand-in base, the build, the archive and its import into a
containerd. Imports ``lab.errors``, ``require_tool`` from ``lab.images`` and
the standard library.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import tarfile
import time
import tomllib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from lab.errors import LabError, MissingTool, NotRoot
from lab.images import require_tool

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CACHE_DIR = Path("/var/cache/podlens/agent-image")
# buildah's run root holds locks and mount state that must not outlive a
# reboot, so it goes to /run, not into the cache.
DEFAULT_RUN_ROOT = Path("/run/podlens/agent-image/buildah")

BASE_IMAGE = "docker.io/library/python:3.11.11-slim-bookworm"
BASE_RELEASE = "bookworm"
BASE_PACKAGES = ("python3", "python3-venv", "python3-pip", "ca-certificates")
# Bumped whenever the way the stand-in is made changes, so a stale one is
# never reused.
BASE_RECIPE_VERSION = "1"
# Every stand-in is also tagged here under its cache key; the key tag is how
# a later build finds it without debootstrap.
BASE_KEY_REPOSITORY = "localhost/podlens/python-stand-in"
DEBIAN_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
DEFAULT_MIRROR = "http://deb.debian.org/debian"

# `image: podlens` in daemonset/ (tag from kustomization.yaml's newTag) is
# what kubelet asks the runtime for, and the runtime normalizes it to this.
AGENT_REPOSITORY = "docker.io/library/podlens"
# The host's trust store, lent to the build's RUN steps (never committed):
# pip in the builder stage must trust whatever the host trusts to reach
# PyPI, a TLS-inspecting proxy's CA included.
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")

DEBOOTSTRAP_TIMEOUT = 1200.0
BUILD_TIMEOUT = 1800.0
SHORT_TIMEOUT = 300.0
ERROR_TAIL_LINES = 25

Isolation = Literal["oci", "chroot"]


@dataclass(frozen=True, slots=True)
class BaseImage:
    """The stand-in base image in buildah's storage."""

    ref: str
    image_id: str
    digest: str
    key: str
    python_version: str
    cached: bool
    seconds: float


@dataclass(frozen=True, slots=True)
class AgentImage:
    """The built agent image: its archive, the reference inside it and how it was made."""

    tar: Path
    ref: str
    image_id: str
    version: str
    base: BaseImage
    # The upstream base digest the Dockerfile pins, which the stand-in
    # replaced ("" when it pins none).
    pinned_base_digest: str
    size_bytes: int
    build_seconds: float
    tar_cached: bool
    log: Path


@dataclass(frozen=True, slots=True)
class Buildah:
    """buildah pointed at the lab's own storage, so /var/lib/containers is never touched."""

    binary: str
    root: Path
    run_root: Path
    storage_driver: str
    log: Path

    @classmethod
    def at(cls, cache_dir: Path, storage_driver: str = "overlay") -> Buildah:
        """buildah with its storage (one per driver) under ``cache_dir``."""
        binary = require_tool("buildah", "buildah", "to build the agent's image")
        return cls(
            binary=binary,
            root=cache_dir / "buildah" / storage_driver,
            # One run root per storage: two stores must not share its locks.
            run_root=DEFAULT_RUN_ROOT
            / hashlib.sha256(str(cache_dir.resolve()).encode()).hexdigest()[:12]
            / storage_driver,
            storage_driver=storage_driver,
            log=cache_dir / "build.log",
        )

    def argv(self, *args: str) -> list[str]:
        """A buildah command line with the storage options in front."""
        return [
            self.binary,
            "--root",
            str(self.root),
            "--runroot",
            str(self.run_root),
            "--storage-driver",
            self.storage_driver,
            *args,
        ]

    def call(self, *args: str, what: str, timeout: float = SHORT_TIMEOUT) -> str:
        """Run a buildah subcommand, its output going to the log; LabError naming it on failure."""
        return run_logged(self.argv(*args), what=what, log=self.log, timeout=timeout)

    def query(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run a buildah subcommand that only reads, capturing its output."""
        return subprocess.run(
            self.argv(*args), capture_output=True, text=True, timeout=SHORT_TIMEOUT, check=False
        )

    def image_id(self, ref: str) -> str | None:
        """The full ID of the image ``ref`` names in this storage, or None."""
        proc = self.query("inspect", "--type", "image", "--format", "{{.FromImageID}}", ref)
        image_id = proc.stdout.strip()
        return image_id if proc.returncode == 0 and image_id else None

    def image_digest(self, ref: str) -> str:
        """The manifest digest of the image ``ref`` names in this storage ("" if unknown)."""
        proc = self.query("inspect", "--type", "image", "--format", "{{.FromImageDigest}}", ref)
        return proc.stdout.strip() if proc.returncode == 0 else ""


# --------------------------------------------------------------------------
# Running commands
# --------------------------------------------------------------------------


def _tail(text: str, lines: int = ERROR_TAIL_LINES) -> str:
    kept = [line for line in text.splitlines() if line.strip()][-lines:]
    return "\n".join("    " + line for line in kept) if kept else "    (no output)"


def run_logged(
    argv: Sequence[str],
    *,
    what: str,
    log: Path,
    timeout: float,
    cwd: Path | None = None,
) -> str:
    """Run ``argv`` with its output appended to ``log``; returns that output.

    Fails with a LabError naming ``what``, the command and the last lines of
    its output; the whole output stays in ``log``.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    command = shlex.join(argv)
    with log.open("ab") as out:
        out.write(f"\n==== {time.strftime('%Y-%m-%dT%H:%M:%S')} {what}\n$ {command}\n".encode())
        out.flush()
        start = out.tell()
        try:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                # Its own process group: on a timeout the whole tree goes
                # (debootstrap's dpkg, buildah's runtime), not just the parent.
                start_new_session=True,
            )
        except OSError as exc:
            raise LabError(f"{what} failed: cannot run {command}: {exc}") from exc
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            code = None
    with log.open("rb") as f:
        f.seek(start)
        output = f.read().decode(errors="replace")
    if code is None:
        raise LabError(
            f"{what} timed out after {timeout:.0f}s: {command}\n{_tail(output)}\n"
            f"(full output in {log})"
        )
    if code != 0:
        raise LabError(
            f"{what} failed (exit {code}): {command}\n{_tail(output)}\n(full output in {log})"
        )
    return output


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """Serialize builds: two test runs must not debootstrap or push the same tar at once."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _rotate(log: Path, limit: int = 8 << 20) -> None:
    """Keep the build log to this build and the last few: each appends to it."""
    with contextlib.suppress(OSError):
        if log.stat().st_size > limit:
            os.replace(log, log.with_name(log.name + ".1"))


def _require_root(why: str) -> None:
    if os.geteuid() != 0:
        raise NotRoot(f"{why} needs root (debootstrap and a rootful buildah storage)")


# --------------------------------------------------------------------------
# The stand-in base image
# --------------------------------------------------------------------------


def base_key(release: str = BASE_RELEASE, packages: Sequence[str] = BASE_PACKAGES) -> str:
    """The stand-in's cache key: recipe version, Debian release, package list, architecture."""
    parts = [BASE_RECIPE_VERSION, release, " ".join(sorted(packages)), os.uname().machine]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:24]


def _apt_source_lines() -> Iterator[tuple[str, list[str], list[str]]]:
    """(URI, suites, components) of every ``deb`` source apt is configured with."""
    files = [Path("/etc/apt/sources.list")]
    parts = Path("/etc/apt/sources.list.d")
    if parts.is_dir():
        files += sorted(parts.iterdir())
    for path in files:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        if path.suffix == ".sources":
            for stanza in re.split(r"\n\s*\n", text):
                fields: dict[str, str] = {}
                for line in stanza.splitlines():
                    if line.startswith("#") or ":" not in line:
                        continue
                    name, _, value = line.partition(":")
                    fields[name.strip().lower()] = value.strip()
                if "deb" not in fields.get("types", "").split():
                    continue
                suites = fields.get("suites", "").split()
                components = fields.get("components", "").split()
                for uri in fields.get("uris", "").split():
                    yield uri, suites, components
        elif path.name == "sources.list" or path.suffix == ".list":
            for line in text.splitlines():
                words = re.sub(r"\[[^]]*\]", " ", line.split("#", 1)[0]).split()
                if len(words) >= 3 and words[0] == "deb":
                    yield words[1], [words[2]], words[3:]


def debian_mirror(release: str = BASE_RELEASE) -> str:
    """The Debian mirror apt on this machine uses for ``release`` main."""
    for uri, suites, components in _apt_source_lines():
        if release in suites and "main" in components and "security" not in uri:
            return uri.rstrip("/")
    return DEFAULT_MIRROR


def _security_mirror(mirror: str, release: str) -> str:
    for uri, suites, _components in _apt_source_lines():
        if f"{release}-security" in suites:
            return uri.rstrip("/")
    return mirror.removesuffix("/debian") + "/debian-security"


# Run inside the new root filesystem, in a mount namespace of its own so
# nothing mounted there (proc) outlives it. Pulls in the release's updates
# and security fixes, which debootstrap alone does not see, and then
# trims what the slim images trim too: package lists and caches, logs,
# manuals and documentation (but not the copyright files), locales.
_FINISH_SCRIPT = """\
set -eu
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get -y -qq -o Dpkg::Options::=--force-confold upgrade
apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/debconf/*-old
rm -rf /var/log/apt /var/log/bootstrap.log /var/log/dpkg.log /var/log/alternatives.log
rm -rf /usr/share/man/* /usr/share/info/* /usr/share/groff /usr/share/lintian /usr/share/linda
find /usr/share/locale -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
find /usr/share/doc -type f ! -name copyright -delete
find /usr/share/doc -type d -empty -delete
"""


def _write_sources(rootfs: Path, mirror: str, security: str, release: str) -> None:
    (rootfs / "etc/apt/sources.list").unlink(missing_ok=True)
    keyring = "/usr/share/keyrings/debian-archive-keyring.gpg"
    (rootfs / "etc/apt/sources.list.d/debian.sources").write_text(
        f"Types: deb\nURIs: {mirror}\nSuites: {release} {release}-updates\n"
        f"Components: main\nSigned-By: {keyring}\n\n"
        f"Types: deb\nURIs: {security}\nSuites: {release}-security\n"
        f"Components: main\nSigned-By: {keyring}\n"
    )


def _make_rootfs(
    rootfs: Path, *, release: str, packages: Sequence[str], mirror: str, log: Path
) -> str:
    """debootstrap into ``rootfs`` and finish it as a python base; returns its Python version."""
    debootstrap = require_tool("debootstrap", "debootstrap", "to make the stand-in base image")
    unshare = require_tool("unshare", "util-linux")
    if not DEBIAN_KEYRING.is_file():
        raise MissingTool(
            str(DEBIAN_KEYRING), "debian-archive-keyring", "debootstrap checks with it"
        )
    run_logged(
        [
            unshare,
            "--mount",
            "--propagation",
            "private",
            debootstrap,
            "--variant=minbase",
            f"--include={','.join(packages)}",
            "--components=main",
            f"--keyring={DEBIAN_KEYRING}",
            release,
            str(rootfs),
            mirror,
        ],
        what=f"debootstrap of Debian {release} for the stand-in base image",
        log=log,
        timeout=DEBOOTSTRAP_TIMEOUT,
    )
    _write_sources(rootfs, mirror, _security_mirror(mirror, release), release)
    # debootstrap copied the host's resolver config, which apt needs here;
    # it and the host's name are removed below (the runtime provides both).
    if not (rootfs / "etc/resolv.conf").exists():
        shutil.copyfile("/etc/resolv.conf", rootfs / "etc/resolv.conf")
    chroot = require_tool("chroot", "coreutils")
    run_logged(
        [
            unshare,
            "--mount",
            "--propagation",
            "private",
            "--pid",
            "--fork",
            f"--mount-proc={rootfs / 'proc'}",
            chroot,
            str(rootfs),
            "/bin/sh",
            "-c",
            _FINISH_SCRIPT,
        ],
        what="updating and trimming the stand-in base image",
        log=log,
        timeout=DEBOOTSTRAP_TIMEOUT,
    )
    for name in ("etc/resolv.conf", "etc/hostname"):
        (rootfs / name).unlink(missing_ok=True)
    # The Dockerfile runs `python`, and the virtualenv it makes in one stage
    # points at the interpreter by this path in the other: it must be the
    # same path in both, as in the upstream image.
    for name in ("python", "python3"):
        link = rootfs / "usr/local/bin" / name
        link.unlink(missing_ok=True)
        link.symlink_to("/usr/bin/python3")
    version = run_logged(
        [
            chroot,
            str(rootfs),
            "/usr/local/bin/python",
            "-c",
            "import platform; print(platform.python_version())",
        ],
        what="checking the stand-in's python",
        log=log,
        timeout=SHORT_TIMEOUT,
    )
    return version.strip().splitlines()[-1] if version.strip() else "unknown"


def ensure_base_image(
    buildah: Buildah,
    *,
    ref: str = BASE_IMAGE,
    release: str = BASE_RELEASE,
    packages: Sequence[str] = BASE_PACKAGES,
    mirror: str | None = None,
) -> BaseImage:
    """The stand-in for ``ref`` in buildah's storage: reused when its key matches, else made."""
    t0 = time.monotonic()
    key = base_key(release, packages)
    key_ref = f"{BASE_KEY_REPOSITORY}:{key}"
    found = buildah.image_id(key_ref)
    if found is not None:
        # The key tag is what proves the recipe; the name the Dockerfile
        # uses may have been moved or removed, so it is set again.
        if buildah.image_id(ref) != found:
            buildah.call("tag", key_ref, ref, what=f"tagging the stand-in as {ref}")
        python = _label(buildah, key_ref, "podlens.lab.stand-in.python")
        return BaseImage(
            ref,
            found,
            buildah.image_digest(key_ref),
            key,
            python,
            cached=True,
            seconds=time.monotonic() - t0,
        )

    _require_root("making the stand-in base image")
    source = mirror or debian_mirror(release)
    # Named, so a container left by a run that was killed outright is found
    # and removed here (the lock keeps any other build out meanwhile).
    container = f"podlens-stand-in-{key[:12]}"
    buildah.query("rm", container)
    buildah.call(
        "from", "--name", container, "scratch", what="creating the stand-in's working container"
    )
    try:
        mountpoint = buildah.call(
            "mount", container, what="mounting the stand-in's root filesystem"
        )
        rootfs = Path(mountpoint.strip().splitlines()[-1])
        python = _make_rootfs(
            rootfs, release=release, packages=packages, mirror=source, log=buildah.log
        )
        buildah.call("umount", container, what="unmounting the stand-in's root filesystem")
        buildah.call(
            "config",
            "--env",
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "--env",
            "LANG=C.UTF-8",
            "--cmd",
            '["python3"]',
            "--label",
            f"podlens.lab.stand-in.for={ref}",
            "--label",
            f"podlens.lab.stand-in.python={python}",
            "--label",
            f"podlens.lab.stand-in.debian={release} {' '.join(packages)}",
            container,
            what="configuring the stand-in base image",
        )
        buildah.call(
            "commit",
            "--rm",
            "--format",
            "docker",
            container,
            key_ref,
            what="committing the stand-in base image",
        )
    except BaseException:
        buildah.query("rm", container)
        raise
    buildah.call("tag", key_ref, ref, what=f"tagging the stand-in as {ref}")
    _drop_old_bases(buildah, keep=key_ref)
    image_id = buildah.image_id(key_ref)
    if image_id is None:
        raise LabError(f"the stand-in {key_ref} was committed but buildah does not list it")
    return BaseImage(
        ref,
        image_id,
        buildah.image_digest(key_ref),
        key,
        python,
        cached=False,
        seconds=time.monotonic() - t0,
    )


def _label(buildah: Buildah, ref: str, name: str) -> str:
    proc = buildah.query("inspect", "--type", "image", ref)
    if proc.returncode != 0:
        return "unknown"
    try:
        labels = json.loads(proc.stdout)["Docker"]["config"]["Labels"] or {}
    except (ValueError, KeyError, TypeError):
        return "unknown"
    return str(labels.get(name, "unknown"))


def _drop_old_bases(buildah: Buildah, keep: str) -> None:
    """Untag stand-ins of earlier recipes; their layers go with the next prune."""
    proc = buildah.query("images", "--format", "{{.Name}}:{{.Tag}}", BASE_KEY_REPOSITORY)
    for name in proc.stdout.split():
        if name.startswith(BASE_KEY_REPOSITORY + ":") and name != keep:
            buildah.query("rmi", name)


# --------------------------------------------------------------------------
# The agent image
# --------------------------------------------------------------------------


def project_version(context: Path = PROJECT_ROOT) -> str:
    """The version in pyproject.toml, which the image's tag and its version label carry."""
    try:
        with (context / "pyproject.toml").open("rb") as f:
            return str(tomllib.load(f)["project"]["version"])
    except (OSError, tomllib.TOMLDecodeError, KeyError) as exc:
        raise LabError(
            f"cannot read the project version from {context / 'pyproject.toml'}: {exc}"
        ) from exc


def normalize_ref(ref: str) -> str:
    """``podlens:0.1.0`` -> ``docker.io/library/podlens:0.1.0``, as containerd names images."""
    name = ref.split("@", 1)[0]
    first, slash, _rest = name.partition("/")
    if not slash:
        ref = "docker.io/library/" + ref
    elif "." not in first and ":" not in first and first != "localhost":
        ref = "docker.io/" + ref
    last = ref.rsplit("/", 1)[-1]
    if ":" not in last and "@" not in last:
        ref += ":latest"
    return ref


def _from_image(words: list[str]) -> tuple[str, str]:
    """(image word, stage name or "") of a FROM line split into words."""
    args = [w for w in words[1:] if not w.startswith("--")]
    stage = args[2].lower() if len(args) >= 3 and args[1].upper() == "AS" else ""
    return args[0], stage


def dockerfile_bases(dockerfile: Path) -> list[str]:
    """The images the Dockerfile's FROM lines name, normalized (stage names left out)."""
    try:
        text = dockerfile.read_text()
    except OSError as exc:
        raise LabError(f"cannot read {dockerfile}: {exc}") from exc
    stages: set[str] = set()
    bases: list[str] = []
    for line in text.splitlines():
        words = line.split()
        if len(words) < 2 or words[0].upper() != "FROM":
            continue
        image, stage = _from_image(words)
        if image.lower() not in stages and image != "scratch":
            bases.append(normalize_ref(image))
        if stage:
            stages.add(stage)
    return bases


def stand_in_dockerfile(dockerfile: Path, stand_in: str, dest: Path) -> tuple[Path, str]:
    """The Dockerfile to build on the stand-in, and the base digest it pins ("" if none).

    A pinned digest names the upstream image's bytes, which a locally made
    stand-in cannot have: such FROM lines are written to ``dest`` with the
    digest dropped, the rest of the file unchanged.
    """
    pinned = ""
    for base in dockerfile_bases(dockerfile):
        name, _, digest = base.partition("@")
        if name != stand_in:
            raise LabError(
                f"{dockerfile} is based on {base}, but the lab can only stand in for {stand_in}"
            )
        pinned = pinned or digest
    if not pinned:
        return dockerfile, ""
    lines = []
    for line in dockerfile.read_text().splitlines(keepends=True):
        words = line.split()
        if len(words) >= 2 and words[0].upper() == "FROM":
            image, _stage = _from_image(words)
            if "@" in image:
                line = line.replace(image, image.split("@", 1)[0], 1)
        lines.append(line)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text("".join(lines))
    return dest, pinned


def _read_tar_id(path: Path) -> str | None:
    try:
        with tarfile.open(path) as tar:
            member = tar.extractfile("manifest.json")
            if member is None:
                return None
            manifest = json.loads(member.read())
        return "sha256:" + str(manifest[0]["Config"]).removesuffix(".json")
    except (OSError, tarfile.TarError, ValueError, KeyError, IndexError):
        return None


def build_agent_image(
    *,
    context: Path = PROJECT_ROOT,
    cache_dir: Path = DEFAULT_CACHE_DIR,
    version: str | None = None,
    storage_driver: str = "overlay",
    isolation: Isolation = "oci",
    mirror: str | None = None,
) -> AgentImage:
    """Build the agent's image from ``context``'s Dockerfile into a docker-archive tar.

    The tar is ``<cache_dir>/images/podlens-<version>-<id>.tar`` and carries
    one tag, ``docker.io/library/podlens:<version>``: what daemonset/'s
    ``image: podlens`` with the kustomization's tag resolves to.
    ``isolation="oci"`` runs the RUN steps in runc (crun refuses a cgroup v1
    hybrid host); ``"chroot"`` needs no runtime at all.
    """
    _require_root("building the agent's image")
    version = version or project_version(context)
    ref = f"{AGENT_REPOSITORY}:{version}"
    buildah = Buildah.at(cache_dir, storage_driver)
    runc = (
        require_tool("runc", "runc", "buildah runs the build's steps in it")
        if isolation == "oci"
        else ""
    )

    with _exclusive(cache_dir / ".lock"):
        # Timed from here: waiting for another build is not building.
        t0 = time.monotonic()
        _rotate(buildah.log)
        dockerfile, pinned = stand_in_dockerfile(
            context / "Dockerfile", BASE_IMAGE, cache_dir / "Dockerfile.stand-in"
        )
        base = ensure_base_image(buildah, mirror=mirror)
        iid_file = cache_dir / f".image-id.{os.getpid()}"
        args = [
            "build",
            "--format",
            "docker",
            "--layers",
            # A failed step must not leave its container (and its mount).
            "--force-rm",
            "--pull=never",
            "--isolation",
            isolation,
            # buildah would otherwise create /etc/cni/net.d on the host.
            "--cni-config-dir",
            str(cache_dir / "buildah" / "cni"),
            "--build-arg",
            f"VERSION={version}",
            "--iidfile",
            str(iid_file),
            "-t",
            ref,
            "-f",
            str(dockerfile),
        ]
        if pinned:
            # The Dockerfile's label names the upstream digest; this image
            # is built on the stand-in, and says so.
            args += ["--label", f"org.opencontainers.image.base.digest={base.digest}"]
        ignore = context / ".dockerignore"
        if ignore.is_file():
            # The Dockerfile may be a rewritten copy outside the context,
            # beside which buildah would not look for the ignore file.
            args += ["--ignorefile", str(ignore)]
        if isolation == "oci":
            # The host's network: no bridge, no firewall rules, nothing to
            # clean up afterwards (buildah's default makes a cni-podman0).
            args += ["--runtime", runc, "--network", "host"]
        if HOST_CA_BUNDLE.is_file():
            args += ["--volume", f"{HOST_CA_BUNDLE}:{HOST_CA_BUNDLE}:ro"]
        started = time.time()
        try:
            output = buildah.call(
                *args, str(context), what="building the agent's image", timeout=BUILD_TIMEOUT
            )
            image_id = iid_file.read_text().strip()
        except OSError as exc:
            raise LabError(f"buildah built the agent's image but wrote no image ID: {exc}") from exc
        finally:
            iid_file.unlink(missing_ok=True)
        if not image_id.startswith("sha256:"):
            image_id = "sha256:" + image_id
        build_seconds = time.monotonic() - t0
        _prune_stale(buildah, started, output)

        images = cache_dir / "images"
        images.mkdir(parents=True, exist_ok=True)
        dest = images / f"podlens-{version}-{image_id.removeprefix('sha256:')[:16]}.tar"
        tar_cached = _read_tar_id(dest) == image_id
        if not tar_cached:
            tmp = images / f".{dest.name}.{os.getpid()}.tmp"
            tmp.unlink(missing_ok=True)
            try:
                buildah.call(
                    "push",
                    ref,
                    f"docker-archive:{tmp}:{ref}",
                    what=f"writing {ref} to a docker-archive tar",
                )
                os.replace(tmp, dest)
            finally:
                tmp.unlink(missing_ok=True)
            # One archive per version is enough; older builds' go.
            for old in images.glob(f"podlens-{version}-*.tar"):
                if old != dest:
                    old.unlink(missing_ok=True)
    return AgentImage(
        tar=dest,
        ref=ref,
        image_id=image_id,
        version=version,
        base=base,
        pinned_base_digest=pinned,
        size_bytes=_image_size(dest),
        build_seconds=build_seconds,
        tar_cached=tar_cached,
        log=buildah.log,
    )


def _image_size(tar: Path) -> int:
    """The image's uncompressed size: the sum of its layer tars."""
    try:
        with tarfile.open(tar) as archive:
            member = archive.extractfile("manifest.json")
            if member is None:
                return tar.stat().st_size
            layers = json.loads(member.read())[0]["Layers"]
            return sum(archive.getmember(str(name)).size for name in layers)
    except (OSError, tarfile.TarError, ValueError, KeyError, IndexError):
        return tar.stat().st_size


# buildah's progress lines name every step's image: "--> 1a2b3c4d5e6" for
# one it made, "--> Using cache <full ID>" for one it reused.
_STEP_IMAGE = re.compile(r"^--> (?:Using cache )?([0-9a-f]{11,64})\s*$", re.MULTILINE)


def _prune_stale(buildah: Buildah, started: float, output: str) -> None:
    """Remove untagged images no longer in any step's cache chain.

    Every change to the sources leaves the previous build's steps behind
    (a few hundred MB each time). Kept: tagged images, images this build
    made (created since it started) and those it reused from the cache, so
    the next build with the same inputs is still served from the cache.
    """
    used = _STEP_IMAGE.findall(output)
    listing = buildah.query("images", "--all", "--json", "--no-trunc")
    try:
        images = json.loads(listing.stdout or "[]") if listing.returncode == 0 else []
    except ValueError:
        return
    for image in images:
        image_id = str(image.get("id", "")).removeprefix("sha256:")
        if not image_id or image.get("names"):
            continue
        # Image times have whole-second resolution.
        if int(image.get("created", 0)) >= int(started) - 1:
            continue
        # A new step's ID is printed shortened, a reused one in full.
        if any(image_id.startswith(prefix) for prefix in used):
            continue
        buildah.query("rmi", image_id)


def prune(cache_dir: Path = DEFAULT_CACHE_DIR, storage_driver: str = "overlay") -> None:
    """Free what earlier builds left in buildah's storage: untagged images and their layers.

    The next build then installs the dependencies again; the stand-in stays.
    """
    _require_root("pruning the image cache")
    buildah = Buildah.at(cache_dir, storage_driver)
    with _exclusive(cache_dir / ".lock"):
        buildah.call("rmi", "--prune", what="pruning buildah's storage")


# --------------------------------------------------------------------------
# Import into a containerd
# --------------------------------------------------------------------------


def archive_tags(tar: Path) -> list[str]:
    """The references a docker-archive tar carries (its manifest's RepoTags), normalized."""
    try:
        with tarfile.open(tar) as archive:
            member = archive.extractfile("manifest.json")
            if member is None:
                raise LabError(f"{tar} has no manifest.json: not a docker-archive")
            manifest = json.loads(member.read())
    except (OSError, tarfile.TarError, ValueError) as exc:
        raise LabError(f"cannot read the image archive {tar}: {exc}") from exc
    return [normalize_ref(str(t)) for entry in manifest for t in entry.get("RepoTags") or []]


def containerd_images(ctr: str, address: str, *, namespace: str = "k8s.io") -> list[str]:
    """The image names ``ctr images ls`` lists in ``namespace``."""
    argv = [ctr, "-a", address, "-n", namespace, "images", "ls", "-q"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=SHORT_TIMEOUT, check=False)
    if proc.returncode != 0:
        raise LabError(
            f"listing images failed (exit {proc.returncode}): {shlex.join(argv)}\n"
            f"{_tail(proc.stderr or proc.stdout)}"
        )
    return proc.stdout.split()


def import_image(
    ctr: str,
    address: str,
    tar: Path,
    *,
    namespace: str = "k8s.io",
    timeout: float = 600.0,
) -> list[str]:
    """Import ``tar`` into the containerd at ``address``; returns the names it now lists for it.

    Fails unless every tag in the archive is listed afterwards.
    """
    expected = archive_tags(tar)
    if not expected:
        raise LabError(f"{tar} carries no tag; containerd would import it nameless")
    argv = [ctr, "-a", address, "-n", namespace, "images", "import", str(tar)]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise LabError(
            f"importing {tar} timed out after {timeout:.0f}s: {shlex.join(argv)}"
        ) from exc
    if proc.returncode != 0:
        raise LabError(
            f"importing {tar} failed (exit {proc.returncode}): {shlex.join(argv)}\n"
            f"{_tail(proc.stderr or proc.stdout)}"
        )
    listed = containerd_images(ctr, address, namespace=namespace)
    missing = [ref for ref in expected if ref not in listed]
    if missing:
        raise LabError(
            f"after importing {tar}, containerd at {address} does not list {missing} "
            f"in namespace {namespace}"
        )
    return expected
