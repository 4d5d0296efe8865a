#!/usr/bin/env bash
# Brief real-run checks of the binaries scripts/upstream/build.sh made, each in
# a private temp dir (nothing on default paths), cleaned up afterwards
# (processes by PID, mounts under the temp dir, cgroups, sysctls kubelet changed).
#
#   scripts/upstream/smoke.sh [versions|containerd2|crio|kubelet|apiserver|all
#                              |kubelet-pod|kubelet-crio|kubelet-crio-pod] ...
# kubelet runs standalone on a private containerd 2.x; kubelet-crio on a private
# CRI-O. The *-pod variants (not in "all") also run a static busybox pod (host
# network) with the pause and busybox images that lab/images.py builds
# (imported with ctr, or with Debian's skopeo into CRI-O's storage).
#
# Env: SMOKE_KEEP=1 keeps the temp dirs (logs) after a run; KUBELET_SECONDS
# (default 30) is how long the kubelet runs; SMOKE_HUGETLB_NS=1 runs the checks
# in a private mount namespace with a hugetlb v1 hierarchy (what CRI-O needs
# here to start pod containers: see below). Needs root, python3 with grpcio
# (the repo's cri_proto stubs), openssl and curl.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
BUILD="$HERE/build.sh"
KUBELET_SECONDS="${KUBELET_SECONDS:-30}"

say() { echo "smoke: $*"; }
fail() { echo "smoke: FAIL: $*" >&2; FAILED+=("$*"); }
FAILED=()

bindir() {
    local d
    d=$("$BUILD" --print-dir "$1") || { echo "smoke: $1 is not built: run scripts/upstream/build.sh $1" >&2; return 1; }
    echo "$d"
}

# ------------------------------------------------------------- cleanup state
PIDS=()          # processes we started, stopped in reverse order
WORKDIRS=()      # temp dirs: mounts under them are unmounted, then removed
CGROUP_DIRS=()   # cgroup dirs we created (removed depth-first)
SYSCTL_SAVED=()  # "key=value" to restore

stop_pid() {
    local pid=$1 i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -0 "$pid" 2>/dev/null && { kill -KILL "$pid" 2>/dev/null || true; sleep 0.5; }
    wait "$pid" 2>/dev/null || true
}
unmount_under() {
    local d=$1 m
    # deepest first; /proc/self/mounts escapes spaces, our paths have none
    for m in $(awk -v d="$d" 'index($2, d"/") == 1 || $2 == d {print $2}' /proc/self/mounts | sort -r); do
        umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || echo "smoke: could not unmount $m" >&2
    done
}
cleanup() {
    local i d
    for (( i=${#PIDS[@]}-1; i>=0; i-- )); do stop_pid "${PIDS[$i]}"; done
    PIDS=()
    # containerd shims outlive containerd: end them by the pid files in our dirs
    for d in "${WORKDIRS[@]}"; do
        for i in $(find "$d" -name shim.pid -exec cat {} \; 2>/dev/null); do stop_pid "$i"; done
    done
    for d in "${WORKDIRS[@]}"; do unmount_under "$d"; done
    for (( i=${#CGROUP_DIRS[@]}-1; i>=0; i-- )); do
        [ -d "${CGROUP_DIRS[$i]}" ] && find "${CGROUP_DIRS[$i]}" -depth -type d -exec rmdir {} \; 2>/dev/null || true
        [ -d "${CGROUP_DIRS[$i]}" ] && echo "smoke: could not remove cgroup ${CGROUP_DIRS[$i]}" >&2
    done
    CGROUP_DIRS=()
    for i in "${SYSCTL_SAVED[@]}"; do sysctl -q -w "$i" >/dev/null || echo "smoke: could not restore sysctl $i" >&2; done
    SYSCTL_SAVED=()
    if [ "${SMOKE_KEEP:-0}" = 1 ]; then
        [ "${#WORKDIRS[@]}" = 0 ] || say "kept: ${WORKDIRS[*]}"
    else
        for d in "${WORKDIRS[@]}"; do rm -rf "$d"; done
    fi
    WORKDIRS=()
}
trap cleanup EXIT
trap 'exit 130' INT TERM

since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN{printf "%.2f", b-a}'; }
NEWDIR=""
newdir() { NEWDIR=$(mktemp -d "/tmp/podlens-smoke-$1.XXXXXX"); WORKDIRS+=("$NEWDIR"); }

wait_for_socket() {  # path seconds pid
    local i
    for i in $(seq 1 $(( $2 * 4 ))); do
        [ -S "$1" ] && return 0
        kill -0 "$3" 2>/dev/null || return 1
        sleep 0.25
    done
    return 1
}

cri_version() {  # socket -> prints the CRI Version answer and the runtime conditions
    (cd "$REPO" && python3 - "$1" <<'EOF'
import sys, grpc
from cri_proto import api_pb2, api_pb2_grpc
ch = grpc.insecure_channel("unix://" + sys.argv[1])
rt = api_pb2_grpc.RuntimeServiceStub(ch)
v = rt.Version(api_pb2.VersionRequest(version="v1"), timeout=15)
print(f"CRI Version: version={v.version} runtime_name={v.runtime_name} "
      f"runtime_version={v.runtime_version} runtime_api_version={v.runtime_api_version}")
st = rt.Status(api_pb2.StatusRequest(), timeout=15)
print("CRI Status: " + ", ".join(f"{c.type}={c.status}{' (' + c.reason + ')' if c.reason else ''}"
                                 for c in st.status.conditions))
EOF
    )
}

# ------------------------------------------------------------------ checks

check_versions() {
    local comp d b out
    for comp in kubernetes etcd containerd2 crio; do
        d=$(bindir "$comp") || { fail "$comp not built"; continue; }
        for b in "$d"/*; do
            [ -x "$b" ] && [ -f "$b" ] || continue
            case "$(basename "$b")" in
                containerd-shim-runc-v2) out=$("$b" -v 2>&1 | head -n 2 | tr '\n' ' ') ;;
                pinns) out="(no version flag) $(file -b "$b" | cut -d, -f1-2)" ;;
                *) out=$("$b" --version 2>&1 | head -n 3 | tr '\n' ' ') ;;
            esac
            say "$(basename "$b"): $out"
        done
    done
}

# Starts a private containerd 2.x in $1 (sets CTRD_SOCK, CTRD_PID).
start_containerd2() {
    local D=$1 bin
    bin=$(bindir containerd2)
    mkdir -p "$D"/{root,state,runc,opt,cni/bin,cni/conf}
    # Config version 3 (containerd 2.x; 2.4 reads 3 and migrates in memory).
    cat >"$D/config.toml" <<EOF
version = 3
root = "$D/root"
state = "$D/state"
[grpc]
  address = "$D/containerd.sock"
[ttrpc]
  address = "$D/containerd.sock.ttrpc"
[debug]
  address = "$D/debug.sock"
[plugins.'io.containerd.internal.v1.opt']
  path = "$D/opt"
[plugins.'io.containerd.nri.v1.nri']
  disable = true
[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "${SANDBOX_IMAGE:-podlens.local/pause:smoke}"
[plugins.'io.containerd.cri.v1.runtime']
  restrict_oom_score_adj = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = "$(command -v runc || echo /usr/sbin/runc)"
        Root = "$D/runc"
        SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["$D/cni/bin"]
    conf_dir = "$D/cni/conf"
EOF
    PATH="$bin:$PATH" "$bin/containerd" --config "$D/config.toml" --log-level info >"$D/containerd.log" 2>&1 &
    CTRD_PID=$!; PIDS+=("$CTRD_PID"); CTRD_SOCK="$D/containerd.sock"
    if ! wait_for_socket "$CTRD_SOCK" 20 "$CTRD_PID"; then
        tail -n 20 "$D/containerd.log" >&2; return 1
    fi
}

check_containerd2() {
    local D bin t0
    newdir containerd2; D=$NEWDIR; bin=$(bindir containerd2)
    t0=$(date +%s.%N)
    start_containerd2 "$D" || { fail "containerd2 did not start"; return; }
    say "containerd2 up in $(since "$t0")s (pid $CTRD_PID, $CTRD_SOCK)"
    "$bin/ctr" -a "$CTRD_SOCK" version | sed 's/^/smoke:   ctr version: /'
    cri_version "$CTRD_SOCK" | sed 's/^/smoke:   /' || fail "containerd2 CRI Version"
    grep -E 'level=(error|fatal)|starting containerd|containerd successfully booted|config version' "$D/containerd.log" | head -n 12 | sed 's/^/smoke:   log: /'
    cleanup
}

# Starts a private CRI-O in $1 (sets CRIO_SOCK, CRIO_PID).
HAD_CRUN_ROOT=""
start_crio() {
    local D=$1 bin t0
    bin=$(bindir crio)
    mkdir -p "$D"/{root,runroot,conf.d,log,cni/bin,cni/conf,exits,attach,ns,hooks,keys,version}
    echo '{"default":[{"type":"insecureAcceptAnything"}]}' >"$D/policy.json"
    : >"$D/registries.conf"
    cat >"$D/crio.conf" <<EOF
[crio]
root = "$D/root"
runroot = "$D/runroot"
storage_driver = "overlay"
log_dir = "$D/log"
version_file = "$D/version/version"
version_file_persist = "$D/version/version-persist"
clean_shutdown_file = "$D/version/clean.shutdown"
internal_wipe = true
[crio.api]
listen = "$D/crio.sock"
stream_address = "127.0.0.1"
stream_port = "0"
[crio.runtime]
default_runtime = "runc"
cgroup_manager = "cgroupfs"
namespaces_dir = "$D/ns"
pinns_path = "$bin/pinns"
container_exits_dir = "$D/exits"
container_attach_socket_dir = "$D/attach"
hooks_dir = ["$D/hooks"]
decryption_keys_path = "$D/keys"
cdi_spec_dirs = ["$D/cdi"]
irqbalance_config_file = "$D/irqbalance"
irqbalance_config_restore_file = "disable"
# Debian's runc 1.1.5 (answers "runc features"; Debian's crun 1.8.1 does not,
# which CRI-O logs as an error). CRI-O always keeps its built-in "crun" handler;
# its root is moved here, but the "crun features" probe still makes /run/crun.
[crio.runtime.runtimes.runc]
runtime_path = "/usr/sbin/runc"
runtime_type = "oci"
runtime_root = "$D/runtime-root/runc"
monitor_path = "/usr/bin/conmon"
monitor_cgroup = "pod"
[crio.runtime.runtimes.crun]
runtime_path = "/usr/bin/crun"
runtime_type = "oci"
runtime_root = "$D/runtime-root/crun"
monitor_path = "/usr/bin/conmon"
monitor_cgroup = "pod"
[crio.image]
signature_policy = "$D/policy.json"
signature_policy_dir = "$D/policies"
pause_image = "${SANDBOX_IMAGE:-podlens.local/pause:smoke}"
[crio.network]
network_dir = "$D/cni/conf"
plugin_dirs = ["$D/cni/bin"]
[crio.nri]
enable_nri = false
[crio.metrics]
enable_metrics = false
EOF
    [ -n "$HAD_CRUN_ROOT" ] || { HAD_CRUN_ROOT=0; [ -e /run/crun ] && HAD_CRUN_ROOT=1; }
    t0=$(date +%s.%N)
    "$bin/crio" --config "$D/crio.conf" --config-dir "$D/conf.d" \
        --registries-conf "$D/registries.conf" --registries-conf-dir "$D/conf.d" \
        --log-level info >"$D/crio.log" 2>&1 &
    CRIO_PID=$!; PIDS+=("$CRIO_PID"); CRIO_SOCK="$D/crio.sock"
    if ! wait_for_socket "$CRIO_SOCK" 30 "$CRIO_PID"; then
        tail -n 25 "$D/crio.log" | sed 's/^/smoke:   log: /' >&2; return 1
    fi
    say "crio up in $(since "$t0")s (pid $CRIO_PID, $CRIO_SOCK, runtime runc)"
}
crio_cleanup() {
    cleanup
    # "crun features" (CRI-O's probe at start) creates crun's default root
    [ "$HAD_CRUN_ROOT" != 0 ] || rmdir /run/crun 2>/dev/null || true
}

check_crio() {
    local D
    newdir crio; D=$NEWDIR
    start_crio "$D" || { fail "crio did not start"; crio_cleanup; return; }
    cri_version "$CRIO_SOCK" | sed 's/^/smoke:   /' || fail "crio CRI Version"
    grep -iE 'level=(error|fatal)|Starting CRI-O|Using conmon|cgroup' "$D/crio.log" | head -n 12 | sed 's/^/smoke:   log: /'
    crio_cleanup
}

# The lab's pause and busybox images (lab/images.py) as docker-archive tars:
# prints "path ref" lines.
lab_image_tars() {
    (cd "$REPO" && python3 -c '
import sys
from pathlib import Path
from lab.images import build_image, pause_recipe, busybox_recipe
for r in (pause_recipe(), busybox_recipe()):
    t = build_image(r, Path(sys.argv[1]))
    print(t.path, t.ref)' "$1")
}

check_kubelet() {  # RUNTIME(containerd2|crio) [pod]: with pod, also run a static pod
    local rt=$1 with_pod=${2:-} D kbin ctl c hier SOCK tar ref
    newdir "kubelet-$rt"; D=$NEWDIR; kbin=$(bindir kubernetes)
    local SANDBOX_IMAGE=""
    [ -z "$with_pod" ] || SANDBOX_IMAGE="registry.k8s.io/pause:3.10"
    if [ "$rt" = crio ]; then
        start_crio "$D/crio" || { fail "crio (for the kubelet) did not start"; crio_cleanup; return; }
        SOCK=$CRIO_SOCK
    else
        start_containerd2 "$D/ctrd" || { fail "containerd2 (for the kubelet) did not start"; cleanup; return; }
        SOCK=$CTRD_SOCK
    fi
    if [ -n "$with_pod" ]; then
        while read -r tar ref; do
            if [ "$rt" = crio ]; then
                # CRI-O has no import call: skopeo (Debian) writes into its
                # containers-storage; in a private mount namespace a tmpfs on
                # /var/lib keeps its blob-info cache off the default path.
                command -v skopeo >/dev/null || { fail "skopeo missing (apt-get install skopeo)"; crio_cleanup; return; }
                unshare -m --propagation private sh -c 'mount -t tmpfs tmpfs /var/lib && exec skopeo copy -q "docker-archive:$1:$2" "containers-storage:[overlay@$3+$4]$2"' \
                    _ "$tar" "$ref" "$D/crio/root" "$D/crio/runroot" || { fail "skopeo copy $ref"; crio_cleanup; return; }
            else
                "$(bindir containerd2)/ctr" -a "$SOCK" -n k8s.io images import "$tar" >/dev/null || { fail "ctr import $tar"; cleanup; return; }
            fi
        done < <(lab_image_tars "$D/images")
        say "images: $(cd "$REPO" && python3 -c '
import sys, grpc
from cri_proto import api_pb2 as pb, api_pb2_grpc as rpc
im = rpc.ImageServiceStub(grpc.insecure_channel("unix://" + sys.argv[1]))
print(" ".join(t for i in im.ListImages(pb.ListImagesRequest(), timeout=15).images for t in i.repo_tags))' "$SOCK")"
    fi
    # A private cgroup root in every v1 hierarchy (kubelet checks that it exists).
    for hier in /sys/fs/cgroup/*; do
        [ -d "$hier" ] && [ ! -L "$hier" ] || continue
        c="$hier/podlens-smoke"; mkdir -p "$c"; CGROUP_DIRS+=("$c")
    done
    # kubelet "modifies" these kernel tunables (protectKernelDefaults=false): restore them after.
    for ctl in vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys kernel.keys.root_maxbytes; do
        SYSCTL_SAVED+=("$ctl=$(sysctl -n "$ctl")")
    done
    mkdir -p "$D"/{manifests,kubelet,pki,volume-plugins,pod-logs}
    cat >"$D/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: /podlens-smoke
failSwapOn: false
readOnlyPort: 0
address: 127.0.0.1
port: 10350
healthzBindAddress: 127.0.0.1
healthzPort: 10348
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: false
authorization:
  mode: AlwaysAllow
staticPodPath: $D/manifests
containerRuntimeEndpoint: unix://$SOCK
imageServiceEndpoint: unix://$SOCK
makeIPTablesUtilChains: false
volumePluginDir: $D/volume-plugins
podLogsDir: $D/pod-logs
EOF
    if [ -n "$with_pod" ]; then
        cat >"$D/manifests/sleeper.yaml" <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: smoke-sleeper
  namespace: default
spec:
  hostNetwork: true
  containers:
  - name: sleeper
    image: docker.io/library/busybox:latest
    imagePullPolicy: Never
    command: ["sleep", "3600"]
EOF
    fi
    "$kbin/kubelet" --config "$D/kubelet.yaml" --root-dir "$D/kubelet" --cert-dir "$D/pki" \
        --hostname-override podlens-smoke --v=2 >"$D/kubelet.log" 2>&1 &
    local pid=$!; PIDS+=("$pid")
    say "kubelet started (pid $pid) on $rt; watching it for ${KUBELET_SECONDS}s"
    local i healthy=""
    for i in $(seq 1 "$KUBELET_SECONDS"); do
        sleep 1
        kill -0 "$pid" 2>/dev/null || break
        [ -n "$healthy" ] || { curl -fsS "http://127.0.0.1:10348/healthz" 2>/dev/null | grep -q ok && healthy="after ${i}s"; } || true
    done
    if kill -0 "$pid" 2>/dev/null; then
        say "kubelet still running after ${KUBELET_SECONDS}s; /healthz ok ${healthy:-never}"
    else
        fail "kubelet exited within ${KUBELET_SECONDS}s"
    fi
    grep -E '^[EF][0-9]{4}|Version|cgroup|Started kubelet|sync|Starting to listen|Node.*(ready|Ready)|failCgroupV1|Kubelet is running' "$D/kubelet.log" \
        | head -n 40 | sed 's/^/smoke:   log: /'
    say "kubelet log: $(grep -c '^E' "$D/kubelet.log") error lines, $(grep -c '^F' "$D/kubelet.log") fatal lines"
    if [ -n "$with_pod" ]; then
        # The static pod's state through CRI, then the kubelet removes it when
        # its manifest goes; whatever is left is stopped and removed through CRI.
        cri_pods "$SOCK" show | sed 's/^/smoke:   /'
        cri_pods "$SOCK" running >/dev/null || fail "static pod smoke-sleeper not running on $rt"
        rm -f "$D/manifests/sleeper.yaml"
        for i in $(seq 1 40); do cri_pods "$SOCK" running >/dev/null || break; sleep 0.5; done
        say "after removing the manifest: $(cri_pods "$SOCK" show | tr '\n' ';')"
        grep -E 'SyncLoop (ADD|REMOVE|DELETE)|Killing container|Created container|Started container' "$D/kubelet.log" | cut -c1-220 | head -n 8 | sed 's/^/smoke:   log: /'
        stop_pid "$pid"
        cri_pods "$SOCK" remove-all | sed 's/^/smoke:   /'
    fi
    if [ "$rt" = crio ]; then crio_cleanup; else cleanup; fi
}

cri_pods() {  # socket show|running|remove-all
    (cd "$REPO" && python3 - "$1" "$2" <<'EOF'
import sys, grpc
from cri_proto import api_pb2 as pb, api_pb2_grpc as rpc
rt = rpc.RuntimeServiceStub(grpc.insecure_channel("unix://" + sys.argv[1]))
sbs = rt.ListPodSandbox(pb.ListPodSandboxRequest(), timeout=15).items
cts = rt.ListContainers(pb.ListContainersRequest(), timeout=15).containers
if sys.argv[2] == "show":
    for sb in sbs:
        print(f"sandbox {sb.metadata.name} {pb.PodSandboxState.Name(sb.state)} {sb.id[:12]}")
    for c in cts:
        st = rt.ContainerStatus(pb.ContainerStatusRequest(container_id=c.id, verbose=True), timeout=15)
        pid = ""
        if "info" in st.info:
            import json
            pid = json.loads(st.info["info"]).get("pid", "")
        cg = ""
        if pid:
            try:
                cg = [l for l in open(f"/proc/{pid}/cgroup") if ":memory:" in l][0].strip()
            except (OSError, IndexError):
                pass
        print(f"container {c.metadata.name} {pb.ContainerState.Name(c.state)} image={c.image.image} pid={pid} {cg}")
elif sys.argv[2] == "running":
    sys.exit(0 if any(c.state == pb.CONTAINER_RUNNING for c in cts) else 1)
elif sys.argv[2] == "remove-all":
    for sb in sbs:
        rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=sb.id), timeout=60)
        rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sb.id), timeout=60)
        print(f"removed sandbox {sb.metadata.name} {sb.id[:12]}")
EOF
    )
}

check_apiserver() {
    local D kbin ebin
    newdir apiserver; D=$NEWDIR; kbin=$(bindir kubernetes); ebin=$(bindir etcd)
    mkdir -p "$D"/{pki,etcd,certs}; chmod 700 "$D/etcd"
    (
        cd "$D/pki"
        openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 -subj "/CN=podlens-smoke-ca" 2>/dev/null
        openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr -subj "/CN=kube-apiserver" 2>/dev/null
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc\n' >san.ext
        openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out apiserver.crt -days 2 -extfile san.ext 2>/dev/null
        openssl req -newkey rsa:2048 -nodes -keyout admin.key -out admin.csr -subj "/O=system:masters/CN=podlens-smoke-admin" 2>/dev/null
        openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out admin.crt -days 2 2>/dev/null
        openssl genrsa -out sa.key 2048 2>/dev/null
        openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    )
    local t0; t0=$(date +%s.%N)
    "$ebin/etcd" --name smoke --data-dir "$D/etcd" \
        --listen-client-urls http://127.0.0.1:23790 --advertise-client-urls http://127.0.0.1:23790 \
        --listen-peer-urls http://127.0.0.1:23800 --initial-advertise-peer-urls http://127.0.0.1:23800 \
        --initial-cluster smoke=http://127.0.0.1:23800 --listen-metrics-urls "" >"$D/etcd.log" 2>&1 &
    local epid=$!; PIDS+=("$epid")
    local i
    for i in $(seq 1 60); do curl -fsS http://127.0.0.1:23790/health 2>/dev/null | grep -q '"health":"true"' && break; sleep 0.5; done
    if curl -fsS http://127.0.0.1:23790/health 2>/dev/null | grep -q '"health":"true"'; then
        say "etcd healthy in $(since "$t0")s: $(curl -fsS http://127.0.0.1:23790/version)"
    else
        fail "etcd not healthy"; tail -n 20 "$D/etcd.log" >&2; cleanup; return
    fi
    t0=$(date +%s.%N)
    "$kbin/kube-apiserver" --etcd-servers http://127.0.0.1:23790 \
        --bind-address 127.0.0.1 --secure-port 16443 --advertise-address 127.0.0.1 \
        --endpoint-reconciler-type none --cert-dir "$D/certs" \
        --tls-cert-file "$D/pki/apiserver.crt" --tls-private-key-file "$D/pki/apiserver.key" \
        --client-ca-file "$D/pki/ca.crt" \
        --service-account-key-file "$D/pki/sa.pub" --service-account-signing-key-file "$D/pki/sa.key" \
        --service-account-issuer https://kubernetes.default.svc \
        --service-cluster-ip-range 10.0.0.0/24 --authorization-mode Node,RBAC \
        >"$D/apiserver.log" 2>&1 &
    local apid=$!; PIDS+=("$apid")
    local cu=(curl -sS --cacert "$D/pki/ca.crt" --cert "$D/pki/admin.crt" --key "$D/pki/admin.key")
    local ready=""
    for i in $(seq 1 120); do
        kill -0 "$apid" 2>/dev/null || break
        if [ "$("${cu[@]}" -o /dev/null -w '%{http_code}' https://127.0.0.1:16443/readyz 2>/dev/null)" = 200 ]; then ready=1; break; fi
        sleep 0.5
    done
    if [ -n "$ready" ]; then
        say "kube-apiserver /readyz 200 in $(since "$t0")s"
        say "  /version: $("${cu[@]}" https://127.0.0.1:16443/version | tr -d ' \n')"
        "${cu[@]}" "https://127.0.0.1:16443/readyz?verbose" | tail -n 3 | sed 's/^/smoke:   readyz: /'
        say "  namespaces: $("${cu[@]}" https://127.0.0.1:16443/api/v1/namespaces | python3 -c 'import json,sys; print(" ".join(i["metadata"]["name"] for i in json.load(sys.stdin)["items"]))')"
        # kube-controller-manager and kube-scheduler against it, briefly
        cat >"$D/admin.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: smoke
  cluster:
    server: https://127.0.0.1:16443
    certificate-authority: $D/pki/ca.crt
users:
- name: admin
  user:
    client-certificate: $D/pki/admin.crt
    client-key: $D/pki/admin.key
contexts:
- name: smoke
  context: {cluster: smoke, user: admin}
current-context: smoke
EOF
        "$kbin/kube-controller-manager" --kubeconfig "$D/admin.kubeconfig" --leader-elect=false \
            --bind-address 127.0.0.1 --secure-port 0 --cert-dir "$D/certs" \
            --service-account-private-key-file "$D/pki/sa.key" --root-ca-file "$D/pki/ca.crt" \
            --use-service-account-credentials >"$D/kcm.log" 2>&1 &
        PIDS+=("$!")
        "$kbin/kube-scheduler" --kubeconfig "$D/admin.kubeconfig" --leader-elect=false \
            --bind-address 127.0.0.1 --secure-port 0 >"$D/scheduler.log" 2>&1 &
        PIDS+=("$!")
        sleep 15
        say "  kube-controller-manager: $(grep -c 'Started controller\|Starting controller' "$D/kcm.log") controller start lines, $(grep -c '^E' "$D/kcm.log") error lines, $(grep -c '^F' "$D/kcm.log") fatal"
        grep -m3 -E 'Starting controller|Started controller|Version' "$D/kcm.log" | cut -c1-200 | sed 's/^/smoke:     kcm: /'
        say "  kube-scheduler: $(grep -c '^E' "$D/scheduler.log") error lines, $(grep -c '^F' "$D/scheduler.log") fatal"
        grep -m3 -E 'Starting Kubernetes Scheduler|Version|Caches are synced' "$D/scheduler.log" | cut -c1-200 | sed 's/^/smoke:     scheduler: /'
        say "  serviceaccounts in default (made by the controller-manager): $("${cu[@]}" https://127.0.0.1:16443/api/v1/namespaces/default/serviceaccounts | python3 -c 'import json,sys; print(" ".join(i["metadata"]["name"] for i in json.load(sys.stdin)["items"]) or "none")')"
    else
        fail "kube-apiserver not ready"; tail -n 25 "$D/apiserver.log" >&2
    fi
    cleanup
}

# ------------------------------------------- SMOKE_HUGETLB_NS=1 (for CRI-O)
# This machine's kernel has the hugetlb controller (listed in /proc/cgroups)
# but no cgroup v1 hierarchy mounts it. CRI-O 1.34 decides from /proc/cgroups
# that hugetlb exists and passes the kubelet's hugepage limits to runc, which
# then fails every container: "cannot set hugetlb limit: container could not
# join or create cgroup". With SMOKE_HUGETLB_NS=1 the checks run in a private
# mount namespace whose /sys/fs/cgroup is a copy (bind mounts of the host's
# hierarchies) plus a hugetlb v1 hierarchy. While that runs, hugetlb is bound
# to v1 kernel-wide; afterwards the hierarchy is mounted once more in a private
# namespace, emptied and unmounted, so hugetlb returns to the cgroup2 hierarchy.
hugetlb_hierarchy() { awk '$1 == "hugetlb" {print $2}' /proc/cgroups; }
setup_hugetlb_ns() {
    local T h n
    T=$(mktemp -d /tmp/podlens-smoke-cgroot.XXXXXX)
    mount -t tmpfs -o mode=755 cgroot "$T"
    for h in /sys/fs/cgroup/*; do
        n=$(basename "$h")
        if [ -L "$h" ]; then cp -P "$h" "$T/"; else mkdir "$T/$n"; mount --bind "$h" "$T/$n"; fi
    done
    mkdir "$T/hugetlb"; mount -t cgroup -o hugetlb cgroup "$T/hugetlb"
    mount --move "$T" /sys/fs/cgroup
    rmdir "$T" 2>/dev/null || true
    say "private mount namespace: /sys/fs/cgroup with hugetlb (hierarchy $(hugetlb_hierarchy))"
}
wait_hugetlb_released() {  # the kernel frees an unmounted v1 hierarchy asynchronously
    local i
    for i in $(seq 1 40); do [ "$(hugetlb_hierarchy)" = 0 ] && return 0; sleep 0.25; done
    return 1
}
release_hugetlb_hierarchy() {
    wait_hugetlb_released && { say "hugetlb is back on cgroup2"; return 0; }
    unshare -m --propagation private bash -c '
        M=$(mktemp -d /tmp/podlens-smoke-hugetlb.XXXXXX)
        mount -t cgroup -o hugetlb cgroup "$M" || { rmdir "$M"; exit 1; }
        find "$M" -mindepth 1 -depth -type d -exec rmdir {} \; 2>/dev/null
        umount "$M"; rmdir "$M"' || true
    wait_hugetlb_released || true
    say "hugetlb hierarchy after release: $(hugetlb_hierarchy) (0 = back on cgroup2)"
}

[ "$(id -u)" = 0 ] || { echo "smoke: run as root" >&2; exit 1; }
if [ "${SMOKE_HUGETLB_NS:-0}" = 1 ] && [ -z "${SMOKE_IN_HUGETLB_NS:-}" ]; then
    if [ "$(hugetlb_hierarchy)" != 0 ]; then
        echo "smoke: hugetlb is already on a v1 hierarchy; running without SMOKE_HUGETLB_NS" >&2
    else
        rc=0
        SMOKE_IN_HUGETLB_NS=1 unshare -m --propagation private "$0" --hugetlb-ns "$@" || rc=$?
        release_hugetlb_hierarchy
        exit "$rc"
    fi
fi
if [ "${1:-}" = --hugetlb-ns ]; then shift; setup_hugetlb_ns; fi
[ $# -gt 0 ] || set -- all
for a in "$@"; do
    case "$a" in
        versions) check_versions ;;
        containerd2) check_containerd2 ;;
        crio) check_crio ;;
        kubelet) check_kubelet containerd2 ;;
        kubelet-pod) check_kubelet containerd2 pod ;;
        kubelet-crio) check_kubelet crio ;;
        kubelet-crio-pod) check_kubelet crio pod ;;
        apiserver) check_apiserver ;;
        all) check_versions; check_containerd2; check_crio; check_kubelet containerd2; check_apiserver ;;
        *) echo "smoke: unknown check '$a'" >&2; exit 2 ;;
    esac
done
if [ "${#FAILED[@]}" -gt 0 ]; then
    echo "smoke: ${#FAILED[@]} check(s) failed: ${FAILED[*]}" >&2
    exit 1
fi
say "all requested checks passed"
