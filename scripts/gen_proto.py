"""Regenerate the committed Python modules of ``cri_proto`` from ``cri_proto/api.proto``.

    python scripts/gen_proto.py          # rewrite the generated files in place
    python scripts/gen_proto.py --check  # regenerate into a temp dir; exit 1 on any difference

The output depends on the generator versions, so both tools must be installed
at exactly the versions pinned in pyproject's ``dev`` extra; anything else is
refused (exit 2) rather than producing a silently different file.
"""

from __future__ import annotations

import argparse
import difflib
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PROTO = "cri_proto/api.proto"
GENERATED = (
    "cri_proto/api_pb2.py",
    "cri_proto/api_pb2.pyi",
    "cri_proto/api_pb2_grpc.py",
    "cri_proto/api_pb2_grpc.pyi",
)
PINNED_TOOLS = ("grpcio-tools", "mypy-protobuf")
DIFF_LINES_SHOWN = 40
DIFF_LINE_WIDTH = 160  # the serialized descriptor is one very long line


class GenError(Exception):
    """The generator cannot run as pinned."""


def pinned_versions() -> dict[str, str]:
    """Exact ``name==version`` pins of the generator tools from pyproject's dev extra."""
    data = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    dev = data["project"]["optional-dependencies"]["dev"]
    pins: dict[str, str] = {}
    for req in dev:
        m = re.fullmatch(r"\s*([A-Za-z0-9_.-]+)\s*==\s*([A-Za-z0-9_.+-]+)\s*", req)
        if m and m.group(1).lower() in PINNED_TOOLS:
            pins[m.group(1).lower()] = m.group(2)
    missing = [t for t in PINNED_TOOLS if t not in pins]
    if missing:
        raise GenError(f"pyproject.toml dev extra has no exact '==' pin for: {', '.join(missing)}")
    return pins


def check_tool_versions() -> None:
    problems = []
    for name, want in pinned_versions().items():
        try:
            have = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            have = None
        if have != want:
            problems.append(f"{name}: pinned {want}, installed {have or 'none'}")
    if problems:
        hint = " ".join(f"{n}=={v}" for n, v in pinned_versions().items())
        raise GenError(
            "generator versions do not match the pins ("
            + "; ".join(problems)
            + f"); run: pip install {hint}"
        )


def mypy_plugin_dir() -> str:
    """Directory holding ``protoc-gen-mypy`` (needed on PATH by protoc)."""
    candidates = [sysconfig.get_path("scripts"), str(Path(sys.executable).parent)]
    for directory in candidates:
        if shutil.which("protoc-gen-mypy", path=directory):
            return directory
    found = shutil.which("protoc-gen-mypy")
    if found:
        return str(Path(found).parent)
    raise GenError("protoc-gen-mypy not found; install the pinned mypy-protobuf")


def generate(out_dir: Path) -> None:
    """Run protoc from the repo root so imports come out as ``from cri_proto import ...``."""
    out = str(out_dir)
    cmd = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        "-I",
        ".",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_out={out}",
        f"--mypy_grpc_out={out}",
        PROTO,
    ]
    env = dict(os.environ)
    env["PATH"] = mypy_plugin_dir() + os.pathsep + env.get("PATH", "")
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise GenError(f"protoc failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    for rel in GENERATED:
        if not (out_dir / rel).is_file():
            raise GenError(f"protoc did not produce {rel}")


def compare(fresh_root: Path) -> list[str]:
    """One summary block per committed file that differs from a fresh generation."""
    report = []
    for rel in GENERATED:
        fresh = (fresh_root / rel).read_text(encoding="utf-8").splitlines(keepends=True)
        committed_path = REPO / rel
        if not committed_path.is_file():
            report.append(f"{rel}: missing (not generated/committed)")
            continue
        committed = committed_path.read_text(encoding="utf-8").splitlines(keepends=True)
        if committed == fresh:
            continue
        diff = list(difflib.unified_diff(committed, fresh, f"committed/{rel}", f"fresh/{rel}"))
        added = sum(1 for ln in diff if ln.startswith("+") and not ln.startswith("+++"))
        removed = sum(1 for ln in diff if ln.startswith("-") and not ln.startswith("---"))
        lines = [f"{rel}: differs (+{added} -{removed} lines)"]
        for ln in diff[:DIFF_LINES_SHOWN]:
            ln = ln.rstrip("\n")
            if len(ln) > DIFF_LINE_WIDTH:
                ln = ln[:DIFF_LINE_WIDTH] + f" ... ({len(ln)} chars)"
            lines.append("    " + ln)
        if len(diff) > DIFF_LINES_SHOWN:
            lines.append(f"    ... {len(diff) - DIFF_LINES_SHOWN} more diff lines")
        report.append("\n".join(lines))
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check",
        action="store_true",
        help="regenerate into a temp dir and fail if committed files differ",
    )
    args = parser.parse_args(argv)
    try:
        check_tool_versions()
        with tempfile.TemporaryDirectory(prefix="gen_proto.") as tmp:
            tmp_root = Path(tmp)
            generate(tmp_root)
            if args.check:
                report = compare(tmp_root)
                if report:
                    print("generated files are out of date with " + PROTO + ":")
                    print("\n".join(report))
                    print("run: python scripts/gen_proto.py")
                    return 1
                print(f"ok: {len(GENERATED)} generated files match {PROTO}")
                return 0
            for rel in GENERATED:
                shutil.copyfile(tmp_root / rel, REPO / rel)
                print(f"wrote {rel}")
            return 0
    except GenError as exc:
        print(f"gen_proto: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
