//! Streamed responses (docs/abi.md "Streamed bodies"): `POST /admin/push-response-stream`,
//! a one-line JSON prelude with the status and headers, then the body as a chunked upload
//! that the host passes on to the client as the client takes it.

use std::collections::BTreeMap;
use std::fmt;
use std::io;

use crate::http::StreamConn;
use crate::json::Value;
use crate::{Error, HandlerError, Response};

/// The trailer by which a streamed push fails at its end: the host resets the client's
/// connection and logs the text.
pub const STREAM_ERROR_TRAILER: &str = "Fezz-Stream-Error";

const ENDPOINT: &str = "push-response-stream";

/// The body of one streamed response, from [`stream_response`] or given to the function of
/// a [`StreamedResponse`]. Nothing is sent before the first [`send`](Self::send),
/// [`start`](Self::start) or [`finish`](Self::finish); then every `send` (or
/// [`io::Write::write`]) is one chunk, written to the host at once. A write blocks while the
/// client is slower than the plugin (backpressure).
///
/// When the host answers before the end of the body, every later call returns that answer
/// as `Error::Host`: 499 `FEZZ_ERR_ABI_STREAM_CANCELLED` (the client left), 408
/// `FEZZ_ERR_ABI_STREAM_TIMEOUT` (`limits.streamIdleMs` or `streamMaxMs`), 404 unknown id, 409
/// already answered. A 200 before the end means the client wants no body (HEAD): further
/// sends are dropped. Dropping a started stream without `finish` closes the connection
/// mid-body: the host resets the client's connection.
pub struct ResponseStream {
    id: i64,
    status: u16,
    headers: BTreeMap<String, String>,
    conn: Option<StreamConn>,
    /// The call is over (finished, aborted, or answered early).
    done: bool,
    /// Answered 200 before the end: sends are dropped.
    discarding: bool,
    /// Why the call failed, once it did.
    failure: Option<Error>,
}

impl fmt::Debug for ResponseStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseStream")
            .field("id", &self.id)
            .field("status", &self.status)
            .field("started", &self.conn.is_some())
            .field("done", &self.done)
            .finish()
    }
}

/// A copy of `e` (Error is not Clone: io::Error is not).
fn dup(e: &Error) -> Error {
    match e {
        Error::Config(m) => Error::Config(m.clone()),
        Error::Io(io) => Error::Io(io::Error::new(io.kind(), io.to_string())),
        Error::Protocol(m) => Error::Protocol(m.clone()),
        Error::Host { status, endpoint, code, message } => {
            Error::Host { status: *status, endpoint: endpoint.clone(), code: code.clone(), message: message.clone() }
        }
    }
}

impl ResponseStream {
    /// A stream for request `id` that starts with the first send (see [`stream_response`]).
    pub fn new(id: i64, status: u16, headers: BTreeMap<String, String>) -> Self {
        ResponseStream { id, status, headers, conn: None, done: false, discarding: false, failure: None }
    }

    /// Whether the prelude was sent (the client has the status and headers).
    pub fn started(&self) -> bool {
        self.conn.is_some()
    }

    fn failed(&mut self, e: Error) -> Error {
        self.done = true;
        self.failure = Some(dup(&e));
        e
    }

    /// Connects and sends the prelude, if not done yet.
    pub fn start(&mut self) -> Result<(), Error> {
        if let Some(e) = &self.failure {
            return Err(dup(e));
        }
        if self.conn.is_some() || self.done {
            return Ok(());
        }
        let headers = Value::Object(
            self.headers.iter().map(|(k, v)| (k.to_ascii_lowercase(), Value::from(v.as_str()))).collect(),
        );
        let mut prelude = Value::object([("status", Value::Int(self.status as i64)), ("headers", headers)]).to_string();
        prelude.push('\n');
        let mut conn = match StreamConn::open(ENDPOINT, self.id, STREAM_ERROR_TRAILER) {
            Ok(c) => c,
            Err(e) => return Err(self.failed(e)),
        };
        let sent = conn.write_chunk(prelude.as_bytes());
        self.conn = Some(conn);
        match sent {
            Ok(()) => Ok(()),
            Err(e) => Err(self.answer_early(Error::Io(e))),
        }
    }

    /// The host answered before the end of the body (or a write failed): read its answer.
    /// Returns the error to report (the host's, else `cause`); a 200 starts dropping sends.
    fn answer_early(&mut self, cause: Error) -> Error {
        let answer = self.conn.as_mut().map(|c| c.read_answer());
        match answer {
            Some(Ok(a)) if (200..300).contains(&a.status) => {
                self.discarding = true;
                self.done = true;
                cause
            }
            Some(Ok(a)) => {
                let e = crate::answer_error(ENDPOINT, a.status, &a.body);
                self.failed(e)
            }
            _ => self.failed(cause),
        }
    }

    /// Sends `data` to the client now, as one chunk (starting the stream if needed).
    pub fn send(&mut self, data: &[u8]) -> Result<(), Error> {
        self.start()?;
        if self.discarding || data.is_empty() {
            return Ok(());
        }
        if self.done {
            return Err(Error::Protocol("send on a finished ResponseStream".into()));
        }
        let conn = self.conn.as_mut().expect("started");
        if conn.answered() {
            let e = self.answer_early(Error::Protocol("the host answered before the end of the body".into()));
            return if self.discarding { Ok(()) } else { Err(e) };
        }
        match conn.write_chunk(data) {
            Ok(()) => Ok(()),
            Err(e) => {
                let e = self.answer_early(Error::Io(e));
                if self.discarding {
                    Ok(())
                } else {
                    Err(e)
                }
            }
        }
    }

    fn end(&mut self, trailer: Option<(&str, &str)>) -> Result<(), Error> {
        if let Some(e) = &self.failure {
            return Err(dup(e));
        }
        if self.done {
            return Ok(());
        }
        self.start()?;
        self.done = true;
        let answer = self.conn.as_mut().expect("started").finish(trailer);
        match answer {
            Ok(a) if (200..300).contains(&a.status) => Ok(()),
            Ok(a) => {
                let e = crate::answer_error(ENDPOINT, a.status, &a.body);
                Err(self.failed(e))
            }
            Err(e) => Err(self.failed(e)),
        }
    }

    /// Ends the body and waits for the host's answer: `Ok` once the client has the whole
    /// body. A stream never started is sent now, with an empty body. Idempotent.
    pub fn finish(&mut self) -> Result<(), Error> {
        self.end(None)
    }

    /// Fails the stream with `message` (sent in the `Fezz-Stream-Error` trailer, logged by
    /// the host): the client's connection is reset, so it cannot take the body it got as
    /// complete. A stream never started fails the request with push-error-info instead (the
    /// client gets 500).
    pub fn abort(&mut self, message: &str) -> Result<(), Error> {
        if self.conn.is_none() && !self.done && self.failure.is_none() {
            self.done = true;
            return crate::push_error(self.id, message);
        }
        let mut text: String = message.split_whitespace().collect::<Vec<_>>().join(" ");
        text.retain(|c| !c.is_control());
        if text.is_empty() {
            text.push_str("aborted");
        }
        let mut cut = text.len().min(1000);
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        self.end(Some((STREAM_ERROR_TRAILER, &text)))
    }
}

impl io::Write for ResponseStream {
    /// One chunk; a host error comes back as an `io::Error` of kind `Other` wrapping the
    /// [`Error`] (`e.get_ref()` / `e.into_inner()` and downcast to get it).
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.send(buf).map(|_| buf.len()).map_err(|e| match e {
            Error::Io(io) => io,
            other => io::Error::other(other),
        })
    }

    /// Formats the whole of `args` first, so one `write!` is one chunk (the default sends
    /// each piece of the format on its own).
    fn write_fmt(&mut self, args: fmt::Arguments<'_>) -> io::Result<()> {
        match args.as_str() {
            Some(s) => self.write_all(s.as_bytes()),
            None => self.write_all(fmt::format(args).as_bytes()),
        }
    }

    /// Starts the stream (status and headers reach the client). Every write is sent at once.
    fn flush(&mut self) -> io::Result<()> {
        self.start().map_err(io::Error::other)
    }
}

/// Starts a streamed answer to request `id`: connects and sends the prelude (`status`,
/// `headers`) now. Send the body, then [`finish`](ResponseStream::finish) it (or
/// [`abort`](ResponseStream::abort)).
pub fn stream_response(id: i64, status: u16, headers: &BTreeMap<String, String>) -> Result<ResponseStream, Error> {
    let mut s = ResponseStream::new(id, status, headers.clone());
    s.start()?;
    Ok(s)
}

/// The function that writes a streamed body.
pub type StreamBody = Box<dyn FnOnce(&mut ResponseStream) -> Result<(), HandlerError>>;

/// A response whose body is written over time. Return it from a handler (as a [`Reply`]):
///
/// ```no_run
/// use std::io::Write;
/// use fezz::{HandlerError, Reply, Request, StreamedResponse};
///
/// fn ticks(_req: &Request) -> Result<Reply, HandlerError> {
///     Ok(StreamedResponse::new(200, |out| {
///         for n in 1..=5 {
///             write!(out, "data: {}\n\n", n)?; // the client left: Err, stop producing
///             std::thread::sleep(std::time::Duration::from_millis(200));
///         }
///         Ok(())
///     })
///     .header("content-type", "text/event-stream")
///     .into())
/// }
/// ```
///
/// When the function fails (or panics) before sending anything, the request fails with 500
/// as for any handler error; after it sent, the stream is aborted (the client's connection
/// is reset).
pub struct StreamedResponse {
    pub status: u16,
    /// Header names are stored lower-case by [`StreamedResponse::header`].
    pub headers: BTreeMap<String, String>,
    body: StreamBody,
}

impl fmt::Debug for StreamedResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamedResponse").field("status", &self.status).field("headers", &self.headers).finish()
    }
}

impl StreamedResponse {
    /// A streamed response with `status` whose body `body` writes.
    pub fn new(status: u16, body: impl FnOnce(&mut ResponseStream) -> Result<(), HandlerError> + 'static) -> Self {
        StreamedResponse { status, headers: BTreeMap::new(), body: Box::new(body) }
    }

    /// Sets header `name` (stored lower-case).
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.insert(name.to_ascii_lowercase(), value.into());
        self
    }

    /// Runs the body function on `out`.
    pub(crate) fn run(self, out: &mut ResponseStream) -> Result<(), HandlerError> {
        (self.body)(out)
    }
}

/// What a handler answers: a whole [`Response`] or a [`StreamedResponse`]. Handlers may
/// return `Result<Response, _>` (a [`crate::HandlerResult`]) or `Result<Reply, _>`.
#[derive(Debug)]
pub enum Reply {
    Full(Response),
    Stream(StreamedResponse),
}

impl From<Response> for Reply {
    fn from(r: Response) -> Self {
        Reply::Full(r)
    }
}

impl From<StreamedResponse> for Reply {
    fn from(s: StreamedResponse) -> Self {
        Reply::Stream(s)
    }
}

#[cfg(test)]
mod tests {
    //! Against a stub admin listener on 127.0.0.1 (std only), as the host behaves.
    use super::*;
    use crate::{handle, HandleError, Request};
    use std::collections::HashMap;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::{Arc, Mutex, MutexGuard};
    use std::time::{Duration, Instant};

    /// FEZZ_HOST and FEZZ_TOKEN are process-wide: one stub test at a time.
    static ENV: Mutex<()> = Mutex::new(());

    #[derive(Default)]
    struct Seen {
        prelude: String,
        chunks: Vec<(Instant, Vec<u8>)>,
        trailer: Option<String>,
    }

    impl Seen {
        fn body(&self) -> Vec<u8> {
            self.chunks.iter().flat_map(|(_, c)| c.clone()).collect()
        }
    }

    #[derive(Default)]
    struct Stub {
        infos: HashMap<String, String>,
        bodies: HashMap<String, Vec<u8>>,
        pushes: HashMap<String, String>,
        errors: HashMap<String, String>,
        streams: HashMap<String, Seen>,
        /// Answer a stream 499 once this many body bytes came (the client left). 0: never.
        cancel_after: usize,
    }

    struct Running {
        state: Arc<Mutex<Stub>>,
        _env: MutexGuard<'static, ()>,
    }

    impl Running {
        fn state(&self) -> MutexGuard<'_, Stub> {
            self.state.lock().unwrap()
        }
        fn info(&self, id: &str, path: &str, streamed: bool) {
            let extra = if streamed { r#","bodyStreamed":true"# } else { "" };
            let info = format!(
                r#"{{"method":"POST","url":"{p}","path":"{p}","query":"","headers":{{}},"body":"","bodyEncoding":"utf8","deadlineMs":9999999999999{extra}}}"#,
                p = path
            );
            self.state().infos.insert(id.to_string(), info);
        }
    }

    fn start() -> Running {
        let env = ENV.lock().unwrap_or_else(|e| e.into_inner());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::env::set_var("FEZZ_HOST", format!("http://{}", addr));
        std::env::set_var("FEZZ_TOKEN", "secret");
        let state = Arc::new(Mutex::new(Stub::default()));
        let st = Arc::clone(&state);
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let st = Arc::clone(&st);
                std::thread::spawn(move || serve(conn, st));
            }
        });
        Running { state, _env: env }
    }

    fn respond(w: &mut TcpStream, status: u16, body: &str, close: bool) {
        let head = format!(
            "HTTP/1.1 {} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{}\r\n",
            status,
            body.len(),
            if close { "connection: close\r\n" } else { "" }
        );
        let _ = w.write_all(head.as_bytes());
        let _ = w.write_all(body.as_bytes());
    }

    fn error(w: &mut TcpStream, status: u16, code: &str) {
        respond(
            w,
            status,
            &format!(r#"{{"error":"x","code":"{}","message":"{}","statusCode":{}}}"#, code, code, status),
            false,
        );
    }

    /// One chunk of a chunked body: Some(data), or None at the last chunk (trailers read).
    fn chunk<R: BufRead>(r: &mut R, trailer: &mut Option<String>) -> Option<Vec<u8>> {
        let mut line = String::new();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let size = usize::from_str_radix(line.trim(), 16).ok()?;
        if size == 0 {
            loop {
                let mut t = String::new();
                if r.read_line(&mut t).ok()? == 0 || t.trim().is_empty() {
                    return None;
                }
                if let Some((k, v)) = t.split_once(':') {
                    if k.trim().eq_ignore_ascii_case(STREAM_ERROR_TRAILER) {
                        *trailer = Some(v.trim().to_string());
                    }
                }
            }
        }
        let mut data = vec![0u8; size + 2];
        r.read_exact(&mut data).ok()?;
        data.truncate(size);
        Some(data)
    }

    fn serve(conn: TcpStream, st: Arc<Mutex<Stub>>) {
        let mut w = conn.try_clone().unwrap();
        let mut r = BufReader::new(conn);
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let target = line.split(' ').nth(1).unwrap_or("").to_string();
            let (path, query) = target.split_once('?').unwrap_or((&target, ""));
            let id = query.trim_start_matches("request_id=").to_string();
            let (mut length, mut chunked) = (0usize, false);
            loop {
                let mut h = String::new();
                r.read_line(&mut h).unwrap();
                let h = h.trim();
                if h.is_empty() {
                    break;
                }
                let (k, v) = h.split_once(':').unwrap();
                match k.to_ascii_lowercase().as_str() {
                    "content-length" => length = v.trim().parse().unwrap(),
                    "transfer-encoding" => chunked = true,
                    _ => {}
                }
            }
            if path == "/admin/push-response-stream" {
                assert!(chunked, "a stream push is chunked");
                let cancel_after = st.lock().unwrap().cancel_after;
                let mut trailer = None;
                let mut got = 0;
                let mut buf = Vec::new();
                let mut prelude_done = false;
                while let Some(data) = chunk(&mut r, &mut trailer) {
                    if !prelude_done {
                        buf.extend_from_slice(&data);
                        if let Some(nl) = buf.iter().position(|&b| b == b'\n') {
                            prelude_done = true;
                            let mut s = st.lock().unwrap();
                            let seen = s.streams.entry(id.clone()).or_default();
                            seen.prelude = String::from_utf8_lossy(&buf[..nl]).into_owned();
                            if nl + 1 < buf.len() {
                                seen.chunks.push((Instant::now(), buf[nl + 1..].to_vec()));
                            }
                        }
                        continue;
                    }
                    got += data.len();
                    st.lock().unwrap().streams.get_mut(&id).unwrap().chunks.push((Instant::now(), data));
                    if cancel_after > 0 && got >= cancel_after {
                        respond(
                            &mut w,
                            499,
                            r#"{"error":"x","code":"FEZZ_ERR_ABI_STREAM_CANCELLED","message":"gone","statusCode":499}"#,
                            true,
                        );
                        // Linger as the host does: discard the rest for a while, then close.
                        let _ = r.get_ref().set_read_timeout(Some(Duration::from_millis(500)));
                        let mut sink = [0u8; 4096];
                        while matches!(r.read(&mut sink), Ok(n) if n > 0) {}
                        return;
                    }
                }
                st.lock().unwrap().streams.entry(id.clone()).or_default().trailer = trailer;
                respond(&mut w, 200, r#"{"ok":true}"#, true);
                return;
            }
            let mut body = vec![0u8; length];
            r.read_exact(&mut body).unwrap();
            let mut s = st.lock().unwrap();
            match path {
                "/admin/get-request-info" => match s.infos.get(&id) {
                    Some(info) => respond(&mut w, 200, &info.clone(), false),
                    None => error(&mut w, 404, "FEZZ_ERR_ABI_UNKNOWN_ID"),
                },
                "/admin/get-request-body" => match s.bodies.get(&id) {
                    Some(b) => {
                        // Chunked, in two chunks, as a streamed body arrives.
                        let (a, z) = b.split_at(b.len() / 2);
                        let mut wire = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
                        for part in [a, z] {
                            if !part.is_empty() {
                                wire.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
                                wire.extend_from_slice(part);
                                wire.extend_from_slice(b"\r\n");
                            }
                        }
                        wire.extend_from_slice(b"0\r\n\r\n");
                        let _ = w.write_all(&wire);
                    }
                    None => error(&mut w, 404, "FEZZ_ERR_ABI_UNKNOWN_ID"),
                },
                "/admin/push-response-info" => {
                    s.pushes.insert(id, String::from_utf8_lossy(&body).into_owned());
                    respond(&mut w, 200, r#"{"ok":true}"#, false);
                }
                "/admin/push-error-info" => {
                    s.errors.insert(id, String::from_utf8_lossy(&body).into_owned());
                    respond(&mut w, 200, r#"{"ok":true}"#, false);
                }
                _ => error(&mut w, 404, "FEZZ_ERR_ADMIN_NOT_FOUND"),
            }
        }
    }

    fn ticker(req: &Request) -> Result<Reply, HandlerError> {
        let path = req.path.clone();
        Ok(StreamedResponse::new(202, move |out| {
            if path == "/early" {
                return Err("no data today".into());
            }
            for n in 1.. {
                writeln!(out, "tick {}", n)?;
                if path == "/fail" {
                    return Err("disk on fire".into());
                }
                if n == 3 && path != "/forever" {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            Ok(())
        })
        .header("Content-Type", "text/plain")
        .into())
    }

    #[test]
    fn a_streamed_reply_sends_each_write_as_it_comes() {
        let stub = start();
        stub.info("5", "/", false);
        handle(5, ticker).unwrap();
        let s = stub.state();
        let seen = &s.streams["5"];
        assert_eq!(seen.prelude, r#"{"status":202,"headers":{"content-type":"text/plain"}}"#);
        assert_eq!(seen.body(), b"tick 1\ntick 2\ntick 3\n");
        assert_eq!(seen.trailer, None);
        assert_eq!(seen.chunks.len(), 3, "one chunk per write");
        assert!(
            seen.chunks[2].0 - seen.chunks[0].0 >= Duration::from_millis(150),
            "written as produced, not at the end"
        );
        assert!(s.pushes.is_empty(), "not pushed whole as well");
    }

    #[test]
    fn a_failing_stream_is_aborted_with_the_trailer_or_fails_before_it_starts() {
        let stub = start();
        stub.info("1", "/fail", false);
        match handle(1, ticker) {
            Err(HandleError::Handler(m)) => assert_eq!(m, "disk on fire"),
            other => panic!("want the handler's error, got {:?}", other.err()),
        }
        stub.info("2", "/early", false);
        assert!(handle(2, ticker).is_err());
        let s = stub.state();
        assert_eq!(s.streams["1"].body(), b"tick 1\n");
        assert_eq!(s.streams["1"].trailer.as_deref(), Some("disk on fire"));
        assert!(!s.streams.contains_key("2"), "nothing sent: no stream");
        assert_eq!(s.errors["2"], r#"{"message":"no data today"}"#);
    }

    #[test]
    fn an_early_answer_from_the_host_ends_the_writes() {
        let stub = start();
        stub.state().cancel_after = 1;
        stub.info("3", "/forever", false);
        let started = Instant::now();
        match handle(3, ticker) {
            Err(HandleError::Handler(m)) => assert!(m.contains("499"), "{}", m),
            other => panic!("want the host's 499, got {:?}", other.err()),
        }
        assert!(started.elapsed() < Duration::from_secs(5));
        // Lower level: the error is the host's, as an Error::Host.
        stub.info("4", "/", false);
        let mut out = stream_response(4, 200, &BTreeMap::new()).unwrap();
        let mut err = None;
        for _ in 0..50 {
            if let Err(e) = out.send(b"x") {
                err = Some(e);
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(err.and_then(|e| e.status()), Some(499));
        assert_eq!(out.finish().err().and_then(|e| e.status()), Some(499));
    }

    #[test]
    fn a_streamed_request_body_is_read_before_the_handler_runs() {
        let stub = start();
        stub.info("8", "/", true);
        stub.state().bodies.insert("8".into(), vec![0, 1, 2, 0xff, 7]);
        handle(8, |req: &Request| Ok(Response::new(200).body(req.body.clone()))).unwrap();
        assert_eq!(
            stub.state().pushes["8"],
            r#"{"status":200,"headers":{},"body":"AAEC/wc=","bodyEncoding":"base64"}"#
        );
        assert_eq!(crate::fetch_request(8).unwrap().body, vec![0, 1, 2, 0xff, 7]);
    }
}
