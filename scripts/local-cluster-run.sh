#!/usr/bin/env bash
# Starts and stops the control plane of scripts/local-cluster.sh (which builds the binaries and
# calls this with their directory). Everything binds 127.0.0.1 on ports chosen free at start, so
# several control planes can run side by side; each daemon's pid is in DIR/pids, its log in DIR/logs.
set -euo pipefail

cmd=$1 dir=$2 bin=$3
log() { printf 'local-cluster: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# A key and a certificate signed by the cluster CA: name, subject, extensions.
issue() {
  local name=$1 subject=$2 ext=$3
  openssl ecparam -name prime256v1 -genkey -noout -out "$pki/$name.key" 2>/dev/null
  openssl req -new -key "$pki/$name.key" -subj "$subject" -out "$pki/$name.csr" 2>/dev/null
  printf '%s\n' "$ext" >"$pki/$name.ext"
  openssl x509 -req -in "$pki/$name.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
    -days 30 -sha256 -extfile "$pki/$name.ext" -out "$pki/$name.crt" 2>/dev/null
  chmod 0600 "$pki/$name.key"
}

kubeconfig() { # file user cert key
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: https://127.0.0.1:$api_port
    certificate-authority: $pki/ca.crt
users:
- name: $2
  user:
    client-certificate: $3
    client-key: $4
contexts:
- name: local
  context: {cluster: local, user: $2}
current-context: local
EOF
  chmod 0600 "$1"
}

daemon() { # name binary args...
  local name=$1
  shift
  setsid "$@" </dev/null >"$dir/logs/$name.log" 2>&1 &
  echo $! >"$dir/pids/$name.pid"
}

wait_for() { # what seconds command...
  local what=$1 seconds=$2
  shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || die "$what not ready after ${seconds}s (logs in $dir/logs)"
    sleep 0.5
  done
}

start() {
  [ ! -e "$dir/pids" ] || die "$dir already holds a control plane: stop it first ($0 stop $dir)"
  mkdir -p "$dir"/{pki,logs,pids,bin,etcd}
  dir=$(cd "$dir" && pwd)
  pki=$dir/pki
  local etcd_port etcd_peer api_port cm_port sched_port kwok_port
  etcd_port=$(free_port) etcd_peer=$(free_port) api_port=$(free_port)
  cm_port=$(free_port) sched_port=$(free_port) kwok_port=$(free_port)

  # PKI: one CA; the API server's serving certificate; client certificates for the admin and the
  # components (their user names are what RBAC's bootstrap roles grant); service-account keys.
  openssl ecparam -name prime256v1 -genkey -noout -out "$pki/ca.key" 2>/dev/null
  openssl req -x509 -new -key "$pki/ca.key" -subj "/CN=cistern-test-cluster-ca" -days 30 \
    -out "$pki/ca.crt" 2>/dev/null
  issue apiserver "/CN=kube-apiserver" \
    "subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
extendedKeyUsage=serverAuth"
  issue admin "/O=system:masters/CN=cistern-test-admin" "extendedKeyUsage=clientAuth"
  issue controller-manager "/CN=system:kube-controller-manager" "extendedKeyUsage=clientAuth"
  issue scheduler "/CN=system:kube-scheduler" "extendedKeyUsage=clientAuth"
  issue kwok "/O=system:masters/CN=cistern-test-kwok" "extendedKeyUsage=clientAuth"
  openssl ecparam -name prime256v1 -genkey -noout -out "$pki/sa.key" 2>/dev/null
  openssl ec -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
  chmod 0600 "$pki/sa.key"

  kubeconfig "$dir/kubeconfig" admin "$pki/admin.crt" "$pki/admin.key"
  kubeconfig "$dir/controller-manager.kubeconfig" controller-manager "$pki/controller-manager.crt" "$pki/controller-manager.key"
  kubeconfig "$dir/scheduler.kubeconfig" scheduler "$pki/scheduler.crt" "$pki/scheduler.key"
  kubeconfig "$dir/kwok.kubeconfig" kwok "$pki/kwok.crt" "$pki/kwok.key"
  ln -sf "$bin/kubectl" "$dir/bin/kubectl"
  ln -sf "$bin/csi-sanity" "$dir/bin/csi-sanity"
  local kubectl="$dir/bin/kubectl --kubeconfig $dir/kubeconfig"

  daemon etcd "$bin/etcd" --name local --data-dir "$dir/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$etcd_peer" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer" \
    --initial-cluster "local=http://127.0.0.1:$etcd_peer" --unsafe-no-fsync --log-level warn
  wait_for etcd 60 curl -sf "http://127.0.0.1:$etcd_port/health"

  daemon kube-apiserver "$bin/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" \
    --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
    --client-ca-file "$pki/ca.crt" \
    --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --authorization-mode Node,RBAC --service-cluster-ip-range 10.96.0.0/16 \
    --allow-privileged=true --enable-priority-and-fairness=false \
    --profiling=false --v=1
  wait_for kube-apiserver 120 curl -sf --cacert "$pki/ca.crt" --cert "$pki/admin.crt" --key "$pki/admin.key" \
    "https://127.0.0.1:$api_port/readyz"

  daemon kube-controller-manager "$bin/kube-controller-manager" \
    --kubeconfig "$dir/controller-manager.kubeconfig" \
    --authentication-kubeconfig "$dir/controller-manager.kubeconfig" \
    --authorization-kubeconfig "$dir/controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$cm_port" \
    --use-service-account-credentials=true \
    --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
    --cluster-signing-cert-file "$pki/ca.crt" --cluster-signing-key-file "$pki/ca.key" \
    --leader-elect=false --profiling=false --v=1
  daemon kube-scheduler "$bin/kube-scheduler" \
    --kubeconfig "$dir/scheduler.kubeconfig" \
    --authentication-kubeconfig "$dir/scheduler.kubeconfig" \
    --authorization-kubeconfig "$dir/scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$sched_port" --leader-elect=false --profiling=false --v=1
  # kwok simulates the nodes annotated kwok.x-k8s.io/node=fake and their pods with its default
  # "fast" stages: pods become Running, pods of Jobs Succeeded.
  daemon kwok "$bin/kwok" --kubeconfig "$dir/kwok.kubeconfig" --config "$bin/kwok-stages.yaml" \
    --node-lease-duration-seconds 40 \
    --manage-all-nodes=false --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
    --cidr 10.244.0.0/16 --node-ip 127.0.0.1 --node-port "$kwok_port" --server-address "127.0.0.1:$kwok_port"

  local i
  for i in 0 1 2; do
    $kubectl apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-$i
  annotations:
    node.alpha.kubernetes.io/ttl: "0"
    kwok.x-k8s.io/node: fake
  labels:
    kubernetes.io/arch: amd64
    kubernetes.io/os: linux
    kubernetes.io/hostname: kwok-node-$i
    type: kwok
EOF
  done
  wait_for "kwok nodes" 120 $kubectl wait --for=condition=Ready node --all --timeout=2s
  # The service-account controller makes `default` in each namespace; pods need it.
  wait_for "default service account" 120 $kubectl get serviceaccount default -n default
  cat >"$dir/env" <<EOF
export KUBECONFIG=$dir/kubeconfig
export PATH=$dir/bin:\$PATH
EOF
  log "ready: KUBECONFIG=$dir/kubeconfig $dir/bin/kubectl get nodes"
}

stop() {
  [ -d "$dir" ] || return 0
  dir=$(cd "$dir" && pwd)
  local pidfile pid
  # Reverse start order: the API server goes after its clients, etcd last.
  for name in kwok kube-scheduler kube-controller-manager kube-apiserver etcd; do
    pidfile=$dir/pids/$name.pid
    [ -f "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
      kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
  done
  # Tests may mount under DIR (FUSE, bind mounts): unmount, deepest first.
  findmnt -rn -o TARGET | grep -F "$dir/" | sort -r | while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
  done
  rm -rf "$dir/pids"
  log "stopped the control plane of $dir"
}

case "$cmd" in
  start) start ;;
  stop) stop ;;
esac
