// Package fezz is the Go SDK for the fezz request-id plugin ABI (see docs/abi.md).
//
// A plugin is handed only a request id (a positive 63-bit integer). It fetches the request
// from the host's admin listener ($FEZZ_HOST, bearer token $FEZZ_TOKEN), does its work and
// pushes the response back. One Handler serves both runtimes:
//
//	func handle(req *fezz.Request) (*fezz.Response, error) {
//		return fezz.Text(200, "hello "+req.Path), nil
//	}
//
//	// runtime "process" (go build): ids arrive on stdin.
//	func main() { fezz.Main(handle) }
//
//	// runtime "native" (go build -buildmode=c-shared): main is ignored and the host calls
//	// the exported symbol. The file must `import "C"`.
//	//export fezz_handle_request
//	func fezz_handle_request(id int64) int32 { return fezz.HandleNative(id, handle) }
//
// Streaming (docs/abi.md "Streamed bodies"): a handler may answer with Streamed, whose
// function writes the body through a StreamWriter; each Write reaches the client at once
// (POST /admin/push-response-stream). A request body the host streams (bodyStreamed) is read
// with GET /admin/get-request-body before the handler runs, so Request.Body holds it either
// way.
//
// The package uses the standard library only.
package fezz

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Request is one incoming HTTP request, as the function sees it.
type Request struct {
	ID         int64             // the request id the host handed the plugin
	Method     string            // "GET", "POST", ...
	URL        string            // path + "?" + query: "/echo/a?x=1&y=2"
	Path       string            // "/echo/a" (for /rpc/<id>/<rest> addressing: "/<rest>")
	Query      string            // raw query without "?": "x=1&y=2" ("" when none)
	Header     map[string]string // lower-case names; repeated headers joined with ", "
	Body       []byte            // raw body bytes
	DeadlineMs int64             // epoch ms after which the host answers 504 itself
	// BodyStreamed: the host streams this request's body, so it was not in the fetch answer
	// (get-request-info's "bodyStreamed"). FetchRequest, Handle, Serve and HandleNative then
	// read it into Body (ReadRequestBody) before the handler runs; FetchRequests does not.
	BodyStreamed bool
}

// Get returns the value of header name (case-insensitive), or "" when absent.
func (r *Request) Get(name string) string { return r.Header[strings.ToLower(name)] }

// Lookup returns the value of header name (case-insensitive) and whether it is present.
func (r *Request) Lookup(name string) (string, bool) {
	v, ok := r.Header[strings.ToLower(name)]
	return v, ok
}

// Deadline is DeadlineMs as a time.Time.
func (r *Request) Deadline() time.Time { return time.UnixMilli(r.DeadlineMs) }

// Response is what a handler answers. A zero Status means 200.
type Response struct {
	Status int
	Header map[string]string
	Body   []byte
	// Stream, when set, makes the response streamed (see Streamed): Body is ignored, and
	// Stream writes the body through w, each Write sent to the client at once.
	Stream func(w *StreamWriter) error
}

// Set sets header name (stored lower-case) to value and returns r, for chaining.
func (r *Response) Set(name, value string) *Response {
	if r.Header == nil {
		r.Header = map[string]string{}
	}
	r.Header[strings.ToLower(name)] = value
	return r
}

// Text builds a text/plain response.
func Text(status int, body string) *Response {
	return &Response{Status: status, Header: map[string]string{"content-type": "text/plain; charset=utf-8"}, Body: []byte(body)}
}

// JSON builds an application/json response from v (encoding/json rules).
func JSON(status int, v any) (*Response, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return &Response{Status: status, Header: map[string]string{"content-type": "application/json"}, Body: b}, nil
}

// HostError is a non-2xx answer from the host: 401 bad token, 400 malformed id or body,
// 404 unknown or expired id, 409 already answered.
type HostError struct {
	StatusCode int    // HTTP status of the answer
	Code       string // e.g. "FEZZ_ERR_ABI_UNKNOWN_REQUEST"
	Message    string
	Endpoint   string // "get-request-info", "push-response-info", ...
}

func (e *HostError) Error() string {
	s := fmt.Sprintf("fezz: %s returned %d", e.Endpoint, e.StatusCode)
	if e.Code != "" {
		s += " " + e.Code
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// StatusOf returns the HTTP status of a *HostError in err's chain, or 0.
func StatusOf(err error) int {
	var he *HostError
	if errors.As(err, &he) {
		return he.StatusCode
	}
	return 0
}

// The admin listener is on loopback: never proxied, connections kept alive across calls.
var transport = &http.Transport{
	Proxy:               nil,
	MaxIdleConns:        256,
	MaxIdleConnsPerHost: 256,
	IdleConnTimeout:     30 * time.Second,
}

var client = &http.Client{Timeout: 30 * time.Second, Transport: transport}

// streamClient makes the calls that last as long as a body: a streamed push, a streamed
// request body. No overall timeout: the host bounds them (limits.streamIdleMs, streamMaxMs,
// the request's deadline).
var streamClient = &http.Client{Transport: transport}

// adminURL is $FEZZ_HOST/admin/<endpoint>?request_id=<id>, and the bearer token.
func adminURL(endpoint string, id int64) (url, token string, err error) {
	host := strings.TrimRight(os.Getenv("FEZZ_HOST"), "/")
	if host == "" {
		return "", "", errors.New("fezz: FEZZ_HOST is not set")
	}
	token, ok := os.LookupEnv("FEZZ_TOKEN")
	if !ok {
		return "", "", errors.New("fezz: FEZZ_TOKEN is not set")
	}
	return host + "/admin/" + endpoint + "?request_id=" + strconv.FormatInt(id, 10), token, nil
}

// hostError builds the *HostError of a non-2xx answer from its JSON error body.
func hostError(endpoint string, status int, data []byte) *HostError {
	he := &HostError{StatusCode: status, Endpoint: endpoint}
	var e struct{ Code, Message string }
	if json.Unmarshal(data, &e) == nil {
		he.Code, he.Message = e.Code, e.Message
	}
	return he
}

func call(method, endpoint string, id int64, body []byte) ([]byte, error) {
	return callPath(method, endpoint, "?request_id="+strconv.FormatInt(id, 10), body)
}

// callPath sends body to /admin/<endpoint><query> and returns the 2xx answer's body, or a
// *HostError for any other status.
func callPath(method, endpoint, query string, body []byte) ([]byte, error) {
	host := strings.TrimRight(os.Getenv("FEZZ_HOST"), "/")
	if host == "" {
		return nil, errors.New("fezz: FEZZ_HOST is not set")
	}
	token, ok := os.LookupEnv("FEZZ_TOKEN")
	if !ok {
		return nil, errors.New("fezz: FEZZ_TOKEN is not set")
	}
	url := host + "/admin/" + endpoint + query
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return nil, fmt.Errorf("fezz: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fezz: %s: %w", endpoint, err)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		return nil, fmt.Errorf("fezz: %s: reading the answer: %w", endpoint, err)
	}
	if res.StatusCode < 200 || res.StatusCode > 299 {
		return nil, hostError(endpoint, res.StatusCode, data)
	}
	return data, nil
}

// OpenRequestBody opens the body of request id for reading (GET /admin/get-request-body):
// the bytes as the client sends them when the host streams the body, or at once when it is
// buffered. A streamed body can be read once (a second call is a 409 HostError). A body that
// is cut short (the client stalled, sent too much, or left) ends with a read error, never
// with io.EOF. Close it when done.
func OpenRequestBody(id int64) (io.ReadCloser, error) {
	const endpoint = "get-request-body"
	url, token, err := adminURL(endpoint, id)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("fezz: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := streamClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fezz: %s: %w", endpoint, err)
	}
	if res.StatusCode != http.StatusOK {
		data, _ := io.ReadAll(io.LimitReader(res.Body, 64<<10))
		res.Body.Close()
		return nil, hostError(endpoint, res.StatusCode, data)
	}
	return res.Body, nil
}

// ReadRequestBody reads the whole body of request id (GET /admin/get-request-body).
func ReadRequestBody(id int64) ([]byte, error) {
	body, err := OpenRequestBody(id)
	if err != nil {
		return nil, err
	}
	defer body.Close()
	data, err := io.ReadAll(body)
	if err != nil {
		return nil, fmt.Errorf("fezz: get-request-body: the body was cut short: %w", err)
	}
	return data, nil
}

type wireRequest struct {
	Method       string            `json:"method"`
	URL          string            `json:"url"`
	Path         string            `json:"path"`
	Query        string            `json:"query"`
	Headers      map[string]string `json:"headers"`
	Body         string            `json:"body"`
	BodyEncoding string            `json:"bodyEncoding"`
	DeadlineMs   json.Number       `json:"deadlineMs"`
	BodyStreamed bool              `json:"bodyStreamed"`
}

type wireResponse struct {
	Status       int               `json:"status"`
	Headers      map[string]string `json:"headers"`
	Body         string            `json:"body"`
	BodyEncoding string            `json:"bodyEncoding"`
}

// FetchRequest gets request id from the host (GET /admin/get-request-info). When the host
// streams its body (BodyStreamed), it reads the body too (ReadRequestBody).
func FetchRequest(id int64) (*Request, error) {
	r, err := fetchRequestInfo(id)
	if err != nil {
		return nil, err
	}
	if err := loadBody(r); err != nil {
		return nil, err
	}
	return r, nil
}

// fetchRequestInfo is FetchRequest without reading a streamed body.
func fetchRequestInfo(id int64) (*Request, error) {
	data, err := call(http.MethodGet, "get-request-info", id, nil)
	if err != nil {
		return nil, err
	}
	var w wireRequest
	if err := json.Unmarshal(data, &w); err != nil {
		return nil, fmt.Errorf("fezz: get-request-info: bad JSON from the host: %w", err)
	}
	r, err := w.toRequest("get-request-info")
	if err != nil {
		return nil, err
	}
	r.ID = id
	return r, nil
}

// loadBody reads a streamed body into r.Body (a no-op when the body came with the request).
func loadBody(r *Request) error {
	if !r.BodyStreamed || r.Body != nil {
		return nil
	}
	body, err := ReadRequestBody(r.ID)
	if err != nil {
		return err
	}
	r.Body = body
	return nil
}

func (w *wireRequest) toRequest(endpoint string) (*Request, error) {
	var err error
	r := &Request{Method: w.Method, URL: w.URL, Path: w.Path, Query: w.Query, Header: make(map[string]string, len(w.Headers)), BodyStreamed: w.BodyStreamed}
	for k, v := range w.Headers {
		r.Header[strings.ToLower(k)] = v
	}
	switch {
	case w.BodyStreamed:
		// r.Body stays nil until loadBody reads it.
	case w.BodyEncoding == "base64":
		if r.Body, err = base64.StdEncoding.DecodeString(w.Body); err != nil {
			return nil, fmt.Errorf("fezz: %s: bad base64 body: %w", endpoint, err)
		}
	default:
		r.Body = []byte(w.Body)
	}
	if w.DeadlineMs != "" {
		if r.DeadlineMs, err = w.DeadlineMs.Int64(); err != nil {
			f, ferr := w.DeadlineMs.Float64()
			if ferr != nil {
				return nil, fmt.Errorf("fezz: %s: bad deadlineMs %q", endpoint, w.DeadlineMs)
			}
			r.DeadlineMs = int64(f)
		}
	}
	return r, nil
}

// PushResponse answers request id (POST /admin/push-response-info). The body goes as UTF-8
// text when it is valid UTF-8, else as base64. A second push fails with a 409 HostError.
func PushResponse(id int64, resp *Response) error {
	data, err := json.Marshal(toWireResponse(resp))
	if err != nil {
		return fmt.Errorf("fezz: push-response-info: %w", err)
	}
	_, err = call(http.MethodPost, "push-response-info", id, data)
	return err
}

func toWireResponse(resp *Response) wireResponse {
	w := wireResponse{Status: resp.Status, Headers: resp.Header, BodyEncoding: "utf8"}
	if w.Status == 0 {
		w.Status = http.StatusOK
	}
	if w.Headers == nil {
		w.Headers = map[string]string{}
	}
	if utf8.Valid(resp.Body) {
		w.Body = string(resp.Body)
	} else {
		w.Body, w.BodyEncoding = base64.StdEncoding.EncodeToString(resp.Body), "base64"
	}
	return w
}

// PushError fails request id with message (POST /admin/push-error-info): the client gets 500.
func PushError(id int64, message string) error {
	data, _ := json.Marshal(map[string]string{"message": message})
	_, err := call(http.MethodPost, "push-error-info", id, data)
	return err
}

// PostRaw POSTs body as-is to /admin/<endpoint>?request_id=id. For tests and tools.
func PostRaw(id int64, endpoint string, body []byte) error {
	if body == nil {
		body = []byte{}
	}
	_, err := call(http.MethodPost, endpoint, id, body)
	return err
}
