//go:build tools

// Package tools pins kube-network-policies (NetworkPolicy enforcement with nftables and nfqueue)
// for the single-node cluster of infra/k8s (make k8s-up).
package tools

import (
	_ "k8s.io/client-go/tools/clientcmd" // knp.sh: cmd/main.go reads $KUBECONFIG
	_ "sigs.k8s.io/kube-network-policies/cmd"
)
