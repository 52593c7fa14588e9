//go:build tools

// Package tools pins kube-network-policies (NetworkPolicy enforcement with nftables and nfqueue)
// for the single-node cluster of infra/k8s (make k8s-up).
package tools

import (
	_ "sigs.k8s.io/kube-network-policies/cmd"
)
