package fezz

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// ScheduledPath is the path of a scheduled event's request (docs/abi.md "Scheduled events").
const ScheduledPath = "/__fezz/scheduled"

// ScheduledEvent is one run of a cron trigger (or of `fezz trigger`): Cloudflare Workers'
// ScheduledController.
type ScheduledEvent struct {
	// Cron is the expression that fired, as written in the manifest ("" for a manual run of a
	// function without crons).
	Cron string
	// ScheduledTime is when the run was due (the cron's tick, not when it started).
	ScheduledTime time.Time
}

// Scheduled returns the scheduled event req carries, or nil for an ordinary HTTP request.
// A scheduled event is POST /__fezz/scheduled with the headers fezz-cron and
// fezz-scheduled-time (epoch ms). The host removes those two headers from every HTTP request
// before a plugin sees it, so only the host can send one.
func Scheduled(req *Request) *ScheduledEvent {
	if req.Method != http.MethodPost || req.Path != ScheduledPath {
		return nil
	}
	cron, ok := req.Lookup("fezz-cron")
	if !ok {
		return nil
	}
	ms, err := strconv.ParseInt(req.Get("fezz-scheduled-time"), 10, 64)
	if err != nil {
		return nil
	}
	return &ScheduledEvent{Cron: cron, ScheduledTime: time.UnixMilli(ms)}
}

// ScheduledHandler runs one scheduled event. Returning an error (or panicking) fails the
// run: the host logs the message and counts the run as an error.
type ScheduledHandler func(ev *ScheduledEvent, req *Request) error

// WithScheduled returns a Handler that sends scheduled events to s and every other request
// to h. A run answers 204 when s returns nil, and 500 {"code":"FEZZ_ERR_SCHEDULED_FAILED",
// "message":...} when it fails. With s nil, scheduled events are answered 409
// FEZZ_ERR_SCHEDULED_MISSING (`fezz trigger` then says the function has no scheduled handler).
func WithScheduled(h Handler, s ScheduledHandler) Handler {
	return func(req *Request) (*Response, error) {
		ev := Scheduled(req)
		if ev == nil {
			return h(req)
		}
		if s == nil {
			return scheduledAnswer(409, "FEZZ_ERR_SCHEDULED_MISSING", "no scheduled handler"), nil
		}
		if err := runScheduled(s, ev, req); err != nil {
			return scheduledAnswer(500, "FEZZ_ERR_SCHEDULED_FAILED", err.Error()), nil
		}
		return &Response{Status: http.StatusNoContent}, nil
	}
}

// runScheduled calls s, turning a panic into an error.
func runScheduled(s ScheduledHandler, ev *ScheduledEvent, req *Request) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("scheduled handler panicked: %v", p)
		}
	}()
	return s(ev, req)
}

func scheduledAnswer(status int, code, message string) *Response {
	b, _ := json.Marshal(map[string]string{"code": code, "message": message})
	return &Response{Status: status, Header: map[string]string{"content-type": "application/json"}, Body: b}
}
