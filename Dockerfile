# The podlens agent image, run by daemonset/ on every node.
#
#   docker build -t podlens:0.1.0 .
#
# Both stages use the same base, so the virtualenv copied into the final stage
# finds its interpreter at the same path. The base is pinned by digest (the
# multi-arch index of python:3.11.11-slim-bookworm), so a rebuild cannot pick
# up a re-pushed tag; `docker buildx imagetools inspect python:3.11.11-slim-bookworm`
# shows the digest a tag points at today, to move the pin on purpose.

# --- builder: the dependencies and the agent, installed into /opt/podlens
FROM python:3.11.11-slim-bookworm@sha256:081075da77b2b55c23c088251026fb69a7b2bf92471e491ff5fd75c192fd38e5 AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1

# A virtualenv without pip or setuptools of its own: the base image's pip
# installs into it (--python), so neither ends up in the final image.
RUN python -m venv --without-pip /opt/podlens

WORKDIR /src

# Dependencies first, in their own layer: it is rebuilt only when the lock
# changes, not on every change to the source. requirements.lock pins every
# package the agent needs, direct or not, with the SHA-256 of each of its
# files (pip-compile --generate-hashes from pyproject.toml; tests/test_dockerfile.py
# holds the two to each other): --require-hashes refuses anything else, and
# --only-binary refuses to build from source (every one ships wheels for
# CPython 3.11 on amd64 and arm64: no compiler, no build-time downloads).
#
# The kubernetes package carries an asyncio copy of its whole client
# (kubernetes/aio, about a third of the installed size). The agent uses the
# synchronous client only, so that copy is removed; the import check below
# fails the build if any agent module ever needs it.
COPY requirements.lock ./
RUN python -m pip --python /opt/podlens/bin/python install --no-cache-dir \
        --require-hashes --no-deps --only-binary=:all: -r requirements.lock \
    && rm -rf /opt/podlens/lib/python3.11/site-packages/kubernetes/aio

# Then the agent itself, copied as it is: installing the project with pip
# would fetch its build backend, unpinned, at build time. It is compiled to
# bytecode here: the agent's root filesystem is read-only, so nothing could be
# compiled at run time, and every start would recompile the kubernetes client.
# Then every agent module is imported once, as a check that the image holds
# all they need.
COPY cri_proto/ /opt/podlens/lib/python3.11/site-packages/cri_proto/
COPY agent/ /opt/podlens/lib/python3.11/site-packages/agent/
RUN /opt/podlens/bin/python -m compileall -q /opt/podlens/lib/python3.11/site-packages \
    && /opt/podlens/bin/python -c "import importlib, pkgutil, agent; [importlib.import_module(m.name) for m in pkgutil.walk_packages(agent.__path__, 'agent.') if m.name != 'agent.__main__']"

# --- final: the base image and the virtualenv, nothing else
FROM python:3.11.11-slim-bookworm@sha256:081075da77b2b55c23c088251026fb69a7b2bf92471e491ff5fd75c192fd38e5

ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="podlens" \
      org.opencontainers.image.description="Node-level pod troubleshooting agent: CRI inventory, pod join, diagnosis and a guarded self-healing demo over HTTP" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11.11-slim-bookworm" \
      org.opencontainers.image.base.digest="sha256:081075da77b2b55c23c088251026fb69a7b2bf92471e491ff5fd75c192fd38e5"

# No .pyc written at run time (the root filesystem is read-only; the installed
# modules were compiled in the builder); logs reach kubectl logs unbuffered.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/podlens/bin:$PATH

COPY --from=builder /opt/podlens /opt/podlens

# No USER: the agent runs as root, and cannot do otherwise. On the node it
# opens the CRI socket (root:root, mode 0660) and reads kubelet's log files
# (root-owned, 0640 or 0600), and there is no user namespace in between.
# What makes that safe is the manifest, not the image: it drops every
# capability and adds none back (KILL with kill-and-watch, SYS_PTRACE with
# components/ptrace), with a read-only root filesystem, no privilege
# escalation and an AppArmor profile (daemonset/).

WORKDIR /
EXPOSE 8470

# Kubernetes probes /healthz and /readyz (daemonset/daemonset.yaml); an image
# health check would only run a second, unobserved copy of the liveness probe.
HEALTHCHECK NONE

ENTRYPOINT ["python", "-m", "agent", "serve"]
