package main

import fezz "fezz.dev/sdk/go"

// handle is the whole function; the same code serves echo-go-native.
//
//	/json -> 200 application/json {"lang":"go","message":"hello from go","path":"/json","method":...}
//	other -> 200, the request body echoed byte for byte, with x-echo-* headers.
func handle(req *fezz.Request) (*fezz.Response, error) {
	if req.Path == "/json" {
		// A struct keeps the keys in this order.
		return fezz.JSON(200, struct {
			Lang    string `json:"lang"`
			Message string `json:"message"`
			Path    string `json:"path"`
			Method  string `json:"method"`
		}{"go", "hello from go", req.Path, req.Method})
	}
	contentType, ok := req.Lookup("content-type")
	if !ok {
		contentType = "application/octet-stream"
	}
	resp := &fezz.Response{Status: 200, Body: req.Body}
	resp.Set("content-type", contentType).
		Set("x-echo-method", req.Method).
		Set("x-echo-path", req.Path).
		Set("x-echo-query", req.Query)
	if test, ok := req.Lookup("x-fezz-test"); ok {
		resp.Set("x-echo-test", test)
	}
	return resp, nil
}
