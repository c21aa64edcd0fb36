package fezz

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
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
	batch     bool           // serve the batch endpoints (else 404, like an older host)
	calls     map[string]int // endpoint path -> calls
}

func newStub(t *testing.T) (*stub, *httptest.Server) {
	s := &stub{requests: map[string]map[string]any{}, responses: map[string]map[string]any{}, errors: map[string]string{}, calls: map[string]int{}}
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
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[r.URL.Path]++
	if strings.HasSuffix(r.URL.Path, "/batch") {
		if !s.batch {
			fail(w, 404, "FEZZ_ERR_ADMIN_NOT_FOUND")
			return
		}
		s.serveBatch(w, r)
		return
	}
	id := r.URL.Query().Get("request_id")
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

func (s *stub) serveBatch(w http.ResponseWriter, r *http.Request) {
	data, _ := io.ReadAll(r.Body)
	switch r.URL.Path {
	case "/admin/get-request-info/batch":
		var in struct{ IDs []string }
		json.Unmarshal(data, &in)
		out := []map[string]any{}
		for _, id := range in.IDs {
			req, ok := s.requests[id]
			if !ok {
				out = append(out, map[string]any{"id": id, "error": "Not Found", "code": "UNKNOWN", "message": "no " + id, "statusCode": 404})
				continue
			}
			item := map[string]any{"id": id}
			for k, v := range req {
				item[k] = v
			}
			out = append(out, item)
		}
		json.NewEncoder(w).Encode(map[string]any{"requests": out})
	case "/admin/push-response-info/batch":
		var in struct {
			Responses []struct {
				ID       string
				Response map[string]any
				Error    *struct{ Message string }
			}
		}
		json.Unmarshal(data, &in)
		out := []map[string]any{}
		for _, a := range in.Responses {
			if _, done := s.responses[a.ID]; done {
				out = append(out, map[string]any{"id": a.ID, "ok": false, "error": "Conflict", "code": "ANSWERED", "message": "again", "statusCode": 409})
				continue
			}
			if a.Error != nil {
				s.errors[a.ID] = a.Error.Message
				s.responses[a.ID] = map[string]any{"message": a.Error.Message}
			} else {
				s.responses[a.ID] = a.Response
			}
			out = append(out, map[string]any{"id": a.ID, "ok": true})
		}
		json.NewEncoder(w).Encode(map[string]any{"results": out})
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

func TestServeReaderBatches(t *testing.T) {
	s, _ := newStub(t)
	s.batch = true
	var lines strings.Builder
	for i := 1; i <= 200; i++ {
		id := fmt.Sprint(i)
		path := "/"
		if i%50 == 0 {
			path = "/panic"
		}
		s.requests[id] = map[string]any{"method": "PUT", "url": path, "path": path, "query": "", "headers": map[string]string{}, "body": "b" + id, "bodyEncoding": "utf8", "deadlineMs": int64(9999999999999)}
		lines.WriteString(id + "\n")
	}
	lines.WriteString("999\n") // unknown: logged, not fatal
	if err := ServeReader(strings.NewReader(lines.String()), echo); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 200; i++ {
		id := fmt.Sprint(i)
		if i%50 == 0 {
			if !strings.Contains(s.errors[id], "kaboom") {
				t.Fatalf("request %s: want a pushed error, got %v", id, s.responses[id])
			}
			continue
		}
		if got := s.responses[id]; got == nil || got["body"] != "b"+id || got["status"].(float64) != 201 {
			t.Fatalf("request %s: %v", id, got)
		}
	}
	if s.calls["/admin/get-request-info"] != 0 || s.calls["/admin/push-response-info"] != 0 {
		t.Fatalf("single calls against a host with batches: %v", s.calls)
	}
	if f := s.calls["/admin/get-request-info/batch"]; f == 0 || f >= 200 {
		t.Fatalf("want fewer fetch calls than ids, got %d", f)
	}
}

func TestFetchAndPushBatch(t *testing.T) {
	s, _ := newStub(t)
	s.batch = true
	s.requests["4611686018427387905"] = map[string]any{"method": "GET", "url": "/a", "path": "/a", "query": "", "headers": map[string]string{"X-A": "1"}, "body": "", "bodyEncoding": "utf8", "deadlineMs": 5}
	reqs, errs, err := FetchRequests([]int64{4611686018427387905, 8})
	if err != nil {
		t.Fatal(err)
	}
	if errs[0] != nil || reqs[0].Path != "/a" || reqs[0].Get("x-a") != "1" || reqs[0].DeadlineMs != 5 {
		t.Fatalf("first: %v %+v", errs[0], reqs[0])
	}
	if reqs[1] != nil || StatusOf(errs[1]) != 404 {
		t.Fatalf("second: want 404, got %v", errs[1])
	}
	perrs, err := PushResponses([]Answer{{ID: 4611686018427387905, Response: Text(200, "x")}, {ID: 4611686018427387905, Response: Text(200, "y")}})
	if err != nil {
		t.Fatal(err)
	}
	if perrs[0] != nil || StatusOf(perrs[1]) != 409 || s.responses["4611686018427387905"]["body"] != "x" {
		t.Fatalf("push: %v %v", perrs, s.responses)
	}
	s.batch = false
	if _, _, err := FetchRequests([]int64{1}); !noBatchEndpoints(err) {
		t.Fatalf("older host: want a 404 HostError, got %v", err)
	}
}
