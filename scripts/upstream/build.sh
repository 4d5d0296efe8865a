#!/usr/bin/env bash
# Builds upstream binaries (Kubernetes, etcd, containerd 2.x, CRI-O) from their
# Go modules and caches them by version OUTSIDE the repo.
#
#   scripts/upstream/build.sh [kubernetes|etcd|containerd2|crio|all] ...
#   scripts/upstream/build.sh --print-dir COMPONENT   # the bin dir of COMPONENT
#   scripts/upstream/build.sh --list                  # components, versions, state
#
# Cache root: ${PODLENS_UPSTREAM_CACHE:-/var/cache/podlens/upstream}
#   bin/<component>-<version>/   the binaries (+ BUILD-INFO)
#   go/mod, go/build             GOMODCACHE, GOCACHE
#   work/<component>-<version>/  the wrapper Go modules (never in the repo)
#   logs/<component>-<version>.log
# A component whose binaries exist and answer their version flag is not
# rebuilt ("cached"). Pinned versions: scripts/upstream/versions.env.
# Needs: go >= GO_MIN_VERSION and the Go module proxy; root for apt-get
# (CRI-O's cgo libraries, conmon, crun, runc).
set -eEuo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$HERE/versions.env"

ROOT="${PODLENS_UPSTREAM_CACHE:-/var/cache/podlens/upstream}"
COMPONENTS=(kubernetes etcd containerd2 crio)
CUR_COMPONENT=""

msg() { echo "build.sh: $*"; }
err() { echo "build.sh: $*" >&2; }
die() { err "$*"; exit 1; }
trap 'rc=$?; err "internal error (exit $rc) at line $LINENO${CUR_COMPONENT:+ while building $CUR_COMPONENT}: $BASH_COMMAND"; exit $rc' ERR

usage() {
    sed -n '2,18p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

version_of() {
    case "$1" in
        kubernetes) echo "$K8S_VERSION" ;;
        etcd) echo "$ETCD_VERSION" ;;
        containerd2) echo "$CONTAINERD2_VERSION" ;;
        crio) echo "$CRIO_VERSION" ;;
        *) die "unknown component '$1' (known: ${COMPONENTS[*]} all)" ;;
    esac
}
bins_of() {
    case "$1" in
        kubernetes) echo "kube-apiserver kube-controller-manager kube-scheduler kubelet" ;;
        etcd) echo "etcd" ;;
        containerd2) echo "containerd containerd-shim-runc-v2 ctr" ;;
        crio) echo "crio pinns" ;;
    esac
}
bin_dir() { echo "$ROOT/bin/$1-$(version_of "$1")"; }
# Debian packages a component needs at run time (checked even when cached).
runtime_pkgs_of() {
    case "$1" in
        containerd2) echo "runc" ;;
        crio) echo "conmon crun runc" ;;
    esac
}

# The version line a binary prints; empty (and failure) when it does not answer.
version_line() {  # component dir binary
    local comp=$1 dir=$2 bin=$3 out ver
    ver=$(version_of "$comp"); ver=${ver#v}
    [ -x "$dir/$bin" ] || return 1
    case "$bin" in
        containerd-shim-runc-v2) out=$(timeout 20 "$dir/$bin" -v 2>&1) || return 1 ;;
        pinns)  # pinns has no version flag (and -h prints nothing); without
                # arguments it must run and complain "[pinns:e] Path ... not specified"
            out=$(timeout 20 "$dir/$bin" 2>&1 || true)
            grep -q '^\[pinns:' <<<"$out" || return 1
            echo "pinns (built with crio $ver)"; return 0 ;;
        *) out=$(timeout 20 "$dir/$bin" --version 2>&1) || return 1 ;;
    esac
    grep -q -F "$ver" <<<"$out" || return 1
    grep -m1 -F "$ver" <<<"$out"
}

is_cached() {  # component
    local comp=$1 dir b
    dir=$(bin_dir "$comp")
    [ -f "$dir/BUILD-INFO" ] || return 1
    for b in $(bins_of "$comp"); do
        version_line "$comp" "$dir" "$b" >/dev/null || return 1
    done
}

# ---------------------------------------------------------------- helpers

LOG=""
# step DESCRIPTION CMD...: runs CMD with its output appended to $LOG; on failure
# prints the component, the command and the last lines of the log, and exits.
step() {
    local what=$1; shift
    msg "  [$CUR_COMPONENT] $what"
    {
        echo "=== $(date -u +%FT%TZ) $what"
        echo "+ $(printf '%q ' "$@")"
    } >>"$LOG"
    local rc=0
    "$@" >>"$LOG" 2>&1 </dev/null || rc=$?
    if [ "$rc" != 0 ]; then
        {
            echo
            echo "build.sh: FAILED: component $CUR_COMPONENT ($(version_of "$CUR_COMPONENT")): $what (exit $rc)"
            echo "  command: $(printf '%q ' "$@")"
            echo "  log: $LOG"
            echo "  --- last 40 lines of the log ---"
            tail -n 40 "$LOG" | sed 's/^/  | /'
        } >&2
        exit 1
    fi
}

check_go() {
    command -v go >/dev/null 2>&1 || die "no 'go' on PATH: install Go >= $GO_MIN_VERSION (e.g. /usr/local/go/bin) first"
    local have
    have=$(GOTOOLCHAIN=local go env GOVERSION 2>/dev/null | sed 's/^go//')
    if [ "$UPSTREAM_GOTOOLCHAIN" = local ] &&
        [ "$(printf '%s\n%s\n' "$GO_MIN_VERSION" "$have" | sort -V | head -n1)" != "$GO_MIN_VERSION" ]; then
        die "go $have is older than the $GO_MIN_VERSION these pins need (or set GOTOOLCHAIN=go1.27.3)"
    fi
}

# go mod download -json MODULE@VERSION into $MODJSON, or a clear message.
MODJSON=""
mod_json() {
    local out rc=0
    msg "  [$CUR_COMPONENT] go mod download -json $1"
    out=$(go mod download -json "$1" 2>&1) || rc=$?
    if [ "$rc" != 0 ] || grep -q '"Error"' <<<"$out"; then
        {
            echo "build.sh: FAILED: component $CUR_COMPONENT: the Go module proxy did not give $1"
            echo "  command: go mod download -json $1   (GOPROXY=$(go env GOPROXY))"
            echo "  --- its output ---"
            grep -E '"Error"|go:|proxy|dial|[0-9]{3} |timeout|server response' <<<"$out" | head -n 8 | sed 's/^/  | /'
        } >&2
        exit 1
    fi
    MODJSON=$out
}
json_field() { python3 -c 'import json,sys; print(json.load(sys.stdin).get(sys.argv[1]) or "")' "$1"; }
origin_hash() { python3 -c 'import json,sys; print((json.load(sys.stdin).get("Origin") or {}).get("Hash") or "")'; }

apt_updated=0
apt_ensure() {  # packages...: installs the missing ones, starting no service
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ "${#missing[@]}" -gt 0 ] || return 0
    [ "$(id -u)" = 0 ] || die "need root to apt-get install ${missing[*]} (or install them first)"
    if [ "$apt_updated" = 0 ]; then
        step "apt-get update" apt-get update -qq
        apt_updated=1
    fi
    local policy=/usr/sbin/policy-rc.d had=0
    [ -e "$policy" ] && had=1
    [ "$had" = 1 ] || { printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod +x "$policy"; }
    local rc=0
    ( step "apt-get install ${missing[*]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${missing[@]}" ) || rc=$?
    [ "$had" = 1 ] || rm -f "$policy"
    [ "$rc" = 0 ] || exit "$rc"
}

# A wrapper module under the cache: module podlens.local/upstream/<comp>, go
# line and godebug lines given, requiring MODULE@VERSION.
new_wrapper() {  # dir go_line module version [extra go.mod text]
    local dir=$1 goline=$2 mod=$3 ver=$4 extra=${5:-}
    rm -rf "$dir"; mkdir -p "$dir"
    {
        echo "// Generated by podlens scripts/upstream/build.sh; not part of any repo."
        echo "module podlens.local/upstream/$(basename "$dir")"
        echo
        echo "$goline"
        echo
        echo "require $mod $ver"
        [ -z "$extra" ] || printf '\n%s\n' "$extra"
    } >"$dir/go.mod"
    # A placeholder package so that `go mod` commands have a main module package.
    printf 'package wrapper\n' >"$dir/wrapper.go"
}

now() { date +%s; }

# ------------------------------------------------------------ components

build_kubernetes() {
    local ver=$K8S_VERSION out=$1 work=$2
    local json gomod minor major staging_ver
    mod_json "k8s.io/kubernetes@$ver"; json=$MODJSON
    gomod=$(json_field GoMod <<<"$json")
    major=$(sed -E 's/^v([0-9]+)\..*/\1/' <<<"$ver")
    minor=$(sed -E 's/^v[0-9]+\.([0-9]+)\..*/\1/' <<<"$ver")
    staging_ver="v0.${ver#v1.}"   # k8s.io/api etc. are tagged v0.Y.Z for v1.Y.Z
    # Each staging module the release replaces with ./staging/... -> its published v0.Y.Z.
    local staged
    staged=$(sed -nE 's#^[[:space:]]*(replace[[:space:]]+)?(k8s\.io/[^[:space:]]+)[[:space:]]+=>[[:space:]]+\./staging/.*#\2#p' "$gomod")
    [ -n "$staged" ] || die "no '=> ./staging/' replace directives in $gomod"
    local replaces goline godebug
    replaces=$(printf 'replace (\n'; for m in $staged; do printf '\t%s => %s %s\n' "$m" "$m" "$staging_ver"; done; printf ')\n')
    goline=$(grep -m1 -E '^go [0-9]' "$gomod")
    godebug=$(grep -E '^godebug ' "$gomod" || true)
    new_wrapper "$work" "$goline${godebug:+
$godebug}" k8s.io/kubernetes "$ver" "$replaces"
    msg "  [kubernetes] wrapper module $work/go.mod: $(wc -w <<<"$staged") staging modules -> $staging_ver"

    # As hack/lib/golang.sh + hack/lib/version.sh do for a release build: both
    # version packages, -s -w, -trimpath, tags selinux,notest,grpcnotrace;
    # CGO_ENABLED=0 for KUBE_STATIC_BINARIES (apiserver, controller-manager,
    # scheduler); the kubelet is not in that list (built with cgo).
    local date ld="" pkg
    date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        ld+=" -X $pkg.gitVersion=$ver -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
        ld+=" -X $pkg.buildDate=$date -X $pkg.gitTreeState=archive -X $pkg.gitCommit="
    done
    # shellcheck disable=SC2054  # the comma list is one -tags value
    local flags=(-mod=mod -trimpath -tags selinux,notest,grpcnotrace -ldflags "all=$ld -s -w")
    cd "$work"
    step "go mod download (k8s.io/kubernetes $ver + staging $staging_ver)" go mod download k8s.io/kubernetes
    step "go build kube-apiserver kube-controller-manager kube-scheduler (CGO_ENABLED=0)" \
        env CGO_ENABLED=0 nice -n 10 go build "${flags[@]}" -o "$out/" \
        k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
        k8s.io/kubernetes/cmd/kube-scheduler
    step "go build kubelet (CGO_ENABLED=1)" \
        env CGO_ENABLED=1 nice -n 10 go build "${flags[@]}" -o "$out/kubelet" k8s.io/kubernetes/cmd/kubelet
    notes "staging modules replaced by $staging_ver: $(tr '\n' ' ' <<<"$staged")
ldflags: all=$ld -s -w
tags: selinux,notest,grpcnotrace; kubelet CGO_ENABLED=1, others CGO_ENABLED=0"

    # The etcd pin should follow this release.
    local k8s_etcd
    k8s_etcd=$(sed -nE 's#^[[:space:]]*go\.etcd\.io/etcd/server/v3[[:space:]]+(v[^[:space:]]+).*#\1#p' "$gomod" | head -n1)
    if [ -n "$k8s_etcd" ] && [ "$k8s_etcd" != "$ETCD_VERSION" ]; then
        err "warning: k8s.io/kubernetes $ver pins etcd $k8s_etcd but ETCD_VERSION=$ETCD_VERSION"
    fi
}

build_etcd() {
    local ver=$ETCD_VERSION out=$1 work=$2 json gomod dir sha goline
    mod_json "go.etcd.io/etcd/server/v3@$ver"; json=$MODJSON
    gomod=$(json_field GoMod <<<"$json"); dir=$(json_field Dir <<<"$json")
    [ -f "$dir/main.go" ] || die "go.etcd.io/etcd/server/v3@$ver has no main.go (the etcd main package)"
    sha=$(origin_hash <<<"$json"); sha=${sha:-unknown}
    # server/v3's go.mod replaces its sibling modules with ../api etc.; a
    # wrapper requires them at the same version instead.
    local sib extra="require ("
    for sib in $(sed -nE 's#^[[:space:]]*(go\.etcd\.io/etcd/[^[:space:]]+)[[:space:]]+=>[[:space:]]+\.\./.*#\1#p' "$gomod"); do
        extra+=$'\n\t'"$sib $ver"
    done
    extra+=$'\n)'
    goline=$(grep -m1 -E '^go [0-9]' "$gomod")
    new_wrapper "$work" "$goline" go.etcd.io/etcd/server/v3 "$ver" "$extra"
    cd "$work"
    # As etcd's scripts/build-binary.sh: CGO_ENABLED=0, -X .../version.GitSHA.
    local ld="-s -w -X 'go.etcd.io/etcd/api/v3/version.GitSHA=$sha'"
    step "go mod download (go.etcd.io/etcd/server/v3 $ver)" go mod download go.etcd.io/etcd/server/v3
    step "go build etcd (go.etcd.io/etcd/server/v3, CGO_ENABLED=0)" \
        env CGO_ENABLED=0 nice -n 10 go build -mod=mod -trimpath -ldflags "$ld" -o "$out/etcd" go.etcd.io/etcd/server/v3
    notes "package go.etcd.io/etcd/server/v3 (main.go); siblings required at $ver
ldflags: $ld"
}

build_containerd2() {
    local ver=$CONTAINERD2_VERSION out=$1 work=$2 json gomod rev goline
    mod_json "github.com/containerd/containerd/v2@$ver"; json=$MODJSON
    gomod=$(json_field GoMod <<<"$json")
    rev=$(origin_hash <<<"$json")
    goline=$(grep -m1 -E '^go [0-9]' "$gomod")
    new_wrapper "$work" "$goline" github.com/containerd/containerd/v2 "$ver"
    cd "$work"
    # As containerd's Makefile(.linux): tags urfave_cli_no_docs (+ no_btrfs:
    # this build always leaves out the btrfs snapshotter, so it needs no
    # libbtrfs headers and does not depend on what else is installed);
    # the shim CGO_ENABLED=0 with no_grpc and -extldflags -static.
    local P=github.com/containerd/containerd/v2
    local ld="-s -w -X $P/version.Version=$ver -X $P/version.Revision=$rev -X $P/version.Package=$P"
    step "go mod download ($P $ver)" go mod download "$P"
    step "go build containerd ctr (tags urfave_cli_no_docs,no_btrfs)" \
        env nice -n 10 go build -mod=mod -trimpath -tags urfave_cli_no_docs,no_btrfs -ldflags "$ld" -o "$out/" \
        "$P/cmd/containerd" "$P/cmd/ctr"
    step "go build containerd-shim-runc-v2 (CGO_ENABLED=0, tags no_grpc)" \
        env CGO_ENABLED=0 nice -n 10 go build -mod=mod -trimpath -tags urfave_cli_no_docs,no_btrfs,no_grpc \
        -ldflags "$ld -extldflags -static" -o "$out/containerd-shim-runc-v2" "$P/cmd/containerd-shim-runc-v2"
    apt_ensure runc
    notes "tags: urfave_cli_no_docs,no_btrfs (shim: +no_grpc, CGO_ENABLED=0)
ldflags: $ld
runtime: Debian runc $(dpkg-query -W -f='${Version}' runc 2>/dev/null) at $(command -v runc || echo '?')"
}

build_crio() {
    local ver=$CRIO_VERSION out=$1 work=$2 json gomod dir goline
    # cgo libraries (as in CRI-O's install.md for Debian) and the runtime pieces
    # CRI-O does not build: conmon and an OCI runtime (crun default, runc too).
    apt_ensure gcc libc6-dev pkg-config libgpgme-dev libseccomp-dev libbtrfs-dev conmon crun runc
    mod_json "github.com/cri-o/cri-o@$ver"; json=$MODJSON
    gomod=$(json_field GoMod <<<"$json"); dir=$(json_field Dir <<<"$json")
    if grep -qE '^(replace|exclude)\b' "$gomod"; then
        err "warning: github.com/cri-o/cri-o@$ver go.mod has replace/exclude directives that a wrapper module ignores"
    fi
    goline=$(grep -m1 -E '^go [0-9]' "$gomod")
    new_wrapper "$work" "$goline" github.com/cri-o/cri-o "$ver"
    # Build tags exactly as CRI-O's Makefile computes them (hack/*_tag.sh),
    # run in a scratch dir since the module cache is read-only.
    local tags="containers_image_ostree_stub" t s
    mkdir -p "$work/tagprobe"
    for s in apparmor_tag btrfs_installed_tag btrfs_tag openpgp_tag seccomp_tag selinux_tag libsubid_tag; do
        t=$(cd "$work/tagprobe" && bash "$dir/hack/$s.sh" 2>/dev/null || true)
        [ -z "$t" ] || tags+=" $t"
    done
    local date ld
    date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
    ld="-s -w -X github.com/cri-o/cri-o/internal/version.buildDate=$date"
    cd "$work"
    step "go mod download (github.com/cri-o/cri-o $ver)" go mod download github.com/cri-o/cri-o
    step "go build crio (cgo; tags: $tags)" \
        env CGO_ENABLED=1 nice -n 10 go build -mod=mod -trimpath -tags "$tags" -ldflags "$ld" \
        -o "$out/crio" github.com/cri-o/cri-o/cmd/crio
    # pinns is C (pinns/Makefile: -std=c99 -Os -Wall -Werror -Wextra -static).
    rm -rf "$work/pinns"; cp -r "$dir/pinns" "$work/pinns"; chmod -R u+w "$work/pinns"
    step "cc pinns (static)" bash -c "cd '$work/pinns/src' && nice -n 10 cc -std=c99 -Os -O3 -Wall -Werror -Wextra -static -o '$out/pinns' *.c && strip -s '$out/pinns'"
    notes "tags: $tags
ldflags: $ld
conmon: $(command -v conmon) (Debian $(dpkg-query -W -f='${Version}' conmon))
crun: $(command -v crun) (Debian $(dpkg-query -W -f='${Version}' crun)); runc: $(command -v runc) (Debian $(dpkg-query -W -f='${Version}' runc))"
}

# ------------------------------------------------------------------ main

OUT_DIR=""
notes() { printf '%s\n' "$*" >>"$OUT_DIR/.notes"; }
build_component() {
    local comp=$1 ver dir tmp start secs b
    CUR_COMPONENT=$comp
    ver=$(version_of "$comp"); dir=$(bin_dir "$comp")
    start=$(now)
    LOG="$ROOT/logs/$comp-$ver.log"
    if is_cached "$comp"; then
        # shellcheck disable=SC2046
        apt_ensure $(runtime_pkgs_of "$comp")
        msg "$comp $ver: cached in $dir ($(( $(now) - start ))s)"
        CUR_COMPONENT=""
        return 0
    fi
    [ ! -s "$LOG" ] || mv -f "$LOG" "$LOG.1"   # keep the previous attempt's log
    : >"$LOG"
    msg "$comp $ver: building into $dir (log: $LOG)"
    tmp="$ROOT/bin/.$comp-$ver.tmp"
    rm -rf "$tmp"; mkdir -p "$tmp"
    OUT_DIR=$tmp
    # In a subshell: the build functions cd into their wrapper module.
    ( "build_$comp" "$tmp" "$ROOT/work/$comp-$ver" ) || exit $?
    for b in $(bins_of "$comp"); do
        version_line "$comp" "$tmp" "$b" >/dev/null || {
            err "FAILED: component $comp: $tmp/$b does not answer its version flag with ${ver#v}"
            err "  last lines of $LOG:"; tail -n 20 "$LOG" | sed 's/^/  | /' >&2
            exit 1
        }
    done
    secs=$(( $(now) - start ))
    {
        echo "component: $comp $ver"
        echo "built: $(date -u +%FT%TZ) in ${secs}s by $(go env GOVERSION) on $(uname -m), $(nproc) cores"
        for b in $(bins_of "$comp"); do echo "$b: $(version_line "$comp" "$tmp" "$b")"; done
        [ ! -f "$tmp/.notes" ] || cat "$tmp/.notes"
    } >"$tmp/BUILD-INFO"
    rm -f "$tmp/.notes"
    rm -rf "$dir"; mv "$tmp" "$dir"
    msg "$comp $ver: built in ${secs}s -> $dir"
    CUR_COMPONENT=""
}

main() {
    local targets=() a
    [ $# -gt 0 ] || set -- all
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --print-dir)
            [ $# -eq 2 ] || die "usage: build.sh --print-dir COMPONENT"
            version_of "$2" >/dev/null
            bin_dir "$2"
            is_cached "$2" || { err "$2 $(version_of "$2") is not built yet: run scripts/upstream/build.sh $2"; exit 2; }
            exit 0 ;;
        --list)
            for a in "${COMPONENTS[@]}"; do
                if is_cached "$a"; then s=built; else s="not built"; fi
                printf '%-12s %-9s %-10s %s\n' "$a" "$(version_of "$a")" "$s" "$(bin_dir "$a")"
            done
            exit 0 ;;
    esac
    for a in "$@"; do
        case "$a" in
            all) targets+=("${COMPONENTS[@]}") ;;
            kubernetes|etcd|containerd2|crio) targets+=("$a") ;;
            *) die "unknown argument '$a' (usage: build.sh [kubernetes|etcd|containerd2|crio|all] ... | --print-dir COMPONENT | --list)" ;;
        esac
    done

    check_go
    mkdir -p "$ROOT/bin" "$ROOT/go/mod" "$ROOT/go/build" "$ROOT/work" "$ROOT/logs"
    export GOMODCACHE="$ROOT/go/mod" GOCACHE="$ROOT/go/build"
    export GOTOOLCHAIN="$UPSTREAM_GOTOOLCHAIN" GOFLAGS="-buildvcs=false" GOWORK=off
    # One build at a time per cache.
    exec 9>"$ROOT/.lock"
    flock -n 9 || { msg "another build.sh holds $ROOT/.lock; waiting"; flock 9; }

    local seen=" " total_start summary=()
    total_start=$(now)
    for a in "${targets[@]}"; do
        case "$seen" in *" $a "*) continue ;; esac
        seen+="$a "
        local s0; s0=$(now)
        build_component "$a"
        summary+=("$(printf '%-12s %-9s %5ss' "$a" "$(version_of "$a")" "$(( $(now) - s0 ))")")
    done
    msg "done in $(( $(now) - total_start ))s:"
    printf '  %s\n' "${summary[@]}"
}

main "$@"; exit $?
