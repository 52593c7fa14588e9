package main

// The components the Akson platform configures (infra/local, charts/akson). Adding a component
// type to a deployment means adding its registration here.

import (
	bindingshttp "github.com/dapr/components-contrib/bindings/http"
	"github.com/dapr/components-contrib/bindings/localstorage"
	nrkubernetes "github.com/dapr/components-contrib/nameresolution/kubernetes"
	"github.com/dapr/components-contrib/nameresolution/sqlite"
	pubsubredis "github.com/dapr/components-contrib/pubsub/redis"
	"github.com/dapr/components-contrib/secretstores/local/file"
	stateredis "github.com/dapr/components-contrib/state/redis"
	bindingsLoader "github.com/dapr/dapr/pkg/components/bindings"
	nrLoader "github.com/dapr/dapr/pkg/components/nameresolution"
	pubsubLoader "github.com/dapr/dapr/pkg/components/pubsub"
	secretstoresLoader "github.com/dapr/dapr/pkg/components/secretstores"
	stateLoader "github.com/dapr/dapr/pkg/components/state"
)

func init() {
	pubsubLoader.DefaultRegistry.RegisterComponent(pubsubredis.NewRedisStreams, "redis")
	stateLoader.DefaultRegistry.RegisterComponent(stateredis.NewRedisStateStore, "redis")
	bindingsLoader.DefaultRegistry.RegisterOutputBinding(localstorage.NewLocalStorage, "localstorage")
	bindingsLoader.DefaultRegistry.RegisterOutputBinding(bindingshttp.NewHTTP, "http")
	nrLoader.DefaultRegistry.RegisterComponent(sqlite.NewResolver, "sqlite")
	// the default in Kubernetes mode (the chart names no resolver): without it every service
	// invocation on a cluster fails with "name resolver not initialized"
	nrLoader.DefaultRegistry.RegisterComponent(nrkubernetes.NewResolver, "kubernetes")
	secretstoresLoader.DefaultRegistry.RegisterComponent(file.NewLocalSecretStore, "local.file")
}
