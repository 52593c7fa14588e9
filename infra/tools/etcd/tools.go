//go:build tools

// Package tools pins etcd (its server module's main package)
// for the single-node cluster of infra/k8s (make k8s-up).
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
)
