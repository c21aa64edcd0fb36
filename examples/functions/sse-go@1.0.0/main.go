// sse-go: Server-Sent Events from a process-mode fezz plugin (runtime "process", entry
// ./sse-go), through the ABI's streamed push (docs/abi.md "Streamed bodies").
//
//	GET /sse/go            5 events, one every 200 ms, then the stream ends
//	GET /sse/go?count=N    N events (1 to 100)
//	Last-Event-ID: K       resume after event K (what an EventSource sends on reconnect)
//
// Each event is
//
//	id: <n>
//	event: tick
//	data: {"n":<n>,"at":<epoch ms when it was produced>}
//
// and reaches the client as soon as it is written: each Write of the StreamWriter is one
// chunk, sent to the host at once and passed on to the client with backpressure.
//
// Build: go build -o sse-go .   (scripts/build-plugins.sh does it)
package main

import (
	"fmt"
	"net/url"
	"strconv"
	"time"

	fezz "fezz.dev/sdk/go"
)

const interval = 200 * time.Millisecond

func handle(req *fezz.Request) (*fezz.Response, error) {
	count := 5
	if q, err := url.ParseQuery(req.Query); err == nil && q.Get("count") != "" {
		n, err := strconv.Atoi(q.Get("count"))
		if err != nil || n < 1 || n > 100 {
			return fezz.Text(400, "count must be an integer from 1 to 100\n"), nil
		}
		count = n
	}
	first := 1
	if last, err := strconv.Atoi(req.Get("last-event-id")); err == nil && last >= 0 {
		first = last + 1
	}
	header := map[string]string{
		"content-type":      "text/event-stream; charset=utf-8",
		"cache-control":     "no-cache",
		"x-accel-buffering": "no", // a proxy in front must not buffer the stream either
	}
	return fezz.Streamed(200, header, func(w *fezz.StreamWriter) error {
		// Tell an EventSource how long to wait before reconnecting.
		if _, err := w.WriteString("retry: 1000\n\n"); err != nil {
			return err
		}
		for n := first; n <= count; n++ {
			if n > first {
				time.Sleep(interval)
			}
			if _, err := fmt.Fprintf(w, "id: %d\nevent: tick\ndata: {\"n\":%d,\"at\":%d}\n\n", n, n, time.Now().UnixMilli()); err != nil {
				return err // the client left (the host answered 499): stop producing
			}
		}
		return nil
	}), nil
}

func main() { fezz.Main(handle) }
