"""fezz -- the Python SDK for the fezz request-id plugin ABI (see docs/abi.md).

Standard library only. A plugin is handed only a request id (a positive 63-bit integer).
It fetches the request from the host's admin listener ($FEZZ_HOST, bearer token
$FEZZ_TOKEN), does its work and pushes the response back::

    #!/usr/bin/env python3
    import fezz

    def handle(req: fezz.Request) -> fezz.Response:
        return fezz.Response.text(200, "hello " + req.path)

    if __name__ == "__main__":
        fezz.main(handle)   # runtime "process": ids arrive on stdin

A handler that raises fails the request: the SDK pushes the exception's message to
push-error-info and the client gets 500.

Streaming (docs/abi.md "Streamed bodies"): a handler may return a ``StreamedResponse``
whose body is an iterable of chunks (a generator, say); each chunk reaches the client as
soon as it is yielded, through POST /admin/push-response-stream. A request whose body the
host streams (``bodyStreamed``) is read with GET /admin/get-request-body before the handler
runs, so ``req.body`` holds it either way.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import select
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, Optional, Union

__all__ = [
    "Request",
    "Response",
    "StreamedResponse",
    "ResponseStream",
    "FezzError",
    "fetch_request",
    "read_request_body",
    "open_request_body",
    "push_response",
    "push_response_stream",
    "push_error",
    "post_raw",
    "handle",
    "serve",
    "main",
    "SCHEDULED_PATH",
    "ScheduledEvent",
    "scheduled_event",
    "with_scheduled",
]

#: Seconds allowed for one call to the admin listener.
CALL_TIMEOUT = 30.0

# The admin listener is on loopback: never route it through an HTTP proxy from the env.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class Request:
    """One incoming HTTP request, as the function sees it."""

    method: str
    """``"GET"``, ``"POST"``, ..."""
    url: str
    """Path and query: ``"/echo/a?x=1&y=2"``."""
    path: str
    """``"/echo/a"`` (for ``/rpc/<id>/<rest>`` addressing: ``"/<rest>"``)."""
    query: str
    """The raw query without ``?`` (``""`` when none)."""
    headers: Dict[str, str]
    """Lower-case names; repeated headers joined with ``", "``."""
    body: bytes
    """The raw body bytes."""
    deadline_ms: int
    """Epoch milliseconds after which the host answers 504 itself."""
    body_streamed: bool = False
    """The host streams the body (``bodyStreamed``): ``fetch_request`` read it into ``body``,
    unless called with ``read_body=False`` (then read it with ``open_request_body``)."""

    def header(self, name: str, default: Optional[str] = None) -> Optional[str]:
        """The value of header ``name`` (case-insensitive), or ``default``."""
        return self.headers.get(name.lower(), default)

    def text(self) -> str:
        """The body decoded as UTF-8 (invalid bytes replaced)."""
        return self.body.decode("utf-8", "replace")

    def json(self):
        """The body parsed as JSON."""
        return json.loads(self.body)

    def time_left(self) -> float:
        """Seconds left before the deadline (0 once it has passed)."""
        return max(0.0, self.deadline_ms / 1000.0 - time.time())


@dataclass
class Response:
    """What a handler answers."""

    status: int = 200
    headers: Dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    @classmethod
    def text(cls, status: int, text: str) -> "Response":
        """A ``text/plain`` response."""
        return cls(status, {"content-type": "text/plain; charset=utf-8"}, text.encode("utf-8"))

    @classmethod
    def json(cls, status: int, value) -> "Response":
        """An ``application/json`` response (keys keep their insertion order)."""
        data = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        return cls(status, {"content-type": "application/json"}, data)


@dataclass
class StreamedResponse:
    """A response whose body is sent as it is produced (POST /admin/push-response-stream).

    ``body`` is an iterable of ``bytes`` or ``str`` chunks (a generator, say): each chunk is
    sent to the client as soon as it is yielded. An exception raised by the iterable fails
    the stream: the client's connection is reset (it cannot take a cut body as complete).
    """

    status: int = 200
    headers: Dict[str, str] = field(default_factory=dict)
    body: Iterable[Union[bytes, str]] = ()


class FezzError(Exception):
    """A failed call to the host.

    ``status`` is the HTTP status the host answered (401 bad token, 400 malformed id or
    body, 404 unknown or expired id, 409 already answered), or 0 when there was no answer.
    ``code`` is the host's error code, e.g. ``"FEZZ_ERR_ABI_UNKNOWN_REQUEST"``.
    """

    def __init__(self, message: str, status: int = 0, code: str = "", endpoint: str = ""):
        super().__init__(message)
        self.status = status
        self.code = code
        self.endpoint = endpoint


def _call(method: str, endpoint: str, request_id: int, body: Optional[bytes] = None) -> bytes:
    host = os.environ.get("FEZZ_HOST", "").rstrip("/")
    if not host:
        raise FezzError("FEZZ_HOST is not set")
    token = os.environ.get("FEZZ_TOKEN")
    if token is None:
        raise FezzError("FEZZ_TOKEN is not set")
    url = "%s/admin/%s?request_id=%d" % (host, endpoint, int(request_id))
    req = urllib.request.Request(url, data=body, method=method)
    req.add_header("Authorization", "Bearer " + token)
    req.add_header("Accept", "application/json")
    if body is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with _opener.open(req, timeout=CALL_TIMEOUT) as res:
            return res.read()
    except urllib.error.HTTPError as e:
        # The host's errors are {"error","code","message","statusCode"}.
        code, message = "", ""
        try:
            doc = json.loads(e.read())
            code, message = str(doc.get("code", "")), str(doc.get("message", ""))
        except Exception:
            pass
        text = "%s returned %d" % (endpoint, e.code)
        if code:
            text += " " + code
        if message:
            text += ": " + message
        raise FezzError(text, e.code, code, endpoint) from None
    except (urllib.error.URLError, OSError) as e:
        raise FezzError("%s: %s" % (endpoint, getattr(e, "reason", e)), 0, "", endpoint) from e


def fetch_request(request_id: int, read_body: bool = True) -> Request:
    """Fetch request ``request_id`` (GET /admin/get-request-info). When the host streams the
    body (``bodyStreamed``), read it too (GET /admin/get-request-body), unless ``read_body``
    is false: then ``body`` is empty and ``body_streamed`` says to read it yourself."""
    try:
        doc = json.loads(_call("GET", "get-request-info", request_id))
    except ValueError as e:
        raise FezzError("get-request-info: bad JSON from the host: %s" % e) from None
    raw = doc.get("body") or ""
    streamed = bool(doc.get("bodyStreamed"))
    if streamed:
        body = read_request_body(request_id) if read_body else b""
    elif doc.get("bodyEncoding") == "base64":
        body = base64.b64decode(raw)
    else:
        body = raw.encode("utf-8", "surrogatepass")
    return Request(
        method=doc.get("method", ""),
        url=doc.get("url", ""),
        path=doc.get("path", ""),
        query=doc.get("query", ""),
        headers={str(k).lower(): str(v) for k, v in (doc.get("headers") or {}).items()},
        body=body,
        deadline_ms=int(doc.get("deadlineMs") or 0),
        body_streamed=streamed,
    )


def push_response(request_id: int, resp: Response) -> None:
    """Answer request ``request_id`` (POST /admin/push-response-info).

    The body goes as UTF-8 text when it is valid UTF-8, else as base64. A second push
    raises FezzError with status 409.
    """
    body = resp.body if isinstance(resp.body, (bytes, bytearray)) else str(resp.body).encode("utf-8")
    try:
        text, encoding = bytes(body).decode("utf-8"), "utf8"
    except UnicodeDecodeError:
        text, encoding = base64.b64encode(body).decode("ascii"), "base64"
    doc = {
        "status": int(resp.status or 200),
        "headers": {str(k).lower(): str(v) for k, v in (resp.headers or {}).items()},
        "body": text,
        "bodyEncoding": encoding,
    }
    post_raw(request_id, "push-response-info", json.dumps(doc, ensure_ascii=False).encode("utf-8"))


def _host_parts():
    """(host, port, base path, token) from FEZZ_HOST and FEZZ_TOKEN."""
    host = os.environ.get("FEZZ_HOST", "").rstrip("/")
    if not host:
        raise FezzError("FEZZ_HOST is not set")
    token = os.environ.get("FEZZ_TOKEN")
    if token is None:
        raise FezzError("FEZZ_TOKEN is not set")
    u = urllib.parse.urlsplit(host)
    if u.scheme != "http" or not u.hostname:
        raise FezzError("FEZZ_HOST must be http://host:port, got %r" % host)
    return u.hostname, u.port or 80, u.path.rstrip("/"), token


def _answer_error(endpoint: str, status: int, data: bytes) -> FezzError:
    code, message = "", ""
    try:
        doc = json.loads(data)
        code, message = str(doc.get("code", "")), str(doc.get("message", ""))
    except Exception:
        pass
    text = "%s returned %d" % (endpoint, status)
    if code:
        text += " " + code
    if message:
        text += ": " + message
    return FezzError(text, status, code, endpoint)


def open_request_body(request_id: int):
    """Open the body of request ``request_id`` for reading (GET /admin/get-request-body):
    a file-like object whose ``read(n)`` returns the bytes as the client sends them (a
    streamed body), or at once (a buffered one). A streamed body can be read once (then 409).
    A body cut short (the client stalled, sent too much, left) raises ``http.client``'s
    ``IncompleteRead`` or an ``OSError`` while reading. Close it when done.
    """
    host, port, base, token = _host_parts()
    conn = http.client.HTTPConnection(host, port, timeout=None)
    try:
        conn.request("GET", "%s/admin/get-request-body?request_id=%d" % (base, int(request_id)),
                     headers={"Authorization": "Bearer " + token})
        res = conn.getresponse()
    except OSError as e:
        conn.close()
        raise FezzError("get-request-body: %s" % e, 0, "", "get-request-body") from e
    if res.status != 200:
        data = res.read()
        conn.close()
        raise _answer_error("get-request-body", res.status, data)
    return res


def read_request_body(request_id: int) -> bytes:
    """The whole body of request ``request_id`` (GET /admin/get-request-body)."""
    res = open_request_body(request_id)
    try:
        return res.read()
    except (http.client.HTTPException, OSError) as e:
        raise FezzError("get-request-body: the body was cut short: %r" % e, 0, "", "get-request-body") from e
    finally:
        res.close()


#: The trailer that fails a stream at its end (the client's connection is reset).
STREAM_ERROR_TRAILER = "Fezz-Stream-Error"


class ResponseStream:
    """A streamed answer to one request (POST /admin/push-response-stream), from
    ``push_response_stream``. ``write`` sends one chunk to the host at once; ``close`` ends
    the body and waits for the host's answer; ``abort`` fails the stream (the client's
    connection is reset). Once the host answered early (the client left: 499
    ``FEZZ_ERR_ABI_STREAM_CANCELLED``; a stream limit: 408; 404 unknown id, ...) every call
    raises that ``FezzError``. Use it from one thread.
    """

    def __init__(self, request_id: int, status: int = 200, headers: Optional[Dict[str, str]] = None):
        host, port, base, token = _host_parts()
        self.request_id = int(request_id)
        self._conn = http.client.HTTPConnection(host, port, timeout=None)
        self._error: Optional[FezzError] = None
        self._done = False
        self._discarding = False  # the host answered 200 early (a HEAD request): writes are dropped
        prelude = json.dumps({
            "status": int(status or 200),
            "headers": {str(k).lower(): str(v) for k, v in (headers or {}).items()},
        }, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"
        try:
            self._conn.putrequest("POST", "%s/admin/push-response-stream?request_id=%d" % (base, self.request_id),
                                  skip_accept_encoding=True)
            self._conn.putheader("Authorization", "Bearer " + token)
            self._conn.putheader("Content-Type", "application/octet-stream")
            self._conn.putheader("Transfer-Encoding", "chunked")
            self._conn.putheader("Trailer", STREAM_ERROR_TRAILER)
            self._conn.endheaders()
        except OSError as e:
            self._conn.close()
            raise FezzError("push-response-stream: %s" % e, 0, "", "push-response-stream") from e
        self._send(prelude)

    def _answered_early(self) -> bool:
        sock = self._conn.sock
        return sock is not None and bool(select.select([sock], [], [], 0)[0])

    def _finish(self, tail: bytes) -> None:
        """Send ``tail`` (the last chunk and trailers), read the host's answer."""
        if self._error is not None:
            raise self._error
        if self._done:
            return
        self._done = True
        try:
            try:
                if tail:
                    self._conn.send(tail)
            except OSError:
                pass  # the answer, if any, says why
            res = self._conn.getresponse()
            data = res.read()
        except (http.client.HTTPException, OSError) as e:
            self._error = FezzError("push-response-stream: %r" % e, 0, "", "push-response-stream")
            raise self._error from e
        finally:
            self._conn.close()
        if res.status < 200 or res.status > 299:
            self._error = _answer_error("push-response-stream", res.status, data)
            raise self._error

    def _send(self, data: bytes) -> None:
        if self._error is not None:
            raise self._error
        if self._discarding:
            return
        if self._done:
            raise FezzError("push-response-stream: the stream is closed", 0, "", "push-response-stream")
        if self._answered_early():
            self._finish(b"")  # raises the host's error (or a connection error)
            self._discarding = True  # 200 before the end: the client wants no body (HEAD)
            return
        try:
            self._conn.send(b"%x\r\n" % len(data) + data + b"\r\n")
        except OSError:
            self._finish(b"")  # the host's answer says why, if it sent one
            raise

    def write(self, data: Union[bytes, str]) -> None:
        """Send ``data`` (``str`` as UTF-8) to the client now, as one chunk."""
        if isinstance(data, str):
            data = data.encode("utf-8")
        if data:
            self._send(bytes(data))

    def close(self) -> None:
        """End the body and wait for the host's answer (raises FezzError unless 200)."""
        self._finish(b"0\r\n\r\n")

    def abort(self, message: str) -> None:
        """Fail the stream with ``message`` (logged by the host): the client's connection is
        reset, so it cannot take the body it got as complete."""
        text = " ".join(str(message).split())[:1000] or "aborted"
        self._finish(b"0\r\n%s: %s\r\n\r\n" % (STREAM_ERROR_TRAILER.encode("ascii"), text.encode("utf-8", "replace")))


def push_response_stream(request_id: int, status: int = 200, headers: Optional[Dict[str, str]] = None) -> ResponseStream:
    """Start a streamed answer to request ``request_id`` (POST /admin/push-response-stream):
    the status and headers go at once, then each ``write`` of the returned ResponseStream."""
    return ResponseStream(request_id, status, headers)


def push_error(request_id: int, message: str) -> None:
    """Fail request ``request_id`` with ``message`` (POST /admin/push-error-info): 500."""
    post_raw(request_id, "push-error-info", json.dumps({"message": str(message)}).encode("utf-8"))


def post_raw(request_id: int, endpoint: str, body: bytes) -> None:
    """POST ``body`` as-is to /admin/<endpoint>?request_id=N. For tests and tools."""
    _call("POST", endpoint, request_id, bytes(body))


Handler = Callable[[Request], Union[Response, StreamedResponse]]


def _push_streamed(request_id: int, resp: StreamedResponse) -> None:
    out = push_response_stream(request_id, resp.status, resp.headers)
    try:
        for chunk in resp.body:
            out.write(chunk)
    except FezzError:
        raise
    except Exception as e:
        print("fezz: request %d: the stream failed: %r" % (request_id, e), file=sys.stderr, flush=True)
        out.abort(str(e) or type(e).__name__)
        return
    out.close()


def _handle(request_id: int, fn: Handler, on_fetched: Optional[Callable[[int], None]] = None) -> bool:
    try:
        req = fetch_request(request_id)
    except Exception as e:
        if on_fetched:
            on_fetched(0)
        print("fezz: request %d: fetch failed: %s" % (request_id, e), file=sys.stderr, flush=True)
        return False
    if on_fetched:
        on_fetched(req.deadline_ms)
    try:
        resp = fn(req)
        if not isinstance(resp, (Response, StreamedResponse)):
            raise TypeError("handler returned %r, not a fezz.Response" % type(resp).__name__)
    except Exception as e:
        message = str(e) or type(e).__name__
        print("fezz: request %d: handler failed: %r" % (request_id, e), file=sys.stderr, flush=True)
        try:
            push_error(request_id, message)
        except Exception as pe:
            print("fezz: request %d: push-error failed: %s" % (request_id, pe), file=sys.stderr, flush=True)
        return False
    try:
        if isinstance(resp, StreamedResponse):
            _push_streamed(request_id, resp)
        else:
            push_response(request_id, resp)
    except Exception as e:
        print("fezz: request %d: push failed: %s" % (request_id, e), file=sys.stderr, flush=True)
        return False
    return True


def handle(request_id: int, fn: Handler) -> bool:
    """Fetch request ``request_id``, call ``fn(request)``, push the Response it returns.

    If ``fn`` raises, push the exception's message to push-error-info (the client gets
    500). Returns True when a response was pushed; failures are logged to stderr.
    """
    return _handle(request_id, fn)


def serve(fn: Handler, stream=None) -> None:
    """Process mode: read decimal request ids, one per line, from stdin (or ``stream``)
    and handle each on its own thread, so the reader never blocks.

    On EOF, wait until the in-flight handlers finish (or until all of their deadlines have
    passed), then return.
    """
    stream = sys.stdin if stream is None else stream
    cond = threading.Condition()
    state = {"running": 0, "unfetched": 0, "max_deadline": 0}

    def fetched(deadline_ms: int) -> None:
        with cond:
            state["unfetched"] -= 1
            state["max_deadline"] = max(state["max_deadline"], deadline_ms)
            cond.notify_all()

    def run(request_id: int) -> None:
        try:
            _handle(request_id, fn, fetched)
        finally:
            with cond:
                state["running"] -= 1
                cond.notify_all()

    for line in stream:
        text = line.strip()
        if not text:
            continue
        try:
            request_id = int(text, 10)
            if request_id <= 0 or request_id >= 1 << 63:
                raise ValueError(text)
        except ValueError:
            print("fezz: ignoring a stdin line that is not a request id: %r" % text, file=sys.stderr, flush=True)
            continue
        with cond:
            state["running"] += 1
            state["unfetched"] += 1
        threading.Thread(target=run, args=(request_id,), name="fezz-%d" % request_id, daemon=True).start()

    with cond:
        while state["running"] > 0 and not (
            state["unfetched"] == 0 and time.time() * 1000 >= state["max_deadline"]
        ):
            cond.wait(0.1)


#: The path of a scheduled event's request (docs/abi.md "Scheduled events").
SCHEDULED_PATH = "/__fezz/scheduled"


@dataclass
class ScheduledEvent:
    """One run of a cron trigger (or of ``fezz trigger``): Cloudflare Workers' ScheduledController."""

    cron: str
    """The cron expression that fired, as in the manifest (``""`` for a manual run of a
    function without crons)."""
    scheduled_time_ms: int
    """When the run was due, epoch milliseconds."""


def scheduled_event(req: Request) -> Optional[ScheduledEvent]:
    """The scheduled event ``req`` carries, or None for an ordinary HTTP request.

    A scheduled event is ``POST /__fezz/scheduled`` with the headers ``fezz-cron`` and
    ``fezz-scheduled-time``. The host removes those two headers from every HTTP request
    before a plugin sees it, so only the host can send one.
    """
    if req.method != "POST" or req.path != SCHEDULED_PATH:
        return None
    cron = req.headers.get("fezz-cron")
    when = req.headers.get("fezz-scheduled-time")
    if cron is None or when is None:
        return None
    try:
        ms = int(when, 10)
    except ValueError:
        return None
    return ScheduledEvent(cron, ms)


def with_scheduled(fn: Handler, on_scheduled: Optional[Callable[[ScheduledEvent], None]]) -> Handler:
    """A handler that runs ``on_scheduled(event)`` for scheduled events and ``fn(req)`` for
    every other request.

    The run succeeds when ``on_scheduled`` returns (the host gets 204); an exception fails
    it, and the host logs and counts its message (500 ``FEZZ_ERR_SCHEDULED_FAILED``). With
    ``on_scheduled`` None, scheduled events are answered 409 ``FEZZ_ERR_SCHEDULED_MISSING``
    (``fezz trigger`` then says the function has no scheduled handler).
    """

    def handler(req: Request):
        event = scheduled_event(req)
        if event is None:
            return fn(req)
        if on_scheduled is None:
            return Response.json(409, {"code": "FEZZ_ERR_SCHEDULED_MISSING", "message": "no scheduled handler"})
        try:
            on_scheduled(event)
        except Exception as e:
            print("fezz: scheduled run (cron %r) failed: %r" % (event.cron, e), file=sys.stderr, flush=True)
            return Response.json(500, {"code": "FEZZ_ERR_SCHEDULED_FAILED", "message": "%s: %s" % (type(e).__name__, e)})
        return Response(204)

    return handler


def main(fn: Handler) -> None:
    """``serve(fn)``, then exit 0 (the process-mode entry point)."""
    serve(fn)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
