package fezz

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// stub is a minimal admin listener holding one request per id.
type stub struct {
	mu        sync.Mutex
	requests  map[string]map[string]any
	responses map[string]map[string]any
	errors    map[string]string
}

func newStub(t *testing.T) (*stub, *httptest.Server) {
	s := &stub{requests: map[string]map[string]any{}, responses: map[string]map[string]any{}, errors: map[string]string{}}
	srv := httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(srv.Close)
	t.Setenv("FEZZ_HOST", srv.URL)
	t.Setenv("FEZZ_TOKEN", "secret")
	return s, srv
}

func fail(w http.ResponseWriter, status int, code string) {
	w.Header().Set("content-type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"error": http.StatusText(status), "code": code, "message": code, "statusCode": status})
}

func (s *stub) serve(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer secret" {
		fail(w, 401, "UNAUTHORIZED")
		return
	}
	id := r.URL.Query().Get("request_id")
	s.mu.Lock()
	defer s.mu.Unlock()
	req, ok := s.requests[id]
	if !ok {
		fail(w, 404, "UNKNOWN")
		return
	}
	switch r.URL.Path {
	case "/admin/get-request-info":
		json.NewEncoder(w).Encode(req)
		return
	case "/admin/push-response-info", "/admin/push-error-info":
		if _, done := s.responses[id]; done {
			fail(w, 409, "ANSWERED")
			return
		}
		var body map[string]any
		data, _ := io.ReadAll(r.Body)
		if json.Unmarshal(data, &body) != nil {
			fail(w, 400, "BAD_BODY")
			return
		}
		if r.URL.Path == "/admin/push-error-info" {
			s.errors[id] = body["message"].(string)
		}
		s.responses[id] = body
		w.Write([]byte(`{"ok":true}`))
	}
}

func echo(req *Request) (*Response, error) {
	if req.Path == "/panic" {
		panic("kaboom")
	}
	r := &Response{Status: 201, Body: req.Body}
	return r.Set("X-Echo-Method", req.Method).Set("x-echo-query", req.Query), nil
}

func TestRoundTripBinary(t *testing.T) {
	s, _ := newStub(t)
	body := []byte{0, 1, 2, 0xff, 0xfe, 'a'}
	// 2^62 + 1 does not fit a float64 exactly: the id must travel as an int64.
	s.requests["4611686018427387905"] = map[string]any{
		"method": "POST", "url": "/e?x=1", "path": "/e", "query": "x=1",
		"headers": map[string]string{"content-type": "application/octet-stream"},
		"body":    base64.StdEncoding.EncodeToString(body), "bodyEncoding": "base64", "deadlineMs": 1764000000000,
	}
	if err := Handle(4611686018427387905, echo); err != nil {
		t.Fatal(err)
	}
	got := s.responses["4611686018427387905"]
	if got["bodyEncoding"] != "base64" || got["body"] != base64.StdEncoding.EncodeToString(body) || got["status"].(float64) != 201 {
		t.Fatalf("bad push: %v", got)
	}
	h := got["headers"].(map[string]any)
	if h["x-echo-method"] != "POST" || h["x-echo-query"] != "x=1" {
		t.Fatalf("bad headers: %v", h)
	}
	err := PushResponse(4611686018427387905, Text(200, "again"))
	if StatusOf(err) != 409 {
		t.Fatalf("second push: want 409, got %v", err)
	}
	if StatusOf(Handle(7, echo)) != 404 {
		t.Fatal("unknown id: want 404")
	}
}

func TestPanicPushesError(t *testing.T) {
	s, _ := newStub(t)
	s.requests["9"] = map[string]any{"method": "GET", "url": "/panic", "path": "/panic", "query": "", "headers": map[string]string{}, "body": "", "bodyEncoding": "utf8", "deadlineMs": 1}
	if HandleNative(9, echo) != 1 {
		t.Fatal("want 1 for a panicking handler")
	}
	if !strings.Contains(s.errors["9"], "kaboom") {
		t.Fatalf("error message: %q", s.errors["9"])
	}
}

func TestServeReader(t *testing.T) {
	s, _ := newStub(t)
	for _, id := range []string{"1", "2", "3"} {
		s.requests[id] = map[string]any{"method": "PUT", "url": "/", "path": "/", "query": "", "headers": map[string]string{}, "body": "héllo " + id, "bodyEncoding": "utf8", "deadlineMs": int64(9999999999999)}
	}
	if err := ServeReader(strings.NewReader("1\n2\n\nnot-an-id\n3\n"), echo); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"1", "2", "3"} {
		if got := s.responses[id]; got == nil || got["body"] != "héllo "+id || got["bodyEncoding"] != "utf8" {
			t.Fatalf("request %s: %v", id, got)
		}
	}
}
