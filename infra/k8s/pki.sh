#!/usr/bin/env bash
# kubeadm-style PKI and kubeconfigs for the single-node cluster, with openssl:
#   pki.sh STATE_DIR NODE_IP NODE_NAME API_URL
# Three CAs (kubernetes, etcd, front-proxy), the service-account key pair, serving and client
# certificates, one kubeconfig per component. Idempotent: what exists is kept.
set -euo pipefail
state=$1 node_ip=$2 node_name=$3 api=$4
pki=$state/pki
mkdir -p "$pki/etcd"
umask 077

ca() { # dir/name CN
  [[ -f $pki/$1.crt ]] && return
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$pki/$1.key" -out "$pki/$1.crt" -days 3650 \
    -subj "/CN=$2" -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,digitalSignature,keyEncipherment,keyCertSign" 2>/dev/null
}

cert() { # name ca subject usage(server|client|both) [SANs]
  local name=$1 signer=$2 subj=$3 usage=$4 sans=${5:-}
  [[ -f $pki/$name.crt ]] && return
  local ext; ext=$(mktemp)
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    case $usage in
      server) echo "extendedKeyUsage=serverAuth" ;;
      client) echo "extendedKeyUsage=clientAuth" ;;
      both) echo "extendedKeyUsage=serverAuth,clientAuth" ;;
    esac
    [[ -n $sans ]] && echo "subjectAltName=$sans"
  } > "$ext"
  openssl req -newkey rsa:2048 -nodes -keyout "$pki/$name.key" -out "$pki/$name.csr" -subj "$subj" 2>/dev/null
  openssl x509 -req -in "$pki/$name.csr" -CA "$pki/$signer.crt" -CAkey "$pki/$signer.key" \
    -CAcreateserial -days 365 -extfile "$ext" -out "$pki/$name.crt" 2>/dev/null
  rm -f "$pki/$name.csr" "$ext"
}

ca ca kubernetes
ca etcd/ca etcd-ca
ca front-proxy-ca front-proxy-ca
[[ -f $pki/sa.key ]] || { openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null; openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null; }

cert apiserver ca "/CN=kube-apiserver" server \
  "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:$node_name,IP:10.96.0.1,IP:$node_ip,IP:127.0.0.1"
cert apiserver-kubelet-client ca "/O=kubeadm:cluster-admins/CN=kube-apiserver-kubelet-client" client
cert front-proxy-client front-proxy-ca "/CN=front-proxy-client" client
cert etcd/server etcd/ca "/CN=$node_name" both "DNS:$node_name,DNS:localhost,IP:$node_ip,IP:127.0.0.1"
cert apiserver-etcd-client etcd/ca "/CN=kube-apiserver-etcd-client" client
cert kubelet ca "/CN=$node_name" server "DNS:$node_name,IP:$node_ip"

# client identities: name CN O
while read -r name cn org; do
  subj="/CN=$cn"; [[ $org != - ]] && subj="/O=$org$subj"
  cert "$name-client" ca "$subj" client
  kc=$state/$name.conf
  [[ -f $kc ]] && continue
  cat > "$kc" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: akson
  cluster:
    server: $api
    certificate-authority-data: $(base64 -w0 "$pki/ca.crt")
users:
- name: $cn
  user:
    client-certificate-data: $(base64 -w0 "$pki/$name-client.crt")
    client-key-data: $(base64 -w0 "$pki/$name-client.key")
contexts:
- name: akson
  context: {cluster: akson, user: $cn}
current-context: akson
EOF
done <<EOF
admin kubernetes-admin system:masters
controller-manager system:kube-controller-manager -
scheduler system:kube-scheduler -
kubelet system:node:$node_name system:nodes
kube-proxy system:kube-proxy -
coredns system:coredns -
kube-network-policies system:kube-network-policies -
EOF
