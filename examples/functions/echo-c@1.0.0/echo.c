/*
 * echo-c: a native fezz plugin in C (runtime "native", entry libecho.so).
 *   GET|POST /json -> 200 application/json {"lang":"c","message":"hello from c",...}
 *   anything else  -> 200, the request body echoed byte for byte, with x-echo-* headers.
 * Build: scripts/build-plugins.sh (or see docs/abi.md, "C SDK").
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fezz.h"

/* Appends `s` to `out` as a JSON string (the method and path are plain ASCII in practice,
 * but quote them properly anyway). */
static void json_string(char *out, size_t cap, const char *s) {
    size_t n = strlen(out);
    if (n + 1 < cap) out[n++] = '"';
    for (; *s && n + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') { out[n++] = '\\'; out[n++] = (char)c; }
        else if (c < 0x20) n += (size_t)snprintf(out + n, cap - n, "\\u%04x", c);
        else out[n++] = (char)c;
    }
    if (n + 1 < cap) out[n++] = '"';
    out[n] = '\0';
}

static int handle(const fezz_request *req, fezz_response *resp, void *user) {
    (void)user;
    if (strcmp(req->path, "/json") == 0) {
        char body[4096] = "{\"lang\":\"c\",\"message\":\"hello from c\",\"path\":";
        json_string(body, sizeof body, req->path);
        strncat(body, ",\"method\":", sizeof body - strlen(body) - 1);
        json_string(body, sizeof body, req->method);
        strncat(body, "}", sizeof body - strlen(body) - 1);
        fezz_response_set_header(resp, "content-type", "application/json");
        return fezz_response_set_text(resp, body);
    }

    const char *ct = fezz_request_header(req, "content-type");
    const char *test = fezz_request_header(req, "x-fezz-test");
    if (fezz_response_set_header(resp, "content-type", ct ? ct : "application/octet-stream") ||
        fezz_response_set_header(resp, "x-echo-method", req->method) ||
        fezz_response_set_header(resp, "x-echo-path", req->path) ||
        fezz_response_set_header(resp, "x-echo-query", req->query) ||
        (test && fezz_response_set_header(resp, "x-echo-test", test)) ||
        fezz_response_set_body(resp, req->body, req->body_len)) {
        fezz_set_error("echo-c: out of memory");
        return 1;
    }
    return 0;
}

/* Exports int32_t fezz_handle_request(int64_t request_id). */
FEZZ_NATIVE_HANDLER(handle)
