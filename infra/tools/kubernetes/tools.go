//go:build tools

// Package tools pins the Kubernetes components of the single-node cluster (infra/k8s, make k8s-up):
// kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy, kubectl and the
// agnhost test image, all built from k8s.io/kubernetes v1.37.2 in one go build.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
	_ "k8s.io/kubernetes/test/images/agnhost"
)
