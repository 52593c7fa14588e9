//go:build tools

// Package tools pins Dapr's control plane (operator, sidecar injector, sentry, placement,
// scheduler) to the same github.com/dapr/dapr version as infra/tools/daprd: build.sh builds the
// five commands in one go build, infra/images/build.sh packs each into the image Dapr's Helm
// chart names (ghcr.io/dapr/<name>).
package tools

import (
	_ "github.com/dapr/dapr/cmd/injector"
	_ "github.com/dapr/dapr/cmd/operator"
	_ "github.com/dapr/dapr/cmd/placement"
	_ "github.com/dapr/dapr/cmd/scheduler"
	_ "github.com/dapr/dapr/cmd/sentry"
)
