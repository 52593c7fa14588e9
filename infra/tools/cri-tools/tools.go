//go:build tools

// Package tools pins crictl (debugging the CRI)
// for the single-node cluster of infra/k8s (make k8s-up).
package tools

import (
	_ "sigs.k8s.io/cri-tools/cmd/crictl"
)
