// echo-go: a process-mode fezz plugin (runtime "process", entry ./echo-go).
// The host writes request ids to stdin; fezz.Main handles each on its own goroutine.
// Build: go build -o echo-go .   (scripts/build-plugins.sh does it)
package main

import fezz "fezz.dev/sdk/go"

func main() { fezz.Main(handle) }
