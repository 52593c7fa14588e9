// Command daprd is a slim build of the Dapr sidecar for Akson.
//
// Dapr's own cmd/daprd/app package imports every component Dapr supports, which makes the
// binary large and slow to build. The build script (infra/tools/build.sh) copies that one file
// from the pinned Go module into ./app at build time, without the import of all components,
// and this package registers only the components Akson uses (components.go). Dapr's source is
// never committed here.
package main

import "akson.local/tools/daprd/app"

func main() {
	app.Run()
}
