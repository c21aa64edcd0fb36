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
"""

from __future__ import annotations

import base64
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Callable, Dict, Optional

__all__ = [
    "Request",
    "Response",
    "FezzError",
    "fetch_request",
    "push_response",
    "push_error",
    "post_raw",
    "handle",
    "serve",
    "main",
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


def fetch_request(request_id: int) -> Request:
    """Fetch request ``request_id`` (GET /admin/get-request-info)."""
    try:
        doc = json.loads(_call("GET", "get-request-info", request_id))
    except ValueError as e:
        raise FezzError("get-request-info: bad JSON from the host: %s" % e) from None
    raw = doc.get("body") or ""
    if doc.get("bodyEncoding") == "base64":
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


def push_error(request_id: int, message: str) -> None:
    """Fail request ``request_id`` with ``message`` (POST /admin/push-error-info): 500."""
    post_raw(request_id, "push-error-info", json.dumps({"message": str(message)}).encode("utf-8"))


def post_raw(request_id: int, endpoint: str, body: bytes) -> None:
    """POST ``body`` as-is to /admin/<endpoint>?request_id=N. For tests and tools."""
    _call("POST", endpoint, request_id, bytes(body))


Handler = Callable[[Request], Response]


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
        if not isinstance(resp, Response):
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


def main(fn: Handler) -> None:
    """``serve(fn)``, then exit 0 (the process-mode entry point)."""
    serve(fn)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
