//go:build tools

// Package tools pins the CNI plugins bridge, host-local, loopback and portmap
// for the single-node cluster of infra/k8s (make k8s-up).
package tools

import (
	_ "github.com/containernetworking/plugins/plugins/main/bridge"
	_ "github.com/containernetworking/plugins/plugins/ipam/host-local"
	_ "github.com/containernetworking/plugins/plugins/main/loopback"
	_ "github.com/containernetworking/plugins/plugins/meta/portmap"
)
