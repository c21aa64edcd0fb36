package fezz

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// MaxBatch is the most ids one batch call may carry (the host refuses more with 400).
const MaxBatch = 256

// FetchRequests gets several requests in one call (POST /admin/get-request-info/batch).
// A request whose body the host streams comes with BodyStreamed set and a nil Body: read it
// with ReadRequestBody (Serve and HandleNative do).
// reqs[i] and errs[i] belong to ids[i]: exactly one of them is non-nil (errs[i] is a
// *HostError, e.g. 404 for an unknown or expired id). err is non-nil when the call as a
// whole failed; a *HostError with StatusCode 404 or 405 then means the host has no batch
// endpoints (use FetchRequest).
func FetchRequests(ids []int64) (reqs []*Request, errs []error, err error) {
	const endpoint = "get-request-info/batch"
	if len(ids) == 0 || len(ids) > MaxBatch {
		return nil, nil, fmt.Errorf("fezz: %s: %d ids (want 1 to %d)", endpoint, len(ids), MaxBatch)
	}
	body := struct {
		IDs []string `json:"ids"`
	}{IDs: make([]string, len(ids))}
	for i, id := range ids {
		body.IDs[i] = strconv.FormatInt(id, 10)
	}
	data, _ := json.Marshal(body)
	answer, err := callPath(http.MethodPost, endpoint, "", data)
	if err != nil {
		return nil, nil, err
	}
	var out struct {
		Requests []struct {
			wireRequest
			ID         string `json:"id"`
			Code       string `json:"code"`
			Message    string `json:"message"`
			StatusCode int    `json:"statusCode"`
		} `json:"requests"`
	}
	if err := json.Unmarshal(answer, &out); err != nil {
		return nil, nil, fmt.Errorf("fezz: %s: bad JSON from the host: %w", endpoint, err)
	}
	if len(out.Requests) != len(ids) {
		return nil, nil, fmt.Errorf("fezz: %s: %d answers for %d ids", endpoint, len(out.Requests), len(ids))
	}
	reqs, errs = make([]*Request, len(ids)), make([]error, len(ids))
	for i := range out.Requests {
		item := &out.Requests[i]
		if item.StatusCode != 0 {
			errs[i] = &HostError{StatusCode: item.StatusCode, Code: item.Code, Message: item.Message, Endpoint: endpoint}
			continue
		}
		if reqs[i], errs[i] = item.wireRequest.toRequest(endpoint); reqs[i] != nil {
			reqs[i].ID = ids[i]
		}
	}
	return reqs, errs, nil
}

// Answer is one element of a batch push: a Response, or, when Err is non-nil, a failure
// whose message the host logs (the client gets 500), as PushError.
type Answer struct {
	ID       int64
	Response *Response
	Err      error
}

// PushResponses answers several requests in one call (POST /admin/push-response-info/batch).
// errs[i] belongs to answers[i] (nil when it was taken; a *HostError such as 409 or 404
// otherwise). err is non-nil when the call as a whole failed; a *HostError with StatusCode
// 404 or 405 then means the host has no batch endpoints (use PushResponse).
func PushResponses(answers []Answer) (errs []error, err error) {
	const endpoint = "push-response-info/batch"
	if len(answers) == 0 || len(answers) > MaxBatch {
		return nil, fmt.Errorf("fezz: %s: %d answers (want 1 to %d)", endpoint, len(answers), MaxBatch)
	}
	type item struct {
		ID       string        `json:"id"`
		Response *wireResponse `json:"response,omitempty"`
		Error    *struct {
			Message string `json:"message"`
		} `json:"error,omitempty"`
	}
	body := struct {
		Responses []item `json:"responses"`
	}{Responses: make([]item, len(answers))}
	for i, a := range answers {
		it := item{ID: strconv.FormatInt(a.ID, 10)}
		switch {
		case a.Err != nil:
			it.Error = &struct {
				Message string `json:"message"`
			}{a.Err.Error()}
		case a.Response != nil:
			w := toWireResponse(a.Response)
			it.Response = &w
		default:
			it.Error = &struct {
				Message string `json:"message"`
			}{"handler returned no response"}
		}
		body.Responses[i] = it
	}
	data, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("fezz: %s: %w", endpoint, err)
	}
	answer, err := callPath(http.MethodPost, endpoint, "", data)
	if err != nil {
		return nil, err
	}
	var out struct {
		Results []struct {
			OK         bool   `json:"ok"`
			Code       string `json:"code"`
			Message    string `json:"message"`
			StatusCode int    `json:"statusCode"`
		} `json:"results"`
	}
	if err := json.Unmarshal(answer, &out); err != nil {
		return nil, fmt.Errorf("fezz: %s: bad JSON from the host: %w", endpoint, err)
	}
	if len(out.Results) != len(answers) {
		return nil, fmt.Errorf("fezz: %s: %d results for %d answers", endpoint, len(out.Results), len(answers))
	}
	errs = make([]error, len(answers))
	for i, r := range out.Results {
		if !r.OK {
			errs[i] = &HostError{StatusCode: r.StatusCode, Code: r.Code, Message: r.Message, Endpoint: endpoint}
		}
	}
	return errs, nil
}

// noBatchEndpoints reports whether err says the host lacks the batch endpoints (an older host).
func noBatchEndpoints(err error) bool {
	s := StatusOf(err)
	return s == http.StatusNotFound || s == http.StatusMethodNotAllowed
}

// pipelines is how many fetch calls (and, separately, push calls) may be in flight at once.
// Ids that arrive while all are busy wait and go together in the next call, so a busy plugin
// pays one HTTP exchange per batch, and an idle one still fetches each id at once.
const pipelines = 4

// job is one request id on its way through a server, with the handler that serves it and,
// for native calls, where to report the outcome (nil error: a response was pushed).
type job struct {
	id   int64
	h    Handler
	done chan error // nil for stdin ids
}

type answerJob struct {
	Answer
	job job
}

// server is a plugin's request pipeline: ids -> batch fetch -> one goroutine per handler ->
// batch push. Process mode feeds it stdin ids (Serve); native mode feeds it the ids of the
// concurrent fezz_handle_request calls (HandleNative), so both batch. Without batch
// endpoints it falls back to Handle per id.
type server struct {
	ids     chan job
	answers chan answerJob
	stop    chan struct{}
	single  atomic.Bool // the host has no batch endpoints: one call per id

	mu          sync.Mutex
	inflight    int
	unfetched   int
	maxDeadline int64
	streams     int // streamed responses being sent: they outlive their request's deadline
}

func newServer() *server {
	s := &server{ids: make(chan job, 4*MaxBatch), answers: make(chan answerJob, 4*MaxBatch), stop: make(chan struct{})}
	for i := 0; i < pipelines; i++ {
		go s.fetchLoop()
		go s.pushLoop()
	}
	return s
}

// add takes one id (from stdin, or from a native call).
func (s *server) add(j job) {
	s.mu.Lock()
	s.inflight++
	s.unfetched++
	s.mu.Unlock()
	s.ids <- j
}

func (s *server) fetched(deadlineMs int64) {
	s.mu.Lock()
	s.unfetched--
	if deadlineMs > s.maxDeadline {
		s.maxDeadline = deadlineMs
	}
	s.mu.Unlock()
}

// finished ends j: err is nil when its response (or its handler's error) was pushed.
func (s *server) finished(j job, err error) {
	s.mu.Lock()
	s.inflight--
	s.mu.Unlock()
	if j.done != nil {
		j.done <- err
	} else if err != nil {
		logFailure(j.id, err)
	}
}

// drain waits until every id read was answered, or until nothing is left to fetch, no
// streamed response is being sent (the host bounds those by its stream limits) and every
// fetched request's deadline has passed (the host answered 504 for those by itself).
func (s *server) drain() {
	close(s.ids)
	for {
		s.mu.Lock()
		done := s.inflight == 0 || (s.unfetched == 0 && s.streams == 0 && time.Now().UnixMilli() >= s.maxDeadline)
		s.mu.Unlock()
		if done {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	close(s.stop)
}

// handleSingle handles j with one call per step (no batch endpoints on this host).
func (s *server) handleSingle(j job) {
	s.finished(j, handle(j.id, j.h, s.fetched))
}

func (s *server) fetchLoop() {
	batch := make([]job, 0, MaxBatch)
	ids := make([]int64, 0, MaxBatch)
	for j := range s.ids {
		batch = append(batch[:0], j)
	more:
		for len(batch) < MaxBatch {
			select {
			case next, ok := <-s.ids:
				if !ok {
					break more
				}
				batch = append(batch, next)
			default:
				break more
			}
		}
		if !s.single.Load() {
			ids = ids[:0]
			for _, j := range batch {
				ids = append(ids, j.id)
			}
			reqs, errs, err := FetchRequests(ids)
			if err == nil {
				for i, j := range batch {
					if errs[i] != nil {
						s.fetched(0)
						s.finished(j, errs[i])
						continue
					}
					s.fetched(reqs[i].DeadlineMs)
					go s.run(j, reqs[i])
				}
				continue
			}
			if !noBatchEndpoints(err) {
				for _, j := range batch {
					s.fetched(0)
					s.finished(j, err)
				}
				continue
			}
			s.single.Store(true)
		}
		for _, j := range batch {
			go s.handleSingle(j)
		}
	}
}

func (s *server) run(j job, req *Request) {
	resp, err := runWithBody(j.h, req)
	if err == nil && resp.Stream != nil {
		// A stream is its own call, as long as its body: never batched.
		s.mu.Lock()
		s.streams++
		s.mu.Unlock()
		err = pushStreamed(j.id, resp)
		s.mu.Lock()
		s.streams--
		s.mu.Unlock()
		s.finished(j, err)
		return
	}
	select {
	case s.answers <- answerJob{Answer{ID: j.id, Response: resp, Err: err}, j}:
	case <-s.stop:
	}
}

func (s *server) pushLoop() {
	batch := make([]answerJob, 0, MaxBatch)
	for {
		select {
		case a := <-s.answers:
			batch = append(batch[:0], a)
		case <-s.stop:
			return
		}
	more:
		for len(batch) < MaxBatch {
			select {
			case a := <-s.answers:
				batch = append(batch, a)
			default:
				break more
			}
		}
		s.push(batch)
	}
}

// push sends batch, falling back to one call per answer on a host without batch endpoints.
// Each job ends with its push's error, or, when that went well, with its handler's error.
func (s *server) push(batch []answerJob) {
	outcome := func(a answerJob, pushErr error) error {
		if pushErr != nil {
			if a.Err != nil {
				return fmt.Errorf("%v (and pushing the error failed: %w)", a.Err, pushErr)
			}
			return pushErr
		}
		return a.Err
	}
	if !s.single.Load() {
		answers := make([]Answer, len(batch))
		for i, a := range batch {
			answers[i] = a.Answer
		}
		errs, err := PushResponses(answers)
		if err == nil {
			for i, a := range batch {
				s.finished(a.job, outcome(a, errs[i]))
			}
			return
		}
		if !noBatchEndpoints(err) {
			for _, a := range batch {
				s.finished(a.job, outcome(a, err))
			}
			return
		}
		s.single.Store(true)
	}
	for _, a := range batch {
		var err error
		if a.Err != nil {
			err = PushError(a.ID, a.Err.Error())
		} else {
			err = PushResponse(a.ID, a.Response)
		}
		s.finished(a.job, outcome(a, err))
	}
}

var (
	nativeOnce   sync.Once
	nativeServer *server
)

// handleBatched runs id through the process-wide pipeline and waits for its outcome (native
// mode: every concurrent fezz_handle_request call shares it, so their fetches and pushes batch).
func handleBatched(id int64, h Handler) error {
	nativeOnce.Do(func() { nativeServer = newServer() })
	done := make(chan error, 1)
	nativeServer.add(job{id: id, h: h, done: done})
	return <-done
}
