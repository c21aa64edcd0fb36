// hello-go: the bench's process-runtime function (runtime "process", entry ./hello-go).
// It must answer the same bytes as bench/servers/raw-node.mjs:
//
//	/json -> 200 application/json {"message":"Hello, world!"}   (the json workload)
//	other -> 200 text/plain;charset=UTF-8 Hello, world!          (the hello workload)
//
// Build: bench/build-plugins.sh go (the bench runs it before starting fezz-process).
package main

import fezz "fezz.dev/sdk/go"

// Built once, like raw-node's answers: the bench measures the ABI round trip, not the handler.
var (
	helloBody = []byte("Hello, world!")
	jsonBody  = []byte(`{"message":"Hello, world!"}`)
)

func handle(req *fezz.Request) (*fezz.Response, error) {
	if req.Path == "/json" {
		return &fezz.Response{Status: 200, Header: map[string]string{"content-type": "application/json"}, Body: jsonBody}, nil
	}
	return &fezz.Response{Status: 200, Header: map[string]string{"content-type": "text/plain;charset=UTF-8"}, Body: helloBody}, nil
}

func main() { fezz.Main(handle) }
