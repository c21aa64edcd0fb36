//! # fezz
//!
//! The Rust SDK for the fezz request-id plugin ABI (see `docs/abi.md`), with no dependency
//! outside `std`: a small HTTP/1.1 client, JSON and base64 are built in.
//!
//! A plugin is handed only a request id (a positive 63-bit integer, an `i64`). It fetches
//! the request from the host's admin listener (`$FEZZ_HOST`, bearer token `$FEZZ_TOKEN`),
//! does its work and pushes the response back. Write one handler and use it either way:
//!
//! ```no_run
//! use fezz::{Request, Response, HandlerResult};
//!
//! fn hello(req: &Request) -> HandlerResult {
//!     Ok(Response::text(200, format!("hello {}", req.path)))
//! }
//!
//! // runtime "native" (a cdylib): exports `int32_t fezz_handle_request(int64_t)`.
//! fezz::export_handler!(hello);
//!
//! // runtime "process" (a binary): ids arrive on stdin.
//! fn main() -> std::io::Result<()> { fezz::serve(hello) }
//! ```
//!
//! Panics in a handler are caught and reported with push-error-info (the client gets 500),
//! so do not build plugins with `panic = "abort"`.
//!
//! Streaming (docs/abi.md "Streamed bodies"): a handler may return a [`StreamedResponse`]
//! (as a [`Reply`]) whose function writes the body through a [`ResponseStream`]; each write
//! reaches the client at once (`POST /admin/push-response-stream`). A request body the host
//! streams (`bodyStreamed`) is read with `GET /admin/get-request-body` by [`fetch_request`],
//! so `Request::body` holds it either way.

pub mod base64;
mod http;
pub mod json;
mod stream;

pub use stream::{stream_response, Reply, ResponseStream, StreamBody, StreamedResponse, STREAM_ERROR_TRAILER};

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, BufRead};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use json::Value;

/// One incoming HTTP request, as the function sees it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Request {
    /// `"GET"`, `"POST"`, ...
    pub method: String,
    /// Path and query: `"/echo/a?x=1&y=2"`.
    pub url: String,
    /// `"/echo/a"` (for `/rpc/<id>/<rest>` addressing: `"/<rest>"`).
    pub path: String,
    /// The raw query without `?` (`""` when none).
    pub query: String,
    /// Lower-case names; repeated headers joined with `", "`.
    pub headers: BTreeMap<String, String>,
    /// The raw body bytes.
    pub body: Vec<u8>,
    /// Epoch milliseconds after which the host answers 504 itself.
    pub deadline_ms: i64,
}

impl Request {
    /// The value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(&name.to_ascii_lowercase()).map(String::as_str)
    }

    /// The body as UTF-8 text, if it is valid UTF-8.
    pub fn text(&self) -> Option<&str> {
        std::str::from_utf8(&self.body).ok()
    }

    /// Time left before the deadline (zero once it has passed).
    pub fn time_left(&self) -> Duration {
        Duration::from_millis(self.deadline_ms.saturating_sub(now_ms()).max(0) as u64)
    }
}

/// What a handler answers. `Response::default()` is an empty 200.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub status: u16,
    /// Header names are stored lower-case by [`Response::header`].
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl Default for Response {
    fn default() -> Self {
        Response { status: 200, headers: BTreeMap::new(), body: Vec::new() }
    }
}

impl Response {
    /// An empty response with `status`.
    pub fn new(status: u16) -> Self {
        Response { status, ..Default::default() }
    }

    /// A `text/plain` response.
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Response::new(status).header("content-type", "text/plain; charset=utf-8").body(body.into().into_bytes())
    }

    /// An `application/json` response.
    pub fn json(status: u16, value: &Value) -> Self {
        Response::new(status).header("content-type", "application/json").body(value.to_string().into_bytes())
    }

    /// Sets header `name` (stored lower-case).
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.insert(name.to_ascii_lowercase(), value.into());
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }
}

/// Everything that can go wrong talking to the host.
#[derive(Debug)]
pub enum Error {
    /// `FEZZ_HOST` / `FEZZ_TOKEN` missing or malformed.
    Config(String),
    /// The connection to the host failed.
    Io(io::Error),
    /// The host's answer could not be understood.
    Protocol(String),
    /// The host answered non-2xx: 401 bad token, 400 malformed id or body, 404 unknown or
    /// expired id, 409 already answered.
    Host { status: u16, endpoint: String, code: String, message: String },
}

impl Error {
    /// The HTTP status for [`Error::Host`].
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Host { status, .. } => Some(*status),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(m) => write!(f, "fezz: {}", m),
            Error::Io(e) => write!(f, "fezz: talking to the host: {}", e),
            Error::Protocol(m) => write!(f, "fezz: bad answer from the host: {}", m),
            Error::Host { status, endpoint, code, message } => {
                write!(f, "fezz: {} returned {}", endpoint, status)?;
                if !code.is_empty() {
                    write!(f, " {}", code)?;
                }
                if !message.is_empty() {
                    write!(f, ": {}", message)?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

/// Why a handler failed; its `Display` becomes the push-error-info message.
pub type HandlerError = Box<dyn std::error::Error + Send + Sync>;
/// What a handler returns.
pub type HandlerResult = Result<Response, HandlerError>;

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// The `Error::Host` of a non-2xx answer; the host's errors are
/// `{"error","code","message","statusCode"}`.
pub(crate) fn answer_error(endpoint: &str, status: u16, body: &[u8]) -> Error {
    let parsed = std::str::from_utf8(body).ok().and_then(|t| json::parse(t).ok());
    let field = |k: &str| parsed.as_ref().and_then(|v| v.get(k)).and_then(Value::as_str).unwrap_or("").to_string();
    Error::Host { status, endpoint: endpoint.to_string(), code: field("code"), message: field("message") }
}

fn host_call(method: &str, endpoint: &str, id: i64, body: Option<&[u8]>) -> Result<Vec<u8>, Error> {
    let answer = http::call(method, endpoint, id, body)?;
    if (200..300).contains(&answer.status) {
        return Ok(answer.body);
    }
    Err(answer_error(endpoint, answer.status, &answer.body))
}

/// Fetches request `id` (GET /admin/get-request-info). When the host streams its body
/// (`bodyStreamed`), reads the body too ([`read_request_body`]).
pub fn fetch_request(id: i64) -> Result<Request, Error> {
    let (mut req, streamed) = fetch_request_info(id)?;
    if streamed {
        req.body = read_request_body(id)?;
    }
    Ok(req)
}

/// The whole body of request `id` (GET /admin/get-request-body): the buffered body, or a
/// streamed one as the client sends it (read once: a second read is `Error::Host` 409). A
/// body cut short (the client stalled, sent too much, left) is an error.
pub fn read_request_body(id: i64) -> Result<Vec<u8>, Error> {
    host_call("GET", "get-request-body", id, None)
}

/// [`fetch_request`] without reading a streamed body; true when it is streamed.
fn fetch_request_info(id: i64) -> Result<(Request, bool), Error> {
    let body = host_call("GET", "get-request-info", id, None)?;
    let text = String::from_utf8(body).map_err(|_| Error::Protocol("request info is not UTF-8".into()))?;
    let v = json::parse(&text).map_err(|e| Error::Protocol(e.to_string()))?;
    let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let raw = v.get("body").and_then(Value::as_str).unwrap_or("");
    let streamed = matches!(v.get("bodyStreamed"), Some(Value::Bool(true)));
    let body = if streamed {
        Vec::new()
    } else if v.get("bodyEncoding").and_then(Value::as_str) == Some("base64") {
        base64::decode(raw).map_err(|_| Error::Protocol("body is not valid base64".into()))?
    } else {
        raw.as_bytes().to_vec()
    };
    let headers = v
        .get("headers")
        .and_then(Value::as_object)
        .map(|m| m.iter().filter_map(|(k, v)| Some((k.to_ascii_lowercase(), v.as_str()?.to_string()))).collect())
        .unwrap_or_default();
    let req = Request {
        method: s("method"),
        url: s("url"),
        path: s("path"),
        query: s("query"),
        headers,
        body,
        deadline_ms: v.get("deadlineMs").and_then(Value::as_i64).unwrap_or(0),
    };
    Ok((req, streamed))
}

/// Answers request `id` (POST /admin/push-response-info). The body goes as UTF-8 text when
/// it is valid UTF-8, else as base64. A second push fails with `Error::Host { status: 409 }`.
pub fn push_response(id: i64, resp: &Response) -> Result<(), Error> {
    let (body, encoding) = match std::str::from_utf8(&resp.body) {
        Ok(t) => (Value::from(t), "utf8"),
        Err(_) => (Value::from(base64::encode(&resp.body)), "base64"),
    };
    let headers = Value::Object(resp.headers.iter().map(|(k, v)| (k.clone(), Value::from(v.as_str()))).collect());
    let doc = Value::object([
        ("status", Value::Int(resp.status as i64)),
        ("headers", headers),
        ("body", body),
        ("bodyEncoding", Value::from(encoding)),
    ]);
    post_raw(id, "push-response-info", doc.to_string().as_bytes())
}

/// Fails request `id` with `message` (POST /admin/push-error-info): the client gets 500.
pub fn push_error(id: i64, message: &str) -> Result<(), Error> {
    let doc = Value::object([("message", Value::from(message))]);
    post_raw(id, "push-error-info", doc.to_string().as_bytes())
}

/// POSTs `body` as-is to `/admin/<endpoint>?request_id=<id>`. For tests and tools.
pub fn post_raw(id: i64, endpoint: &str, body: &[u8]) -> Result<(), Error> {
    host_call("POST", endpoint, id, Some(body)).map(|_| ())
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic".to_string()
    }
}

/// Why [`handle`] did not push a response.
#[derive(Debug)]
pub enum HandleError {
    /// Fetching the request or pushing the answer failed.
    Host(Error),
    /// The handler failed or panicked (its message was pushed to push-error-info).
    Handler(String),
}

impl fmt::Display for HandleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandleError::Host(e) => write!(f, "{}", e.to_string().trim_start_matches("fezz: ")),
            HandleError::Handler(m) => write!(f, "handler failed: {}", m),
        }
    }
}

impl std::error::Error for HandleError {}

/// Fetches request `id`, runs `f`, pushes its response (a [`Reply::Stream`] through
/// push-response-stream). When `f` returns an error or panics, pushes the message to
/// push-error-info instead (the client gets 500). `f` returns `Result<Response, _>` (a
/// [`HandlerResult`]) or `Result<Reply, _>`.
pub fn handle<F, R>(id: i64, f: F) -> Result<(), HandleError>
where
    F: FnOnce(&Request) -> Result<R, HandlerError>,
    R: Into<Reply>,
{
    handle_tracked(id, f, |_| {})
}

fn handle_tracked<F, R, T>(id: i64, f: F, on_fetched: T) -> Result<(), HandleError>
where
    F: FnOnce(&Request) -> Result<R, HandlerError>,
    R: Into<Reply>,
    T: FnOnce(Option<i64>),
{
    let (mut req, streamed) = match fetch_request_info(id) {
        Ok(r) => {
            on_fetched(Some(r.0.deadline_ms));
            r
        }
        Err(e) => {
            on_fetched(None);
            return Err(HandleError::Host(e));
        }
    };
    let fail = |msg: String| {
        if let Err(e) = push_error(id, &msg) {
            eprintln!("fezz: request {}: push-error-info failed: {}", id, e);
        }
        Err(HandleError::Handler(msg))
    };
    if streamed {
        match read_request_body(id) {
            Ok(body) => req.body = body,
            Err(e) => return fail(format!("reading the request body: {}", e)),
        }
    }
    let outcome = match catch_unwind(AssertUnwindSafe(|| f(&req))) {
        Ok(Ok(resp)) => Ok(resp.into()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(p) => Err(format!("handler panicked: {}", panic_message(&*p))),
    };
    match outcome {
        Ok(Reply::Full(resp)) => push_response(id, &resp).map_err(HandleError::Host),
        Ok(Reply::Stream(s)) => push_streamed(id, s),
        Err(msg) => fail(msg),
    }
}

/// Sends a streamed reply: runs its body function, then finishes the stream, or aborts it
/// when the function fails or panics (before anything was sent: push-error-info, 500).
fn push_streamed(id: i64, s: StreamedResponse) -> Result<(), HandleError> {
    STREAMS.fetch_add(1, Ordering::SeqCst);
    struct Done;
    impl Drop for Done {
        fn drop(&mut self) {
            STREAMS.fetch_sub(1, Ordering::SeqCst);
        }
    }
    let _done = Done;
    let mut out = ResponseStream::new(id, s.status, s.headers.clone());
    let outcome = match catch_unwind(AssertUnwindSafe(|| s.run(&mut out))) {
        Ok(Ok(())) => return out.finish().map_err(HandleError::Host),
        Ok(Err(e)) => e.to_string(),
        Err(p) => format!("stream panicked: {}", panic_message(&*p)),
    };
    if let Err(e) = out.abort(&outcome) {
        eprintln!("fezz: request {}: aborting the stream: {}", id, e);
    }
    Err(HandleError::Handler(outcome))
}

/// The body of a native plugin's `fezz_handle_request`: runs [`handle`], logs a failure to
/// stderr and returns 0 on success, 1 on failure. Never unwinds across the FFI boundary.
pub fn handle_native<F, R>(id: i64, f: F) -> i32
where
    F: FnOnce(&Request) -> Result<R, HandlerError>,
    R: Into<Reply>,
{
    match catch_unwind(AssertUnwindSafe(|| handle(id, f))) {
        Ok(Ok(())) => 0,
        Ok(Err(e)) => {
            eprintln!("fezz: request {}: {}", id, e);
            1
        }
        Err(_) => 1,
    }
}

/// Defines the native ABI entry point, `int32_t fezz_handle_request(int64_t)`, for a
/// handler `fn(&Request) -> HandlerResult`. Use it once, in a `cdylib` crate:
///
/// ```ignore
/// fezz::export_handler!(my_handler);
/// ```
#[macro_export]
macro_rules! export_handler {
    ($handler:path) => {
        #[no_mangle]
        pub extern "C" fn fezz_handle_request(request_id: i64) -> i32 {
            $crate::handle_native(request_id, $handler)
        }
    };
}

/// Streamed responses being sent: [`serve_from`] waits for them past their requests'
/// deadlines (the host bounds them by its stream limits).
static STREAMS: AtomicUsize = AtomicUsize::new(0);

#[derive(Default)]
struct Inflight {
    running: usize,
    unfetched: usize,
    max_deadline: i64,
}

/// Process mode: reads decimal request ids, one per line, from stdin and handles each on
/// its own thread, so the reader never blocks. On EOF, waits until the in-flight handlers
/// finish (or until all of their deadlines have passed) and returns `Ok(())`.
pub fn serve<F, R>(f: F) -> io::Result<()>
where
    F: Fn(&Request) -> Result<R, HandlerError> + Send + Sync + 'static,
    R: Into<Reply>,
{
    serve_from(io::stdin().lock(), f)
}

/// [`serve`], reading ids from `input`.
pub fn serve_from<I, F, R>(input: I, f: F) -> io::Result<()>
where
    I: BufRead,
    F: Fn(&Request) -> Result<R, HandlerError> + Send + Sync + 'static,
    R: Into<Reply>,
{
    let f = Arc::new(f);
    let state = Arc::new((Mutex::new(Inflight::default()), Condvar::new()));
    for line in input.lines() {
        let line = line?;
        let text = line.trim();
        if text.is_empty() {
            continue;
        }
        let id = match text.parse::<i64>() {
            Ok(id) if id > 0 => id,
            _ => {
                eprintln!("fezz: ignoring a stdin line that is not a request id: {:?}", text);
                continue;
            }
        };
        {
            let mut s = state.0.lock().unwrap_or_else(|e| e.into_inner());
            s.running += 1;
            s.unfetched += 1;
        }
        let (f2, st2) = (Arc::clone(&f), Arc::clone(&state));
        let job = move || {
            let fetched = |dl: Option<i64>| {
                let mut s = st2.0.lock().unwrap_or_else(|e| e.into_inner());
                s.unfetched -= 1;
                s.max_deadline = s.max_deadline.max(dl.unwrap_or(0));
                st2.1.notify_all();
            };
            if let Err(e) = handle_tracked(id, |r| f2(r), fetched) {
                eprintln!("fezz: request {}: {}", id, e);
            }
            let mut s = st2.0.lock().unwrap_or_else(|e| e.into_inner());
            s.running -= 1;
            st2.1.notify_all();
        };
        let job = Arc::new(Mutex::new(Some(job)));
        let job2 = Arc::clone(&job);
        let spawned = std::thread::Builder::new().name(format!("fezz-{}", id)).spawn(move || {
            if let Some(j) = job2.lock().unwrap_or_else(|e| e.into_inner()).take() {
                j()
            }
        });
        if spawned.is_err() {
            eprintln!("fezz: cannot start a thread; handling request {} inline", id);
            if let Some(j) = job.lock().unwrap_or_else(|e| e.into_inner()).take() {
                j()
            }
        }
    }
    let (lock, cv) = &*state;
    let mut s = lock.lock().unwrap_or_else(|e| e.into_inner());
    while s.running > 0 && !(s.unfetched == 0 && STREAMS.load(Ordering::SeqCst) == 0 && now_ms() >= s.max_deadline) {
        s = cv.wait_timeout(s, Duration::from_millis(100)).unwrap_or_else(|e| e.into_inner()).0;
    }
    Ok(())
}
