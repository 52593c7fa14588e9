#!/usr/bin/env bash
# A single-node Kubernetes on this machine, every binary built from its pinned Go module
# (infra/tools/build-cluster.sh), every process started here and stopped here:
#
#   cluster.sh up       build what is missing, PKI, start etcd .. kube-network-policies, wait for node Ready
#   cluster.sh down     stop every process, remove pods, mounts, netns, links, nft/iptables rules, cgroups
#   cluster.sh status   each process (pid, alive), the node, the pods
#   cluster.sh env      the KUBECONFIG line to export
#   cluster.sh leftovers  what `down` would have to remove (fails when there is any; down runs it last)
#
# State (PKI, etcd, containerd, kubelet) under $AKSON_K8S_STATE (/var/lib/akson-k8s), runtime
# files (sockets, pids, netns) under /run/akson-k8s. Everything listens on the node IP
# 10.200.0.1 (a bridge of its own, akson-node0, with no ports) or on unix sockets; nothing on a
# public address. Processes run under nice/ionice: the machine is shared.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
S="${AKSON_K8S_STATE:-/var/lib/akson-k8s}"
R=/run/akson-k8s
NODE_IP=10.200.0.1
NODE_NAME=akson-k8s
NODE_LINK=akson-node0
CNI_BRIDGE=akson-cni0
POD_CIDR=10.244.0.0/24
CLUSTER_CIDR=10.244.0.0/16
SERVICE_CIDR=10.96.0.0/16
API="https://$NODE_IP:6443"
PAUSE_IMAGE=registry.k8s.io/pause:3.10.2
# the order they start in; down stops them in reverse
COMPONENTS=(etcd kube-apiserver containerd kube-controller-manager kube-scheduler kubelet kube-proxy coredns kube-network-policies)
NICE=(nice -n 19 ionice -c3)

log() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

bins() { # resolve the bundle directories (building what is missing)
  local bundle dir
  while read -r bundle dir; do
    case $bundle in
      kubernetes) K=$dir ;; etcd) ETCD=$dir ;; containerd) CTRD=$dir ;; cni-plugins) CNI=$dir ;;
      cri-tools) CRICTL=$dir ;; coredns) COREDNS=$dir ;; kube-network-policies) KNP=$dir ;;
    esac
  done < <("$repo/infra/tools/build-cluster.sh" kubernetes etcd containerd cni-plugins cri-tools coredns kube-network-policies)
  export PATH="$CTRD:$K:$PATH"
  KUBECTL=("$K/kubectl" --kubeconfig "$S/admin.conf")
  CTR=("$CTRD/ctr" --address "$R/containerd/containerd.sock")
}

pidfile() { echo "$R/pids/$1.pid"; }
alive() { # component -> pid if running (and the pid is still that binary)
  local f pid; f=$(pidfile "$1")
  [[ -f $f ]] || return 1
  local exe; read -r pid exe < "$f"
  [[ -d /proc/$pid && "$(readlink "/proc/$pid/exe" 2>/dev/null)" == "$exe" ]] || return 1
  echo "$pid"
}

start() { # component binary args...
  local name=$1 exe=$2; shift 2
  if alive "$name" >/dev/null; then log "$name already running"; return; fi
  mkdir -p "$S/logs" "$R/pids"
  # its own session (setsid), so it outlives this script; stopped by `down` from the pid file
  setsid "${NICE[@]}" "$exe" "$@" >>"$S/logs/$name.log" 2>&1 < /dev/null &
  echo "$! $exe" > "$(pidfile "$name")"
  # nice/ionice exec the binary: the pid is the component's own
  sleep 0.3
  local pid=$!
  [[ "$(readlink "/proc/$pid/exe" 2>/dev/null)" == "$exe" ]] || sleep 1
  alive "$name" >/dev/null || { tail -20 "$S/logs/$name.log" >&2; die "$name did not start (log: $S/logs/$name.log)"; }
  log "started $name (pid $pid)"
}

wait_for() { # description timeout command...
  local what=$1 timeout=$2 t0=$SECONDS; shift 2
  until "$@" >/dev/null 2>&1; do
    ((SECONDS - t0 < timeout)) || die "timed out after ${timeout}s waiting for $what"
    sleep 1
  done
  log "$what after $((SECONDS - t0)) s"
}

stop() { # component [timeout]
  local name=$1 timeout=${2:-20} pid
  pid=$(alive "$name") || { rm -f "$(pidfile "$name")"; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  local t0=$SECONDS
  while [[ -d /proc/$pid ]] && ((SECONDS - t0 < timeout)); do sleep 0.5; done
  if [[ -d /proc/$pid ]]; then log "$name did not stop in ${timeout}s: SIGKILL"; kill -KILL "$pid" 2>/dev/null || true; sleep 0.5; fi
  rm -f "$(pidfile "$name")"
  log "stopped $name"
}

sysctl_set() { # key value: remember the old value once, set the new one
  local key=$1 value=$2 old
  old=$(sysctl -n "$key")
  grep -q "^$key " "$S/sysctl.orig" 2>/dev/null || echo "$key $old" >> "$S/sysctl.orig"
  sysctl -qw "$key=$value"
}

host_setup() {
  mkdir -p "$S" "$R"
  # the tables that exist before us, so `down` removes only what the cluster added
  [[ -f $S/nft-tables.orig ]] || nft list tables > "$S/nft-tables.orig"
  if ! ip link show "$NODE_LINK" >/dev/null 2>&1; then
    ip link add "$NODE_LINK" type bridge
    ip addr add "$NODE_IP/32" dev "$NODE_LINK"
    ip link set "$NODE_LINK" up
  fi
  sysctl_set net.ipv4.ip_forward 1
  sysctl_set net.bridge.bridge-nf-call-iptables 1
}

put() { # file: stdin replaces it only when the content differs
  local tmp; tmp=$(mktemp)
  cat > "$tmp"
  if cmp -s "$tmp" "$1"; then rm -f "$tmp"; else mv "$tmp" "$1"; chmod 0644 "$1"; fi
}

write_configs() {
  mkdir -p "$S/cni/net.d" "$S/cni/ipam" "$S/kubelet" "$S/pod-logs" "$R/containerd"
  ln -sfn "$CNI" "$S/cni/bin"
  put "$S/cni/net.d/10-akson.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "akson",
  "plugins": [
    {"type": "bridge", "bridge": "$CNI_BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "dataDir": "$S/cni/ipam",
              "ranges": [[{"subnet": "$POD_CIDR"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}, "backend": "nftables"}
  ]
}
EOF
  put "$S/containerd.toml" <<EOF
version = 3
root = "$S/containerd"
state = "$R/containerd/state"
[grpc]
  address = "$R/containerd/containerd.sock"
[ttrpc]
  address = "$R/containerd/containerd.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins]
  [plugins.'io.containerd.internal.v1.opt']
    path = "$S/containerd-opt"
  [plugins.'io.containerd.nri.v1.nri']
    disable = true
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = "overlayfs"
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = "$PAUSE_IMAGE"
  [plugins.'io.containerd.cri.v1.runtime']
    netns_mounts_under_state_dir = true
    # this VM's root lacks CAP_SYS_RESOURCE: runc cannot lower oom_score_adj (kubelet asks -998
    # for sandboxes: "failed to update /proc/self/oom_score_adj: Permission denied")
    restrict_oom_score_adj = true
    enable_unprivileged_ports = true
    enable_unprivileged_icmp = true
    cdi_spec_dirs = []
    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      default_runtime_name = "runc"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
          BinaryName = "$(command -v runc)"
          SystemdCgroup = false
          Root = "$R/runc"
    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = ["$S/cni/bin"]
      conf_dir = "$S/cni/net.d"
  [plugins.'io.containerd.grpc.v1.cri']
    stream_server_address = "$NODE_IP"
    stream_server_port = "0"
EOF
  put "$S/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: $NODE_IP
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $S/pki/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $S/pki/kubelet.crt
tlsPrivateKeyFile: $S/pki/kubelet.key
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://$R/containerd/containerd.sock
clusterDNS: [$NODE_IP]
clusterDomain: cluster.local
resolvConf: $S/resolv.conf
podLogsDir: $S/pod-logs
staticPodPath: ""
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 200Mi, nodefs.available: 2%, imagefs.available: 2%, nodefs.inodesFree: 2%}
maxPods: 60
EOF
  printf 'runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\ntimeout: 20\n' \
    "$R/containerd/containerd.sock" "$R/containerd/containerd.sock" | put "$S/crictl.yaml"
  # pods resolve cluster names only (no upstream DNS on this machine)
  echo "nameserver $NODE_IP" | put "$S/resolv.conf"
  put "$S/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: nftables
clientConnection: {kubeconfig: $S/kube-proxy.conf}
hostnameOverride: $NODE_NAME
bindAddress: $NODE_IP
healthzBindAddress: $NODE_IP:10256
metricsBindAddress: $NODE_IP:10249
clusterCIDR: $CLUSTER_CIDR
nodePortAddresses: ["$NODE_IP/32"]
conntrack: {maxPerCore: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
  put "$S/Corefile" <<EOF
cluster.local:53 in-addr.arpa:53 {
    bind $NODE_IP
    errors
    health $NODE_IP:8080
    ready $NODE_IP:8181
    kubernetes cluster.local in-addr.arpa {
        kubeconfig $S/coredns.conf
        pods insecure
        fallthrough in-addr.arpa
    }
    cache 30
    loadbalance
}
EOF
}

rbac() { # the apiserver's kubelet client (exec, logs) and the host-process add-ons (CoreDNS, kube-network-policies)
  "${KUBECTL[@]}" apply -f - >/dev/null <<'EOF'
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "akson:kube-apiserver-kubelet-client"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:kubelet-api-admin"}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: kube-apiserver-kubelet-client}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "system:coredns"}
rules:
- {apiGroups: [""], resources: [endpoints, services, pods, namespaces], verbs: [list, watch]}
- {apiGroups: [discovery.k8s.io], resources: [endpointslices], verbs: [list, watch]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "system:coredns"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:coredns"}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: "system:coredns"}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "system:kube-network-policies"}
rules:
- {apiGroups: [""], resources: [pods, namespaces, nodes], verbs: [list, watch, get]}
- {apiGroups: [networking.k8s.io], resources: [networkpolicies], verbs: [list, watch, get]}
- {apiGroups: [policy.networking.k8s.io], resources: [adminnetworkpolicies, baselineadminnetworkpolicies], verbs: [list, watch, get]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "system:kube-network-policies"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:kube-network-policies"}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: "system:kube-network-policies"}]
EOF
}

import_images() { # pause (the sandbox image) and agnhost, packed by images.sh
  local tar
  while read -r tar; do
    "${CTR[@]}" -n k8s.io images import --all-platforms "$tar" >/dev/null
    log "imported $(basename "$tar")"
  done < <("$here/images.sh")
}

node_ready_since() { # Ready is True and the kubelet renewed its node Lease after $UP_SINCE
  # (the Ready condition itself is only re-posted every 5 min when unchanged, or is left in etcd)
  local ready renewed
  ready=$("${KUBECTL[@]}" get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}') || return 1
  renewed=$("${KUBECTL[@]}" -n kube-node-lease get lease "$NODE_NAME" -o jsonpath='{.spec.renewTime}') || return 1
  [[ $ready == True && ! $renewed < $UP_SINCE ]]
}

up() {
  local t_up=$SECONDS t
  UP_STARTED=$(date +%s)
  # Debian's: runc; nft (kube-proxy's nftables mode); iptables (kubelet's canaries); conntrack,
  # socat, ebtables, ethtool (kubelet/kube-proxy tools); gcc + static libc (the pause image)
  "$repo/infra/tools/ensure-packages.sh" runc=runc nftables=nft iptables=iptables conntrack=conntrack \
    socat=socat ebtables=ebtables ethtool=ethtool gcc=gcc libc6-dev=/usr/lib/x86_64-linux-gnu/libc.a \
    openssl=openssl curl=curl
  t=$SECONDS; bins; log "binaries ready in $((SECONDS - t)) s"
  host_setup
  t=$SECONDS; "$here/pki.sh" "$S" "$NODE_IP" "$NODE_NAME" "$API"; log "PKI and kubeconfigs in $((SECONDS - t)) s"
  write_configs
  local p=$S/pki
  start etcd "$ETCD/etcd" --name "$NODE_NAME" --data-dir "$S/etcd" \
    --listen-client-urls "https://$NODE_IP:2379" --advertise-client-urls "https://$NODE_IP:2379" \
    --listen-peer-urls "https://$NODE_IP:2380" --initial-advertise-peer-urls "https://$NODE_IP:2380" \
    --initial-cluster "$NODE_NAME=https://$NODE_IP:2380" --listen-metrics-urls "" \
    --cert-file "$p/etcd/server.crt" --key-file "$p/etcd/server.key" --client-cert-auth --trusted-ca-file "$p/etcd/ca.crt" \
    --peer-cert-file "$p/etcd/server.crt" --peer-key-file "$p/etcd/server.key" --peer-client-cert-auth --peer-trusted-ca-file "$p/etcd/ca.crt" \
    --snapshot-count 10000 --quota-backend-bytes 2147483648
  start kube-apiserver "$K/kube-apiserver" --advertise-address "$NODE_IP" --bind-address "$NODE_IP" --secure-port 6443 \
    --etcd-servers "https://$NODE_IP:2379" --etcd-cafile "$p/etcd/ca.crt" \
    --etcd-certfile "$p/apiserver-etcd-client.crt" --etcd-keyfile "$p/apiserver-etcd-client.key" \
    --client-ca-file "$p/ca.crt" --tls-cert-file "$p/apiserver.crt" --tls-private-key-file "$p/apiserver.key" \
    --kubelet-client-certificate "$p/apiserver-kubelet-client.crt" --kubelet-client-key "$p/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority "$p/ca.crt" --kubelet-preferred-address-types InternalIP \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$p/sa.pub" --service-account-signing-key-file "$p/sa.key" \
    --service-cluster-ip-range "$SERVICE_CIDR" --authorization-mode Node,RBAC \
    --enable-admission-plugins NodeRestriction,PodSecurity --allow-privileged=true \
    --requestheader-client-ca-file "$p/front-proxy-ca.crt" --requestheader-allowed-names front-proxy-client \
    --requestheader-extra-headers-prefix X-Remote-Extra- --requestheader-group-headers X-Remote-Group \
    --requestheader-username-headers X-Remote-User \
    --proxy-client-cert-file "$p/front-proxy-client.crt" --proxy-client-key-file "$p/front-proxy-client.key" \
    --profiling=false
  start containerd "$CTRD/containerd" --config "$S/containerd.toml"
  wait_for "kube-apiserver ready" 120 "${KUBECTL[@]}" get --raw /readyz
  start kube-controller-manager "$K/kube-controller-manager" --kubeconfig "$S/controller-manager.conf" \
    --authentication-kubeconfig "$S/controller-manager.conf" --authorization-kubeconfig "$S/controller-manager.conf" \
    --bind-address "$NODE_IP" --client-ca-file "$p/ca.crt" --requestheader-client-ca-file "$p/front-proxy-ca.crt" \
    --cluster-signing-cert-file "$p/ca.crt" --cluster-signing-key-file "$p/ca.key" --root-ca-file "$p/ca.crt" \
    --service-account-private-key-file "$p/sa.key" --use-service-account-credentials=true \
    --allocate-node-cidrs=true --cluster-cidr "$CLUSTER_CIDR" --node-cidr-mask-size 24 \
    --service-cluster-ip-range "$SERVICE_CIDR" --leader-elect=false --profiling=false
  start kube-scheduler "$K/kube-scheduler" --kubeconfig "$S/scheduler.conf" \
    --authentication-kubeconfig "$S/scheduler.conf" --authorization-kubeconfig "$S/scheduler.conf" \
    --bind-address "$NODE_IP" --leader-elect=false --profiling=false
  wait_for "containerd socket" 60 "${CTR[@]}" version
  t=$SECONDS; import_images; log "images imported in $((SECONDS - t)) s"
  start kubelet "$K/kubelet" --config "$S/kubelet/config.yaml" --kubeconfig "$S/kubelet.conf" \
    --root-dir "$S/kubelet" --hostname-override "$NODE_NAME" --node-ip "$NODE_IP"
  rbac
  start kube-proxy "$K/kube-proxy" --config "$S/kube-proxy.yaml"
  start coredns "$COREDNS/coredns" -conf "$S/Corefile"
  if [[ -x $KNP/kube-network-policies ]]; then
    KUBECONFIG="$S/kube-network-policies.conf" start kube-network-policies "$KNP/kube-network-policies" \
      --hostname-override "$NODE_NAME" --disable-nri --metrics-bind-address "$NODE_IP:9080"
  fi
  UP_SINCE=$(date -u -d "@$UP_STARTED" +%Y-%m-%dT%H:%M:%SZ)
  wait_for "node $NODE_NAME Ready (node lease renewed since up began)" 180 node_ready_since
  log "cluster up in $((SECONDS - t_up)) s; export KUBECONFIG=$S/admin.conf"
}

# --- down -------------------------------------------------------------------------------

remove_pods() { # every sandbox through the CRI (runs the CNI DEL: veths, IPs)
  [[ -S $R/containerd/containerd.sock ]] && alive containerd >/dev/null || return 0
  local crictl=("$CRICTL/crictl" --config "$S/crictl.yaml")
  local pods
  mapfile -t pods < <("${crictl[@]}" pods -q 2>/dev/null)
  ((${#pods[@]})) && { "${crictl[@]}" stopp "${pods[@]}" >/dev/null 2>&1 || true; }
  "${crictl[@]}" rmp -fa >/dev/null 2>&1 || true
}

kill_shims() { # the runc shims containerd started (their own sessions), by pid
  local exe=$CTRD/containerd-shim-runc-v2 pid
  for pid in /proc/[0-9]*; do
    pid=${pid#/proc/}
    [[ "$(readlink "/proc/$pid/exe" 2>/dev/null)" == "$exe" ]] && kill -KILL "$pid" 2>/dev/null && log "killed shim $pid"
  done
  return 0
}

unmount_all() { # every mount under the state and runtime dirs, deepest first
  local mnt
  for _ in 1 2 3; do
    mapfile -t mnts < <(awk -v s="$S" -v r="$R" '$5 ~ "^("s"|"r")(/|$)" {print $5}' /proc/self/mountinfo | sort -r)
    ((${#mnts[@]})) || return 0
    for mnt in "${mnts[@]}"; do umount -l "$(printf '%b' "$mnt")" 2>/dev/null || true; done
  done
  awk -v s="$S" -v r="$R" '$5 ~ "^("s"|"r")(/|$)" {print "still mounted: " $5}' /proc/self/mountinfo >&2
}

clean_network() {
  local link t
  for link in $(ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1); do
    case $link in
      "$CNI_BRIDGE"|"$NODE_LINK") ip link del "$link" && log "removed link $link" ;;
    esac
  done
  # veths of pods whose netns went away are gone with it; any left on our bridge are deleted above
  # nftables tables the cluster added (kube-proxy, kube-network-policies, portmap, ...)
  while read -r t; do
    grep -qxF "$t" "$S/nft-tables.orig" 2>/dev/null && continue
    nft delete $t && log "removed nft $t"
  done < <(nft list tables)
  # chains kubelet/CNI added to iptables-nft tables that existed before
  local table
  for table in filter nat mangle raw; do
    iptables-save -t "$table" 2>/dev/null | grep -qE 'KUBE-|CNI-' || continue
    iptables-save -t "$table" | grep -vE -- '-j (KUBE|CNI)-|^:(KUBE|CNI)-|^-A (KUBE|CNI)-' | iptables-restore -T "$table"
    log "removed KUBE-/CNI- chains from iptables $table"
  done
}

clean_cgroups() { # kubelet's kubepods hierarchy in every cgroup v1 controller
  local d
  for d in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/*/kubepods.slice /sys/fs/cgroup/unified/kubepods; do
    [[ -d $d ]] || continue
    find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || log "could not remove all of $d"
  done
}

restore_sysctls() {
  [[ -f $S/sysctl.orig ]] || return 0
  local key value
  while read -r key value; do sysctl -qw "$key=$value"; done < "$S/sysctl.orig"
  rm -f "$S/sysctl.orig"
}

leftovers() { # what `down` must not leave behind; prints each, fails when there is any
  local n=0 pid exe d t
  local -A ours=()
  for d in "$ETCD/etcd" "$K/kube-apiserver" "$K/kube-controller-manager" "$K/kube-scheduler" "$K/kubelet" \
    "$K/kube-proxy" "$CTRD/containerd" "$CTRD/containerd-shim-runc-v2" "$COREDNS/coredns" "$KNP/kube-network-policies"; do
    ours[$d]=1
  done
  for pid in /proc/[0-9]*; do
    exe=$(readlink "$pid/exe" 2>/dev/null) || continue
    [[ -n ${ours[$exe]:-} ]] && { echo "leftover process ${pid#/proc/} $exe"; n=$((n + 1)); }
  done
  while read -r d; do echo "leftover mount $d"; n=$((n + 1)); done < <(awk -v s="$S" -v r="$R" '$5 ~ "^("s"|"r")(/|$)" {print $5}' /proc/self/mountinfo)
  for d in "$NODE_LINK" "$CNI_BRIDGE"; do ip link show "$d" >/dev/null 2>&1 && { echo "leftover link $d"; n=$((n + 1)); }; done
  while read -r t; do
    grep -qxF "$t" "$S/nft-tables.orig" 2>/dev/null || { echo "leftover nft $t"; n=$((n + 1)); }
  done < <(nft list tables)
  iptables-save 2>/dev/null | grep -qE '(KUBE|CNI)-' && { echo "leftover iptables KUBE-/CNI- rules"; n=$((n + 1)); }
  for d in /sys/fs/cgroup/*/kubepods; do [[ -d $d ]] && { echo "leftover cgroup $d"; n=$((n + 1)); }; done
  for d in /run/containerd/s/*; do [[ -e $d ]] && { echo "leftover shim socket $d"; n=$((n + 1)); }; done
  ((n == 0))
}

down() {
  local t0=$SECONDS
  bins 2>/dev/null
  local i
  for ((i = ${#COMPONENTS[@]} - 1; i >= 0; i--)); do
    case ${COMPONENTS[i]} in
      containerd)
        remove_pods
        stop containerd
        kill_shims ;;
      kubelet) stop kubelet 30 ;;
      *) stop "${COMPONENTS[i]}" ;;
    esac
  done
  unmount_all
  rm -rf "$R/containerd/state/io.containerd.grpc.v1.cri/sandboxes" 2>/dev/null || true
  # the shims' sockets are in containerd's hard-coded /run/containerd/s (pkg/shim/util_unix.go),
  # whatever its state dir; the dirs go when empty (there was no containerd here before)
  rmdir /run/containerd/s /run/containerd/fifo /run/containerd/runc/k8s.io /run/containerd/runc /run/containerd 2>/dev/null || true
  clean_network
  clean_cgroups
  restore_sysctls
  local rc=0
  leftovers >&2 || { rc=1; log "ERROR: the above is left behind"; }
  rm -f "$S/nft-tables.orig"
  if ((rc == 0)); then
    log "cluster down in $((SECONDS - t0)) s: no process, mount, link, nft table, KUBE-/CNI- rule or kubepods cgroup left (state kept in $S; AKSON_K8S_PURGE=1 removes it)"
  fi
  if [[ ${AKSON_K8S_PURGE:-0} == 1 ]]; then rm -rf "$S" "$R"; log "removed $S and $R"; fi
  return $rc
}

status() {
  local c pid
  for c in "${COMPONENTS[@]}"; do
    if pid=$(alive "$c"); then
      printf '%-24s pid %-8s up %s\n' "$c" "$pid" "$(ps -o etime= -p "$pid" | tr -d ' ')"
    else
      printf '%-24s not running\n' "$c"
    fi
  done
  if alive kube-apiserver >/dev/null; then
    bins 2>/dev/null
    "${KUBECTL[@]}" get nodes -o wide 2>&1 || true
    "${KUBECTL[@]}" get pods -A -o wide 2>&1 || true
  fi
  echo "listening (node IP $NODE_IP):"
  ss -Htlnp 2>/dev/null | grep -E "$NODE_IP|akson" | awk '{print "  " $4 " " $6}' || true
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  env) echo "export KUBECONFIG=$S/admin.conf" ;;
  leftovers) bins 2>/dev/null; leftovers ;;
  *) echo "usage: $0 up|down|status|env|leftovers" >&2; exit 2 ;;
esac
