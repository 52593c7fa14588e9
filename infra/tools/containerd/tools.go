//go:build tools

// Package tools pins containerd v2, ctr and the runc shim
// for the single-node cluster of infra/k8s (make k8s-up).
package tools

import (
	_ "github.com/containerd/containerd/v2/cmd/containerd"
	_ "github.com/containerd/containerd/v2/cmd/ctr"
	_ "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2"
)
