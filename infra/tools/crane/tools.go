//go:build tools

// Package tools pins crane (go-containerregistry), which builds and edits OCI images without a
// container engine: `make images` and the Kubernetes stages in infra/k8s use it.
package tools

import _ "github.com/google/go-containerregistry/cmd/crane"
