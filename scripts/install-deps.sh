#!/usr/bin/env bash
# Installs everything the agent, its lab and its tests need on a fresh
# Debian 12 machine, as root. Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
    echo "install-deps: run as root (the lab starts containerd and creates network namespaces)" >&2
    exit 1
fi

apt_packages=(
    containerd                   # the CRI runtime the lab and the tests start privately
    runc
    busybox-static               # the busybox image is built from it
    containernetworking-plugins  # bridge + host-local IPAM: one network namespace per pod
    iproute2                     # bridge teardown
    gcc libc6-dev                # the pause image's static binary
    util-linux                   # nsenter, for checks inside a pod's network namespace
    nginx                        # the lab's nginx image is built from the distribution's nginx
    buildah                      # builds the agent's image from the Dockerfile (lab up --real)
    debootstrap                  # the Dockerfile's base, stood in for from Debian's packages
    skopeo                       # the lab's images into CRI-O's storage (nothing is pulled)
    conmon                       # CRI-O's container monitor (the tests' and the lab's CRI-O)
    chromium                     # the web UI's tests and bench_ui (driven by playwright)
)
missing=()
for package in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "install-deps: apt-get install ${missing[*]}"
    apt-get update -qq
    # Packages must not start their services (nginx on :80, containerd on the
    # default socket): the lab and the tests start private instances.
    policy=/usr/sbin/policy-rc.d
    had_policy=0; [ -e "$policy" ] && had_policy=1
    [ "$had_policy" = 1 ] || printf '#!/bin/sh\nexit 101\n' > "$policy"
    chmod +x "$policy"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    [ "$had_policy" = 1 ] || rm -f "$policy"
fi

python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore -e '.[dev]'
# The independent build of the CRI API that the wire-compatibility test reads.
# It pins an older protobuf, hence --no-deps: its modules are never imported.
python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore --no-deps \
    container-runtime-interface-api==2.0.1
