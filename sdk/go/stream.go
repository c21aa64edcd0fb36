package fezz

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// StreamErrorTrailer is the trailer by which a streamed push fails at its end (see Abort);
// the host then resets the client's connection and logs the trailer's text.
const StreamErrorTrailer = "Fezz-Stream-Error"

// errAnsweredEarly closes the upload when the host answered 200 before the end of the body:
// the client wants no body (a HEAD request, a 204 or 304), so further writes are dropped.
var errAnsweredEarly = errors.New("fezz: push-response-stream: the host needs no more body")

// StreamWriter is the body of a streamed response (POST /admin/push-response-stream,
// docs/abi.md "Streamed bodies"). The request goes to the host with chunked transfer
// encoding through an io.Pipe: the first line is the prelude, {"status":..,"headers":..},
// then every Write is one chunk, flushed to the host at once, and passed on to the client
// as the client takes it (a Write blocks while the client is slower than the plugin).
//
// Nothing is sent before the first Write, Flush or Close, so a handler that fails before
// writing can still fail the request with a 500 (Abort then pushes an error instead).
//
// When the host answers before the end of the body, every later call returns that answer
// as a *HostError: 499 FEZZ_ERR_ABI_STREAM_CANCELLED (the client left), 408
// FEZZ_ERR_ABI_STREAM_TIMEOUT (limits.streamIdleMs or streamMaxMs), 404 unknown id, 409
// already answered, 400/413 a bad prelude. A 200 before the end means the client wants no
// body (HEAD): further writes are dropped. Use a StreamWriter from one goroutine at a time.
type StreamWriter struct {
	id     int64
	status int
	header map[string]string

	mu      sync.Mutex
	started bool
	closed  bool
	pw      *io.PipeWriter
	req     *http.Request
	done    chan struct{} // closed once the call is over; err is set before
	err     error         // the call's outcome: nil, a *HostError or a transport error
}

// StreamResponse starts a streamed answer to request id with status (0 means 200) and
// header: it connects and sends the prelude now. Write the body, then Close it (or Abort).
func StreamResponse(id int64, status int, header map[string]string) (*StreamWriter, error) {
	w := newStreamWriter(id, status, header)
	if err := w.Flush(); err != nil {
		return nil, err
	}
	return w, nil
}

func newStreamWriter(id int64, status int, header map[string]string) *StreamWriter {
	if status == 0 {
		status = http.StatusOK
	}
	return &StreamWriter{id: id, status: status, header: header}
}

// Streamed builds a Response whose body body writes through a StreamWriter. Return it from
// a Handler: the SDK sends status and header, runs body, and ends the stream when body
// returns nil. When body returns an error (or panics) before writing anything, the request
// fails with 500 as for any handler error; after it wrote, the stream is aborted: the host
// resets the client's connection, so the client cannot take a cut body as complete.
//
//	return fezz.Streamed(200, map[string]string{"content-type": "text/event-stream"}, func(w *fezz.StreamWriter) error {
//		for i := 0; i < 5; i++ {
//			if _, err := fmt.Fprintf(w, "data: %d\n\n", i); err != nil {
//				return err // the client left: stop producing
//			}
//			time.Sleep(200 * time.Millisecond)
//		}
//		return nil
//	}), nil
func Streamed(status int, header map[string]string, body func(w *StreamWriter) error) *Response {
	return &Response{Status: status, Header: header, Stream: body}
}

// start opens the call and sends the prelude; w.mu is held.
func (w *StreamWriter) start() error {
	if w.started {
		return nil
	}
	w.started = true
	const endpoint = "push-response-stream"
	fail := func(err error) error {
		w.err = err
		w.done = make(chan struct{})
		close(w.done)
		return err
	}
	url, token, err := adminURL(endpoint, w.id)
	if err != nil {
		return fail(err)
	}
	header := w.header
	if header == nil {
		header = map[string]string{}
	}
	lower := make(map[string]string, len(header))
	for k, v := range header {
		lower[strings.ToLower(k)] = v
	}
	prelude, err := json.Marshal(struct {
		Status  int               `json:"status"`
		Headers map[string]string `json:"headers"`
	}{w.status, lower})
	if err != nil {
		return fail(fmt.Errorf("fezz: %s: %w", endpoint, err))
	}
	pr, pw := io.Pipe()
	req, err := http.NewRequest(http.MethodPost, url, pr)
	if err != nil {
		return fail(fmt.Errorf("fezz: %w", err))
	}
	req.ContentLength = -1 // chunked, and no probing of the body for 200 ms
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Trailer = http.Header{StreamErrorTrailer: nil}
	w.pw, w.req, w.done = pw, req, make(chan struct{})
	go func() {
		res, err := streamClient.Do(req)
		if err != nil {
			err = fmt.Errorf("fezz: %s: %w", endpoint, err)
		} else {
			data, rerr := io.ReadAll(io.LimitReader(res.Body, 64<<10))
			res.Body.Close()
			if res.StatusCode < 200 || res.StatusCode > 299 {
				err = hostError(endpoint, res.StatusCode, data)
			} else if rerr != nil {
				err = fmt.Errorf("fezz: %s: reading the answer: %w", endpoint, rerr)
			}
		}
		w.err = err
		// Unblock a Write in progress: with the host's error, or, after a 200 that came
		// before the end of the body, with errAnsweredEarly (writes are then dropped).
		if err != nil {
			pr.CloseWithError(err)
		} else {
			pr.CloseWithError(errAnsweredEarly)
		}
		close(w.done)
	}()
	_, err = pw.Write(append(prelude, '\n'))
	return w.writeErr(err)
}

// writeErr turns a pipe error into the call's outcome (the host's answer, if it has one).
func (w *StreamWriter) writeErr(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, errAnsweredEarly) {
		return nil
	}
	// The transport stopped reading the body: the call is about to end, with its reason.
	select {
	case <-w.done:
	case <-time.After(5 * time.Second):
		return err
	}
	if w.err != nil {
		return w.err
	}
	return nil // answered 200 before the end: the rest is not needed
}

// Write sends p to the client now, as one chunk, starting the stream if needed. It blocks
// while the client is slower than the plugin (backpressure) and fails with the host's
// answer once the stream is over (the client left: 499).
func (w *StreamWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return 0, errors.New("fezz: write to a closed StreamWriter")
	}
	if err := w.start(); err != nil {
		return 0, err
	}
	if len(p) == 0 {
		return 0, nil
	}
	n, err := w.pw.Write(p)
	if err != nil {
		if err = w.writeErr(err); err == nil {
			return len(p), nil // dropped: the client wants no body
		}
		return n, err
	}
	return n, nil
}

// WriteString is Write for a string.
func (w *StreamWriter) WriteString(s string) (int, error) { return w.Write([]byte(s)) }

// Flush starts the stream if it has not started (the status and headers reach the client
// now). Every Write is sent at once anyway; Flush exists for code that expects one.
func (w *StreamWriter) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return w.result()
	}
	return w.start()
}

func (w *StreamWriter) result() error {
	if w.done == nil {
		return nil
	}
	<-w.done
	return w.err
}

// Close ends the body and waits for the host's answer: nil once the client has the whole
// body, else the *HostError (or transport error) that ended the stream. A stream that was
// never started is sent now, with an empty body.
func (w *StreamWriter) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return w.result()
	}
	w.closed = true
	if err := w.start(); err != nil {
		return err
	}
	w.pw.Close()
	return w.result()
}

// Abort fails the stream with reason: the client's connection is reset (it cannot take the
// body it got as complete) and the host logs reason, sent in the Fezz-Stream-Error trailer.
// A stream that was never started fails the request with push-error-info instead (the
// client gets 500). It returns the host's answer (nil when the host took the abort).
func (w *StreamWriter) Abort(reason error) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	msg := "aborted"
	if reason != nil && reason.Error() != "" {
		msg = reason.Error()
	}
	if w.closed {
		return w.result()
	}
	w.closed = true
	if !w.started {
		w.started = true
		return PushError(w.id, msg)
	}
	msg = strings.Join(strings.Fields(msg), " ") // one line: it is a header value
	if len(msg) > 1000 {
		msg = msg[:1000]
	}
	w.req.Trailer.Set(StreamErrorTrailer, msg) // read by the transport after the body's EOF
	w.pw.Close()
	return w.result()
}

// pushStreamed answers request id with resp, a Streamed response: it runs resp.Stream and
// ends the stream (Close), or aborts it when Stream fails or panics.
func pushStreamed(id int64, resp *Response) error {
	w := newStreamWriter(id, resp.Status, resp.Header)
	err := runStream(resp.Stream, w)
	if err != nil {
		if aerr := w.Abort(err); aerr != nil && !errors.Is(err, aerr) {
			return fmt.Errorf("%v (and aborting the stream failed: %w)", err, aerr)
		}
		return err
	}
	return w.Close()
}

func runStream(body func(w *StreamWriter) error, w *StreamWriter) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("stream panicked: %v", p)
		}
	}()
	return body(w)
}
