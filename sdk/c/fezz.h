/*
 * fezz.h -- C SDK for the fezz request-id plugin ABI (see docs/abi.md).
 *
 * A plugin is handed only a request id (a positive 63-bit integer). It fetches the request
 * from the host's admin listener ($FEZZ_HOST, bearer token $FEZZ_TOKEN), does its work and
 * pushes the response back. This SDK does the HTTP (libcurl), the JSON and the base64.
 *
 * Two ways to run:
 *   - runtime "native": build a shared library that exports
 *         int32_t fezz_handle_request(int64_t request_id);
 *     The FEZZ_NATIVE_HANDLER(fn) macro below defines it for you.
 *   - runtime "process": build an executable whose main() calls fezz_serve(fn, user); it
 *     reads one decimal id per line from stdin and handles each on its own thread.
 *
 * Thread safety: every function here may be called from many threads at once.
 *
 * Errors: functions that can fail return 0 on success and -1 on failure. The failure is
 * described per thread by fezz_last_error() (a message) and fezz_last_status() (the HTTP
 * status the host answered, e.g. 404 for an unknown id or 409 for a second push; 0 when
 * the request never got an HTTP answer).
 *
 * Build (one plugin):
 *   gcc -O2 -fPIC -shared -fvisibility=hidden -I sdk/c -o libmine.so mine.c sdk/c/fezz.c \
 *       -lcurl -pthread
 */
#ifndef FEZZ_H
#define FEZZ_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FEZZ_SDK_VERSION "1.0.0"

/** Mark a symbol as exported from a shared library built with -fvisibility=hidden. */
#define FEZZ_EXPORT __attribute__((visibility("default")))

/** One header: a lower-case name and its value (NUL-terminated UTF-8 strings). */
typedef struct fezz_header {
    char *name;
    char *value;
} fezz_header;

/**
 * An incoming request, as returned by fezz_fetch_request(). All strings are NUL-terminated
 * and owned by the request; release everything with fezz_request_free().
 */
typedef struct fezz_request {
    char *method;            /* "GET", "POST", ... */
    char *url;               /* path + "?" + query, as the function sees it: "/echo/a?x=1" */
    char *path;              /* "/echo/a" */
    char *query;             /* raw query without "?": "x=1" ("" when none) */
    fezz_header *headers;    /* header names are lower-case; repeated headers joined with ", " */
    size_t header_count;
    unsigned char *body;     /* raw body bytes (base64 already decoded); NUL-terminated for
                                convenience, but may contain NULs: use body_len */
    size_t body_len;
    int64_t deadline_ms;     /* epoch milliseconds after which the host answers 504 */
} fezz_request;

/**
 * An outgoing response. Initialise with fezz_response_init(), fill with the setters (they
 * copy their arguments), release with fezz_response_free().
 */
typedef struct fezz_response {
    int status;              /* HTTP status, default 200 */
    fezz_header *headers;
    size_t header_count;
    size_t header_cap;
    unsigned char *body;
    size_t body_len;
} fezz_response;

/**
 * A request handler: read `req`, fill `resp` (already initialised to 200, no headers, empty
 * body) and return 0. Return non-zero to fail the request; the client then gets 500 and the
 * message set with fezz_set_error() (if any) is sent to the host's push-error-info.
 * `user` is the pointer given to fezz_handle() / fezz_serve().
 */
typedef int (*fezz_handler_fn)(const fezz_request *req, fezz_response *resp, void *user);

/* ---- requests ---------------------------------------------------------------------------- */

/** GET /admin/get-request-info for `request_id` into `*out`. Returns 0, or -1 on error. */
int fezz_fetch_request(int64_t request_id, fezz_request *out);

/** Free everything a fezz_request owns (not the struct itself). Safe on a zeroed struct. */
void fezz_request_free(fezz_request *req);

/** Case-insensitive header lookup; returns the value or NULL when absent. */
const char *fezz_request_header(const fezz_request *req, const char *name);

/* ---- responses --------------------------------------------------------------------------- */

/** Initialise `resp` with `status`, no headers and an empty body. */
void fezz_response_init(fezz_response *resp, int status);

/** Set (replace) header `name` (stored lower-case) to `value`. Returns 0, or -1 on OOM. */
int fezz_response_set_header(fezz_response *resp, const char *name, const char *value);

/** Replace the body with a copy of `len` bytes at `data`. Returns 0, or -1 on OOM. */
int fezz_response_set_body(fezz_response *resp, const void *data, size_t len);

/** Replace the body with a copy of the NUL-terminated string `text`. */
int fezz_response_set_text(fezz_response *resp, const char *text);

/** Free everything a fezz_response owns (not the struct itself). */
void fezz_response_free(fezz_response *resp);

/**
 * POST /admin/push-response-info. The body is sent as UTF-8 text when it is valid UTF-8,
 * else as base64. Returns 0, or -1 (e.g. fezz_last_status() == 409 when already answered).
 */
int fezz_push_response(int64_t request_id, const fezz_response *resp);

/** POST /admin/push-error-info with {"message": message}: the client gets 500. */
int fezz_push_error(int64_t request_id, const char *message);

/**
 * Low level: POST `len` raw bytes at `body` (sent as-is with content-type application/json)
 * to /admin/<endpoint>?request_id=N, e.g. endpoint "push-response-info". For tests and
 * tools; plugins use fezz_push_response().
 */
int fezz_post_raw(int64_t request_id, const char *endpoint, const void *body, size_t len);

/* ---- running handlers -------------------------------------------------------------------- */

/**
 * Fetch request `request_id`, call `fn`, push its response; if `fn` returns non-zero, push
 * an error instead. Returns 0 when a response was pushed, non-zero otherwise. This is the
 * whole body of a native plugin's fezz_handle_request().
 */
int fezz_handle(int64_t request_id, fezz_handler_fn fn, void *user);

/**
 * Process mode: read decimal request ids, one per line, from stdin and run fezz_handle()
 * for each on a new detached thread, so requests are served concurrently and the reader
 * never blocks. On EOF, waits until the in-flight handlers finish (or until every one of
 * their deadlines has passed) and returns 0. Returns -1 if stdin fails.
 */
int fezz_serve(fezz_handler_fn fn, void *user);

/* ---- errors ------------------------------------------------------------------------------ */

/** The last error message on this thread ("" when none). Valid until the next SDK call. */
const char *fezz_last_error(void);

/** The HTTP status of the last failed host call on this thread (0: no HTTP answer). */
int fezz_last_status(void);

/** Set this thread's error message (printf-style); a handler calls it before failing. */
void fezz_set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- native plugins ---------------------------------------------------------------------- */

/**
 * Define the native ABI entry point for handler `fn` (user pointer NULL):
 *     FEZZ_NATIVE_HANDLER(my_handler)
 * expands to an exported `int32_t fezz_handle_request(int64_t request_id)`.
 */
#define FEZZ_NATIVE_HANDLER(fn)                                              \
    FEZZ_EXPORT int32_t fezz_handle_request(int64_t request_id);             \
    FEZZ_EXPORT int32_t fezz_handle_request(int64_t request_id) {            \
        return (int32_t)fezz_handle(request_id, (fn), NULL);                 \
    }

#ifdef __cplusplus
}
#endif

#endif /* FEZZ_H */
