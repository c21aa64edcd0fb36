package fezz

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// Handler serves one request. Returning an error (or panicking) fails the request: the SDK
// pushes the error's message to push-error-info and the client gets 500. A Response built
// with Streamed is sent as a stream (POST /admin/push-response-stream).
type Handler func(req *Request) (*Response, error)

// Handle fetches request id, runs h and pushes its response, or pushes an error when h
// fails or panics. The returned error says what went wrong (nil when a response was pushed).
func Handle(id int64, h Handler) error { return handle(id, h, nil) }

func handle(id int64, h Handler, onFetched func(deadlineMs int64)) error {
	req, err := fetchRequestInfo(id)
	if onFetched != nil {
		var dl int64
		if req != nil {
			dl = req.DeadlineMs
		}
		onFetched(dl)
	}
	if err != nil {
		return err
	}
	resp, err := runWithBody(h, req)
	if err != nil {
		if perr := PushError(id, err.Error()); perr != nil {
			return fmt.Errorf("%v (and push-error-info failed: %w)", err, perr)
		}
		return err
	}
	if resp.Stream != nil {
		return pushStreamed(id, resp)
	}
	return PushResponse(id, resp)
}

// runWithBody reads a streamed request body into req.Body, then runs h.
func runWithBody(h Handler, req *Request) (*Response, error) {
	if err := loadBody(req); err != nil {
		return nil, fmt.Errorf("reading the request body: %w", err)
	}
	return run(h, req)
}

// run calls h, turning a panic or a nil response into an error.
func run(h Handler, req *Request) (resp *Response, err error) {
	defer func() {
		if p := recover(); p != nil {
			resp, err = nil, fmt.Errorf("handler panicked: %v", p)
		}
	}()
	resp, err = h(req)
	if err == nil && resp == nil {
		err = errors.New("handler returned no response")
	}
	return resp, err
}

// HandleNative is the body of a native plugin's exported fezz_handle_request: it handles
// request id with h and returns 0 on success, 1 on failure (logged to stderr). It never
// panics. The host calls it from many threads at once; the calls share one pipeline, so
// the requests of concurrent calls are fetched and answered in batches, as in Serve.
func HandleNative(id int64, h Handler) (rc int32) {
	defer func() {
		if p := recover(); p != nil {
			fmt.Fprintf(os.Stderr, "fezz: request %d: panic: %v\n", id, p)
			rc = 1
		}
	}()
	if err := handleBatched(id, h); err != nil {
		logFailure(id, err)
		return 1
	}
	return 0
}

// logFailure writes "fezz: request <id>: <error>" to stderr (the host logs it).
func logFailure(id int64, err error) {
	fmt.Fprintf(os.Stderr, "fezz: request %d: %s\n", id, strings.TrimPrefix(err.Error(), "fezz: "))
}

// Serve runs a process-mode plugin: it reads decimal request ids, one per line, from
// stdin and runs each on its own goroutine. Ids that arrive together are fetched in one
// call and their responses pushed in one call (the batch endpoints, docs/abi.md
// "Batches"); against a host without them it makes one call per step. On EOF it waits
// until the in-flight handlers finish (or until all of their deadlines have passed) and
// returns nil.
func Serve(h Handler) error { return ServeReader(os.Stdin, h) }

// ServeReader is Serve reading ids from r.
func ServeReader(r io.Reader, h Handler) error {
	s := newServer()
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		id, err := strconv.ParseInt(line, 10, 64)
		if err != nil || id <= 0 {
			fmt.Fprintf(os.Stderr, "fezz: ignoring a stdin line that is not a request id: %q\n", line)
			continue
		}
		s.add(job{id: id, h: h})
	}
	s.drain()
	return sc.Err()
}

// Main is Serve for a main function: it exits 0 on stdin EOF and 1 if stdin fails.
func Main(h Handler) {
	if err := Serve(h); err != nil {
		fmt.Fprintf(os.Stderr, "fezz: reading stdin: %v\n", err)
		os.Exit(1)
	}
	os.Exit(0)
}
