//! A minimal HTTP/1.1 client for the admin listener: plain `http://` over `TcpStream`, one
//! kept-alive connection per thread, Content-Length and chunked answers; and a chunked
//! upload on a connection of its own for streamed pushes ([`StreamConn`]).

use std::cell::RefCell;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::Error;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const IO_TIMEOUT: Duration = Duration::from_secs(30);

struct Conn {
    authority: String,
    reader: BufReader<TcpStream>,
}

thread_local! {
    // The native runtime calls plugins from a fixed thread pool: reusing the connection
    // saves a TCP handshake on each of the two calls a request makes.
    static CONN: RefCell<Option<Conn>> = const { RefCell::new(None) };
}

/// `http://host:port[/base]` -> (`host:port`, `/base`).
fn split_host(url: &str) -> Result<(String, String), Error> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| Error::Config(format!("FEZZ_HOST must start with http:// (got {:?})", url)))?;
    let rest = rest.trim_end_matches('/');
    let (authority, base) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if authority.is_empty() {
        return Err(Error::Config(format!("FEZZ_HOST has no host (got {:?})", url)));
    }
    let has_port = authority.rsplit_once(':').is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
    let authority = if has_port { authority.to_string() } else { format!("{}:80", authority) };
    Ok((authority, base.to_string()))
}

fn connect(authority: &str) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, format!("{} did not resolve", authority));
    for addr in authority.to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(s) => {
                s.set_nodelay(true)?;
                s.set_read_timeout(Some(IO_TIMEOUT))?;
                s.set_write_timeout(Some(IO_TIMEOUT))?;
                return Ok(s);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// An HTTP answer: status and body.
pub(crate) struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

enum Failure {
    /// The connection was closed before any byte of an answer: safe to retry on a new one.
    Stale(io::Error),
    Other(Error),
}

/// (`host:port`, base path, token) from `FEZZ_HOST` and `FEZZ_TOKEN`.
fn target() -> Result<(String, String, String), Error> {
    let host = std::env::var("FEZZ_HOST").map_err(|_| Error::Config("FEZZ_HOST is not set".into()))?;
    let token = std::env::var("FEZZ_TOKEN").map_err(|_| Error::Config("FEZZ_TOKEN is not set".into()))?;
    let (authority, base) = split_host(&host)?;
    Ok((authority, base, token))
}

/// A chunked upload to the admin listener on a connection of its own (never the kept-alive
/// one: it lasts as long as the body, and is closed after the answer).
pub(crate) struct StreamConn {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl StreamConn {
    /// Connects and sends the head of `POST $FEZZ_HOST/admin/<endpoint>?request_id=<id>` with
    /// `Transfer-Encoding: chunked` and the `trailer` announced.
    pub(crate) fn open(endpoint: &str, id: i64, trailer: &str) -> Result<StreamConn, Error> {
        let (authority, base, token) = target()?;
        let stream = connect(&authority)?;
        // No write timeout: a write blocks while the client is slower than the plugin, and the
        // host bounds that (limits.streamIdleMs). The answer is read with IO_TIMEOUT.
        stream.set_write_timeout(None)?;
        let reader = BufReader::new(stream.try_clone()?);
        let mut conn = StreamConn { stream, reader };
        let head = format!(
            "POST {base}/admin/{endpoint}?request_id={id} HTTP/1.1\r\nHost: {authority}\r\n\
             Authorization: Bearer {token}\r\nContent-Type: application/octet-stream\r\n\
             Transfer-Encoding: chunked\r\nTrailer: {trailer}\r\nConnection: close\r\n\r\n"
        );
        conn.stream.write_all(head.as_bytes())?;
        Ok(conn)
    }

    /// Sends `data` as one chunk (nothing for an empty `data`: that would end the body).
    pub(crate) fn write_chunk(&mut self, data: &[u8]) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let size = format!("{:x}\r\n", data.len());
        if data.len() <= 16 * 1024 {
            // One write, one packet (the socket has TCP_NODELAY).
            let mut wire = Vec::with_capacity(size.len() + data.len() + 2);
            wire.extend_from_slice(size.as_bytes());
            wire.extend_from_slice(data);
            wire.extend_from_slice(b"\r\n");
            return self.stream.write_all(&wire);
        }
        self.stream.write_all(size.as_bytes())?;
        self.stream.write_all(data)?;
        self.stream.write_all(b"\r\n")
    }

    /// Whether the host has answered (or closed the connection) already, before the end of
    /// the body: then the rest of the body is not wanted.
    pub(crate) fn answered(&self) -> bool {
        if !self.reader.buffer().is_empty() {
            return true;
        }
        if self.stream.set_nonblocking(true).is_err() {
            return false;
        }
        let peeked = self.stream.peek(&mut [0u8; 1]);
        let _ = self.stream.set_nonblocking(false);
        match peeked {
            Ok(_) => true, // data, or 0: closed
            Err(e) => e.kind() != io::ErrorKind::WouldBlock && e.kind() != io::ErrorKind::Interrupted,
        }
    }

    /// Ends the body (the last chunk, with `trailer` = `value` when given; write errors are
    /// ignored, the answer says why) and reads the host's answer.
    pub(crate) fn finish(&mut self, trailer: Option<(&str, &str)>) -> Result<Answer, Error> {
        let mut tail = String::from("0\r\n");
        if let Some((name, value)) = trailer {
            tail.push_str(&format!("{}: {}\r\n", name, value));
        }
        tail.push_str("\r\n");
        let _ = self.stream.write_all(tail.as_bytes());
        self.read_answer()
    }

    /// Reads the host's answer (it may have come before the end of the body).
    pub(crate) fn read_answer(&mut self) -> Result<Answer, Error> {
        let mut status_line = String::new();
        if self.reader.read_line(&mut status_line)? == 0 {
            return Err(Error::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the host closed the connection without an answer",
            )));
        }
        let (answer, _) = read_rest(&mut self.reader, &status_line)?;
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
        Ok(answer)
    }
}

/// Sends `method` `$FEZZ_HOST/admin/<endpoint>?request_id=<id>` with an optional JSON body.
pub(crate) fn call(method: &str, endpoint: &str, id: i64, body: Option<&[u8]>) -> Result<Answer, Error> {
    let (authority, base, token) = target()?;

    let mut head = format!(
        "{method} {base}/admin/{endpoint}?request_id={id} HTTP/1.1\r\nHost: {authority}\r\n\
         Authorization: Bearer {token}\r\nAccept: application/json\r\nConnection: keep-alive\r\n"
    );
    if let Some(b) = body {
        head.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", b.len()));
    }
    head.push_str("\r\n");
    let mut wire = head.into_bytes();
    wire.extend_from_slice(body.unwrap_or(&[]));

    CONN.with(|cell| {
        let mut slot = cell.borrow_mut();
        let reused = match slot.take() {
            Some(c) if c.authority == authority => Some(c),
            _ => None,
        };
        let was_reused = reused.is_some();
        let mut conn = match reused {
            Some(c) => c,
            None => Conn { authority: authority.clone(), reader: BufReader::new(connect(&authority)?) },
        };
        let result = match exchange(&mut conn, &wire) {
            // An idle kept-alive connection the host has closed: retry once on a fresh one.
            Err(Failure::Stale(_)) if was_reused => {
                conn = Conn { authority: authority.clone(), reader: BufReader::new(connect(&authority)?) };
                exchange(&mut conn, &wire)
            }
            r => r,
        };
        match result {
            Ok((answer, keep)) => {
                if keep {
                    *slot = Some(conn);
                }
                Ok(answer)
            }
            Err(Failure::Stale(e)) => Err(Error::Io(e)),
            Err(Failure::Other(e)) => Err(e),
        }
    })
}

fn exchange(conn: &mut Conn, wire: &[u8]) -> Result<(Answer, bool), Failure> {
    if let Err(e) = conn.reader.get_mut().write_all(wire) {
        return Err(Failure::Stale(e));
    }
    let mut status_line = String::new();
    match conn.reader.read_line(&mut status_line) {
        Ok(0) => return Err(Failure::Stale(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed"))),
        Err(e) if matches!(e.kind(), io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe) => {
            return Err(Failure::Stale(e))
        }
        Err(e) => return Err(Failure::Other(Error::Io(e))),
        Ok(_) => {}
    }
    read_rest(&mut conn.reader, &status_line).map_err(Failure::Other)
}

fn protocol(msg: impl Into<String>) -> Error {
    Error::Protocol(msg.into())
}

fn read_rest<R: BufRead>(r: &mut R, status_line: &str) -> Result<(Answer, bool), Error> {
    // "HTTP/1.1 200 OK"
    let mut parts = status_line.trim_end().splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .filter(|_| version.starts_with("HTTP/1."))
        .ok_or_else(|| protocol(format!("bad status line {:?}", status_line.trim_end())))?;
    let mut keep = version == "HTTP/1.1";
    let (mut length, mut chunked) = (None::<usize>, false);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Err(protocol("connection closed in the headers"));
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').ok_or_else(|| protocol(format!("bad header {:?}", line)))?;
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => length = Some(value.parse().map_err(|_| protocol("bad content-length"))?),
            "transfer-encoding" => chunked = value.to_ascii_lowercase().contains("chunked"),
            "connection" => {
                let v = value.to_ascii_lowercase();
                if v.contains("close") {
                    keep = false;
                } else if v.contains("keep-alive") {
                    keep = true;
                }
            }
            _ => {}
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut size_line = String::new();
            if r.read_line(&mut size_line)? == 0 {
                return Err(protocol("connection closed in a chunk"));
            }
            let size_text = size_line.trim().split(';').next().unwrap_or("");
            let size = usize::from_str_radix(size_text, 16).map_err(|_| protocol("bad chunk size"))?;
            if size == 0 {
                // Trailers, up to the empty line.
                loop {
                    let mut t = String::new();
                    if r.read_line(&mut t)? == 0 || t.trim_end().is_empty() {
                        break;
                    }
                }
                break;
            }
            let start = body.len();
            body.resize(start + size, 0);
            r.read_exact(&mut body[start..])?;
            let mut crlf = [0u8; 2];
            r.read_exact(&mut crlf)?;
        }
    } else if let Some(n) = length {
        body.resize(n, 0);
        r.read_exact(&mut body)?;
    } else if status == 204 || status == 304 || (100..200).contains(&status) {
        // No body.
    } else {
        r.read_to_end(&mut body)?;
        keep = false;
    }
    Ok((Answer { status, body }, keep))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_hosts() {
        assert_eq!(split_host("http://127.0.0.1:3001").unwrap(), ("127.0.0.1:3001".into(), "".into()));
        assert_eq!(split_host("http://localhost/").unwrap(), ("localhost:80".into(), "".into()));
        assert_eq!(split_host("http://[::1]:9/x/").unwrap(), ("[::1]:9".into(), "/x".into()));
        assert!(split_host("https://x").is_err());
    }

    #[test]
    fn reads_chunked_and_sized_answers() {
        let mut r = io::Cursor::new(b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n".to_vec());
        let (a, keep) = read_rest(&mut r, "HTTP/1.1 404 Not Found\r\n").unwrap();
        assert_eq!((a.status, a.body.as_slice(), keep), (404, &b"abcde"[..], true));
        let mut r = io::Cursor::new(b"content-length: 2\r\nConnection: close\r\n\r\nokEXTRA".to_vec());
        let (a, keep) = read_rest(&mut r, "HTTP/1.1 200 OK\r\n").unwrap();
        assert_eq!((a.status, a.body.as_slice(), keep), (200, &b"ok"[..], false));
    }
}
