//! echo-rust: a native fezz plugin in Rust (runtime "native", entry libecho.so).
//!
//! - `/json` -> 200 `application/json` `{"lang":"rust","message":"hello from rust","path":"/json","method":...}`
//! - anything else -> 200, the request body echoed byte for byte, with `x-echo-*` headers.

use fezz::json::Value;
use fezz::{HandlerResult, Request, Response};

fn handle(req: &Request) -> HandlerResult {
    if req.path == "/json" {
        let doc = Value::object([
            ("lang", Value::from("rust")),
            ("message", Value::from("hello from rust")),
            ("path", Value::from(req.path.as_str())),
            ("method", Value::from(req.method.as_str())),
        ]);
        return Ok(Response::json(200, &doc));
    }
    let mut resp = Response::new(200)
        .header("content-type", req.header("content-type").unwrap_or("application/octet-stream"))
        .header("x-echo-method", req.method.as_str())
        .header("x-echo-path", req.path.as_str())
        .header("x-echo-query", req.query.as_str())
        .body(req.body.clone());
    if let Some(test) = req.header("x-fezz-test") {
        resp = resp.header("x-echo-test", test);
    }
    Ok(resp)
}

// Exports `int32_t fezz_handle_request(int64_t request_id)`.
fezz::export_handler!(handle);
