package fezz

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// stub is a minimal admin listener holding one request per id.
type stub struct {
	mu        sync.Mutex
	requests  map[string]map[string]any
	responses map[string]map[string]any
	errors    map[string]string
	batch     bool           // serve the batch endpoints (else 404, like an older host)
	calls     map[string]int // endpoint path -> calls

	bodies  map[string][]byte // streamed request bodies (get-request-body), by id
	streams map[string]*streamed
	// cancelAfter: answer a stream 499 (as the host does when the client left) once this
	// many body bytes arrived, without reading the rest. 0: never.
	cancelAfter int
}

// streamed is what the stub saw of one push-response-stream call.
type streamed struct {
	prelude map[string]any
	chunks  [][]byte    // body reads, in order
	at      []time.Time // when each arrived
	trailer string      // Fezz-Stream-Error
}

func newStub(t *testing.T) (*stub, *httptest.Server) {
	s := &stub{requests: map[string]map[string]any{}, responses: map[string]map[string]any{}, errors: map[string]string{}, calls: map[string]int{}, bodies: map[string][]byte{}, streams: map[string]*streamed{}}
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
	if r.URL.Path == "/admin/push-response-stream" {
		s.serveStream(w, r)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[r.URL.Path]++
	if r.URL.Path == "/admin/get-request-body" {
		body, ok := s.bodies[r.URL.Query().Get("request_id")]
		if !ok {
			fail(w, 404, "UNKNOWN")
			return
		}
		w.Write(body)
		return
	}
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

// serveStream reads a push-response-stream call as the host does: the prelude line, then
// the body read by read, with the time of each.
func (s *stub) serveStream(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("request_id")
	s.mu.Lock()
	s.calls[r.URL.Path]++
	_, known := s.requests[id]
	_, done := s.responses[id]
	s.mu.Unlock()
	if !known {
		fail(w, 404, "UNKNOWN")
		return
	}
	if done {
		fail(w, 409, "ANSWERED")
		return
	}
	br := bufio.NewReader(r.Body)
	line, err := br.ReadBytes('\n')
	st := &streamed{}
	if err != nil || json.Unmarshal(line, &st.prelude) != nil {
		fail(w, 400, "BAD_PRELUDE")
		return
	}
	s.mu.Lock()
	s.streams[id] = st
	s.responses[id] = st.prelude
	s.mu.Unlock()
	got := 0
	for {
		buf := make([]byte, 64<<10)
		n, err := br.Read(buf)
		if n > 0 {
			s.mu.Lock()
			st.chunks = append(st.chunks, buf[:n])
			st.at = append(st.at, time.Now())
			s.mu.Unlock()
			got += n
			if s.cancelAfter > 0 && got >= s.cancelAfter {
				// Without it, net/http reads the rest of the body before answering.
				w.Header().Set("Connection", "close")
				fail(w, 499, "FEZZ_ERR_ABI_STREAM_CANCELLED")
				return
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return
		}
	}
	s.mu.Lock()
	st.trailer = r.Trailer.Get(StreamErrorTrailer)
	s.mu.Unlock()
	w.Write([]byte(`{"ok":true}`))
}

func (st *streamed) body() string {
	var b strings.Builder
	for _, c := range st.chunks {
		b.Write(c)
	}
	return b.String()
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

// ticker streams "tick <n>\n" three times, 100 ms apart; /fail fails after the first tick,
// /early before writing anything; /forever ticks until a Write fails.
func ticker(req *Request) (*Response, error) {
	return Streamed(202, map[string]string{"Content-Type": "text/plain"}, func(w *StreamWriter) error {
		if req.Path == "/early" {
			return errors.New("no data today")
		}
		for n := 1; ; n++ {
			if _, err := fmt.Fprintf(w, "tick %d\n", n); err != nil {
				return err
			}
			if req.Path == "/fail" {
				return errors.New("disk on fire")
			}
			if n == 3 && req.Path != "/forever" {
				return nil
			}
			time.Sleep(100 * time.Millisecond)
		}
	}), nil
}

func streamRequest(s *stub, id, path string) {
	s.requests[id] = map[string]any{"method": "GET", "url": path, "path": path, "query": "", "headers": map[string]string{}, "body": "", "bodyEncoding": "utf8", "deadlineMs": int64(9999999999999)}
}

func TestStreamedResponse(t *testing.T) {
	s, _ := newStub(t)
	streamRequest(s, "5", "/")
	if err := Handle(5, ticker); err != nil {
		t.Fatal(err)
	}
	st := s.streams["5"]
	if st == nil || st.prelude["status"].(float64) != 202 || st.prelude["headers"].(map[string]any)["content-type"] != "text/plain" {
		t.Fatalf("prelude: %+v", st)
	}
	if st.body() != "tick 1\ntick 2\ntick 3\n" || st.trailer != "" {
		t.Fatalf("body %q, trailer %q", st.body(), st.trailer)
	}
	// Each Write reached the host on its own, as it was written.
	if len(st.chunks) != 3 || st.at[2].Sub(st.at[0]) < 150*time.Millisecond {
		t.Fatalf("want 3 chunks 100 ms apart, got %d over %v", len(st.chunks), st.at[len(st.at)-1].Sub(st.at[0]))
	}
	if s.calls["/admin/push-response-info"] != 0 {
		t.Fatal("a streamed response must not also be pushed whole")
	}
	// Through the batched pipeline (Serve) too.
	s.batch = true
	streamRequest(s, "6", "/")
	if err := ServeReader(strings.NewReader("6\n"), ticker); err != nil {
		t.Fatal(err)
	}
	if st := s.streams["6"]; st == nil || st.body() != "tick 1\ntick 2\ntick 3\n" {
		t.Fatalf("served stream: %+v", st)
	}
}

func TestStreamFailures(t *testing.T) {
	s, _ := newStub(t)
	// A failure after the first write aborts the stream with the trailer.
	streamRequest(s, "1", "/fail")
	if err := Handle(1, ticker); err == nil || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("want the handler's error, got %v", err)
	}
	if st := s.streams["1"]; st == nil || st.body() != "tick 1\n" || st.trailer != "disk on fire" {
		t.Fatalf("abort: %+v", st)
	}
	// A failure before any write is a plain push-error-info (the client gets 500).
	streamRequest(s, "2", "/early")
	if err := Handle(2, ticker); err == nil {
		t.Fatal("want an error")
	}
	if s.errors["2"] != "no data today" || s.streams["2"] != nil {
		t.Fatalf("early failure: errors %v, stream %+v", s.errors, s.streams["2"])
	}
	// The host answers before the end (the client left): the next Write fails with it.
	s.cancelAfter = 1
	streamRequest(s, "3", "/forever")
	done := make(chan error, 1)
	go func() { done <- Handle(3, ticker) }()
	select {
	case err := <-done:
		if StatusOf(err) != 499 {
			t.Fatalf("want the host's 499, got %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the stream did not stop after the host's answer")
	}
	// Unknown id.
	s.cancelAfter = 0
	w, err := StreamResponse(77, 200, nil)
	if err == nil {
		_, err = w.Write([]byte("x"))
		if err == nil {
			err = w.Close()
		}
	}
	if StatusOf(err) != 404 {
		t.Fatalf("unknown id: want 404, got %v", err)
	}
}

func TestStreamedRequestBody(t *testing.T) {
	s, _ := newStub(t)
	body := []byte{0, 1, 2, 0xff}
	s.requests["8"] = map[string]any{"method": "POST", "url": "/", "path": "/", "query": "", "headers": map[string]string{}, "body": "", "bodyEncoding": "utf8", "bodyStreamed": true, "deadlineMs": int64(9999999999999)}
	s.bodies["8"] = body
	if err := Handle(8, echo); err != nil {
		t.Fatal(err)
	}
	if got := s.responses["8"]; got["body"] != base64.StdEncoding.EncodeToString(body) {
		t.Fatalf("the handler did not see the streamed body: %v", got)
	}
	req, err := FetchRequest(8)
	if err != nil || !req.BodyStreamed || string(req.Body) != string(body) || req.ID != 8 {
		t.Fatalf("FetchRequest: %v %+v", err, req)
	}
	s.requests["9"], s.bodies["9"] = s.requests["8"], body
	s.batch = true
	if err := ServeReader(strings.NewReader("9\n"), echo); err != nil {
		t.Fatal(err)
	}
	if got := s.responses["9"]; got["body"] != base64.StdEncoding.EncodeToString(body) {
		t.Fatalf("Serve: the handler did not see the streamed body: %v", got)
	}
}

func TestWithScheduled(t *testing.T) {
	s, _ := newStub(t)
	event := func(cron string) map[string]any {
		return map[string]any{"method": "POST", "url": ScheduledPath, "path": ScheduledPath, "query": "",
			"headers": map[string]string{"fezz-cron": cron, "fezz-scheduled-time": "1764000000000"}, "body": "", "bodyEncoding": "utf8", "deadlineMs": 1}
	}
	s.requests["1"] = event("*/5 * * * *")
	s.requests["2"] = event("boom")
	// The path alone is an ordinary request (the host strips the headers from HTTP requests).
	s.requests["3"] = map[string]any{"method": "POST", "url": ScheduledPath, "path": ScheduledPath, "query": "", "headers": map[string]string{}, "body": "x", "bodyEncoding": "utf8", "deadlineMs": 1}
	s.requests["4"] = event("")
	var seen []*ScheduledEvent
	h := WithScheduled(echo, func(ev *ScheduledEvent, req *Request) error {
		seen = append(seen, ev)
		if ev.Cron == "boom" {
			panic("cron boom")
		}
		return nil
	})
	for _, id := range []int64{1, 2, 3} {
		if err := Handle(id, h); err != nil {
			t.Fatal(err)
		}
	}
	if len(seen) != 2 || seen[0].Cron != "*/5 * * * *" || seen[0].ScheduledTime.UnixMilli() != 1764000000000 {
		t.Fatalf("events: %+v", seen)
	}
	if got := s.responses["1"]; got["status"].(float64) != 204 {
		t.Fatalf("ok run: %v", got)
	}
	if got := s.responses["2"]; got["status"].(float64) != 500 || !strings.Contains(got["body"].(string), `"code":"FEZZ_ERR_SCHEDULED_FAILED"`) || !strings.Contains(got["body"].(string), "cron boom") {
		t.Fatalf("failed run: %v", got)
	}
	if got := s.responses["3"]; got["status"].(float64) != 201 || got["body"] != "x" {
		t.Fatalf("ordinary request: %v", got)
	}
	if err := Handle(4, WithScheduled(echo, nil)); err != nil {
		t.Fatal(err)
	}
	if got := s.responses["4"]; got["status"].(float64) != 409 || !strings.Contains(got["body"].(string), "FEZZ_ERR_SCHEDULED_MISSING") {
		t.Fatalf("no scheduled handler: %v", got)
	}
}
