// echo-go-native: a native fezz plugin in Go (runtime "native", entry libecho.so).
// Build: go build -buildmode=c-shared -o libecho.so .   (scripts/build-plugins.sh does it)
//
// With -buildmode=c-shared, main is not run: the host loads the library and calls the
// exported fezz_handle_request from its thread pool, several calls at once. The same
// package built as a plain executable would serve process mode through main.
package main

import "C"

import fezz "fezz.dev/sdk/go"

//export fezz_handle_request
func fezz_handle_request(requestID int64) int32 {
	return fezz.HandleNative(requestID, handle)
}

func main() { fezz.Main(handle) }
